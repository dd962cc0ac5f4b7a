"""The venue session supervisor: connects the order manager's venue session, reconciles the journal
with the venue on each new session (order entry opens only after it), and keeps the manager's
report pump running across venue outages and journal failures.

A venue that is not there yet, or goes away, is waited for: the client reconnects forever (capped
backoff with jitter, ``kernel.wiring.venue_client``), order entry stays paused meanwhile, and the
next session is reconciled before order entry opens again. Whether a long outage halts trading is
the health machine's decision (``[health] venue_outage_halt_s``), fed by ``outage_ms()``.

What it knows feeds the order-entry gate and health: ``venue_failure`` (the session cannot be
re-established: a refusal retrying cannot fix, or a bounded retry budget spent),
``reconcile_error`` (the last reconciliation failed), ``last_reconciliation`` (its report),
``outage_ms()`` (how long the session has been down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernel.execution import ReconnectFailed, VenueUnavailable
from kernel.orders import OrderManager
from kernel.reconcile import Reconciler, ReconciliationFailed
from storage import Journal
from storage.errors import JournalWriteError

if TYPE_CHECKING:
    from kernel.wiring import KernelClient

log = logging.getLogger(__name__)


class VenueSession:
    """Supervises ``client`` and ``manager``; ``wake()`` tells the health monitor to look again."""

    def __init__(
        self,
        journal: Journal,
        client: KernelClient,
        manager: OrderManager,
        *,
        status_timeout: float,
        now_ms: Callable[[], int],
        stopping: Callable[[], bool],
        wake: Callable[[], None],
    ) -> None:
        self.journal = journal
        self.client = client
        self.manager = manager
        self.reconciler = Reconciler(manager, timeout=status_timeout, now_ms=now_ms)
        self.venue_failure: str | None = None
        self.reconcile_error: str | None = None
        self.last_reconciliation: dict[str, Any] | None = None
        self._stopping = stopping
        self._wake = wake
        self._now_ms = now_ms
        self._down_since_ms: int | None = now_ms()  # down from the start until the first session
        self._retry_delay = 0.25
        self.on_up: Callable[[], None] | None = None
        """Called when a session is up (before it is reconciled): e.g. tell the feed the venue is back."""
        manager.reconcile = self.reconcile
        client.on_anomaly = self._anomaly

    def _anomaly(self, kind: str, reason: str, sample: str) -> None:
        """The venue session failed oddly (its reader raised): journal it, let health look again."""
        self.journal.record_anomaly("venue", kind, reason, sample)
        self._wake()

    @property
    def failed(self) -> str | None:
        """Why the venue session is failing (reconnecting gave up, or reconciliation failed)."""
        return self.venue_failure or self.reconcile_error

    def outage_ms(self) -> int | None:
        """How long the venue session has been down (the ``now_ms`` clock), ``None`` while it is up.

        Down counts from the kernel's start until the first session, and from the first time it is
        seen down after that (health looks every 250 ms)."""
        if self.client.connected:
            self._down_since_ms = None
            return None
        now = self._now_ms()
        if self._down_since_ms is None:
            self._down_since_ms = now
        return now - self._down_since_ms

    async def connect(self) -> None:
        """Start connecting the session in the background and return at once: a venue out of reach
        is not fatal (order entry stays paused, health says the session is down, the client keeps
        trying; ``supervise`` reconciles each session as it comes up)."""
        self.client.start()

    async def reconcile(self, generation: int) -> None:
        """Reconcile the journal with the venue for this session (order entry opens after it)."""
        journal = self.journal
        if self.reconciler.count == 0 and self.reconcile_error is None:
            crashed = journal.crashed_runs
            reason = f"run {journal.run_id} started" + (
                f" after run {', '.join(map(str, crashed))} ended without a clean stop" if crashed else ""
            )
        else:
            reason = f"venue session {generation} of run {journal.run_id}"
        self.venue_failure = None  # a session is up again
        self._retry_delay = 0.25
        if self.on_up is not None:
            self.on_up()
        self._wake()
        try:
            self.last_reconciliation = (await self.reconciler.run(reason)).as_json()
        except ReconciliationFailed as exc:
            self.reconcile_error = f"reconciliation failed: {exc}"
            self._wake()
            raise
        self.reconcile_error = None
        self._wake()
        with contextlib.suppress(VenueUnavailable):  # the next session asks again
            await self.client.request_balances()  # for the status; the venue pushes them as they move

    async def supervise(self) -> None:
        """The order manager's report pump and resolver, restarted after a journal or venue failure."""
        while True:
            if self.venue_failure is not None:
                # The client stopped trying (a refusal, or a bounded budget spent): start it again
                # after a growing pause; ``venue_failure`` holds until a session is up (``reconcile``).
                await asyncio.sleep(self._retry_delay)
                self._retry_delay = min(self._retry_delay * 2, 5.0)
                if self._stopping():
                    return
                await self.connect()
            try:
                await self.manager.run()
            except BaseExceptionGroup as group:
                failure = group.exceptions[0]
                if isinstance(failure, ReconnectFailed):
                    self.venue_failure = str(failure)
                    log.error("venue session cannot be re-established: %s; starting over", failure)
                elif isinstance(failure, JournalWriteError):
                    log.error("journal commit failed while applying reports: %s", failure)
                    await asyncio.sleep(0.25)
                elif isinstance(failure, VenueUnavailable) and not self._stopping():
                    log.warning("venue unavailable: %s", failure)
                    await asyncio.sleep(0.25)
                elif not isinstance(failure, VenueUnavailable):
                    raise
                else:
                    return  # the venue session was closed: we are stopping
            self._wake()


__all__ = ["VenueSession"]
