"""Kraken Spot WebSocket v2 market data (``wss://ws.kraken.com/v2``): checksummed books, trades.

One ``subscribe`` per channel (``trade``; with quotes ``ticker`` and ``book`` at depth 10), each
answered once per symbol; ``heartbeat`` comes by itself about once a second when nothing else does.

``KrakenSync``: a symbol's book is whole from its ``book`` snapshot on, and every snapshot and
update is verified against its CRC32 ``checksum`` (``book.KrakenBook``: top 10 asks then bids,
each price and size printed with the pair's precision). The precisions are not in the book
channel: the first snapshot of a symbol names them (the one pair of precisions, 0 to 12 places,
whose checksum of the snapshot matches Kraken's; ``precisions=`` may give them instead). A
mismatch is a ``Gap`` of that symbol only: its book is cleared and resubscribed (``unsubscribe``
then ``subscribe`` of ``book`` for that symbol) for a fresh snapshot.

Prices and sizes arrive as JSON numbers: the decoder reads each number's text as a ``Decimal``
(``msgspec`` with ``float_hook=Decimal``), never through a float, as the checksum needs.

Passed on: trades, and a ``QuoteEvent`` from the book each time its top changes (the ``ticker``
only freshens).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal

from kernel.feed._common import Frame
from kernel.feed.book import Gap, KrakenBook, OrderBook, kraken_checksum
from kernel.feed.events import BookSnapshot, BookUpdate, FeedEvent, QuoteEvent, SubscriptionAck, TradeEvent
from kernel.feed.kraken import decode_kraken
from kernel.feed.live import BookQuotes, LiveSource
from kernel.feed.source import Channel, MarketEvent, Resynced, SessionFailed, SyncedEvent, SyncVerdict

log = logging.getLogger(__name__)

KRAKEN_WS: Final = "wss://ws.kraken.com/v2"
KRAKEN_REST: Final = "https://api.kraken.com"
BOOK_DEPTH: Final = 10
MAX_PRECISION: Final = 12
MAX_RESUBSCRIBES: Final = 3
"""Snapshots in a row that may fail to verify before a symbol's book is left unsynced until the
next connection (resubscribing forever would only load the venue)."""
_CHANNELS: Final[dict[Channel, tuple[str, ...]]] = {"trades": ("trade",), "quotes": ("ticker", "book")}

Precisions = tuple[int, int]
"""A pair's ``(price_precision, qty_precision)``."""


def infer_precisions(snapshot: BookSnapshot, depth: int = BOOK_DEPTH) -> Precisions | None:
    """The precisions whose checksum of ``snapshot`` (truncated to ``depth``) is Kraken's, or ``None``."""
    book = OrderBook(snapshot.instrument)
    book.apply_snapshot(snapshot)
    book.truncate(depth)
    for price_places in range(MAX_PRECISION + 1):
        for qty_places in range(MAX_PRECISION + 1):
            if kraken_checksum(book, price_precision=price_places, qty_precision=qty_places) == snapshot.checksum:
                return price_places, qty_places
    return None


class KrakenSync:
    """One connection's checksummed books (a ``StreamSync`` that ``KeepsBooks``); without ``books``
    every symbol is whole at subscription (trades and tickers carry no sequence)."""

    def __init__(
        self,
        *,
        books: bool,
        precisions: Mapping[str, Precisions],
        resubscribe: Callable[[str], list[str]],
        depth: int = BOOK_DEPTH,
    ) -> None:
        self._books_kept = books
        self._precisions = precisions
        self._resubscribe = resubscribe
        self.depth = depth
        self._books: dict[str, KrakenBook] = {}
        self._failed_snapshots: dict[str, int] = {}
        self._quotes = BookQuotes("kraken")
        self.verified = 0
        """Book messages whose checksum matched (tests, diagnostics)."""

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """With books none is whole until its snapshot; without, every symbol."""
        self._books = {}
        return [] if self._books_kept else list(instruments)

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """Snapshots loaded and verified (``Resynced``), updates applied and verified; a mismatch is a ``Gap``."""
        if not self._books_kept:
            return None
        if isinstance(event, BookSnapshot):
            return self._snapshot(event)
        if isinstance(event, BookUpdate):
            book = self._books.get(event.instrument)
            if book is None or not book.synced:
                return None  # no verified snapshot yet: ignored until it comes
            return self._verified(book.on_update(event))
        return None

    def _snapshot(self, snapshot: BookSnapshot) -> SyncVerdict:
        book = self._books.get(snapshot.instrument)
        if book is None:
            places = self._precisions.get(snapshot.instrument) or infer_precisions(snapshot, self.depth)
            if places is None:
                self._failed_snapshots[snapshot.instrument] = self._failed_snapshots.get(snapshot.instrument, 0) + 1
                return Gap(snapshot.instrument, snapshot.checksum or 0, 0, "checksum", "book")
            book = KrakenBook(snapshot.instrument, price_precision=places[0], qty_precision=places[1], depth=self.depth)
            self._books[snapshot.instrument] = book
        gap = self._verified(book.on_snapshot(snapshot))
        if gap is not None:
            self._failed_snapshots[snapshot.instrument] = self._failed_snapshots.get(snapshot.instrument, 0) + 1
            return gap
        self._failed_snapshots.pop(snapshot.instrument, None)
        return Resynced(snapshot.instrument)

    def _verified(self, gap: Gap | None) -> Gap | None:
        if gap is None:
            self.verified += 1
        return gap

    def resync_frames(self, instrument: str) -> list[str]:
        """``unsubscribe`` then ``subscribe`` the symbol's book: Kraken answers with a fresh snapshot
        (nothing after ``MAX_RESUBSCRIBES`` snapshots in a row that did not verify)."""
        if not self._books_kept:
            return []
        if self._failed_snapshots.get(instrument, 0) >= MAX_RESUBSCRIBES:
            log.error("kraken: %d snapshots of %s in a row did not verify: left unsynced", MAX_RESUBSCRIBES, instrument)
            return []
        return self._resubscribe(instrument)

    def passed_on(self, event: MarketEvent) -> list[MarketEvent]:
        """Trades; a quote when the book's top changed (or every quote when no book is kept)."""
        if isinstance(event, TradeEvent) or not self._books_kept:
            return [event]
        book = self._books.get(event.instrument)
        if book is None or not book.synced or not isinstance(event, BookSnapshot | BookUpdate):
            return []
        return list(self._quotes.changed(book.book, event.ts_ms))

    def top_quote(self, instrument: str) -> list[QuoteEvent]:
        """A quote of the book's top if it changed since the last one told."""
        kept = self._books.get(instrument)
        book = kept.book if kept is not None and kept.synced else None
        return [] if book is None else self._quotes.changed(book, None)

    def book(self, instrument: str) -> OrderBook | None:
        """``instrument``'s book while verified."""
        book = self._books.get(instrument)
        return book.book if book is not None and book.synced else None


class KrakenMarketData(LiveSource):
    """Kraken Spot WebSocket v2 (see the module docstring). ``precisions``: known pairs' precisions
    (``{"BTC/USD": (1, 8)}``); others are read off their first snapshot."""

    def __init__(
        self,
        url: str = KRAKEN_WS,
        *,
        books: bool = True,
        precisions: Mapping[str, Precisions] | None = None,
        depth: int = BOOK_DEPTH,
    ) -> None:
        super().__init__(url)
        self.books = books
        self.precisions = dict(precisions or {})
        self.depth = depth
        self._ids = itertools.count(1)
        self._request_ids: set[str] = set()
        self._channels: tuple[Channel, ...] = ()
        self._sync: KrakenSync | None = None

    @property
    def venue(self) -> Literal["kraken"]:
        """``kraken``."""
        return "kraken"

    def _names(self, channels: Sequence[Channel]) -> list[str]:
        return [name for channel in channels for name in _CHANNELS[channel] if self.books or name != "book"]

    def _request(self, method: str, channel: str, symbols: list[str]) -> tuple[int, str]:
        number = next(self._ids)
        params: dict[str, object] = {"channel": channel, "symbol": symbols}
        if channel == "book" and method == "subscribe":
            params["depth"] = self.depth
        return number, json.dumps({"method": method, "params": params, "req_id": number})

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """One ``subscribe`` per channel; Kraken answers once per channel and symbol."""
        del request_id  # Kraken's req_id is an integer: the source numbers its own requests
        self._channels = tuple(channels)
        frames = []
        self._request_ids = set()
        names = self._names(channels)
        for name in names:
            number, frame = self._request("subscribe", name, list(instruments))
            self._request_ids.add(str(number))
            frames.append(frame)
        self._awaiting = len(names) * len(instruments)
        return frames

    def resubscribe_book(self, instrument: str) -> list[str]:
        """``unsubscribe`` and ``subscribe`` of ``instrument``'s book (a fresh snapshot follows)."""
        return [self._request(method, "book", [instrument])[1] for method in ("unsubscribe", "subscribe")]

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

    def new_sync(self) -> KrakenSync:
        """Fresh books for a new connection (kept when ``book`` is subscribed)."""
        books = self.books and "book" in self._names(self._channels or ("quotes",))
        self._sync = KrakenSync(
            books=books, precisions=self.precisions, resubscribe=self.resubscribe_book, depth=self.depth
        )
        return self._sync

    @property
    def verified(self) -> int:
        """Book messages whose checksum matched on the current connection."""
        return 0 if self._sync is None else self._sync.verified

    def book(self, instrument: str) -> OrderBook | None:
        """The current connection's verified book of ``instrument``, else ``None``."""
        return None if self._sync is None else self._sync.book(instrument)
