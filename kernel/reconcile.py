"""Reconciliation: bring the journal to what the venue knows before any new order (issue 7).

``reconcile(manager)`` runs once per venue session before order entry opens:

1. a ``reconciliation`` entity is created (``recon-rRUN-N``) and committed: the audit shows that
   the kernel was reconciling, and why;
2. the venue's open orders are fetched page by page (``open_orders`` with a ``limit`` and an
   ``after`` cursor: bounded frames, bounded memory per page); every live order of the journal is
   matched with its open-order snapshot, or asked for by a status query when it is not open any more;
3. each difference is applied as ``reconcile_*`` transitions with ``source: "reconciliation"``:
   acks, fills, cancels, expiries, rejects, replaces the journal missed;
4. an order journaled as sent (``pending_new``) that the venue does not know is asked for again
   after ``grace_s`` (a frame still in flight from a killed process lands meanwhile); still
   unknown, it is resolved as ``reconcile_lost`` (rejected, with the evidence), never resent; an
   order the venue had acknowledged and no longer knows (it restarted without it) is concluded
   ``lost`` (expired, with the evidence) the same way, so it never lingers as a zombie;
5. an order open at the venue that the journal never recorded is adopted (``create`` with
   ``origin: "external"`` + its acks and fills) and reported;
6. the venue's fills after the fills cursor of the last completed reconciliation are paged
   through (``fills_since`` with a ``limit``): those on orders the journal had already ended are
   applied (late fills); then the journal's positions (the ``position`` entities) are compared with
   the venue's (the quantities journaled with that cursor plus the fills after it);
7. ``complete`` records the report (counts and every difference) and the new fills cursor in one
   transition.

The fills cursor is the venue's newest ``fill_seq`` read *before* the open orders were fetched:
every fill up to it was either in a live order's snapshot or applied from the pages, so the next
reconciliation asks only for fills after it. It is journaled by ``complete``, after the fills it
covers were committed: a process killed mid-reconciliation leaves the previous cursor, and the
next run pages from there again (a fill already journaled is recognised by its ``trade_id``). A
venue whose newest ``fill_seq`` is below the cursor restarted its history: it is paged from 0.

The venue's facts (3, 5, 6) are committed at ``VENUE_FACTS`` (``normal``); the reconciliation
entity, the conclusions ``lost`` (4) and ``complete`` at the journal's own (``full``). A power loss
drops only a tail of commits (the write-ahead log is replayed up to its first bad frame), so a
durable cursor always comes with the fills it covers.

When the venue cannot answer, ``fail`` records why and ``ReconciliationFailed`` is raised: order
entry stays paused and the caller retries (``retry``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar, runtime_checkable

from kernel.clock import monotonic_ms
from kernel.execution import VenueError, VenueRequestError
from kernel.faults import crash_point
from kernel.order_reports import Anomaly, fill_facts
from kernel.orders import VENUE_FACTS, OrderError, OrderManager
from kernel.paper_protocol import Fill as VenueFill
from kernel.paper_protocol import Fills, OpenOrders, OrderSnapshot
from machines import ORDER, RECONCILIATION, Entity, Transition, TransitionRefused
from machines.decimals import Sign, parse_decimal
from machines.order_reports import LOST, OrderFacts
from machines.positions import position_of
from machines.reconciliation import REPORT_COUNTS

log = logging.getLogger(__name__)

_Cursor = TypeVar("_Cursor", str, int)
_Item = TypeVar("_Item")

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


@runtime_checkable
class PagingClient(Protocol):
    """A venue client that asks for open orders and fills a page at a time (``VenueClient``); any
    other ``ExecutionClient`` is asked with ``open_orders()``/``fills_since()`` in one go."""

    async def open_orders_page(self, after: str = "", limit: int | None = None, timeout: float = 5.0) -> OpenOrders:
        """One page of the open orders after ``after``."""

    async def fills_page(self, after: int, limit: int | None = None, timeout: float = 5.0) -> Fills:
        """One page of the fills with ``fill_seq > after``."""


@dataclass(slots=True)
class FillsCursor:
    """Where the last completed reconciliation left the venue's fills: ``seq`` (every fill up to
    it applied) and our signed quantity per instrument by the venue's fills up to it."""

    seq: int = 0
    positions: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> FillsCursor:
        """The cursor a ``done`` reconciliation's data holds (none: from the start)."""
        if not data or "fills_cursor" not in data:
            return cls()
        positions = {
            k: parse_decimal(v, f"venue_positions.{k}", sign=Sign.any) for k, v in data["venue_positions"].items()
        }
        return cls(int(data["fills_cursor"]), positions)

    def as_data(self) -> dict[str, Any]:
        """The ``complete`` fields that journal it."""
        return {
            "fills_cursor": self.seq,
            "venue_positions": {k: format(v, "f") for k, v in sorted(self.positions.items()) if v},
        }


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
        page_limit: int | None = None,
    ) -> None:
        self.manager = manager
        self.grace_s = grace_s
        self.timeout = timeout
        self.now_ms = now_ms
        self.compare_positions = compare_positions
        self.page_limit = page_limit
        """Items asked for per page (``None``: the venue's default page)."""
        self.count = 0
        self.entity: Entity | None = None
        self._cursor = FillsCursor()

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
            **self._cursor.as_data(),
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
        manager = self.manager
        last = manager.journal.last_ended(RECONCILIATION, "done")
        cursor = FillsCursor.of(None if last is None else dict(last.data))
        self._cursor = cursor
        newest = await self._newest_fill_seq(cursor.seq)  # before any snapshot: they all hold the fills up to it
        seen = await self._check_open_orders(report)
        await self._check_the_rest(seen, report)
        if self.compare_positions:
            await self._scan_fills(cursor, newest, report)

    async def _check_open_orders(self, report: Report) -> set[str]:
        """Page through the venue's open orders: bring our live ones up to date, adopt the ones the
        journal never recorded. Returns the ids seen."""
        manager = self.manager
        seen: set[str] = set()
        async with aclosing(self._open_orders()) as pages:
            async for page in pages:
                report.counts["venue_open"] += len(page)
                for snapshot in page:
                    client_order_id = snapshot.client_order_id
                    seen.add(client_order_id)
                    order = manager.orders.get(client_order_id)
                    if order is not None and order.live:
                        report.counts["orders_checked"] += 1
                        self._apply(snapshot, report)
                    elif order is None and not manager.journal.has_entity(ORDER.name, client_order_id):
                        self._adopt(snapshot, report)
        return seen

    async def _check_the_rest(self, seen: set[str], report: Report) -> None:
        """Our live orders that are not open at the venue: asked for one by one."""
        manager, client = self.manager, self.manager.client
        unknown: list[Entity] = []
        for order in [o for o in manager.orders.values() if o.live and o.entity_id not in seen]:
            snapshot = await client.order_status(order.entity_id, self.timeout)
            report.counts["orders_checked"] += 1
            if not order.live:  # a live report finished it while we asked
                continue
            if snapshot is None:
                unknown.append(order)
                continue
            self._apply(snapshot, report)
        if unknown:
            await asyncio.sleep(self.grace_s)  # a frame sent just before a crash may still land
            for order in unknown:
                found = await client.order_status(order.entity_id, self.timeout)
                if not order.live:
                    continue
                if found is not None:
                    self._apply(found, report)
                    continue
                if _unacked(order):
                    self._lost(order, report, getattr(client, "session", None))
                else:
                    self._forgotten(order, report, getattr(client, "session", None))

    async def _newest_fill_seq(self, after: int) -> int | None:
        """The venue's newest ``fill_seq`` now (``None``: the client cannot tell; no cursor is kept)."""
        client = self.manager.client
        if not isinstance(client, PagingClient):
            return None
        page = await client.fills_page(after, 1, self.timeout)
        return page.last_fill_seq

    async def _open_orders(self) -> AsyncGenerator[list[OrderSnapshot], None]:
        """The venue's open orders, one page at a time."""
        client = self.manager.client
        if not isinstance(client, PagingClient):
            yield await client.open_orders(self.timeout)
            return

        async def fetch(after: str) -> tuple[list[OrderSnapshot], bool, str]:
            page = await client.open_orders_page(after, self.page_limit, self.timeout)
            return page.orders, page.more, page.next

        async with aclosing(_paged(fetch, "", "open_orders")) as pages:
            async for orders in pages:
                yield orders

    async def _fills(self, after: int) -> AsyncGenerator[list[VenueFill], None]:
        """The venue's fills after ``after``, one page at a time."""
        client = self.manager.client
        if not isinstance(client, PagingClient):
            yield await client.fills_since(after, self.timeout)
            return

        async def fetch(cursor: int) -> tuple[list[VenueFill], bool, int]:
            page = await client.fills_page(cursor, self.page_limit, self.timeout)
            return page.fills, page.more, page.next

        async with aclosing(_paged(fetch, after, "fills_since")) as pages:
            async for fills in pages:
                yield fills

    def _apply(self, snapshot: OrderSnapshot, report: Report) -> None:
        manager = self.manager
        sink: list[Anomaly] = []
        changes = manager.reports.apply_snapshot(snapshot, SOURCE, sink, prefix=PREFIX)
        manager.commit(changes, VENUE_FACTS)
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

    def _forgotten(self, order: Entity, report: Report, session: str | None) -> None:
        """An order the venue acknowledged and no longer knows (it restarted without it, or purged
        it): concluded ``lost`` (expired) with the evidence, so it never lingers as a zombie."""
        evidence = (
            f"venue session {session} answered twice, {self.grace_s:g} s apart, that it has no order "
            f"{order.entity_id}, which it had acknowledged; journaled {order.state}"
        )
        transition = self.manager.journal.fire(ORDER, order, "lost", source=SOURCE, reason=LOST, evidence=evidence)
        self.manager.commit([(order, transition)])
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
        manager.commit([(order, created), (order, submitted)], VENUE_FACTS)  # the venue's order, not our act
        report.counts["adopted"] += 1
        report.differ(
            "adopted",
            order.entity_id,
            f"open at the venue, never journaled: {snapshot.side} {snapshot.qty} {snapshot.instrument} "
            f"@ {snapshot.price}",
        )
        self._apply(snapshot, report)

    def _ours(self, fills: list[VenueFill]) -> list[tuple[VenueFill, Entity]]:
        """The fills of orders the journal knows (live or ended), each with its order."""
        manager = self.manager
        orders: dict[str, Entity | None] = {}
        ours: list[tuple[VenueFill, Entity]] = []
        for fill in fills:
            client_order_id = fill.client_order_id
            if client_order_id not in orders:
                orders[client_order_id] = manager.orders.get(client_order_id) or manager.journal.entity(
                    ORDER, client_order_id
                )
            order = orders[client_order_id]
            if order is not None:
                ours.append((fill, order))
        return ours

    def _apply_missing_fills(self, fills: list[tuple[VenueFill, Entity]], report: Report) -> None:
        """Fills the venue reports for orders the journal already ended (a late fill the killed
        process never journaled): applied as ``reconcile_fill`` (the order stays done)."""
        manager = self.manager
        for fill, known in sorted(fills, key=lambda f: f[0].fill_seq):
            order = manager.orders.get(fill.client_order_id) or known
            if order.live or fill.trade_id in order.data["trade_ids"]:
                continue  # live orders were brought up to date from their snapshots
            manager.orders[order.entity_id] = order
            sink: list[Anomaly] = []
            data = fill_facts(fill).data()
            transition = manager.reports.fire(order, PREFIX + "fill", fill, sink, source=SOURCE, **data)
            if transition is not None:
                manager.commit([(order, transition)], VENUE_FACTS)
                report.fired.append(transition)
                report.counts["fills_applied"] += 1
                report.differ("fill", order.entity_id, _describe(transition))
            for anomaly in sink:
                report.counts["anomalies"] += 1
                report.differ(anomaly.kind, anomaly.client_order_id, anomaly.detail)

    async def _scan_fills(self, cursor: FillsCursor, newest: int | None, report: Report) -> None:
        """Page through the venue's fills after ``cursor``: apply late fills, then compare positions.

        ``newest`` (the venue's newest ``fill_seq`` before the snapshots were taken) becomes the
        cursor journaled by ``complete``; ``None`` keeps the old one.
        """
        if newest is not None and newest < cursor.seq:
            report.differ(
                "venue_fills_restarted",
                "",
                f"the venue's newest fill_seq is {newest}, below the cursor {cursor.seq} of the last "
                "reconciliation: its history restarted; reading every fill again",
            )
            cursor = FillsCursor()
        baseline = dict(cursor.positions)
        venue = dict(cursor.positions)
        async with aclosing(self._fills(cursor.seq)) as pages:
            async for page in pages:
                ours = self._ours(page)
                self._apply_missing_fills(ours, report)
                for fill, order in ours:
                    instrument = order.data["instrument"]
                    signed = fill.qty if order.data["side"] == "buy" else -fill.qty
                    venue[instrument] = venue.get(instrument, Decimal(0)) + signed
                    if newest is not None and fill.fill_seq <= newest:
                        baseline[instrument] = baseline.get(instrument, Decimal(0)) + signed
        if newest is not None:
            self._cursor = FillsCursor(newest, baseline)
        manager = self.manager
        journal_positions = {p.instrument: p.qty for p in (position_of(e) for e in manager.positions.values())}
        for instrument in sorted(set(venue) | set(journal_positions)):
            ours_qty = journal_positions.get(instrument, Decimal(0))
            venue_qty = venue.get(instrument, Decimal(0))
            if ours_qty != venue_qty:
                report.counts["anomalies"] += 1
                report.differ(
                    "position_mismatch",
                    instrument,
                    f"journal {ours_qty}, venue fills {venue_qty} (difference {venue_qty - ours_qty})",
                )


async def _paged(
    fetch: Callable[[_Cursor], Awaitable[tuple[list[_Item], bool, _Cursor]]], after: _Cursor, what: str
) -> AsyncGenerator[list[_Item], None]:
    """The pages ``fetch`` returns from ``after`` on, each yielded as it arrives; the next one is
    asked for while the caller handles this one (the venue builds it meanwhile: two pages in
    memory at most). A cursor that does not advance is the venue's error."""
    pending = asyncio.ensure_future(fetch(after))
    try:
        while True:
            items, more, following = await pending
            if more:
                if following <= after:
                    raise VenueRequestError("invalid", f"{what} page after {after!r} did not advance ({following!r})")
                after = following
                pending = asyncio.ensure_future(fetch(after))
            yield items
            if not more:
                return
    finally:
        pending.cancel()
        if pending.done() and not pending.cancelled():
            pending.exception()  # retrieved: an abandoned prefetch's failure is not news


def _describe(transition: Transition) -> str:
    """``source -> dest (key=value, ...)`` without the ``source`` tag: one line of the report."""
    terms = ", ".join(f"{k}={v}" for k, v in sorted(transition.data.items()) if k != "source" and v is not None)
    return f"{transition.source} -> {transition.dest}" + (f" ({terms})" if terms else "")


__all__ = ["FillsCursor", "PagingClient", "Reconciler", "ReconciliationFailed", "Report"]
