"""Replacing an order at Binance: ``order.cancelReplace`` makes a new leg (new ``orderId``, same
client order id); its reports in our types, kept across legs by ``OrderLegs``. Expectations written by hand."""

from __future__ import annotations

from decimal import Decimal

from kernel.binance.legs import OrderLegs, leg_history
from kernel.binance.reports import execution_report
from kernel.binance.wire import OrderJson
from kernel.paper_protocol import Execution, Fill
from tests.kernel.binance._events import OURS, event

D = Decimal


# -- order.cancelReplace: two legs, one client order id ---------------------------------------


def test_while_replacing_the_old_legs_cancel_is_not_reported() -> None:
    assert execution_report(event(x="CANCELED", X="CANCELED", c="x1", C=OURS, z="0.4"), replacing=True) is None


def test_while_replacing_the_new_legs_new_is_our_replaced_with_the_old_legs_fills_carried() -> None:
    report = execution_report(
        event(x="NEW", X="NEW", i=777, q="0.80000000", p="101.00000000"), replacing=True, carried_qty=D("0.4")
    )
    assert report == Execution(
        client_order_id=OURS,
        exec="replaced",
        status="partially_filled",
        venue_order_id="777",
        qty=D("1.2"),
        price=D("101"),
        cum_qty=D("0.4"),
        leaves_qty=D("0.8"),
        ts_ms=1_700_000_000_000,
    )


def test_while_replacing_a_new_leg_rejected_after_the_cancel_leaves_our_order_canceled() -> None:
    report = execution_report(
        event(x="REJECTED", X="REJECTED", i=777, r="WOULD_MATCH_IMMEDIATELY"), replacing=True, carried_qty=D("0.4")
    )
    assert report is not None
    assert (report.exec, report.status, report.cum_qty, report.leaves_qty) == ("canceled", "canceled", D("0.4"), D("0"))
    assert report.reason == "replace: new order rejected after the cancel: WOULD_MATCH_IMMEDIATELY"


def test_a_trade_on_the_new_leg_counts_the_carried_qty() -> None:
    report = execution_report(
        event(x="TRADE", X="FILLED", i=777, q="0.6", l="0.6", z="0.6", L="100", n="0", N="USDT", t=90),
        carried_qty=D("0.4"),
    )
    assert report is not None
    assert (report.status, report.qty, report.cum_qty, report.leaves_qty) == ("filled", D("1.0"), D("1.0"), D("0"))


# -- OrderLegs: the same, kept per client order id --------------------------------------------


def test_order_legs_through_a_replace_then_a_fill_of_the_new_leg() -> None:
    legs = OrderLegs(base_asset="BTC", quote_asset="USDT")
    new = legs.report(event())
    assert new is not None
    assert (new.exec, new.status, new.qty) == ("new", "new", D("1"))
    trade = legs.report(event(x="TRADE", X="PARTIALLY_FILLED", l="0.4", z="0.4", L="100", n="0.04", N="USDT", t=1))
    assert trade is not None
    assert (trade.status, trade.cum_qty, trade.leaves_qty) == ("partially_filled", D("0.4"), D("0.6"))

    legs.begin_replace(OURS, 555)
    assert legs.replacing(OURS)
    assert legs.report(event(x="CANCELED", X="CANCELED", c="cxl1", C=OURS, z="0.4")) is None
    replaced = legs.report(event(x="NEW", X="NEW", i=777, q="0.8", p="101"))
    assert replaced == Execution(
        client_order_id=OURS,
        exec="replaced",
        status="partially_filled",
        venue_order_id="777",
        qty=D("1.2"),
        price=D("101"),
        cum_qty=D("0.4"),
        leaves_qty=D("0.8"),
        ts_ms=1_700_000_000_000,
    )
    assert not legs.replacing(OURS)
    assert legs.carried_qty(OURS) == D("0.4")

    filled = legs.report(
        event(x="TRADE", X="FILLED", i=777, q="0.8", p="101", l="0.8", z="0.8", L="101", n="0.0808", N="USDT", t=2)
    )
    assert filled == Execution(
        client_order_id=OURS,
        exec="trade",
        status="filled",
        venue_order_id="777",
        qty=D("1.2"),
        price=D("101"),
        cum_qty=D("1.2"),
        leaves_qty=D("0"),
        ts_ms=1_700_000_000_000,
        fill=Fill("2", D("0.8"), D("101"), D("0.0808"), 2, 1_700_000_000_000, OURS, "taker"),  # "m": false
    )
    assert legs.carried_qty(OURS) == D("0")  # done: forgotten


def test_order_legs_ignore_a_late_event_of_the_replaced_leg() -> None:
    legs = OrderLegs()
    legs.report(event())
    legs.begin_replace(OURS, 555)
    legs.report(event(x="CANCELED", X="CANCELED", c="cxl1", C=OURS))
    legs.report(event(x="NEW", X="NEW", i=777))
    assert legs.report(event(x="CANCELED", X="CANCELED", c="cxl1", C=OURS)) is None


def test_order_legs_a_new_leg_rejected_after_the_cancel_ends_the_order() -> None:
    legs = OrderLegs()
    legs.report(event(x="TRADE", X="PARTIALLY_FILLED", l="0.4", z="0.4", L="100", t=1))
    legs.begin_replace(OURS, 555)
    assert legs.report(event(x="CANCELED", X="CANCELED", c="cxl1", C=OURS, z="0.4")) is None
    gone = legs.report(event(x="REJECTED", X="REJECTED", i=777, r="WOULD_MATCH_IMMEDIATELY"))
    assert gone is not None
    assert (gone.exec, gone.status, gone.cum_qty, gone.qty) == ("canceled", "canceled", D("0.4"), D("1.4"))
    assert not legs.replacing(OURS)


def test_order_legs_a_trade_on_the_old_leg_during_the_replace_is_reported_and_carried() -> None:
    legs = OrderLegs()
    legs.report(event())
    legs.begin_replace(OURS, 555)
    trade = legs.report(event(x="TRADE", X="PARTIALLY_FILLED", l="0.5", z="0.5", L="100", t=1))
    assert trade is not None
    assert (trade.exec, trade.cum_qty) == ("trade", D("0.5"))
    assert legs.report(event(x="CANCELED", X="CANCELED", c="cxl1", C=OURS, z="0.5")) is None
    replaced = legs.report(event(x="NEW", X="NEW", i=777, q="0.3"))
    assert replaced is not None
    assert (replaced.exec, replaced.qty, replaced.cum_qty, replaced.leaves_qty) == (
        "replaced",
        D("0.8"),
        D("0.5"),
        D("0.3"),
    )


def test_order_legs_after_a_refused_replace_a_cancel_is_a_cancel() -> None:
    legs = OrderLegs()
    legs.report(event())
    legs.begin_replace(OURS, 555)
    legs.end_replace(OURS)
    canceled = legs.report(event(x="CANCELED", X="CANCELED", c="cxl2", C=OURS))
    assert canceled is not None
    assert (canceled.exec, canceled.status) == ("canceled", "canceled")


def test_order_legs_a_late_new_of_the_old_leg_during_a_replace_is_not_a_replace() -> None:
    legs = OrderLegs()
    legs.begin_replace(OURS, 555)  # acked by the answer, its NEW event not yet seen
    new = legs.report(event())
    assert new is not None
    assert new.exec == "new"


def test_order_legs_seeded_after_a_restart() -> None:
    legs = OrderLegs()
    legs.seed(OURS, 777, D("0.4"))
    trade = legs.report(event(x="TRADE", X="PARTIALLY_FILLED", i=777, q="0.8", l="0.2", z="0.2", L="100", t=5))
    assert trade is not None
    assert (trade.qty, trade.cum_qty, trade.leaves_qty) == (D("1.2"), D("0.6"), D("0.6"))


def test_order_legs_an_unknown_leg_is_reported_on_its_own() -> None:
    legs = OrderLegs()
    legs.report(event(x="TRADE", X="PARTIALLY_FILLED", l="0.4", z="0.4", L="100", t=1))
    other = legs.report(event(x="CANCELED", X="CANCELED", i=999, c="cxl", C=OURS, z="0.1"))
    assert other is not None
    assert (other.venue_order_id, other.cum_qty) == ("999", D("0.1"))
    assert legs.carried_qty(OURS) == D("0")


def test_order_legs_an_amend_keeps_the_leg() -> None:
    legs = OrderLegs()
    legs.report(event(x="TRADE", X="PARTIALLY_FILLED", l="0.4", z="0.4", L="100", t=1))
    amended = legs.report(event(x="REPLACED", X="PARTIALLY_FILLED", q="0.7", z="0.4"))
    assert amended is not None
    assert (amended.exec, amended.qty, amended.leaves_qty, amended.venue_order_id) == (
        "replaced",
        D("0.7"),
        D("0.3"),
        "555",
    )


def test_order_legs_forget() -> None:
    legs = OrderLegs()
    legs.begin_replace(OURS, 555)
    legs.forget(OURS)
    assert not legs.replacing(OURS)


def test_order_legs_end_replace_of_an_unknown_order_does_nothing() -> None:
    legs = OrderLegs()
    legs.end_replace(OURS)
    assert not legs.replacing(OURS)


# -- the first leg and the history of an order replaced before a restart ------------------------


def order_row(order_id: int, coid: str, executed: str, *, orig: str = "") -> OrderJson:
    return OrderJson(
        symbol="BTCUSDT",
        order_id=order_id,
        client_order_id=coid,
        price="100",
        orig_qty="1",
        executed_qty=executed,
        status="CANCELED",
        time_in_force="GTC",
        type="LIMIT",
        side="BUY",
        orig_client_order_id=orig,
    )


def test_leg_history_sums_the_earlier_legs_of_one_client_order_id() -> None:
    rows = [
        order_row(9, "other", "5"),
        order_row(10, OURS, "0.3"),
        order_row(11, "other", "1"),
        order_row(12, OURS, "0.2"),
        order_row(13, OURS, "0.1"),  # the newest leg: not carried
        order_row(14, OURS, "0.7"),  # after the newest: not ours to count
    ]
    assert leg_history(rows, OURS, 13) == (D("0.5"), [10, 12, 13])
    assert leg_history([], OURS, 13) == (D("0"), [13])


def test_a_remembered_first_leg_is_carried_nothing_a_later_one_needs_the_history() -> None:
    legs = OrderLegs()
    legs.remember(OURS, 555)
    assert legs.first_leg(OURS) == 555
    assert legs.carried_for(OURS, 555) == D("0")
    assert not legs.needs_history(OURS, 555)
    assert legs.carried_for(OURS, 777) is None
    assert legs.needs_history(OURS, 777)
    legs.adopt(OURS, 777, D("0.4"), [555])
    assert (legs.carried_for(OURS, 777), legs.leg_ids(OURS, 777), legs.needs_history(OURS, 777)) == (
        D("0.4"),
        [555, 777],
        False,
    )
    assert legs.report(event(x="CANCELED", X="CANCELED", i=555, c="x", C=OURS)) is None  # a late old leg's event
    trade = legs.report(event(x="TRADE", X="PARTIALLY_FILLED", i=777, q="0.8", l="0.2", z="0.2", L="100", t=5))
    assert trade is not None
    assert (trade.qty, trade.cum_qty, trade.leaves_qty) == (D("1.2"), D("0.6"), D("0.6"))


def test_an_order_never_seen_is_its_own_first_leg_and_a_done_order_keeps_its_first_leg() -> None:
    legs = OrderLegs()
    assert legs.carried_for(OURS, 555) == D("0")
    legs.report(event(x="TRADE", X="PARTIALLY_FILLED", l="0.4", z="0.4", L="100", t=1))
    legs.begin_replace(OURS, 555)
    legs.report(event(x="NEW", X="NEW", i=777, q="0.6"))
    legs.report(event(x="TRADE", X="FILLED", i=777, q="0.6", l="0.6", z="0.6", L="100", t=2))
    assert legs.first_leg(OURS) == 555
    assert legs.carried_for(OURS, 777) is None  # done and forgotten: a status asks the history again


def test_begin_replace_takes_the_executed_qty_read_by_the_status() -> None:
    legs = OrderLegs()
    legs.begin_replace(OURS, 555, D("0.3"))  # no event of the old leg seen: its status said 0.3 executed
    replaced = legs.report(event(x="NEW", X="NEW", i=777, q="0.7"))
    assert replaced is not None
    assert (replaced.exec, replaced.qty, replaced.cum_qty) == ("replaced", D("1.0"), D("0.3"))
