"""Replacing an order at Binance: ``order.cancelReplace`` makes a new leg (new ``orderId``, same
client order id); its reports and a failed replace in our types. Expectations written by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kernel.binance.errors import BinanceWireError
from kernel.binance.reports import OrderLegs, execution_report, replace_failed
from kernel.binance.wire import ErrorObject
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


# -- a failed order.cancelReplace (STOP_ON_FAILURE) -------------------------------------------


def test_a_cancel_replace_whose_cancel_failed_is_a_replace_reject_of_an_unknown_order() -> None:
    # web-socket-api.md, "Cancel and replace order": the STOP_ON_FAILURE answer with status 400.
    error = ErrorObject(
        code=-2022,
        msg="Order cancel-replace failed.",
        data={
            "cancelResult": "FAILURE",
            "newOrderResult": "NOT_ATTEMPTED",
            "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
            "newOrderResponse": None,
        },
    )
    report = replace_failed(error, OURS, ts_ms=3)
    assert (report.exec, report.status, report.reason, report.ts_ms) == (
        "replace_rejected",
        "rejected",
        "unknown order: -2011 Unknown order sent.",
        3,
    )


def test_a_cancel_replace_whose_new_order_failed_leaves_our_order_canceled() -> None:
    error = ErrorObject(
        code=-2021,
        msg="Order cancel-replace partially failed.",
        data={
            "cancelResult": "SUCCESS",
            "newOrderResult": "FAILURE",
            "cancelResponse": {
                "symbol": "BTCUSDT",
                "origClientOrderId": OURS,
                "orderId": 125690984230,
                "orderListId": -1,
                "clientOrderId": "91fe37ce9e69c90d6358c0",
                "transactTime": 1684804350068,
                "price": "23450.00000000",
                "origQty": "0.00847000",
                "executedQty": "0.00001000",
                "cummulativeQuoteQty": "0.23450000",
                "status": "CANCELED",
                "timeInForce": "GTC",
                "type": "LIMIT",
                "side": "SELL",
            },
            "newOrderResponse": {"code": -2010, "msg": "Order would immediately match and take."},
        },
    )
    assert replace_failed(error, OURS) == Execution(
        client_order_id=OURS,
        exec="canceled",
        status="canceled",
        venue_order_id="125690984230",
        qty=D("0.00847"),
        price=D("23450"),
        cum_qty=D("0.00001"),
        leaves_qty=D("0"),
        ts_ms=1684804350068,
        reason="replace: new order rejected after the cancel: -2010 Order would immediately match and take.",
    )


def test_a_cancel_replace_error_without_data_is_a_replace_reject_of_its_own_code() -> None:
    report = replace_failed(ErrorObject(code=-1013, msg="Filter failure: LOT_SIZE"), OURS)
    assert (report.exec, report.status, report.reason) == ("replace_rejected", "new", "-1013 Filter failure: LOT_SIZE")


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
        fill=Fill("2", D("0.8"), D("101"), D("0.0808"), 2, 1_700_000_000_000, OURS),
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


def test_a_cancel_replace_error_with_other_data_is_a_replace_reject_of_its_own_code() -> None:
    report = replace_failed(ErrorObject(code=-1021, msg="Timestamp outside recvWindow.", data={"serverTime": 1}), OURS)
    assert (report.exec, report.reason) == ("replace_rejected", "-1021 Timestamp outside recvWindow.")


def test_a_cancel_replace_whose_cancel_answer_is_malformed_is_a_wire_error() -> None:
    data = {"cancelResult": "SUCCESS", "newOrderResult": "FAILURE", "cancelResponse": {"orderId": "x"}}
    with pytest.raises(BinanceWireError, match="unexpected cancelResponse"):
        replace_failed(ErrorObject(code=-2021, msg="Order cancel-replace partially failed.", data=data), OURS)


def test_order_legs_end_replace_of_an_unknown_order_does_nothing() -> None:
    legs = OrderLegs()
    legs.end_replace(OURS)
    assert not legs.replacing(OURS)
