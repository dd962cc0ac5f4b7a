"""Positions: a pure fold over fills, per instrument, in ``Decimal``; and the ``position`` machine.

A position keeps its signed quantity and the signed *cost* of that quantity (average-cost basis),
not a rounded average price: ``avg_px`` is derived (``cost / qty``). Reducing by ``c`` of ``Q``
units removes ``cost * c / |Q|`` from the cost and books the difference to the sale price as
realized P&L; whatever rounding that division does, the same amount leaves ``cost`` and enters
``realized_pnl``, so the accounting identity holds exactly::

    realized_pnl + unrealized_pnl(mark) - fees == cash + qty * mark

where ``cash`` is every fill's cash flow (sells in, buys out, fees out). A fill larger than the
open quantity on the other side closes it and opens the rest the other way (a flip) at the fill
price.

The fold is ``Position.apply``; ``Positions`` keeps one ``Position`` per instrument in memory. The
``position`` machine (``POSITION``, one entity per instrument) checkpoints the same fold in the
journal: each ``fill`` trigger applies ``Position.apply`` as its effect and is journaled in the
same group commit as the order fill that caused it, so the current-state table holds every
position and resuming reads one live row per instrument instead of every fill ever journaled. Its
guards pick the state the fill leads to (``flat``, ``long`` or ``short``: the sign of ``qty``);
``position_of(entity)`` turns an entity back into a ``Position``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from machines.base import Data, Entity, Rule, StateMachine
from machines.decimals import DecimalError, Sign, parse_decimal
from machines.errors import InvalidData, StateMachineError
from machines.registry import register
from machines.shared_parse import LastParse

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
    def of(cls, positions: Iterable[Position]) -> Positions:
        """Positions holding exactly ``positions`` (one per instrument)."""
        made = cls()
        for position in positions:
            made._by_instrument[position.instrument] = position
        return made

    @classmethod
    def rebuild(cls, fills: Iterable[Fill]) -> Positions:
        """The positions after ``fills``, in one pass."""
        positions = cls()
        for fill in fills:
            positions.apply(fill)
        return positions


# -- the ``position`` machine: the fold, checkpointed in the journal ---------------------------


class PositionState(StrEnum):
    """Which side a position is on: the sign of its ``qty``."""

    flat = "flat"
    long = "long"
    short = "short"


S = PositionState

DECIMAL_FIELDS = ("qty", "cost", "realized_pnl", "fees", "cash")
"""The entity data fields held as ``Decimal`` (``fills`` is an int, ``last_trade_id`` a str or None)."""

FILL_FIELDS = frozenset({"side", "qty", "price", "fee", "trade_id", "client_order_id"})
"""The fields a ``fill`` trigger may carry (``fee`` is optional, default 0)."""


def _init(data: Data) -> dict[str, Any]:
    if data:
        raise InvalidData(f"unknown position fields: {', '.join(sorted(data))} (a position starts flat)")
    return {**dict.fromkeys(DECIMAL_FIELDS, ZERO), "fills": 0, "last_trade_id": None}


def _decode(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for name in DECIMAL_FIELDS:
        out[name] = Decimal(out[name])
    return out


def _decimal(value: object, name: str, sign: Sign) -> Decimal:
    try:
        return parse_decimal(value, name, sign=sign)
    except DecimalError as exc:
        raise InvalidData(str(exc)) from None


_FILLS: LastParse[Fill] = LastParse()


def _fill(entity: Entity, data: Data) -> Fill:
    """The trigger's data as a ``Fill`` of the entity's instrument; ``InvalidData`` when unusable.

    Built once per trigger: the guards and the effect of one ``fire`` share it (``LastParse``; the
    key holds every value read, the instrument and the number of fields, so the unknown-field check
    is covered too).
    """
    key = (
        entity.entity_id,
        len(data),
        data.get("side"),
        data.get("trade_id"),
        data.get("client_order_id"),
        data.get("qty"),
        data.get("price"),
        data.get("fee"),
    )
    fill = _FILLS.get(data, key)
    if fill is not None:
        return fill
    return _FILLS.put(data, key, _build_fill(entity, data))


def _build_fill(entity: Entity, data: Data) -> Fill:
    unknown = set(data) - FILL_FIELDS
    if unknown:
        raise InvalidData(f"unknown fill fields: {', '.join(sorted(unknown))}")
    side = data.get("side")
    if side not in ("buy", "sell"):
        raise InvalidData(f"fill side must be buy or sell, got {side!r}")
    trade_id = data.get("trade_id")
    if not isinstance(trade_id, str) or not trade_id:
        raise InvalidData("fill needs a trade_id (a non-empty string)")
    if not isinstance(data.get("client_order_id"), str):
        raise InvalidData("fill needs a client_order_id (a string)")
    return Fill(
        instrument=entity.entity_id,
        side=side,
        qty=_decimal(data.get("qty"), "fill qty", Sign.positive),
        price=_decimal(data.get("price"), "fill price", Sign.positive),
        fee=_decimal(data.get("fee", ZERO), "fill fee", Sign.any),  # a rebate is a negative fee
        trade_id=trade_id,
    )


class NotAPosition(StateMachineError, TypeError):
    """An entity of another machine was given where a ``position`` entity was expected."""


def position_of(entity: Entity) -> Position:
    """The ``Position`` value a ``position`` entity holds (its id is the instrument)."""
    if entity.machine is not POSITION:
        raise NotAPosition(f"{entity!r} is not a position entity")
    data = entity.data
    return Position(
        entity.entity_id,
        qty=data["qty"],
        cost=data["cost"],
        realized_pnl=data["realized_pnl"],
        fees=data["fees"],
        cash=data["cash"],
        fills=data["fills"],
    )


# -- guards: pure functions of (entity, data); each validates the fill first ---------------------


def buys(entity: Entity, data: Data) -> bool:
    """The fill is a buy."""
    return _fill(entity, data).side == "buy"


def sells(entity: Entity, data: Data) -> bool:
    """The fill is a sell."""
    return _fill(entity, data).side == "sell"


def _closing(entity: Entity, fill: Fill) -> Decimal | None:
    """The open quantity the fill trades against (``|qty|``), or ``None`` when it adds to it."""
    qty: Decimal = entity.data["qty"]
    return None if qty == 0 or (qty > 0) == (fill.signed_qty > 0) else abs(qty)


def closes(entity: Entity, data: Data) -> bool:
    """The fill is on the other side and exactly as large as the open quantity: flat."""
    fill = _fill(entity, data)
    return _closing(entity, fill) == fill.qty


def flips(entity: Entity, data: Data) -> bool:
    """The fill is on the other side and larger than the open quantity: the rest opens the other way."""
    fill = _fill(entity, data)
    open_qty = _closing(entity, fill)
    return open_qty is not None and fill.qty > open_qty


def adds_or_reduces(entity: Entity, data: Data) -> bool:
    """The fill is on the same side (adds), or on the other side and smaller (reduces): same side."""
    fill = _fill(entity, data)
    open_qty = _closing(entity, fill)
    return open_qty is None or fill.qty < open_qty


# -- effect ----------------------------------------------------------------------------------------


def _apply(entity: Entity, data: Data) -> dict[str, Any]:
    fill = _fill(entity, data)
    position = position_of(entity).apply(fill)
    changes: dict[str, Any] = {name: getattr(position, name) for name in DECIMAL_FIELDS}
    return {**changes, "fills": position.fills, "last_trade_id": fill.trade_id}


POSITION = register(
    StateMachine(
        "position",
        doc=(
            "The position in one instrument (entity id: the instrument), folded from its fills by "
            "``Position.apply`` and checkpointed in the journal with every fill, so that resuming reads "
            "one live row per instrument instead of every fill ever journaled."
        ),
        states=PositionState,
        initial=S.flat,
        state_docs={
            S.flat: "No open quantity (`qty` = 0, `cost` = 0); realized P&L, fees and cash carry on.",
            S.long: "Net bought: `qty` > 0, `cost` > 0 is what the open quantity cost (average-cost basis).",
            S.short: "Net sold: `qty` < 0, `cost` < 0 is what the open quantity was sold for.",
        },
        rules=(
            Rule("fill", S.flat, S.long, guard=buys, effect=_apply, doc="A buy opens a long position."),
            Rule("fill", S.flat, S.short, guard=sells, effect=_apply, doc="A sell opens a short position."),
            Rule(
                "fill",
                (S.long, S.short),
                S.flat,
                guard=closes,
                effect=_apply,
                doc="An opposite fill equal to the open quantity closes it; its P&L is realized.",
            ),
            Rule(
                "fill",
                S.long,
                S.short,
                guard=flips,
                effect=_apply,
                doc="A sell larger than the long closes it and opens the rest short at the fill price.",
            ),
            Rule(
                "fill",
                S.short,
                S.long,
                guard=flips,
                effect=_apply,
                doc="A buy larger than the short closes it and opens the rest long at the fill price.",
            ),
            Rule(
                "fill",
                S.long,
                S.long,
                guard=adds_or_reduces,
                effect=_apply,
                doc="A buy adds to the long; a smaller sell reduces it, realizing P&L on the part sold.",
            ),
            Rule(
                "fill",
                S.short,
                S.short,
                guard=adds_or_reduces,
                effect=_apply,
                doc="A sell adds to the short; a smaller buy reduces it, realizing P&L on the part bought.",
            ),
        ),
        init=_init,
        decode=_decode,
    )
)
