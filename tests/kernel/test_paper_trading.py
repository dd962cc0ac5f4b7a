"""Full flows: OrderManager + VenueClient against the real paper venue on 127.0.0.1, real journal.

Market data is pushed through the venue's test hooks (``autoplay=False``), so every fill is
deterministic; everything else (WebSocket, matching, the venue's SQLite book, the journal) is real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.venue.server import PaperVenue, VenueConfig
from machines import Entity
from machines.order_terms import OrderTerms
from storage import Journal
from storage.audit import AuditReader
from tests.poll import eventually as until

D = Decimal
pytestmark = pytest.mark.asyncio


@dataclass
class Kernel:
    venue: PaperVenue
    journal: Journal
    client: VenueClient
    manager: OrderManager


@contextlib.asynccontextmanager
async def paper_kernel(tmp_path: Path, **config: object) -> AsyncIterator[Kernel]:
    """A paper venue, a journal, a connected client and a running order manager; all torn down."""
    venue = PaperVenue(str(tmp_path / "venue.db"), VenueConfig(instruments=("BTCUSDT",), autoplay=False, **config))  # type: ignore[arg-type]
    await venue.start()
    journal = Journal.open(str(tmp_path / "kernel.db"))
    client = VenueClient(venue.url, backoff=0.01, jitter=0.0, attempts=50)
    kernel = Kernel(venue, journal, client, OrderManager(journal, client))
    try:
        async with asyncio.timeout(30):
            await client.connect()
            runner = asyncio.create_task(kernel.manager.run(), name="order-manager")
            try:
                await until(lambda: not kernel.manager.paused, "order entry to open")
                yield kernel
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
    finally:
        await client.close()
        await kernel.venue.stop()  # a test may have replaced the venue (a restart)
        journal.close()
        with AuditReader(str(tmp_path / "kernel.db")) as reader:
            result = reader.verify()
        assert result.ok, result.reason


async def test_a_resting_limit_order_fills_in_parts_as_trades_cross_it(tmp_path: Path) -> None:
    async with paper_kernel(tmp_path) as k:
        order = await k.manager.place(OrderTerms("BTCUSDT", "buy", D("0.010"), D("39400")))
        await until(lambda: order.state == "accepted", "the ack")
        await k.venue.push_trade("BTCUSDT", D("39400"), D("0.5"), "sell")  # at the limit: no fill (not through)
        await k.venue.push_trade("BTCUSDT", D("39399"), D("0.004"), "sell")  # through, volume short
        await until(lambda: order.data["cum_qty"] == D("0.004"), "the first partial fill")
        assert order.state == "partially_filled"
        await k.venue.push_trade("BTCUSDT", D("39390"), D("1"), "sell")
        await until(lambda: order.state == "filled", "the fill")
        assert order.data["cum_qty"] == D("0.010")
        assert order.data["avg_px"] == D("39400")  # fills at the limit price
        assert len(order.data["trade_ids"]) == 2


async def test_a_fill_that_arrives_while_a_cancel_is_pending_still_counts(tmp_path: Path) -> None:
    async with paper_kernel(tmp_path) as k:
        order = await k.manager.place(OrderTerms("BTCUSDT", "sell", D("1"), D("40000")))
        await until(lambda: order.state == "accepted", "the ack")
        # The trade reaches the venue first; our cancel is sent before its report arrives.
        fill = asyncio.create_task(k.venue.push_trade("BTCUSDT", D("40001"), D("0.3"), "buy"))
        await k.manager.cancel(order.entity_id)
        assert order.state in ("pending_cancel", "canceled")
        await fill
        await until(lambda: order.state == "canceled", "the cancel")
        assert order.data["cum_qty"] == D("0.3")
        assert order.data["leaves_qty"] == 0


async def test_an_order_the_venue_refuses_is_rejected(tmp_path: Path) -> None:
    async with paper_kernel(tmp_path) as k:
        order = await k.manager.place(OrderTerms("DOGEUSDT", "buy", D("1"), D("1")))
        await until(lambda: order.state == "rejected", "the reject")
        assert order.data["reason"]


async def test_an_ioc_remainder_is_canceled(tmp_path: Path) -> None:
    async with paper_kernel(tmp_path) as k:
        await k.venue.push_quote("BTCUSDT", D("39990"), D("1"), D("40000"), D("0.25"))
        order = await k.manager.place(OrderTerms("BTCUSDT", "buy", D("1"), D("40010"), tif="ioc"))
        await until(lambda: order.state == "canceled", "the IOC remainder cancel")
        assert order.data["cum_qty"] == D("0.25")
        assert order.data["avg_px"] == D("40000")


async def test_a_replace_is_confirmed_and_the_new_price_trades(tmp_path: Path) -> None:
    async with paper_kernel(tmp_path) as k:
        order = await k.manager.place(OrderTerms("BTCUSDT", "buy", D("1"), D("39000")))
        await until(lambda: order.state == "accepted", "the ack")
        await k.manager.replace(order.entity_id, price=D("39500"))
        await until(lambda: order.data["price"] == D("39500") and order.state == "accepted", "the replace")
        await k.venue.push_trade("BTCUSDT", D("39499"), D("5"), "sell")
        await until(lambda: order.state == "filled", "the fill at the new price")
        assert order.data["avg_px"] == D("39500")


async def test_the_venue_restarting_mid_session_loses_nothing(tmp_path: Path) -> None:
    async with paper_kernel(tmp_path) as k:
        order = await k.manager.place(OrderTerms("BTCUSDT", "buy", D("1"), D("39400")))
        await until(lambda: order.state == "accepted", "the ack")
        await k.venue.push_trade("BTCUSDT", D("39399"), D("0.4"), "sell")
        await until(lambda: order.data["cum_qty"] == D("0.4"), "the first fill")
        generation = k.client.generation
        port = k.venue.port
        await k.venue.stop()
        # A new venue process on the same book and port: the client reconnects by itself.
        k.venue = PaperVenue(str(tmp_path / "venue.db"), VenueConfig(instruments=("BTCUSDT",), autoplay=False))
        await k.venue.start(port=port)
        await until(lambda: k.client.generation > generation and not k.manager.paused, "reconnect + resolution")
        await k.venue.push_trade("BTCUSDT", D("39398"), D("5"), "sell")
        await until(lambda: order.state == "filled", "the fill after the restart")
        assert order.data["cum_qty"] == D("1")


async def test_ids_never_repeat_and_each_is_one_order_at_the_venue(tmp_path: Path) -> None:
    async with paper_kernel(tmp_path) as k:
        terms = OrderTerms("BTCUSDT", "buy", D("0.1"), D("30000"))
        orders: list[Entity] = [await k.manager.place(terms) for _ in range(20)]
        await until(lambda: all(o.state == "accepted" for o in orders), "20 acks")
        ids = [o.entity_id for o in orders]
        assert len(set(ids)) == 20
        snapshots = await k.client.open_orders(timeout=5)
        assert sorted(s.client_order_id for s in snapshots) == sorted(ids)
