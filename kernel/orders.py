"""The order manager: the order machine, the journal and an execution client in one asyncio shell.

Every change follows the write-ahead rule of DESIGN.md: fire the trigger, append it, commit the
journal, and only then let a command leave the process or tell anyone. A failed commit
(``JournalWriteError``) propagates and nothing is sent: no audit, no trade.

Client order ids are ``f"{prefix}{run_id}-{n:06d}"``. The journal never reuses a run id, so ids
from different runs of one journal never collide; within a run the counter skips any id the
journal already holds. The venue never makes two orders of one id, so a resend is harmless, but
this module never resends on its own: an order the venue does not know stays ``pending_new`` and
is reported (deciding that it is lost is a separate step).

Reports from the venue (``execution``, duplicate ``order_status_report``) become order triggers.
A report for an unknown order, or one the machine refuses, is logged, counted and kept in
``anomalies``; the order is left unchanged and the pump carries on.

After every (re)connection ``resolve_in_flight`` asks the venue for the status of every live order
and fires what brings the journal to the venue's state (data ``source: "status"``). Until it has
run for the current session, order entry is paused (``OrderEntryPaused``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

from kernel.execution import ExecutionClient, Report, VenueError, VenueUnavailable
from kernel.paper_protocol import Execution, Fill, NewOrder, OrderSnapshot
from machines import ORDER, POSITION, Entity, OrderState, Transition, TransitionRefused
from machines.order_terms import OrderTerms
from storage import Journal
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)
ZERO = Decimal(0)

S = OrderState
Listener = Callable[[Entity, Transition], None]
"""Called after a commit with the order and the transition that changed it."""

_SIMPLE_EXEC: dict[str, str] = {
    "rejected": "reject",
    "canceled": "cancel",
    "cancel_rejected": "cancel_reject",
    "replace_rejected": "replace_reject",
}


class OrderError(Exception):
    """Base class of the order manager's errors."""


class OrderEntryPaused(OrderError):
    """No session with the venue, or in-flight orders not yet resolved: nothing was journaled or sent."""


class OrderNotSent(OrderError):
    """The order (or request) is journaled but could not be sent; ``order`` is left as committed.

    A submit with no answer is not assumed failed: the order stays ``pending_new`` (a request stays
    pending) until ``resolve_in_flight`` learns what the venue knows.
    """

    def __init__(self, order: Entity, cause: VenueError) -> None:
        self.order = order
        super().__init__(f"order {order.entity_id} journaled as {order.state} but not sent: {cause}")


class UnknownOrder(OrderError, KeyError):
    """No live order of this client order id in this manager."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A report that changed nothing: unknown order, or refused by the order machine."""

    kind: Literal["unknown_order", "refused", "status_mismatch"]
    client_order_id: str
    detail: str
    report: Report | OrderSnapshot | Fill | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """A journaled request ready to leave the process: what to send for ``order``.

    Built when the request is committed, so a request queued behind others still sends what was
    journaled (never what the order's state says by the time it is sent).
    """

    order: Entity
    kind: Literal["new", "cancel", "replace"]
    qty: Decimal | None = None
    price: Decimal | None = None


@dataclass(slots=True)
class Resolution:
    """What ``resolve_in_flight`` found: orders checked, transitions fired, orders left pending."""

    generation: int
    checked: int = 0
    fired: list[Transition] = field(default_factory=list)
    unknown_pending: list[str] = field(default_factory=list)
    """``pending_new`` orders the venue never received: left as they are, not resent."""
    anomalies: list[Anomaly] = field(default_factory=list)


class OrderManager:
    """Places, cancels and replaces orders, applies venue reports, resolves in-flight orders.

    One asyncio shell, no threads. ``run()`` pumps reports and resolves after each reconnect.
    ``orders`` holds every order this manager has seen (live ones restored by ``resume``).
    """

    def __init__(
        self,
        journal: Journal,
        client: ExecutionClient,
        *,
        prefix: str = "o",
        orders: Iterable[Entity] = (),
        positions: Iterable[Entity] = (),
        status_timeout: float = 5.0,
        max_anomalies: int = 1000,
    ) -> None:
        if journal.run_id < 1:
            raise ValueError("the journal has no run: open it with start_run=True")
        self.journal = journal
        self.client = client
        self.prefix = prefix
        self.status_timeout = status_timeout
        self.orders: dict[str, Entity] = {order.entity_id: order for order in orders}
        self.positions: dict[str, Entity] = {position.entity_id: position for position in positions}
        """The ``position`` entities by instrument: each order fill also fires the position's ``fill``
        in the same commit, so positions resume in O(instruments), never by replaying history."""
        self.listeners: list[Listener] = []
        """``on_update`` callbacks, called after each commit; an exception in one is logged."""
        self.anomalies: deque[Anomaly] = deque(maxlen=max_anomalies)
        self.counts: dict[str, int] = {"reports": 0, "unknown_order": 0, "refused": 0, "status_mismatch": 0}
        self.unsent: set[str] = set()
        """Orders journaled but never (or not knowingly) sent: commit failed, or send failed."""
        self._counter = 0
        self._resolved_generation = 0
        self._held: list[tuple[Entity, Transition]] = []
        self.reconcile: Callable[[int], Awaitable[object]] | None = None
        """When set, called (with the session's generation) after each (re)connection instead of
        ``resolve_in_flight``; order entry opens when it returns. A ``VenueError`` from it is
        retried after ``retry_delay`` seconds (entry stays paused)."""
        self.retry_delay = 1.0

    @classmethod
    def resume(cls, journal: Journal, client: ExecutionClient, **options: Any) -> OrderManager:
        """A manager holding every live order of the journal (``journal.live_entities(ORDER)``).

        New ids use this run's id, so they never collide with the ids of earlier runs.
        """
        return cls(
            journal, client, orders=journal.live_entities(ORDER), positions=journal.live_entities(POSITION), **options
        )

    # -- state ------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while order entry is paused: disconnected, or this session not yet resolved."""
        return not self.client.connected or self.client.generation != self._resolved_generation

    def _next_id(self) -> str:
        while True:
            self._counter += 1
            client_order_id = f"{self.prefix}{self.journal.run_id}-{self._counter:06d}"
            if client_order_id not in self.orders and not self.journal.has_entity(ORDER.name, client_order_id):
                return client_order_id

    def _require_entry(self) -> None:
        if self.paused:
            state = "disconnected" if not self.client.connected else "reconciling with the venue"
            raise OrderEntryPaused(f"order entry paused: {state}")

    def _live(self, client_order_id: str) -> Entity:
        order = self.orders.get(client_order_id)
        if order is None:
            raise UnknownOrder(client_order_id)
        return order

    def _notify(self, changes: list[tuple[Entity, Transition]]) -> None:
        for order, transition in changes:
            for listener in list(self.listeners):
                try:
                    listener(order, transition)
                except Exception:
                    log.exception("order listener %r failed on %s", listener, transition)

    # -- commands ---------------------------------------------------------------------------

    async def place(self, terms: OrderTerms) -> Entity:
        """Create, journal (``create`` + ``submit``, committed) and only then send a new order.

        ``journal_new`` then ``send``; raises what they raise.
        """
        request = self.journal_new(terms)
        await self.send(request)
        return request.order

    def journal_new(self, terms: OrderTerms) -> Request:
        """The synchronous half of ``place``: create and journal a new order (committed, listeners
        told), ready for ``send``. Nothing leaves the process.

        Raises ``OrderEntryPaused`` (nothing done), ``InvalidData`` (bad terms; nothing done),
        ``JournalWriteError`` (commit failed; nothing sent: the order is also journaled
        ``rejected`` with reason ``not sent: journal commit failed``, and the whole batch stays
        buffered until a commit succeeds).
        """
        self._require_entry()
        client_order_id = self._next_id()
        order, created = _new_order(client_order_id, terms)
        submitted = ORDER.fire(order, "submit")
        self.orders[client_order_id] = order
        self.journal.append(created, order)
        self.journal.append(submitted, order)
        self.unsent.add(client_order_id)
        try:
            self._commit_request(order, [(order, created), (order, submitted)], "reject")
        except JournalWriteError:
            self.unsent.discard(client_order_id)
            raise
        return Request(order, "new")

    def journal_cancel(self, client_order_id: str) -> Request:
        """The synchronous half of ``cancel``: journal ``request_cancel`` (committed)."""
        self._require_entry()
        order = self._live(client_order_id)
        self._commit_request(order, [(order, self.journal.fire(ORDER, order, "request_cancel"))], "cancel_reject")
        return Request(order, "cancel")

    def journal_cancels(self, client_order_ids: Iterable[str]) -> list[Request]:
        """``request_cancel`` for many orders in one commit (a halt cancels everything at once).

        Orders that cannot be canceled now (unknown, or in a state that refuses it) are skipped.
        If the commit fails, each is followed by ``cancel_reject`` (never sent) and
        ``JournalWriteError`` propagates.
        """
        self._require_entry()
        changes: list[tuple[Entity, Transition]] = []
        for client_order_id in client_order_ids:
            order = self.orders.get(client_order_id)
            if order is None:
                continue
            try:
                changes.append((order, self.journal.fire(ORDER, order, "request_cancel")))
            except TransitionRefused:
                continue
        if not changes:
            return []
        try:
            self.journal.commit()
        except JournalWriteError:
            for order, _ in changes:
                undone = self.journal.fire(
                    ORDER, order, "cancel_reject", reason="not sent: journal commit failed", source="kernel"
                )
                self._held.append((order, undone))
            self._held[:0] = changes
            raise
        self._notify([*self._take_held(), *changes])
        return [Request(order, "cancel") for order, _ in changes]

    def journal_replace(
        self, client_order_id: str, qty: Decimal | None = None, price: Decimal | None = None
    ) -> Request:
        """The synchronous half of ``replace``: journal ``request_replace`` (committed)."""
        self._require_entry()
        order = self._live(client_order_id)
        requested = self.journal.fire(ORDER, order, "request_replace", qty=qty, price=price)
        self._commit_request(order, [(order, requested)], "replace_reject")
        return Request(order, "replace", qty, price)

    async def send(self, request: Request) -> None:
        """Send a journaled request. Raises ``OrderNotSent`` (the order stays as journaled; it is
        never resent blindly: resolution after the next connection settles it)."""
        order = request.order
        client_order_id = order.entity_id
        try:
            if request.kind == "cancel":
                await self.client.send_cancel(client_order_id)
            elif request.kind == "replace":
                await self.client.send_replace(client_order_id, request.qty, request.price)
            else:
                await self.client.send_new(
                    NewOrder(
                        client_order_id=client_order_id,
                        instrument=order.data["instrument"],
                        side=order.data["side"],
                        qty=order.data["qty"],
                        order_type=order.data["type"],
                        tif=order.data["tif"],
                        price=order.data["price"],
                    )
                )
                self.unsent.discard(client_order_id)
        except VenueUnavailable as exc:
            log.warning("order %s: %s journaled but not sent: %s", client_order_id, request.kind, exc)
            raise OrderNotSent(order, exc) from exc

    async def cancel(self, client_order_id: str) -> Entity:
        """Journal ``request_cancel`` (committed), then send the cancel.

        Raises ``OrderEntryPaused``, ``UnknownOrder``, ``InvalidTransition`` (nothing done),
        ``JournalWriteError`` (nothing sent), ``OrderNotSent`` (left ``pending_cancel``).
        """
        request = self.journal_cancel(client_order_id)
        await self.send(request)
        return request.order

    async def replace(self, client_order_id: str, qty: Decimal | None = None, price: Decimal | None = None) -> Entity:
        """Journal ``request_replace`` (committed), then send the replace.

        Raises like ``cancel`` (``InvalidData`` for neither qty nor price); left ``pending_replace``
        on ``OrderNotSent``.
        """
        request = self.journal_replace(client_order_id, qty, price)
        await self.send(request)
        return request.order

    def deny(self, terms: OrderTerms, *, reason: str, **details: Any) -> Entity:
        """Journal an order that is refused before it leaves the process (``create`` + ``deny``).

        The audit then shows every intent and why it was not sent. Raises ``InvalidData`` (bad
        terms; nothing journaled) and ``JournalWriteError`` (the denial stays buffered).
        """
        order, created = _new_order(self._next_id(), terms)
        self.journal.append(created, order)
        denied = self.journal.fire(ORDER, order, "deny", reason=reason, **details)
        self.orders[order.entity_id] = order
        self._commit([(order, created), (order, denied)])
        return order

    def _commit_request(self, order: Entity, changes: list[tuple[Entity, Transition]], undo: str) -> None:
        """Commit a request that is about to be sent; if the commit fails, journal why it never was.

        ``undo`` (``reject``, ``cancel_reject``, ``replace_reject``) is fired at once, so when the
        journal recovers it holds the request *and* the fact that it never left the process: no
        order is left looking in flight that the venue never saw.
        """
        try:
            self.journal.commit()
        except JournalWriteError:
            log.error("order %s: journal commit failed; %s not sent", order.entity_id, changes[-1][1].trigger)
            undone = self.journal.fire(ORDER, order, undo, reason="not sent: journal commit failed", source="kernel")
            self._held.extend([*changes, (order, undone)])
            raise
        self._notify([*self._take_held(), *changes])

    def _take_held(self) -> list[tuple[Entity, Transition]]:
        held, self._held = self._held, []
        return held

    def _commit(self, changes: list[tuple[Entity, Transition]]) -> None:
        """Commit (if anything is buffered) and notify; on failure the changes are held and
        notified after the next successful commit, so no listener misses a fill."""
        if changes or self.journal.pending_anomalies or self._held:
            try:
                self.journal.commit()
            except JournalWriteError:
                self._held.extend(changes)
                raise
        held = [*self._take_held(), *changes]
        if held:
            self._notify(held)

    # -- reports ----------------------------------------------------------------------------

    async def process_reports(self) -> None:
        """Pump reports forever: each loop turn applies what is queued and commits once."""
        while True:
            self.apply_reports(await self.client.next_reports())

    def apply_reports(self, reports: Iterable[Report]) -> list[Transition]:
        """Apply reports, commit once (group commit), then notify listeners; return what fired.

        Refused reports are counted and kept in ``anomalies``. ``JournalWriteError`` propagates
        (the transitions stay buffered in the journal; nothing is notified).
        """
        changes: list[tuple[Entity, Transition]] = []
        for report in reports:
            self.counts["reports"] += 1
            if isinstance(report, Execution):
                changes.extend(self._apply_execution(report))
            elif report.order is not None:
                changes.extend(self._apply_snapshot(report.order, "duplicate", []))
        self._commit(changes)
        return [transition for _, transition in changes]

    def _anomaly(self, anomaly: Anomaly, sink: list[Anomaly] | None = None) -> None:
        self.counts[anomaly.kind] += 1
        self.anomalies.append(anomaly)
        # Journaled too (written with this loop turn's commit), with what the venue sent as sample.
        self.journal.record_anomaly(
            "orders", anomaly.kind, f"{anomaly.client_order_id}: {anomaly.detail}", repr(anomaly.report)
        )
        if sink is not None:
            sink.append(anomaly)
        log.warning("order report anomaly (%s) for %s: %s", anomaly.kind, anomaly.client_order_id, anomaly.detail)

    def _fire(
        self,
        order: Entity,
        trigger: str,
        report: Report | OrderSnapshot | Fill | None,
        sink: list[Anomaly] | None = None,
        **data: Any,
    ) -> Transition | None:
        applied_before = len(order.data["trade_ids"])
        try:
            transition = self.journal.fire(ORDER, order, trigger, **data)
        except TransitionRefused as exc:
            self._anomaly(Anomaly("refused", order.entity_id, str(exc), report), sink)
            return None
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

    def _apply_execution(self, report: Execution) -> list[tuple[Entity, Transition]]:
        order = self.orders.get(report.client_order_id)
        if order is None:
            order = self.journal.entity(ORDER, report.client_order_id)  # ended in an earlier run
            if order is not None:
                self.orders[order.entity_id] = order
        if order is None:
            self._anomaly(Anomaly("unknown_order", report.client_order_id, f"{report.exec} for no order", report))
            return []
        trigger, data = _trigger_of(report)
        transition = self._fire(order, trigger, report, **data)
        return [] if transition is None else [(order, transition)]

    # -- resolution -------------------------------------------------------------------------

    async def resolve_in_flight(self) -> Resolution:
        """Bring every live order to what the venue knows; then order entry resumes.

        Never resends: a ``pending_new`` order the venue does not know is left as it is and listed
        in ``unknown_pending``. Raises ``VenueError`` (entry stays paused) when the venue cannot
        answer, ``JournalWriteError`` when a commit fails.
        """
        generation = self.client.generation
        resolution = Resolution(generation)
        for order in [o for o in self.orders.values() if o.live]:
            snapshot = await self.client.order_status(order.entity_id, self.status_timeout)
            resolution.checked += 1
            if not order.live:  # a report finished it while we waited
                continue
            if snapshot is None:
                if order.state == S.pending_new or order.data["prior_state"] == S.pending_new:
                    resolution.unknown_pending.append(order.entity_id)
                    log.warning("order %s is %s but unknown to the venue: not resent", order.entity_id, order.state)
                else:
                    detail = f"the venue does not know an order we hold as {order.state}"
                    self._anomaly(Anomaly("status_mismatch", order.entity_id, detail), resolution.anomalies)
                continue
            changes = self._apply_snapshot(snapshot, "status", resolution.anomalies)
            self._commit(changes)
            resolution.fired.extend(t for _, t in changes)
        if self.client.connected and self.client.generation == generation:
            self._resolved_generation = generation
        return resolution

    def _apply_snapshot(
        self, snapshot: OrderSnapshot, source: str, sink: list[Anomaly], prefix: str = ""
    ) -> list[tuple[Entity, Transition]]:
        """Fire what takes the order from its journaled state to the venue's ``snapshot``.

        ``prefix`` (``"reconcile_"``) names the reconciliation variants of the triggers.
        """
        found = self.orders.get(snapshot.client_order_id)
        if found is None:
            self._anomaly(Anomaly("unknown_order", snapshot.client_order_id, f"{source} for no order", snapshot), sink)
            return []
        order: Entity = found
        changes: list[tuple[Entity, Transition]] = []

        def fire(trigger: str, **data: Any) -> bool:
            transition = self._fire(order, prefix + trigger, snapshot, sink, source=source, **data)
            if transition is not None:
                changes.append((order, transition))
            return transition is not None

        unacked = order.state == S.pending_new or (
            order.state == S.pending_cancel and order.data["prior_state"] == S.pending_new
        )
        if unacked and snapshot.status == "rejected":
            fire("reject", reason=snapshot.reason)
            return changes
        if unacked and snapshot.venue_order_id:
            fire("accept", venue_order_id=snapshot.venue_order_id)
        for fill in sorted(snapshot.fills, key=lambda f: f.fill_seq):
            if fill.trade_id in order.data["trade_ids"]:
                continue
            if not fire(
                "fill",
                qty=fill.qty,
                price=fill.price,
                trade_id=fill.trade_id,
                fee=fill.fee,
                fill_seq=fill.fill_seq,
                ts_ms=fill.ts_ms,
            ):
                return changes
        if not order.live:
            return changes
        if snapshot.status == "canceled":
            fire("cancel", reason=snapshot.reason)
        elif snapshot.status == "expired":
            fire("expire")
        elif snapshot.status in ("new", "partially_filled"):
            # Only a status answer settles pending requests: a duplicate-submit answer may predate
            # a cancel or replace still in flight on this connection.
            if source != "duplicate":
                self._still_working(order, snapshot, fire)
        else:  # filled by the venue, yet our fills do not add up; or rejected after an ack
            detail = f"venue says {snapshot.status}, journal says {order.state} (cum_qty {order.data['cum_qty']})"
            self._anomaly(Anomaly("status_mismatch", order.entity_id, detail, snapshot), sink)
        return changes

    @staticmethod
    def _still_working(order: Entity, snapshot: OrderSnapshot, fire: Callable[..., bool]) -> None:
        """The venue has the order working: settle a pending request, or adopt changed terms."""
        if order.state == S.pending_cancel:
            fire("cancel_reject", reason="the venue still has the order working")
        elif order.state == S.pending_replace:
            requested_qty, requested_price = order.data["requested_qty"], order.data["requested_price"]
            wanted_qty = order.data["qty"] if requested_qty is None else requested_qty
            wanted_price = order.data["price"] if requested_price is None else requested_price
            if snapshot.qty == wanted_qty and snapshot.price == wanted_price:
                fire("replace", qty=snapshot.qty, price=snapshot.price)
            else:
                fire("replace_reject", reason="the venue kept the old terms")
        elif order.state in (S.accepted, S.partially_filled) and (
            snapshot.qty != order.data["qty"] or snapshot.price != order.data["price"]
        ):
            fire("restate", qty=snapshot.qty, price=snapshot.price, reason="terms differ at the venue")

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Pump reports and resolve in-flight orders after every (re)connection, until cancelled.

        Raises what stops it: ``ReconnectFailed`` (the venue is gone), ``JournalWriteError``.
        """
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.process_reports(), name="order-reports")
            tasks.create_task(self._resolve_on_connect(), name="order-resolver")

    async def _resolve_on_connect(self) -> None:
        while True:
            generation = await self.client.wait_connected(after=self._resolved_generation)
            if self.reconcile is not None:
                try:
                    await self.reconcile(generation)
                except VenueError as exc:
                    log.warning("reconciliation of session %d failed: %s; retrying in %g s", generation, exc,
                                self.retry_delay)  # fmt: skip
                    await asyncio.sleep(self.retry_delay)
                    continue
                if self.client.connected and self.client.generation == generation:
                    self._resolved_generation = generation
                continue
            try:
                resolution = await self.resolve_in_flight()
            except VenueUnavailable as exc:
                log.warning("resolving in-flight orders interrupted: %s", exc)
                continue
            log.info(
                "session %d: %d orders checked, %d transitions, %d unknown pending_new, %d anomalies",
                generation,
                resolution.checked,
                len(resolution.fired),
                len(resolution.unknown_pending),
                len(resolution.anomalies),
            )


def _new_order(client_order_id: str, terms: OrderTerms) -> tuple[Entity, Transition]:
    """``ORDER.create`` of ``terms`` (their ``reason``: why the kernel placed it)."""
    return ORDER.create(client_order_id, **terms.create_data())


def checkpoint_positions(manager: OrderManager) -> int:
    """Give a journal written before positions were checkpointed its ``position`` entities: fold
    every journaled fill into them once (journaled like any fill). Returns the fills folded; 0
    when the journal already has position entities."""
    from storage.audit import AuditReader  # read-only, on the same file

    if manager.positions:
        return 0
    journal = manager.journal
    with AuditReader(journal.path) as reader:
        fills = reader.fills()
    for row in fills:
        order = manager.orders.get(row["client_order_id"]) or journal.entity(ORDER, row["client_order_id"])
        if order is None:  # pragma: no cover - fills() joins on the order
            continue
        data = {"qty": row["qty"], "price": row["price"], "fee": row["fee"], "trade_id": row["trade_id"]}
        fill = Transition(ORDER.name, order.entity_id, "fill", None, str(order.state), MappingProxyType(data))
        manager.position_fill(order, fill)
    if fills:
        journal.commit()
        log.info("positions checkpointed from %d journaled fills", len(fills))
    return len(fills)


def _trigger_of(report: Execution) -> tuple[str, dict[str, Any]]:
    """The order trigger and data an execution report stands for (docs/venue-protocol.md)."""
    kind = report.exec
    if kind == "new":
        return "accept", {"venue_order_id": report.venue_order_id}
    if kind == "trade":
        fill = report.fill
        if fill is None:
            return "fill", {}  # the machine refuses it: a trade report without a fill is an anomaly
        return "fill", {
            "qty": fill.qty,
            "price": fill.price,
            "trade_id": fill.trade_id,
            "fee": fill.fee,
            "fill_seq": fill.fill_seq,
            "ts_ms": fill.ts_ms,
        }
    if kind == "replaced":
        return "replace", {"qty": report.qty, "price": report.price}
    if kind == "restated":
        return "restate", {"qty": report.qty, "price": report.price, "reason": report.reason}
    if kind == "expired":
        return "expire", {}
    return _SIMPLE_EXEC[kind], {"reason": report.reason}


__all__ = [
    "Anomaly",
    "OrderEntryPaused",
    "OrderError",
    "OrderManager",
    "OrderNotSent",
    "Request",
    "Resolution",
    "UnknownOrder",
    "checkpoint_positions",
]
