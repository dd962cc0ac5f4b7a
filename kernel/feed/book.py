"""Order books and the per-venue rules that say whether a book (or a stream) is still whole.

``OrderBook`` holds the price levels of one instrument: load a snapshot, apply changes (a size of 0
deletes a level), read the top of book and the sorted depth. Around it, one keeper per venue:

* ``BinanceDepthSync``: buffer ``depthUpdate`` until the REST snapshot; drop ``u <= lastUpdateId``;
  the first applied event has ``U <= lastUpdateId + 1 <= u``, every later one ``U == previous u + 1``;
  else ``Gap(kind="update_id")``.
* ``KrakenBook``: after every message, truncate to the subscribed depth and compare the CRC32 of
  the top 10 levels with the message's ``checksum``; else ``Gap(kind="checksum")``.
* ``CoinbaseTradeSequence``: each ``match`` ``trade_id`` is the previous one + 1, per product (and
  a heartbeat's ``last_trade_id`` is no further); else ``Gap(kind="trade_id")``.
* ``PaperSequence``: ``seq`` is the previous one + 1, per instrument and channel, from 1; else
  ``Gap(kind="seq")``.

A break is returned, never raised: the caller resyncs that instrument and only that one (every
keeper is per instrument or keyed by it). Misuse (an event of another instrument, an event without
the ids its venue always sends) raises ``BookMisuse`` (a ``ValueError``).
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from kernel.feed.errors import BookMisuse
from kernel.feed.events import BookSnapshot, BookUpdate, HeartbeatEvent, Level, QuoteEvent, TradeEvent

GapKind = Literal["update_id", "checksum", "trade_id", "seq"]


@dataclass(frozen=True, slots=True)
class Gap:
    """A stream of ``instrument`` broke: ``expected`` is what should have come, ``received`` what did.

    For a checksum, ``expected`` is the venue's checksum and ``received`` the one computed here.
    The instrument needs a resync; other instruments are unaffected.
    """

    instrument: str
    expected: int
    received: int
    kind: GapKind
    channel: str = ""


@dataclass(frozen=True, slots=True)
class Stale:
    """An event already seen (``received`` ≤ ``last``): drop it, nothing is lost."""

    instrument: str
    last: int
    received: int
    channel: str = ""


@dataclass(frozen=True, slots=True)
class TopOfBook:
    """Best bid and best ask, each ``(price, qty)`` or ``None`` for an empty side."""

    instrument: str
    bid: Level | None
    ask: Level | None


class OrderBook:
    """The price levels of one instrument. Reading the best level costs O(levels); depth sorts."""

    def __init__(self, instrument: str) -> None:
        self.instrument = instrument
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the whole book (a snapshot)."""
        self.bids = {price: qty for price, qty in bids if qty}
        self.asks = {price: qty for price, qty in asks if qty}

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Apply changes in order: set each level's size, or delete it when the size is 0."""
        for side, changes in ((self.bids, bids), (self.asks, asks)):
            for price, qty in changes:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)

    def apply_snapshot(self, snapshot: BookSnapshot) -> None:
        """``load`` a decoded snapshot of this instrument."""
        self.check_instrument(snapshot.instrument)
        self.load(snapshot.bids, snapshot.asks)

    def apply_update(self, update: BookUpdate) -> None:
        """``apply`` a decoded update of this instrument."""
        self.check_instrument(update.instrument)
        self.apply(update.bids, update.asks)

    def clear(self) -> None:
        """Forget every level (the book is out of sync)."""
        self.bids = {}
        self.asks = {}

    def truncate(self, depth: int) -> None:
        """Keep only the best ``depth`` levels of each side."""
        self.bids = dict(self.bid_levels(depth))
        self.asks = dict(self.ask_levels(depth))

    def best_bid(self) -> Level | None:
        """The highest bid, or ``None``."""
        if not self.bids:
            return None
        price = max(self.bids)
        return price, self.bids[price]

    def best_ask(self) -> Level | None:
        """The lowest ask, or ``None``."""
        if not self.asks:
            return None
        price = min(self.asks)
        return price, self.asks[price]

    def top(self) -> TopOfBook:
        """Best bid and ask."""
        return TopOfBook(self.instrument, self.best_bid(), self.best_ask())

    def bid_levels(self, depth: int | None = None) -> list[Level]:
        """Bids, highest first, at most ``depth`` of them."""
        return sorted(self.bids.items(), reverse=True)[:depth]

    def ask_levels(self, depth: int | None = None) -> list[Level]:
        """Asks, lowest first, at most ``depth`` of them."""
        return sorted(self.asks.items())[:depth]

    def is_crossed(self) -> bool:
        """Whether the best bid is at or above the best ask (a book that cannot be right)."""
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def check_instrument(self, instrument: str) -> None:
        """``BookMisuse`` unless ``instrument`` is this book's."""
        if instrument != self.instrument:
            raise BookMisuse(f"book of {self.instrument!r} given an event of {instrument!r}")


class BinanceDepthSync:
    """Binance's documented procedure for a local book from ``<symbol>@depth`` and ``GET /api/v3/depth``.

    Until a snapshot is applied (and again after a gap), updates are buffered, the oldest dropped
    beyond ``max_buffer``. ``on_snapshot`` loads the book and replays the buffer. Updates whose
    ``u`` is at or below the book's update id are dropped; the first applied one must straddle
    ``lastUpdateId + 1``; each later one must start right after the previous one. A break clears
    the book, keeps the update that revealed it for the next snapshot, and is returned as a ``Gap``.
    """

    def __init__(self, instrument: str, max_buffer: int = 10_000) -> None:
        self.book = OrderBook(instrument)
        self.last_update_id: int | None = None
        self._first = True
        self._buffer: deque[BookUpdate] = deque(maxlen=max_buffer)

    @property
    def instrument(self) -> str:
        """The instrument this book follows."""
        return self.book.instrument

    @property
    def synced(self) -> bool:
        """Whether the book is built from a snapshot and unbroken updates."""
        return self.last_update_id is not None

    def on_update(self, update: BookUpdate) -> Gap | None:
        """Buffer or apply one ``depthUpdate``; a ``Gap`` if it does not follow on."""
        self.book.check_instrument(update.instrument)
        return self._apply(update)

    def on_snapshot(self, snapshot: BookSnapshot) -> Gap | None:
        """Load the REST snapshot and replay the buffered updates; a ``Gap`` if they do not join it
        (the snapshot is older than every buffered update: fetch another)."""
        if snapshot.last_update_id is None:
            raise BookMisuse("a Binance depth snapshot carries lastUpdateId")
        self.book.apply_snapshot(snapshot)
        self.last_update_id = snapshot.last_update_id
        self._first = True
        buffered = list(self._buffer)
        self._buffer.clear()
        gaps = [gap for gap in map(self._apply, buffered) if gap is not None]
        return gaps[0] if gaps else None  # after a gap the rest is buffered again: at most one

    def _apply(self, update: BookUpdate) -> Gap | None:
        first, final = update.first_update_id, update.last_update_id
        if first is None or final is None:
            raise BookMisuse("a Binance depth update carries U and u")
        last = self.last_update_id
        if last is None:
            self._buffer.append(update)
            return None
        if final <= last:
            return None
        expected = last + 1
        # The first update must straddle the snapshot's id; every later one must start right after.
        follows = first <= expected if self._first else first == expected
        if not follows:
            self.book.clear()
            self.last_update_id = None
            self._buffer.append(update)
            return Gap(self.instrument, expected, first, "update_id")
        self.book.apply(update.bids, update.asks)
        self.last_update_id = final
        self._first = False
        return None


def kraken_checksum(book: OrderBook, *, price_precision: int, qty_precision: int) -> int:
    """Kraken's CRC32 of the top 10 asks (lowest first) then bids (highest first): each price and
    size printed with the pair's precision, the point removed, leading zeros stripped, concatenated."""

    def text(value: Decimal, places: int) -> str:
        return format(value, f".{places}f").replace(".", "").lstrip("0")

    parts = [
        text(price, price_precision) + text(qty, qty_precision)
        for price, qty in (*book.ask_levels(10), *book.bid_levels(10))
    ]
    return zlib.crc32("".join(parts).encode("ascii"))


class KrakenBook:
    """A Kraken v2 ``book`` for one symbol, verified against every message's checksum.

    ``price_precision``/``qty_precision`` are the pair's (BTC/USD: 1 and 8, from the ``instrument``
    channel); ``depth`` is the subscribed depth, to which the book is truncated after each message.
    After a mismatch the book is cleared and updates are ignored until the next snapshot
    (resubscribe).
    """

    def __init__(self, instrument: str, *, price_precision: int, qty_precision: int, depth: int = 10) -> None:
        self.book = OrderBook(instrument)
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.depth = depth
        self.synced = False

    def checksum(self) -> int:
        """The checksum of the book as it stands."""
        return kraken_checksum(self.book, price_precision=self.price_precision, qty_precision=self.qty_precision)

    def on_snapshot(self, snapshot: BookSnapshot) -> Gap | None:
        """Load a snapshot and verify it."""
        self.book.apply_snapshot(snapshot)
        return self._verify(snapshot.checksum)

    def on_update(self, update: BookUpdate) -> Gap | None:
        """Apply an update and verify it; ignored (``None``) while there is no verified snapshot."""
        self.book.check_instrument(update.instrument)
        if not self.synced:
            return None
        self.book.apply(update.bids, update.asks)
        return self._verify(update.checksum)

    def _verify(self, expected: int | None) -> Gap | None:
        if expected is None:
            raise BookMisuse("a Kraken book message carries a checksum")
        self.book.truncate(self.depth)
        computed = self.checksum()
        self.synced = computed == expected
        if self.synced:
            return None
        self.book.clear()
        return Gap(self.instrument, expected, computed, "checksum")

    @property
    def instrument(self) -> str:
        """The symbol this book follows."""
        return self.book.instrument


class CoinbaseTradeSequence:
    """``trade_id`` continuity of Coinbase ``match``/``last_match`` per product.

    The first trade seen of a product sets its baseline. After a gap the baseline moves to the
    trade received, so one hole is reported once.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def last_trade_id(self, instrument: str) -> int | None:
        """The last trade id accepted for ``instrument``."""
        return self._last.get(instrument)

    def observe(self, trade: TradeEvent) -> Gap | Stale | None:
        """``None`` if the trade follows on, ``Stale`` if already seen, ``Gap`` if trades were missed."""
        received = int(trade.trade_id)
        last = self._last.get(trade.instrument)
        if last is not None and received <= last:
            return Stale(trade.instrument, last, received, trade.channel)
        self._last[trade.instrument] = received
        if last is None or received == last + 1:
            return None
        return Gap(trade.instrument, last + 1, received, "trade_id", trade.channel)

    def on_heartbeat(self, beat: HeartbeatEvent) -> Gap | None:
        """A ``Gap`` if the heartbeat's ``last_trade_id`` is beyond the last trade seen of its product."""
        if beat.instrument is None or beat.last_trade_id is None:
            raise BookMisuse("a Coinbase heartbeat names a product and its last_trade_id")
        last = self._last.get(beat.instrument)
        received = int(beat.last_trade_id)
        if last is None or received <= last:
            return None
        self._last[beat.instrument] = received
        return Gap(beat.instrument, last + 1, received, "trade_id", "heartbeat")

    def reset(self, instrument: str) -> None:
        """Forget ``instrument``'s baseline (after a resync)."""
        self._last.pop(instrument, None)


class PaperSequence:
    """The paper venue's ``seq``: from 1 per instrument and channel (``trades``, ``quotes``), no gaps.

    After a gap the count moves to the ``seq`` received, so one hole is reported once. Call
    ``reset`` when the subscription starts again (a new connection counts from 1).
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def observe(self, event: TradeEvent | QuoteEvent) -> Gap | Stale | None:
        """``None`` if ``event`` follows on, ``Stale`` if already seen, ``Gap`` if some were missed."""
        if event.seq is None:
            raise BookMisuse("a paper venue trade or quote carries seq")
        channel = "trades" if isinstance(event, TradeEvent) else "quotes"
        key = (event.instrument, channel)
        last = self._last.get(key, 0)
        if event.seq <= last:
            return Stale(event.instrument, last, event.seq, channel)
        self._last[key] = event.seq
        if event.seq == last + 1:
            return None
        return Gap(event.instrument, last + 1, event.seq, "seq", channel)

    def reset(self, instrument: str | None = None) -> None:
        """Count from 1 again, for ``instrument`` or for every instrument."""
        if instrument is None:
            self._last.clear()
        else:
            self._last = {key: seq for key, seq in self._last.items() if key[0] != instrument}
