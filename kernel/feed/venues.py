"""The live venues' market-data sources (Binance spot, Coinbase Exchange, Kraken v2), and ``SOURCES``.

Each is a ``MarketDataSource`` (``kernel.feed.source``) over the venue's decoder in this package:
its public WebSocket endpoint (any URL may be passed instead), the subscribe frames for trades and
top of book, the answers that confirm or refuse them, and its sync procedure. None needs a greeting.

| venue | trades | quotes | subscription answered by | sync |
| --- | --- | --- | --- | --- |
| Binance | ``<symbol>@trade`` | ``<symbol>@bookTicker`` | ``{"result", "id"}`` | whole at subscribe |
| Coinbase | ``matches`` (+ ``heartbeat``) | ``ticker`` | ``subscriptions`` | ``trade_id`` + 1 per product |
| Kraken | ``trade`` | ``ticker`` | one ``subscribe`` answer per channel and symbol | whole at subscribe |

Binance and Kraken trades and top-of-book streams carry no sequence a gap can be read from (their
order books do: ``BinanceDepthSync`` and ``KrakenBook`` in ``book``, which need book channels these
sources do not subscribe to). Coinbase's trade ids follow on per product, and its heartbeats carry
the last one: a hole is a ``Gap`` that resyncs in the stream (``ResyncInStream``). A refused
subscription (an unknown symbol, a malformed request) fails the feed: sending it again cannot help.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Literal

from kernel.feed._common import Frame
from kernel.feed.binance import decode_binance
from kernel.feed.book import CoinbaseTradeSequence
from kernel.feed.coinbase import decode_coinbase
from kernel.feed.errors import FeedError
from kernel.feed.events import FeedEvent, HeartbeatEvent, SubscriptionAck, TradeEvent, Venue, VenueNotice
from kernel.feed.kraken import decode_kraken
from kernel.feed.paper_source import PaperMarketData
from kernel.feed.source import (
    Channel,
    MarketDataSource,
    OnDecodeError,
    ResyncInStream,
    SessionFailed,
    SyncedEvent,
    SyncVerdict,
)

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

BINANCE_URL: Final = "wss://stream.binance.com:9443/ws"
COINBASE_URL: Final = "wss://ws-feed.exchange.coinbase.com"
KRAKEN_URL: Final = "wss://ws.kraken.com/v2"

_BINANCE_STREAMS: Final[dict[Channel, str]] = {"trades": "trade", "quotes": "bookTicker"}
_COINBASE_CHANNELS: Final[dict[Channel, str]] = {"trades": "matches", "quotes": "ticker"}
_KRAKEN_CHANNELS: Final[dict[Channel, str]] = {"trades": "trade", "quotes": "ticker"}


class WholeAtSubscribe:
    """The sync procedure of a stream without sequence numbers: every instrument is whole from its
    subscription on, and no event can reveal a gap."""

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """Every instrument."""
        return list(instruments)

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """Always ``None`` (follows on)."""
        del event
        return None

    def resync_frames(self, instrument: str) -> list[str]:
        """Nothing (no gap is ever reported)."""
        del instrument
        return []


class CoinbaseSync:
    """Coinbase ``matches``: ``trade_id`` + 1 per product (``CoinbaseTradeSequence``), checked against
    each heartbeat's ``last_trade_id``; a gap resyncs in the stream. The ``last_match`` sent at
    subscribe sets each product's baseline."""

    def __init__(self) -> None:
        self._trades = CoinbaseTradeSequence()
        self._resync = ResyncInStream()

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """Every instrument (the first trade seen of a product is its baseline)."""
        return list(instruments)

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """Trade ids and heartbeats checked; other events follow on."""
        if isinstance(event, TradeEvent):
            return self._resync.verdict(event.instrument, self._trades.observe(event))
        if isinstance(event, HeartbeatEvent) and event.instrument is not None and event.last_trade_id is not None:
            return self._resync.verdict(event.instrument, self._trades.on_heartbeat(event))
        return None

    def resync_frames(self, instrument: str) -> list[str]:
        """Nothing: the next trade that follows on resyncs."""
        del instrument
        return []


class _LiveSource:
    """What the three sources share: a URL, no greeting, and counting the answers a subscription awaits."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._awaiting = 0

    @property
    def url(self) -> str:
        """The WebSocket endpoint."""
        return self._url

    async def greet(self, ws: ClientConnection, *, timeout: float, on_decode_error: OnDecodeError) -> None:
        """Nothing: the venue takes a subscription as the first message."""
        del ws, timeout, on_decode_error

    def _answered(self) -> bool:
        self._awaiting -= 1
        return self._awaiting <= 0


class BinanceMarketData(_LiveSource):
    """Binance spot market streams (``SUBSCRIBE`` on one raw-stream connection)."""

    def __init__(self, url: str = BINANCE_URL) -> None:
        super().__init__(url)
        self._ids = itertools.count(1)
        self._request_id = ""

    @property
    def venue(self) -> Literal["binance"]:
        """``binance``."""
        return "binance"

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """One ``SUBSCRIBE`` of ``<symbol>@trade`` / ``<symbol>@bookTicker`` (lower-case symbols)."""
        del request_id  # Binance ids are integers: the source numbers its own requests
        number = next(self._ids)
        self._request_id, self._awaiting = str(number), 1
        streams = [f"{symbol.lower()}@{_BINANCE_STREAMS[channel]}" for symbol in instruments for channel in channels]
        return [json.dumps({"method": "SUBSCRIBE", "params": streams, "id": number})]

    def check_subscribed(self, event: FeedEvent) -> bool:
        """The ``{"result": null, "id"}`` of our request confirms; an error answer refuses."""
        if isinstance(event, SubscriptionAck) and event.request_id == self._request_id:
            return self._answered()
        if isinstance(event, VenueNotice) and event.kind == "error":
            raise SessionFailed(f"binance refused the subscription: {event.detail}", fatal=True)
        return False

    def decode(self, frame: Frame) -> list[FeedEvent]:
        """``decode_binance``."""
        return decode_binance(frame)

    def new_sync(self) -> WholeAtSubscribe:
        """Trades and ``bookTicker`` carry no sequence to check."""
        return WholeAtSubscribe()


class CoinbaseMarketData(_LiveSource):
    """Coinbase Exchange's public feed (``matches``, ``ticker`` and ``heartbeat`` channels)."""

    def __init__(self, url: str = COINBASE_URL) -> None:
        super().__init__(url)

    @property
    def venue(self) -> Literal["coinbase"]:
        """``coinbase``."""
        return "coinbase"

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """One ``subscribe`` of the channels, with ``heartbeat`` (its ``last_trade_id`` reveals gaps)."""
        del request_id  # Coinbase requests carry no id
        self._awaiting = 1
        names = [_COINBASE_CHANNELS[channel] for channel in channels] + ["heartbeat"]
        return [json.dumps({"type": "subscribe", "product_ids": list(instruments), "channels": names})]

    def check_subscribed(self, event: FeedEvent) -> bool:
        """``subscriptions`` confirms; ``error`` refuses."""
        if isinstance(event, SubscriptionAck):
            return self._answered()
        if isinstance(event, VenueNotice) and event.kind == "error":
            raise SessionFailed(f"coinbase refused the subscription: {event.detail}", fatal=True)
        return False

    def decode(self, frame: Frame) -> list[FeedEvent]:
        """``decode_coinbase``."""
        return decode_coinbase(frame)

    def new_sync(self) -> CoinbaseSync:
        """Trade-id continuity per product."""
        return CoinbaseSync()


class KrakenMarketData(_LiveSource):
    """Kraken Spot WebSocket v2 (``trade`` and ``ticker`` channels)."""

    def __init__(self, url: str = KRAKEN_URL) -> None:
        super().__init__(url)
        self._ids = itertools.count(1)
        self._request_ids: set[str] = set()

    @property
    def venue(self) -> Literal["kraken"]:
        """``kraken``."""
        return "kraken"

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """One ``subscribe`` per channel; Kraken answers once per channel and symbol."""
        del request_id  # Kraken's req_id is an integer: the source numbers its own requests
        frames = []
        self._request_ids = set()
        for channel in channels:
            number = next(self._ids)
            self._request_ids.add(str(number))
            params = {"channel": _KRAKEN_CHANNELS[channel], "symbol": list(instruments)}
            frames.append(json.dumps({"method": "subscribe", "params": params, "req_id": number}))
        self._awaiting = len(channels) * len(instruments)
        return frames

    def check_subscribed(self, event: FeedEvent) -> bool:
        """True once every channel and symbol is answered; ``success: false`` refuses."""
        if not isinstance(event, SubscriptionAck) or event.request_id not in self._request_ids:
            return False  # a ``status`` notice comes first on every connection
        if not event.success:
            raise SessionFailed(f"kraken refused the subscription: {event.error}", fatal=True)
        return self._answered()

    def decode(self, frame: Frame) -> list[FeedEvent]:
        """``decode_kraken``."""
        return decode_kraken(frame)

    def new_sync(self) -> WholeAtSubscribe:
        """Trades and ``ticker`` carry no sequence to check."""
        return WholeAtSubscribe()


SOURCES: Final[dict[Venue, Callable[[str], MarketDataSource]]] = {
    "paper": PaperMarketData,
    "binance": BinanceMarketData,
    "coinbase": CoinbaseMarketData,
    "kraken": KrakenMarketData,
}
"""Every market-data source by venue name, each built from its WebSocket URL."""


# --- minimal make_source (issue 13, WATCH branch): the SYNC helper's version replaces this at merge ---
class UnknownVenue(FeedError):
    """``make_source`` was given a venue name that is not in ``SOURCES``."""


def make_source(
    venue: str, *, ws_url: str | None = None, rest_url: str | None = None, instruments: Sequence[str] = ()
) -> MarketDataSource:
    """The source of ``venue`` at ``ws_url`` (``None``: its public endpoint); ``UnknownVenue`` otherwise."""
    del rest_url, instruments  # the sources on this branch need neither
    if venue not in SOURCES:
        raise UnknownVenue(f"unknown venue {venue!r}: one of {', '.join(SOURCES)}")
    factory = SOURCES[venue]
    if ws_url is None:
        if venue == "paper":
            raise UnknownVenue("the paper venue has no public endpoint: pass ws_url")
        return factory()  # type: ignore[call-arg]
    return factory(ws_url)
