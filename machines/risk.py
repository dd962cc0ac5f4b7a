"""Pre-trade risk: pure checks of one order intent against positions, open orders, limits and state.

Every new order and every replace passes through ``check_new`` / ``check_replace`` before it is
journaled; every cancel through ``check_cancel``. Each returns ``None`` (allowed) or a ``Denial``
naming the check (a row of ``CHECKS``) and a human-readable reason, which the kernel journals as
the order's ``deny`` transition (``new → denied``): a denied order never leaves the process.

``CHECKS`` is the table: each row names a check, documents it and carries the function that runs
it. ``check_new`` and ``check_replace`` run the rows in table order and the first that fails is
the denial; docs/risk.md is generated from the same rows, so the order documented is the order run.

Nothing here reads a clock or does I/O. The kernel passes what it knows as arguments:

* ``OrderTerms`` (``machines.order_terms``): the new order's terms.
* ``RiskView``: positions (signed ``Decimal`` per instrument), the live orders (anything with
  ``instrument``, ``side`` and ``leaves_qty``: the kernel's ``OrderView`` fits), reference prices
  (last trade or mid) and the trading state (``active``, ``reducing``, ``halting``, ``halted``).
* ``Limits`` (``machines.risk_limits``): the configuration, frozen, per-instrument limits merged.
* ``now_ms`` and ``Rates`` (``machines.risk_rates``): the recent order and cancel timestamps.

Position and exposure limits count the worst case: every open order on the side an order adds to
fills. A limit only ever blocks what makes its measure worse: an order that reduces a position
passes ``max_position`` and ``max_gross_exposure`` even when the position is already above them
(limits lowered, prices moved), so the kernel can always trade out of trouble. Money is
``Decimal`` throughout, never float.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from machines.order_terms import OrderTerms
from machines.risk_checks import (
    ACTIVE,
    BPS,
    HALTED,
    HALTING,
    HALTS,
    REDUCING,
    TRADING_STATES,
    ZERO,
    Check,
    Denial,
    Intent,
    OpenOrder,
    OpenOrderLike,
    RiskView,
    WorkingOrderLike,
    check_intent,
    check_lot_size,
    check_max_gross_exposure,
    check_max_open_orders,
    check_max_order_notional,
    check_max_order_qty,
    check_max_position,
    check_min_notional,
    check_orders_per_minute,
    check_orders_per_second,
    check_price_collar,
    check_reduce_only,
    check_tick_size,
    check_trading_state,
    rate_denial,
)
from machines.risk_limits import (
    INSTRUMENT_DECIMAL_KEYS,
    INSTRUMENT_KEYS,
    KERNEL_KEYS,
    InstrumentLimits,
    Limits,
    RiskError,
    RiskLimitError,
    limits_from_mapping,
)
from machines.risk_rates import MINUTE_MS, SECOND_MS, RateClockError, Rates, RateWindow

# -- the checks table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskCheck:
    """One row of ``CHECKS``: ``name`` (``Denial.check``), what it limits, its config ``key``
    (empty: not configured), ``scope`` (``instrument``: defaults + overrides; ``kernel``: one
    value), an ``example`` config line and the ``check`` that runs it on a new order or a replace
    (``None``: not an order check)."""

    name: str
    limits: str
    key: str
    scope: str
    example: str
    check: Check | None = None


CHECKS: tuple[RiskCheck, ...] = (
    RiskCheck(
        "trading_state",
        "new orders and replaces by the trading state: `active` and `reducing` pass here (`reducing` is "
        "judged at `reduce_only`), `halting` and `halted` refuse all; cancels always pass",
        "",
        "kernel",
        "",
        check_trading_state,
    ),
    RiskCheck(
        "intent",
        "the intent itself: side `buy` or `sell`, a positive qty, a positive price for a limit order",
        "",
        "",
        "",
        check_intent,
    ),
    RiskCheck(
        "reduce_only",
        "only orders that reduce the position: with the open orders on the same side, never past flat; "
        "while the trading state is `reducing` it applies to every instrument and the denial is `trading_state`",
        "reduce_only",
        "instrument",
        "`reduce_only = true`",
        check_reduce_only,
    ),
    RiskCheck(
        "max_order_qty",
        "the quantity of one order",
        "max_order_qty",
        "instrument",
        "`max_order_qty = 2`",
        check_max_order_qty,
    ),
    RiskCheck(
        "lot_size",
        "the quantity must be a multiple of it",
        "lot_size",
        "instrument",
        "`lot_size = 0.001`",
        check_lot_size,
    ),
    RiskCheck(
        "tick_size",
        "a limit price must be a multiple of it",
        "tick_size",
        "instrument",
        "`tick_size = 0.1`",
        check_tick_size,
    ),
    RiskCheck(
        "price_collar",
        "a limit price at most this many basis points from the reference price; no reference price: denied",
        "price_collar_bps",
        "instrument",
        "`price_collar_bps = 200`",
        check_price_collar,
    ),
    RiskCheck(
        "max_order_notional",
        "qty x price of one order (a market order: qty x reference price)",
        "max_order_notional",
        "instrument",
        "`max_order_notional = 50000`",
        check_max_order_notional,
    ),
    RiskCheck(
        "min_notional",
        "qty x price at least this (a market order: qty x reference price)",
        "min_notional",
        "instrument",
        "`min_notional = 5`",
        check_min_notional,
    ),
    RiskCheck(
        "max_position",
        "the worst-case position: position + open buys + this buy, or -(position - open sells - this sell)",
        "max_position",
        "instrument",
        "`max_position = 3`",
        check_max_position,
    ),
    RiskCheck(
        "max_open_orders",
        "live orders + this one (replaces do not add one)",
        "max_open_orders",
        "kernel",
        "`max_open_orders = 20`",
        check_max_open_orders,
    ),
    RiskCheck(
        "max_gross_exposure",
        "sum over instruments of the worst-case abs(position) x reference price",
        "max_gross_exposure",
        "kernel",
        "`max_gross_exposure = 250000`",
        check_max_gross_exposure,
    ),
    RiskCheck(
        "orders_per_second",
        "new orders and replaces in any 1000 ms",
        "orders_per_second",
        "kernel",
        "`orders_per_second = 5`",
        check_orders_per_second,
    ),
    RiskCheck(
        "orders_per_minute",
        "new orders and replaces in any 60000 ms",
        "orders_per_minute",
        "kernel",
        "`orders_per_minute = 120`",
        check_orders_per_minute,
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
"""The checks, in the order they run: the first that fails is the denial. ``cancels_per_second``
is ``check_cancel``'s; the last four rows are not order checks but the limits ``machines.stops``
watches on every mark (the kernel acts on them)."""

ORDER_CHECKS: tuple[tuple[str, Check], ...] = tuple((row.name, row.check) for row in CHECKS if row.check is not None)
"""The order checks of ``CHECKS`` as (name, function), in table order: what ``check_new`` and
``check_replace`` run."""

_RUN = tuple(check for _, check in ORDER_CHECKS)


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


# -- the entry points ---------------------------------------------------------------------------


def check_new(terms: OrderTerms, view: RiskView, limits: Limits, now_ms: int, rates: Rates) -> Denial | None:
    """``None`` when a new order passes every check, else the first ``Denial`` (``CHECKS`` order).

    ``terms.price`` is the limit price (ignored for a market order, valued at the reference
    price). Raises nothing for well-typed arguments.
    """
    qty, order_type = terms.qty, terms.order_type
    price = None if order_type == "market" else terms.price
    intent = Intent(
        terms.instrument, terms.side, qty, price, True, qty, True, order_type, (qty, terms.price),
        view, limits, now_ms, rates,
    )  # fmt: skip
    return _first_denial(intent)


def check_replace(
    order: WorkingOrderLike,
    qty: Decimal | None,
    price: Decimal | None,
    view: RiskView,
    limits: Limits,
    now_ms: int,
    rates: Rates,
) -> Denial | None:
    """``None`` when replacing ``order``'s terms passes, else the first ``Denial`` (``CHECKS`` order).

    ``qty`` is the new total quantity (as ``Replace``), ``None`` to keep it; ``price`` likewise.
    ``view.open_orders`` must include ``order``: its leaves are swapped for the new ones. The new
    terms are checked like a new order, except: no extra open order; the price collar only when
    the price changes; a replace that only lowers the quantity passes ``reduce_only`` and the
    reducing state; position and exposure limits only when the leaves grow.
    """
    new_qty = order.qty if qty is None else qty
    new_price = order.price if price is None else price
    added = max(new_qty - order.cum_qty, ZERO) - order.leaves_qty
    price_changed = price is not None and price != order.price
    intent = Intent(
        order.instrument, order.side, new_qty, new_price, price_changed, added, False, order.order_type,
        (qty, price), view, limits, now_ms, rates,
    )  # fmt: skip
    return _first_denial(intent)


def _first_denial(intent: Intent) -> Denial | None:
    """The first ``Denial`` of the order checks, in table order; ``None`` when all pass."""
    for check in _RUN:
        denial = check(intent)
        if denial is not None:
            return denial
    return None


def check_cancel(view: RiskView, limits: Limits, now_ms: int, rates: Rates) -> Denial | None:
    """``None`` when a cancel may go out, else the ``cancels_per_second`` ``Denial``.

    While ``halting`` or ``halted`` a cancel always passes: they are how trading winds down.
    """
    limit = limits.cancels_per_second
    if limit is None or view.trading_state in HALTS or rates.cancels_second.allows(now_ms, limit):
        return None
    return rate_denial("cancels_per_second", limit, "cancels", "second")


__all__ = [
    "ACTIVE",
    "BPS",
    "CHECKS",
    "HALTED",
    "HALTING",
    "INSTRUMENT_DECIMAL_KEYS",
    "INSTRUMENT_KEYS",
    "KERNEL_KEYS",
    "MINUTE_MS",
    "ORDER_CHECKS",
    "REDUCING",
    "SECOND_MS",
    "TRADING_STATES",
    "Denial",
    "InstrumentLimits",
    "Limits",
    "OpenOrder",
    "OpenOrderLike",
    "RateClockError",
    "RateWindow",
    "Rates",
    "RiskCheck",
    "RiskError",
    "RiskLimitError",
    "RiskView",
    "WorkingOrderLike",
    "check_cancel",
    "check_new",
    "check_replace",
    "checks_markdown",
    "limits_from_mapping",
]
