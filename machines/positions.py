"""Positions: a pure fold over fills, per instrument, in ``Decimal``. Not a state machine.

A position keeps its signed quantity and the signed *cost* of that quantity (average-cost basis),
not a rounded average price: ``avg_px`` is derived (``cost / qty``). Reducing by ``c`` of ``Q``
units removes ``cost * c / |Q|`` from the cost and books the difference to the sale price as
realized P&L; whatever rounding that division does, the same amount leaves ``cost`` and enters
``realized_pnl``, so the accounting identity holds exactly::

    realized_pnl + unrealized_pnl(mark) - fees == cash + qty * mark

where ``cash`` is every fill's cash flow (sells in, buys out, fees out). A fill larger than the
open quantity on the other side closes it and opens the rest the other way (a flip) at the fill
price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from types import MappingProxyType

from machines.errors import InvalidData

ZERO = Decimal(0)

# Arithmetic runs with 60 significant digits and the cost taken off a reduced position is rounded
# to 20 decimal places: every other sum is then exact, so the identity below holds to the digit.
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)
_COST_QUANTUM = Decimal("1e-20")


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: ``side`` is ``buy`` or ``sell``; ``qty`` and ``price`` are positive."""

    instrument: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal = ZERO
    trade_id: str = ""

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise InvalidData(f"fill side must be buy or sell, got {self.side!r}")
        for name in ("qty", "price", "fee"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise InvalidData(f"fill {name} must be a finite Decimal, got {value!r}")
        if self.qty <= 0 or self.price <= 0:
            raise InvalidData(f"fill qty and price must be positive, got {self.qty} @ {self.price}")

    @property
    def signed_qty(self) -> Decimal:
        """``qty`` for a buy, ``-qty`` for a sell."""
        return self.qty if self.side == "buy" else -self.qty


@dataclass(frozen=True, slots=True)
class Position:
    """The position in one instrument after some fills (immutable; ``apply`` returns a new one)."""

    instrument: str
    qty: Decimal = ZERO
    cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    cash: Decimal = ZERO
    fills: int = 0

    @property
    def avg_px(self) -> Decimal | None:
        """Average entry price of the open quantity; ``None`` when flat."""
        return self.cost / self.qty if self.qty else None

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        """P&L of the open quantity marked at ``mark``."""
        with localcontext(_CONTEXT):
            return self.qty * mark - self.cost

    def total_pnl(self, mark: Decimal) -> Decimal:
        """Realized + unrealized, net of fees."""
        with localcontext(_CONTEXT):
            return self.realized_pnl + self.unrealized_pnl(mark) - self.fees

    def apply(self, fill: Fill) -> Position:
        """The position after ``fill``; raises ``InvalidData`` for another instrument's fill."""
        if fill.instrument != self.instrument:
            raise InvalidData(f"fill for {fill.instrument!r} applied to the {self.instrument!r} position")
        signed = fill.signed_qty
        qty, cost, realized = self.qty, self.cost, self.realized_pnl
        with localcontext(_CONTEXT):
            if qty == 0 or (qty > 0) == (signed > 0):
                qty, cost = qty + signed, cost + signed * fill.price
            else:
                closing = min(abs(signed), abs(qty))
                closed = closing if signed > 0 else -closing  # signed like the fill
                whole = closing == abs(qty)
                removed = cost if whole else (cost * closing / abs(qty)).quantize(_COST_QUANTUM)
                realized += -closed * fill.price - removed
                qty, cost = qty + closed, cost - removed
                rest = signed - closed
                if rest:
                    qty, cost = qty + rest, cost + rest * fill.price
            fees = self.fees + fill.fee
            cash = self.cash - signed * fill.price - fill.fee
        return replace(self, qty=qty, cost=cost, realized_pnl=realized, fees=fees, cash=cash, fills=self.fills + 1)


class Positions:
    """Positions of every instrument, folded from fills as they arrive."""

    def __init__(self) -> None:
        self._by_instrument: dict[str, Position] = {}

    def apply(self, fill: Fill) -> Position:
        """Fold one fill in; return the instrument's new position."""
        position = self._by_instrument.get(fill.instrument) or Position(fill.instrument)
        position = position.apply(fill)
        self._by_instrument[fill.instrument] = position
        return position

    def get(self, instrument: str) -> Position:
        """The position in ``instrument`` (flat if it never traded)."""
        return self._by_instrument.get(instrument) or Position(instrument)

    def snapshot(self) -> Mapping[str, Position]:
        """A read-only view of every instrument's position."""
        return MappingProxyType(dict(self._by_instrument))

    @classmethod
    def rebuild(cls, fills: Iterable[Fill]) -> Positions:
        """The positions after ``fills``, in one pass."""
        positions = cls()
        for fill in fills:
            positions.apply(fill)
        return positions
