"""Pre-trade risk, the parts: what the checks read (``RiskView``, open orders), what they return
(``Denial``), the order being judged (``Intent``) and one function per order check.

``machines.risk`` holds the table (``CHECKS``) that puts these functions in their order, and the
entry points that run them; import the public names from there. Pure: no clock, no I/O, ``Decimal``
only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

from machines.risk_limits import Limits
from machines.risk_rates import Rates

ZERO = Decimal(0)
BPS = Decimal(10000)
ACTIVE = "active"
REDUCING = "reducing"
HALTING = "halting"
HALTED = "halted"
TRADING_STATES = (ACTIVE, REDUCING, HALTING, HALTED)
"""The ``trading`` machine's states, as ``RiskView.trading_state`` names them."""

HALTS = frozenset({HALTING, HALTED})
_SIDES = frozenset({"buy", "sell"})


# -- inputs -------------------------------------------------------------------------------------


class OpenOrderLike(Protocol):
    """A live order as risk sees it (``kernel.strategy.OrderView`` and ``OpenOrder`` both fit)."""

    @property
    def instrument(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def leaves_qty(self) -> Decimal: ...


class WorkingOrderLike(OpenOrderLike, Protocol):
    """The order a replace changes (``kernel.strategy.OrderView`` fits)."""

    @property
    def order_type(self) -> str: ...
    @property
    def qty(self) -> Decimal: ...
    @property
    def cum_qty(self) -> Decimal: ...
    @property
    def price(self) -> Decimal | None: ...


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """A live order's remaining quantity on one side (for tests and callers without an ``OrderView``)."""

    instrument: str
    side: str
    leaves_qty: Decimal


@dataclass(frozen=True, slots=True)
class RiskView:
    """What the kernel knows at one instant, as risk needs it (nothing is copied or validated).

    ``positions``: signed quantity per instrument (missing: flat). ``open_orders``: every live
    order, including one being replaced. ``reference_price``: last trade or mid per instrument
    (missing: no reference). ``trading_state``: one of ``TRADING_STATES``.
    """

    positions: Mapping[str, Decimal]
    open_orders: Collection[OpenOrderLike]
    reference_price: Mapping[str, Decimal]
    trading_state: str


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an intent is refused: ``check`` is a ``CHECKS`` name, ``reason`` the journaled text."""

    check: str
    reason: str


# -- the intent being judged --------------------------------------------------------------------

_Book = tuple[dict[str, Decimal], dict[str, Decimal]]


class Intent:
    """One new order or replace as the checks see it.

    ``qty``/``price``: the order's (new) terms, ``price`` ``None`` for a market order; ``added``:
    how much it adds to the open leaves on its side (a new order: ``qty``; a replace: new leaves -
    old leaves, maybe negative); ``asked_qty``/``asked_price``: what the intent asked for, as given
    (for the ``intent`` check). The open leaves on its side, and the whole book when a gross
    exposure limit is on, are summed once, when a check first needs them.
    """

    __slots__ = (
        "instrument", "side", "buy", "qty", "price", "price_changed", "added", "new", "order_type",
        "asked_qty", "asked_price", "view", "limits", "lim", "position", "now_ms", "rates",
        "_same_side", "_book",
    )  # fmt: skip

    def __init__(
        self,
        instrument: str,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        price_changed: bool,
        added: Decimal,
        new: bool,
        order_type: str,
        asked: tuple[Decimal | None, Decimal | None],
        view: RiskView,
        limits: Limits,
        now_ms: int,
        rates: Rates,
    ) -> None:
        self.instrument = instrument
        self.side = side
        self.buy = side == "buy"
        self.qty = qty
        self.price = price
        self.price_changed = price_changed
        self.added = added
        self.new = new
        self.order_type = order_type
        self.asked_qty, self.asked_price = asked
        self.view = view
        self.limits = limits
        self.lim = limits._merged.get(instrument, limits.defaults)
        self.position = view.positions.get(instrument, ZERO)
        self.now_ms = now_ms
        self.rates = rates
        self._same_side: Decimal | None = None
        self._book: _Book | None = None

    def same_side(self) -> Decimal:
        """The open leaves in this instrument on this order's side (the order itself, for a replace)."""
        if self._same_side is None:
            if self.limits.max_gross_exposure is not None:
                self._book = _book(self.view.open_orders)
                self._same_side = self._book[0 if self.buy else 1].get(self.instrument, ZERO)
            else:
                self._same_side = _side_total(self.view.open_orders, self.instrument, self.side)
        return self._same_side

    def book(self) -> _Book:
        """Open leaves per instrument: (buys, sells)."""
        if self._book is None:
            self._book = _book(self.view.open_orders)
        return self._book


# -- the checks, one function per row of CHECKS ---------------------------------------------------

Check = Callable[[Intent], Denial | None]
"""One order check: ``None`` (passes) or the ``Denial``."""


def _n(number: Decimal) -> str:
    return f"{number:f}"


def check_trading_state(o: Intent) -> Denial | None:
    """``halting``, ``halted`` or an unknown trading state refuses every new order and replace."""
    state = o.view.trading_state
    if state in (ACTIVE, REDUCING):  # reducing is judged at reduce_only
        return None
    if state in HALTS:
        return Denial("trading_state", f"trading state is {state}: new orders and replaces are refused")
    return Denial("trading_state", f"unknown trading state {state!r}: new orders and replaces are refused")


def check_intent(o: Intent) -> Denial | None:
    """The intent's own shape: side, a positive qty, a positive price for a limit order."""
    qty, price = o.asked_qty, o.asked_price
    if not o.new:
        if qty is None and price is None:
            return Denial("intent", "a replace needs a new qty or price")
        if qty is not None and qty <= 0:
            return Denial("intent", f"qty must be positive, got {_n(qty)}")
        if price is not None:
            if o.order_type == "market":
                return Denial("intent", "a market order has no price to replace")
            if price <= 0:
                return Denial("intent", f"price must be positive, got {_n(price)}")
        return None
    if o.side not in _SIDES:
        return Denial("intent", f"side must be buy or sell, got {o.side!r}")
    if o.qty <= 0:
        return Denial("intent", f"qty must be positive, got {_n(o.qty)}")
    if o.order_type == "market":
        return None
    if o.order_type != "limit":
        return Denial("intent", f"order type must be limit or market, got {o.order_type!r}")
    if price is None or price <= 0:
        return Denial("intent", f"a limit order needs a positive price, got {price}")
    return None


def check_reduce_only(o: Intent) -> Denial | None:
    """With ``reduce_only`` on, or while trading is ``reducing``: only orders that reduce the position."""
    reducing = o.view.trading_state == REDUCING
    # a replace that only lowers the quantity reduces whatever the position (new orders add > 0)
    if not (reducing or o.lim.reduce_only) or not (o.added > 0 or o.price_changed):
        return None
    problem = _increases(o.instrument, o.side, o.added, o.position, o.same_side())
    if problem is None:
        return None
    if reducing:
        return Denial("trading_state", f"trading state is reducing: {problem}")
    return Denial("reduce_only", f"reduce-only: {problem}")


def check_max_order_qty(o: Intent) -> Denial | None:
    """The quantity of one order."""
    limit = o.lim.max_order_qty
    if limit is None or o.qty <= limit:
        return None
    return Denial("max_order_qty", f"order qty {_n(o.qty)} exceeds max_order_qty {_n(limit)} ({o.instrument})")


def check_lot_size(o: Intent) -> Denial | None:
    """The quantity must be a multiple of the lot size."""
    lot = o.lim.lot_size
    if lot is None or _multiple(o.qty, lot):
        return None
    return Denial("lot_size", f"order qty {_n(o.qty)} is not a multiple of lot_size {_n(lot)} ({o.instrument})")


def check_tick_size(o: Intent) -> Denial | None:
    """A limit price must be a multiple of the tick size."""
    tick, price = o.lim.tick_size, o.price
    if tick is None or price is None or _multiple(price, tick):
        return None
    return Denial("tick_size", f"price {_n(price)} is not a multiple of tick_size {_n(tick)} ({o.instrument})")


def check_price_collar(o: Intent) -> Denial | None:
    """A new limit price within the collar around the reference price."""
    bps, price = o.lim.price_collar_bps, o.price
    if bps is None or price is None or not o.price_changed:
        return None
    reference = o.view.reference_price.get(o.instrument)
    # |price - reference| / reference > bps / 10000, without a division
    if reference is not None and abs(price - reference) * BPS <= bps * reference:
        return None
    return Denial("price_collar", _collar_reason(o.instrument, price, bps, reference))


def _notional(o: Intent, check: str) -> tuple[Decimal, str] | Denial:
    """The order's notional and how it was valued (a market order: at the reference price)."""
    if o.price is not None:
        return o.qty * o.price, ""
    reference = o.view.reference_price.get(o.instrument)
    if reference is None:
        return Denial(check, f"no reference price to value a market order ({o.instrument})")
    return o.qty * reference, f" (at the reference price {_n(reference)})"


def check_max_order_notional(o: Intent) -> Denial | None:
    """qty x price (a market order: x the reference price) at most the limit."""
    limit = o.lim.max_order_notional
    if limit is None:
        return None
    valued = _notional(o, "max_order_notional")
    if isinstance(valued, Denial) or valued[0] <= limit:
        return valued if isinstance(valued, Denial) else None
    notional, at = valued
    return Denial(
        "max_order_notional",
        f"order notional {_n(notional)}{at} exceeds max_order_notional {_n(limit)} ({o.instrument})",
    )


def check_min_notional(o: Intent) -> Denial | None:
    """qty x price (a market order: x the reference price) at least the limit."""
    limit = o.lim.min_notional
    if limit is None:
        return None
    valued = _notional(o, "min_notional")
    if isinstance(valued, Denial) or valued[0] >= limit:
        return valued if isinstance(valued, Denial) else None
    notional, at = valued
    return Denial(
        "min_notional", f"order notional {_n(notional)}{at} is below min_notional {_n(limit)} ({o.instrument})"
    )


def check_max_position(o: Intent) -> Denial | None:
    """The worst-case position on the order's side, when the order adds to it."""
    limit = o.lim.max_position
    if limit is None or o.added <= 0:
        return None
    same_side, position = o.same_side(), o.position
    worst = position + same_side + o.added if o.buy else position - same_side - o.added
    if (worst if o.buy else -worst) <= limit:
        return None
    opens = "open buys" if o.buy else "open sells"
    return Denial(
        "max_position",
        f"worst-case position {_n(worst)} (position {_n(position)}, {opens} {_n(same_side)}, "
        f"this {o.side} {_n(o.added)}) exceeds max_position {_n(limit)} ({o.instrument})",
    )


def check_max_open_orders(o: Intent) -> Denial | None:
    """Live orders plus this new one (a replace adds none)."""
    limit = o.limits.max_open_orders
    count = len(o.view.open_orders)
    if limit is None or not o.new or count < limit:
        return None
    return Denial("max_open_orders", f"{count} open orders and this one exceed max_open_orders {limit}")


def check_max_gross_exposure(o: Intent) -> Denial | None:
    """The worst-case gross exposure over every instrument, when the order raises it."""
    limit = o.limits.max_gross_exposure
    if limit is None or o.added <= 0:
        return None
    problem = _gross_exposure(o.instrument, o.buy, o.added, o.view, limit, o.book())
    return None if problem is None else Denial("max_gross_exposure", problem)


def check_orders_per_second(o: Intent) -> Denial | None:
    """New orders and replaces in the last 1000 ms."""
    limit = o.limits.orders_per_second
    if limit is None or o.rates.orders_second.allows(o.now_ms, limit):
        return None
    return rate_denial("orders_per_second", limit, "orders", "second")


def check_orders_per_minute(o: Intent) -> Denial | None:
    """New orders and replaces in the last 60000 ms."""
    limit = o.limits.orders_per_minute
    if limit is None or o.rates.orders_minute.allows(o.now_ms, limit):
        return None
    return rate_denial("orders_per_minute", limit, "orders", "minute")


def rate_denial(check: str, limit: int, events: str, window: str) -> Denial:
    """The ``Denial`` of a rate check: ``limit`` ``events`` (``orders``, ``cancels``) in the last ``window``."""
    return Denial(check, f"{events[:-1]} rate limit reached: {limit} {events} in the last {window} ({check})")


# -- arithmetic ---------------------------------------------------------------------------------


def _increases(instrument: str, side: str, added: Decimal, position: Decimal, same_side: Decimal) -> str | None:
    """Why an order (adding ``added`` to ``same_side`` open leaves) does not only reduce the position."""
    if side == "buy":
        if position >= 0:
            return f"buy {_n(added)} would not reduce the position {_n(position)} ({instrument})"
        worst = position + same_side + added
        if worst > 0:
            return (
                f"buy {_n(added)} with open buys {_n(same_side)} could take the position {_n(position)} "
                f"past flat to {_n(worst)} ({instrument})"
            )
        return None
    if position <= 0:
        return f"sell {_n(added)} would not reduce the position {_n(position)} ({instrument})"
    worst = position - same_side - added
    if worst < 0:
        return (
            f"sell {_n(added)} with open sells {_n(same_side)} could take the position {_n(position)} "
            f"past flat to {_n(worst)} ({instrument})"
        )
    return None


def _multiple(value: Decimal, step: Decimal) -> bool:
    try:
        return not value % step
    except InvalidOperation:  # value / step beyond the context's 28 digits: no venue takes that
        return False


def _collar_reason(instrument: str, price: Decimal, bps: Decimal, reference: Decimal | None) -> str:
    if reference is None:
        return f"no reference price for the collar ({instrument})"
    low = reference * (BPS - bps) / BPS
    high = reference * (BPS + bps) / BPS
    return (
        f"limit price {_n(price)} is more than {_n(bps)} bps from the reference price {_n(reference)} "
        f"(allowed {_n(low)} to {_n(high)}) ({instrument})"
    )


def _book(open_orders: Collection[OpenOrderLike]) -> _Book:
    """Open leaves per instrument: (buys, sells)."""
    buys: dict[str, Decimal] = {}
    sells: dict[str, Decimal] = {}
    for order in open_orders:
        side = buys if order.side == "buy" else sells
        name = order.instrument
        side[name] = side.get(name, ZERO) + order.leaves_qty
    return buys, sells


def _side_total(open_orders: Collection[OpenOrderLike], instrument: str, side: str) -> Decimal:
    """Open leaves in ``instrument`` on ``side``."""
    total = ZERO
    for order in open_orders:
        if order.instrument == instrument and order.side == side:
            total += order.leaves_qty
    return total


def _gross_exposure(
    instrument: str, buy: bool, added: Decimal, view: RiskView, limit: Decimal, book: _Book
) -> str | None:
    """Why ``added`` more on one side of ``instrument`` would take the worst-case gross exposure
    above ``limit``; ``None`` when within it or when it does not raise the instrument's worst case."""
    buys, sells = book
    positions = view.positions
    position = positions.get(instrument, ZERO)
    long_case = position + buys.get(instrument, ZERO)
    short_case = position - sells.get(instrument, ZERO)
    before = max(abs(long_case), abs(short_case))
    if buy:
        long_case += added
    else:
        short_case -= added
    after = max(abs(long_case), abs(short_case))
    if after <= before:
        return None
    total = ZERO
    # positions first, then instruments with only open orders: a dict keeps that order, so a missing
    # reference is named the same way every time (a set's order changes with the hash seed)
    names = {**positions, **buys, **sells}
    names[instrument] = after
    for name in names:
        qty = (
            after
            if name == instrument
            else _worst(positions.get(name, ZERO), buys.get(name, ZERO), sells.get(name, ZERO))
        )
        if not qty:
            continue
        reference = view.reference_price.get(name)
        if reference is None:
            return f"no reference price for {name} to value the gross exposure"
        total += qty * reference
    if total <= limit:
        return None
    return (
        f"worst-case gross exposure {_n(total)} exceeds max_gross_exposure {_n(limit)} "
        f"({'buy' if buy else 'sell'} {_n(added)} {instrument})"
    )


def _worst(position: Decimal, buys: Decimal, sells: Decimal) -> Decimal:
    return max(abs(position + buys), abs(position - sells))


__all__ = [
    "ACTIVE",
    "BPS",
    "HALTED",
    "HALTING",
    "HALTS",
    "REDUCING",
    "TRADING_STATES",
    "ZERO",
    "Check",
    "Denial",
    "Intent",
    "OpenOrder",
    "OpenOrderLike",
    "RiskView",
    "WorkingOrderLike",
    "check_intent",
    "check_lot_size",
    "check_max_gross_exposure",
    "check_max_open_orders",
    "check_max_order_notional",
    "check_max_order_qty",
    "check_max_position",
    "check_min_notional",
    "check_orders_per_minute",
    "check_orders_per_second",
    "check_price_collar",
    "check_reduce_only",
    "check_tick_size",
    "check_trading_state",
    "rate_denial",
]
