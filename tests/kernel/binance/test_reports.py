"""Binance reports → our venue types, row by row; every expectation is written out by hand.

The events are built as Binance sends them (single-letter names, decimals as text) and decoded
through ``kernel.binance.wire``, so the field names are checked too.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from kernel.binance.errors import BinanceWireError
from kernel.binance.reports import (
    balances_of,
    cancel_rejected,
    execution_report,
    fill_of,
    order_rejected,
    order_snapshot,
    replace_rejected,
    status_of,
)
from kernel.binance.wire import AccountStatus, ExecutionReportEvent, OrderJson, TradeRow, decode_event
from kernel.order_reports import execution_facts
from kernel.paper_protocol import Balance, BalancesReport, Execution, Fill, OrderSnapshot
from machines.order_reports import forgotten
from tests.kernel.binance._events import OURS, event

D = Decimal


# -- order status, row by row -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("binance", "cum", "ours"),
    [
        ("NEW", "0", "new"),
        ("PENDING_NEW", "0", "new"),
        ("PARTIALLY_FILLED", "0.4", "partially_filled"),
        ("FILLED", "1", "filled"),
        ("CANCELED", "0", "canceled"),
        ("CANCELED", "0.4", "canceled"),
        ("PENDING_CANCEL", "0", "new"),
        ("PENDING_CANCEL", "0.4", "partially_filled"),
        ("REJECTED", "0", "rejected"),
        ("EXPIRED", "0", "expired"),
        ("EXPIRED", "0.4", "expired"),
        ("EXPIRED_IN_MATCH", "0", "expired"),
    ],
)
def test_every_order_status(binance: str, cum: str, ours: str) -> None:
    assert status_of(binance, D(cum)) == ours


def test_an_unknown_order_status_is_a_wire_error() -> None:
    with pytest.raises(BinanceWireError, match="unknown order status 'HALTED'"):
        status_of("HALTED")


# -- execution types, row by row --------------------------------------------------------------


def test_new() -> None:
    assert execution_report(event()) == Execution(
        client_order_id=OURS,
        exec="new",
        status="new",
        venue_order_id="555",
        qty=D("1"),
        price=D("100"),
        cum_qty=D("0"),
        leaves_qty=D("1"),
        ts_ms=1_700_000_000_000,
    )


def test_canceled_names_our_id_in_C_not_the_cancel_requests_id_in_c() -> None:
    report = execution_report(event(x="CANCELED", X="CANCELED", c="cancelReq123", C=OURS, z="0.40000000"))
    assert report == Execution(
        client_order_id=OURS,
        exec="canceled",
        status="canceled",
        venue_order_id="555",
        qty=D("1"),
        price=D("100"),
        cum_qty=D("0.4"),
        leaves_qty=D("0"),
        ts_ms=1_700_000_000_000,
    )


def test_replaced_is_an_amend_keep_priority() -> None:
    report = execution_report(event(x="REPLACED", X="NEW", q="0.60000000"))
    assert report is not None
    assert (report.exec, report.status, report.qty, report.leaves_qty, report.venue_order_id) == (
        "replaced",
        "new",
        D("0.6"),
        D("0.6"),
        "555",
    )


def test_amendment_reads_as_replaced() -> None:
    report = execution_report(event(x="AMENDMENT", X="PARTIALLY_FILLED", q="0.60000000", z="0.10000000"))
    assert report is not None
    assert (report.exec, report.status, report.qty, report.cum_qty, report.leaves_qty) == (
        "replaced",
        "partially_filled",
        D("0.6"),
        D("0.1"),
        D("0.5"),
    )


def test_rejected_carries_the_reject_reason() -> None:
    report = execution_report(event(x="REJECTED", X="REJECTED", r="INSUFFICIENT_BALANCES"))
    assert report == Execution(
        client_order_id=OURS,
        exec="rejected",
        status="rejected",
        venue_order_id="555",
        qty=D("1"),
        price=D("100"),
        cum_qty=D("0"),
        leaves_qty=D("0"),
        ts_ms=1_700_000_000_000,
        reason="INSUFFICIENT_BALANCES",
    )


def test_trade_partial_with_the_fee_in_the_quote_asset() -> None:
    report = execution_report(
        event(
            x="TRADE", X="PARTIALLY_FILLED", l="0.40000000", z="0.40000000", L="99.50000000", n="0.0398", N="USDT", t=77
        ),
        base_asset="BTC",
        quote_asset="USDT",
    )
    assert report == Execution(
        client_order_id=OURS,
        exec="trade",
        status="partially_filled",
        venue_order_id="555",
        qty=D("1"),
        price=D("100"),
        cum_qty=D("0.4"),
        leaves_qty=D("0.6"),
        ts_ms=1_700_000_000_000,
        fill=Fill(
            trade_id="77",
            qty=D("0.4"),
            price=D("99.5"),
            fee=D("0.0398"),
            fill_seq=77,
            ts_ms=1_700_000_000_000,
            client_order_id=OURS,
            liquidity="taker",  # the event's "m": false
        ),
    )


def test_trade_filling_the_order_with_the_fee_in_the_base_asset_is_valued_at_the_fill_price() -> None:
    report = execution_report(
        event(x="TRADE", X="FILLED", l="1.00000000", z="1.00000000", L="100.00000000", n="0.001", N="BTC", t=78),
        base_asset="BTC",
        quote_asset="USDT",
    )
    assert report is not None
    assert report.fill is not None
    assert (report.status, report.leaves_qty, report.fill.fee, report.fill.fill_seq) == ("filled", D("0"), D("0.1"), 78)


def test_a_fee_in_a_third_asset_counts_zero() -> None:
    report = execution_report(
        event(x="TRADE", X="FILLED", l="1", z="1", L="100", n="0.0002", N="BNB", t=79),
        base_asset="BTC",
        quote_asset="USDT",
    )
    assert report is not None
    assert report.fill is not None
    assert report.fill.fee == D("0")


def test_expired_ioc_after_a_partial_fill() -> None:
    report = execution_report(event(x="EXPIRED", X="EXPIRED", f="IOC", z="0.40000000"))
    assert report == Execution(
        client_order_id=OURS,
        exec="expired",
        status="expired",
        venue_order_id="555",
        qty=D("1"),
        price=D("100"),
        cum_qty=D("0.4"),
        leaves_qty=D("0"),
        ts_ms=1_700_000_000_000,
        reason="expired",
    )


def test_expired_carries_binances_expiry_reason_when_given() -> None:
    report = execution_report(event(x="EXPIRED", X="EXPIRED", eR="INSUFFICIENT_LIQUIDITY"))
    assert report is not None
    assert report.reason == "INSUFFICIENT_LIQUIDITY"


def test_trade_prevention_is_an_expiry_by_self_trade_prevention() -> None:
    report = execution_report(event(x="TRADE_PREVENTION", X="EXPIRED_IN_MATCH"))
    assert report is not None
    assert (report.exec, report.status, report.leaves_qty, report.reason) == (
        "expired",
        "expired",
        D("0"),
        "self-trade prevention",
    )


def test_a_market_order_has_no_price() -> None:
    report = execution_report(event(o="MARKET", p="0.00000000"))
    assert report is not None
    assert report.price is None


def test_an_unknown_execution_type_is_a_wire_error() -> None:
    with pytest.raises(BinanceWireError, match="unknown execution type 'CALCULATED'"):
        execution_report(event(x="CALCULATED"))


def test_a_malformed_number_is_a_wire_error() -> None:
    with pytest.raises(BinanceWireError):
        execution_report(event(q="1e5"))


# -- myTrades and order objects ---------------------------------------------------------------

DOCS_ORDER = {  # web-socket-api.md, "Query order (USER_DATA)" response
    "symbol": "BTCUSDT",
    "orderId": 12569099453,
    "orderListId": -1,
    "clientOrderId": "4d96324ff9d44481926157",
    "price": "23416.10000000",
    "origQty": "0.00847000",
    "executedQty": "0.00847000",
    "cummulativeQuoteQty": "198.33521500",
    "status": "FILLED",
    "timeInForce": "GTC",
    "type": "LIMIT",
    "side": "SELL",
    "stopPrice": "0.00000000",
    "icebergQty": "0.00000000",
    "time": 1660801715639,
    "updateTime": 1660801717945,
    "isWorking": True,
    "workingTime": 1660801715639,
    "origQuoteOrderQty": "0.00000000",
    "selfTradePreventionMode": "NONE",
}
DOCS_TRADES = [  # web-socket-api.md, "Account trade history (USER_DATA)" response
    {
        "symbol": "BTCUSDT",
        "id": 1650422481,
        "orderId": 12569099453,
        "orderListId": -1,
        "price": "23416.10000000",
        "qty": "0.00635000",
        "quoteQty": "148.69223500",
        "commission": "0.00000000",
        "commissionAsset": "BNB",
        "time": 1660801715793,
        "isBuyer": False,
        "isMaker": True,
        "isBestMatch": True,
    },
    {
        "symbol": "BTCUSDT",
        "id": 1650422482,
        "orderId": 12569099453,
        "orderListId": -1,
        "price": "23416.50000000",
        "qty": "0.00212000",
        "quoteQty": "49.64298000",
        "commission": "0.00000000",
        "commissionAsset": "BNB",
        "time": 1660801715793,
        "isBuyer": False,
        "isMaker": True,
        "isBestMatch": True,
    },
]


def rows() -> list[TradeRow]:
    return msgspec.convert(DOCS_TRADES, list[TradeRow])


def test_fill_of_a_my_trades_row() -> None:
    assert fill_of(rows()[0], "4d96324ff9d44481926157") == Fill(
        trade_id="1650422481",
        qty=D("0.00635"),
        price=D("23416.1"),
        fee=D("0"),
        fill_seq=1650422481,
        ts_ms=1660801715793,
        client_order_id="4d96324ff9d44481926157",
        liquidity="maker",  # "isMaker": true
    )


def test_fill_of_values_a_usdt_commission_as_is() -> None:
    row = msgspec.convert({**DOCS_TRADES[0], "commission": "0.148", "commissionAsset": "USDT"}, TradeRow)
    assert fill_of(row, quote_asset="USDT", base_asset="BTC").fee == D("0.148")


COID = "4d96324ff9d44481926157"


def test_order_snapshot_of_the_docs_order_and_its_trades_in_trade_id_order() -> None:
    order = msgspec.convert(DOCS_ORDER, OrderJson)
    snapshot = order_snapshot(order, reversed(rows()))
    assert snapshot == OrderSnapshot(
        client_order_id="4d96324ff9d44481926157",
        venue_order_id="12569099453",
        instrument="BTCUSDT",
        side="sell",
        order_type="limit",
        tif="gtc",
        qty=D("0.00847"),
        price=D("23416.1"),
        status="filled",
        cum_qty=D("0.00847"),
        leaves_qty=D("0"),
        fills=[
            Fill("1650422481", D("0.00635"), D("23416.1"), D("0"), 1650422481, 1660801715793, COID, "maker"),
            Fill("1650422482", D("0.00212"), D("23416.5"), D("0"), 1650422482, 1660801715793, COID, "maker"),
        ],
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status": "NEW", "executedQty": "0"}, ("new", D("0.00847"), "limit", "gtc", "sell")),
        (
            {"status": "PARTIALLY_FILLED", "executedQty": "0.00635"},
            ("partially_filled", D("0.00212"), "limit", "gtc", "sell"),
        ),
        (
            {"status": "NEW", "type": "LIMIT_MAKER", "side": "BUY", "executedQty": "0"},
            ("new", D("0.00847"), "limit", "gtc", "buy"),
        ),
        (
            {"status": "EXPIRED", "timeInForce": "IOC", "executedQty": "0.001"},
            ("expired", D("0"), "limit", "ioc", "sell"),
        ),
        ({"status": "EXPIRED", "timeInForce": "FOK", "executedQty": "0"}, ("expired", D("0"), "limit", "fok", "sell")),
        ({"status": "FILLED", "type": "MARKET", "price": "0.00000000"}, ("filled", D("0"), "market", "gtc", "sell")),
    ],
)
def test_order_snapshot_rows(changes: dict[str, str], expected: tuple[object, ...]) -> None:
    snapshot = order_snapshot(msgspec.convert({**DOCS_ORDER, **changes}, OrderJson))
    assert (snapshot.status, snapshot.leaves_qty, snapshot.order_type, snapshot.tif, snapshot.side) == expected


def test_order_snapshot_of_a_replaced_order_carries_the_old_legs_qty() -> None:
    order = msgspec.convert({**DOCS_ORDER, "status": "NEW", "origQty": "0.5", "executedQty": "0.1"}, OrderJson)
    snapshot = order_snapshot(order, carried_qty=D("0.2"), client_order_id=OURS)
    assert (snapshot.client_order_id, snapshot.qty, snapshot.cum_qty, snapshot.leaves_qty, snapshot.status) == (
        OURS,
        D("0.7"),
        D("0.3"),
        D("0.4"),
        "partially_filled",
    )


def test_order_snapshot_refuses_an_order_type_we_never_send() -> None:
    with pytest.raises(BinanceWireError, match="unknown order type 'STOP_LOSS'"):
        order_snapshot(msgspec.convert({**DOCS_ORDER, "type": "STOP_LOSS"}, OrderJson))


# -- refused cancels and replaces -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (-2011, "Unknown order sent."),
        (-2013, "Order does not exist."),
        (-2026, "Order was canceled or expired with no executed qty over 90 days ago and has been archived."),
    ],
)
def test_a_cancel_of_an_order_binance_no_longer_has_is_an_unknown_order(code: int, msg: str) -> None:
    report = cancel_rejected(code, msg, OURS, ts_ms=5)
    assert report == Execution(
        client_order_id=OURS,
        exec="cancel_rejected",
        status="rejected",
        venue_order_id="",
        qty=D("0"),
        price=None,
        cum_qty=D("0"),
        leaves_qty=D("0"),
        ts_ms=5,
        reason=f"unknown order: {code} {msg}",
    )
    assert forgotten(execution_facts(report))


def test_a_cancel_refused_for_another_reason_leaves_the_order_working() -> None:
    report = cancel_rejected(-2011, "Order was not canceled due to cancel restrictions.", OURS)
    assert (report.exec, report.status, report.reason) == (
        "cancel_rejected",
        "new",
        "-2011 Order was not canceled due to cancel restrictions.",
    )
    assert not forgotten(execution_facts(report))


def test_a_replace_of_an_unknown_order() -> None:
    report = replace_rejected(-2011, "Unknown order sent.", OURS)
    assert (report.exec, report.status, report.reason) == (
        "replace_rejected",
        "rejected",
        "unknown order: -2011 Unknown order sent.",
    )
    assert forgotten(execution_facts(report))


# -- balances ---------------------------------------------------------------------------------


def test_balances_of_the_docs_account() -> None:
    account = msgspec.convert(
        {
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "accountType": "SPOT",
            "balances": [
                {"asset": "BNB", "free": "0.00000000", "locked": "0.00000000"},
                {"asset": "BTC", "free": "1.3447112", "locked": "0.08600000"},
                {"asset": "USDT", "free": "1021.21000000", "locked": "0.00000000"},
            ],
            "permissions": ["SPOT"],
        },
        AccountStatus,
    )
    assert balances_of(account) == BalancesReport(
        balances=[
            Balance("BTC", D("1.4307112"), D("1.3447112")),
            Balance("USDT", D("1021.21"), D("1021.21")),
        ]
    )
    assert balances_of(account, ["BNB", "ETH"]).balances == [
        Balance("BNB", D("0"), D("0")),
        Balance("BTC", D("1.4307112"), D("1.3447112")),
        Balance("ETH", D("0"), D("0")),
        Balance("USDT", D("1021.21"), D("1021.21")),
    ]


def test_a_refused_order_place_is_rejected_with_the_code_and_message() -> None:
    assert order_rejected(-2010, "Account has insufficient balance for requested action.", OURS, ts_ms=9) == Execution(
        client_order_id=OURS,
        exec="rejected",
        status="rejected",
        venue_order_id="",
        qty=D("0"),
        price=None,
        cum_qty=D("0"),
        leaves_qty=D("0"),
        ts_ms=9,
        reason="Account has insufficient balance for requested action.",
    )


def test_a_duplicate_client_order_id_is_not_a_rejection() -> None:
    assert order_rejected(-2010, "Duplicate order sent.", OURS) is None


@pytest.mark.parametrize(("m", "liquidity"), [(True, "maker"), (False, "taker")])
def test_a_trade_reports_liquidity_by_its_maker_flag(m: bool, liquidity: str) -> None:
    report = execution_report(
        event(x="TRADE", X="PARTIALLY_FILLED", l="0.1", z="0.1", L="100", n="0", N="USDT", t=9, m=m),
        base_asset="BTC",
        quote_asset="USDT",
    )
    assert report is not None
    assert report.fill is not None
    assert report.fill.liquidity == liquidity


def test_a_trade_without_the_maker_flag_has_no_liquidity() -> None:
    raw = msgspec.json.decode(msgspec.json.encode(event(x="TRADE", X="FILLED", l="1", z="1", L="100", n="0", t=9)))
    del raw["m"]  # an older or partial report
    decoded = decode_event(msgspec.json.encode({"e": "executionReport", **raw}))
    assert isinstance(decoded, ExecutionReportEvent)
    report = execution_report(decoded, base_asset="BTC", quote_asset="USDT")
    assert report is not None
    assert report.fill is not None
    assert report.fill.liquidity is None


def test_my_trades_rows_say_taker_when_not_the_maker() -> None:
    row = msgspec.convert({**DOCS_TRADES[0], "isMaker": False}, TradeRow)
    assert fill_of(row).liquidity == "taker"
