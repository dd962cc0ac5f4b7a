"""``BinanceExecutionClient`` against a scripted loopback WebSocket API (``fake_ws_api``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from kernel.binance.client import BinanceExecutionClient
from kernel.binance.signing import HmacSigner
from kernel.execution import ExecutionClient
from kernel.paper_protocol import Error, Execution, NewOrder, OrderStatus
from tests.kernel.binance.fake_ws_api import (
    API_KEY,
    SECRET,
    SERVER_TIME,
    FakeWsApi,
    err,
    execution_report,
    ok,
    order_json,
)

pytestmark = pytest.mark.asyncio

ORDER = NewOrder(
    client_order_id="o1-1-000001", instrument="BTCUSDT", side="buy", qty=Decimal("0.01"), price=Decimal("100.00")
)


class Clock:
    """A settable local clock (ms), 1 s behind the fake server's."""

    def __init__(self) -> None:
        self.ms = SERVER_TIME - 1000

    def __call__(self) -> int:
        return self.ms


@asynccontextmanager
async def connected(api: FakeWsApi, clock: Clock | None = None) -> AsyncIterator[BinanceExecutionClient]:
    client = BinanceExecutionClient(
        api.url,
        "BTCUSDT",
        API_KEY,
        HmacSigner(SECRET),
        request_timeout=0.5,
        now_ms=clock or Clock(),
        base_asset="BTC",
        quote_asset="USDT",
        session_options={"backoff": 0.01, "backoff_max": 0.05, "jitter": 0.0},
    )
    try:
        async with asyncio.timeout(5):
            await client.connect()
        yield client
    finally:
        await client.close()


async def next_report(client: BinanceExecutionClient) -> Any:
    async with asyncio.timeout(2):
        (report,) = await client.next_reports(max_batch=1)
    return report


async def test_connect_syncs_the_clock_and_subscribes_then_reports_flow() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        assert isinstance(client, ExecutionClient)
        assert client.generation == 1
        assert api.methods() == ["time", "userDataStream.subscribe.signature"]
        assert api.bad_signatures == 0
        assert client.clock.offset_ms == 1000  # the server is 1 s ahead of our clock
        assert api.calls[1][1]["timestamp"] == SERVER_TIME  # signed on the server's time
        assert api.calls[1][1]["recvWindow"] == 5000
        await api.push(execution_report("o1-1-000001", "NEW", "NEW"))
        report = await next_report(client)
        assert isinstance(report, Execution)
        assert (report.client_order_id, report.exec, report.status, report.venue_order_id) == (
            "o1-1-000001",
            "new",
            "new",
            "11",
        )


async def test_place_sends_our_client_order_id_signed() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.place"] = lambda p: ok(
            {"symbol": "BTCUSDT", "orderId": 11, "clientOrderId": p["newClientOrderId"], "transactTime": 1}
        )
        await client.send_new(ORDER)
        async with asyncio.timeout(2):
            while "order.place" not in api.methods():
                await asyncio.sleep(0.01)
        params = api.calls[-1][1]
        assert params["newClientOrderId"] == "o1-1-000001"
        assert (params["symbol"], params["side"], params["type"], params["timeInForce"]) == (
            "BTCUSDT",
            "BUY",
            "LIMIT",
            "GTC",
        )
        assert (params["quantity"], params["price"]) == ("0.01", "100.00")
        assert api.bad_signatures == 0


async def test_refused_order_is_a_rejected_report() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.place"] = lambda p: err(400, -2010, "Account has insufficient balance for requested action.")
        await client.send_new(ORDER)
        report = await next_report(client)
        assert isinstance(report, Execution)
        assert (report.exec, report.status) == ("rejected", "rejected")
        assert report.reason == "Account has insufficient balance for requested action."


async def test_duplicate_order_answers_with_its_status() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.place"] = lambda p: err(400, -2010, "Duplicate order sent.")
        api.answers["order.status"] = lambda p: ok(order_json(p["origClientOrderId"]))
        api.answers["myTrades"] = lambda p: ok([])
        await client.send_new(ORDER)
        report = await next_report(client)
        assert isinstance(report, OrderStatus)
        assert report.duplicate is True
        assert report.order is not None
        assert (report.order.venue_order_id, report.order.status) == ("11", "new")


async def test_unanswered_order_is_never_resent_and_status_resolves_it() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.place"] = lambda p: None  # served, answer lost
        await client.send_new(ORDER)
        await asyncio.sleep(0.8)  # past the request timeout
        assert api.methods().count("order.place") == 1
        assert client._reports.empty()  # nothing invented: the kernel asks
        api.answers["order.status"] = lambda p: ok(
            order_json(p["origClientOrderId"], status="PARTIALLY_FILLED", executed="0.00400")
        )
        api.answers["myTrades"] = lambda p: ok(
            [
                {
                    "symbol": "BTCUSDT",
                    "id": 501,
                    "orderId": 11,
                    "price": "100.00",
                    "qty": "0.00400",
                    "commission": "0.0004",
                    "commissionAsset": "USDT",
                    "time": 5,
                    "isBuyer": True,
                    "isMaker": True,
                }
            ]
        )
        snapshot = await client.order_status("o1-1-000001", 1.0)
        assert snapshot is not None
        assert (snapshot.status, snapshot.cum_qty, snapshot.leaves_qty) == (
            "partially_filled",
            Decimal("0.004"),
            Decimal("0.006"),
        )
        assert [(f.fill_seq, f.qty, f.fee) for f in snapshot.fills] == [(501, Decimal("0.004"), Decimal("0.0004"))]
        assert api.methods().count("order.place") == 1


async def test_unknown_order_status_is_none() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.status"] = lambda p: err(400, -2013, "Order does not exist.")
        assert await client.order_status("o1-1-000009", 1.0) is None


async def test_cancel_of_an_unknown_order_says_unknown_order() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.cancel"] = lambda p: err(400, -2011, "Unknown order sent.")
        await client.send_cancel("o1-1-000001")
        report = await next_report(client)
        assert isinstance(report, Execution)
        assert report.exec == "cancel_rejected"
        assert report.reason is not None
        assert report.reason.startswith("unknown order")
        assert api.calls[-1][1]["origClientOrderId"] == "o1-1-000001"


async def test_reconnect_resubscribes_and_counts_a_new_generation() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        await api.drop_connections()
        async with asyncio.timeout(3):
            assert await client.wait_connected(after=1) == 2
        assert api.methods().count("userDataStream.subscribe.signature") == 2
        await api.push(execution_report("o1-1-000001", "CANCELED", "CANCELED"))
        report = await next_report(client)
        assert (report.exec, report.status) == ("canceled", "canceled")


async def test_server_shutdown_event_reconnects() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        for ws in api.connections:
            await ws.send('{"event": {"e": "serverShutdown", "E": 1}}')
        async with asyncio.timeout(3):
            assert await client.wait_connected(after=1) == 2


async def test_429_pauses_requests_until_retry_after() -> None:
    clock = Clock()
    async with FakeWsApi() as api, connected(api, clock) as client:
        retry_at = SERVER_TIME + 5000
        api.answers["order.place"] = lambda p: err(429, -1015, "Too many new orders.", {"retryAfter": retry_at})
        await client.send_new(ORDER)
        report = await next_report(client)
        assert isinstance(report, Error)
        assert (report.code, report.ref, report.client_order_id) == ("rate_limited", "new_order", "o1-1-000001")
        assert report.retry_after_ms == 5000  # on Binance's clock: 1 s ahead of ours
        await client.send_new(ORDER)  # refused here: nothing sent
        report = await next_report(client)
        assert isinstance(report, Error)
        assert report.code == "rate_limited"
        assert api.methods().count("order.place") == 1
        clock.ms = retry_at + 1
        api.answers["order.place"] = lambda p: ok(
            {"symbol": "BTCUSDT", "orderId": 12, "clientOrderId": "x", "transactTime": 1}
        )
        await client.send_new(ORDER)
        async with asyncio.timeout(2):
            while api.methods().count("order.place") < 2:
                await asyncio.sleep(0.01)


async def test_418_halts_order_entry_until_the_ban_ends() -> None:
    clock = Clock()
    async with FakeWsApi() as api, connected(api, clock) as client:
        until = SERVER_TIME + 120_000
        api.answers["order.cancel"] = lambda p: err(
            418, -1003, "Way too many requests; IP banned.", {"retryAfter": until}
        )
        await client.send_cancel("o1-1-000001")
        report = await next_report(client)
        assert isinstance(report, Error)
        assert report.code == "rate_limited"
        assert report.retry_after_ms == 120_000
        assert report.ref == "cancel_order"
        await client.send_new(ORDER)
        report = await next_report(client)
        assert isinstance(report, Error)
        assert report.retry_after_ms == 120_000
        assert "order.place" not in api.methods()


async def test_1021_resyncs_the_clock_and_sends_once_more() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        times: list[int] = []

        def place(params: dict[str, Any]) -> dict[str, Any]:
            times.append(params["timestamp"])
            if len(times) == 1:
                return err(400, -1021, "Timestamp for this request is outside of the recvWindow.")
            return ok({"symbol": "BTCUSDT", "orderId": 11, "clientOrderId": "x", "transactTime": 1})

        api.answers["order.place"] = place
        api.answers["time"] = lambda p: ok({"serverTime": SERVER_TIME + 3000})  # the server moved ahead
        await client.send_new(ORDER)
        async with asyncio.timeout(2):
            while len(times) < 2:
                await asyncio.sleep(0.01)
        assert api.methods().count("time") == 2
        assert times == [SERVER_TIME, SERVER_TIME + 3000]
        assert client._reports.empty()


async def test_fills_page_reads_my_trades_from_the_cursor() -> None:
    async with FakeWsApi() as api, connected(api) as client:

        def trade(i: int) -> dict[str, Any]:
            return {
                "symbol": "BTCUSDT",
                "id": i,
                "orderId": 10 + i % 2,
                "price": "100.00",
                "qty": "0.001",
                "commission": "0.0001",
                "commissionAsset": "USDT",
                "time": i,
                "isBuyer": True,
                "isMaker": False,
            }

        def my_trades(params: dict[str, Any]) -> dict[str, Any]:
            if "fromId" not in params:  # the newest (Binance: most recent first without fromId)
                return ok([trade(7)][: params["limit"]])
            return ok([trade(i) for i in range(params["fromId"], min(params["fromId"] + params["limit"], 8))])

        api.answers["myTrades"] = my_trades
        api.answers["order.status"] = lambda p: ok(order_json(f"o-{p['orderId']}", p["orderId"]))
        page = await client.fills_page(after=4, limit=2)
        assert [(f.fill_seq, f.client_order_id) for f in page.fills] == [(5, "o-11"), (6, "o-10")]
        assert (page.more, page.next, page.last_fill_seq) == (True, 6, 7)
        assert [p["fromId"] for m, p in api.calls if m == "myTrades" and "fromId" in p] == [5]
        fills = await client.fills_since(4)
        assert [f.fill_seq for f in fills] == [5, 6, 7]
        assert api.methods().count("order.status") == 2  # each order's client order id asked once
        newest = await client.fills_page(after=7, limit=1)
        assert (newest.fills, newest.last_fill_seq) == ([], 7)


async def test_open_orders_paged_by_client_order_id() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["openOrders.status"] = lambda p: ok(
            [order_json("o-c", 3), order_json("o-a", 1), order_json("o-b", 2)]
        )
        page = await client.open_orders_page(after="", limit=2)
        assert [o.client_order_id for o in page.orders] == ["o-a", "o-b"]
        assert (page.more, page.next) == (True, "o-b")
        page = await client.open_orders_page(after="o-b", limit=2)
        assert [o.client_order_id for o in page.orders] == ["o-c"]
        assert page.more is False


async def test_balances_from_account_status_and_the_stream() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["account.status"] = lambda p: ok(
            {"canTrade": True, "balances": [{"asset": "USDT", "free": "900.5", "locked": "100"}]}
        )
        await client.account_status()
        assert client.last_balances is not None
        usdt = {b.asset: b for b in client.last_balances}["USDT"]
        assert (usdt.total, usdt.available) == (Decimal("1000.5"), Decimal("900.5"))
        await api.push({"e": "outboundAccountPosition", "E": 1, "u": 1, "B": [{"a": "BTC", "f": "0.5", "l": "0"}]})
        async with asyncio.timeout(2):
            while "BTC" not in {b.asset for b in client.last_balances or []} or {
                b.asset: b for b in client.last_balances or []
            }["BTC"].total != Decimal("0.5"):
                await asyncio.sleep(0.01)


async def test_cancel_replace_keeps_one_id_and_one_cumulative_qty() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.status"] = lambda p: ok(order_json("o1-1-000001", 11, "PARTIALLY_FILLED", "0.00400"))
        api.answers["myTrades"] = lambda p: ok([])
        api.answers["order.cancelReplace"] = lambda p: ok({"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS"})
        await client.send_replace("o1-1-000001", Decimal("0.02"), Decimal("101.00"))
        async with asyncio.timeout(2):
            while "order.cancelReplace" not in api.methods():
                await asyncio.sleep(0.01)
        params = api.calls[-1][1]
        assert (params["cancelOrigClientOrderId"], params["newClientOrderId"]) == ("o1-1-000001", "o1-1-000001")
        assert (params["cancelReplaceMode"], params["quantity"], params["price"]) == (
            "STOP_ON_FAILURE",
            "0.01600",
            "101.00",
        )
        # Binance: the old leg canceled, the new leg (new orderId) new, then a fill of the new leg
        await api.push(execution_report("x-cancel", "CANCELED", "CANCELED", 11, C="o1-1-000001", z="0.00400"))
        await api.push(execution_report("o1-1-000001", "NEW", "NEW", 12, q="0.01600", p="101.00"))
        await api.push(
            execution_report(
                "o1-1-000001",
                "TRADE",
                "PARTIALLY_FILLED",
                12,
                q="0.01600",
                p="101.00",
                l="0.00100",
                z="0.00100",
                L="101.00",
                t=77,
                n="0",
                N="USDT",
            )
        )
        replaced = await next_report(client)
        assert (replaced.exec, replaced.venue_order_id, replaced.qty, replaced.cum_qty) == (
            "replaced",
            "12",
            Decimal("0.02"),
            Decimal("0.004"),
        )
        trade = await next_report(client)
        assert (trade.exec, trade.cum_qty, trade.leaves_qty) == ("trade", Decimal("0.005"), Decimal("0.015"))


async def test_qty_decrease_at_the_same_price_amends_keeping_priority() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.status"] = lambda p: ok(order_json("o1-1-000001"))
        api.answers["myTrades"] = lambda p: ok([])
        api.answers["order.amend.keepPriority"] = lambda p: ok({})
        await client.send_replace("o1-1-000001", Decimal("0.005"), None)
        async with asyncio.timeout(2):
            while "order.amend.keepPriority" not in api.methods():
                await asyncio.sleep(0.01)
        params = api.calls[-1][1]
        assert (params["newQty"], params["origClientOrderId"], params["newClientOrderId"]) == (
            "0.005",
            "o1-1-000001",
            "o1-1-000001",
        )
        assert "order.cancelReplace" not in api.methods()


async def test_replace_of_an_unknown_order_says_unknown_order() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.status"] = lambda p: err(400, -2013, "Order does not exist.")
        await client.send_replace("o1-1-000001", Decimal("0.02"), None)
        report = await next_report(client)
        assert report.exec == "replace_rejected"
        assert report.reason.startswith("unknown order")


async def test_sending_while_down_raises_venue_unavailable() -> None:
    from kernel.execution import VenueUnavailable

    async with FakeWsApi() as api:
        client = BinanceExecutionClient(api.url, "BTCUSDT", API_KEY, HmacSigner(SECRET))
        with pytest.raises(VenueUnavailable):
            await client.send_new(ORDER)
        await client.close()


async def test_orders_limit_counted_here_refuses_without_sending() -> None:
    clock = Clock()
    async with FakeWsApi() as api, connected(api, clock) as client:

        def place(params: dict[str, Any]) -> dict[str, Any]:
            count = api.methods().count("order.place")  # Binance counts each order in the window
            limits = [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 2, "count": count}]
            return {
                **ok({"symbol": "BTCUSDT", "orderId": 11, "clientOrderId": "x", "transactTime": 1}),
                "rateLimits": limits,
            }

        api.answers["order.place"] = place
        await client.send_new(ORDER)  # Binance counts it: 1 of 2
        async with asyncio.timeout(2):
            while not client.rate_limits.limits("ORDERS"):  # the answer told the limit
                await asyncio.sleep(0.01)
        clock.ms += 1  # (orders sent in the same ms as a report are taken as counted by it)
        await client.send_new(ORDER)  # 2 of 2: sent
        clock.ms += 1
        await client.send_new(ORDER)  # would be 3 of 2: refused here
        report = await next_report(client)
        assert isinstance(report, Error)
        assert (report.code, report.client_order_id) == ("rate_limited", "o1-1-000001")
        assert report.retry_after_ms == 9_998  # the 10 s window began at SERVER_TIME (a multiple of 10 s)
        await asyncio.sleep(0.1)
        assert api.methods().count("order.place") == 2


async def test_day_orders_are_refused_here() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        await client.send_new(msgspec.structs.replace(ORDER, tif="day"))
        report = await next_report(client)
        assert (report.exec, report.status) == ("rejected", "rejected")
        assert "no day orders" in report.reason
        assert "order.place" not in api.methods()


async def test_an_order_in_flight_when_the_connection_drops_is_not_resent() -> None:
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.place"] = lambda p: None  # the answer is lost with the connection
        await client.send_new(ORDER)
        async with asyncio.timeout(2):
            while "order.place" not in api.methods():
                await asyncio.sleep(0.01)
        await api.drop_connections()
        async with asyncio.timeout(3):
            assert await client.wait_connected(after=1) == 2  # the kernel reconciles this new session
        await asyncio.sleep(0.2)
        assert api.methods().count("order.place") == 1
        assert client._reports.empty()


async def test_a_refused_subscription_is_retried_on_a_new_connection() -> None:
    async with FakeWsApi() as api:
        answers = iter([err(401, -2015, "Invalid API-key, IP, or permissions for action."), ok({"subscriptionId": 1})])
        api.answers["userDataStream.subscribe.signature"] = lambda p: next(answers)
        async with connected(api) as client:
            assert client.generation == 1  # counted only once subscribed
            assert api.methods().count("userDataStream.subscribe.signature") == 2
            assert len(api.connections) == 2
            assert "-2015" in client.ws_api.last_error


def leg_trade(trade_id: int, order_id: int, qty: str) -> dict[str, Any]:
    """A ``myTrades`` row of ``order_id`` at 100."""
    return {
        "symbol": "BTCUSDT",
        "id": trade_id,
        "orderId": order_id,
        "price": "100.00",
        "qty": qty,
        "commission": "0",
        "commissionAsset": "USDT",
        "time": trade_id,
        "isBuyer": True,
        "isMaker": False,
    }


async def test_a_remembered_order_counts_its_earlier_legs_from_all_orders() -> None:
    coid = "o1-1-000001"
    async with FakeWsApi() as api, connected(api) as client:
        # leg 11 (ours) executed 0.004 then was cancel-replaced by leg 13: 0.01 left, 0.001 executed
        api.answers["order.status"] = lambda p: ok(order_json(coid, 13, "PARTIALLY_FILLED", "0.00100"))
        api.answers["allOrders"] = lambda p: ok(
            [
                order_json(coid, 11, "CANCELED", "0.00400"),
                order_json("o1-1-000002", 12, "FILLED", "0.01000"),
                order_json(coid, 13, "PARTIALLY_FILLED", "0.00100"),
                order_json("o1-1-000003", 14, "NEW"),
            ][: p["limit"]]
        )
        trades = {11: [leg_trade(70, 11, "0.004")], 13: [leg_trade(72, 13, "0.001")]}
        api.answers["myTrades"] = lambda p: ok(trades[p["orderId"]])
        client.remember_order(coid, "11")  # the journal's venue_order_id: the first leg
        status = await client.order_status(coid, 1.0)
        assert status is not None
        assert (status.qty, status.cum_qty, status.leaves_qty, status.status, status.venue_order_id) == (
            Decimal("0.014"),
            Decimal("0.005"),
            Decimal("0.009"),
            "partially_filled",
            "13",
        )
        assert [(f.trade_id, f.qty) for f in status.fills] == [("70", Decimal("0.004")), ("72", Decimal("0.001"))]
        (asked,) = [params for method, params in api.calls if method == "allOrders"]
        assert (asked["orderId"], asked["limit"]) == (11, 1000)
        # remembered: the open orders and the new leg's reports carry the earlier leg without asking again
        api.answers["openOrders.status"] = lambda p: ok([order_json(coid, 13, "PARTIALLY_FILLED", "0.00100")])
        (open_order,) = await client.open_orders(1.0)
        assert (open_order.qty, open_order.cum_qty) == (Decimal("0.014"), Decimal("0.005"))
        await api.push(
            execution_report(coid, "TRADE", "PARTIALLY_FILLED", 13, l="0.00200", z="0.00300", L="100.00", t=73)
        )
        trade = await next_report(client)
        assert (trade.exec, trade.qty, trade.cum_qty, trade.leaves_qty) == (
            "trade",
            Decimal("0.014"),
            Decimal("0.007"),
            Decimal("0.007"),
        )
        assert api.methods().count("allOrders") == 1


async def test_a_remembered_order_never_replaced_needs_no_history() -> None:
    coid = "o1-1-000001"
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["order.status"] = lambda p: ok(order_json(coid, 11, "PARTIALLY_FILLED", "0.00400"))
        api.answers["myTrades"] = lambda p: ok([leg_trade(70, 11, "0.004")])
        client.remember_order(coid, "11")
        status = await client.order_status(coid, 1.0)
        assert status is not None
        assert (status.qty, status.cum_qty, [f.trade_id for f in status.fills]) == (
            Decimal("0.01"),
            Decimal("0.004"),
            ["70"],
        )
        assert "allOrders" not in api.methods()


async def test_the_first_report_of_a_later_leg_after_a_restart_waits_for_the_history() -> None:
    coid = "o1-1-000001"
    async with FakeWsApi() as api, connected(api) as client:
        api.answers["allOrders"] = lambda p: ok(
            [order_json(coid, 11, "CANCELED", "0.00400"), order_json(coid, 13, "PARTIALLY_FILLED", "0.00100")]
        )
        client.remember_order(coid, "11")
        await api.push(
            execution_report(coid, "TRADE", "PARTIALLY_FILLED", 13, l="0.00100", z="0.00100", L="100.00", t=72)
        )
        await api.push(execution_report(coid, "TRADE", "FILLED", 13, l="0.00900", z="0.01000", L="100.00", t=73))
        first, second = await next_report(client), await next_report(client)
        assert (first.qty, first.cum_qty, first.status) == (Decimal("0.014"), Decimal("0.005"), "partially_filled")
        assert (second.qty, second.cum_qty, second.status) == (Decimal("0.014"), Decimal("0.014"), "filled")
