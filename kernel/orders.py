"""The order manager: the order machine, the journal and an execution client in one asyncio shell.

Every change follows the write-ahead rule of DESIGN.md: fire the trigger, append it, commit the
journal, and only then let a command leave the process or tell anyone. A failed commit
(``JournalWriteError``) propagates and nothing is sent: no audit, no trade.

Client order ids are ``f"{prefix}{journal_id}-{run_id}-{n:06d}"`` (``o7kq2mxa4-3-000001``).
``journal_id`` is the journal's own random id (``Journal.journal_id``), so two journals trading on
one venue account never make the same id; the journal never reuses a run id, so ids from different
runs of one journal never collide; within a run the counter skips any id the journal already holds.
The run's namespace is claimed in the journal (``Journal.claim_fresh``), so that check costs no SQL
lookup for an id above every one created in it (a new order's id), here or in the journal's create.
An id stays within ``MAX_CLIENT_ORDER_ID`` characters of ``CLIENT_ORDER_ID_CHARS``
(``kernel/paper_protocol.py``: what Binance allows). The venue never makes two orders of one id, so
a resend is harmless, but this module never resends on its own: an order the venue does not know
stays ``pending_new`` and is reported (deciding that it is lost is a separate step). A duplicate
answer is taken as ours only when its terms match the journaled order (``machines.order_reports``):
otherwise the id belongs to someone else's order, an anomaly is journaled and our order is rejected.

Reports from the venue (``execution``, duplicate ``order_status_report``) become order triggers
(``kernel/order_reports.py``, deciding with ``machines/order_reports.py``). A report for an unknown
order, or one the machine refuses, is logged, counted and kept in ``anomalies``; the order is left
unchanged and the pump carries on.

After every (re)connection ``resolve_in_flight`` (``kernel/order_resume.py``) asks the venue for the
status of every live order and fires what brings the journal to the venue's state (data
``source: "status"``), or ``reconcile`` (``kernel/reconcile.py``) does. Until then, order entry is
paused (``OrderEntryPaused``, with the reason of the gate's ``machines.entry.venue_block``).

A cancel or replace the venue answers ``too late``/``unknown order`` leaves the order pending and in
doubt (``ReportApplier.in_doubt``); the ``order-doubts`` task asks the venue for its status and
applies the answer (``resolve_doubts``). Meanwhile a new cancel or replace of it is refused with
``OrderUnresolved``: nothing is retried blindly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal

from kernel.execution import ExecutionClient, Report, VenueError, VenueUnavailable
from kernel.faults import after_report_commit
from kernel.order_reports import Anomaly, Change, ReportApplier
from kernel.order_resume import Resolution, resolve_doubts, settle_doubts_forever
from kernel.order_resume import resolve_in_flight as resolve_order_status
from kernel.paper_protocol import CLIENT_ORDER_ID_CHARS, MAX_CLIENT_ORDER_ID, NewOrder, valid_client_order_id
from machines import ORDER, POSITION, Entity, TradekernelError, Transition, TransitionRefused
from machines.entry import venue_block
from machines.order_terms import OrderTerms
from storage import Journal
from storage.errors import JournalWriteError
from storage.schema import Durability

log = logging.getLogger(__name__)

Listener = Callable[[Entity, Transition], None]
"""Called after a commit with the order and the transition that changed it."""
VENUE_FACTS: Durability = "normal"
"""The durability of commits of what the venue told us (reports, status answers, reconciliation's
facts): ``synchronous=NORMAL``, made durable by the next ``full`` commit, which precedes anything
we send; lost only with the machine, and then asked of the venue again (docs/architecture.md,
Durability before effect). Our own acts commit at the journal's own durability."""


class OrderError(TradekernelError):
    """Base class of the order manager's errors (and of reconciliation's)."""


class NoRun(OrderError, ValueError):
    """The journal was opened without a run: the manager has no run id for its client order ids."""


class OrderEntryPaused(OrderError):
    """No session with the venue, or in-flight orders not yet resolved: nothing was journaled or sent.

    ``reason`` is the order-entry gate's (``machines.entry.venue_block``).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"order entry paused: {reason}")


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


class OrderEnded(UnknownOrder):
    """The order has ended (filled, canceled, rejected, expired): nothing to cancel or replace."""

    def __init__(self, client_order_id: str, state: str) -> None:
        super().__init__(f"order {client_order_id} has ended ({state}): nothing to cancel or replace")
        self.client_order_id = client_order_id
        self.state = state

    def __str__(self) -> str:
        return str(self.args[0])


class OrderUnresolved(OrderError):
    """The venue answered a cancel or replace of this order as if it were done or gone (``too
    late``, ``unknown order``); until a status query settles it, no new request is made for it."""

    def __init__(self, client_order_id: str, answer: str) -> None:
        self.client_order_id = client_order_id
        self.answer = answer
        super().__init__(
            f"order {client_order_id}: the venue answered {answer!r} to our last request; "
            "no new cancel or replace until its status is known"
        )


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


class OrderManager:
    """Places, cancels and replaces orders, applies venue reports, resolves in-flight orders.

    One asyncio shell, no threads. ``run()`` pumps reports and resolves after each reconnect.
    ``orders`` holds the live orders (restored by ``resume``) and those whose last change is not
    yet committed and told: an order that ended leaves it once its final transition is committed
    and its listeners told (the journal keeps it: ``journal.entity``), so a long run holds
    O(live orders). ``ended`` counts the orders that ended, by state.
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
            raise NoRun("the journal has no run: open it with start_run=True")
        self.journal = journal
        self.client = client
        self.prefix = prefix
        self.status_timeout = status_timeout
        self.orders: dict[str, Entity] = {order.entity_id: order for order in orders}
        self.positions: dict[str, Entity] = {position.entity_id: position for position in positions}
        """The ``position`` entities by instrument: each order fill also fires the position's ``fill``
        in the same commit, so positions resume in O(instruments), never by replaying history."""
        self.listeners: list[Listener] = []
        """``on_update`` callbacks, called after each commit with the order as of that transition
        (its state is ``transition.dest``); an exception in one is logged."""
        self.ended: dict[str, int] = {}
        """How many orders reached each terminal state here (they have left ``orders``)."""
        self.reports = ReportApplier(journal, self.orders, self.positions, max_anomalies=max_anomalies)
        """Applies the venue's reports to ``orders`` (and ``positions``); commits are the manager's."""
        self.anomalies = self.reports.anomalies
        """Reports that changed nothing (the most recent ``max_anomalies``)."""
        self.counts = self.reports.counts
        """Reports seen, and anomalies by kind."""
        self.unsent: set[str] = set()
        """Orders journaled but never (or not knowingly) sent: commit failed, or send failed."""
        self._counter = 0
        journal.claim_fresh(ORDER.name, f"{prefix}{journal.journal_id}-{journal.run_id}-")  # ids: no lookup
        self._resolved_generation = 0
        self._held: list[Change] = []
        self.doubts = asyncio.Event()
        """Set when orders fall in doubt: ``run()`` then settles them."""
        self.commit_facts = functools.partial(self.commit, durability=VENUE_FACTS)  # the venue's answers
        journal.after_commit.append(self._flush_held)  # whoever's commit makes them durable
        self.reconcile: Callable[[int], Awaitable[object]] | None = None
        """When set, called (with the session's generation) after each (re)connection instead of
        ``resolve_in_flight``; order entry opens when it returns. A ``VenueError`` from it is
        retried after ``retry_delay`` seconds (entry stays paused)."""
        self.retry_delay = 1.0

    @classmethod
    def resume(cls, journal: Journal, client: ExecutionClient, **options: Any) -> OrderManager:
        """A manager holding every live order of the journal (``journal.live_entities(ORDER)``);
        new ids use this run's id, so they never collide with the ids of earlier runs."""
        return cls(
            journal, client, orders=journal.live_entities(ORDER), positions=journal.live_entities(POSITION), **options
        )

    # -- state ------------------------------------------------------------------------------

    def entry_block(self) -> str | None:
        """Why order entry is paused now (the gate's ``venue_block``): the venue session is down,
        or this session is not yet resolved; ``None`` when it is open."""
        return venue_block(self.client.connected, self.client.generation == self._resolved_generation)

    @property
    def paused(self) -> bool:
        """True while order entry is paused: disconnected, or this session not yet resolved."""
        return self.entry_block() is not None

    def _next_id(self) -> str:
        base = f"{self.prefix}{self.journal.journal_id}-{self.journal.run_id}-"
        base_valid = valid_client_order_id(f"{base}0")  # the counter adds digits only: checked once per id
        while True:
            self._counter += 1
            client_order_id = f"{base}{self._counter:06d}"
            if not base_valid or len(client_order_id) > MAX_CLIENT_ORDER_ID:
                raise _invalid_id(client_order_id, self.prefix)
            if client_order_id not in self.orders and not self.journal.has_entity(ORDER.name, client_order_id):
                return client_order_id

    def _require_entry(self) -> None:
        block = self.entry_block()
        if block is not None:
            raise OrderEntryPaused(block)

    def _live(self, client_order_id: str) -> Entity:
        order = self.orders.get(client_order_id)
        if order is None:
            ended = self.journal.entity(ORDER, client_order_id)
            raise UnknownOrder(client_order_id) if ended is None else OrderEnded(client_order_id, ended.state)
        answer = self.reports.in_doubt.get(client_order_id)
        if answer is not None:
            raise OrderUnresolved(client_order_id, answer)
        return order

    def _notify(self, changes: list[Change]) -> None:
        for order, transition in changes:
            seen = self.reports.as_of(order, transition)  # not the live entity, which may have moved on
            for listener in list(self.listeners):
                try:
                    listener(seen, transition)
                except Exception:
                    log.exception("order listener %r failed on %s", listener, transition)
        self.reports.told()
        self._forget_ended(changes)

    def _forget_ended(self, changes: list[Change]) -> None:
        """Drop the orders that ended from memory (committed and told; the journal keeps them)."""
        terminal = ORDER.terminal_names
        for order, transition in changes:
            if transition.dest in terminal and transition.source not in terminal:
                self.ended[transition.dest] = self.ended.get(transition.dest, 0) + 1
            if not order.live and self.orders.get(order.entity_id) is order:
                del self.orders[order.entity_id]
                self.unsent.discard(order.entity_id)

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
        order, created = ORDER.create(client_order_id, **terms.create_data())
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
        changes: list[Change] = []
        for client_order_id in client_order_ids:
            order = self.orders.get(client_order_id)
            if order is None or client_order_id in self.reports.in_doubt:
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
        order, created = ORDER.create(self._next_id(), **terms.create_data())
        self.journal.append(created, order)
        denied = self.journal.fire(ORDER, order, "deny", reason=reason, **details)
        self.orders[order.entity_id] = order
        self.commit([(order, created), (order, denied)])
        return order

    def _commit_request(self, order: Entity, changes: list[Change], undo: str) -> None:
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

    def _flush_held(self) -> None:
        """After any successful commit (the health monitor's retry, the trading driver's, ours): tell
        the listeners the changes a failed commit held back, now durable, before anything else."""
        if self._held:
            self._notify(self._take_held())

    def _take_held(self) -> list[Change]:
        held, self._held = self._held, []
        return held

    def commit(self, changes: Iterable[Change] = (), durability: Durability | None = None) -> None:
        """Commit at ``durability`` (``None``: the journal's; ``VENUE_FACTS`` for the venue's news)
        and notify; on failure the changes are held and notified after the next successful commit,
        so no listener misses a fill. Raises ``JournalWriteError``."""
        changes = list(changes)
        if changes or self.journal.pending_anomalies or self._held:
            try:
                self.journal.commit(durability)
            except JournalWriteError:
                self._held.extend(changes)
                raise
            after_report_commit(durability == VENUE_FACTS, changes)  # a crash point (tests only)
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
        changes = self.reports.apply(reports)
        self.commit(changes, VENUE_FACTS)
        if self.reports.in_doubt:
            self.doubts.set()
        return [transition for _, transition in changes]

    def position_fill(self, order: Entity, fill: Transition) -> Transition:
        """Fold one applied order fill into its instrument's ``position`` entity (same batch)."""
        return self.reports.position_fill(order, fill)

    # -- resolution -------------------------------------------------------------------------

    async def resolve_in_flight(self) -> Resolution:
        """Bring every live order to what the venue knows; then order entry resumes.

        Never resends: a ``pending_new`` order the venue does not know is left as it is and listed
        in ``unknown_pending``. Raises ``VenueError`` (entry stays paused) when the venue cannot
        answer, ``JournalWriteError`` when a commit fails.
        """
        resolution = await resolve_order_status(self.client, self.reports, self.commit_facts, self.status_timeout)
        self._mark_resolved(resolution.generation)
        return resolution

    def _mark_resolved(self, generation: int) -> None:
        """Open order entry for session ``generation`` if it is still the current one."""
        if self.client.connected and self.client.generation == generation:
            self._resolved_generation = generation

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Pump reports and resolve in-flight orders after every (re)connection, until cancelled.

        Raises what stops it: ``ReconnectFailed`` (the venue is gone), ``JournalWriteError``.
        """
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.process_reports(), name="order-reports")
            tasks.create_task(self._resolve_on_connect(), name="order-resolver")
            tasks.create_task(
                settle_doubts_forever(self.client, self.reports, self.commit_facts, self.status_timeout, self.doubts,
                                      lambda: self.retry_delay),
                name="order-doubts",
            )  # fmt: skip

    async def resolve_doubts(self) -> list[Transition]:
        """Settle the orders in doubt (``ReportApplier.in_doubt``): one status query each, the
        answer applied. Raises ``VenueError`` (the rest stay in doubt), ``JournalWriteError``."""
        return await resolve_doubts(self.client, self.reports, self.commit_facts, self.status_timeout)

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
                self._mark_resolved(generation)
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


def _invalid_id(client_order_id: str, prefix: str) -> OrderError:
    return OrderError(
        f"client order id {client_order_id!r} is not a valid venue id (at most {MAX_CLIENT_ORDER_ID} "
        f"characters of {CLIENT_ORDER_ID_CHARS}): shorten the prefix {prefix!r}"
    )


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


__all__ = [
    "Anomaly",
    "NoRun",
    "OrderEntryPaused",
    "OrderError",
    "OrderManager",
    "OrderNotSent",
    "OrderUnresolved",
    "Request",
    "Resolution",
    "UnknownOrder",
    "checkpoint_positions",
]
