"""Market data for the paper venue: CSV readers for the files in ``data/market`` and a random walk.

Three formats are recognised by their header line (see ``data/market/SOURCES.md``):

* Binance trades: ``ts_ms,trade_id,price,qty,buyer_is_maker`` (instrument BTCUSDT; a buyer who is
  the maker means the taker sold);
* Binance quotes: ``ts_ms,symbol,bid,bid_qty,ask,ask_qty``;
* Kraken trades: ``ts,trade_id,price,qty,side,ord_type,misc`` (instrument XBTUSDT; ``ts`` in epoch
  seconds with 6 decimals; ``side`` is the taker's).

Readers yield typed events (``MarketTrade``, ``MarketQuote``; Decimal prices and sizes, ``ts_ms``
ints) in time order, and raise ``MarketDataError`` naming the file and line of a bad row (a row out
of time order is a bad row). ``merge`` interleaves streams by time; ``random_walk`` generates a
seeded, endless stream of quotes and trades for when no file is given.
"""

from __future__ import annotations

import csv
import heapq
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from kernel.venue.errors import SimulatorError, SimulatorSettingError
from kernel.venue.settings import BUNDLED_DATA as BUNDLED_DATA  # where it was defined before
from machines.decimals import DecimalError, Sign, parse_decimal

Side = Literal["buy", "sell"]

BINANCE_TRADES = ("ts_ms", "trade_id", "price", "qty", "buyer_is_maker")
BINANCE_QUOTES = ("ts_ms", "symbol", "bid", "bid_qty", "ask", "ask_qty")
KRAKEN_TRADES = ("ts", "trade_id", "price", "qty", "side", "ord_type", "misc")
BINANCE_INSTRUMENT = "BTCUSDT"
KRAKEN_INSTRUMENT = "XBTUSDT"


class MarketDataError(SimulatorError, ValueError):
    """A market data file that cannot be read; names the file and (1-based) line."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}, line {line}: {problem}")


@dataclass(frozen=True, slots=True)
class MarketTrade:
    """A trade printed on the market; ``taker_side`` is the aggressor's side."""

    instrument: str
    trade_id: str
    price: Decimal
    qty: Decimal
    taker_side: Side
    ts_ms: int


@dataclass(frozen=True, slots=True)
class MarketQuote:
    """Best bid and ask with their sizes."""

    instrument: str
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts_ms: int
    sizes_known: bool = True
    """False for a live quote without sizes (sent on as 0): the engine then takes the touch as deep."""


MarketEvent = MarketTrade | MarketQuote


class _BadRow(SimulatorError, ValueError):
    """One row's problem; ``read_csv`` turns it into a ``MarketDataError`` with the file and line."""


def _decimal(text: str, what: str, *, positive: bool = True) -> Decimal:
    sign = Sign.positive if positive else Sign.non_negative
    try:
        return parse_decimal(text, what, sign=sign)
    except DecimalError as exc:
        unreadable = "is not a number" in str(exc) or "not a decimal" in str(exc)
    problem = "is not a decimal" if unreadable else f"must be {sign.value}"  # NaN, infinities, out of range
    raise _BadRow(f"{what} {problem}: {text!r}")


def _int(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _BadRow(f"{what} is not a non-negative integer: {text!r}")
    return int(text)


def _binance_trade(row: list[str]) -> MarketTrade:
    ts, trade_id, price, qty, maker = row
    if maker not in ("true", "false"):
        raise _BadRow(f"buyer_is_maker must be true or false: {maker!r}")
    return MarketTrade(
        instrument=BINANCE_INSTRUMENT,
        trade_id=str(_int(trade_id, "trade_id")),
        price=_decimal(price, "price"),
        qty=_decimal(qty, "qty"),
        taker_side="sell" if maker == "true" else "buy",
        ts_ms=_int(ts, "ts_ms"),
    )


def _binance_quote(row: list[str]) -> MarketQuote:
    ts, symbol, bid, bid_qty, ask, ask_qty = row
    if not symbol:
        raise _BadRow("symbol is empty")
    quote = MarketQuote(
        instrument=symbol,
        bid=_decimal(bid, "bid"),
        bid_qty=_decimal(bid_qty, "bid_qty", positive=False),
        ask=_decimal(ask, "ask"),
        ask_qty=_decimal(ask_qty, "ask_qty", positive=False),
        ts_ms=_int(ts, "ts_ms"),
    )
    if quote.bid > quote.ask:
        raise _BadRow(f"crossed quote: bid {bid} above ask {ask}")
    return quote


def _kraken_trade(row: list[str]) -> MarketTrade:
    ts, trade_id, price, qty, side_text, _ord_type, _misc = row
    if side_text == "buy":
        side: Side = "buy"
    elif side_text == "sell":
        side = "sell"
    else:
        raise _BadRow(f"side must be buy or sell: {side_text!r}")
    seconds = _decimal(ts, "ts", positive=False)
    return MarketTrade(
        instrument=KRAKEN_INSTRUMENT,
        trade_id=str(_int(trade_id, "trade_id")),
        price=_decimal(price, "price"),
        qty=_decimal(qty, "qty"),
        taker_side=side,
        ts_ms=int(seconds * 1000),  # truncated: 1762795433.971745 s -> 1762795433971 ms
    )


_FORMATS: dict[tuple[str, ...], Callable[[list[str]], MarketEvent]] = {
    BINANCE_TRADES: _binance_trade,
    BINANCE_QUOTES: _binance_quote,
    KRAKEN_TRADES: _kraken_trade,
}


def read_csv(path: str) -> Iterator[MarketEvent]:
    """Yield the events of one CSV file, detecting its format from the header.

    Raises ``MarketDataError`` (file, line, problem) for an unreadable file, an unknown header, a
    bad row or a row earlier than the one before it; ``OSError`` is turned into it too.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            try:
                header = tuple(next(rows))
            except StopIteration:
                raise MarketDataError(path, 1, "empty file: no header") from None
            parse = _FORMATS.get(header)
            if parse is None:
                known = "; ".join(",".join(h) for h in _FORMATS)
                raise MarketDataError(path, 1, f"unknown header {','.join(header)!r} (known: {known})")
            last_ts = -1
            for row in rows:
                line = rows.line_num
                if len(row) != len(header):
                    raise MarketDataError(path, line, f"expected {len(header)} fields, got {len(row)}")
                try:
                    event = parse(row)
                except _BadRow as exc:
                    raise MarketDataError(path, line, str(exc)) from None
                if event.ts_ms < last_ts:
                    raise MarketDataError(path, line, f"out of time order: {event.ts_ms} after {last_ts}")
                last_ts = event.ts_ms
                yield event
    except OSError as exc:
        raise MarketDataError(path, 0, f"cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MarketDataError(path, 0, f"not a CSV text file: {exc}") from None


def merge(*streams: Iterable[MarketEvent]) -> Iterator[MarketEvent]:
    """Interleave time-ordered streams by ``ts_ms``; on a tie the earlier stream's event comes first."""
    return heapq.merge(*streams, key=lambda event: event.ts_ms)


def load(paths: Sequence[str]) -> Iterator[MarketEvent]:
    """Every event of every file, merged by time (each file read lazily)."""
    return merge(*(read_csv(path) for path in paths))


def instruments(paths: Sequence[str]) -> tuple[str, ...]:
    """The instruments the files hold, sorted (reads every file once: they are small)."""
    return tuple(sorted({event.instrument for event in load(paths)}))


def random_walk(
    seed: int,
    *,
    instrument: str = BINANCE_INSTRUMENT,
    start_price: Decimal = Decimal("40000.00"),
    start_ts_ms: int = 0,
    step_ms: int = 100,
    tick: Decimal = Decimal("0.01"),
    count: int | None = None,
) -> Iterator[MarketEvent]:
    """A seeded random walk: alternately a quote around the mid and a trade at the bid or ask.

    The same ``seed`` (and arguments) gives the same events. Prices move by a few ticks per step
    and stay positive; sizes are between 0.0001 and 1 (6 dp). ``count`` bounds the number of
    events (``None``: endless).
    """
    if start_price <= 0 or tick <= 0 or step_ms < 0:
        raise SimulatorSettingError("start_price and tick must be positive and step_ms non-negative")
    rng = random.Random(seed)
    size_unit = Decimal("0.000001")
    mid = start_price.quantize(tick)
    ts = start_ts_ms
    produced = 0
    trade_number = 0
    while count is None or produced < count:
        mid = max(tick * 10, mid + tick * rng.randint(-5, 5))
        half_spread = tick * rng.randint(1, 3)
        bid, ask = mid - half_spread, mid + half_spread
        quote = MarketQuote(
            instrument=instrument,
            bid=bid,
            bid_qty=size_unit * rng.randint(100, 1_000_000),
            ask=ask,
            ask_qty=size_unit * rng.randint(100, 1_000_000),
            ts_ms=ts,
        )
        yield quote
        produced += 1
        ts += step_ms
        if count is not None and produced >= count:
            return
        trade_number += 1
        taker: Side = "buy" if rng.random() < 0.5 else "sell"
        # Trades sometimes print a tick beyond the touch, so resting orders at the touch can fill.
        through = tick * rng.randint(0, 2)
        yield MarketTrade(
            instrument=instrument,
            trade_id=str(trade_number),
            price=ask + through if taker == "buy" else max(tick, bid - through),
            qty=size_unit * rng.randint(100, 200_000),
            taker_side=taker,
            ts_ms=ts,
        )
        produced += 1
        ts += step_ms
