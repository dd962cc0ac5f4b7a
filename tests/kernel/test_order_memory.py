"""Issue 14 item 10: orders that ended leave the order manager's memory (the journal keeps them).

And item 12c: a listener told after a group commit sees each order as of that transition.
Against the stub ``ExecutionClient`` of test_orders.py: reports are written by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import pytest

from kernel.metrics import KernelMetrics
from kernel.portfolio import Portfolio
from kernel.strategy import Context, OrderUpdate, Strategy
from kernel.strategy_host import StrategyHost
from machines import ORDER, Entity, Transition
from storage import Journal
from storage.audit import AuditReader
from tests.kernel.test_execution import TIMEOUT, execution, fill, snapshot
from tests.kernel.test_orders import accepted, open_journal, place, stub_manager

D = Decimal


@pytest.fixture
def journal(db_path: str) -> Iterator[Journal]:
    journal = open_journal(db_path)
    yield journal
    journal.close()
    with AuditReader(db_path) as reader:
        result = reader.verify()
    assert result.ok, result.reason


@pytest.mark.asyncio
async def test_orders_that_ended_leave_memory_and_only_live_ones_stay(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, _ = await stub_manager(journal)
        filled = [await accepted(manager, qty="1") for _ in range(3)]
        canceled = [await accepted(manager, qty="1") for _ in range(2)]
        rejected = await place(manager)
        working = await accepted(manager, qty="2")
        partly = await accepted(manager, qty="2")
        for n, order in enumerate(filled):
            report = execution(order.entity_id, "trade", "filled", cum_qty="1", fill=fill(f"T{n}", "1", seq=n + 1))
            manager.apply_reports([report])
        for order in canceled:
            await manager.cancel(order.entity_id)
        manager.apply_reports([execution(o.entity_id, "canceled", "canceled") for o in canceled])
        manager.apply_reports([execution(rejected.entity_id, "rejected", "rejected", reason="no")])
        manager.apply_reports(
            [execution(partly.entity_id, "trade", "partially_filled", qty="2", cum_qty="1", fill=fill("P", "1", seq=9))]
        )
    prefix = f"o{journal.journal_id}-{journal.run_id}-"
    assert sorted(manager.orders) == [prefix + "000007", prefix + "000008"]  # working, partly filled
    assert manager.orders[working.entity_id] is working
    assert manager.ended == {"filled": 3, "canceled": 2, "rejected": 1}
    assert manager.unsent == set()
    assert manager.anomalies == type(manager.anomalies)(maxlen=manager.anomalies.maxlen)  # none
    # the journal keeps them
    ended = journal.entity(ORDER, filled[0].entity_id)
    assert ended is not None
    assert ended.state == "filled"


@pytest.mark.asyncio
async def test_a_late_report_for_an_order_that_left_memory_is_an_anomaly_not_a_crash(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, _ = await stub_manager(journal)
        order = await accepted(manager, qty="1")
        manager.apply_reports([execution(order.entity_id, "trade", "filled", cum_qty="1", fill=fill("T1", "1"))])
        assert order.entity_id not in manager.orders
        # a late cancel confirmation and a late duplicate answer for the filled order
        fired = manager.apply_reports([execution(order.entity_id, "canceled", "canceled")])
        manager.reports.apply_snapshot(snapshot(order.entity_id, "filled", fills=[fill("T1", "1")]), "duplicate", [])
        manager.commit()
        # a report for an order nobody ever had
        manager.apply_reports([execution("nobody-1", "new", "new")])
    assert fired == []
    assert [(a.kind, a.client_order_id) for a in manager.anomalies] == [
        ("refused", order.entity_id),
        ("unknown_order", "nobody-1"),
    ]
    assert manager.counts["refused"] == 1
    assert manager.counts["unknown_order"] == 1
    assert order.entity_id not in manager.orders  # not brought back into memory
    assert manager.ended == {"filled": 1}


@pytest.mark.asyncio
async def test_a_late_fill_after_cancel_is_applied_to_the_journaled_order_and_told(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, _ = await stub_manager(journal)
        told: list[tuple[str, str, str]] = []
        manager.listeners.append(lambda o, t: told.append((o.entity_id, t.trigger, str(o.state))))
        order = await accepted(manager, qty="2")
        await manager.cancel(order.entity_id)
        manager.apply_reports([execution(order.entity_id, "canceled", "canceled", qty="2")])
        assert manager.orders == {}
        late_fill = fill("L", "1")
        late = execution(order.entity_id, "trade", "canceled", qty="2", cum_qty="1", leaves_qty="0", fill=late_fill)
        manager.apply_reports([late])
    assert told[-1] == (order.entity_id, "fill", "canceled")
    assert manager.orders == {}
    assert manager.positions["BTCUSDT"].data["qty"] == D(1)
    assert manager.ended == {"canceled": 1}
    journaled = journal.entity(ORDER, order.entity_id)
    assert journaled is not None
    assert journaled.data["cum_qty"] == D(1)
    assert journaled.data["late_fills"] == 1


@pytest.mark.asyncio
async def test_listeners_see_each_order_as_of_the_transition_they_are_told(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, _ = await stub_manager(journal)
        told: list[tuple[str, str, Decimal, Decimal]] = []

        def listen(order: Entity, transition: Transition) -> None:
            told.append((transition.trigger, str(order.state), order.data["cum_qty"], order.data["leaves_qty"]))

        manager.listeners.append(listen)
        order = await place(manager, qty="2")
        told.clear()
        # accept, a partial fill and the last fill arrive in one batch (one group commit)
        manager.apply_reports(
            [
                execution(order.entity_id, "new", "new", qty="2"),
                execution(order.entity_id, "trade", "partially_filled", qty="2", cum_qty="1", fill=fill("A", "1")),
                execution(order.entity_id, "trade", "filled", qty="2", cum_qty="2", fill=fill("B", "1", seq=2)),
            ]
        )
    assert told == [
        ("accept", "accepted", D(0), D(2)),
        ("fill", "partially_filled", D(1), D(1)),
        ("fill", "filled", D(2), D(0)),
    ]


class Recorder(Strategy):
    def __init__(self) -> None:
        super().__init__()
        self.updates: list[tuple[str, str, Decimal]] = []

    def on_order(self, update: OrderUpdate, ctx: Context) -> list[object]:
        self.updates.append((update.trigger, update.order.state, update.order.cum_qty))
        return []


@pytest.mark.asyncio
async def test_the_strategy_on_order_for_an_accept_sees_an_accepted_order(journal: Journal) -> None:
    async with asyncio.timeout(TIMEOUT):
        manager, _ = await stub_manager(journal)
        strategy = Recorder()
        host = StrategyHost(
            strategy,
            Portfolio(),
            KernelMetrics(),
            clock_ms=lambda: 0,
            entry_block=lambda: None,
            stopping=lambda: False,
            wake=lambda: None,
        )
        host.attach(manager)
        order = await place(manager, qty="1")
        manager.apply_reports(
            [
                execution(order.entity_id, "new", "new"),
                execution(order.entity_id, "trade", "filled", cum_qty="1", fill=fill("F", "1")),
            ]
        )
    assert strategy.updates == [("submit", "pending_new", D(0)), ("accept", "accepted", D(0)), ("fill", "filled", D(1))]
    assert host.portfolio.open_views == {}
