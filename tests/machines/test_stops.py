"""Stops and loss limits (``machines.stops``): each at, just before and just after its threshold.

Ladder: the stop-loss and the trailing stop for a long and a short at their edges; the trailing
stop following a rising then falling mark; reset on flat and on a flip; fire-once; the mark's
validation; replayed real BTCUSDT trades (the exact trade a stop fires at, found by a plain loop
and by ``StopTracker``); the daily loss limit and the drawdown at, under and over; the sans-I/O rule.
"""

from __future__ import annotations

import ast
import csv
from decimal import Decimal
from pathlib import Path

import pytest

from machines.positions import Position
from machines.risk import InstrumentLimits, Limits
from machines.stops import Breach, EquityTracker, InvalidMark, StopSignal, StopTracker, TrackedStop

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "machines" / "stops.py"
TRADES = REPO / "tests" / "data" / "binance_btcusdt_trades_20210108.csv"
D = Decimal
BTC = "BTCUSDT"
ETH = "ETHUSDT"


def long(qty: str = "2", avg: str = "100") -> Position:
    return Position(BTC, qty=D(qty), cost=D(qty) * D(avg))


def short(qty: str = "2", avg: str = "100") -> Position:
    return Position(BTC, qty=-D(qty), cost=-D(qty) * D(avg))


def stop_loss(bps: str) -> InstrumentLimits:
    return InstrumentLimits(stop_loss_bps=D(bps))


def trailing(bps: str) -> InstrumentLimits:
    return InstrumentLimits(trailing_stop_bps=D(bps))


def run(tracker: StopTracker, position: Position, marks: list[str], limits: InstrumentLimits) -> list[StopSignal]:
    """Feed ``marks`` in order; the signals that fired (the tracker is only the caller's start)."""
    fired = []
    for mark in marks:
        tracker, signal = tracker.update(position, D(mark), limits)
        if signal is not None:
            fired.append(signal)
    return fired


# -- stop-loss ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mark", "fires"), [("99.01", False), ("99", True), ("98.99", True)])
def test_stop_loss_long_at_the_edge(mark: str, fires: bool) -> None:
    tracker, signal = StopTracker().update(long(), D(mark), stop_loss("100"))
    if fires:
        assert signal == StopSignal(BTC, "sell", D(2), "stop_loss", f"stop-loss: mark {mark} <= 99 (avg 100 - 100 bps)")
        assert tracker.get(BTC) == TrackedStop("long", D(mark), fired=True)
    else:
        assert signal is None
        assert tracker.get(BTC) == TrackedStop("long", D(mark))


@pytest.mark.parametrize(("mark", "fires"), [("100.99", False), ("101", True), ("101.01", True)])
def test_stop_loss_short_at_the_edge(mark: str, fires: bool) -> None:
    _, signal = StopTracker().update(short("0.5"), D(mark), stop_loss("100"))
    if fires:
        assert signal == StopSignal(
            BTC, "buy", D("0.5"), "stop_loss", f"stop-loss: mark {mark} >= 101 (avg 100 + 100 bps)"
        )
    else:
        assert signal is None


def test_stop_loss_uses_the_average_of_several_fills() -> None:
    position = Position(BTC, qty=D(3), cost=D(301))  # avg 100.333...
    _, signal = StopTracker().update(position, D("99"), stop_loss("100"))
    assert signal is not None
    assert signal.reason == "stop-loss: mark 99 <= 99.3300000000 (avg 100.3333333333 - 100 bps)"
    _, none = StopTracker().update(position, D("99.331"), stop_loss("100"))
    assert none is None


# -- trailing stop ------------------------------------------------------------------------------


@pytest.mark.parametrize(("mark", "fires"), [("108.91", False), ("108.9", True), ("108.89", True)])
def test_trailing_stop_long_at_the_edge(mark: str, fires: bool) -> None:
    tracker, signal = StopTracker().update(long(), D(100), trailing("100"))
    assert signal is None
    tracker, signal = tracker.update(long(), D(110), trailing("100"))  # the peak
    assert signal is None
    tracker, signal = tracker.update(long(), D(mark), trailing("100"))
    if fires:
        assert signal == StopSignal(
            BTC, "sell", D(2), "trailing_stop", f"trailing stop: mark {mark} <= 108.9 (peak 110 - 100 bps)"
        )
    else:
        assert signal is None
    assert tracker.get(BTC) == TrackedStop("long", D(110), fired=fires)


@pytest.mark.parametrize(("mark", "fires"), [("90.89", False), ("90.9", True), ("90.91", True)])
def test_trailing_stop_short_at_the_edge(mark: str, fires: bool) -> None:
    tracker, _ = StopTracker().update(short(), D(100), trailing("100"))
    tracker, _ = tracker.update(short(), D(90), trailing("100"))  # the trough
    tracker, signal = tracker.update(short(), D(mark), trailing("100"))
    if fires:
        assert signal == StopSignal(
            BTC, "buy", D(2), "trailing_stop", f"trailing stop: mark {mark} >= 90.9 (trough 90 + 100 bps)"
        )
    else:
        assert signal is None
    assert tracker.get(BTC) == TrackedStop("short", D(90), fired=fires)


def test_trailing_stop_follows_a_rising_then_falling_mark() -> None:
    limits = trailing("200")  # 2 %
    tracker = StopTracker()
    peaks = []
    marks = ["100", "101", "99", "105", "104", "103", "110", "108", "107.81", "107.8"]
    for mark in marks:
        before = tracker
        tracker, signal = tracker.update(long(), D(mark), limits)
        tracked = tracker.get(BTC)
        assert tracked is not None
        peaks.append(str(tracked.best_mark))
        if mark == "107.8":
            assert signal is not None
            assert signal.reason == "trailing stop: mark 107.8 <= 107.8 (peak 110 - 200 bps)"
            assert signal.kind == "trailing_stop"
        else:
            # 99 is within 2 % of 101 (98.98), 103 of 105 (102.90), 107.81 of 110 (107.80)
            assert signal is None, mark
            if mark in ("99", "104", "103", "108", "107.81"):
                assert tracker is before  # nothing changed: the same value
    assert peaks == ["100", "101", "101", "105", "105", "105", "110", "110", "110", "110"]


def test_trailing_stop_starts_at_the_first_mark_not_the_entry_price() -> None:
    # entered at 100, first seen at 90: the peak is 90, the stop 89.1
    tracker, signal = StopTracker().update(long(), D(90), trailing("100"))
    assert signal is None
    _, signal = tracker.update(long(), D("89.1"), trailing("100"))
    assert signal is not None
    assert signal.reason == "trailing stop: mark 89.1 <= 89.1 (peak 90 - 100 bps)"


def test_stop_loss_wins_when_both_fire() -> None:
    limits = InstrumentLimits(stop_loss_bps=D(100), trailing_stop_bps=D(100))
    _, signal = StopTracker().update(long(), D(98), limits)
    assert signal is not None
    assert signal.kind == "stop_loss"
    # the trailing stop fires alone when the stop-loss does not
    tracker, _ = StopTracker().update(long(), D(120), limits)
    _, signal = tracker.update(long(), D(118), limits)
    assert signal is not None
    assert signal.kind == "trailing_stop"


def test_no_stops_configured_tracks_but_never_fires() -> None:
    assert run(StopTracker(), long(), ["100", "1", "1000", "0.01"], InstrumentLimits()) == []


# -- reset, flip and fire-once ------------------------------------------------------------------


def test_a_stop_fires_once_per_position() -> None:
    limits = InstrumentLimits(stop_loss_bps=D(100), trailing_stop_bps=D(100))
    tracker, first = StopTracker().update(long(), D(98), limits)
    assert first is not None
    tracker, again = tracker.update(long(), D(97), limits)
    assert again is None
    # a partial fill of the closing order: still the same position, still fired
    tracker, again = tracker.update(long("1"), D(90), limits)
    assert again is None
    # the fired flag survives a new peak
    tracker, again = tracker.update(long("1"), D(200), limits)
    assert again is None
    assert tracker.get(BTC) == TrackedStop("long", D(200), fired=True)


def test_flat_resets_and_a_new_position_restarts_the_best_mark() -> None:
    limits = trailing("100")
    tracker, _ = StopTracker().update(long(), D(100), limits)
    tracker, signal = tracker.update(long(), D(99), limits)
    assert signal is not None
    flat = Position(BTC, realized_pnl=D(-2))
    tracker, signal = tracker.update(flat, D(99), limits)
    assert signal is None
    assert tracker.get(BTC) is None
    assert BTC not in tracker.positions
    same, signal = tracker.update(flat, D(50), limits)  # flat and untracked: nothing to do
    assert (same, signal) == (tracker, None)
    assert same is tracker
    # reopened: the peak starts over at the current mark and the stop can fire again
    tracker, signal = tracker.update(long(), D(50), limits)
    assert signal is None
    assert tracker.get(BTC) == TrackedStop("long", D(50))
    tracker, signal = tracker.update(long(), D("49.5"), limits)
    assert signal is not None


def test_a_flip_restarts_the_best_mark_and_rearms() -> None:
    limits = trailing("100")
    tracker, _ = StopTracker().update(long(), D(100), limits)
    tracker, signal = tracker.update(long(), D(99), limits)
    assert signal is not None
    # flipped short at 99 without passing through flat: trough 99, not fired
    tracker, signal = tracker.update(short(), D(99), limits)
    assert signal is None
    assert tracker.get(BTC) == TrackedStop("short", D(99))
    tracker, signal = tracker.update(short(), D("99.98"), limits)
    assert signal is None
    tracker, signal = tracker.update(short(), D("99.99"), limits)
    assert signal == StopSignal(
        BTC, "buy", D(2), "trailing_stop", "trailing stop: mark 99.99 >= 99.99 (trough 99 + 100 bps)"
    )


def test_instruments_are_tracked_independently_and_the_tracker_is_immutable() -> None:
    start = StopTracker()
    eth = Position(ETH, qty=D(-1), cost=D(-10))
    tracker, _ = start.update(long(), D(100), trailing("100"))
    tracker, _ = tracker.update(eth, D(10), trailing("100"))
    assert tracker.get(BTC) == TrackedStop("long", D(100))
    assert tracker.get(ETH) == TrackedStop("short", D(10))
    assert start.get(BTC) is None
    with pytest.raises(TypeError):
        tracker.positions[BTC] = TrackedStop("long", D(1))  # type: ignore[index]
    tracker, _ = tracker.update(Position(ETH), D(10), trailing("100"))
    assert set(tracker.positions) == {BTC}
    assert StopTracker({BTC: TrackedStop("long", D(100))}) == StopTracker().update(long(), D(100), trailing("1"))[0]


@pytest.mark.parametrize("mark", [D(0), D(-1), D("NaN"), D("Infinity"), 100.0])
def test_a_bad_mark_raises(mark: object) -> None:
    with pytest.raises(InvalidMark, match="mark must be a positive finite Decimal") as info:
        StopTracker().update(long(), mark, stop_loss("1"))  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


# -- replayed real trades -----------------------------------------------------------------------


def replayed_prices() -> list[Decimal]:
    with TRADES.open(newline="", encoding="utf-8") as handle:
        return [D(row["price"]) for row in csv.DictReader(handle)]


def first_trigger_by_loop(prices: list[Decimal], kind: str, is_long: bool, bps: Decimal) -> int | None:
    """The index of the first trade at which the stop fires: a plain loop, independent of StopTracker."""
    entry = best = prices[0]
    for index, price in enumerate(prices):
        best = (max if is_long else min)(best, price)
        base = entry if kind == "stop_loss" else best
        if is_long and price <= base - base * bps / 10000:
            return index
        if not is_long and price >= base + base * bps / 10000:
            return index
    return None


@pytest.mark.parametrize(
    ("kind", "is_long", "bps", "index", "price"),
    [
        ("stop_loss", True, "0.5", 12, "39430.31"),  # 39432.48 - 0.5 bps = 39430.508376
        ("stop_loss", False, "10", 170, "39473.04"),  # 39432.48 + 10 bps = 39471.91248
        ("trailing_stop", True, "10", 1638, "39507.92"),  # peak 39550.00 at trade 1452 - 10 bps = 39510.45
        ("trailing_stop", False, "5", 58, "39451.98"),  # trough 39430.30 + 5 bps = 39450.01515
    ],
)
def test_stops_on_replayed_btcusdt_trades(kind: str, is_long: bool, bps: str, index: int, price: str) -> None:
    prices = replayed_prices()
    assert len(prices) == 2001
    assert prices[0] == D("39432.48")
    entry = prices[0]
    position = (
        Position(BTC, qty=D("0.5"), cost=D("0.5") * entry)
        if is_long
        else Position(BTC, qty=D("-0.5"), cost=D("-0.5") * entry)
    )
    limits = stop_loss(bps) if kind == "stop_loss" else trailing(bps)
    expected = first_trigger_by_loop(prices, kind, is_long, D(bps))
    assert expected == index
    assert prices[index] == D(price)
    tracker = StopTracker()
    fired = []
    for i, mark in enumerate(prices):
        tracker, signal = tracker.update(position, mark, limits)
        if signal is not None:
            fired.append((i, mark, signal))
    assert len(fired) == 1  # once, however far the price goes on
    ((at, mark, signal),) = fired
    assert (at, mark) == (index, D(price))
    assert signal.kind == kind
    assert (signal.side, signal.qty) == ("sell" if is_long else "buy", D("0.5"))
    assert signal.reason.startswith(("stop-loss" if kind == "stop_loss" else "trailing stop") + f": mark {price} ")


# -- loss limits --------------------------------------------------------------------------------


@pytest.mark.parametrize(("pnl", "breaches"), [("-99.99", False), ("-100", False), ("-100.01", True)])
def test_daily_loss_limit_at_under_and_over(pnl: str, breaches: bool) -> None:
    limits = Limits(daily_loss_limit=D(100))
    tracker, breach = EquityTracker.start(D(0)).update(D(pnl), limits)
    if breaches:
        assert breach == Breach(
            "daily_loss_limit",
            D("100.01"),
            D(100),
            "daily loss 100.01 exceeds daily_loss_limit 100 (P&L -100.01, session start 0)",
        )
        assert tracker.breached == {"daily_loss_limit"}
    else:
        assert breach is None
        assert tracker.breached == frozenset()


def test_daily_loss_counts_from_the_session_start_not_zero() -> None:
    limits = Limits(daily_loss_limit=D(100))
    start = EquityTracker.start(D(500))  # earlier sessions made 500
    assert start == EquityTracker(D(500), D(500))
    assert start.update(D(400), limits)[1] is None
    _, breach = start.update(D("399.99"), limits)
    assert breach is not None
    assert breach.reason == "daily loss 100.01 exceeds daily_loss_limit 100 (P&L 399.99, session start 500)"


@pytest.mark.parametrize(("pnl", "breaches"), [("30.01", False), ("30", False), ("29.99", True)])
def test_max_drawdown_with_a_rising_peak(pnl: str, breaches: bool) -> None:
    limits = Limits(max_drawdown=D(50))
    tracker = EquityTracker.start(D(0))
    for value in ["10", "5", "40", "80", "60"]:  # the peak rises to 80
        tracker, breach = tracker.update(D(value), limits)
        assert breach is None
    assert tracker.peak == D(80)
    tracker, breach = tracker.update(D(pnl), limits)
    if breaches:
        assert breach == Breach(
            "max_drawdown", D("50.01"), D(50), "drawdown 50.01 exceeds max_drawdown 50 (P&L 29.99, session peak 80)"
        )
    else:
        assert breach is None
    assert tracker.peak == D(80)


def test_the_peak_is_updated_before_the_drawdown_check() -> None:
    tracker, breach = EquityTracker.start(D(0)).update(D(100), Limits(max_drawdown=D(1)))
    assert breach is None
    assert tracker.peak == D(100)


def test_each_limit_fires_once() -> None:
    limits = Limits(daily_loss_limit=D(100), max_drawdown=D(150))
    tracker = EquityTracker.start(D(0))
    tracker, breach = tracker.update(D(100), limits)  # peak 100
    tracker, breach = tracker.update(D(-101), limits)  # loss 101 and drawdown 201: the daily loss first
    assert breach is not None
    assert breach.limit == "daily_loss_limit"
    tracker, breach = tracker.update(D(-101), limits)  # the drawdown on the next update
    assert breach is not None
    assert breach.limit == "max_drawdown"
    assert breach.value == D(201)
    assert tracker.breached == {"daily_loss_limit", "max_drawdown"}
    for value in ["-500", "-101", "1000", "-2000"]:
        tracker, breach = tracker.update(D(value), limits)
        assert breach is None
    assert tracker.peak == D(1000)


def test_no_loss_limits_never_breach_and_unchanged_is_the_same_value() -> None:
    tracker = EquityTracker.start(D(0))
    same, breach = tracker.update(D(-1_000_000), Limits())
    assert (same, breach) == (tracker, None)
    assert same is tracker
    higher, _ = tracker.update(D(5), Limits())
    assert higher == EquityTracker(D(0), D(5))


# -- the sans-I/O rule --------------------------------------------------------------------------


def test_the_module_is_sans_io() -> None:
    text = SOURCE.read_text(encoding="utf-8")
    tree = ast.parse(text)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= {"__future__", "collections", "dataclasses", "decimal", "types", "typing", "machines"}
    assert "float(" not in text
    assert "time" not in imported
