"""Applying what the venue reports to the journal's orders (and their positions).

Execution reports and order snapshots arrive as the paper venue's wire types; they are turned into
the plain facts of ``machines.order_reports``, whose pure functions say which order triggers to
fire. ``ReportApplier`` only fires them (journaled, not committed: the order manager commits and
tells its listeners). A report for an unknown order, or one the order machine refuses, changes
nothing: it is logged, counted, journaled as an anomaly and kept in ``anomalies``.

A cancel or replace answered ``too late``/``unknown order`` puts the order in ``in_doubt`` (the
order manager then asks the venue for its status: ``kernel/order_resume.py``). A duplicate-submit
answer whose terms are not our order's is a ``foreign_duplicate`` anomaly: our order is rejected
and nothing of the other order is applied.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from kernel.execution import Report
from kernel.log_fields import transition_fields
from kernel.paper_protocol import Error, Execution, Fill, OrderSnapshot, OrderStatus
from machines import ORDER, POSITION, Entity, Transition, TransitionRefused
from machines.order_reports import (
    ExecutionFacts,
    FillFacts,
    OrderCommand,
    OrderFacts,
    SnapshotFacts,
    catch_up,
    duplicate_answer,
    execution_command,
    rate_limited_command,
    settle,
    unknown_at_venue,
)
from storage import Journal

log = logging.getLogger(__name__)
ZERO = Decimal(0)
Change = tuple[Entity, Transition]
"""An order (or position) and the transition that changed it, not yet committed."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A report that changed nothing: unknown order, or refused by the order machine."""

    kind: Literal["unknown_order", "refused", "status_mismatch", "foreign_duplicate"]
    client_order_id: str
    detail: str
    report: Report | OrderSnapshot | Fill | None = None


def fill_facts(fill: Fill) -> FillFacts:
    """A venue fill as ``machines.order_reports`` reads it."""
    return FillFacts(fill.trade_id, fill.qty, fill.price, fill.fee, fill.fill_seq, fill.ts_ms, fill.liquidity)


def execution_facts(report: Execution) -> ExecutionFacts:
    """An execution report as ``machines.order_reports`` reads it."""
    fill = None if report.fill is None else fill_facts(report.fill)
    return ExecutionFacts(
        report.exec, report.venue_order_id, report.qty, report.price, fill, report.reason, report.status
    )


def snapshot_facts(snapshot: OrderSnapshot) -> SnapshotFacts:
    """An order snapshot as ``machines.order_reports`` reads it."""
    fills = tuple(fill_facts(fill) for fill in snapshot.fills)
    return SnapshotFacts(
        snapshot.status,
        snapshot.venue_order_id,
        snapshot.qty,
        snapshot.price,
        fills,
        snapshot.reason,
        snapshot.instrument,
        snapshot.side,
    )


class ReportApplier:
    """Fires the order triggers the venue's reports stand for, into the journal's buffer.

    ``orders`` and ``positions`` are the order manager's own dicts (shared, not copied). An order
    that is not in ``orders`` (it ended and left memory) is looked up in the journal.
    """

    def __init__(
        self, journal: Journal, orders: dict[str, Entity], positions: dict[str, Entity], *, max_anomalies: int
    ) -> None:
        self.journal = journal
        self.orders = orders
        self.positions = positions
        self.anomalies: deque[Anomaly] = deque(maxlen=max_anomalies)
        self.counts: dict[str, int] = {
            "reports": 0,
            "unknown_order": 0,
            "refused": 0,
            "status_mismatch": 0,
            "foreign_duplicate": 0,
        }
        self.in_doubt: dict[str, str] = {}
        """Orders whose cancel or replace the venue answered as done or unknown (``too late``,
        ``unknown order``), by client order id, with that answer: a status query settles each;
        until then no new request is made for them."""
        self.on_rate_limited: Callable[[Error], None] | None = None
        """Told of each ``rate_limited`` answer (the order flow backs off: ``machines.risk_backoff``)."""
        self._last: dict[str, Transition] = {}
        """Each order's last transition fired here since listeners were last told."""
        self._before: dict[int, tuple[Transition, dict[str, Any]]] = {}
        """By ``id(transition)``: the order's data as of a transition it moved on from in the same batch."""

    def as_of(self, order: Entity, transition: Transition) -> Entity:
        """``order`` as of ``transition`` (its state ``transition.dest``, its data then): a batch
        may move an order on (``accept`` then ``fill``) before its listeners are told."""
        kept = self._before.get(id(transition))
        if kept is not None and kept[0] is transition:
            return Entity(order.machine, order.entity_id, transition.dest, kept[1])
        if order.state != transition.dest:  # moved on by a trigger fired elsewhere: its state at least
            return Entity(order.machine, order.entity_id, transition.dest, dict(order.data))
        return order

    def told(self) -> None:
        """The listeners were told of everything fired so far: forget the batch's snapshots."""
        self._last.clear()
        self._before.clear()

    def apply(self, reports: Iterable[Report]) -> list[Change]:
        """Fire what each report stands for (nothing is committed); return what fired."""
        changes: list[Change] = []
        for report in reports:
            self.counts["reports"] += 1
            if isinstance(report, Execution):
                changes.extend(self.apply_execution(report))
            elif isinstance(report, Error):
                changes.extend(self.apply_rate_limited(report))
            elif report.order is not None:
                changes.extend(self.apply_duplicate(report))
        return changes

    def anomaly(self, anomaly: Anomaly, sink: list[Anomaly] | None = None) -> None:
        """Count, keep, journal (with this loop turn's commit) and log a report that changed nothing."""
        self.counts[anomaly.kind] += 1
        self.anomalies.append(anomaly)
        # Journaled too, with what the venue sent as sample.
        self.journal.record_anomaly(
            "orders", anomaly.kind, f"{anomaly.client_order_id}: {anomaly.detail}", repr(anomaly.report)
        )
        if sink is not None:
            sink.append(anomaly)
        log.warning("order report anomaly (%s) for %s: %s", anomaly.kind, anomaly.client_order_id, anomaly.detail)

    def fire(
        self,
        order: Entity,
        trigger: str,
        report: Report | OrderSnapshot | Fill | None,
        sink: list[Anomaly] | None = None,
        **data: Any,
    ) -> Transition | None:
        """Fire ``trigger`` on ``order`` (a new fill also moves its position); ``None`` when the
        order machine refuses it (then a ``refused`` anomaly, added to ``sink`` too)."""
        applied_before = len(order.data["trade_ids"])
        previous = self._last.get(order.entity_id)
        if previous is not None and id(previous) not in self._before:  # moving on before it is told
            self._before[id(previous)] = (previous, dict(order.data))
        try:
            transition = self.journal.fire(ORDER, order, trigger, **data)
        except TransitionRefused as exc:
            self.anomaly(Anomaly("refused", order.entity_id, str(exc), report), sink)
            return None
        self._last[order.entity_id] = transition
        if len(order.data["trade_ids"]) > applied_before:  # a new fill (not a duplicate report)
            try:
                self.position_fill(order, transition)
            except TransitionRefused as exc:  # cannot happen for a fill the order machine took
                log.error("position of %s refused fill %s: %s", order.data["instrument"], order.entity_id, exc)
                self.journal.record_anomaly("positions", "refused", str(exc), repr(transition.data))
        return transition

    def position_fill(self, order: Entity, fill: Transition) -> Transition:
        """Fold one applied order fill into its instrument's ``position`` entity (same batch)."""
        instrument = order.data["instrument"]
        position = self.positions.get(instrument) or self.journal.entity(POSITION, instrument)
        if position is None:
            position, created = POSITION.create(instrument)
            self.journal.append(created, position)
        self.positions[instrument] = position
        data = fill.data
        return self.journal.fire(
            POSITION,
            position,
            "fill",
            side=order.data["side"],
            qty=data["qty"],
            price=data["price"],
            fee=data.get("fee") or ZERO,
            trade_id=data["trade_id"],
            client_order_id=order.entity_id,
        )

    def apply_execution(self, report: Execution) -> list[Change]:
        """Fire the trigger an execution report stands for (``machines.order_reports``)."""
        order = self.orders.get(report.client_order_id)
        if order is None:
            # ended (in an earlier run, or already left memory): the journal has it; it is not
            # kept in memory again (a late fill is applied and told like any other)
            order = self.journal.entity(ORDER, report.client_order_id)
        if order is None:
            self.anomaly(Anomaly("unknown_order", report.client_order_id, f"{report.exec} for no order", report))
            return []
        command = execution_command(execution_facts(report), OrderFacts.of(order))
        transition = self.fire(order, command.trigger, report, **command.data)
        if command.query_status and order.live:
            self.in_doubt[order.entity_id] = report.reason or report.exec
            log.warning("order %s: venue answered %r to our %s; asking for its status", order.entity_id,
                        report.reason, report.exec.removesuffix("_rejected"))  # fmt: skip
        if transition is not None and transition.data.get("unsolicited"):
            log.warning("order %s canceled by the venue, unsolicited: %s", order.entity_id, transition.data["reason"],
                        extra=transition_fields(transition, self.journal.run_id))  # fmt: skip
        return [] if transition is None else [(order, transition)]

    def apply_rate_limited(self, error: Error) -> list[Change]:
        """The venue refused an order request as ``rate_limited`` (nothing executed): fire what
        ``machines.order_reports.rate_limited_command`` says, then tell ``on_rate_limited``."""
        order = self.orders.get(error.client_order_id)
        command = None if order is None else rate_limited_command(OrderFacts.of(order), error.ref, error.message)
        transition = None
        if order is not None and command is not None:
            transition = self.fire(order, command.trigger, error, **command.data)
        log.warning("order %s: the venue refused our %s: %s", error.client_order_id, error.ref, error.message)
        if self.on_rate_limited is not None:
            self.on_rate_limited(error)
        return [] if order is None or transition is None else [(order, transition)]

    def apply_duplicate(self, answer: OrderStatus) -> list[Change]:
        """A duplicate-submit answer: applied as our order's snapshot only if its terms match
        ours (``machines.order_reports.duplicate_answer``); otherwise a ``foreign_duplicate``
        anomaly, and our order, if still unacknowledged, is rejected with the reason."""
        snapshot = answer.order
        order = self.orders.get(answer.client_order_id)
        if snapshot is None or order is None:
            return [] if snapshot is None else self.apply_snapshot(snapshot, "duplicate", [])
        decision = duplicate_answer(OrderFacts.of(order), snapshot_facts(snapshot))
        if decision.ours:
            return self.apply_snapshot(snapshot, "duplicate", [])
        self.anomaly(Anomaly("foreign_duplicate", order.entity_id, decision.mismatch or "", snapshot))
        changes: list[Change] = []
        for command in decision.commands:
            transition = self.fire(order, command.trigger, snapshot, source="duplicate", **command.data)
            if transition is not None:
                changes.append((order, transition))
        return changes

    def apply_unknown(self, order: Entity, answer: str) -> list[Change]:
        """A status query found no such order after the venue answered ``answer`` to our cancel
        or replace: fire ``lost`` (``machines.order_reports.unknown_at_venue``) if it applies."""
        command = unknown_at_venue(OrderFacts.of(order), answer)
        if command is None:
            return []
        transition = self.fire(order, command.trigger, None, source="status", **command.data)
        if transition is None:
            return []
        log.warning("order %s: %s (%s)", order.entity_id, command.data["reason"], command.data["evidence"])
        return [(order, transition)]

    def apply_snapshot(
        self, snapshot: OrderSnapshot, source: str, sink: list[Anomaly], prefix: str = ""
    ) -> list[Change]:
        """Fire what takes the order from its journaled state to the venue's ``snapshot``:
        ``catch_up``, then ``settle`` (``machines.order_reports``), each trigger with ``source``.

        ``prefix`` (``"reconcile_"``) names the reconciliation variants of the triggers. Anomalies
        are added to ``sink`` too. Nothing is committed.
        """
        order = self.orders.get(snapshot.client_order_id) or self.journal.entity(ORDER, snapshot.client_order_id)
        if order is None:
            self.anomaly(Anomaly("unknown_order", snapshot.client_order_id, f"{source} for no order", snapshot), sink)
            return []
        facts = snapshot_facts(snapshot)
        changes: list[Change] = []

        def fire(command: OrderCommand) -> bool:
            transition = self.fire(order, prefix + command.trigger, snapshot, sink, source=source, **command.data)
            if transition is not None:
                changes.append((order, transition))
            return transition is not None

        plan = catch_up(OrderFacts.of(order), facts)
        for command in plan.commands:
            if not fire(command) and command.required:
                return changes
        if not plan.settle:
            return changes
        # Only a status answer settles pending requests: a duplicate-submit answer may predate a
        # cancel or replace still in flight on this connection.
        settlement = settle(OrderFacts.of(order), facts, requests=source != "duplicate")
        for command in settlement.commands:
            fire(command)
        if settlement.mismatch is not None:
            self.anomaly(Anomaly("status_mismatch", order.entity_id, settlement.mismatch, snapshot), sink)
        return changes


__all__ = ["Anomaly", "Change", "ReportApplier", "execution_facts", "fill_facts", "snapshot_facts"]
