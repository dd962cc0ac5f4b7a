"""The Binance WebSocket API stand-in answers as the docs say: raw ``websockets`` clients, signatures
computed here by hand (HMAC-SHA256 hex; Ed25519 base64), expectations written by hand (loopback)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.standins.binance_api import ApiFaults, BinanceApiStandIn

REPO = Path(__file__).resolve().parents[2]
KEY, SECRET = "K1", "S1"


def signed(params: dict[str, Any], *, key: str = KEY, secret: str = SECRET, ts: int | None = None) -> dict[str, Any]:
    """``params`` with apiKey, timestamp and the HMAC signature, computed here."""
    out = dict(params, apiKey=key, timestamp=int(time.time() * 1000) if ts is None else ts)
    payload = "&".join(f"{name}={out[name]}" for name in sorted(out))
    out["signature"] = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return out


class Client:
    """A raw WebSocket API client: requests by id, user data events kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.ids = 0

    async def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self.ids += 1
        await self.ws.send(json.dumps({"id": self.ids, "method": method, "params": params or {}}))
        return self.ids

    async def answer(self, number: int, limit: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(limit):
            while True:
                message = json.loads(await self.ws.recv())
                if message.get("id") == number and "status" in message:
                    return dict(message)
                self.events.append(message)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.answer(await self.send(method, params))

    async def event(self, done: Any, limit: float = 8.0) -> dict[str, Any]:
        """The first kept or new event for which ``done(event)`` holds."""
        async with asyncio.timeout(limit):
            while True:
                for message in self.events:
                    if "event" in message and done(message["event"]):
                        self.events.remove(message)
                        return dict(message)
                self.events.append(json.loads(await self.ws.recv()))


def limit_order(price: str, qty: str, coid: str, side: str = "BUY", tif: str = "GTC") -> dict[str, Any]:
    return signed(
        {
            "symbol": "BTCUSDT",
            "side": side,
            "type": "LIMIT",
            "timeInForce": tif,
            "price": price,
            "quantity": qty,
            "newClientOrderId": coid,
        }
    )


def quiet(**options: Any) -> BinanceApiStandIn:
    """A stand-in whose market does not move during a test (book as seeded: 29999.99 / 30000.01)."""
    options.setdefault("pace_ms", 600_000)
    return BinanceApiStandIn(api_keys={KEY: SECRET}, max_seconds=30, **options)


# -- public methods, rate limits --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_public_methods_and_rate_limits_in_every_answer() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        answer = await client.call("time")
        assert answer["status"] == 200
        assert abs(answer["result"]["serverTime"] - time.time() * 1000) < 5000
        # connecting costs 2, time 1
        assert answer["rateLimits"] == [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000, "count": 3}
        ]
        assert (await client.call("ping"))["result"] == {}
        info = (await client.call("exchangeInfo", {"symbol": "BTCUSDT"}))["result"]
        (symbol,) = info["symbols"]
        filters = {f["filterType"]: f for f in symbol["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
        assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
        assert (symbol["baseAsset"], symbol["quoteAsset"], symbol["amendAllowed"]) == ("BTC", "USDT", True)
        no_limits = await client.call("time", {"returnRateLimits": False})
        assert "rateLimits" not in no_limits
        unknown = await client.call("nothing.here")
        assert unknown["status"] == 400
        assert unknown["error"]["code"] == -1102


@pytest.mark.asyncio
async def test_request_weight_and_order_count_limits_answer_429_with_retry_after() -> None:
    async with quiet(weight_limit=30, orders_limit=2) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        assert (await client.call("account.status", signed({})))["status"] == 200  # 2 + 20
        for n in range(2):
            assert (await client.call("order.place", limit_order("29000.00", "0.001", f"o{n}")))["status"] == 200
        third = await client.call("order.place", limit_order("29000.00", "0.001", "o3"))
        assert (third["status"], third["error"]["code"]) == (429, -1015)
        assert third["error"]["data"]["retryAfter"] % 10_000 == 0
        assert third["rateLimits"][0]["count"] == 3
        assert third["rateLimits"][0]["limit"] == 2
        heavy = await client.call("account.status", signed({}))  # 2 + 20 + 3 + 20 > 30
        assert (heavy["status"], heavy["error"]["code"]) == (429, -1003)
        assert heavy["error"]["data"]["retryAfter"] % 60_000 == 0


@pytest.mark.asyncio
async def test_forced_429_and_418_fire_once() -> None:
    faults = ApiFaults(force_429_at=2, force_418_at=3, retry_after_ms=700, ban_ms=1000)
    async with quiet(faults=faults) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        assert (await client.call("time"))["status"] == 200
        second = await client.call("time")
        assert (second["status"], second["error"]["code"]) == (429, -1003)
        assert second["error"]["data"]["retryAfter"] - second["error"]["data"]["serverTime"] == 700
        third = await client.call("time")
        assert (third["status"], third["error"]["code"]) == (418, -1003)
        assert third["error"]["data"]["retryAfter"] - third["error"]["data"]["serverTime"] == 1000
        assert (await client.call("time"))["status"] == 418  # still banned
        await asyncio.sleep(1.05)
        assert (await client.call("time"))["status"] == 200


# -- orders ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_limit_order_rests_locks_funds_and_is_reported_queried_and_canceled() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        sub = await client.call("userDataStream.subscribe.signature", signed({}))
        assert sub["result"] == {"subscriptionId": 0}
        placed = await client.call("order.place", limit_order("29000.00", "0.01", "o1-1-000001"))
        result = placed["result"]
        assert (result["status"], result["clientOrderId"], result["fills"]) == ("NEW", "o1-1-000001", [])
        assert [r["rateLimitType"] for r in placed["rateLimits"]] == ["ORDERS", "ORDERS", "REQUEST_WEIGHT"]
        new = (await client.event(lambda e: e["e"] == "executionReport"))["event"]
        assert (new["x"], new["X"], new["c"], new["i"], new["p"], new["q"]) == (
            "NEW",
            "NEW",
            "o1-1-000001",
            result["orderId"],
            "29000.00000000",
            "0.01000000",
        )
        position = (await client.event(lambda e: e["e"] == "outboundAccountPosition"))["event"]
        assert {"a": "USDT", "f": "99710.00000000", "l": "290.00000000"} in position["B"]
        status = await client.call("order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "o1-1-000001"}))
        assert status["result"]["status"] == "NEW"
        assert status["result"]["orderId"] == result["orderId"]
        listed = (await client.call("openOrders.status", signed({"symbol": "BTCUSDT"})))["result"]
        assert [o["clientOrderId"] for o in listed] == ["o1-1-000001"]
        duplicate = await client.call("order.place", limit_order("28000.00", "0.01", "o1-1-000001"))
        assert duplicate["error"] == {"code": -2010, "msg": "Duplicate order sent."}
        canceled = await client.call("order.cancel", signed({"symbol": "BTCUSDT", "origClientOrderId": "o1-1-000001"}))
        assert canceled["result"]["status"] == "CANCELED"
        assert canceled["result"]["origClientOrderId"] == "o1-1-000001"
        event = (await client.event(lambda e: e.get("x") == "CANCELED"))["event"]
        assert event["C"] == "o1-1-000001"
        assert event["X"] == "CANCELED"
        again = await client.call("order.cancel", signed({"symbol": "BTCUSDT", "origClientOrderId": "o1-1-000001"}))
        assert (again["status"], again["error"]) == (400, {"code": -2011, "msg": "Unknown order sent."})
        missing = await client.call("order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "nope"}))
        assert missing["error"] == {"code": -2013, "msg": "Order does not exist."}
        account = (await client.call("account.status", signed({})))["result"]
        assert account["canTrade"] is True
        assert account["permissions"] == ["SPOT"]
        assert {"asset": "USDT", "free": "100000.00000000", "locked": "0.00000000"} in account["balances"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("price", "qty", "message"),
    [
        ("29000.001", "0.01", "Filter failure: PRICE_FILTER"),
        ("29000.00", "0.000015", "Filter failure: LOT_SIZE"),
        ("29000.00", "0.0001", "Filter failure: NOTIONAL"),  # 2.90 < 5
    ],
)
async def test_filters_refuse_with_1013(price: str, qty: str, message: str) -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        answer = await Client(ws).call("order.place", limit_order(price, qty, "f1"))
        assert (answer["status"], answer["error"]) == (400, {"code": -1013, "msg": message})


@pytest.mark.asyncio
async def test_marketable_orders_walk_the_book_and_pay_fees() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        book = (await client.call("depth", {"symbol": "BTCUSDT", "limit": 5}))["result"]
        assert [level[0] for level in book["asks"][:2]] == ["30000.01000000", "30000.02000000"]
        first = D(book["asks"][0][1])
        qty = first + D("0.00001")
        market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": str(qty)}
        result = (await client.call("order.place", signed(market)))["result"]
        assert result["status"] == "FILLED"
        fills = [(f["price"], D(f["qty"]), D(f["commission"]), f["commissionAsset"]) for f in result["fills"]]
        assert fills == [
            ("30000.01000000", first, (first / 1000).quantize(D("0.00000001"), "ROUND_DOWN"), "BTC"),
            ("30000.02000000", D("0.00001"), D("0.00000001"), "BTC"),
        ]
        maker = await client.call(
            "order.place",
            signed(
                {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT_MAKER", "price": "29999.99", "quantity": "0.001"}
            ),
        )
        assert maker["error"] == {"code": -2010, "msg": "Order would immediately match and take."}
        fok = await client.call("order.place", limit_order("29999.95", "0.9", "fok", side="SELL", tif="FOK"))
        assert (fok["result"]["status"], fok["result"]["executedQty"], fok["result"]["fills"]) == (
            "EXPIRED",
            "0.00000000",
            [],
        )
        ioc = await client.call("order.place", limit_order("29999.99", "0.9", "ioc", side="SELL", tif="IOC"))
        bid = D(book["bids"][0][1])
        assert (ioc["result"]["status"], D(ioc["result"]["executedQty"])) == ("EXPIRED", bid)
        assert ioc["result"]["fills"][0]["commissionAsset"] == "USDT"
        poor = await client.call("order.place", limit_order("30000.00", "4", "poor"))  # 120000 USDT > 100000
        assert poor["error"] == {"code": -2010, "msg": "Account has insufficient balance for requested action."}


@pytest.mark.asyncio
async def test_resting_order_fills_when_the_market_trades_through_it() -> None:
    async with (
        BinanceApiStandIn(api_keys={KEY: SECRET}, pace_ms=20, seed=3, max_seconds=30) as venue,
        connect(venue.ws_api_url) as ws,
    ):
        client = Client(ws)
        await client.call("userDataStream.subscribe.signature", signed({}))
        await client.call("order.place", limit_order("30000.00", "0.002", "rest1"))
        done = await client.event(lambda e: e.get("x") == "TRADE" and e["X"] == "FILLED", limit=20)
        assert done["event"]["m"] is True
        assert done["event"]["z"] == "0.00200000"
        trades = (await client.call("myTrades", signed({"symbol": "BTCUSDT"})))["result"]
        assert sum(D(t["qty"]) for t in trades) == D("0.002")
        assert all(t["isMaker"] and t["price"] == "30000.00000000" for t in trades)
        # 0.1 % of the BTC received, in BTC
        assert sum(D(t["commission"]) for t in trades) <= D("0.000002")


@pytest.mark.asyncio
async def test_my_trades_from_id_and_most_recent() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0002"}
        ids = [(await client.call("order.place", signed(market)))["result"]["fills"][0]["tradeId"] for _ in range(3)]
        assert ids == sorted(ids)
        recent = (await client.call("myTrades", signed({"symbol": "BTCUSDT", "limit": 2})))["result"]
        assert [t["id"] for t in recent] == ids[1:]
        oldest = await client.call("myTrades", signed({"symbol": "BTCUSDT", "fromId": ids[0], "limit": 2}))
        assert [t["id"] for t in oldest["result"]] == ids[:2]
        after = (await client.call("myTrades", signed({"symbol": "BTCUSDT", "fromId": ids[2] + 1})))["result"]
        assert after == []


@pytest.mark.asyncio
async def test_cancel_replace_keeps_the_client_id_and_amend_keeps_the_order() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        await client.call("userDataStream.subscribe.signature", signed({}))
        first = (await client.call("order.place", limit_order("29000.00", "0.02", "keep1")))["result"]
        replace = signed(
            {
                "symbol": "BTCUSDT",
                "cancelReplaceMode": "STOP_ON_FAILURE",
                "cancelOrigClientOrderId": "keep1",
                "newClientOrderId": "keep1",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "price": "29100.00",
                "quantity": "0.02",
            }
        )
        answer = (await client.call("order.cancelReplace", replace))["result"]
        assert (answer["cancelResult"], answer["newOrderResult"]) == ("SUCCESS", "SUCCESS")
        assert answer["cancelResponse"]["orderId"] == first["orderId"]
        assert answer["newOrderResponse"]["clientOrderId"] == "keep1"
        assert answer["newOrderResponse"]["orderId"] != first["orderId"]
        canceled = (await client.event(lambda e: e.get("x") == "CANCELED"))["event"]
        renewed = (await client.event(lambda e: e.get("x") == "NEW" and e["i"] != first["orderId"]))["event"]
        assert (canceled["C"], renewed["c"], renewed["p"]) == ("keep1", "keep1", "29100.00000000")
        status = await client.call("order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "keep1"}))
        assert status["result"]["orderId"] == answer["newOrderResponse"]["orderId"]
        amend = signed(
            {"symbol": "BTCUSDT", "origClientOrderId": "keep1", "newClientOrderId": "keep1", "newQty": "0.01"}
        )
        amended = (await client.call("order.amend.keepPriority", amend))["result"]["amendedOrder"]
        assert (amended["orderId"], amended["qty"], amended["clientOrderId"]) == (
            answer["newOrderResponse"]["orderId"],
            "0.01000000",
            "keep1",
        )
        event = (await client.event(lambda e: e.get("x") == "REPLACED"))["event"]
        assert (event["q"], event["X"]) == ("0.01000000", "NEW")
        up = signed({"symbol": "BTCUSDT", "origClientOrderId": "keep1", "newQty": "0.05"})
        assert (await client.call("order.amend.keepPriority", up))["error"]["code"] == -2038
        gone = dict(replace, cancelOrigClientOrderId="nothing")
        failed = await client.call(
            "order.cancelReplace",
            signed({k: v for k, v in gone.items() if k not in ("apiKey", "timestamp", "signature")}),
        )
        assert (failed["status"], failed["error"]["code"]) == (400, -2022)
        assert failed["error"]["data"]["cancelResponse"] == {"code": -2011, "msg": "Unknown order sent."}
        assert failed["error"]["data"]["newOrderResult"] == "NOT_ATTEMPTED"


@pytest.mark.asyncio
async def test_all_orders_from_an_order_id_the_most_recent_and_by_time() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        ids = [
            (await client.call("order.place", limit_order("29000.00", "0.01", f"hist{n}")))["result"]["orderId"]
            for n in range(3)
        ]
        await client.call("order.cancel", signed({"symbol": "BTCUSDT", "origClientOrderId": "hist0"}))
        before = (await client.call("time"))["rateLimits"][0]["count"]
        answer = await client.call("allOrders", signed({"symbol": "BTCUSDT", "orderId": ids[1]}))
        assert answer["rateLimits"][0]["count"] == before + 20  # weight 20
        assert [(o["orderId"], o["clientOrderId"]) for o in answer["result"]] == [(ids[1], "hist1"), (ids[2], "hist2")]
        every = (await client.call("allOrders", signed({"symbol": "BTCUSDT", "orderId": ids[0]})))["result"]
        assert [(o["clientOrderId"], o["status"], o["origQty"]) for o in every] == [
            ("hist0", "CANCELED", "0.01000000"),
            ("hist1", "NEW", "0.01000000"),
            ("hist2", "NEW", "0.01000000"),
        ]
        one = (await client.call("allOrders", signed({"symbol": "BTCUSDT", "orderId": ids[0], "limit": 1})))["result"]
        assert [o["orderId"] for o in one] == [ids[0]]
        recent = (await client.call("allOrders", signed({"symbol": "BTCUSDT", "limit": 2})))["result"]
        assert [o["orderId"] for o in recent] == [ids[1], ids[2]]
        # a time range wins over orderId; nothing was updated in the first second of 1970
        old = signed({"symbol": "BTCUSDT", "orderId": ids[0], "startTime": 0, "endTime": 1000})
        assert (await client.call("allOrders", old))["result"] == []
        now = int(time.time() * 1000)
        recent_hour = signed({"symbol": "BTCUSDT", "startTime": now - 3_600_000, "endTime": now + 1000})
        assert len((await client.call("allOrders", recent_hour))["result"]) == 3
        too_long = signed({"symbol": "BTCUSDT", "startTime": 0, "endTime": 86_400_001})
        refused = await client.call("allOrders", too_long)
        assert (refused["status"], refused["error"]["code"]) == (400, -1127)
        unsigned = await client.call("allOrders", {"symbol": "BTCUSDT"})
        assert unsigned["status"] == 400


# -- user data stream, faults -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_deposit_is_a_balance_update_then_the_account_position() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        await client.call("userDataStream.subscribe.signature", signed({}))
        await venue.deposit("USDT", D("25.5"))
        update = (await client.event(lambda e: e["e"] == "balanceUpdate"))["event"]
        assert (update["a"], update["d"]) == ("USDT", "25.50000000")
        position = (await client.event(lambda e: e["e"] == "outboundAccountPosition"))["event"]
        assert {"a": "USDT", "f": "100025.50000000", "l": "0.00000000"} in position["B"]


@pytest.mark.asyncio
async def test_unsubscribe_terminates_the_stream_and_events_stop() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        await client.call("userDataStream.subscribe.signature", signed({}))
        again = await client.call("userDataStream.subscribe.signature", signed({}))
        assert again["error"]["code"] == -2035
        assert (await client.call("session.subscriptions"))["result"] == [{"subscriptionId": 0}]
        assert (await client.call("userDataStream.unsubscribe", {"subscriptionId": 0}))["result"] == {}
        end = await client.event(lambda e: e["e"] == "eventStreamTerminated")
        assert end["subscriptionId"] == 0
        await client.call("order.place", limit_order("29000.00", "0.01", "after"))
        await client.call("time")
        assert [m for m in client.events if "event" in m] == []


@pytest.mark.asyncio
async def test_dropped_answer_the_order_is_still_placed_and_reported() -> None:
    async with quiet(faults=ApiFaults(drop_answer_to="order.place")) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        await client.call("userDataStream.subscribe.signature", signed({}))
        lost = await client.send("order.place", limit_order("29000.00", "0.01", "lost1"))
        report = await client.event(lambda e: e.get("x") == "NEW")
        assert report["event"]["c"] == "lost1"
        status = await client.call("order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "lost1"}))
        assert status["result"]["status"] == "NEW"
        assert all(m.get("id") != lost for m in client.events)
        second = await client.call("order.place", limit_order("29000.00", "0.01", "kept2"))
        assert second["status"] == 200  # fired once


@pytest.mark.asyncio
async def test_reject_next_order_and_clock_skew() -> None:
    faults = ApiFaults(reject_next_order=-2010, clock_skew_ms=-20_000)
    async with quiet(faults=faults) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        ahead = await client.call("order.place", limit_order("29000.00", "0.01", "x1"))
        assert ahead["error"] == {
            "code": -1021,
            "msg": "Timestamp for this request was 1000ms ahead of the server's time.",
        }
        server = (await client.call("time"))["result"]["serverTime"]
        order = dict(limit_order("29000.00", "0.01", "x1"))
        for name in ("apiKey", "timestamp", "signature"):
            del order[name]
        refused = await client.call("order.place", signed(order, ts=server))
        assert refused["error"] == {"code": -2010, "msg": "Account has insufficient balance for requested action."}
        assert (await client.call("order.place", signed(order, ts=server)))["status"] == 200


@pytest.mark.asyncio
async def test_close_after_requests_and_state_survives_the_disconnect() -> None:
    async with quiet(faults=ApiFaults(close_after_requests=2)) as venue:
        async with connect(venue.ws_api_url) as ws:
            client = Client(ws)
            await client.call("order.place", limit_order("29000.00", "0.01", "stay1"))
            assert (await client.call("time"))["status"] == 200
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1001
        async with connect(venue.ws_api_url) as ws:
            listed = (await Client(ws).call("openOrders.status", signed({"symbol": "BTCUSDT"})))["result"]
            assert [o["clientOrderId"] for o in listed] == ["stay1"]


@pytest.mark.asyncio
async def test_server_shutdown_and_event_stream_terminated() -> None:
    faults = ApiFaults(event_stream_terminated_after_s=0.2, server_shutdown_after_s=0.5)
    async with quiet(faults=faults) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        await client.call("userDataStream.subscribe.signature", signed({}))
        terminated = await client.event(lambda e: e["e"] == "eventStreamTerminated")
        assert terminated["subscriptionId"] == 0
        async with asyncio.timeout(5):
            shutdown = json.loads(await ws.recv())
        assert shutdown["event"]["e"] == "serverShutdown"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001
        assert venue.fired == {"event_stream_terminated", "server_shutdown"}


@pytest.mark.asyncio
async def test_state_path_keeps_orders_trades_and_balances_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "venue.json"
    async with quiet(state_path=state) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        await client.call("order.place", limit_order("29000.00", "0.01", "saved1"))
        market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0002"}
        trade_id = (await client.call("order.place", signed(market)))["result"]["fills"][0]["tradeId"]
    async with quiet(state_path=state) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        listed = (await client.call("openOrders.status", signed({"symbol": "BTCUSDT"})))["result"]
        assert [(o["clientOrderId"], o["origQty"]) for o in listed] == [("saved1", "0.01000000")]
        trades = (await client.call("myTrades", signed({"symbol": "BTCUSDT"})))["result"]
        assert [t["id"] for t in trades] == [trade_id]
        balances = (await client.call("account.status", signed({})))["result"]["balances"]
        usdt = next(b for b in balances if b["asset"] == "USDT")
        assert usdt["locked"] == "290.00000000"
        placed = (await client.call("order.place", limit_order("29000.00", "0.01", "saved2")))["result"]
        assert placed["orderId"] > listed[0]["orderId"]


# -- market data ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_market_streams_follow_the_rest_snapshot() -> None:
    streams = "/stream?streams=btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"
    async with (
        BinanceApiStandIn(api_keys={KEY: SECRET}, pace_ms=20, max_seconds=30) as venue,
        connect(venue.stream_url + streams) as ws,
        httpx.AsyncClient(base_url=venue.rest_url, timeout=5) as http,
    ):
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        snapshot = (await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000})).json()
        last = snapshot["lastUpdateId"]
        assert len(snapshot["bids"]) == 5
        assert len(snapshot["asks"]) == 5
        names: set[str] = {first["stream"]}
        depth: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while len(names) < 3 or len(depth) < 3:
                message = json.loads(await ws.recv())
                names.add(message["stream"])
                if message["data"].get("e") == "depthUpdate" and message["data"]["u"] > last:
                    depth.append(message["data"])
        assert names == {"btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker"}
        assert depth[0]["U"] <= last + 1 <= depth[0]["u"]
        assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(depth))
        info = (await http.get("/api/v3/exchangeInfo", params={"symbols": '["BTCUSDT"]'})).json()
        assert info["symbols"][0]["symbol"] == "BTCUSDT"
        assert (await http.get("/api/v3/depth", params={"symbol": "ETHUSDT"})).json()["code"] == -1121
        wrong = await http.get("/api/v3/exchangeInfo", params={"symbols": '["BTCUSDT","ETHUSDT"]'})
        assert (wrong.status_code, wrong.json()["code"]) == (400, -1121)


# -- subprocess -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_subprocess_entry_prints_urls_serves_and_stops_on_sigterm() -> None:
    command = [
        sys.executable,
        "-m",
        "tests.standins",
        "binance-api",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--api-secret",
        SECRET,
        "--max-seconds",
        "20",
        "--fault",
        "reject_next_order=-1013",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 15)
        urls = dict(part.split("=", 1) for part in line.split())
        assert set(urls) == {"ws_api_url", "stream_url", "rest_url"}
        assert urls["ws_api_url"].startswith("ws://127.0.0.1:")
        assert urls["ws_api_url"].endswith("/ws-api/v3")
        async with connect(urls["ws_api_url"]) as ws:
            refused = await Client(ws).call("order.place", limit_order("29000.00", "0.01", "p1"))
            assert refused["error"]["code"] == -1013
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(asyncio.to_thread(process.communicate), 15)
        summary = json.loads(out.strip().splitlines()[-1])
        assert process.returncode == 0, err
        assert summary["requests"] == 1
        assert summary["fired"] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


# -- more of the documented surface -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_ed25519_key_over_the_wire_and_ack_answers() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    async with quiet(ed25519_keys={"EdKey1": pem}) as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        params: dict[str, Any] = {"apiKey": "EdKey1", "timestamp": int(time.time() * 1000)}
        payload = f"apiKey=EdKey1&timestamp={params['timestamp']}"
        params["signature"] = base64.b64encode(private.sign(payload.encode())).decode()
        assert (await client.call("userDataStream.subscribe.signature", params))["result"] == {"subscriptionId": 0}
        wrong = dict(params, signature=base64.b64encode(private.sign(b"something else")).decode())
        assert (await client.call("account.status", wrong))["error"]["code"] == -1022
        ack = dict(limit_order("29000.00", "0.01", "ack1"))
        ack["newOrderRespType"] = "ACK"
        for name in ("apiKey", "timestamp", "signature"):
            del ack[name]
        result = (await client.call("order.place", signed(ack)))["result"]
        assert set(result) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


@pytest.mark.asyncio
async def test_allow_failure_cancel_replace_answers_409_when_the_new_order_fails() -> None:
    async with quiet() as venue, connect(venue.ws_api_url) as ws:
        client = Client(ws)
        await client.call("order.place", limit_order("29000.00", "0.01", "af1"))
        replace = signed(
            {
                "symbol": "BTCUSDT",
                "cancelReplaceMode": "ALLOW_FAILURE",
                "cancelOrigClientOrderId": "af1",
                "newClientOrderId": "af1",
                "side": "BUY",
                "type": "LIMIT_MAKER",
                "price": "30000.05",
                "quantity": "0.01",
            }
        )
        answer = await client.call("order.cancelReplace", replace)
        assert (answer["status"], answer["error"]["code"]) == (409, -2021)
        data = answer["error"]["data"]
        assert (data["cancelResult"], data["newOrderResult"]) == ("SUCCESS", "FAILURE")
        assert data["newOrderResponse"] == {"code": -2010, "msg": "Order would immediately match and take."}
        assert (await client.call("openOrders.status", signed({"symbol": "BTCUSDT"})))["result"] == []


@pytest.mark.asyncio
async def test_the_stand_in_stops_by_itself_after_max_seconds() -> None:
    venue = BinanceApiStandIn(api_keys={KEY: SECRET}, max_seconds=0.3)
    started = time.monotonic()
    async with venue:
        await asyncio.wait_for(venue.serve_until(asyncio.Event()), 5)
    assert time.monotonic() - started < 3
