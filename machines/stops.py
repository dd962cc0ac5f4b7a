"""Stop-loss, trailing stop and loss limits: pure watchers of the mark and the P&L.

The kernel feeds every new mark (last trade or mid) through ``StopTracker.update`` with the
instrument's position and limits, and every new session P&L through ``EquityTracker.update``. Both
are immutable values the kernel replaces after each call, like ``machines.risk.Rates``:

* ``StopTracker`` remembers, per instrument, the side of the position it tracks, the best mark
  since that position opened (the peak for a long, the trough for a short) and whether a stop has
  fired. A ``StopSignal`` says which order closes the whole position and why; the kernel emulates
  the stop by sending that reducing market order and journaling the reason. A stop fires at most
  once per position: again only after the position went flat or flipped.
* ``EquityTracker`` remembers the session's starting P&L, its peak and which limits were breached.
  A ``Breach`` is reported once per limit; the kernel halts trading with the trading machine's
  ``risk_breach``.

Nothing here reads a clock or does I/O; money is ``Decimal`` with a 60-digit context, never float.
A threshold is inclusive for stops (a mark exactly at the stop price fires) and exclusive for the
loss limits (a loss exactly at the limit is allowed; one more unit is not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from types import MappingProxyType
from typing import Literal

from machines.errors import StateMachineError
from machines.positions import Position
from machines.risk import BPS, InstrumentLimits, Limits

StopKind = Literal["stop_loss", "trailing_stop"]
LossLimit = Literal["daily_loss_limit", "max_drawdown"]
PositionSide = Literal["long", "short"]

_CONTEXT = Context(prec=60)
_SHOWN = Decimal("1e-10")


def _n(number: Decimal) -> str:
    """``number`` as plain text; a long expansion (an average of several fills) cut to 10 places."""
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -10:
        number = number.quantize(_SHOWN)
    return f"{number:f}"


class InvalidMark(StateMachineError, ValueError):
    """A mark that is not a positive, finite ``Decimal`` was given to ``StopTracker.update``."""


@dataclass(frozen=True, slots=True)
class StopSignal:
    """Close the whole position: ``side`` is opposite to it, ``qty`` its absolute size."""

    instrument: str
    side: str
    qty: Decimal
    kind: StopKind
    reason: str


@dataclass(frozen=True, slots=True)
class TrackedStop:
    """One instrument's open position as the tracker sees it."""

    side: PositionSide
    best_mark: Decimal
    fired: bool = False


@dataclass(frozen=True, slots=True)
class StopTracker:
    """Per instrument, the tracked position side, its best mark and whether a stop fired.

    Start with ``StopTracker()``; replace it with the first element ``update`` returns.
    """

    positions: Mapping[str, TrackedStop] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", MappingProxyType(dict(self.positions)))

    def get(self, instrument: str) -> TrackedStop | None:
        """The tracked state of ``instrument`` (``None``: flat or never seen)."""
        return self.positions.get(instrument)

    def _with(self, instrument: str, tracked: TrackedStop | None) -> StopTracker:
        positions = dict(self.positions)
        if tracked is None:
            del positions[instrument]
        else:
            positions[instrument] = tracked
        return StopTracker(positions)

    def update(
        self, position: Position, mark: Decimal, limits: InstrumentLimits
    ) -> tuple[StopTracker, StopSignal | None]:
        """The tracker after ``mark`` for ``position``, and the stop to act on, if one fires now.

        A flat position forgets the instrument; a new position (from flat or flipped) starts its
        best mark at ``mark``. Raises ``InvalidMark`` (a ``ValueError``) for a mark that is not
        positive and finite.
        """
        if not isinstance(mark, Decimal) or not mark.is_finite() or mark <= 0:
            raise InvalidMark(f"mark must be a positive finite Decimal, got {mark!r}")
        instrument = position.instrument
        previous = self.positions.get(instrument)
        if position.qty == 0:
            return (self if previous is None else self._with(instrument, None)), None
        side: PositionSide = "long" if position.qty > 0 else "short"
        if previous is None or previous.side != side:
            tracked = TrackedStop(side, mark)
        elif (mark > previous.best_mark) if side == "long" else (mark < previous.best_mark):
            tracked = TrackedStop(side, mark, previous.fired)
        else:
            tracked = previous
        signal = None if tracked.fired else _stop(position, side, mark, tracked.best_mark, limits)
        if signal is not None:
            tracked = TrackedStop(side, tracked.best_mark, fired=True)
        return (self if tracked is previous else self._with(instrument, tracked)), signal


def _stop(
    position: Position, side: PositionSide, mark: Decimal, best: Decimal, limits: InstrumentLimits
) -> StopSignal | None:
    long = side == "long"
    with localcontext(_CONTEXT):
        if limits.stop_loss_bps is not None:
            avg = position.cost / position.qty
            stop = _away(avg, limits.stop_loss_bps, long)
            if _crossed(mark, stop, long):
                reason = _reason("stop-loss", mark, stop, long, "avg", avg, limits.stop_loss_bps)
                return _close(position, "stop_loss", reason)
        if limits.trailing_stop_bps is not None:
            stop = _away(best, limits.trailing_stop_bps, long)
            if _crossed(mark, stop, long):
                best_name = "peak" if long else "trough"
                reason = _reason("trailing stop", mark, stop, long, best_name, best, limits.trailing_stop_bps)
                return _close(position, "trailing_stop", reason)
    return None


def _away(price: Decimal, bps: Decimal, long: bool) -> Decimal:
    """The stop price ``bps`` against a position from ``price``: below for a long, above for a short."""
    move = price * bps / BPS
    return price - move if long else price + move


def _crossed(mark: Decimal, stop: Decimal, long: bool) -> bool:
    return mark <= stop if long else mark >= stop


def _reason(what: str, mark: Decimal, stop: Decimal, long: bool, name: str, base: Decimal, bps: Decimal) -> str:
    compare, sign = ("<=", "-") if long else (">=", "+")
    return f"{what}: mark {_n(mark)} {compare} {_n(stop)} ({name} {_n(base)} {sign} {_n(bps)} bps)"


def _close(position: Position, kind: StopKind, reason: str) -> StopSignal:
    side = "sell" if position.qty > 0 else "buy"
    return StopSignal(position.instrument, side, abs(position.qty), kind, reason)


# -- loss limits --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Breach:
    """A loss limit passed: ``value`` is the loss (or drawdown), ``threshold`` the limit."""

    limit: LossLimit
    value: Decimal
    threshold: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class EquityTracker:
    """The session's starting P&L, its peak and the limits already breached.

    Start a session with ``EquityTracker.start(total_pnl)``; replace it with the first element
    ``update`` returns. ``total_pnl`` is realized + unrealized − fees summed over the positions.
    """

    start_pnl: Decimal
    peak: Decimal
    breached: frozenset[LossLimit] = frozenset()

    @classmethod
    def start(cls, total_pnl: Decimal) -> EquityTracker:
        """A session starting at ``total_pnl`` (also its first peak)."""
        return cls(total_pnl, total_pnl)

    def update(self, total_pnl: Decimal, limits: Limits) -> tuple[EquityTracker, Breach | None]:
        """The tracker after ``total_pnl`` (the peak first), and a limit newly breached, if any.

        A breach is reported once per limit. When both are breached by the same update the daily
        loss limit is reported; the drawdown is reported by the next update that still breaches it.
        """
        with localcontext(_CONTEXT):
            peak = max(self.peak, total_pnl)
            loss = self.start_pnl - total_pnl
            drawdown = peak - total_pnl
        breach = None
        daily = limits.daily_loss_limit
        if daily is not None and loss > daily and "daily_loss_limit" not in self.breached:
            reason = (
                f"daily loss {_n(loss)} exceeds daily_loss_limit {_n(daily)} "
                f"(P&L {_n(total_pnl)}, session start {_n(self.start_pnl)})"
            )
            breach = Breach("daily_loss_limit", loss, daily, reason)
        drawdown_limit = limits.max_drawdown
        if (
            breach is None
            and drawdown_limit is not None
            and drawdown > drawdown_limit
            and "max_drawdown" not in self.breached
        ):
            reason = (
                f"drawdown {_n(drawdown)} exceeds max_drawdown {_n(drawdown_limit)} "
                f"(P&L {_n(total_pnl)}, session peak {_n(peak)})"
            )
            breach = Breach("max_drawdown", drawdown, drawdown_limit, reason)
        if breach is None:
            return (self if peak == self.peak else EquityTracker(self.start_pnl, peak, self.breached)), None
        return EquityTracker(self.start_pnl, peak, self.breached | {breach.limit}), breach
