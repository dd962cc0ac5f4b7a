"""Reconciliation: bring the journal to what the venue knows before any new order (issue 7).

``reconcile(manager)`` runs once per venue session before order entry opens:

1. a ``reconciliation`` entity is created (``recon-rRUN-N``) and committed: the audit shows that
   the kernel was reconciling, and why;
2. the venue's open orders are fetched in one request; every live order of the journal is matched
   with its open-order snapshot, or asked for by a status query when it is not open any more;
3. each difference is applied as ``reconcile_*`` transitions with ``source: "reconciliation"``:
   acks, fills, cancels, expiries, rejects, replaces the journal missed;
4. an order journaled as sent (``pending_new``) that the venue does not know is asked for again
   after ``grace_s`` (a frame still in flight from a killed process lands meanwhile); still
   unknown, it is resolved as ``reconcile_lost`` (rejected, with the evidence), never resent;
5. an order open at the venue that the journal never recorded is adopted (``create`` with
   ``origin: "external"`` + its acks and fills) and reported;
6. fills the venue made on orders the journal had already ended are applied (late fills); then
   the journal's positions (the ``position`` entities) are compared with the venue's fills;
7. ``complete`` records the report (counts and every difference) in one transition.

When the venue cannot answer, ``fail`` records why and ``ReconciliationFailed`` is raised: order
entry stays paused and the caller retries (``retry``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kernel.clock import monotonic_ms
from kernel.execution import VenueError
from kernel.faults import crash_point
from kernel.order_reports import Anomaly, fill_facts
from kernel.orders import OrderError, OrderManager
from kernel.paper_protocol import Fill as VenueFill
from kernel.paper_protocol import OrderSnapshot
from machines import ORDER, RECONCILIATION, Entity, Transition, TransitionRefused
from machines.order_reports import OrderFacts
from machines.positions import Fill, Positions, position_of
from machines.reconciliation import REPORT_COUNTS

log = logging.getLogger(__name__)

SOURCE = "reconciliation"
PREFIX = "reconcile_"


class ReconciliationFailed(OrderError, VenueError):
    """The venue could not answer; nothing was concluded (order entry stays paused)."""


@dataclass(slots=True)
class Report:
    """What one reconciliation found and did."""

    entity_id: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REPORT_COUNTS, 0))
    differences: list[dict[str, str]] = field(default_factory=list)
    fired: list[Transition] = field(default_factory=list)

    def differ(self, kind: str, client_order_id: str, detail: str) -> None:
        """Record one difference (also logged)."""
        self.differences.append({"kind": kind, "client_order_id": client_order_id, "detail": detail})
        log.warning("reconciliation: %s %s: %s", kind, client_order_id, detail)

    def as_json(self) -> dict[str, Any]:
        """The report as printed by ``tradekernel resume`` and journaled by ``complete``."""
        return {"entity": self.entity_id, "counts": dict(self.counts), "differences": list(self.differences)}


def _unacked(order: Entity) -> bool:
    return OrderFacts.of(order).unacked


class Reconciler:
    """Reconciles one ``OrderManager`` with its venue; ``await run(reason)`` per session."""

    def __init__(
        self,
        manager: OrderManager,
        *,
        grace_s: float = 1.0,
        timeout: float = 5.0,
        now_ms: Callable[[], int] = monotonic_ms,
        compare_positions: bool = True,
    ) -> None:
        self.manager = manager
        self.grace_s = grace_s
        self.timeout = timeout
        self.now_ms = now_ms
        self.compare_positions = compare_positions
        self.count = 0
        self.entity: Entity | None = None

    async def run(self, reason: str) -> Report:
        """Reconcile now; return the report. Raises ``ReconciliationFailed`` and journal errors."""
        manager, journal = self.manager, self.manager.journal
        if self.entity is not None and self.entity.state == "failed":
            journal.fire(RECONCILIATION, self.entity, "retry", now_ms=self.now_ms())
        else:
            self.count += 1
            entity_id = f"recon-r{journal.run_id}-{self.count}"
            self.entity, created = RECONCILIATION.create(entity_id, now_ms=self.now_ms(), reason=reason)
            journal.append(created, self.entity)
        journal.commit()
        crash_point("reconciling")
        report = Report(self.entity.entity_id)
        try:
            await self._reconcile(report)
        except VenueError as exc:
            journal.fire(
                RECONCILIATION, self.entity, "fail", now_ms=self.now_ms(), error=f"{type(exc).__name__}: {exc}"
            )
            manager.commit()
            raise ReconciliationFailed(str(exc)) from exc
        report.counts["transitions"] = len(report.fired)
        journal.fire(
            RECONCILIATION,
            self.entity,
            "complete",
            now_ms=self.now_ms(),
            counts=report.counts,
            differences=report.differences,
        )
        manager.commit()
        log.info(
            "reconciliation %s done: %s; %d difference(s)",
            report.entity_id,
            ", ".join(f"{k} {v}" for k, v in report.counts.items()),
            len(report.differences),
        )
        return report

    async def _reconcile(self, report: Report) -> None:
        manager, client = self.manager, self.manager.client
        open_orders = {s.client_order_id: s for s in await client.open_orders(self.timeout)}
        report.counts["venue_open"] = len(open_orders)
        unknown: list[Entity] = []
        for order in [o for o in manager.orders.values() if o.live]:
            snapshot = open_orders.get(order.entity_id)
            if snapshot is None:
                snapshot = await client.order_status(order.entity_id, self.timeout)
            report.counts["orders_checked"] += 1
            if not order.live:  # a live report finished it while we asked
                continue
            if snapshot is None:
                if _unacked(order):
                    unknown.append(order)
                else:
                    report.differ(
                        "unknown_at_venue", order.entity_id, f"journal says {order.state}; venue has no such order"
                    )
                    report.counts["anomalies"] += 1
                continue
            self._apply(snapshot, report)
        if unknown:
            await asyncio.sleep(self.grace_s)  # a frame sent just before a crash may still land
            for order in unknown:
                snapshot = await client.order_status(order.entity_id, self.timeout)
                if not order.live:
                    continue
                if snapshot is not None:
                    self._apply(snapshot, report)
                    continue
                self._lost(order, report, getattr(client, "session", None))
        for client_order_id, snapshot in open_orders.items():
            if client_order_id not in manager.orders and not manager.journal.has_entity(ORDER.name, client_order_id):
                self._adopt(snapshot, report)
        await self._compare_positions(report)

    def _apply(self, snapshot: OrderSnapshot, report: Report) -> None:
        manager = self.manager
        sink: list[Anomaly] = []
        changes = manager.reports.apply_snapshot(snapshot, SOURCE, sink, prefix=PREFIX)
        manager.commit(changes)
        for _, transition in changes:
            report.fired.append(transition)
            name = transition.trigger.removeprefix(PREFIX)
            if name == "fill":
                report.counts["fills_applied"] += 1
            report.differ(name, snapshot.client_order_id, _describe(transition))
        for anomaly in sink:
            report.counts["anomalies"] += 1
            report.differ(anomaly.kind, anomaly.client_order_id, anomaly.detail)

    def _lost(self, order: Entity, report: Report, session: str | None) -> None:
        manager = self.manager
        evidence = (
            f"venue session {session} answered twice, {self.grace_s:g} s apart, that it has no order "
            f"{order.entity_id}; journaled {order.state} by an earlier process"
        )
        try:
            transition = manager.journal.fire(
                ORDER,
                order,
                "reconcile_lost",
                source=SOURCE,
                reason="lost: the venue never received it",
                evidence=evidence,
            )
        except TransitionRefused as exc:  # pragma: no cover - _unacked() chose only states that allow it
            report.differ("refused", order.entity_id, str(exc))
            return
        manager.unsent.discard(order.entity_id)
        manager.commit([(order, transition)])
        report.fired.append(transition)
        report.counts["lost"] += 1
        report.differ("lost", order.entity_id, evidence)

    def _adopt(self, snapshot: OrderSnapshot, report: Report) -> None:
        manager = self.manager
        order, created = ORDER.create(
            snapshot.client_order_id,
            instrument=snapshot.instrument,
            side=snapshot.side,
            type=snapshot.order_type,
            tif=snapshot.tif,
            qty=snapshot.qty,
            price=snapshot.price,
            origin="external",
        )
        submitted = ORDER.fire(order, "submit", source=SOURCE)
        manager.orders[order.entity_id] = order
        manager.journal.append(created, order)
        manager.journal.append(submitted, order)
        manager.commit([(order, created), (order, submitted)])
        report.counts["adopted"] += 1
        report.differ(
            "adopted",
            order.entity_id,
            f"open at the venue, never journaled: {snapshot.side} {snapshot.qty} {snapshot.instrument} "
            f"@ {snapshot.price}",
        )
        self._apply(snapshot, report)

    def _apply_missing_fills(self, fills: list[VenueFill], report: Report) -> None:
        """Fills the venue reports for orders the journal already ended (a late fill the killed
        process never journaled): applied as ``reconcile_fill`` (the order stays done)."""
        manager = self.manager
        for fill in sorted(fills, key=lambda f: f.fill_seq):
            order = manager.orders.get(fill.client_order_id) or manager.journal.entity(ORDER, fill.client_order_id)
            if order is None or order.live or fill.trade_id in order.data["trade_ids"]:
                continue  # live orders were brought up to date from their snapshots
            manager.orders[order.entity_id] = order
            sink: list[Anomaly] = []
            data = fill_facts(fill).data()
            transition = manager.reports.fire(order, PREFIX + "fill", fill, sink, source=SOURCE, **data)
            if transition is not None:
                manager.commit([(order, transition)])
                report.fired.append(transition)
                report.counts["fills_applied"] += 1
                report.differ("fill", order.entity_id, _describe(transition))
            for anomaly in sink:
                report.counts["anomalies"] += 1
                report.differ(anomaly.kind, anomaly.client_order_id, anomaly.detail)

    async def _compare_positions(self, report: Report) -> None:
        if not self.compare_positions:
            return
        manager = self.manager
        fills = await manager.client.fills_since(0, self.timeout)
        ours = [
            f
            for f in fills
            if f.client_order_id in manager.orders or manager.journal.has_entity(ORDER.name, f.client_order_id)
        ]
        self._apply_missing_fills(ours, report)
        venue = Positions()
        for fill in ours:
            order = manager.orders.get(fill.client_order_id) or manager.journal.entity(ORDER, fill.client_order_id)
            if order is None:  # pragma: no cover - filtered above
                continue
            venue.apply(
                Fill(order.data["instrument"], order.data["side"], fill.qty, fill.price, fill.fee, fill.trade_id)
            )
        journal_positions = Positions.of(position_of(p) for p in manager.positions.values())
        instruments = set(venue.snapshot()) | set(journal_positions.snapshot())
        for instrument in sorted(instruments):
            ours_qty = journal_positions.get(instrument).qty
            venue_qty = venue.get(instrument).qty
            if ours_qty != venue_qty:
                report.counts["anomalies"] += 1
                report.differ(
                    "position_mismatch",
                    instrument,
                    f"journal {ours_qty}, venue fills {venue_qty} (difference {venue_qty - ours_qty})",
                )


def _describe(transition: Transition) -> str:
    """``source -> dest (key=value, ...)`` without the ``source`` tag: one line of the report."""
    terms = ", ".join(f"{k}={v}" for k, v in sorted(transition.data.items()) if k != "source" and v is not None)
    return f"{transition.source} -> {transition.dest}" + (f" ({terms})" if terms else "")


__all__ = ["Reconciler", "ReconciliationFailed", "Report"]
