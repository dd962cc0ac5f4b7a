"""Paged reconciliation (issue 14 item 8) against the real paper venue on 127.0.0.1.

The venue's store is written directly (``storage.venue_store``: the rows a venue with history
holds), the venue is started on it with a small page, and a fresh manager reconciles as a
restarted kernel does. ``PaperVenue.on_request`` records every request the venue saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import pytest_asyncio

from kernel import paper_protocol as p
from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.reconcile import Reconciler, ReconciliationFailed, Report
from kernel.venue.server import PaperVenue, VenueConfig
from machines import ORDER, RECONCILIATION
from storage import Journal
from storage.audit import AuditReader
from storage.venue_store import Counters, StoredFill, StoredOrder, VenueStore

pytestmark = pytest.mark.asyncio
X = "BTCUSDT"
TIMEOUT = 10.0
PAGE = 5


def stored_order(
    coid: str, n: int, *, status: str = "new", cum: str = "0", qty: str = "1", price: str = "90"
) -> StoredOrder:
    return StoredOrder(
        client_order_id=coid,
        venue_order_id=f"V{n}",
        instrument=X,
        side="buy",
        order_type="limit",
        tif="gtc",
        qty=D(qty),
        price=D(price),
        status=status,
        cum_qty=D(cum),
        leaves_qty=D(0) if status in ("filled", "canceled") else D(qty) - D(cum),
        reason=None,
        duplicate_submits=0,
        created_ts_ms=1_000 + n,
        priority=n,
    )


def stored_fill(seq: int, coid: str, qty: str = "0.25", price: str = "100") -> StoredFill:
    return StoredFill(
        fill_seq=seq, trade_id=f"T{seq}", client_order_id=coid, qty=D(qty), price=D(price), fee=D(0), ts_ms=2_000 + seq
    )


def write_venue(path: str, orders: list[StoredOrder], fills: list[StoredFill]) -> None:
    """Rows straight into the venue's store (what it holds after trading), counters after them."""
    with VenueStore.open(path) as store:
        state = store.load()
        last_order = max([int(o.venue_order_id[1:]) for o in (*state.orders, *orders)], default=0)
        last_fill = max([f.fill_seq for f in fills], default=state.counters.next_fill_seq - 1)
        store.save_step(orders, fills, Counters(last_order + 1, last_fill + 1, last_order + 1))


def journal_orders(path: str, accepted: list[tuple[str, int]], canceled: list[tuple[str, int]] = ()) -> None:  # type: ignore[assignment]
    """A kernel journal that knows ``accepted`` as working and ``canceled`` as canceled (no fills)."""
    journal = Journal.open(path)
    for coid, n in [*accepted, *canceled]:
        order, created = ORDER.create(
            coid, instrument=X, side="buy", qty=D(1), price=D(90 if (coid, n) in accepted else 100)
        )
        journal.append(created, order)
        journal.fire(ORDER, order, "submit")
        journal.fire(ORDER, order, "accept", venue_order_id=f"V{n}")
        if (coid, n) in canceled:
            journal.fire(ORDER, order, "cancel")
    journal.close()


@pytest_asyncio.fixture
async def venue_path(tmp_path: Path) -> str:
    return str(tmp_path / "venue.db")


class Seen:
    """The paging requests the venue received: ``(after, limit)`` per kind."""

    def __init__(self, venue: PaperVenue) -> None:
        self.open_orders: list[tuple[str, int | None]] = []
        self.fills: list[tuple[int, int | None]] = []
        venue.on_request = self.record

    def record(self, message: p.ClientMessage) -> None:
        if isinstance(message, p.OpenOrdersRequest):
            self.open_orders.append((message.after, message.limit))
        elif isinstance(message, p.FillsSinceRequest):
            self.fills.append((message.after, message.limit))


async def started(venue_path: str) -> PaperVenue:
    venue = PaperVenue(venue_path, VenueConfig(instruments=(X,), autoplay=False))
    venue.page_max = PAGE
    await venue.start()
    return venue


@pytest_asyncio.fixture
async def history(venue_path: str, tmp_path: Path) -> AsyncIterator[str]:
    """Venue: k-01..k-12 working (the journal knows them), x-01..x-05 working (it does not), and
    c-1..c-8 canceled after 3 fills of 0.25 each (fill_seq 1..24) the journal never recorded."""
    orders = [stored_order(f"k-{n:02}", n) for n in range(1, 13)]
    orders += [stored_order(f"x-{n:02}", 100 + n) for n in range(1, 6)]
    orders += [stored_order(f"c-{n}", 200 + n, status="canceled", cum="0.75", price="100") for n in range(1, 9)]
    fills = [stored_fill(seq, f"c-{(seq - 1) // 3 + 1}") for seq in range(1, 25)]
    write_venue(venue_path, orders, fills)
    path = str(tmp_path / "k.db")
    journal_orders(path, [(f"k-{n:02}", n) for n in range(1, 13)], [(f"c-{n}", 200 + n) for n in range(1, 9)])
    yield path


async def reconcile(path: str, venue: PaperVenue, **options: object) -> tuple[Report, OrderManager]:
    journal = Journal.open(path)
    client = VenueClient(venue.url, backoff=0.01, jitter=0.0, attempts=100, **options)  # type: ignore[arg-type]
    await client.connect()
    try:
        manager = OrderManager.resume(journal, client)
        report = await Reconciler(manager, grace_s=0.05, timeout=TIMEOUT).run("test restart")
    finally:
        await client.close()
        journal.close()
    return report, manager


def triggers(path: str, entity: str) -> list[str]:
    with AuditReader(path) as reader:
        return [t["trigger"] for t in reader.timeline(entity, machine="order")]


def last_reconciliation(path: str) -> dict[str, object]:
    journal = Journal.open(path)
    try:
        done = journal.last_ended(RECONCILIATION, "done")
        assert done is not None
        return dict(done.data)
    finally:
        journal.close()


async def test_reconciliation_pages_through_open_orders_and_fills_and_applies_each_fill_once(
    history: str, venue_path: str
) -> None:
    venue = await started(venue_path)
    seen = Seen(venue)
    try:
        report, manager = await reconcile(history, venue)
    finally:
        await venue.stop()
    assert seen.open_orders == [("", None), ("k-05", None), ("k-10", None), ("x-03", None)]
    assert seen.fills == [(0, 1), (0, None), (5, None), (10, None), (15, None), (20, None)]
    assert (report.counts["venue_open"], report.counts["adopted"], report.counts["fills_applied"]) == (17, 5, 24)
    assert report.counts["orders_checked"] == 12
    assert not [d for d in report.differences if d["kind"] == "position_mismatch"]
    with AuditReader(history) as reader:  # filled orders have left the manager's memory
        journaled = {o["entity"]: o for o in reader.entities(machine="order")}
    for n in range(1, 9):
        assert triggers(history, f"c-{n}")[4:] == ["reconcile_fill"] * 3
        assert D(journaled[f"c-{n}"]["data"]["cum_qty"]) == D("0.75")
    assert manager.positions[X].data["qty"] == D(6)
    recorded = last_reconciliation(history)
    assert (recorded["fills_cursor"], recorded["venue_positions"]) == (24, {X: "6.00"})


async def test_a_restart_asks_only_for_the_fills_after_the_journaled_cursor(history: str, venue_path: str) -> None:
    venue = await started(venue_path)
    try:
        await reconcile(history, venue)
    finally:
        await venue.stop()
    # While the kernel was away: k-01 filled twice (still working), another journal's order once.
    write_venue(
        venue_path,
        [stored_order("k-01", 1, status="partially_filled", cum="0.5"), stored_order("other-1", 300, status="filled")],
        [stored_fill(25, "k-01"), stored_fill(26, "k-01"), stored_fill(27, "other-1", qty="1")],
    )
    venue = await started(venue_path)
    seen = Seen(venue)
    try:
        report, manager = await reconcile(history, venue)
    finally:
        await venue.stop()
    assert seen.fills == [(24, 1), (24, None)]
    assert report.counts["fills_applied"] == 2  # k-01's two, from its snapshot; nothing again
    assert triggers(history, "k-01")[3:] == ["reconcile_fill", "reconcile_fill"]
    assert all(triggers(history, f"c-{n}")[4:] == ["reconcile_fill"] * 3 for n in range(1, 9))
    assert manager.positions[X].data["qty"] == D("6.50")
    assert not [d for d in report.differences if d["kind"] == "position_mismatch"]
    recorded = last_reconciliation(history)
    assert (recorded["fills_cursor"], recorded["venue_positions"]) == (27, {X: "6.50"})


async def test_a_reconciliation_killed_midway_keeps_the_old_cursor_and_the_next_applies_the_rest_once(
    history: str, venue_path: str
) -> None:
    venue = await started(venue_path)
    seen = Seen(venue)
    dropped = asyncio.Event()

    def drop_on_third_fills_page(message: p.ClientMessage) -> None:
        seen.record(message)
        if isinstance(message, p.FillsSinceRequest) and message.after == 10 and not dropped.is_set():
            dropped.set()
            asyncio.get_running_loop().create_task(venue.disconnect_all())

    venue.on_request = drop_on_third_fills_page
    try:
        journal = Journal.open(history)
        client = VenueClient(venue.url, backoff=0.01, jitter=0.0, attempts=100)
        await client.connect()
        manager = OrderManager.resume(journal, client)
        with pytest.raises(ReconciliationFailed):
            await Reconciler(manager, grace_s=0.05, timeout=2.0).run("test restart")
        await client.close()
        journal.abandon()  # killed: what was committed stays
        applied = sum(triggers(history, f"c-{n}").count("reconcile_fill") for n in range(1, 9))
        assert applied == 10  # the first two pages
        venue.on_request = seen.record
        seen.fills.clear()
        report, manager = await reconcile(history, venue)
    finally:
        await venue.stop()
    assert seen.fills[:2] == [(0, 1), (0, None)]  # no cursor was journaled: from the start again
    assert report.counts["fills_applied"] == 14
    assert all(triggers(history, f"c-{n}")[4:] == ["reconcile_fill"] * 3 for n in range(1, 9))
    assert manager.positions[X].data["qty"] == D(6)
    assert last_reconciliation(history)["fills_cursor"] == 24


async def test_a_venue_holding_more_than_one_client_frame_reconciles_in_pages_and_the_kernel_trades(
    venue_path: str, tmp_path: Path
) -> None:
    # 300 working orders (~330 bytes each) and 700 fills (~110 bytes) of another journal's orders:
    # each list alone is larger than this client's 64 KiB frame, as 200k orders are for 32 MiB.
    orders = [stored_order(f"k-{n:04}", n) for n in range(1, 301)]
    orders += [stored_order(f"o-{n}", 1000 + n, status="filled", qty="7", price="100") for n in range(1, 101)]
    fills = [stored_fill(seq, f"o-{(seq - 1) // 7 + 1}", qty="1") for seq in range(1, 701)]
    write_venue(venue_path, orders, fills)
    path = str(tmp_path / "k.db")
    journal_orders(path, [(f"k-{n:04}", n) for n in range(1, 301)])
    venue = PaperVenue(venue_path, VenueConfig(instruments=(X,), autoplay=False))
    venue.page_max_bytes = 16 * 1024
    await venue.start()
    try:
        report, _ = await reconcile(path, venue, max_size=64 * 1024)
        assert (report.counts["venue_open"], report.counts["orders_checked"], report.counts["anomalies"]) == (
            300,
            300,
            0,
        )
        assert last_reconciliation(path)["fills_cursor"] == 700
        client = VenueClient(venue.url, max_size=64 * 1024)
        await client.connect()
        try:
            await client.send_new(
                p.NewOrder(client_order_id="after-1", instrument=X, side="buy", qty=D(1), price=D(90))
            )
            status = await client.order_status("after-1", timeout=TIMEOUT)
        finally:
            await client.close()
        assert status is not None
        assert status.status == "new"
    finally:
        await venue.stop()


async def test_a_venue_whose_fill_history_restarted_below_the_cursor_is_read_from_the_start(
    history: str, venue_path: str, tmp_path: Path
) -> None:
    venue = await started(venue_path)
    try:
        await reconcile(history, venue)  # cursor 24
    finally:
        await venue.stop()
    # A new venue file: k-01..k-12 working, k-01 filled twice (fill_seq 1, 2 again).
    fresh = str(tmp_path / "venue-2.db")
    orders = [stored_order(f"k-{n:02}", n) for n in range(2, 13)]
    orders.append(stored_order("k-01", 1, status="partially_filled", cum="0.5"))
    write_venue(fresh, orders, [stored_fill(1, "k-01"), stored_fill(2, "k-01")])
    venue = await started(fresh)
    seen = Seen(venue)
    try:
        report, _ = await reconcile(history, venue)
    finally:
        await venue.stop()
    assert seen.fills == [(24, 1), (0, None)]
    kinds = [d["kind"] for d in report.differences]
    assert "venue_fills_restarted" in kinds
    assert [d["detail"] for d in report.differences if d["kind"] == "position_mismatch"] == [
        "journal 6.50, venue fills 0.50 (difference -6.00)"
    ]
    recorded = last_reconciliation(history)
    assert (recorded["fills_cursor"], recorded["venue_positions"]) == (2, {X: "0.50"})
