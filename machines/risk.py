"""Pre-trade risk: pure checks of one order intent against positions, open orders, limits and state.

Every new order and every replace passes through ``check_new`` / ``check_replace`` before it is
journaled; every cancel through ``check_cancel``. Each returns ``None`` (allowed) or a ``Denial``
naming the check (a row of ``CHECKS``) and a human-readable reason, which the kernel journals as
the order's ``deny`` transition (``new → denied``): a denied order never leaves the process.

Nothing here reads a clock or does I/O. The kernel passes what it knows as arguments:

* ``RiskView``: positions (signed ``Decimal`` per instrument), the live orders (anything with
  ``instrument``, ``side`` and ``leaves_qty``: the kernel's ``OrderView`` fits), reference prices
  (last trade or mid) and the trading state (``active``, ``reducing``, ``halting``, ``halted``).
* ``Limits``: the configuration, frozen. Per-instrument limits merge ``defaults`` with the
  instrument's override field by field once, at construction, so a check does one dict lookup.
* ``now_ms`` and ``Rates``: the recent order and cancel timestamps, an immutable value the kernel
  replaces after each order it lets out (``rates = rates.record_order(now_ms, limits)``).

Position and exposure limits count the worst case: every open order on the side an order adds to
fills. A limit only ever blocks what makes its measure worse: an order that reduces a position
passes ``max_position`` and ``max_gross_exposure`` even when the position is already above them
(limits lowered, prices moved), so the kernel can always trade out of trouble.

Money is ``Decimal`` throughout, never float; products and remainders use a 60-digit context so
that comparisons are exact for any realistic price, quantity and limit. The checks run in the
order of ``CHECKS`` and the first that fails is the denial.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Protocol

from machines.order_terms import OrderTerms

ZERO = Decimal(0)
BPS = Decimal(10000)
ACTIVE = "active"
REDUCING = "reducing"
HALTING = "halting"
HALTED = "halted"
TRADING_STATES = (ACTIVE, REDUCING, HALTING, HALTED)
"""The ``trading`` machine's states, as ``RiskView.trading_state`` names them."""
SECOND_MS = 1000
MINUTE_MS = 60_000

_HALTS = frozenset({HALTING, HALTED})
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


# -- limits -------------------------------------------------------------------------------------


def _decimal_limit(value: object, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError(f"{name} must be a decimal number (Decimal or int) or None, got {value!r}")
    number = Decimal(value)
    if not number.is_finite() or number <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return number


def _count_limit(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """Limits that apply to each instrument. ``None`` is off (in an override: inherit the default).

    Raises ``ValueError`` naming a field that is not a positive Decimal (int is converted) or bool.
    """

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    min_notional: Decimal | None = None
    price_collar_bps: Decimal | None = None
    max_position: Decimal | None = None
    tick_size: Decimal | None = None
    lot_size: Decimal | None = None
    reduce_only: bool | None = None
    stop_loss_bps: Decimal | None = None
    trailing_stop_bps: Decimal | None = None

    def __post_init__(self) -> None:
        for name in INSTRUMENT_DECIMAL_KEYS:
            object.__setattr__(self, name, _decimal_limit(getattr(self, name), name))
        if self.reduce_only is not None and not isinstance(self.reduce_only, bool):
            raise ValueError(f"reduce_only must be true, false or None, got {self.reduce_only!r}")

    def merged(self, override: InstrumentLimits) -> InstrumentLimits:
        """These limits with every field ``override`` sets (not ``None``) replaced."""
        changes = {name: value for name in INSTRUMENT_KEYS if (value := getattr(override, name)) is not None}
        return replace(self, **changes)


INSTRUMENT_KEYS = tuple(f.name for f in fields(InstrumentLimits))
INSTRUMENT_DECIMAL_KEYS = tuple(name for name in INSTRUMENT_KEYS if name != "reduce_only")


@dataclass(frozen=True, slots=True)
class Limits:
    """All risk limits. ``defaults`` apply to every instrument; ``per_instrument[name]`` overrides
    them field by field. The other fields are kernel-wide; ``None`` is off.

    ``Limits()`` checks nothing but the trading state and the shape of the intent. Raises
    ``ValueError`` naming a bad field.
    """

    defaults: InstrumentLimits = InstrumentLimits()
    per_instrument: Mapping[str, InstrumentLimits] = field(default_factory=dict)
    max_gross_exposure: Decimal | None = None
    max_open_orders: int | None = None
    orders_per_second: int | None = None
    orders_per_minute: int | None = None
    cancels_per_second: int | None = None
    daily_loss_limit: Decimal | None = None
    max_drawdown: Decimal | None = None
    _merged: Mapping[str, InstrumentLimits] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.defaults, InstrumentLimits):
            raise ValueError(f"defaults must be InstrumentLimits, got {self.defaults!r}")
        for instrument, override in self.per_instrument.items():
            if not isinstance(instrument, str) or not instrument:
                raise ValueError(f"per_instrument keys must be instrument names, got {instrument!r}")
            if not isinstance(override, InstrumentLimits):
                raise ValueError(f"per_instrument[{instrument!r}] must be InstrumentLimits, got {override!r}")
        object.__setattr__(self, "per_instrument", MappingProxyType(dict(self.per_instrument)))
        for name in ("max_gross_exposure", "daily_loss_limit", "max_drawdown"):
            object.__setattr__(self, name, _decimal_limit(getattr(self, name), name))
        for name in ("max_open_orders", "orders_per_second", "orders_per_minute", "cancels_per_second"):
            _count_limit(getattr(self, name), name)
        merged = {name: self.defaults.merged(override) for name, override in self.per_instrument.items()}
        object.__setattr__(self, "_merged", merged)

    def for_instrument(self, instrument: str) -> InstrumentLimits:
        """The limits for ``instrument``: the defaults with its override applied (precomputed)."""
        return self._merged.get(instrument, self.defaults)


KERNEL_KEYS = (
    "max_gross_exposure",
    "max_open_orders",
    "orders_per_second",
    "orders_per_minute",
    "cancels_per_second",
    "daily_loss_limit",
    "max_drawdown",
)


def limits_from_mapping(raw: Mapping[str, Any], where: str = "risk") -> Limits:
    """``Limits`` from a config table (the ``[risk]`` TOML table, see docs/risk.md).

    Top-level keys are the kernel-wide limits and the instrument defaults; ``instruments`` maps an
    instrument name to a table of overrides. Raises ``ValueError`` naming ``where.key`` for an
    unknown key or a bad value.
    """
    known = {*KERNEL_KEYS, *INSTRUMENT_KEYS, "instruments"}
    for key in raw:
        if key not in known:
            raise ValueError(f"{where}.{key}: unknown risk limit (known: {', '.join(sorted(known))})")
    defaults = _instrument_limits({k: v for k, v in raw.items() if k in INSTRUMENT_KEYS}, where)
    instruments = raw.get("instruments", {})
    if not isinstance(instruments, Mapping):
        raise ValueError(f"{where}.instruments must be a table of instrument tables, got {instruments!r}")
    overrides = {}
    for instrument, table in instruments.items():
        here = f"{where}.instruments.{instrument}"
        if not isinstance(table, Mapping):
            raise ValueError(f"{here} must be a table, got {table!r}")
        unknown = sorted(set(table) - set(INSTRUMENT_KEYS))
        if unknown:
            raise ValueError(f"{here}.{unknown[0]}: unknown instrument limit (known: {', '.join(INSTRUMENT_KEYS)})")
        overrides[instrument] = _instrument_limits(table, here)
    try:
        return Limits(defaults, overrides, **{k: v for k, v in raw.items() if k in KERNEL_KEYS})
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def _instrument_limits(table: Mapping[str, Any], where: str) -> InstrumentLimits:
    try:
        return InstrumentLimits(**table)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


# -- rates --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateWindow:
    """Timestamps (ms, ascending) of recent events in a sliding window of ``window_ms``.

    An event at ``t`` counts at ``now_ms`` while ``now_ms - t < window_ms``: with a 1000 ms window,
    an event at 0 still counts at 999 and no longer at 1000. Immutable: ``record`` returns a new
    window holding only the events that still count.
    """

    window_ms: int
    times: tuple[int, ...] = ()

    def count(self, now_ms: int) -> int:
        """How many events count at ``now_ms``."""
        times = self.times
        return len(times) - bisect_right(times, now_ms - self.window_ms)

    def allows(self, now_ms: int, limit: int) -> bool:
        """True when one more event at ``now_ms`` keeps the count within ``limit``."""
        times = self.times
        return len(times) < limit or len(times) - bisect_right(times, now_ms - self.window_ms) < limit

    def record(self, now_ms: int) -> RateWindow:
        """This window with an event at ``now_ms`` added and expired ones dropped.

        Raises ``ValueError`` when ``now_ms`` is before the last event (the clock must be monotonic).
        """
        times = self.times
        if times and now_ms < times[-1]:
            raise ValueError(f"now_ms {now_ms} is before the last recorded event {times[-1]}")
        start = bisect_right(times, now_ms - self.window_ms)
        return RateWindow(self.window_ms, (*times[start:], now_ms))


@dataclass(frozen=True, slots=True)
class Rates:
    """Recent orders (new and replace) and cancels. Start with ``Rates()``; after each intent that
    leaves the process, replace it with ``record_order`` / ``record_cancel``."""

    orders_second: RateWindow = RateWindow(SECOND_MS)
    orders_minute: RateWindow = RateWindow(MINUTE_MS)
    cancels_second: RateWindow = RateWindow(SECOND_MS)

    def record_order(self, now_ms: int, limits: Limits) -> Rates:
        """These rates with an order at ``now_ms``, in each window whose limit is on (an unlimited
        window would only grow)."""
        return Rates(
            self.orders_second if limits.orders_per_second is None else self.orders_second.record(now_ms),
            self.orders_minute if limits.orders_per_minute is None else self.orders_minute.record(now_ms),
            self.cancels_second,
        )

    def record_cancel(self, now_ms: int, limits: Limits) -> Rates:
        """These rates with a cancel at ``now_ms`` (recorded only while ``cancels_per_second`` is on)."""
        if limits.cancels_per_second is None:
            return self
        return Rates(self.orders_second, self.orders_minute, self.cancels_second.record(now_ms))


# -- the checks table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskCheck:
    """One row of ``CHECKS``: ``name`` (``Denial.check``), what it limits, its config ``key``
    (empty: not configured), ``scope`` (``instrument``: defaults + overrides; ``kernel``: one
    value) and an ``example`` config line."""

    name: str
    limits: str
    key: str
    scope: str
    example: str


CHECKS: tuple[RiskCheck, ...] = (
    RiskCheck(
        "trading_state",
        "new orders and replaces by the trading state: `active` passes, `reducing` passes only orders that "
        "reduce the position (as `reduce_only`), `halting` and `halted` refuse all; cancels always pass",
        "",
        "kernel",
        "",
    ),
    RiskCheck(
        "intent",
        "the intent itself: side `buy` or `sell`, a positive qty, a positive price for a limit order",
        "",
        "",
        "",
    ),
    RiskCheck(
        "reduce_only",
        "only orders that reduce the position: with the open orders on the same side, never past flat",
        "reduce_only",
        "instrument",
        "`reduce_only = true`",
    ),
    RiskCheck("max_order_qty", "the quantity of one order", "max_order_qty", "instrument", "`max_order_qty = 2`"),
    RiskCheck("lot_size", "the quantity must be a multiple of it", "lot_size", "instrument", "`lot_size = 0.001`"),
    RiskCheck("tick_size", "a limit price must be a multiple of it", "tick_size", "instrument", "`tick_size = 0.1`"),
    RiskCheck(
        "price_collar",
        "a limit price at most this many basis points from the reference price; no reference price: denied",
        "price_collar_bps",
        "instrument",
        "`price_collar_bps = 200`",
    ),
    RiskCheck(
        "max_order_notional",
        "qty x price of one order (a market order: qty x reference price)",
        "max_order_notional",
        "instrument",
        "`max_order_notional = 50000`",
    ),
    RiskCheck(
        "min_notional",
        "qty x price at least this (a market order: qty x reference price)",
        "min_notional",
        "instrument",
        "`min_notional = 5`",
    ),
    RiskCheck(
        "max_position",
        "the worst-case position: position + open buys + this buy, or -(position - open sells - this sell)",
        "max_position",
        "instrument",
        "`max_position = 3`",
    ),
    RiskCheck(
        "max_open_orders",
        "live orders + this one (replaces do not add one)",
        "max_open_orders",
        "kernel",
        "`max_open_orders = 20`",
    ),
    RiskCheck(
        "max_gross_exposure",
        "sum over instruments of the worst-case abs(position) x reference price",
        "max_gross_exposure",
        "kernel",
        "`max_gross_exposure = 250000`",
    ),
    RiskCheck(
        "orders_per_second",
        "new orders and replaces in any 1000 ms",
        "orders_per_second",
        "kernel",
        "`orders_per_second = 5`",
    ),
    RiskCheck(
        "orders_per_minute",
        "new orders and replaces in any 60000 ms",
        "orders_per_minute",
        "kernel",
        "`orders_per_minute = 120`",
    ),
    RiskCheck(
        "cancels_per_second",
        "cancels in any 1000 ms (not applied while `halting` or `halted`)",
        "cancels_per_second",
        "kernel",
        "`cancels_per_second = 10`",
    ),
    RiskCheck(
        "stop_loss",
        "not an order check: when the mark moves this many basis points against the position's average "
        "entry price, the kernel closes the position with a reducing market order (`machines.stops`)",
        "stop_loss_bps",
        "instrument",
        "`stop_loss_bps = 100`",
    ),
    RiskCheck(
        "trailing_stop",
        "not an order check: when the mark falls this many basis points from the best mark since the "
        "position opened (peak for a long, trough for a short), the kernel closes the position",
        "trailing_stop_bps",
        "instrument",
        "`trailing_stop_bps = 150`",
    ),
    RiskCheck(
        "daily_loss_limit",
        "not an order check: realized + unrealized - fees since the session started below -limit "
        "halts trading (`risk_breach`)",
        "daily_loss_limit",
        "kernel",
        "`daily_loss_limit = 5000`",
    ),
    RiskCheck(
        "max_drawdown",
        "not an order check: P&L more than this below the session's peak halts trading (`risk_breach`)",
        "max_drawdown",
        "kernel",
        "`max_drawdown = 8000`",
    ),
)
"""The checks, in the order they run: the first that fails is the denial. The last four rows are
not order checks but the limits ``machines.stops`` watches on every mark (the kernel acts on them)."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def checks_markdown() -> str:
    """``CHECKS`` as a Markdown table (check, limits, config key, scope, example), for the docs."""
    lines = ["| check | limits | config key | scope | example |", "| --- | --- | --- | --- | --- |"]
    for check in CHECKS:
        key = f"`{check.key}`" if check.key else "-"
        lines.append(
            f"| `{check.name}` | {_cell(check.limits)} | {key} | {check.scope or '-'} | {_cell(check.example) or '-'} |"
        )
    return "\n".join(lines) + "\n"


# -- the checks ---------------------------------------------------------------------------------


def _n(number: Decimal) -> str:
    return f"{number:f}"


def check_new(
    terms: OrderTerms,
    view: RiskView,
    limits: Limits,
    now_ms: int,
    rates: Rates,
) -> Denial | None:
    """``None`` when a new order passes every check, else the first ``Denial`` (``CHECKS`` order).

    ``price`` is the limit price (ignored for a market order, valued at the reference price).
    Raises nothing for well-typed arguments.
    """
    instrument, side, qty, price = terms.instrument, terms.side, terms.qty, terms.price
    order_type: str = terms.order_type  # checked below: the terms may come from untyped input
    state = view.trading_state
    if state != ACTIVE and state != REDUCING:
        return _state_denial(state)
    if side not in _SIDES:
        return Denial("intent", f"side must be buy or sell, got {side!r}")
    if qty <= 0:
        return Denial("intent", f"qty must be positive, got {_n(qty)}")
    if order_type == "market":
        price = None
    elif order_type != "limit":
        return Denial("intent", f"order type must be limit or market, got {order_type!r}")
    elif price is None or price <= 0:
        return Denial("intent", f"a limit order needs a positive price, got {price}")
    return _check(instrument, side, qty, price, True, qty, view, limits, now_ms, rates, True)


def check_replace(
    order: WorkingOrderLike,
    qty: Decimal | None,
    price: Decimal | None,
    view: RiskView,
    limits: Limits,
    now_ms: int,
    rates: Rates,
) -> Denial | None:
    """``None`` when replacing ``order``'s terms passes, else the first ``Denial``.

    ``qty`` is the new total quantity (as ``Replace``), ``None`` to keep it; ``price`` likewise.
    ``view.open_orders`` must include ``order``: its leaves are swapped for the new ones. The new
    terms are checked like a new order, except: no extra open order; the price collar only when
    the price changes; a replace that only lowers the quantity passes ``reduce_only`` and the
    reducing state; position and exposure limits only when the leaves grow.
    """
    state = view.trading_state
    if state != ACTIVE and state != REDUCING:
        return _state_denial(state)
    if qty is None and price is None:
        return Denial("intent", "a replace needs a new qty or price")
    if qty is not None and qty <= 0:
        return Denial("intent", f"qty must be positive, got {_n(qty)}")
    if price is not None:
        if order.order_type == "market":
            return Denial("intent", "a market order has no price to replace")
        if price <= 0:
            return Denial("intent", f"price must be positive, got {_n(price)}")
    new_qty = order.qty if qty is None else qty
    new_price = order.price if price is None else price
    leaves = max(new_qty - order.cum_qty, ZERO)
    price_changed = price is not None and price != order.price
    added = leaves - order.leaves_qty
    return _check(
        order.instrument, order.side, new_qty, new_price, price_changed, added, view, limits, now_ms, rates, False
    )


def check_cancel(view: RiskView, limits: Limits, now_ms: int, rates: Rates) -> Denial | None:
    """``None`` when a cancel may go out, else the ``cancels_per_second`` ``Denial``.

    While ``halting`` or ``halted`` a cancel always passes: they are how trading winds down.
    """
    limit = limits.cancels_per_second
    if limit is None or view.trading_state in _HALTS or rates.cancels_second.allows(now_ms, limit):
        return None
    return Denial(
        "cancels_per_second", f"cancel rate limit reached: {limit} cancels in the last second (cancels_per_second)"
    )


def _state_denial(state: str) -> Denial:
    if state in _HALTS:
        return Denial("trading_state", f"trading state is {state}: new orders and replaces are refused")
    return Denial("trading_state", f"unknown trading state {state!r}: new orders and replaces are refused")


def _check(
    instrument: str,
    side: str,
    qty: Decimal,
    price: Decimal | None,
    price_changed: bool,
    added: Decimal,
    view: RiskView,
    limits: Limits,
    now_ms: int,
    rates: Rates,
    new: bool,
) -> Denial | None:
    """The checks after the trading state and the intent's shape. ``qty``/``price``: the order's
    terms (``price`` ``None``: market); ``added``: how much it adds to the open leaves on its side
    (a new order: ``qty``; a replace: new leaves - old leaves, maybe negative)."""
    lim = limits._merged.get(instrument, limits.defaults)
    position = view.positions.get(instrument, ZERO)
    buy = side == "buy"
    gross = limits.max_gross_exposure
    # open leaves on this side, summed once when first needed; with a gross exposure limit, every
    # instrument's open leaves (the book), in the same single pass
    same_side: Decimal | None = None
    book: _Book | None = None

    reducing = view.trading_state == REDUCING
    # a replace that only lowers the quantity reduces whatever the position (new orders add > 0)
    if (reducing or lim.reduce_only) and (added > 0 or price_changed):
        same_side, book = _same_side(view.open_orders, instrument, buy, gross is not None)
        problem = _increases(instrument, side, added, position, same_side)
        if problem is not None:
            if reducing:
                return Denial("trading_state", f"trading state is reducing: {problem}")
            return Denial("reduce_only", f"reduce-only: {problem}")

    if lim.max_order_qty is not None and qty > lim.max_order_qty:
        return Denial(
            "max_order_qty", f"order qty {_n(qty)} exceeds max_order_qty {_n(lim.max_order_qty)} ({instrument})"
        )
    if lim.lot_size is not None and not _multiple(qty, lim.lot_size):
        return Denial(
            "lot_size", f"order qty {_n(qty)} is not a multiple of lot_size {_n(lim.lot_size)} ({instrument})"
        )
    if price is not None:
        if lim.tick_size is not None and not _multiple(price, lim.tick_size):
            return Denial(
                "tick_size", f"price {_n(price)} is not a multiple of tick_size {_n(lim.tick_size)} ({instrument})"
            )
        bps = lim.price_collar_bps
        if bps is not None and price_changed:
            reference = view.reference_price.get(instrument)
            # |price - reference| / reference > bps / 10000, without a division
            if reference is None or abs(price - reference) * BPS > bps * reference:
                return Denial("price_collar", _collar_reason(instrument, price, bps, reference))

    if lim.max_order_notional is not None or lim.min_notional is not None:
        at = ""
        if price is None:
            price = view.reference_price.get(instrument)
            if price is None:
                return Denial(
                    "max_order_notional" if lim.max_order_notional is not None else "min_notional",
                    f"no reference price to value a market order ({instrument})",
                )
            at = f" (at the reference price {_n(price)})"
        notional = qty * price
        if lim.max_order_notional is not None and notional > lim.max_order_notional:
            return Denial(
                "max_order_notional",
                f"order notional {_n(notional)}{at} exceeds max_order_notional {_n(lim.max_order_notional)} "
                f"({instrument})",
            )
        if lim.min_notional is not None and notional < lim.min_notional:
            return Denial(
                "min_notional",
                f"order notional {_n(notional)}{at} is below min_notional {_n(lim.min_notional)} ({instrument})",
            )

    if added > 0:
        if lim.max_position is not None:
            if same_side is None:
                same_side, book = _same_side(view.open_orders, instrument, buy, gross is not None)
            worst = position + same_side + added if buy else position - same_side - added
            if (worst if buy else -worst) > lim.max_position:
                opens = "open buys" if buy else "open sells"
                return Denial(
                    "max_position",
                    f"worst-case position {_n(worst)} (position {_n(position)}, {opens} {_n(same_side)}, "
                    f"this {side} {_n(added)}) exceeds max_position {_n(lim.max_position)} ({instrument})",
                )
        if gross is not None:
            problem = _gross_exposure(instrument, buy, added, view, gross, book or _book(view.open_orders))
            if problem is not None:
                return Denial("max_gross_exposure", problem)

    if new and limits.max_open_orders is not None and len(view.open_orders) >= limits.max_open_orders:
        return Denial(
            "max_open_orders",
            f"{len(view.open_orders)} open orders and this one exceed max_open_orders {limits.max_open_orders}",
        )
    limit = limits.orders_per_second
    if limit is not None and not rates.orders_second.allows(now_ms, limit):
        return Denial(
            "orders_per_second", f"order rate limit reached: {limit} orders in the last second (orders_per_second)"
        )
    limit = limits.orders_per_minute
    if limit is not None and not rates.orders_minute.allows(now_ms, limit):
        return Denial(
            "orders_per_minute", f"order rate limit reached: {limit} orders in the last minute (orders_per_minute)"
        )
    return None


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


_Book = tuple[dict[str, Decimal], dict[str, Decimal]]


def _book(open_orders: Collection[OpenOrderLike]) -> _Book:
    """Open leaves per instrument: (buys, sells)."""
    buys: dict[str, Decimal] = {}
    sells: dict[str, Decimal] = {}
    for order in open_orders:
        side = buys if order.side == "buy" else sells
        name = order.instrument
        side[name] = side.get(name, ZERO) + order.leaves_qty
    return buys, sells


def _same_side(
    open_orders: Collection[OpenOrderLike], instrument: str, buy: bool, whole_book: bool
) -> tuple[Decimal, _Book | None]:
    """Open leaves in ``instrument`` on one side, and the whole book when ``whole_book``."""
    if whole_book:
        book = _book(open_orders)
        return book[0 if buy else 1].get(instrument, ZERO), book
    side = "buy" if buy else "sell"
    total = ZERO
    for order in open_orders:
        if order.instrument == instrument and order.side == side:
            total += order.leaves_qty
    return total, None


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
    "CHECKS",
    "HALTED",
    "HALTING",
    "REDUCING",
    "TRADING_STATES",
    "Denial",
    "InstrumentLimits",
    "Limits",
    "OpenOrder",
    "OpenOrderLike",
    "RateWindow",
    "Rates",
    "RiskCheck",
    "RiskView",
    "WorkingOrderLike",
    "check_cancel",
    "check_new",
    "check_replace",
    "checks_markdown",
    "limits_from_mapping",
]
