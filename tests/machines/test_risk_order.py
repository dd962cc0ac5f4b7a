"""The order of the pre-trade checks (``machines.risk``): the checks run in the order of their table.

One intent that breaks every limit at once, each break switchable on its own: with the breaks of a
prefix of the table mended, the denial must name the next check. The expected names are written
out here, in the order docs/risk.md shows, never read from ``CHECKS``.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

import pytest

from machines.order_terms import OrderTerms
from machines.risk import (
    CHECKS,
    ORDER_CHECKS,
    Denial,
    InstrumentLimits,
    Limits,
    OpenOrder,
    Rates,
    RiskView,
    check_new,
    check_replace,
)
from tests.machines.test_risk import Working

D = Decimal
BTC = "BTCUSDT"
ZERO, ONE, THREE, HUNDRED, PRICE = D(0), D(1), D(3), D(100), D(101)

# The checks a new order runs, in the order they run.
NEW_ORDER = (
    "trading_state",
    "intent",
    "reduce_only",
    "max_order_qty",
    "lot_size",
    "tick_size",
    "price_collar",
    "max_order_notional",
    "min_notional",
    "max_position",
    "max_open_orders",
    "max_gross_exposure",
    "orders_per_second",
    "orders_per_minute",
)
# Every row of the table, in order: the new order's checks, then five that are not checks of a new
# order or a replace.
TABLE_ROWS = (*NEW_ORDER, "cancels_per_second", "stop_loss", "trailing_stop", "daily_loss_limit", "max_drawdown")
# What a replace can break, in the order it is checked (it adds no open order; its intent is
# broken in test_a_replace_checks_its_intent_after_the_trading_state).
REPLACE_ORDER = tuple(name for name in NEW_ORDER if name not in ("intent", "max_open_orders"))


def limits(broken: Collection[str]) -> Limits:
    """Limits that a buy of 3 at 101 (position 1, one open buy of 1, reference 100) breaks: each
    limit named in ``broken`` is set so that it fails, the others are off."""

    def on(name: str, value: Decimal) -> Decimal | None:
        return value if name in broken else None

    return Limits(
        InstrumentLimits(
            reduce_only=True if "reduce_only" in broken else None,  # a buy does not reduce a long
            max_order_qty=on("max_order_qty", D(2)),  # qty 3 > 2
            lot_size=on("lot_size", D(2)),  # 3 is no multiple of 2
            tick_size=on("tick_size", D(2)),  # 101 is no multiple of 2
            price_collar_bps=on("price_collar", D(50)),  # 101 is 100 bps from 100
            max_order_notional=on("max_order_notional", D(300)),  # 303 > 300
            min_notional=on("min_notional", D(400)),  # 303 < 400
            max_position=on("max_position", D(3)),  # new: 1 + 1 + 3 = 5 > 3; replace: 1 + 1 + 2 = 4 > 3
        ),
        max_open_orders=1 if "max_open_orders" in broken else None,  # 1 open, and this one
        max_gross_exposure=on("max_gross_exposure", D(350)),  # worst case 5 (new) or 4 (replace) x 100
        orders_per_second=1 if "orders_per_second" in broken else None,  # one order at 0, now 500
        orders_per_minute=1 if "orders_per_minute" in broken else None,
    )


def rates() -> Rates:
    return Rates().record_order(0, Limits(orders_per_second=1, orders_per_minute=1))


def view(broken: Collection[str], state: str = "halted") -> RiskView:
    trading_state = state if "trading_state" in broken else "active"
    return RiskView({BTC: D(1)}, [OpenOrder(BTC, "buy", D(1))], {BTC: D(100)}, trading_state)


def new(broken: Collection[str], state: str = "halted") -> Denial | None:
    order_type = "stop" if "intent" in broken else "limit"
    terms = OrderTerms(BTC, "buy", D(3), D(101), order_type)  # type: ignore[arg-type]
    return check_new(terms, view(broken, state), limits(broken), 500, rates())


# The open buy of 1 at 100, nothing filled, that a replace changes to 3 at 101.
WORKING = Working(BTC, "buy", leaves_qty=ONE, qty=ONE, cum_qty=ZERO, price=HUNDRED)


def replace(broken: Collection[str], qty: Decimal = THREE, price: Decimal = PRICE) -> Denial | None:
    return check_replace(WORKING, qty, price, view(broken), limits(broken), 500, rates())


def test_the_table_rows_and_the_checks_run_are_in_the_documented_order() -> None:
    assert tuple(row.name for row in CHECKS) == TABLE_ROWS
    assert tuple(name for name, _ in ORDER_CHECKS) == NEW_ORDER
    assert all(row.check is None for row in CHECKS[len(NEW_ORDER) :])


def test_nothing_broken_passes() -> None:
    assert new(()) is None
    assert replace(()) is None


@pytest.mark.parametrize("name", NEW_ORDER)
def test_each_break_alone_is_denied_by_its_own_check(name: str) -> None:
    denial = new({name})
    assert denial is not None
    assert denial.check == name


@pytest.mark.parametrize("mended", range(len(NEW_ORDER) + 1))
def test_with_a_prefix_mended_the_next_check_denies(mended: int) -> None:
    denial = new(set(NEW_ORDER[mended:]))
    if mended == len(NEW_ORDER):
        assert denial is None
    else:
        assert denial is not None
        assert denial.check == NEW_ORDER[mended], f"mended {NEW_ORDER[:mended]}"


@pytest.mark.parametrize(
    ("broken", "first"),
    [
        # every break at once, then the documented order one mend at a time (written out, not computed)
        (NEW_ORDER, "trading_state"),
        (NEW_ORDER[1:], "intent"),
        (NEW_ORDER[2:], "reduce_only"),
        (("max_position", "max_open_orders", "max_gross_exposure"), "max_position"),
        (("max_open_orders", "max_gross_exposure"), "max_open_orders"),  # the table's order, not exposure first
        (("max_gross_exposure", "orders_per_second"), "max_gross_exposure"),
        (("orders_per_minute", "orders_per_second"), "orders_per_second"),
        (("min_notional", "max_order_notional"), "max_order_notional"),
        (("price_collar", "tick_size", "lot_size"), "lot_size"),
    ],
)
def test_the_first_denial_of_several(broken: tuple[str, ...], first: str) -> None:
    denial = new(broken)
    assert denial is not None
    assert denial.check == first


def test_the_reducing_state_is_judged_at_the_reduce_only_row() -> None:
    # reducing refuses a buy that adds to a long, named trading_state, after the intent's shape
    broken = ("trading_state", "intent", "max_order_qty")
    denial = new(broken, state="reducing")
    assert denial is not None
    assert denial.check == "intent"
    denial = new(("trading_state", "max_order_qty", "orders_per_second"), state="reducing")
    assert denial == Denial(
        "trading_state", "trading state is reducing: buy 3 would not reduce the position 1 (BTCUSDT)"
    )
    # halting refuses before the intent is looked at
    denial = new(broken, state="halting")
    assert denial is not None
    assert denial.check == "trading_state"


@pytest.mark.parametrize("mended", range(len(REPLACE_ORDER) + 1))
def test_a_replace_runs_the_same_order(mended: int) -> None:
    denial = replace(set(REPLACE_ORDER[mended:]) | {"max_open_orders"})
    if mended == len(REPLACE_ORDER):
        assert denial is None  # max_open_orders does not apply to a replace
    else:
        assert denial is not None
        assert denial.check == REPLACE_ORDER[mended], f"mended {REPLACE_ORDER[:mended]}"


def test_a_replace_checks_its_intent_after_the_trading_state() -> None:
    denial = replace(REPLACE_ORDER, qty=D(0))
    assert denial is not None
    assert denial.check == "trading_state"
    denial = replace(REPLACE_ORDER[1:], qty=D(0))
    assert denial == Denial("intent", "qty must be positive, got 0")
