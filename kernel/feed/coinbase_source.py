"""Coinbase Exchange market data (``wss://ws-feed.exchange.coinbase.com``): books, trades, heartbeats.

One ``subscribe`` (answered by one ``subscriptions``) of, per product: ``level2_batch`` (a
``snapshot`` then ``l2update`` batches every 50 ms; the public form of ``level2``) when quotes are
asked for, ``matches`` for trades, ``ticker``, and ``heartbeat``.

``CoinbaseSync``: a product's book is whole from its ``snapshot`` on (level2 carries no sequence:
there is nothing to check its updates against). Trades keep ``trade_id`` continuity per product
(``CoinbaseTradeSequence``, also checked against each heartbeat's ``last_trade_id``); a hole is a
``Gap`` that resyncs in the stream (``ResyncInStream``: the next trade that follows on).

Passed on: trades, and a ``QuoteEvent`` from the book each time its top changes (the ``ticker``
only freshens: it follows trades, not the book). A refused subscription fails the feed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final, Literal

from kernel.feed._common import Frame
from kernel.feed.book import CoinbaseTradeSequence, Gap, OrderBook, Stale
from kernel.feed.coinbase import decode_coinbase
from kernel.feed.events import (
    BookSnapshot,
    BookUpdate,
    FeedEvent,
    HeartbeatEvent,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    VenueNotice,
)
from kernel.feed.live import BookQuotes, LiveSource
from kernel.feed.source import (
    Channel,
    MarketEvent,
    Resynced,
    ResyncInStream,
    SessionFailed,
    SyncedEvent,
    SyncVerdict,
)

COINBASE_WS: Final = "wss://ws-feed.exchange.coinbase.com"
COINBASE_REST: Final = "https://api.exchange.coinbase.com"
MAX_FRAME: Final = 64 * 2**20
"""A level2 snapshot of a busy product (every level of the book) runs to several MiB."""
_CHANNELS: Final[dict[Channel, tuple[str, ...]]] = {"trades": ("matches",), "quotes": ("level2_batch", "ticker")}


class CoinbaseSync:
    """Coinbase ``matches``: ``trade_id`` + 1 per product (``CoinbaseTradeSequence``), checked against
    each heartbeat's ``last_trade_id``; a gap resyncs in the stream. With ``books``, each product's
    book from its level2 ``snapshot`` on (a ``StreamSync`` that ``KeepsBooks``)."""

    def __init__(self, *, books: bool = False) -> None:
        self._trades = CoinbaseTradeSequence()
        self._resync = ResyncInStream()
        self._books_kept = books
        self._books: dict[str, OrderBook] = {}
        self._quotes = BookQuotes("coinbase")

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """Without books every product (its first trade is the baseline); with books none until its snapshot."""
        self._books = {}
        return [] if self._books_kept else list(instruments)

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """Trade ids and heartbeats checked; a snapshot makes its product whole; updates applied."""
        if isinstance(event, TradeEvent):
            return self._whole_only(event.instrument, self._trades.observe(event))
        if isinstance(event, HeartbeatEvent) and event.instrument is not None and event.last_trade_id is not None:
            return self._whole_only(event.instrument, self._trades.on_heartbeat(event))
        if isinstance(event, BookSnapshot) and self._books_kept:
            book = self._books.setdefault(event.instrument, OrderBook(event.instrument))
            book.apply_snapshot(event)
            return Resynced(event.instrument)
        if isinstance(event, BookUpdate) and event.instrument in self._books:
            self._books[event.instrument].apply_update(event)
        return None

    def _whole_only(self, instrument: str, result: Gap | Stale | None) -> SyncVerdict:
        """``ResyncInStream``'s verdict; a trade resync is no whole product while its book awaits the snapshot."""
        verdict = self._resync.verdict(instrument, result)
        if isinstance(verdict, Resynced) and self._books_kept and instrument not in self._books:
            return None
        return verdict

    def resync_frames(self, instrument: str) -> list[str]:
        """Nothing: the next trade that follows on resyncs."""
        del instrument
        return []

    def passed_on(self, event: MarketEvent) -> list[MarketEvent]:
        """Trades; a quote when the book's top changed (or every quote when no book is kept)."""
        if isinstance(event, TradeEvent) or not self._books_kept:
            return [event]
        book = self._books.get(event.instrument)
        if book is None or not isinstance(event, BookSnapshot | BookUpdate):
            return []
        return list(self._quotes.changed(book, event.ts_ms))

    def top_quote(self, instrument: str) -> list[QuoteEvent]:
        """A quote of the book's top if it changed since the last one told."""
        book = self._books.get(instrument)
        return [] if book is None else self._quotes.changed(book, None)

    def book(self, instrument: str) -> OrderBook | None:
        """``instrument``'s book once its snapshot came."""
        return self._books.get(instrument)


class CoinbaseMarketData(LiveSource):
    """Coinbase Exchange's public feed (see the module docstring)."""

    def __init__(self, url: str = COINBASE_WS, *, books: bool = True) -> None:
        super().__init__(url)
        self.books = books
        self.max_frame = MAX_FRAME
        self._sync: CoinbaseSync | None = None
        self._channels: tuple[Channel, ...] = ()

    @property
    def venue(self) -> Literal["coinbase"]:
        """``coinbase``."""
        return "coinbase"

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """One ``subscribe`` of the channels, with ``heartbeat`` (its ``last_trade_id`` reveals gaps)."""
        del request_id  # Coinbase requests carry no id
        self._awaiting = 1
        self._channels = tuple(channels)
        names = [name for channel in channels for name in _CHANNELS[channel] if self._wanted(name)]
        return [json.dumps({"type": "subscribe", "product_ids": list(instruments), "channels": [*names, "heartbeat"]})]

    def _wanted(self, name: str) -> bool:
        return self.books or name != "level2_batch"

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
        """Trade-id continuity per product, and the books when they are subscribed."""
        self._sync = CoinbaseSync(books=self.books and (not self._channels or "quotes" in self._channels))
        return self._sync

    def book(self, instrument: str) -> OrderBook | None:
        """The current connection's book of ``instrument`` once its snapshot came, else ``None``."""
        return None if self._sync is None else self._sync.book(instrument)
