"""The paper venue over a real loopback WebSocket, with a real ``websockets`` client.

Every test is bounded by ``asyncio.timeout``; market data comes from the test hooks (``autoplay``
off) unless a test replays a real file. Nothing sleeps to wait for a condition: tests await the
message they expect, or poll with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kernel import paper_protocol as p
from kernel.venue import connection, server, store_rows
from kernel.venue.marketdata import MarketDataError
from kernel.venue.server import PaperVenue, VenueConfig
from storage.venue_store import VenueStoreCorrupt, VenueStoreOpenError, VenueStoreWriteError, read_orders

DATA = Path(__file__).resolve().parents[1] / "data"
TRADES = str(DATA / "binance_btcusdt_trades_20210108.csv")
QUOTES = str(DATA / "binance_btcusdt_quotes_20210108.csv")
X = "BTCUSDT"
LIMIT_S = 10.0
"""Upper bound for any single test's I/O."""

M = TypeVar("M", bound=p.Message)


class Client:
    """A protocol client on a real websockets connection; ``expect`` skips heartbeats."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: p.Message | dict[str, Any] | str | bytes) -> None:
        if isinstance(message, p.Message):
            await self.ws.send(p.encode(message).decode())
        elif isinstance(message, dict):
            await self.ws.send(json.dumps(message))
        else:
            await self.ws.send(message)

    async def recv(self) -> p.VenueMessage:
        return p.decode_venue(await self.ws.recv())

    async def expect(self, kind: type[M], *, heartbeats: bool = False, skip: tuple[type, ...] = ()) -> M:
        while True:
            message = await self.recv()
            if isinstance(message, p.Heartbeat) and not heartbeats and kind is not p.Heartbeat:
                continue
            if isinstance(message, skip):
                continue
            assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
            return message

    async def executions(self, count: int) -> list[p.Execution]:
        return [await self.expect(p.Execution) for _ in range(count)]

    async def hello(self) -> p.Welcome:
        await self.send(p.Hello(version=p.VERSION, client="test"))
        return await self.expect(p.Welcome)

    async def order(self, coid: str, qty: str = "1", price: str | None = "100", **kw: Any) -> None:
        await self.send(
            p.NewOrder(
                client_order_id=coid,
                instrument=X,
                side=kw.pop("side", "buy"),
                qty=D(qty),
                price=None if price is None else D(price),
                **kw,
            )
        )

    async def status(self, coid: str) -> p.OrderSnapshot | None:
        await self.send(p.OrderStatusRequest(client_order_id=coid, id=f"s-{coid}"))
        # Executions of orders this connection owns (asking makes it the owner) may come first.
        report = await self.expect(p.OrderStatus, skip=(p.Execution,))
        assert report.id == f"s-{coid}"
        return report.order


def config(**kw: Any) -> VenueConfig:
    kw.setdefault("instruments", (X,))
    kw.setdefault("autoplay", False)
    return VenueConfig(**kw)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "venue.db")


@pytest_asyncio.fixture
async def venue(store: str) -> AsyncIterator[PaperVenue]:
    async with PaperVenue(store, config()) as running:
        yield running


async def open_client(venue: PaperVenue) -> Client:
    ws = await connect(venue.url, open_timeout=LIMIT_S, close_timeout=1)
    return Client(ws)


@pytest_asyncio.fixture
async def client(venue: PaperVenue) -> AsyncIterator[Client]:
    c = await open_client(venue)
    try:
        yield c
    finally:
        await c.ws.close()


# -- session ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hello_gets_welcome_with_session_and_instruments(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        welcome = await client.hello()
    assert welcome == p.Welcome(version=1, session="s-1", instruments=[X])
    assert venue.url == f"ws://127.0.0.1:{venue.port}"
    assert venue.port > 0


@pytest.mark.asyncio
async def test_an_unsupported_version_is_an_error_and_the_session_carries_on(client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(p.Hello(version=99))
        error = await client.expect(p.Error)
        assert (error.code, error.ref) == ("unsupported_version", "hello")
        await client.send(p.Ping(id="after"))
        assert await client.expect(p.Pong) == p.Pong(id="after")


@pytest.mark.asyncio
async def test_a_heartbeat_follows_a_second_of_silence(store: str) -> None:
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, config(heartbeat_s=0.2)) as venue:
        c = await open_client(venue)
        started = time.monotonic()
        beat = await c.expect(p.Heartbeat, heartbeats=True)
        assert time.monotonic() - started >= 0.15
        assert beat.ts_ms > 0
        await c.ws.close()


# -- market data --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_subscribers_get_pushed_trades_and_quotes_numbered_from_one(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(p.Subscribe(instruments=[X], channels=["trades", "quotes"], id="1"))
        assert await client.expect(p.Subscribed) == p.Subscribed(instruments=[X], channels=["trades", "quotes"], id="1")
        await venue.push_quote(X, D("99"), D("1"), D("101"), D("2"), ts_ms=10)
        for i in range(3):
            await venue.push_trade(X, D("100.5"), D("0.1"), "buy", ts_ms=20 + i)
        quote = await client.expect(p.Quote)
        assert (quote.seq, quote.bid, quote.ask_qty, quote.ts_ms) == (1, D("99"), D("2"), 10)
        trades = [await client.expect(p.Trade) for _ in range(3)]
        assert [t.seq for t in trades] == [1, 2, 3]
        assert [t.trade_id for t in trades] == ["P1", "P2", "P3"]
        # a later subscriber counts from 1 on its own connection; a trades-only one gets no quotes
        late = await open_client(venue)
        await late.send(p.Subscribe(instruments=[X], channels=["trades"]))
        await late.expect(p.Subscribed)
        await venue.push_quote(X, D("99"), D("1"), D("101"), D("2"))
        await venue.push_trade(X, D("100"), D("0.1"), "sell")
        assert (await late.expect(p.Trade)).seq == 1
        assert (await client.expect(p.Quote)).seq == 2
        assert (await client.expect(p.Trade)).seq == 4
        await late.ws.close()


@pytest.mark.asyncio
async def test_subscribing_to_an_unknown_instrument_is_invalid(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(p.Subscribe(instruments=["DOGEUSDT"], id="7"))
        error = await client.expect(p.Error)
        assert (error.code, error.ref) == ("invalid", "7")
        with pytest.raises(ValueError, match="unknown instrument"):
            await venue.push_trade("DOGEUSDT", D("1"), D("1"), "buy")


# -- orders -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_resting_limit_fills_in_parts_as_trades_cross_it(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.order("r7-000001", qty="0.01", price="39400.00")
        (new,) = await client.executions(1)
        assert (new.exec, new.status, new.venue_order_id) == ("new", "new", "V1")
        await venue.push_trade(X, D("39400.00"), D("1"), "sell")  # a touch: nothing
        await venue.push_trade(X, D("39399.50"), D("0.004"), "sell", ts_ms=1_610_064_003_000)
        await venue.push_trade(X, D("39399.00"), D("0.5"), "sell")
        first, second = await client.executions(2)
        assert (first.exec, first.status, first.cum_qty, first.leaves_qty) == (
            "trade",
            "partially_filled",
            D("0.004"),
            D("0.006"),
        )
        assert first.fill == p.Fill(
            trade_id="F1",
            qty=D("0.004"),
            price=D("39400.00"),
            fee=D(0),
            fill_seq=1,
            ts_ms=1_610_064_003_000,
            client_order_id="r7-000001",
            liquidity="maker",  # it rested; the trade reached it
        )
        assert (second.status, second.fill and second.fill.qty) == ("filled", D("0.006"))


@pytest.mark.asyncio
async def test_a_cancel_racing_a_fill_cancels_the_rest(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.order("c1", qty="1")
        await client.executions(1)
        await venue.push_trade(X, D("99"), D("0.4"), "sell")  # the fill is on its way ...
        await client.send(p.CancelOrder(client_order_id="c1"))  # ... as the client cancels
        fill, canceled = await client.executions(2)
        assert (fill.exec, fill.cum_qty) == ("trade", D("0.4"))
        assert (canceled.exec, canceled.status, canceled.cum_qty, canceled.leaves_qty) == (
            "canceled",
            "canceled",
            D("0.4"),
            0,
        )
        await client.send(p.CancelOrder(client_order_id="c1"))
        (late,) = await client.executions(1)
        assert (late.exec, late.reason) == ("cancel_rejected", "too late to cancel")
        await client.send(p.CancelOrder(client_order_id="never"))
        (unknown,) = await client.executions(1)
        assert (unknown.exec, unknown.reason, unknown.venue_order_id) == ("cancel_rejected", "unknown order", "")


@pytest.mark.asyncio
async def test_replace_changes_price_and_qty_and_refuses_the_impossible(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.order("r1", qty="1", price="100")
        await client.executions(1)
        await client.send(p.ReplaceOrder(client_order_id="r1", qty=D("2"), price=D("101")))
        (replaced,) = await client.executions(1)
        assert (replaced.exec, replaced.qty, replaced.price, replaced.leaves_qty) == (
            "replaced",
            D("2"),
            D("101"),
            D("2"),
        )
        await venue.push_trade(X, D("100.5"), D("5"), "sell")  # through the new price only
        (fill,) = await client.executions(1)
        assert (fill.status, fill.fill and fill.fill.price) == ("filled", D("101"))
        await client.send(p.ReplaceOrder(client_order_id="r1", qty=D("3")))
        (refused,) = await client.executions(1)
        assert (refused.exec, refused.reason) == ("replace_rejected", "too late to replace")


@pytest.mark.asyncio
async def test_invalid_and_random_rejects(store: str) -> None:
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, config(reject_rate=1.0)) as venue:
        c = await open_client(venue)
        await c.order("bad", qty="0")  # refused at the wire since issue 15 (the engine rejects it too)
        invalid = await c.expect(p.Error)
        assert (invalid.code, invalid.ref) == ("invalid", "new_order")
        assert invalid.message == "new_order 'bad': qty must be positive, got 0"
        await c.order("unlucky")
        (random_reject,) = await c.executions(1)
        assert (random_reject.exec, random_reject.reason) == ("rejected", "random reject")
        await c.send(p.NewOrder(client_order_id="", instrument=X, side="buy", qty=D(1), price=D(1)))
        error = await c.expect(p.Error)
        assert (error.code, error.ref) == ("invalid", "new_order")
        await c.ws.close()


@pytest.mark.asyncio
async def test_an_ioc_remainder_is_canceled(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await venue.push_quote(X, D("99"), D("1"), D("101"), D("0.3"))
        await client.order("ioc", qty="1", price="101", tif="ioc")
        new, fill, canceled = await client.executions(3)
        assert (new.exec, fill.exec, canceled.exec) == ("new", "trade", "canceled")
        assert (canceled.cum_qty, canceled.reason) == (D("0.3"), "ioc remainder canceled")
        await client.send(
            p.NewOrder(client_order_id="mkt", instrument=X, side="sell", qty=D("0.5"), order_type="market")
        )
        _, market_fill = await client.executions(2)
        assert (market_fill.status, market_fill.fill and market_fill.fill.price) == ("filled", D("99"))


@pytest.mark.asyncio
async def test_a_duplicate_client_order_id_returns_the_same_order_never_a_second(
    store: str, venue: PaperVenue, client: Client
) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.order("dup", qty="1", price="100")
        (new,) = await client.executions(1)
        await client.order("dup", qty="5", price="90")  # a resend after a crash, even with other terms
        report = await client.expect(p.OrderStatus)
        assert report.duplicate is True
        assert report.order is not None
        assert (report.order.venue_order_id, report.order.qty, report.order.duplicate_submits) == (
            new.venue_order_id,
            D("1"),
            1,
        )
        await client.send(p.OpenOrdersRequest(id="o"))
        assert [o.client_order_id for o in (await client.expect(p.OpenOrders)).orders] == ["dup"]
    await venue.stop()
    (stored,) = read_orders(store)
    assert (stored.client_order_id, stored.duplicate_submits) == ("dup", 1)


@pytest.mark.asyncio
async def test_status_open_orders_and_fills_since(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        for coid, price in (("a", "100"), ("b", "99"), ("c", "98")):
            await client.order(coid, qty="1", price=price)
        await client.executions(3)
        await venue.push_trade(X, D("98.5"), D("1.5"), "sell")
        await client.executions(2)
        a = await client.status("a")
        assert a is not None
        assert (a.status, a.cum_qty, [f.trade_id for f in a.fills]) == ("filled", D(1), ["F1"])
        assert await client.status("nope") is None
        await client.send(p.OpenOrdersRequest(id="o"))
        open_orders = await client.expect(p.OpenOrders)
        assert (open_orders.id, [(o.client_order_id, o.cum_qty) for o in open_orders.orders]) == (
            "o",
            [("b", D("0.5")), ("c", D(0))],
        )
        await client.send(p.FillsSinceRequest(after=0, id="f"))
        assert [(f.fill_seq, f.client_order_id) for f in (await client.expect(p.Fills)).fills] == [(1, "a"), (2, "b")]
        await client.send(p.FillsSinceRequest(after=1, id="f"))
        assert [f.fill_seq for f in (await client.expect(p.Fills)).fills] == [2]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00garbage", "malformed"),
        ('{"type": "new_order", "client_order_id": "x"', "malformed"),
        ('{"type": "launch_rocket", "id": "9"}', "unknown_type"),
        ('{"type": "new_order", "client_order_id": 5, "instrument": "BTCUSDT", "side": "buy", "qty": "1"}', "invalid"),
        (
            '{"type": "new_order", "client_order_id": "x", "instrument": "BTCUSDT", "side": "buy", "qty": "lots"}',
            "invalid",
        ),
        ('{"type": "fills_since", "after": "yesterday"}', "invalid"),
        ("[1, 2, 3]", "invalid"),
    ],
)
@pytest.mark.asyncio
async def test_bad_frames_get_an_error_and_the_connection_carries_on(
    client: Client, frame: str | bytes, code: str
) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(frame)
        error = await client.expect(p.Error)
        assert error.code == code
        await client.send(p.Ping(id="still-there"))
        assert await client.expect(p.Pong) == p.Pong(id="still-there")


@pytest.mark.asyncio
async def test_a_restarted_venue_keeps_its_book(store: str) -> None:
    async with asyncio.timeout(LIMIT_S):
        first = PaperVenue(store, config())
        await first.start()
        c = await open_client(first)
        await c.order("keep", qty="1", price="100")
        await c.executions(1)
        await first.push_trade(X, D("99"), D("0.25"), "sell")
        await c.executions(1)
        await first.stop()
        with pytest.raises(ConnectionClosed):
            await c.recv()  # the venue went away (close 1001)

        async with PaperVenue(store, config()) as second:
            c2 = await open_client(second)
            assert (await c2.hello()).session == "s-2"
            order = await c2.status("keep")
            assert order is not None
            assert (order.status, order.cum_qty, [f.trade_id for f in order.fills]) == (
                "partially_filled",
                D("0.25"),
                ["F1"],
            )
            # numbering continues; the order still rests and the new connection that resends owns it
            await c2.order("keep")
            assert (await c2.expect(p.OrderStatus)).duplicate
            await second.push_trade(X, D("99"), D("1"), "sell")
            (fill,) = await c2.executions(1)
            assert (fill.fill and fill.fill.trade_id, fill.status) == ("F2", "filled")
            await c2.order("next")
            assert (await c2.executions(1))[0].venue_order_id == "V2"
            await c2.ws.close()


@pytest.mark.asyncio
async def test_a_second_venue_on_the_same_store_is_refused(venue: PaperVenue, store: str) -> None:
    with pytest.raises(VenueStoreOpenError):
        await PaperVenue(store, config()).start()
    assert venue.running


@pytest.mark.asyncio
async def test_replaying_the_real_binance_file_fills_a_resting_order(store: str) -> None:
    async with asyncio.timeout(LIMIT_S):
        async with PaperVenue(store, config()) as before:
            c = await open_client(before)
            await c.order("replay", qty="0.01", price="39435")
            await c.executions(1)
        replay = config(instruments=(), data_paths=[TRADES, QUOTES], speed=0, autoplay=True)
        async with PaperVenue(store, replay) as venue:
            assert venue.instruments == (X,)
            c = await open_client(venue)
            deadline = time.monotonic() + LIMIT_S / 2
            while True:
                order = await c.status("replay")
                assert order is not None
                if order.status == "filled" or time.monotonic() > deadline:
                    break
            assert order.status == "filled"
            assert [(f.qty, f.price) for f in order.fills] == [
                (D("0.000263"), D("39435")),
                (D("0.006329"), D("39435")),
                (D("0.000563"), D("39435")),
                (D("0.002845"), D("39435")),
            ]
            assert order.fills[0].ts_ms == 1610064000278  # the file's time, not the wall clock
            await c.ws.close()


@pytest.mark.asyncio
async def test_a_random_walk_plays_when_no_file_is_given(store: str) -> None:
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, VenueConfig(speed=0, seed=3)) as venue:
        c = await open_client(venue)
        await c.send(p.Subscribe(instruments=[X]))
        await c.expect(p.Subscribed)
        quote = await c.expect(p.Quote)
        trade = await c.expect(p.Trade)
        assert (quote.seq, trade.seq) == (1, 1)
        assert isinstance(trade.price, D)
        await c.ws.close()


@pytest.mark.asyncio
async def test_a_bad_data_file_stops_start_with_a_typed_error(store: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ts_ms,trade_id,price,qty,buyer_is_maker\n1,2,x,1,true\n")
    with pytest.raises(MarketDataError, match="line 2"):
        await PaperVenue(store, VenueConfig(data_paths=(str(bad),))).start()


# -- hooks, routing, latency --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hooks_reach_the_owner_only(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        other = await open_client(venue)
        await client.order("d", tif="day")
        await client.order("u")
        await client.order("s", qty="2")
        await client.executions(3)
        assert [r.exec for r in await venue.restate("s", qty=D("1.5"), reason="risk")] == ["restated"]
        assert [r.exec for r in await venue.unsolicited_cancel("u", "venue maintenance")] == ["canceled"]
        assert [r.exec for r in await venue.end_of_day()] == ["expired"]
        restated, canceled, expired = await client.executions(3)
        assert (restated.exec, restated.qty, restated.reason) == ("restated", D("1.5"), "risk")
        assert (canceled.exec, canceled.reason) == ("canceled", "venue maintenance")
        assert (expired.exec, expired.client_order_id) == ("expired", "d")
        with pytest.raises(KeyError):
            await venue.unsolicited_cancel("nope", "x")
        with pytest.raises(ValueError, match="already canceled"):
            await venue.unsolicited_cancel("u", "x")
        await other.send(p.Ping(id="o"))
        assert await other.expect(p.Pong) == p.Pong(id="o")  # nothing of client's orders came here
        await other.ws.close()


@pytest.mark.asyncio
async def test_disconnect_all_drops_clients_and_keeps_orders(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.order("kept")
        await client.executions(1)
        await venue.disconnect_all()
        with pytest.raises(ConnectionClosed):
            await client.recv()
        fills = await venue.push_trade(X, D("99"), D("1"), "sell")  # the owner is gone: nobody is told
        assert [r.status for r in fills] == ["filled"]
        again = await open_client(venue)
        order = await again.status("kept")
        assert order is not None
        assert order.status == "filled"
        await again.ws.close()


@pytest.mark.asyncio
async def test_latency_delays_order_answers(store: str) -> None:
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, config(latency_ms=150)) as venue:
        c = await open_client(venue)
        started = time.monotonic()
        await c.order("slow")
        await c.executions(1)
        assert time.monotonic() - started >= 0.14
        await c.ws.close()


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        VenueConfig(speed=-1)
    with pytest.raises(ValueError, match="latency_ms"):
        VenueConfig(latency_ms=-1)
    with pytest.raises(ValueError, match="heartbeat_s"):
        VenueConfig(heartbeat_s=0)
    with pytest.raises(ValueError, match="reject_rate"):
        VenueConfig(reject_rate=2)


# -- failure paths ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_store_write_answers_internal_and_sends_no_report(
    venue: PaperVenue, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = venue._store
    assert store is not None

    def broken(*args: object) -> None:
        raise VenueStoreWriteError("disk full (simulated)")

    async with asyncio.timeout(LIMIT_S):
        with monkeypatch.context() as patch:
            patch.setattr(store, "save_step", broken)
            await client.order("lost")
            error = await client.expect(p.Error)  # no execution went out for a step not on disk
            assert (error.code, error.ref) == ("internal", "new_order")
            assert "disk full" in error.message
        assert await client.status("lost") is None  # the book was reloaded from the store
        await client.order("lost")
        assert (await client.executions(1))[0].exec == "new"


@pytest.mark.asyncio
async def test_a_venue_bug_answers_internal_and_the_session_carries_on(
    venue: PaperVenue, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(after: int, limit: int) -> list[p.Fill]:
        raise RuntimeError("oops")

    assert venue._store is not None
    monkeypatch.setattr(venue._store, "fills_after", bug)
    async with asyncio.timeout(LIMIT_S):
        await client.send(p.FillsSinceRequest(after=0, id="f1"))
        error = await client.expect(p.Error)
        assert (error.code, error.ref) == ("internal", "f1")
        await client.send(p.Ping(id="x"))
        assert await client.expect(p.Pong) == p.Pong(id="x")


@pytest.mark.asyncio
async def test_a_store_with_impossible_orders_is_refused_at_start(store: str) -> None:
    async with PaperVenue(store, config()) as venue:
        c = await open_client(venue)
        await c.order("o")
        await c.executions(1)
        await c.ws.close()
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE orders SET side = 'sideways'")
    conn.close()
    with pytest.raises(VenueStoreCorrupt, match="side 'sideways'"):
        await PaperVenue(store, config()).start()


def write_trades(path: Path, rows: int, step_ms: int) -> str:
    lines = ["ts_ms,trade_id,price,qty,buyer_is_maker"]
    lines += [f"{1000 + i * step_ms},{i + 1},100.{i},0.1,false" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.asyncio
async def test_a_looped_replay_starts_the_file_again(store: str, tmp_path: Path) -> None:
    data = write_trades(tmp_path / "three.csv", 3, 1)
    cfg = VenueConfig(data_paths=[data], speed=0, loop=True)
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, cfg) as venue:
        c = await open_client(venue)
        await c.send(p.Subscribe(instruments=[X], channels=["trades"]))
        await c.expect(p.Subscribed)
        trades = [await c.expect(p.Trade) for _ in range(7)]
        assert [t.seq for t in trades] == list(range(1, 8))
        ids = [int(t.trade_id) for t in trades]
        assert all(b == a % 3 + 1 for a, b in itertools.pairwise(ids))  # 1, 2, 3, 1, 2, ...
        await c.ws.close()


@pytest.mark.asyncio
async def test_replay_is_paced_by_speed(store: str, tmp_path: Path) -> None:
    data = write_trades(tmp_path / "paced.csv", 3, 100)  # 200 ms of data
    async with asyncio.timeout(LIMIT_S):
        venue = PaperVenue(store, VenueConfig(data_paths=[data], speed=2.0))
        started = time.monotonic()
        await venue.start()
        c = await open_client(venue)
        await c.send(p.Subscribe(instruments=[X], channels=["trades"]))
        await c.expect(p.Subscribed)
        while (await c.expect(p.Trade)).trade_id != "3":
            pass
        assert time.monotonic() - started >= 0.09  # 200 ms of data at speed 2
        await c.ws.close()
        await venue.stop()


@pytest.mark.asyncio
async def test_a_failing_replay_is_logged_and_the_venue_carries_on(
    store: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(paths: object) -> list[object]:
        raise OSError("file vanished")

    monkeypatch.setattr(server.marketdata, "load", broken)
    cfg = VenueConfig(instruments=(X,), data_paths=["whatever.csv"], speed=0)
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, cfg) as venue:
        c = await open_client(venue)
        await c.send(p.Ping(id="alive"))
        assert await c.expect(p.Pong) == p.Pong(id="alive")
        await c.ws.close()
    assert "market data replay failed" in caplog.text


class StuckTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class StuckSocket:
    """Stands in for a connection whose peer never reads."""

    id = "stuck"

    def __init__(self) -> None:
        self.transport = StuckTransport()


@pytest.mark.asyncio
async def test_a_slow_subscriber_holds_the_replay_back_then_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "HIGH_WATER", 3)
    monkeypatch.setattr(connection, "SLOW_CONSUMER_S", 0.05)
    ws = StuckSocket()
    conn = connection.Connection(ws, 1.0, lambda: 0)  # type: ignore[arg-type]
    async with asyncio.timeout(LIMIT_S):
        await conn.wait_writable()  # room: returns at once
        for i in range(3):
            conn.send(p.Pong(id=str(i)))
        await conn.wait_writable()  # no room and nobody reads: dropped after SLOW_CONSUMER_S
    assert ws.transport.aborted
    assert not conn.open
    conn.send(p.Pong(id="ignored"))
    assert conn.queue.qsize() == 3


def test_a_hopelessly_stuck_connection_is_dropped_at_max_outbound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "MAX_OUTBOUND", 2)
    ws = StuckSocket()
    conn = connection.Connection(ws, 1.0, lambda: 0)  # type: ignore[arg-type]
    conn.send(p.Pong())
    assert conn.open
    conn.send(p.Pong())
    assert ws.transport.aborted
    assert not conn.open


@pytest.mark.asyncio
async def test_hooks_need_a_running_venue_and_start_twice_is_refused(venue: PaperVenue, store: str) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        await venue.start()
    idle = PaperVenue(store + "-other", config())
    with pytest.raises(RuntimeError, match="not running"):
        await idle.push_trade(X, D(1), D(1), "buy")
    await idle.stop()  # stopping a venue that never started is harmless


@pytest.mark.asyncio
async def test_reports_for_an_order_whose_connection_is_gone_reach_the_other_sessions(store: str) -> None:
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, config()) as venue:
        first = await open_client(venue)
        await first.order("gone", qty="1", price="100")
        await first.executions(1)
        await first.ws.close()
        second = await open_client(venue)
        await venue.push_trade(X, D("99"), D("0.4"), "sell")
        report = await second.expect(p.Execution)
        assert (report.client_order_id, report.exec, report.cum_qty) == ("gone", "trade", D("0.4"))
        await second.ws.close()


async def _book_for_pages(venue: PaperVenue, client: Client) -> None:
    """Open orders a..e (no fills) and f (5 fills, still open): fill_seq 1..5 are all f's."""
    for coid in ("e", "d", "c", "b", "a"):
        await client.order(coid, qty="1", price="90")
    await client.order("f", qty="10", price="100")
    await client.executions(6)
    for _ in range(5):
        await venue.push_trade(X, D("99"), D("1"), "sell")
    await client.executions(5)


@pytest.mark.asyncio
async def test_open_orders_and_fills_come_in_pages_with_a_cursor_and_the_limit_is_clamped(
    venue: PaperVenue, client: Client
) -> None:
    venue.page_max = 3
    async with asyncio.timeout(LIMIT_S):
        await _book_for_pages(venue, client)
        await client.send(p.OpenOrdersRequest(id="o1", limit=10))  # clamped to 3
        first = await client.expect(p.OpenOrders)
        assert ([o.client_order_id for o in first.orders], first.more, first.next) == (["a", "b", "c"], True, "c")
        await client.send(p.OpenOrdersRequest(id="o2", after="c", limit=10))
        rest = await client.expect(p.OpenOrders)
        assert ([o.client_order_id for o in rest.orders], rest.more, rest.next) == (["d", "e", "f"], False, "f")
        assert [f.fill_seq for f in rest.orders[2].fills] == [1, 2, 3, 4, 5]  # a snapshot keeps its fills
        # A version-1 request (no limit, no cursor) gets the first default-sized page and `more`.
        await client.send({"type": "open_orders", "id": "old"})
        old = await client.expect(p.OpenOrders)
        assert ([o.client_order_id for o in old.orders], old.more) == (["a", "b", "c"], True)
        await client.send(p.FillsSinceRequest(after=0, limit=2, id="f1"))
        fills = await client.expect(p.Fills)
        assert ([f.fill_seq for f in fills.fills], fills.more, fills.next, fills.last_fill_seq) == ([1, 2], True, 2, 5)
        await client.send(p.FillsSinceRequest(after=4, limit=2, id="f2"))
        fills = await client.expect(p.Fills)
        assert ([f.fill_seq for f in fills.fills], fills.more, fills.next, fills.last_fill_seq) == ([5], False, 5, 5)
        await client.send(p.FillsSinceRequest(after=5, id="f3"))
        fills = await client.expect(p.Fills)
        assert (fills.fills, fills.more, fills.next, fills.last_fill_seq) == ([], False, 5, 5)
        await client.send(p.FillsSinceRequest(after=0, limit=0, id="f4"))
        error = await client.expect(p.Error)
        assert (error.code, error.ref) == ("invalid", "f4")
        assert error.message == "limit must be a positive number of items, got 0"


@pytest.mark.asyncio
async def test_a_page_ends_before_its_frame_passes_the_byte_bound(venue: PaperVenue, client: Client) -> None:
    venue.page_max_bytes = store_rows.PAGE_ENVELOPE_BYTES + 300  # room for two fills of ~130 bytes, not three
    async with asyncio.timeout(LIMIT_S):
        await _book_for_pages(venue, client)
        seqs: list[list[int]] = []
        after = 0
        while True:
            await client.send(p.FillsSinceRequest(after=after, limit=1000, id=f"f{after}"))
            frame = await client.ws.recv()
            assert len(frame) <= venue.page_max_bytes
            page = p.decode_venue(frame)
            assert isinstance(page, p.Fills)
            seqs.append([f.fill_seq for f in page.fills])
            if not page.more:
                break
            after = page.next
        assert seqs == [[1, 2], [3, 4], [5]]
