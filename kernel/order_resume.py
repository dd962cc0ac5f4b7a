"""Resolving in-flight orders after a (re)connection: ask the venue about every live order and fire
what brings the journal to its answer (data ``source: "status"``), never resending anything.

The order manager runs this once per venue session (unless a full reconciliation replaces it)
before order entry opens. ``resolve_doubts`` does the same for the orders the venue answered
``too late``/``unknown order`` (``ReportApplier.in_doubt``): one status query each, and the answer
applied (filled, canceled, expired; ``lost`` when the venue has no such order).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from kernel.execution import ExecutionClient, VenueError, VenueUnavailable
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
        if snapshot is None and order.entity_id in reports.in_doubt:
            changes = reports.apply_unknown(order, reports.in_doubt.pop(order.entity_id))
            commit(changes)
            resolution.fired.extend(t for _, t in changes)
            continue
        if snapshot is None:
            if order.state == S.pending_new or order.data["prior_state"] == S.pending_new:
                resolution.unknown_pending.append(order.entity_id)
                log.warning("order %s is %s but unknown to the venue: not resent", order.entity_id, order.state)
            else:
                detail = f"the venue does not know an order we hold as {order.state}"
                reports.anomaly(Anomaly("status_mismatch", order.entity_id, detail), resolution.anomalies)
            continue
        reports.in_doubt.pop(order.entity_id, None)
        changes = reports.apply_snapshot(snapshot, "status", resolution.anomalies)
        commit(changes)
        resolution.fired.extend(t for _, t in changes)
    return resolution


async def resolve_doubts(
    client: ExecutionClient,
    reports: ReportApplier,
    commit: Callable[[list[Change]], None],
    status_timeout: float,
) -> list[Transition]:
    """Ask ``client`` once for the status of each order in ``reports.in_doubt`` and apply the
    answer (data ``source: "status"``, ``commit`` after each order); return what fired.

    The order leaves ``in_doubt`` once its answer is applied. A venue that cannot answer raises
    ``VenueError`` and leaves the rest in doubt, for the next attempt.
    """
    fired: list[Transition] = []
    for client_order_id in list(reports.in_doubt):
        order = reports.orders.get(client_order_id)
        if order is None or not order.live:
            reports.in_doubt.pop(client_order_id, None)
            continue
        snapshot = await client.order_status(client_order_id, status_timeout)
        answer = reports.in_doubt.pop(client_order_id, None)
        if answer is None or not order.live:  # settled meanwhile (a report, a reconnect's resolution)
            continue
        if snapshot is None:
            changes = reports.apply_unknown(order, answer)
        else:
            changes = reports.apply_snapshot(snapshot, "status", [])
        commit(changes)
        fired.extend(t for _, t in changes)
        if order.state in (S.pending_cancel, S.pending_replace):
            log.warning("order %s still %s after the venue's status answer", client_order_id, order.state)
    return fired


__all__ = ["Resolution", "resolve_doubts", "resolve_in_flight"]


async def settle_doubts_forever(
    client: ExecutionClient,
    reports: ReportApplier,
    commit: Callable[[list[Change]], None],
    status_timeout: float,
    doubts: asyncio.Event,
    retry_delay: Callable[[], float],
) -> None:
    """``resolve_doubts`` whenever ``doubts`` is set, until cancelled: a lost connection waits for
    the next session, another venue error is retried after ``retry_delay()`` seconds."""
    while True:
        if not reports.in_doubt:
            doubts.clear()
            await doubts.wait()
        generation = client.generation
        try:
            await resolve_doubts(client, reports, commit, status_timeout)
        except VenueUnavailable as exc:  # asked again on the next session (so does its resolution)
            log.warning("status query of an order in doubt failed: %s; asking again when reconnected", exc)
            await client.wait_connected(after=generation)
        except VenueError as exc:
            delay = retry_delay()
            log.warning("status query of an order in doubt failed: %s; retrying in %g s", exc, delay)
            await asyncio.sleep(delay)
