"""The venue session supervisor: connects the order manager's venue session, reconciles the journal
with the venue on each new session (order entry opens only after it), and keeps the manager's
report pump running across venue outages and journal failures.

What it knows feeds the order-entry gate and health: ``venue_failure`` (reconnecting gave up),
``reconcile_error`` (the last reconciliation failed), ``last_reconciliation`` (its report).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kernel.execution import ReconnectFailed, VenueClient, VenueUnavailable
from kernel.orders import OrderManager
from kernel.reconcile import Reconciler, ReconciliationFailed
from storage import Journal
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)


class VenueSession:
    """Supervises ``client`` and ``manager``; ``wake()`` tells the health monitor to look again."""

    def __init__(
        self,
        journal: Journal,
        client: VenueClient,
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

    async def connect(self) -> None:
        """Connect the session; a venue out of reach is not fatal (health says so, entry stays paused)."""
        try:
            await self.client.connect()
            self.venue_failure = None
        except ReconnectFailed as exc:
            # Not fatal: health says so, order entry stays paused, the supervisor keeps trying.
            self.venue_failure = str(exc)
            log.error("venue unreachable: %s", exc)

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
        self._wake()
        try:
            self.last_reconciliation = (await self.reconciler.run(reason)).as_json()
        except ReconciliationFailed as exc:
            self.reconcile_error = f"reconciliation failed: {exc}"
            self._wake()
            raise
        self.reconcile_error = None
        self._wake()

    async def supervise(self) -> None:
        """The order manager's report pump and resolver, restarted after a journal or venue failure."""
        delay = 0.25
        while True:
            if self.venue_failure is not None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                await self.connect()
                continue
            try:
                await self.manager.run()
            except BaseExceptionGroup as group:
                failure = group.exceptions[0]
                if isinstance(failure, ReconnectFailed):
                    self.venue_failure = str(failure)
                    log.error("venue session lost for good: %s; retrying", failure)
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
