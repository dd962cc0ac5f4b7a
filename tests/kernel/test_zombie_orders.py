"""Zombie orders (issue 14 item 6): the venue no longer knows an order the journal holds as working.

A cancel or replace answered ``too late``/``unknown order`` is settled by one status query (filled,
canceled, or ``lost``), never by retrying the request; while it is unresolved a new request for the
order is refused (``OrderUnresolved``) and nothing is sent. An unsolicited cancel is journaled as
such. Against the real paper venue on 127.0.0.1 (restarted without the order, as after losing its
store) and, for the states in between, a stub client whose answers the test releases.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from kernel.execution import VenueClient, VenueTimeout, VenueUnavailable
from kernel.feed.events import QuoteEvent
from kernel.order_resume import settle_doubts_forever
from kernel.orders import OrderEnded, OrderManager, OrderUnresolved
from kernel.paper_protocol import OrderSnapshot
from kernel.strategy import Context, Intent, MarketEvent, Place, Strategy
from kernel.testing import KernelHarness
from kernel.venue.server import PaperVenue, VenueConfig
from machines import Entity
from machines.order_terms import OrderTerms
from storage import Journal
from storage.audit import AuditReader
from tests.kernel.test_execution import execution, fill, snapshot
from tests.kernel.test_orders import StubClient
from tests.poll import eventually

pytestmark = pytest.mark.asyncio
TIMEOUT = 10.0
LOST = "lost: the venue no longer knows the order"


def timeline(path: str, entity: str) -> list[tuple[str, str, dict[str, Any]]]:
    with AuditReader(path) as reader:
        return [(t["trigger"], t["dest"], t["data"]) for t in reader.timeline(entity, machine="order")]


class CountingClient(VenueClient):
    """The real venue client, counting what it asks and sends per order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.status_queries: list[str] = []
        self.replaces: list[str] = []
        self.cancels: list[str] = []

    async def order_status(self, client_order_id: str, timeout: float = 5.0) -> OrderSnapshot | None:
        self.status_queries.append(client_order_id)
        return await super().order_status(client_order_id, timeout)

    async def send_replace(self, client_order_id: str, qty: D | None, price: D | None) -> None:
        self.replaces.append(client_order_id)
        await super().send_replace(client_order_id, qty, price)

    async def send_cancel(self, client_order_id: str) -> None:
        self.cancels.append(client_order_id)
        await super().send_cancel(client_order_id)


async def restart_without_orders(venue: PaperVenue, tmp_path: Path, name: str) -> PaperVenue:
    """The venue restarts on the same port with an empty store: every order it held is gone."""
    port = venue.port
    await venue.stop()
    fresh = PaperVenue(str(tmp_path / name), VenueConfig(instruments=("BTCUSDT",), autoplay=False))
    await fresh.start("127.0.0.1", port)
    return fresh


@contextlib.asynccontextmanager
async def venue_at(tmp_path: Path) -> AsyncIterator[list[PaperVenue]]:
    """A paper venue in a one-item list (a test may replace it with a restarted one)."""
    venues = [PaperVenue(str(tmp_path / "venue.db"), VenueConfig(instruments=("BTCUSDT",), autoplay=False))]
    await venues[0].start()
    try:
        yield venues
    finally:
        await venues[-1].stop()


@contextlib.asynccontextmanager
async def running(journal: Journal, url: str) -> AsyncIterator[OrderManager]:
    client = CountingClient(url, backoff=0.01, jitter=0.0, attempts=1000, ping_interval=None)
    await client.connect()
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


async def test_a_replace_of_an_order_the_restarted_venue_lost_resolves_it_as_lost_with_one_status_query(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "k.db")
    journal = Journal.open(path, durability="normal")
    try:
        async with venue_at(tmp_path) as venues, running(journal, venues[0].url) as manager:
            client = manager.client
            assert isinstance(client, CountingClient)
            order = await manager.place(OrderTerms("BTCUSDT", "buy", D(1), D(100)))
            await eventually(lambda: order.state == "accepted", "the ack", TIMEOUT)
            generation = client.generation
            venues.append(await restart_without_orders(venues[0], tmp_path, "venue2.db"))
            await eventually(lambda: client.generation > generation and not manager.paused, "the new session", TIMEOUT)
            assert order.state == "accepted"  # resolution on reconnect leaves it (an anomaly): a zombie
            asked_on_reconnect = len(client.status_queries)
            await manager.replace(order.entity_id, price=D(99))
            await eventually(lambda: not order.live, "the zombie to be resolved", TIMEOUT)
            queries = client.status_queries[asked_on_reconnect:]
            with pytest.raises(OrderEnded, match=r"has ended \(expired\)"):  # done: nothing more to replace
                await manager.replace(order.entity_id, price=D(98))
    finally:
        journal.close()
    assert (order.state, order.data["reason"]) == ("expired", LOST)
    assert queries == [order.entity_id]  # one status query, no retries
    assert client.replaces == [order.entity_id]  # the replace was sent once, never again
    steps = timeline(path, order.entity_id)
    assert [(t, d) for t, d, _ in steps] == [
        ("create", "new"),
        ("submit", "pending_new"),
        ("accept", "accepted"),
        ("request_replace", "pending_replace"),
        ("replace_reject", "pending_replace"),
        ("lost", "expired"),
    ]
    assert (steps[4][2]["reason"], steps[4][2]["in_doubt"]) == ("unknown order", True)
    assert steps[5][2]["source"] == "status"
    assert "no such order" in steps[5][2]["evidence"]
    with AuditReader(path) as reader:
        assert reader.verify().ok


async def test_an_unsolicited_cancel_is_applied_and_journaled_as_such(tmp_path: Path) -> None:
    path = str(tmp_path / "k.db")
    journal = Journal.open(path, durability="normal")
    try:
        async with venue_at(tmp_path) as venues, running(journal, venues[0].url) as manager:
            order = await manager.place(OrderTerms("BTCUSDT", "buy", D(1), D(100)))
            await eventually(lambda: order.state == "accepted", "the ack", TIMEOUT)
            await venues[0].unsolicited_cancel(order.entity_id, reason="risk check at the venue")
            await eventually(lambda: order.state == "canceled", "the cancel", TIMEOUT)
            requested = await manager.place(OrderTerms("BTCUSDT", "buy", D(1), D(100)))
            await eventually(lambda: requested.state == "accepted", "the ack", TIMEOUT)
            await manager.cancel(requested.entity_id)
            await eventually(lambda: requested.state == "canceled", "the requested cancel", TIMEOUT)
    finally:
        journal.close()
    trigger, dest, data = timeline(path, order.entity_id)[-1]
    assert (trigger, dest, data) == ("cancel", "canceled", {"reason": "risk check at the venue", "unsolicited": True})
    trigger, dest, data = timeline(path, requested.entity_id)[-1]
    assert (trigger, dest, data) == ("cancel", "canceled", {"reason": "canceled by client"})


# -- a real kernel: stop is prompt when the venue lost an order ---------------------------------------


class OneBid(Strategy):
    """Places one bid below the first quote; nothing else."""

    placed = False

    def on_market(self, event: MarketEvent, ctx: Context) -> Iterable[Intent]:
        if isinstance(event, QuoteEvent) and not self.placed:
            self.placed = True
            return [Place("BTCUSDT", "buy", D("0.001"), event.bid - 1)]
        return []


async def test_stop_exits_promptly_when_the_venue_restarted_without_the_kernels_order(tmp_path: Path) -> None:
    timeout = 5.0
    kh = KernelHarness(OneBid(), tmp_path, timeout=timeout)
    async with kh:
        await kh.quote(D("100.00"), D("100.10"))
        (bid,) = kh.open_orders()
        assert bid.state == "accepted"
        assert kh.venue is not None
        port = kh.venue.port
        await kh.venue.stop()
        kh.venue = PaperVenue(
            str(tmp_path / "venue2.db"),
            VenueConfig(instruments=("BTCUSDT",), autoplay=False, heartbeat_s=0.5),
            clock=kh.clock,
        )
        await kh.venue.start("127.0.0.1", port)
        manager = kh.kernel.manager if kh.kernel is not None else None
        assert manager is not None
        generation = manager.client.generation
        await eventually(
            lambda: manager.client.generation > generation and not manager.paused, "the new session", timeout
        )
        started = time.monotonic()
        status = await kh.stop()
        took = time.monotonic() - started
    assert status == 0  # no order left open: the zombie was resolved, not waited for
    assert took < timeout / 2, f"stop took {took:.2f} s (stop timeout {timeout} s)"
    steps = timeline(kh.journal_path, bid.client_order_id)
    # the reconciliation of the new session found the venue without it: concluded there
    assert [(t, d) for t, d, _ in steps][-2:] == [("accept", "accepted"), ("lost", "expired")]
    assert steps[-1][2]["source"] == "reconciliation"


# -- in between: the order in doubt, with answers the test releases ------------------------------


class HeldStatus(StubClient):
    """A stub whose status answers wait until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.asked: list[str] = []

    async def order_status(self, client_order_id: str, timeout: float) -> OrderSnapshot | None:
        self.asked.append(client_order_id)
        if self.generation > 1:  # only the doubt's query waits, not the first resolution
            await self.release.wait()
        return self.statuses.get(client_order_id)


async def doubted(journal: Journal, answer: str, kind: str = "replace") -> tuple[OrderManager, HeldStatus, Entity]:
    """An acked order whose replace (or cancel) the venue answered as if it were gone."""
    stub = HeldStatus()
    manager = OrderManager(journal, stub)
    await manager.resolve_in_flight()
    stub.generation = 2
    manager._mark_resolved(2)
    order = await manager.place(OrderTerms("BTCUSDT", "buy", D(2), D(100)))
    manager.apply_reports([execution(order.entity_id, "new", "new", qty="2")])
    if kind == "replace":
        await manager.replace(order.entity_id, price=D(99))
        status = "rejected" if answer == "unknown order" else "filled"
        manager.apply_reports(
            [execution(order.entity_id, "replace_rejected", status, qty="2", reason=answer, venue_order_id="")]
        )
        assert order.state == "pending_replace"
    else:
        await manager.cancel(order.entity_id)
        manager.apply_reports([execution(order.entity_id, "cancel_rejected", "canceled", qty="2", reason=answer)])
        assert order.state == "pending_cancel"
    return manager, stub, order


async def resolving(manager: OrderManager) -> asyncio.Task[None]:
    return asyncio.create_task(
        settle_doubts_forever(
            manager.client, manager.reports, manager.commit, manager.status_timeout, manager.doubts,
            lambda: manager.retry_delay,
        )
    )  # fmt: skip


async def test_while_in_doubt_a_new_replace_or_cancel_is_refused_and_never_sent(db_path: str) -> None:
    journal = Journal.open(db_path, durability="normal")
    try:
        async with asyncio.timeout(TIMEOUT):
            manager, stub, order = await doubted(journal, "too late to replace")
            stub.statuses[order.entity_id] = snapshot(
                order.entity_id, "filled", qty="2", fills=[fill("Z1", "1.5", seq=1), fill("Z2", "0.5", seq=2)]
            )
            task = await resolving(manager)
            await eventually(lambda: stub.asked == [order.entity_id], "the status query", TIMEOUT)
            sent = list(stub.sent)
            for attempt in range(3):
                with pytest.raises(OrderUnresolved, match="too late to replace") as refused:
                    await manager.replace(order.entity_id, price=D(98 - attempt))
                assert refused.value.client_order_id == order.entity_id
            with pytest.raises(OrderUnresolved):
                await manager.cancel(order.entity_id)
            assert manager.journal_cancels([order.entity_id]) == []  # a halt skips it
            assert stub.sent == sent  # nothing sent while it is in doubt
            stub.release.set()
            await eventually(lambda: order.state == "filled", "the fills the venue reported", TIMEOUT)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        journal.close()
    assert (order.data["cum_qty"], order.data["trade_ids"]) == (D(2), ["Z1", "Z2"])
    assert manager.positions["BTCUSDT"].data["qty"] == D(2)
    assert stub.asked == [order.entity_id]
    assert manager.reports.in_doubt == {}
    assert [(t, d) for t, d, _ in timeline(db_path, order.entity_id)][-4:] == [
        ("request_replace", "pending_replace"),
        ("replace_reject", "pending_replace"),
        ("fill", "pending_replace"),
        ("fill", "filled"),
    ]


async def test_a_too_late_cancel_of_an_order_the_venue_canceled_settles_it_canceled(db_path: str) -> None:
    journal = Journal.open(db_path, durability="normal")
    try:
        async with asyncio.timeout(TIMEOUT):
            manager, stub, order = await doubted(journal, "too late to cancel", kind="cancel")
            stub.statuses[order.entity_id] = snapshot(order.entity_id, "canceled", qty="2", reason="self-trade")
            stub.release.set()
            await manager.resolve_doubts()
    finally:
        journal.close()
    assert (order.state, order.data["reason"]) == ("canceled", "self-trade")
    trigger, dest, data = timeline(db_path, order.entity_id)[-1]
    assert (trigger, dest, data) == ("cancel", "canceled", {"reason": "self-trade", "source": "status"})
    assert manager.reports.in_doubt == {}


async def test_a_status_query_the_venue_cannot_answer_is_asked_again_on_the_next_session(db_path: str) -> None:
    journal = Journal.open(db_path, durability="normal")
    try:
        async with asyncio.timeout(TIMEOUT):
            manager, stub, order = await doubted(journal, "unknown order")
            stub.release.set()
            answers: list[Any] = [VenueUnavailable("connection lost"), VenueTimeout("no answer"), None]
            sessions: list[int] = []

            async def flaky(client_order_id: str, timeout: float) -> OrderSnapshot | None:
                stub.asked.append(client_order_id)
                answer = answers.pop(0)
                if isinstance(answer, Exception):
                    raise answer
                return None

            async def next_session(after: int = 0) -> int:
                sessions.append(after)
                stub.generation = after + 1
                return stub.generation

            stub.order_status = flaky  # type: ignore[method-assign]
            stub.wait_connected = next_session  # type: ignore[method-assign]
            manager.retry_delay = 0.01
            task = await resolving(manager)
            manager.doubts.set()
            await eventually(lambda: not order.live, "the order to be concluded lost", TIMEOUT)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        journal.close()
    assert (order.state, order.data["reason"]) == ("expired", LOST)
    assert stub.asked == [order.entity_id] * 3
    assert sessions == [2]  # after the lost connection it waited for the next session, once
