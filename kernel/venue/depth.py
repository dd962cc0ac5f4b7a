"""Walking a live order book: what a taking order gets from each price level (pure, no I/O).

On live market data (``kernel.venue.live``) a market order, or the marketable part of a limit
order, takes the live book's levels best first, each at its own price, up to the order's size and
limit, less what the venue's own orders already took from a level since the book last changed
(``taken``). Where the source keeps no book, the engine fills against the top of book instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Literal, Protocol

Level = tuple[Decimal, Decimal]
ZERO = Decimal(0)


class Depth(Protocol):
    """A live order book as the engine reads it (``kernel.feed.book.OrderBook`` is one)."""

    def bid_levels(self, depth: int | None = None) -> list[Level]:
        """Bids, highest first."""
        ...

    def ask_levels(self, depth: int | None = None) -> list[Level]:
        """Asks, lowest first."""
        ...


DepthOf = Callable[[str], Depth | None]
"""An instrument's live book (``None``: none kept, or not in sync)."""
MAX_LEVELS = 1000
"""The most levels one order walks (a book snapshot of Binance holds at most 1000 a side)."""


def walk(
    levels: Iterable[Level],
    side: Literal["buy", "sell"],
    qty: Decimal,
    limit: Decimal | None,
    taken: Mapping[Decimal, Decimal],
) -> list[Level]:
    """The fills ``(price, qty)`` of a ``side`` order of ``qty`` (``limit`` ``None``: a market order)
    against the opposite side's ``levels`` (best first), each level less ``taken[price]``."""
    fills: list[Level] = []
    left = qty
    for price, size in levels:
        if left <= 0:
            break
        if limit is not None and (price > limit if side == "buy" else price < limit):
            break
        available = size - taken.get(price, ZERO)
        if available <= 0:
            continue
        take = min(available, left)
        fills.append((price, take))
        left -= take
    return fills


def opposite_levels(book: Depth, side: Literal["buy", "sell"]) -> list[Level]:
    """What a ``side`` order takes: the asks for a buy, the bids for a sell (best first)."""
    return book.ask_levels(MAX_LEVELS) if side == "buy" else book.bid_levels(MAX_LEVELS)
