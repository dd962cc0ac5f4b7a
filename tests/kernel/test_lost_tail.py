"""Durability before effect, the half a SIGKILL cannot show: the tail of ``normal`` commits lost.

The venue's facts (acks, fills, cancels) are committed at ``normal`` (``kernel.orders.VENUE_FACTS``);
in WAL mode a killed process loses none of them (the torture test's ``after_report_commit`` kills),
but a power loss may lose every commit after the last fsync of the log, i.e. after the last ``full``
commit. The worst case is simulated honestly: a consistent copy of the journal (SQLite's backup of
the committed state) is taken right after the last ``full`` commit (the new order, before it was
sent); the ack and the fill that follow are committed at ``normal`` and then thrown away with the
"machine". A kernel started on the copy finds the crash, and reconciliation recovers the ack and
the fill from the venue: the fill once, the position right, nothing sent twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import pytest_asyncio

from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.reconcile import Reconciler
from kernel.venue.server import PaperVenue, VenueConfig
from machines import Entity, Transition
from machines.order_terms import OrderTerms
from storage import Journal
from storage.audit import AuditReader

pytestmark = pytest.mark.asyncio
TIMEOUT = 10.0


@pytest_asyncio.fixture
async def venue(tmp_path: Path) -> AsyncIterator[PaperVenue]:
    venue = PaperVenue(str(tmp_path / "venue.db"), VenueConfig(instruments=("BTCUSDT",), autoplay=False))
    await venue.start()
    try:
        yield venue
    finally:
        await venue.stop()


async def connected(venue: PaperVenue) -> VenueClient:
    client = VenueClient(venue.url, backoff=0.01, jitter=0.0, attempts=100)
    await client.connect()
    return client


def copy_committed(path: str, to: str) -> None:
    """What the disk is sure to hold now: a consistent copy of the committed journal."""
    source = sqlite3.connect(path)
    target = sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def triggers(path: str, entity: str) -> list[str]:
    with AuditReader(path) as reader:
        return [t["trigger"] for t in reader.timeline(entity, machine="order")]


async def test_a_fill_lost_with_the_unsynced_tail_is_recovered_from_the_venue(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path, disk = str(tmp_path / "k.db"), str(tmp_path / "after-power-loss.db")
    journal = Journal.open(path)  # full, as kernel.toml's default
    client = await connected(venue)
    manager = OrderManager(journal, client)
    levels: list[int] = []
    journal.in_commit = lambda: levels.append(journal._conn.execute("PRAGMA synchronous").fetchone()[0])  # type: ignore[union-attr]
    filled = asyncio.Event()

    def on_update(order: Entity, transition: Transition) -> None:
        if transition.trigger == "fill" and order.state == "filled":
            filled.set()

    manager.listeners.append(on_update)
    runner = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(TIMEOUT):
            while manager.paused:
                await asyncio.sleep(0.01)
        levels.clear()
        order = await manager.place(OrderTerms("BTCUSDT", "buy", D(1), D(100)))
        assert levels == [2]  # create + submit: FULL, before the send
        copy_committed(path, disk)  # the last fsync: everything after it is the unsynced tail
        async with asyncio.timeout(TIMEOUT):
            while order.state != "accepted":
                await asyncio.sleep(0.01)
        await venue.push_trade("BTCUSDT", D("99"), D("1"), "sell")
        async with asyncio.timeout(TIMEOUT):
            await filled.wait()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.close()
    assert levels[0] == 2
    assert set(levels[1:]) == {1}  # the ack and the fill: NORMAL
    assert triggers(path, order.entity_id) == ["create", "submit", "accept", "fill"]
    journal.abandon()  # the machine dies; its disk holds only what was fsynced: the copy
    assert triggers(disk, order.entity_id) == ["create", "submit"]

    restarted = Journal.open(disk)
    assert restarted.crashed_runs == [1]
    client = await connected(venue)
    manager = OrderManager.resume(restarted, client)
    report = await Reconciler(manager, grace_s=0.05).run("restart after a power loss")
    await client.close()
    recovered = restarted.entity("order", order.entity_id)
    position = restarted.entity("position", "BTCUSDT")
    restarted.close()
    assert recovered is not None
    assert (recovered.state, recovered.data["cum_qty"]) == ("filled", D(1))
    assert report.counts["fills_applied"] == 1
    assert report.counts["lost"] == 0
    assert not [d for d in report.differences if d["kind"] == "position_mismatch"]
    assert position is not None
    assert position.data["qty"] == D(1)
    assert triggers(disk, order.entity_id) == ["create", "submit", "reconcile_accept", "reconcile_fill"]
    with AuditReader(disk) as reader:
        assert reader.verify().ok
        fills = reader.fills()
    assert [(f["client_order_id"], f["qty"]) for f in fills] == [(order.entity_id, D(1))]  # once
    async with asyncio.timeout(TIMEOUT):
        checker = await connected(venue)
        snapshot = await checker.order_status(order.entity_id, timeout=TIMEOUT)
        await checker.close()
    assert snapshot is not None
    assert (snapshot.status, snapshot.cum_qty) == ("filled", D(1))  # one order at the venue, filled once
