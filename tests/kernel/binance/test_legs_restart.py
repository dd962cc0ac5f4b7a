"""A restart after a replace on Binance: the order's earlier legs still count.

``order.cancelReplace`` gives our order a new leg (new ``orderId``, ``executedQty`` 0, ``origQty`` =
what was left). A kernel restarted after that must see the order as a whole: the journal's
``venue_order_id`` (the first leg) is told to the fresh client (``wiring.resume_orders``), which
reads the legs with ``allOrders``. Against the Binance stand-in in-process, with a real journal
file; the run before the restart is killed (journal abandoned, connection dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel.binance.client import BinanceExecutionClient
from kernel.binance.signing import HmacSigner
from kernel.orders import OrderManager
from kernel.reconcile import Reconciler
from kernel.wiring import resume_orders
from machines.order_terms import OrderTerms
from storage import Journal
from storage.audit import AuditReader
from tests.standins.binance_api import BinanceApiStandIn

pytestmark = pytest.mark.asyncio
KEY, SECRET = "legsKey", "legs-secret"


@contextlib.asynccontextmanager
async def stand_in() -> AsyncIterator[BinanceApiStandIn]:
    """A stand-in whose market does not move by itself (book 29999.99 / 30000.01)."""
    async with BinanceApiStandIn(api_keys={KEY: SECRET}, pace_ms=600_000, max_seconds=60) as venue:
        yield venue


async def client_of(venue: BinanceApiStandIn) -> BinanceExecutionClient:
    client = BinanceExecutionClient(
        venue.ws_api_url,
        "BTCUSDT",
        KEY,
        HmacSigner(SECRET),
        request_timeout=2.0,
        session_options={"backoff": 0.01, "backoff_max": 0.05, "jitter": 0.0},
    )
    async with asyncio.timeout(5):
        await client.connect()
    return client


async def trade_through(venue: BinanceApiStandIn, price: str, qty: str) -> None:
    """Others trade ``qty`` at ``price``: resting buys at or above it fill (maker), reported at once."""
    venue.exchange._market_trade(venue.now_ms(), D(price), D(qty), buyer_maker=True)
    await venue._flush()


async def until(done: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(5):
        while not done():
            await asyncio.sleep(0.01)
    assert done(), what


def legs_at_venue(venue: BinanceApiStandIn, coid: str) -> list[tuple[D, D, D]]:
    """The venue's legs of ``coid``: (price, origQty, executedQty), oldest first."""
    orders = sorted(venue.exchange.orders.values(), key=lambda o: o.order_id)
    return [(o.price, o.qty, o.executed) for o in orders if o.client_order_id == coid]


class FirstRun:
    """A kernel run: journal, client, order manager pumping reports; ``kill`` ends it as kill -9 would."""

    def __init__(self, path: str, client: BinanceExecutionClient) -> None:
        self.journal = Journal.open(path)
        self.client = client
        self.manager = resume_orders(self.journal, client)
        self.pump = asyncio.create_task(self.manager.process_reports())

    def state(self, coid: str) -> tuple[str, D, D, D]:
        order = self.manager.orders[coid]
        return order.state, order.data["qty"], order.data["price"], order.data["cum_qty"]

    async def kill(self) -> None:
        self.pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.pump
        self.journal.abandon()
        await self.client.close()


async def first_run(path: str, venue: BinanceApiStandIn) -> tuple[FirstRun, str]:
    """Place a buy 0.02 @ 29000 and have 0.005 of it filled (journaled)."""
    run = FirstRun(path, await client_of(venue))
    await run.manager.resolve_in_flight()
    order = await run.manager.place(OrderTerms("BTCUSDT", "buy", D("0.02"), D("29000.00")))
    coid = order.entity_id
    await until(lambda: run.state(coid)[0] == "accepted", "accepted")
    await trade_through(venue, "29000.00", "0.005")
    await until(lambda: run.state(coid)[3] == D("0.005"), "first fill journaled")
    return run, coid


async def restart(path: str, venue: BinanceApiStandIn) -> tuple[OrderManager, Journal, BinanceExecutionClient]:
    """A fresh kernel on the same journal: resume, then reconcile with the venue."""
    journal = Journal.open(path)
    client = await client_of(venue)
    manager = resume_orders(journal, client)
    await Reconciler(manager, grace_s=0.05, timeout=2.0).run("test restart")
    return manager, journal, client


def order_steps(path: str, coid: str) -> list[str]:
    with AuditReader(path) as reader:
        return [t["trigger"] for t in reader.timeline(coid, machine="order")]


def fill_qtys(path: str, coid: str) -> list[D]:
    """The journaled fills of ``coid``, smallest first; no trade twice."""
    with AuditReader(path) as reader:
        fills = [f for f in reader.fills() if f["client_order_id"] == coid]
    assert len({f["trade_id"] for f in fills}) == len(fills)
    return sorted(D(str(f["qty"])) for f in fills)


async def test_a_replaced_order_is_whole_after_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "k.db")
    async with stand_in() as venue:
        run, coid = await first_run(path, venue)
        await run.manager.replace(coid, price=D("29001.00"))
        await until(lambda: run.state(coid)[:3] == ("partially_filled", D("0.02"), D("29001.00")), "replaced")
        await trade_through(venue, "29001.00", "0.003")
        await until(lambda: run.state(coid)[3] == D("0.008"), "a fill of the new leg journaled")
        first_leg = run.manager.orders[coid].data["venue_order_id"]
        await run.kill()
        await trade_through(venue, "29001.00", "0.002")  # while the kernel is down
        assert legs_at_venue(venue, coid) == [
            (D("29000.00"), D("0.02"), D("0.005")),
            (D("29001.00"), D("0.015"), D("0.005")),
        ]

        manager, journal, client = await restart(path, venue)
        try:
            order = manager.orders[coid]
            assert (order.state, order.data["qty"], order.data["price"], order.data["cum_qty"]) == (
                "partially_filled",
                D("0.02"),
                D("29001.00"),
                D("0.010"),
            )
            assert order.data["leaves_qty"] == D("0.010")
            assert order.data["venue_order_id"] == first_leg
            # the earlier leg's 0.005 is carried: the new leg's report counts the whole order
            await trade_through(venue, "29001.00", "0.004")
            pump = asyncio.create_task(manager.process_reports())
            await until(lambda: manager.orders[coid].data["cum_qty"] == D("0.014"), "a fill after the restart")
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            assert manager.orders[coid].data["qty"] == D("0.02")
        finally:
            journal.close()
            await client.close()
    steps = order_steps(path, coid)
    assert "restate" not in steps
    assert steps.count("replace") == 1
    assert fill_qtys(path, coid) == [D("0.002"), D("0.003"), D("0.004"), D("0.005")]


async def test_a_replace_pending_at_the_crash_is_settled_with_every_legs_fills(tmp_path: Path) -> None:
    path = str(tmp_path / "k.db")
    async with stand_in() as venue:
        run, coid = await first_run(path, venue)
        run.pump.cancel()  # from here on the journal hears nothing more
        with contextlib.suppress(asyncio.CancelledError):
            await run.pump
        await trade_through(venue, "29000.00", "0.004")  # a fill of the first leg the journal never gets
        await run.manager.replace(coid, price=D("29001.00"))  # journaled pending, sent
        await until(lambda: len(legs_at_venue(venue, coid)) == 2, "the venue replaced it")
        assert run.state(coid)[0] == "pending_replace"
        await run.kill()
        await trade_through(venue, "29001.00", "0.002")  # and one of the new leg, while down
        assert legs_at_venue(venue, coid) == [
            (D("29000.00"), D("0.02"), D("0.009")),
            (D("29001.00"), D("0.011"), D("0.002")),
        ]

        manager, journal, client = await restart(path, venue)
        try:
            order = manager.orders[coid]
            assert (order.state, order.data["qty"], order.data["price"], order.data["cum_qty"]) == (
                "partially_filled",
                D("0.02"),
                D("29001.00"),
                D("0.011"),
            )
            assert order.data["leaves_qty"] == D("0.009")
        finally:
            journal.close()
            await client.close()
    steps = order_steps(path, coid)
    assert "restate" not in steps
    assert "replace_reject" not in steps
    assert fill_qtys(path, coid) == [D("0.002"), D("0.004"), D("0.005")]
