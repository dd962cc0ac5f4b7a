"""One timer that wakes a receive loop at a deadline: the feed's stale check (issue 17).

Arming ``asyncio.timeout`` around every ``recv()`` cost a timer handle, its heap entry and its
cancellation per frame (~4 µs, a quarter of a message's cost). A ``Watchdog`` is armed once, at
the earliest deadline its ``deadline()`` gives. Fresh data only moves the deadlines later, so the
timer may fire early: it then re-reads the deadline and sleeps on. When a deadline is really due it
sets ``due`` and, if the loop is waiting in ``wait()``, wakes it the way a timeout does (cancels
the task, and takes that cancellation back: any other cancellation still propagates). The loop
must call ``arm()`` after anything that may move the deadline earlier (a state change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kernel.feed.errors import FeedMisuse

T = TypeVar("T")


class Watchdog:
    """Wake the current task's ``wait()`` when ``deadline()`` (ms on ``now_ms``'s clock) is due.

    ``deadline()`` returns ``None`` while there is nothing to watch. Create it in the task that
    waits; ``close()`` it when that task is done waiting.
    """

    def __init__(self, deadline: Callable[[], int | None], now_ms: Callable[[], int]) -> None:
        task = asyncio.current_task()
        if task is None:
            raise FeedMisuse("a Watchdog belongs to a task: create it in the one that waits")
        self._task = task
        self._base = task.cancelling()
        self._deadline = deadline
        self._now_ms = now_ms
        self._timer: asyncio.TimerHandle | None = None
        self.waiting = self._woke = False
        """The task is waiting (``wait()``, or a loop that sets this around its own ``await``)."""
        self.due = False
        """A deadline passed: the loop should check it (and clear this)."""
        self.arm()

    def arm(self) -> None:
        """Set the timer to the deadline as it is now (or none)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due_ms = self._deadline()
        if due_ms is not None:
            delay = max(due_ms - self._now_ms(), 0) / 1000
            self._timer = asyncio.get_running_loop().call_later(delay, self._fired)

    def close(self) -> None:
        """Stop watching."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = lambda: None

    async def wait(self, awaitable: Awaitable[T]) -> T | None:
        """``await awaitable``, or ``None`` when the watchdog woke the task first (``due`` is set)."""
        self.waiting = True
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self.took_back():
                return None
            raise
        finally:
            self.waiting = False

    def took_back(self) -> bool:
        """Called on a ``CancelledError`` that ended a wait: true when it was the watchdog's wake-up
        and nobody else's (it is taken back: the loop goes on); false when it must propagate."""
        woken, self._woke = self._woke, False
        return woken and self._task.uncancel() <= self._base

    def _fired(self) -> None:
        self._timer = None
        due_ms = self._deadline()
        if due_ms is None:
            return
        if due_ms > self._now_ms():  # fresh data meanwhile: sleep on until the new deadline
            self.arm()
            return
        self.due = True
        if self.waiting and not self._woke:
            self._woke = True
            self._task.cancel()
