"""Binance spot market data: combined streams, the local order book from the REST snapshot, trades.

``BinanceMarketData(ws_url, rest_url, instruments)`` connects to
``{ws_url}/stream?streams=<sym>@depth@100ms/<sym>@trade/<sym>@bookTicker/...`` (lower-case symbols:
the streams are named in the URL, so nothing is sent to subscribe; built without instruments it
connects to ``{ws_url}/stream`` and sends one ``SUBSCRIBE`` instead).

The book of each symbol follows Binance's documented procedure (``BinanceSync`` over
``book.BinanceDepthSync``): depth events are buffered from the connection on; the client fetches
``GET {rest_url}/api/v3/depth?symbol=SYM&limit=1000`` (``snapshot``, through ``rest.RestClient``:
timeouts, retries, 429/418 ``Retry-After`` respected, requests staggered); events with
``u <= lastUpdateId`` are dropped, the first applied one has ``U <= lastUpdateId + 1 <= u``, each
later one ``U == previous u + 1``. A break is a ``Gap`` of that symbol only: it fetches a new
snapshot while the other symbols stream on.

Passed on: trades (``<sym>@trade``), and a ``QuoteEvent`` from the book each time its top changes.
``bookTicker`` only freshens its symbol (its top can be ahead of the 100 ms depth stream: passing
both would contradict the book). ``serverShutdown`` reconnects (``source.RECONNECT_NOTICES``), as
does the close at Binance's 24-hour connection limit; WebSocket pings are answered by websockets.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Final, Literal

from kernel.feed._common import Frame
from kernel.feed.binance import decode_binance
from kernel.feed.book import BinanceDepthSync, OrderBook
from kernel.feed.events import (
    BookSnapshot,
    BookUpdate,
    DecodeError,
    FeedEvent,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    VenueNotice,
)
from kernel.feed.live import BookQuotes, LiveSource
from kernel.feed.rest import RestClient, RestFailed
from kernel.feed.source import (
    Channel,
    MarketEvent,
    RestTap,
    Resynced,
    SessionFailed,
    SnapshotFailed,
    SyncedEvent,
    SyncVerdict,
)

BINANCE_WS: Final = "wss://stream.binance.com:9443"
BINANCE_REST: Final = "https://api.binance.com"
DEPTH_LIMIT: Final = 1000
"""Levels asked of the REST snapshot (Binance's documented choice for a local book)."""
_STREAMS: Final[dict[Channel, tuple[str, ...]]] = {"trades": ("trade",), "quotes": ("depth@100ms", "bookTicker")}


def stream_names(instruments: Sequence[str], channels: Sequence[Channel] = ("trades", "quotes")) -> list[str]:
    """The stream names of ``channels`` of ``instruments``: depth, trade, bookTicker per symbol."""
    names = [name for channel in ("quotes", "trades") if channel in channels for name in _STREAMS[channel]]
    ordered = sorted(names, key=("depth@100ms", "trade", "bookTicker").index)
    return [f"{symbol.lower()}@{name}" for symbol in instruments for name in ordered]


def combined_stream_url(ws_url: str, instruments: Sequence[str]) -> str:
    """``{ws_url}/stream?streams=a/b/c`` (or ``{ws_url}/stream`` without instruments)."""
    base = ws_url.rstrip("/") + "/stream"
    return f"{base}?streams={'/'.join(stream_names(instruments))}" if instruments else base


class BinanceSync:
    """One connection's books, one ``BinanceDepthSync`` per symbol (a ``StreamSync`` that ``KeepsBooks``)."""

    def __init__(self) -> None:
        self._depth: dict[str, BinanceDepthSync] = {}
        self._quotes = BookQuotes("binance")

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """None is whole: every book waits for its REST snapshot (depth events are buffered meanwhile)."""
        self._depth = {instrument: BinanceDepthSync(instrument) for instrument in instruments}
        return []

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """Depth updates buffered or applied, snapshots loaded; trades and tickers follow on."""
        depth = self._depth.get(event.instrument or "")
        if depth is None:
            return None
        if isinstance(event, BookUpdate):
            return depth.on_update(event)
        if isinstance(event, BookSnapshot):
            gap = depth.on_snapshot(event)
            if gap is not None:
                return gap
            return Resynced(event.instrument) if depth.synced else None
        return None

    def resync_frames(self, instrument: str) -> list[str]:
        """Nothing to send: the client fetches a new snapshot (``BinanceMarketData.snapshot``)."""
        del instrument
        return []

    def passed_on(self, event: MarketEvent) -> list[MarketEvent]:
        """Trades; a quote when the book's top changed; nothing for depth and ``bookTicker`` events."""
        if isinstance(event, TradeEvent):
            return [event]
        depth = self._depth.get(event.instrument)
        if depth is None or not depth.synced or not isinstance(event, BookUpdate | BookSnapshot):
            return []
        return list(self._quotes.changed(depth.book, event.ts_ms, depth.last_update_id))

    def top_quote(self, instrument: str) -> list[QuoteEvent]:
        """A quote of the book's top if it changed since the last one told."""
        depth = self._depth.get(instrument)
        book = depth.book if depth is not None and depth.synced else None
        return [] if book is None else self._quotes.changed(book, None)

    def book(self, instrument: str) -> OrderBook | None:
        """``instrument``'s book while it is whole."""
        depth = self._depth.get(instrument)
        return depth.book if depth is not None and depth.synced else None


class BinanceMarketData(LiveSource):
    """Binance spot market data (see the module docstring); a ``SnapshotSource``.

    ``rest``: the ``RestClient`` for snapshots (default: one on ``rest_url``, 10 s timeout,
    5 attempts, snapshots at least 0.5 s apart).
    """

    def __init__(
        self,
        ws_url: str = BINANCE_WS,
        rest_url: str = BINANCE_REST,
        instruments: Sequence[str] = (),
        *,
        rest: RestClient | None = None,
        depth_limit: int = DEPTH_LIMIT,
    ) -> None:
        self.instruments = [symbol.upper() for symbol in instruments]
        super().__init__(combined_stream_url(ws_url, self.instruments))
        self.rest = rest if rest is not None else RestClient(rest_url)
        self.depth_limit = depth_limit
        self._ids = itertools.count(1)
        self._request_id = ""
        self._sync: BinanceSync | None = None

    @property
    def venue(self) -> Literal["binance"]:
        """``binance``."""
        return "binance"

    @property
    def on_rest(self) -> RestTap | None:
        """Told of every REST answer (``RestClient.on_rest``)."""
        return self.rest.on_rest

    @on_rest.setter
    def on_rest(self, tap: RestTap | None) -> None:
        self.rest.on_rest = tap

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """Nothing for the symbols named in the URL; one ``SUBSCRIBE`` for any other."""
        del request_id  # Binance ids are integers: the source numbers its own requests
        missing = [symbol for symbol in instruments if symbol.upper() not in self.instruments]
        if not missing:
            self._awaiting = 0
            return []
        number = next(self._ids)
        self._request_id, self._awaiting = str(number), 1
        return [json.dumps({"method": "SUBSCRIBE", "params": stream_names(missing, channels), "id": number})]

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

    def new_sync(self) -> BinanceSync:
        """Fresh books for a new connection."""
        self._sync = BinanceSync()
        return self._sync

    def book(self, instrument: str) -> OrderBook | None:
        """The current connection's book of ``instrument`` while it is whole, else ``None``."""
        return None if self._sync is None else self._sync.book(instrument)

    def depth_path(self, instrument: str) -> str:
        """``/api/v3/depth?symbol=SYM&limit=1000``."""
        return f"/api/v3/depth?symbol={instrument.upper()}&limit={self.depth_limit}"

    async def snapshot(self, instrument: str) -> list[FeedEvent]:
        """``GET /api/v3/depth`` decoded into a ``BookSnapshot``; ``SnapshotFailed`` if it cannot be had."""
        try:
            body = await self.rest.get(self.depth_path(instrument))
            return decode_binance(body, symbol=instrument)
        except RestFailed as exc:
            raise SnapshotFailed(str(exc)) from None
        except DecodeError as exc:
            raise SnapshotFailed(f"depth snapshot of {instrument}: {exc.reason}") from None
