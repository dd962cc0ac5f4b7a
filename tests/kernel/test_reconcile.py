"""Reconciliation (kernel.reconcile) against the real paper venue on 127.0.0.1 and a real journal.

Each test builds the situation a crash leaves behind — a journal that lags the venue, an order
journaled but never sent, an order the journal never saw — then reconciles in a fresh manager, as
a restarted kernel does, and checks the transitions, the report and the journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import pytest_asyncio

from kernel.execution import VenueClient, VenueError
from kernel.orders import OrderError, OrderManager, checkpoint_positions
from kernel.paper_protocol import NewOrder
from kernel.reconcile import Reconciler, ReconciliationFailed, Report
from kernel.venue.server import PaperVenue, VenueConfig
from machines import ORDER, POSITION, RECONCILIATION
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


def journaled_not_sent(path: str, client_order_id: str, price: str = "100") -> None:
    """A run that journaled create + submit and died before sending (left open: a crash)."""
    journal = Journal.open(path)
    order, created = ORDER.create(client_order_id, instrument="BTCUSDT", side="buy", qty=D(1), price=D(price))
    journal.append(created, order)
    journal.fire(ORDER, order, "submit")
    journal.abandon()


async def reconcile(path: str, venue: PaperVenue, grace_s: float = 0.05) -> tuple[Report, OrderManager, Journal]:
    journal = Journal.open(path)
    client = await connected(venue)
    manager = OrderManager.resume(journal, client)
    report = await Reconciler(manager, grace_s=grace_s).run("test restart")
    await client.close()
    return report, manager, journal


def timeline(path: str, entity: str, machine: str = "order") -> list[tuple[str, str, dict[str, object]]]:
    with AuditReader(path) as reader:
        return [(t["trigger"], t["dest"], t["data"]) for t in reader.timeline(entity, machine=machine)]


async def test_an_order_the_venue_never_received_is_resolved_as_lost_never_resent(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path = str(tmp_path / "k.db")
    journaled_not_sent(path, "o1-000001")
    report, _manager, journal = await reconcile(path, venue)
    journal.close()
    assert report.counts["lost"] == 1
    assert [d["kind"] for d in report.differences] == ["lost"]
    trigger, dest, data = timeline(path, "o1-000001")[-1]
    assert (trigger, dest, data["source"], data["reason"]) == (
        "reconcile_lost",
        "rejected",
        "reconciliation",
        "lost: the venue never received it",
    )
    assert "answered twice" in str(data["evidence"])
    client = await connected(venue)
    assert await client.order_status("o1-000001", timeout=TIMEOUT) is None  # never resent
    await client.close()
    with AuditReader(path) as reader:
        assert reader.verify().ok
        (recon,) = reader.entities(machine="reconciliation")
    assert recon["state"] == "done"
    assert recon["data"]["counts"]["lost"] == 1


async def test_an_acknowledged_order_the_restarted_venue_no_longer_knows_is_concluded_lost(
    tmp_path: Path, venue: PaperVenue
) -> None:
    # An earlier run's order the venue acknowledged; the venue has since restarted on a fresh store.
    path = str(tmp_path / "k.db")
    journal = Journal.open(path)
    order, created = ORDER.create("o1-000001", instrument="BTCUSDT", side="buy", qty=D(1), price=D(100))
    journal.append(created, order)
    journal.fire(ORDER, order, "submit")
    journal.fire(ORDER, order, "accept", venue_order_id="V1")
    journal.abandon()
    report, manager, journal = await reconcile(path, venue)
    journal.close()
    assert report.counts["lost"] == 1
    assert [d["kind"] for d in report.differences] == ["lost"]
    trigger, dest, data = timeline(path, "o1-000001")[-1]
    assert (trigger, dest, data["source"], data["reason"]) == (
        "lost",
        "expired",
        "reconciliation",
        "lost: the venue no longer knows the order",
    )
    assert "which it had acknowledged" in str(data["evidence"])
    assert "o1-000001" not in manager.orders  # it ended: nothing left to cancel or replace


async def test_what_the_venue_did_while_the_kernel_was_down_is_applied_as_reconcile_transitions(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path = str(tmp_path / "k.db")
    journaled_not_sent(path, "o1-000001", price="100")
    # The frame left before the crash: the venue has the order, acks it, and it fills.
    sender = await connected(venue)
    await sender.send_new(
        NewOrder(client_order_id="o1-000001", instrument="BTCUSDT", side="buy", qty=D(1), price=D(100))
    )
    assert await sender.order_status("o1-000001", timeout=TIMEOUT) is not None
    await sender.close()
    await venue.push_trade("BTCUSDT", D("99"), D("0.4"), "sell")
    report, manager, journal = await reconcile(path, venue)
    order = manager.orders["o1-000001"]
    journal.close()
    assert (order.state, order.data["cum_qty"]) == ("partially_filled", D("0.4"))
    steps = timeline(path, "o1-000001")
    assert [(t, d["source"]) for t, _, d in steps[2:]] == [
        ("reconcile_accept", "reconciliation"),
        ("reconcile_fill", "reconciliation"),
    ]
    assert report.counts["fills_applied"] == 1
    assert report.counts["lost"] == 0
    # positions: the fill is in the journal now; the venue's fills agree
    with AuditReader(path) as reader:
        assert [f["trade_id"] for f in reader.fills()] == [steps[-1][2]["trade_id"]]


async def test_an_order_at_the_venue_the_journal_never_recorded_is_adopted_as_external(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path = str(tmp_path / "k.db")
    Journal.open(path).close()
    other = await connected(venue)  # someone else on the account
    await other.send_new(
        NewOrder(client_order_id="manual-1", instrument="BTCUSDT", side="sell", qty=D(2), price=D(150))
    )
    assert await other.order_status("manual-1", timeout=TIMEOUT) is not None
    await other.close()
    report, manager, journal = await reconcile(path, venue)
    journal.close()
    adopted = manager.orders["manual-1"]
    assert (adopted.state, adopted.data["origin"], adopted.data["qty"]) == ("accepted", "external", D(2))
    assert report.counts["adopted"] == 1
    assert "adopted" in [d["kind"] for d in report.differences]
    assert [t for t, _, _ in timeline(path, "manual-1")] == ["create", "submit", "reconcile_accept"]


async def test_a_position_that_differs_from_the_venue_fills_is_reported(tmp_path: Path, venue: PaperVenue) -> None:
    path = str(tmp_path / "k.db")
    journal = Journal.open(path)
    position, created = POSITION.create("BTCUSDT")  # a fill the venue never made
    journal.append(created, position)
    journal.fire(
        POSITION, position, "fill", side="buy", qty=D(1), price=D(100), trade_id="phantom", client_order_id="x"
    )
    journal.abandon()
    report, _manager, journal = await reconcile(path, venue)
    journal.close()
    mismatch = [d for d in report.differences if d["kind"] == "position_mismatch"]
    assert mismatch == [
        {
            "kind": "position_mismatch",
            "client_order_id": "BTCUSDT",
            "detail": "journal 1, venue fills 0 (difference -1)",
        }
    ]
    assert report.counts["anomalies"] == 1


async def test_an_unreachable_venue_fails_the_reconciliation_and_a_retry_completes_it(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path = str(tmp_path / "k.db")
    journaled_not_sent(path, "o1-000001")
    journal = Journal.open(path)
    client = await connected(venue)
    manager = OrderManager.resume(journal, client)
    reconciler = Reconciler(manager, grace_s=0.05, timeout=1.0)
    await venue.stop()  # the venue goes away mid-session
    with pytest.raises(ReconciliationFailed) as failed:
        await reconciler.run("test restart")
    assert isinstance(failed.value, OrderError)
    assert isinstance(failed.value, VenueError)  # the order manager retries a failed reconciliation
    assert reconciler.entity is not None
    assert reconciler.entity.state == "failed"
    assert manager.orders["o1-000001"].state == "pending_new"  # nothing concluded
    await venue.start(port=int(client.url.rsplit(":", 1)[1]))
    async with asyncio.timeout(TIMEOUT):
        while not client.connected:
            await asyncio.sleep(0.01)
    report = await reconciler.run("retry")
    await client.close()
    journal.close()
    assert report.counts["lost"] == 1
    recon = timeline(path, reconciler.entity.entity_id, machine=RECONCILIATION.name)
    assert [t for t, _, _ in recon] == ["create", "fail", "retry", "complete"]


async def test_a_fill_the_venue_made_on_an_order_the_journal_ended_is_applied_late(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path = str(tmp_path / "k.db")
    sender = await connected(venue)
    await sender.send_new(
        NewOrder(client_order_id="o1-000001", instrument="BTCUSDT", side="buy", qty=D(1), price=D(100))
    )
    snapshot = await sender.order_status("o1-000001", timeout=TIMEOUT)
    assert snapshot is not None
    await venue.push_trade("BTCUSDT", D("99"), D("0.25"), "sell")  # the venue fills a quarter...
    await sender.send_cancel("o1-000001")  # ...then cancels the rest
    async with asyncio.timeout(TIMEOUT):
        while (s := await sender.order_status("o1-000001", timeout=TIMEOUT)) is None or s.status != "canceled":
            await asyncio.sleep(0.01)
    await sender.close()
    # The killed process journaled the ack and the cancel, but never the fill report.
    journal = Journal.open(path)
    order, created = ORDER.create("o1-000001", instrument="BTCUSDT", side="buy", qty=D(1), price=D(100))
    journal.append(created, order)
    journal.fire(ORDER, order, "submit")
    journal.fire(ORDER, order, "accept", venue_order_id=snapshot.venue_order_id)
    journal.fire(ORDER, order, "cancel")
    journal.abandon()
    report, manager, journal = await reconcile(path, venue)
    assert "o1-000001" not in manager.orders  # ended: it left memory once the late fill was committed
    late = journal.entity(ORDER, "o1-000001")
    journal.close()
    assert late is not None
    assert (late.state, late.data["cum_qty"], late.data["late_fills"]) == ("canceled", D("0.25"), 1)
    assert report.counts["fills_applied"] == 1
    assert not [d for d in report.differences if d["kind"] == "position_mismatch"]
    assert [t for t, _, _ in timeline(path, "o1-000001")][-1] == "reconcile_fill"
    assert manager.positions["BTCUSDT"].data["qty"] == D("0.25")


async def test_a_journal_from_before_position_checkpoints_gets_them_once(tmp_path: Path, venue: PaperVenue) -> None:
    path = str(tmp_path / "k.db")
    journal = Journal.open(path)
    for n, (side, qty) in enumerate((("buy", "3"), ("sell", "1")), start=1):
        order, created = ORDER.create(f"old-{n}", instrument="ETHUSDT", side=side, qty=D(qty), price=D(10))
        journal.append(created, order)
        journal.fire(ORDER, order, "submit")
        journal.fire(ORDER, order, "accept", venue_order_id=f"V{n}")
        journal.fire(ORDER, order, "fill", qty=D(qty), price=D(10), trade_id=f"T{n}")  # no position fill: old code
    journal.close()
    journal = Journal.open(path)
    client = await connected(venue)
    try:
        manager = OrderManager.resume(journal, client)
        assert manager.positions == {}
        assert checkpoint_positions(manager) == 2
        assert manager.positions["ETHUSDT"].data["qty"] == D(2)
        assert checkpoint_positions(manager) == 0  # once
    finally:
        await client.close()
        journal.close()
    with AuditReader(path) as reader:
        assert reader.verify().ok
        assert [t["trigger"] for t in reader.timeline("ETHUSDT", machine="position")] == ["create", "fill", "fill"]
