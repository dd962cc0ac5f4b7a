"""The out-of-band snapshots of one connection (a ``SnapshotSource``'s, e.g. Binance's REST depth).

``SnapshotTasks`` runs ``source.snapshot(instrument)`` in a task per instrument (never two at once
for the same one) while the client keeps reading the socket, hands each result to ``deliver``,
and tells ``failed`` of a ``SnapshotFailed`` (the client then drops the connection: the feed
reconnects after the machine's backoff). ``close()`` cancels whatever is still running (the
connection ended). Spacing the requests out is the source's business (``rest.RestClient``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from kernel.feed.events import FeedEvent
from kernel.feed.source import SnapshotFailed, SnapshotSource

log = logging.getLogger(__name__)


class SnapshotTasks:
    """At most one snapshot in flight per instrument, for one connection."""

    def __init__(
        self,
        source: SnapshotSource,
        deliver: Callable[[list[FeedEvent]], Awaitable[None]],
        failed: Callable[[str, SnapshotFailed], Awaitable[None]],
    ) -> None:
        self._source = source
        self._deliver = deliver
        self._failed = failed
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.requested = 0

    def request(self, instrument: str) -> None:
        """Fetch a snapshot of ``instrument`` unless one is already on its way."""
        running = self._tasks.get(instrument)
        if running is not None and not running.done():
            return
        self.requested += 1
        self._tasks[instrument] = asyncio.create_task(self._fetch(instrument), name=f"snapshot-{instrument}")

    def pending(self) -> list[str]:
        """The instruments whose snapshot is on its way."""
        return [instrument for instrument, task in self._tasks.items() if not task.done()]

    async def _fetch(self, instrument: str) -> None:
        try:
            events = await self._source.snapshot(instrument)
        except SnapshotFailed as exc:
            log.error("snapshot of %s failed: %s", instrument, exc)
            await self._failed(instrument, exc)
            return
        await self._deliver(events)

    async def close(self) -> None:
        """Cancel every snapshot still running and wait for them to end."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a delivery that failed: already logged by the task itself
                log.exception("snapshot task ended with an error")
        self._tasks.clear()
