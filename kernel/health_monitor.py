"""The health monitor: measures the loop lag and commit latency, probes an idle journal, assesses
health (``machines.health``) and brings the health entities to what it found, journaled.

``run(observe, after)`` is the monitor task: every ``HEALTH_INTERVAL_S`` (or sooner, when woken)
it measures, calls ``observe()`` for what the rest of the kernel looks like, assesses, and then
calls ``after()`` (the trading driver). The assessment itself is ``machines.health.assess``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from kernel.config import Config
from kernel.log_fields import transition_fields
from kernel.metrics import KernelMetrics
from machines import Entity, TransitionRefused
from machines.health import HEALTH, KERNEL, Finding, HealthState, Observation, Thresholds, assess, overall, trigger_for
from storage import Journal
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 0.25
"""How often health is assessed (and the loop lag sampled)."""
JOURNAL_PROBE_MS = 1000
"""How long the journal may go without a commit before health checks that it still could."""


def thresholds_of(config: Config) -> Thresholds:
    """The health thresholds of ``[health]``."""
    return config.health.thresholds()


class HealthMonitor:
    """The health entities of one run (``kernel`` and one per component) and their last findings.

    ``changed`` is the kernel's wake-up event (see ``wake``)."""

    def __init__(
        self,
        journal: Journal,
        entities: Mapping[str, Entity],
        thresholds: Thresholds,
        metrics: KernelMetrics,
        changed: asyncio.Event,
        *,
        now_ms: Callable[[], int],
    ) -> None:
        self.journal = journal
        self.entities = dict(entities)
        self.thresholds = thresholds
        self.metrics = metrics
        self.findings: dict[str, Finding] = {}
        self.kernel_finding: Finding | None = None
        """The overall finding (``None`` until the first assessment)."""
        self.loop_lag_ms = 0
        self.commit_ms_window = 0
        self.changed = changed
        """Set by anything that may change health or order entry: the monitor looks again at once."""
        self._now_ms = now_ms
        self._probe_commits = -1
        self._probed_ms = 0

    def wake(self) -> None:
        """Something changed: assess now rather than at the next interval."""
        self.changed.set()

    async def wait_change(self, timeout: float) -> None:
        """Wait until woken or ``timeout`` seconds passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.changed.wait()
        self.changed.clear()

    async def run(self, observe: Callable[[], Observation | None], after: Callable[[], None]) -> None:
        """The monitor task: measure, assess ``observe()`` (``None``: stopping, skip), then ``after()``."""
        loop = asyncio.get_running_loop()
        last_hist = (0.0, 0)
        while True:
            due = loop.time() + HEALTH_INTERVAL_S
            await self.wait_change(HEALTH_INTERVAL_S)
            self.loop_lag_ms = max(0, int((loop.time() - due) * 1000))
            self.metrics.loop_lag_s = self.loop_lag_ms / 1000
            hist = self.metrics.commit_latency
            if hist.count > last_hist[1]:
                # the mean over the window: a slow disk shows, one unlucky fsync does not
                self.commit_ms_window = int((hist.total - last_hist[0]) / (hist.count - last_hist[1]) * 1000)
            last_hist = (hist.total, hist.count)
            self.probe_journal(hist.count)
            observation = observe()
            if observation is not None:
                self.assess(observation)
            after()

    def probe_journal(self, commits: int) -> None:
        """While nothing commits, check once a second that the journal could: an idle kernel must
        not report healthy over a journal that can no longer be written."""
        journal = self.journal
        if journal.closed or journal.pending:
            return
        now = self._now_ms()
        if commits != self._probe_commits:
            self._probe_commits, self._probed_ms = commits, now
            return
        if now - self._probed_ms < JOURNAL_PROBE_MS:
            return
        self._probed_ms = now
        with contextlib.suppress(JournalWriteError):  # health reads journal.failure
            journal.probe()

    def assess(self, observation: Observation) -> None:
        """Bring the health entities to what ``observation`` says (journaled), retrying the journal."""
        journal = self.journal
        findings = assess(observation, self.thresholds)
        self.findings = findings
        self.kernel_finding = overall(findings)
        now = self._now_ms()
        changed = False
        for name, finding in [*findings.items(), (KERNEL, self.kernel_finding)]:
            entity = self.entities[name]
            step = trigger_for(entity, finding)
            if step is not None:
                trigger, data = step
                before = entity.state
                transition = journal.fire(HEALTH, entity, trigger, now_ms=now, **data)
                changed = True
                if name == KERNEL and before != entity.state:
                    level = logging.INFO if entity.state == HealthState.healthy else logging.WARNING
                    reason = f": {finding.reason}" * bool(finding.reason)
                    fields = transition_fields(transition, journal.run_id)
                    log.log(level, "health %s -> %s%s", before, entity.state, reason, extra=fields)
        if changed or journal.pending or journal.failure is not None:
            # Also the retry of whatever an earlier failed commit left buffered. A failure shows in the
            # health entities on the next pass; nothing leaves the process meanwhile.
            with contextlib.suppress(JournalWriteError):
                journal.commit()
        if changed:
            self.wake()

    def healthz(self) -> tuple[bool, dict[str, object]]:
        """``/healthz``: ok when the kernel is healthy or degraded; the state of each component."""
        entity = self.entities.get(KERNEL)
        state = str(entity.state) if entity is not None else "starting"
        ok = state in (HealthState.healthy, HealthState.degraded)
        return ok, {
            "status": state,
            "reason": None if entity is None else entity.data.get("reason"),
            "components": {
                name: {
                    "state": str(e.state),
                    "reason": e.data.get("reason"),
                    "pauses_entry": e.data.get("pauses_entry"),
                }
                for name, e in self.entities.items()
                if name != KERNEL
            },
        }

    def levels(self) -> dict[str, int]:
        """Each entity's level for ``/metrics``: 0 healthy, 1 degraded, 2 unhealthy, 3 otherwise."""
        levels = {"healthy": 0, "degraded": 1, "unhealthy": 2}
        return {name: levels.get(str(e.state), 3) for name, e in self.entities.items()}

    def stop_all(self, reason: str) -> None:
        """Fire ``stop`` on every health entity (journaled; committed by the caller)."""
        now = self._now_ms()
        for entity in self.entities.values():
            with contextlib.suppress(TransitionRefused):
                self.journal.fire(HEALTH, entity, "stop", now_ms=now, reason=reason)


__all__ = ["HEALTH_INTERVAL_S", "JOURNAL_PROBE_MS", "HealthMonitor", "thresholds_of"]
