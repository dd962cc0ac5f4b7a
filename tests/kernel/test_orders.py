"""OrderManager: write-ahead order entry, report pump, in-flight resolution, restarts.

Against the scripted ``FakeVenue`` of test_execution.py (a real websockets server) and, for the
resolution table, a stub ``ExecutionClient``. Every test ends with ``AuditReader.verify().ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from kernel.execution import ExecutionClient, ReconnectFailed, Report, VenueClient, VenueUnavailable
from kernel.orders import NoRun, OrderEntryPaused, OrderError, OrderManager, OrderNotSent, UnknownOrder
from kernel.paper_protocol import (
    CancelOrder,
    Fill,
    NewOrder,
    OrderSnapshot,
    OrderStatus,
    OrderStatusRequest,
    ReplaceOrder,
)
from machines import Entity, InvalidData, InvalidTransition, TradekernelError
from machines.order_terms import OrderTerms
from storage import Journal, JournalWriteError
from storage.audit import AuditReader
from tests.conftest import FakeClock
from tests.kernel.test_execution import (
    TIMEOUT,
    FakeVenue,
    RecordingSleep,
    eventually,
    execution,
    fill,
    snapshot,
)

D = Decimal


# -- fixtures -----------------------------------------------------------------------------------


def open_journal(path: str) -> Journal:
    return Journal.open(path, durability="normal", clock=FakeClock())


@pytest.fixture
def journal(db_path: str) -> Iterator[Journal]:
    journal = open_journal(db_path)
    yield journal
    journal.close()
    with AuditReader(db_path) as reader:
        result = reader.verify()
    assert result.ok, result.reason


@pytest_asyncio.fixture
async def venue() -> AsyncIterator[FakeVenue]:
    async with FakeVenue() as venue:
        yield venue


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest_asyncio.fixture
async def client(venue: FakeVenue, sleep: RecordingSleep) -> AsyncIterator[VenueClient]:
    client = VenueClient(venue.url, ping_interval=None, attempts=5, sleep=sleep, jitter=0)
    yield client
    await client.close()


@contextlib.asynccontextmanager
async def running(manager: OrderManager) -> AsyncIterator[asyncio.Task[None]]:
    """``manager.run()`` as a task (connect first); cancelled and awaited on exit.

    A task that ended on its own is left to the test, which must have checked its exception.
    """
    await manager.client.connect()
    task = asyncio.create_task(manager.run())
    try:
        await eventually(lambda: not manager.paused or task.done())
        yield task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def triggers(path: str, entity: str) -> list[tuple[str, str, Any]]:
    """(trigger, dest, source-of-data) of every transition of one order, in order."""
    with AuditReader(path) as reader:
        return [(t["trigger"], t["dest"], t["data"].get("source")) for t in reader.timeline(entity, machine="order")]


def entry_open(manager: OrderManager) -> bool:
    """``not manager.paused``, read through a call (mypy keeps no narrowing across it)."""
    return not manager.paused


async def place(manager: OrderManager, qty: str = "1", price: str = "100") -> Entity:
    return await manager.place(OrderTerms("BTCUSDT", "buy", D(qty), D(price)))


# -- write-ahead order entry ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_submit_is_committed_before_the_venue_sees_new_order(
    journal: Journal, venue: FakeVenue, client: VenueClient
) -> None:
    seen: list[tuple[str, str | None, list[str]]] = []

    def check(order: NewOrder) -> None:  # runs in the venue, on receiving new_order
        with AuditReader(journal.path) as reader:
            rows = {e["entity"]: e["state"] for e in reader.entities(machine="order")}
            steps = [t["trigger"] for t in reader.timeline(order.client_order_id, machine="order")]
        seen.append((order.client_order_id, rows.get(order.client_order_id), steps))

    venue.on_new_order = check
    manager = OrderManager(journal, client)
    updates: list[tuple[str, str]] = []
    manager.listeners.append(lambda order, t: updates.append((order.entity_id, t.trigger)))
    async with asyncio.timeout(TIMEOUT), running(manager):
        order = await place(manager)
        await eventually(lambda: order.state == "accepted")
    assert seen == [(order.entity_id, "pending_new", ["create", "submit"])]
    assert order.entity_id == f"o{journal.journal_id}-{journal.run_id}-000001"
    assert order.data["venue_order_id"] == f"V-{order.entity_id}"
    assert updates == [(order.entity_id, "create"), (order.entity_id, "submit"), (order.entity_id, "accept")]
    assert manager.unsent == set()


def steps_of(path: str, entity: str) -> list[tuple[str, dict[str, Any]]]:
    """(trigger, data) of every transition of one order, in order."""
    with AuditReader(path) as reader:
        return [(t["trigger"], t["data"]) for t in reader.timeline(entity, machine="order")]


def disk_full(journal: Journal) -> None:
    """Make the journal's next commit that needs a new page fail, as on a full disk."""
    conn = journal._conn
    assert conn is not None
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")


def disk_freed(journal: Journal) -> None:
    conn = journal._conn
    assert conn is not None
    conn.execute("PRAGMA max_page_count = 1073741823")


@pytest.mark.asyncio
async def test_a_failed_commit_sends_nothing_and_journals_why(
    journal: Journal, venue: FakeVenue, client: VenueClient
) -> None:
    manager = OrderManager(journal, client)
    updates: list[tuple[str, str]] = []
    manager.listeners.append(lambda order, t: updates.append((order.entity_id, t.trigger)))
    async with asyncio.timeout(TIMEOUT), running(manager):
        disk_full(journal)
        with pytest.raises(JournalWriteError):
            await manager.place(OrderTerms("X" * 50_000, "buy", D(1), D(100)))  # needs new pages: disk "full"
        assert journal.failure is not None
        # a round trip: the venue has handled everything sent before it
        assert await client.order_status("probe", timeout=TIMEOUT) is None
        assert venue.count(NewOrder) == 0
        assert manager.unsent == set()  # never in flight: it is rejected, not pending
        (order,) = manager.orders.values()
        assert order.state == "rejected"
        assert updates == []  # nothing is told before it is durable
        disk_freed(journal)
        manager.apply_reports([])  # the next commit carries the held batch and tells the listeners
    assert updates == [(order.entity_id, "create"), (order.entity_id, "submit"), (order.entity_id, "reject")]
    trigger, data = steps_of(journal.path, order.entity_id)[-1]
    assert trigger == "reject"
    assert data["reason"] == "not sent: journal commit failed"
    assert data["source"] == "kernel"


@pytest.mark.asyncio
async def test_a_failed_commit_of_a_cancel_or_replace_leaves_the_order_working(
    journal: Journal, venue: FakeVenue, client: VenueClient
) -> None:
    manager = OrderManager(journal, client)
    async with asyncio.timeout(TIMEOUT), running(manager):
        order = await place(manager)
        await eventually(lambda: order.state == "accepted")
        before = (venue.count(CancelOrder), venue.count(ReplaceOrder))
        conn = journal._conn
        assert conn is not None
        conn.execute("PRAGMA query_only = 1")  # every write fails, as on a read-only file
        with pytest.raises(JournalWriteError):
            await manager.cancel(order.entity_id)
        assert order.state == "accepted"
        with pytest.raises(JournalWriteError):
            await manager.replace(order.entity_id, price=D(99))
        assert order.state == "accepted"
        assert await client.order_status("probe", timeout=TIMEOUT) is None
        assert (venue.count(CancelOrder), venue.count(ReplaceOrder)) == before
        conn.execute("PRAGMA query_only = 0")
        manager.apply_reports([])
    steps = [(trigger, data.get("reason")) for trigger, data in steps_of(journal.path, order.entity_id)]
    assert steps[-4:] == [
        ("request_cancel", None),
        ("cancel_reject", "not sent: journal commit failed"),
        ("request_replace", None),
        ("replace_reject", "not sent: journal commit failed"),
    ]


@pytest.mark.asyncio
async def test_deny_journals_the_intent_and_its_reason(journal: Journal, venue: FakeVenue, client: VenueClient) -> None:
    manager = OrderManager(journal, client)
    updates: list[str] = []
    manager.listeners.append(lambda order, t: updates.append(t.trigger))
    order = manager.deny(OrderTerms("BTCUSDT", "sell", D(2), D(50), tag="ask"), reason="order entry paused: feed stale")
    assert order.state == "denied"
    assert order.data["tag"] == "ask"
    assert updates == ["create", "deny"]
    assert venue.count(NewOrder) == 0
    assert [(t, d.get("reason")) for t, d in steps_of(journal.path, order.entity_id)] == [
        ("create", None),
        ("deny", "order entry paused: feed stale"),
    ]


@pytest.mark.asyncio
async def test_bad_terms_journal_nothing(journal: Journal, venue: FakeVenue, client: VenueClient) -> None:
    manager = OrderManager(journal, client)
    async with asyncio.timeout(TIMEOUT), running(manager):
        seq = journal.committed_seq
        with pytest.raises(InvalidData):
            await manager.place(OrderTerms("BTCUSDT", "buy", D(-1), D(100)))
        with pytest.raises(InvalidData):
            await manager.place(OrderTerms("BTCUSDT", "buy", D(1)))  # a limit order needs a price
        assert journal.committed_seq == seq
        with pytest.raises(UnknownOrder):
            await manager.cancel("nope")


# -- execution reports ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_every_exec_type_maps_to_its_trigger(journal: Journal, venue: FakeVenue, client: VenueClient) -> None:
    manager = OrderManager(journal, client)
    async with asyncio.timeout(TIMEOUT), running(manager):
        a = await place(manager, qty="2")
        await eventually(lambda: a.state == "accepted")
        await venue.send(execution(a.entity_id, "trade", "partially_filled", qty="2", fill=fill("F1", "0.5", "99")))
        await eventually(lambda: a.state == "partially_filled")
        await venue.send(execution(a.entity_id, "trade", "filled", qty="2", fill=fill("F2", "1.5", "101", seq=2)))
        await eventually(lambda: a.state == "filled")
        assert a.data["cum_qty"] == D(2)
        assert a.data["avg_px"] == D("100.5")
        assert a.data["fees"] == D("0.02")

        venue.auto_ack = False
        r = await place(manager)
        await venue.send(execution(r.entity_id, "rejected", "rejected", reason="price band"))
        await eventually(lambda: r.state == "rejected")
        assert r.data["reason"] == "price band"

        venue.auto_ack = True
        c = await place(manager)
        await eventually(lambda: c.state == "accepted")
        await manager.cancel(c.entity_id)
        assert c.state == "pending_cancel"
        assert (await venue.expect(CancelOrder)).client_order_id == c.entity_id
        await venue.send(execution(c.entity_id, "cancel_rejected", "new", reason="too late"))
        await eventually(lambda: c.state == "accepted")
        await manager.replace(c.entity_id, qty=D(3), price=D(101))
        assert c.state == "pending_replace"
        sent = await venue.expect(ReplaceOrder)
        assert (sent.qty, sent.price) == (D(3), D(101))
        await venue.send(execution(c.entity_id, "replaced", "new", qty="3", price="101"))
        await eventually(lambda: c.state == "accepted" and c.data["qty"] == D(3))
        assert c.data["price"] == D(101)
        await manager.replace(c.entity_id, price=D(102))
        await venue.send(execution(c.entity_id, "replace_rejected", "new", qty="3", price="101", reason="no"))
        await eventually(lambda: c.state == "accepted" and c.data["prior_state"] is None)
        await venue.send(execution(c.entity_id, "restated", "new", qty="2", price="101", reason="venue cut"))
        await eventually(lambda: c.data["qty"] == D(2))
        assert c.data["reason"] == "venue cut"
        await manager.cancel(c.entity_id)
        await venue.send(execution(c.entity_id, "canceled", "canceled", qty="2", reason="requested"))
        await eventually(lambda: c.state == "canceled")

        e = await place(manager)
        await eventually(lambda: e.state == "accepted")
        await venue.send(execution(e.entity_id, "expired", "expired"))
        await eventually(lambda: e.state == "expired")
    assert manager.counts["refused"] == 0
    assert [t[0] for t in triggers(journal.path, c.entity_id)] == [
        "create", "submit", "accept", "request_cancel", "cancel_reject", "request_replace", "replace",
        "request_replace", "replace_reject", "restate", "request_cancel", "cancel",
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_unknown_and_impossible_reports_are_counted_not_fatal(
    journal: Journal, venue: FakeVenue, client: VenueClient
) -> None:
    manager = OrderManager(journal, client)
    venue.auto_ack = False
    async with asyncio.timeout(TIMEOUT), running(manager) as task:
        r = await place(manager)
        await venue.send(execution(r.entity_id, "rejected", "rejected", reason="no"))
        await eventually(lambda: r.state == "rejected")
        await venue.send(execution("ghost-1", "new", "new"))
        await venue.send(execution(r.entity_id, "trade", "filled", fill=fill("F9", "1")))  # fill on rejected
        await venue.send(execution(r.entity_id, "trade", "filled"))  # a trade without its fill
        await venue.send(OrderStatus(client_order_id="ghost-2", order=snapshot("ghost-2", "new"), duplicate=True))
        await venue.send(OrderStatus(client_order_id=r.entity_id, order=None, duplicate=True))  # says nothing
        ok = await place(manager)
        await venue.send(execution(ok.entity_id, "new", "new"))
        await eventually(lambda: ok.state == "accepted")
        assert not task.done()
    assert manager.counts["unknown_order"] == 2
    assert manager.counts["refused"] == 2
    assert [a.kind for a in manager.anomalies] == ["unknown_order", "refused", "refused", "unknown_order"]
    with AuditReader(journal.path) as reader:  # journaled too, with the report as sample
        journaled = reader.anomalies()
    assert [(a["source"], a["kind"]) for a in journaled] == [("orders", a.kind) for a in manager.anomalies]
    assert journaled[0]["reason"].startswith("ghost-1")
    assert "ghost-1" in journaled[0]["sample"]
    assert r.state == "rejected"
    assert r.data["cum_qty"] == 0
    assert [t[0] for t in triggers(journal.path, r.entity_id)] == ["create", "submit", "reject"]


@pytest.mark.asyncio
async def test_a_duplicate_fill_is_absorbed(journal: Journal, venue: FakeVenue, client: VenueClient) -> None:
    manager = OrderManager(journal, client)
    async with asyncio.timeout(TIMEOUT), running(manager):
        o = await place(manager, qty="2")
        await eventually(lambda: o.state == "accepted")
        for _ in range(2):
            await venue.send(execution(o.entity_id, "trade", "partially_filled", qty="2", fill=fill("F1", "1")))
        await eventually(lambda: o.data["duplicate_fills"] == 1)
        assert o.data["cum_qty"] == D(1)
        assert o.state == "partially_filled"
    assert manager.counts["refused"] == 0


@pytest.mark.asyncio
async def test_a_duplicate_submit_status_is_applied(journal: Journal, venue: FakeVenue, client: VenueClient) -> None:
    manager = OrderManager(journal, client)
    venue.auto_ack = False
    async with asyncio.timeout(TIMEOUT), running(manager):
        o = await place(manager)
        known = snapshot(o.entity_id, "partially_filled", fills=[fill("F1", "0.4", client_order_id=o.entity_id)])
        await venue.send(OrderStatus(client_order_id=o.entity_id, order=known, duplicate=True))
        await eventually(lambda: o.state == "partially_filled")
    assert triggers(journal.path, o.entity_id)[2:] == [
        ("accept", "accepted", "duplicate"),
        ("fill", "partially_filled", "duplicate"),
    ]


# -- connection loss and resolution ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_lost_connection_pauses_entry_and_reconnect_resolves_in_flight(
    journal: Journal, venue: FakeVenue, client: VenueClient, sleep: RecordingSleep
) -> None:
    manager = OrderManager(journal, client)
    venue.auto_ack = False
    async with asyncio.timeout(TIMEOUT), running(manager) as task:
        known = await place(manager, qty="3")
        lost = await place(manager)
        assert known.state == lost.state == "pending_new"
        for _ in range(2):  # else the drop may discard them unread: then the venue knows neither
            await venue.expect(NewOrder)
        venue.statuses[known.entity_id] = snapshot(
            known.entity_id,
            "partially_filled",
            qty="3",
            fills=[fill("F1", "1", seq=1), fill("F2", "0.5", "99", seq=2)],
        )
        venue.statuses[lost.entity_id] = None
        # the venue goes away; reconnecting waits at the first backoff sleep
        sleep.gate.clear()
        venue.hello_error, venue.hello_errors_left = "internal", 1
        venue.drop()
        await eventually(lambda: len(sleep.delays) == 1)
        assert manager.paused
        assert manager.entry_block() == "venue session down"
        with pytest.raises(OrderEntryPaused, match=r"^order entry paused: venue session down$") as paused:
            await place(manager)
        assert paused.value.reason == "venue session down"
        with pytest.raises(OrderEntryPaused):
            await manager.cancel(known.entity_id)
        # back, but status answers held: still paused while resolving
        venue.hold_requests = True
        sleep.gate.set()
        await venue.expect(OrderStatusRequest)
        assert client.connected
        assert manager.entry_block() == "reconciling with the venue"
        with pytest.raises(OrderEntryPaused, match=r"^order entry paused: reconciling with the venue$"):
            await place(manager)
        # dropped again mid-resolution: the resolver starts over on the next session
        venue.hold_requests = False
        venue.drop()
        await eventually(lambda: client.generation == 3 and not manager.paused)
        assert not task.done()
        assert known.state == "partially_filled"
        assert known.data["cum_qty"] == D("1.5")
        assert lost.state == "pending_new"
        assert venue.count(NewOrder) == 2  # the unknown order was not resent
        after = await place(manager)  # entry works again
        assert after.state == "pending_new"
    assert triggers(journal.path, known.entity_id) == [
        ("create", "new", None),
        ("submit", "pending_new", None),
        ("accept", "accepted", "status"),
        ("fill", "partially_filled", "status"),
        ("fill", "partially_filled", "status"),
    ]
    assert [t[0] for t in triggers(journal.path, lost.entity_id)] == ["create", "submit"]


@pytest.mark.asyncio
async def test_run_ends_with_reconnect_failed_when_the_venue_stays_down(
    journal: Journal, venue: FakeVenue, client: VenueClient
) -> None:
    manager = OrderManager(journal, client)
    async with asyncio.timeout(TIMEOUT), running(manager) as task:
        await venue.stop()
        await asyncio.wait([task])
        failed = task.exception()
        assert isinstance(failed, ExceptionGroup)
        assert failed.subgroup(ReconnectFailed) is not None


# -- restarts ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_client_order_ids_are_unique_across_runs(db_path: str, venue: FakeVenue, sleep: RecordingSleep) -> None:
    ids: list[str] = []
    live: list[str] = []
    for run in range(2):
        journal = open_journal(db_path)
        client = VenueClient(venue.url, ping_interval=None, sleep=sleep)
        try:
            manager = OrderManager.resume(journal, client)
            assert sorted(manager.orders) == live
            async with asyncio.timeout(TIMEOUT), running(manager):
                for _ in range(2):
                    ids.append((await place(manager)).entity_id)
                orders = list(manager.orders.values())
                await eventually(lambda: all(o.state == "accepted" for o in orders))  # noqa: B023
            # a second manager in the same run skips the ids the journal holds
            again = OrderManager(journal, client)
            assert again._next_id() == f"o{journal.journal_id}-{journal.run_id}-000003"
            live = sorted(manager.orders)
            assert journal.run_id == run + 1
        finally:
            await client.close()
            journal.close()
    assert len(set(ids)) == 4
    journal_id = ids[0][1:9]
    assert [i.removeprefix(f"o{journal_id}-") for i in ids] == ["1-000001", "1-000002", "2-000001", "2-000002"]
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


def test_a_journal_without_a_run_is_refused(db_path: str) -> None:
    journal = Journal.open(db_path, start_run=False)
    try:
        with pytest.raises(NoRun, match=r"^the journal has no run: open it with start_run=True$") as refused:
            OrderManager(journal, StubClient())
        assert isinstance(refused.value, OrderError)
        assert isinstance(refused.value, TradekernelError)
        assert isinstance(refused.value, ValueError)
    finally:
        journal.close()


# -- resolution table, with a stub client ----------------------------------------------------------


class StubClient:
    """An ``ExecutionClient`` without a venue: status answers from a dict, sends recorded."""

    def __init__(self) -> None:
        self.connected = True
        self.generation = 1
        self.statuses: dict[str, OrderSnapshot | None] = {}
        self.sent: list[Any] = []
        self.fail_sends = False
        self.queue: asyncio.Queue[Report] = asyncio.Queue()

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def wait_connected(self, after: int = 0) -> int:
        return self.generation

    async def _send(self, message: Any) -> None:
        if self.fail_sends:
            raise VenueUnavailable("stub is down")
        self.sent.append(message)

    async def send_new(self, order: NewOrder) -> None:
        await self._send(order)

    async def send_cancel(self, client_order_id: str) -> None:
        await self._send(("cancel", client_order_id))

    async def send_replace(self, client_order_id: str, qty: Decimal | None, price: Decimal | None) -> None:
        await self._send(("replace", client_order_id, qty, price))

    async def order_status(self, client_order_id: str, timeout: float) -> OrderSnapshot | None:
        return self.statuses.get(client_order_id)

    async def open_orders(self, timeout: float) -> list[OrderSnapshot]:
        return []

    async def fills_since(self, after: int, timeout: float) -> list[Fill]:
        return []

    async def next_reports(self, max_batch: int = 256) -> list[Report]:
        return [await self.queue.get()]

    async def reports(self) -> AsyncIterator[Report]:  # pragma: no cover - not used by the manager
        while True:
            yield await self.queue.get()


async def stub_manager(journal: Journal) -> tuple[OrderManager, StubClient]:
    stub = StubClient()
    assert isinstance(stub, ExecutionClient)
    manager = OrderManager(journal, stub)
    await manager.resolve_in_flight()
    return manager, stub


async def accepted(manager: OrderManager, qty: str = "2") -> Entity:
    order = await place(manager, qty=qty)
    manager.apply_reports([execution(order.entity_id, "new", "new", qty=qty)])
    assert order.state == "accepted"
    return order


@pytest.mark.asyncio
async def test_resolution_brings_each_order_to_the_venue_state(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, stub = await stub_manager(journal)
        rejected = await place(manager)
        canceled = await accepted(manager)
        expired = await accepted(manager)
        cancel_refused = await accepted(manager)
        await manager.cancel(cancel_refused.entity_id)
        replaced = await accepted(manager)
        await manager.replace(replaced.entity_id, qty=D(4))
        replace_refused = await accepted(manager)
        await manager.replace(replace_refused.entity_id, price=D(90))
        restated = await accepted(manager)
        filled_short = await accepted(manager)
        working_unknown = await accepted(manager)
        cancel_before_ack = await place(manager)
        await manager.cancel(cancel_before_ack.entity_id)
        s = stub.statuses
        s[rejected.entity_id] = snapshot(rejected.entity_id, "rejected", reason="halted", venue_order_id="")
        s[canceled.entity_id] = snapshot(canceled.entity_id, "canceled", qty="2", reason="unsolicited")
        s[expired.entity_id] = snapshot(expired.entity_id, "expired", qty="2")
        s[cancel_refused.entity_id] = snapshot(cancel_refused.entity_id, "new", qty="2")
        s[replaced.entity_id] = snapshot(replaced.entity_id, "new", qty="4")
        s[replace_refused.entity_id] = snapshot(replace_refused.entity_id, "new", qty="2")
        s[restated.entity_id] = snapshot(restated.entity_id, "new", qty="1.5")
        s[filled_short.entity_id] = snapshot(filled_short.entity_id, "filled", qty="2", fills=[fill("G1", "1")])
        s[working_unknown.entity_id] = None
        s[cancel_before_ack.entity_id] = None
        stub.generation = 2
        assert manager.paused
        resolution = await manager.resolve_in_flight()
    assert entry_open(manager)
    assert resolution.checked == 10
    assert resolution.unknown_pending == [cancel_before_ack.entity_id]
    assert (rejected.state, rejected.data["reason"]) == ("rejected", "halted")
    assert (canceled.state, canceled.data["reason"]) == ("canceled", "unsolicited")
    assert expired.state == "expired"
    assert cancel_refused.state == "accepted"
    assert (replaced.state, replaced.data["qty"]) == ("accepted", D(4))
    assert (replace_refused.state, replace_refused.data["price"]) == ("accepted", D(100))
    assert (restated.state, restated.data["qty"]) == ("accepted", D("1.5"))
    assert (filled_short.state, filled_short.data["cum_qty"]) == ("partially_filled", D(1))
    assert working_unknown.state == "accepted"
    assert cancel_before_ack.state == "pending_cancel"
    assert manager.counts["status_mismatch"] == 2
    assert all(t.data["source"] == "status" for t in resolution.fired)
    assert stub.sent.count(("cancel", cancel_before_ack.entity_id)) == 1  # never resent


@pytest.mark.asyncio
async def test_resolution_stops_at_a_refused_status(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, stub = await stub_manager(journal)
        bad_ack = await place(manager)
        overfilled = await accepted(manager, qty="1")
        stub.statuses[bad_ack.entity_id] = snapshot(bad_ack.entity_id, "new", venue_order_id="V1")
        stub.statuses[overfilled.entity_id] = snapshot(overfilled.entity_id, "filled", fills=[fill("H1", "5")])
        done = await accepted(manager, qty="2")
        manager.apply_reports([execution(done.entity_id, "trade", "partially_filled", qty="2", fill=fill("K1", "1"))])
        stub.statuses[done.entity_id] = snapshot(
            done.entity_id, "filled", qty="2", fills=[fill("K1", "1", seq=1), fill("K2", "1", seq=2)]
        )
        resolution = await manager.resolve_in_flight()
    assert (done.state, done.data["trade_ids"], done.data["duplicate_fills"]) == ("filled", ["K1", "K2"], 0)
    assert bad_ack.state == "accepted"
    assert overfilled.state == "accepted"
    assert [a.kind for a in resolution.anomalies] == ["refused"]


@pytest.mark.asyncio
async def test_a_failed_send_leaves_the_order_pending(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, stub = await stub_manager(journal)
        working = await accepted(manager)
        stub.fail_sends = True
        with pytest.raises(OrderNotSent) as failed:
            await place(manager)
        assert failed.value.order.state == "pending_new"
        assert failed.value.order.entity_id in manager.unsent
        with pytest.raises(OrderNotSent):
            await manager.cancel(working.entity_id)
        assert working.state == "pending_cancel"
        with pytest.raises(InvalidTransition):
            await manager.replace(working.entity_id, qty=D(3))


@pytest.mark.asyncio
async def test_a_failing_listener_does_not_stop_the_pump(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, stub = await stub_manager(journal)

        def broken(order: Entity, transition: Any) -> None:
            raise RuntimeError("listener bug")

        manager.listeners.append(broken)
        order = await place(manager)
        task = asyncio.create_task(manager.process_reports())
        try:
            await stub.queue.put(execution(order.entity_id, "new", "new"))
            await eventually(lambda: order.state == "accepted")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        replaced = await accepted(manager)
        stub.fail_sends = True
        with pytest.raises(OrderNotSent):
            await manager.replace(replaced.entity_id, price=D(99))
        assert replaced.state == "pending_replace"


@pytest.mark.asyncio
async def test_an_order_finished_while_its_status_was_asked_is_left_alone(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, stub = await stub_manager(journal)
        order = await accepted(manager)
        asked = stub.order_status

        async def answer_after_a_cancel(client_order_id: str, timeout: float) -> OrderSnapshot | None:
            manager.apply_reports([execution(client_order_id, "canceled", "canceled", qty="2")])
            return await asked(client_order_id, timeout)

        stub.order_status = answer_after_a_cancel  # type: ignore[method-assign]
        stub.statuses[order.entity_id] = None
        resolution = await manager.resolve_in_flight()
    assert order.state == "canceled"
    assert resolution.checked == 1
    assert resolution.anomalies == []


def test_a_new_order_id_costs_no_journal_lookup(journal: Journal) -> None:
    """The run's id namespace is claimed in the journal: the id check and the create's own check
    answer from memory, and an id the journal holds is still skipped."""
    manager = OrderManager(journal, StubClient())
    conn = journal._conn
    assert conn is not None
    lookups: list[str] = []
    conn.set_trace_callback(lambda sql: lookups.append(sql) if "entities WHERE" in sql else None)
    terms = OrderTerms("BTCUSDT", "buy", D("1"), D("100"))
    first, second = (manager.deny(terms, reason="test").entity_id for _ in range(2))
    assert [first, second] == [f"o{journal.journal_id}-{journal.run_id}-00000{n}" for n in (1, 2)]
    assert lookups == []
    again = OrderManager(journal, StubClient())  # a second counter in the same run: ids below the mark
    assert again._next_id() == f"o{journal.journal_id}-{journal.run_id}-000003"
    assert len(lookups) == 2  # 000001 and 000002, looked up and skipped; 000003 is above the mark


@pytest.mark.parametrize("prefix", ["bad prefix", "o" * 20])  # a space; 20 + 8 + "-1-000001" = 37 characters
def test_a_prefix_that_makes_an_invalid_venue_id_is_refused(journal: Journal, prefix: str) -> None:
    manager = OrderManager(journal, StubClient(), prefix=prefix)
    with pytest.raises(OrderError, match=r"is not a valid venue id .* shorten the prefix"):
        manager.deny(OrderTerms("BTCUSDT", "buy", D("1"), D("100")), reason="test")


def test_the_longest_valid_prefix_still_makes_ids(journal: Journal) -> None:
    manager = OrderManager(journal, StubClient(), prefix="o" * 19)  # 19 + 8 + "-1-000001" = 36 characters
    order = manager.deny(OrderTerms("BTCUSDT", "buy", D("1"), D("100")), reason="test")
    assert order.entity_id == f"{'o' * 19}{journal.journal_id}-1-000001"
