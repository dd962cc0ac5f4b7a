"""The venues' documented book procedures, written out plainly from their docs, for checking.

Nothing here imports ``kernel.feed``: these are the independent computations the feed's books are
compared with. Every level keeps the exact text it arrived as (``Level.price_text``/``qty_text``), so
a stand-in can send a book back out without a round trip through ``float``.

* Binance (``GET /api/v3/depth`` + ``<symbol>@depth``, "How to manage a local order book
  correctly"): drop every event with ``u <= lastUpdateId``; the first event kept must have
  ``U <= lastUpdateId + 1 <= u``; each later one ``U == previous u + 1``; a quantity of 0 removes
  the level.
* Coinbase Exchange (level2): the ``snapshot`` is the book; each ``l2update`` change
  ``[side, price, size]`` sets the level (``buy`` = bids), size 0 removes it.
* Kraken v2 (``book``): snapshot, then updates (qty 0 removes); after every message the book is
  truncated to the subscribed depth and its CRC32 (top 10 asks low to high, then top 10 bids high to
  low; each price and qty printed with the pair's precision, ``.`` removed, leading zeros
  stripped, all concatenated) must equal the message's ``checksum``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple


class ProcedureError(Exception):
    """The documented procedure cannot go on (a gap, a checksum that does not match)."""


class SequenceGap(ProcedureError):
    """Binance: an event does not follow on from the book's update id."""


class ChecksumMismatch(ProcedureError):
    """Kraken: the book's CRC32 differs from the message's ``checksum``."""


@dataclass(frozen=True)
class Level:
    """One price level, with the exact texts it arrived as."""

    price: Decimal
    qty: Decimal
    price_text: str
    qty_text: str


class TopOfBook(NamedTuple):
    """Best bid and ask (price, qty); ``None`` for an empty side."""

    bid: Decimal | None
    bid_qty: Decimal | None
    ask: Decimal | None
    ask_qty: Decimal | None


class Book:
    """Bids and asks keyed by price. ``set`` with a zero quantity removes the level."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Level] = {}
        self.asks: dict[Decimal, Level] = {}

    def copy(self) -> Book:
        """An independent copy."""
        other = Book()
        other.bids = dict(self.bids)
        other.asks = dict(self.asks)
        return other

    def set(self, side: str, price: Any, qty: Any) -> None:
        """Set one level of ``side`` (``bid`` or ``ask``) from its texts; qty 0 removes it."""
        levels = self.bids if side == "bid" else self.asks
        price_text, qty_text = str(price), str(qty)
        value = Decimal(price_text)
        if Decimal(qty_text) == 0:
            levels.pop(value, None)
        else:
            levels[value] = Level(value, Decimal(qty_text), price_text, qty_text)

    def sorted_bids(self, depth: int | None = None) -> list[Level]:
        """Bids, highest first."""
        return [self.bids[p] for p in sorted(self.bids, reverse=True)][:depth]

    def sorted_asks(self, depth: int | None = None) -> list[Level]:
        """Asks, lowest first."""
        return [self.asks[p] for p in sorted(self.asks)][:depth]

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels of each side."""
        self.bids = {level.price: level for level in self.sorted_bids(depth)}
        self.asks = {level.price: level for level in self.sorted_asks(depth)}

    def top(self) -> TopOfBook:
        """The best bid and ask."""
        return top_of_book(self.bids, self.asks)


def top_of_book(bids: Mapping[Decimal, Any], asks: Mapping[Decimal, Any]) -> TopOfBook:
    """Best bid (highest price) and best ask (lowest) of two ``price -> qty`` (or ``Level``) maps."""

    def qty(value: Any) -> Decimal:
        return value.qty if isinstance(value, Level) else Decimal(value)

    bid = max(bids) if bids else None
    ask = min(asks) if asks else None
    return TopOfBook(
        bid,
        None if bid is None else qty(bids[bid]),
        ask,
        None if ask is None else qty(asks[ask]),
    )


# -- Binance ------------------------------------------------------------------------------------


def _payload(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event of a combined-stream envelope, or the message itself."""
    data = message.get("data")
    return data if "stream" in message and isinstance(data, Mapping) else message


class BinanceLocalBook:
    """Binance's local order book: a REST snapshot, then ``depthUpdate`` events per the docs."""

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        self.book = Book()
        for price, qty in snapshot["bids"]:
            self.book.set("bid", price, qty)
        for price, qty in snapshot["asks"]:
            self.book.set("ask", price, qty)
        self.last_update_id: int = int(snapshot["lastUpdateId"])
        self.first = True

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one ``depthUpdate`` (or its envelope): ``False`` if dropped as already in the
        snapshot, ``True`` if applied; ``SequenceGap`` if it does not follow on."""
        data = _payload(event)
        first, last = int(data["U"]), int(data["u"])
        if last <= self.last_update_id:
            return False
        expected = self.last_update_id + 1
        if (self.first and not first <= expected <= last) or (not self.first and first != expected):
            raise SequenceGap(f"expected U {'<=' if self.first else '=='} {expected}, got U={first} u={last}")
        for price, qty in data["b"]:
            self.book.set("bid", price, qty)
        for price, qty in data["a"]:
            self.book.set("ask", price, qty)
        self.last_update_id = last
        self.first = False
        return True

    def snapshot_body(self, limit: int | None = None) -> str:
        """The book as a ``GET /api/v3/depth`` answer (levels as the exact texts received)."""
        body = {
            "lastUpdateId": self.last_update_id,
            "bids": [[level.price_text, level.qty_text] for level in self.book.sorted_bids(limit)],
            "asks": [[level.price_text, level.qty_text] for level in self.book.sorted_asks(limit)],
        }
        return json.dumps(body, separators=(",", ":"))


def binance_book(
    snapshot: Mapping[str, Any], events: Iterable[Mapping[str, Any]]
) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """The documented Binance procedure: ``(bids, asks)`` as ``price -> qty``."""
    local = BinanceLocalBook(snapshot)
    for event in events:
        local.apply(event)
    return _plain(local.book)


def _plain(book: Book) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {price: level.qty for price, level in book.bids.items()},
        {price: level.qty for price, level in book.asks.items()},
    )


# -- Coinbase -----------------------------------------------------------------------------------


def coinbase_load(snapshot: Mapping[str, Any]) -> Book:
    """A level2 ``snapshot`` message as a book."""
    book = Book()
    for price, qty in snapshot["bids"]:
        book.set("bid", price, qty)
    for price, qty in snapshot["asks"]:
        book.set("ask", price, qty)
    return book


def coinbase_apply(book: Book, update: Mapping[str, Any]) -> None:
    """Apply one ``l2update``: each change ``[side, price, size]``, ``buy`` being the bids."""
    for side, price, qty in update["changes"]:
        book.set("bid" if side == "buy" else "ask", price, qty)


def coinbase_book(
    snapshot: Mapping[str, Any], updates: Iterable[Mapping[str, Any]]
) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """Coinbase level2: ``(bids, asks)`` after the snapshot and every ``l2update`` of its product."""
    book = coinbase_load(snapshot)
    for update in updates:
        if update.get("type") == "l2update" and update.get("product_id") == snapshot["product_id"]:
            coinbase_apply(book, update)
    return _plain(book)


# -- Kraken -------------------------------------------------------------------------------------


def kraken_checksum(book: Book, *, price_precision: int, qty_precision: int) -> int:
    """Kraken v2's CRC32 of the top 10 asks (low to high) then the top 10 bids (high to low)."""

    def text(value: Decimal, places: int) -> str:
        return f"{value:.{places}f}".replace(".", "").lstrip("0")

    joined = "".join(
        text(level.price, price_precision) + text(level.qty, qty_precision)
        for level in [*book.sorted_asks(10), *book.sorted_bids(10)]
    )
    return zlib.crc32(joined.encode())


def parse_exact(text: str) -> Any:
    """JSON with every non-integer number kept as its exact text (a ``str``), never a ``float``."""
    return json.loads(text, parse_float=str)


class KrakenLocalBook:
    """One symbol's Kraken v2 book, checked against each message's checksum."""

    def __init__(self, *, depth: int = 10, price_precision: int = 1, qty_precision: int = 8) -> None:
        self.book = Book()
        self.depth = depth
        self.price_precision = price_precision
        self.qty_precision = qty_precision

    def checksum(self) -> int:
        """The book's checksum as it stands."""
        return kraken_checksum(self.book, price_precision=self.price_precision, qty_precision=self.qty_precision)

    def apply(self, data: Mapping[str, Any], *, snapshot: bool, verify: bool = True) -> None:
        """Apply one entry of a ``book`` message's ``data`` (numbers as exact texts: ``parse_exact``),
        truncate, and (with ``verify``) compare the checksum: ``ChecksumMismatch`` if it differs."""
        if snapshot:
            self.book = Book()
        for level in data["bids"]:
            self.book.set("bid", level["price"], level["qty"])
        for level in data["asks"]:
            self.book.set("ask", level["price"], level["qty"])
        self.book.truncate(self.depth)
        if verify and self.checksum() != int(data["checksum"]):
            raise ChecksumMismatch(f"{data.get('symbol')}: computed {self.checksum()}, message {data['checksum']}")

    def snapshot_frame(self, symbol: str) -> str:
        """The book as a v2 ``book`` snapshot frame, numbers written as the exact texts received."""

        def side(levels: Sequence[Level]) -> str:
            return ",".join(f'{{"price":{lv.price_text},"qty":{lv.qty_text}}}' for lv in levels)

        return (
            f'{{"channel":"book","type":"snapshot","data":[{{"symbol":{json.dumps(symbol)},'
            f'"bids":[{side(self.book.sorted_bids(self.depth))}],"asks":[{side(self.book.sorted_asks(self.depth))}],'
            f'"checksum":{self.checksum()}}}]}}'
        )


def kraken_book(
    messages: Iterable[str | Mapping[str, Any]],
    symbol: str,
    *,
    depth: int = 10,
    price_precision: int = 1,
    qty_precision: int = 8,
) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """Kraken v2 ``book`` messages (frames as text, or parsed with ``parse_exact``) of ``symbol``:
    ``(bids, asks)``; ``ChecksumMismatch`` at the first message whose checksum does not verify."""
    local = KrakenLocalBook(depth=depth, price_precision=price_precision, qty_precision=qty_precision)
    for message in messages:
        body = parse_exact(message) if isinstance(message, str) else message
        if body.get("channel") != "book":
            continue
        for data in body["data"]:
            if data["symbol"] == symbol:
                local.apply(data, snapshot=body["type"] == "snapshot")
    return _plain(local.book)
