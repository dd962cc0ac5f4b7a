"""Client order ids across journals (issue 14 item 7), against the real paper venue on 127.0.0.1.

A fresh journal trading on a venue account with history must never take the venue's existing
orders for its own: its ids carry the journal's own id, and a duplicate-submit answer is ours only
when its terms (instrument, side, qty, price) match the journaled order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import pytest_asyncio

from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.paper_protocol import MAX_CLIENT_ORDER_ID, NewOrder, valid_client_order_id
from kernel.venue.server import PaperVenue, VenueConfig
from machines import Entity
from machines.order_terms import OrderTerms
from storage import Journal
from storage.audit import AuditReader
from tests.poll import eventually

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
    client = VenueClient(venue.url, backoff=0.01, jitter=0.0, attempts=100, ping_interval=None)
    await client.connect()
    return client


async def someone_elses_order(venue: PaperVenue, client_order_id: str, side: str, qty: str, price: str) -> None:
    """Another kernel (another journal) on the same venue account placed this order."""
    other = await connected(venue)
    try:
        order = NewOrder(client_order_id=client_order_id, instrument="BTCUSDT", side=side, qty=D(qty), price=D(price))  # type: ignore[arg-type]
        await other.send_new(order)
        assert await other.order_status(client_order_id, timeout=TIMEOUT) is not None
    finally:
        await other.close()


@contextlib.asynccontextmanager
async def manager_on(journal: Journal, venue: PaperVenue) -> AsyncIterator[OrderManager]:
    client = await connected(venue)
    manager = OrderManager.resume(journal, client)
    task = asyncio.create_task(manager.run())
    try:
        await eventually(lambda: not manager.paused, "order entry to open", TIMEOUT)
        yield manager
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


async def place(manager: OrderManager, side: str = "buy", qty: str = "1", price: str = "100") -> Entity:
    return await manager.place(OrderTerms("BTCUSDT", side, D(qty), D(price)))  # type: ignore[arg-type]


def steps(path: str, entity: str) -> list[tuple[str, str]]:
    with AuditReader(path) as reader:
        return [(t["trigger"], t["dest"]) for t in reader.timeline(entity, machine="order")]


def anomalies(path: str, kind: str) -> list[str]:
    with AuditReader(path) as reader:
        return [a["reason"] for a in reader.anomalies() if a["kind"] == kind]


async def test_a_fresh_journal_never_takes_the_orders_of_a_venue_with_history(
    tmp_path: Path, venue: PaperVenue
) -> None:
    # The venue account already holds the orders a first run of any journal used to make (the old
    # scheme: o1-000001, ...), one of them partly filled, on the other side and at another price.
    await someone_elses_order(venue, "o1-000001", "sell", "2", "101")
    await someone_elses_order(venue, "o1-000002", "sell", "3", "102")
    await venue.push_trade("BTCUSDT", D("103"), D("0.5"), "buy")  # fills o1-000001 by 0.5
    path = str(tmp_path / "fresh.db")
    journal = Journal.open(path, durability="normal")
    try:
        async with manager_on(journal, venue) as manager:
            ours = [await place(manager), await place(manager)]
            await eventually(lambda: all(o.state != "pending_new" for o in ours), "the venue's answers", TIMEOUT)
            positions = dict(manager.positions)
        ids = [o.entity_id for o in ours]
        journal_id = journal.journal_id
    finally:
        journal.close()
    assert ids == [f"o{journal_id}-1-000001", f"o{journal_id}-1-000002"]
    assert all(valid_client_order_id(i) and len(i) <= MAX_CLIENT_ORDER_ID for i in ids)
    assert [(o.state, o.data["side"], o.data["cum_qty"]) for o in ours] == [("accepted", "buy", D(0))] * 2
    assert positions == {}  # nothing of the other orders booked as ours
    client = await connected(venue)
    try:
        theirs = [await client.order_status(i, timeout=TIMEOUT) for i in ("o1-000001", "o1-000002")]
    finally:
        await client.close()
    assert [(s.duplicate_submits, s.side, s.cum_qty) for s in theirs if s is not None] == [
        (0, "sell", D("0.5")),
        (0, "sell", D(0)),
    ]
    assert anomalies(path, "foreign_duplicate") == []


async def test_a_duplicate_answer_with_other_terms_rejects_our_order_and_books_none_of_its_fills(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path = str(tmp_path / "k.db")
    journal = Journal.open(path, durability="normal")
    try:
        taken = f"o{journal.journal_id}-{journal.run_id}-000001"  # the id our next order will get
        await someone_elses_order(venue, taken, "sell", "2", "101")
        await venue.push_trade("BTCUSDT", D("103"), D("0.5"), "buy")  # the other order fills 0.5
        async with manager_on(journal, venue) as manager:
            order = await place(manager, "buy", "1", "100")
            assert order.entity_id == taken
            await eventually(lambda: order.state == "rejected", "our order to be rejected", TIMEOUT)
            # the other order keeps trading; the venue reports to us (we asked about the id): refused
            await venue.push_trade("BTCUSDT", D("103"), D("0.5"), "buy")
            await eventually(lambda: manager.counts["refused"] >= 1, "the foreign fill to be refused", TIMEOUT)
            positions = dict(manager.positions)
    finally:
        journal.close()
    assert positions == {}
    assert (order.data["cum_qty"], order.data["trade_ids"]) == (D(0), [])
    assert order.data["reason"] == (
        "client order id already used at the venue by another order: "
        "venue has sell 2 BTCUSDT @ 101, journal has buy 1 BTCUSDT @ 100"
    )
    assert steps(path, taken) == [("create", "new"), ("submit", "pending_new"), ("reject", "rejected")]
    assert anomalies(path, "foreign_duplicate") == [f"{taken}: {order.data['reason']}"]
    with AuditReader(path) as reader:
        assert reader.verify().ok
        assert reader.fills() == []


async def test_a_duplicate_answer_with_our_terms_is_our_order_resent_after_a_crash(
    tmp_path: Path, venue: PaperVenue
) -> None:
    path = str(tmp_path / "k.db")
    journal = Journal.open(path, durability="normal")
    try:
        ours = f"o{journal.journal_id}-{journal.run_id}-000001"
        # our earlier process sent it (same terms) and died before journaling the answer
        await someone_elses_order(venue, ours, "buy", "1", "100")
        await venue.push_trade("BTCUSDT", D("99"), D("0.4"), "sell")  # fills it by 0.4
        async with manager_on(journal, venue) as manager:
            order = await place(manager, "buy", "1", "100")
            await eventually(lambda: order.state == "partially_filled", "our order's fills to apply", TIMEOUT)
            position = manager.positions["BTCUSDT"].data["qty"]
    finally:
        journal.close()
    assert (order.entity_id, order.data["cum_qty"], position) == (ours, D("0.4"), D("0.4"))
    assert anomalies(path, "foreign_duplicate") == []
    with AuditReader(path) as reader:
        assert reader.verify().ok
