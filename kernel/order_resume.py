"""Resolving in-flight orders after a (re)connection: ask the venue about every live order and fire
what brings the journal to its answer (data ``source: "status"``), never resending anything.

The order manager runs this once per venue session (unless a full reconciliation replaces it)
before order entry opens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kernel.execution import ExecutionClient
from kernel.order_reports import Anomaly, Change, ReportApplier
from machines import OrderState, Transition

log = logging.getLogger(__name__)
S = OrderState


@dataclass(slots=True)
class Resolution:
    """What ``resolve_in_flight`` found: orders checked, transitions fired, orders left pending."""

    generation: int
    checked: int = 0
    fired: list[Transition] = field(default_factory=list)
    unknown_pending: list[str] = field(default_factory=list)
    """``pending_new`` orders the venue never received: left as they are, not resent."""
    anomalies: list[Anomaly] = field(default_factory=list)


async def resolve_in_flight(
    client: ExecutionClient,
    reports: ReportApplier,
    commit: Callable[[list[Change]], None],
    status_timeout: float,
) -> Resolution:
    """Ask ``client`` for the status of every live order of ``reports.orders`` and apply each
    answer (``commit`` after each order), for the session current when it starts.

    A ``pending_new`` order the venue does not know is listed in ``unknown_pending`` and left as
    it is; any other order it does not know is a ``status_mismatch`` anomaly. Raises ``VenueError``
    when the venue cannot answer, ``JournalWriteError`` when a commit fails.
    """
    resolution = Resolution(client.generation)
    for order in [o for o in reports.orders.values() if o.live]:
        snapshot = await client.order_status(order.entity_id, status_timeout)
        resolution.checked += 1
        if not order.live:  # a report finished it while we waited
            continue
        if snapshot is None:
            if order.state == S.pending_new or order.data["prior_state"] == S.pending_new:
                resolution.unknown_pending.append(order.entity_id)
                log.warning("order %s is %s but unknown to the venue: not resent", order.entity_id, order.state)
            else:
                detail = f"the venue does not know an order we hold as {order.state}"
                reports.anomaly(Anomaly("status_mismatch", order.entity_id, detail), resolution.anomalies)
            continue
        changes = reports.apply_snapshot(snapshot, "status", resolution.anomalies)
        commit(changes)
        resolution.fired.extend(t for _, t in changes)
    return resolution


__all__ = ["Resolution", "resolve_in_flight"]
