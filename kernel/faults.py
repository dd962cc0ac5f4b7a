"""Crash points for the kill -9 torture test: the process SIGKILLs itself at a named point.

``TRADEKERNEL_CRASH_AT="NAME:N"`` (read once, at import) makes the N-th call of
``crash_point("NAME")`` kill the process with SIGKILL, exactly as an OOM kill or power loss would:
no cleanup, no flush, nothing after it runs. Unset (always, outside tests) every call is one
comparison. The named points:

* ``after_commit``: a new order's ``create`` + ``submit`` is committed, nothing sent yet;
* ``after_send``: the new order has just been handed to the socket;
* ``reconciling``: a reconciliation entity is committed, nothing reconciled yet;
* ``after_report_commit``: a venue report with a fill is committed at ``normal``
  (``kernel.orders.VENUE_FACTS``), nobody told of it yet (``after_report_commit``).

``TRADEKERNEL_STALL_COMMIT="N:SECONDS"`` (read once, at import) makes the N-th journal commit of
the kernel process (counted once start-up has prepared the journal) block for SECONDS inside its
transaction, write lock held, as a hung ``fsync`` (``fsfreeze``, a dying disk) would: the event
loop is frozen for that long (``stall_commit``, the journal's ``in_commit`` hook, set by the
kernel only when the variable is set).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable

from kernel.errors import KernelError
from machines import Transition

log = logging.getLogger(__name__)

POINTS = ("after_commit", "after_send", "reconciling", "after_report_commit")


class CrashPointError(KernelError, ValueError):
    """``TRADEKERNEL_CRASH_AT`` is set but does not name a crash point."""


class StallSpecError(KernelError, ValueError):
    """``TRADEKERNEL_STALL_COMMIT`` is set but is not ``N:SECONDS``."""


def _parse(spec: str) -> tuple[str, int] | None:
    name, _, count = spec.partition(":")
    if not spec:
        return None
    if name not in POINTS or not count.isdigit() or int(count) < 1:
        raise CrashPointError(f"TRADEKERNEL_CRASH_AT must be NAME:N with NAME one of {', '.join(POINTS)}, got {spec!r}")
    return name, int(count)


_TARGET = _parse(os.environ.get("TRADEKERNEL_CRASH_AT", ""))
_hits = 0


def crash_point(name: str) -> None:
    """Kill this process here if ``TRADEKERNEL_CRASH_AT`` names this point and this is its N-th hit."""
    global _hits
    if _TARGET is None or _TARGET[0] != name:
        return
    _hits += 1
    if _hits == _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def after_report_commit(normal: bool, changes: Iterable[tuple[object, Transition]]) -> None:
    """The crash point ``after_report_commit``, called after each order manager commit: counts the
    ``normal`` commits of venue reports that carried an order ``fill`` (not reconciliation's
    ``reconcile_fill``: a kill while reconciling is the point ``reconciling``). Unset, one comparison."""
    if _TARGET is None or _TARGET[0] != "after_report_commit" or not normal:
        return
    if any(t.machine == "order" and t.trigger == "fill" for _, t in changes):
        crash_point("after_report_commit")


def _parse_stall(spec: str) -> tuple[int, float] | None:
    if not spec:
        return None
    count, _, seconds = spec.partition(":")
    try:
        n, duration = int(count), float(seconds)
    except ValueError:
        n, duration = 0, 0.0
    if n < 1 or not 0 < duration <= 3600:
        raise StallSpecError(f"TRADEKERNEL_STALL_COMMIT must be N:SECONDS (N >= 1, 0 < SECONDS <= 3600), got {spec!r}")
    return n, duration


STALL = _parse_stall(os.environ.get("TRADEKERNEL_STALL_COMMIT", ""))
"""(N, seconds) of ``TRADEKERNEL_STALL_COMMIT``, or ``None`` (always, outside tests)."""
_commits = 0


def stall_commit() -> None:
    """The journal's ``in_commit`` hook under ``TRADEKERNEL_STALL_COMMIT``: block the N-th commit."""
    global _commits
    if STALL is None:
        return
    _commits += 1
    if _commits == STALL[0]:
        log.warning("stalling journal commit %d for %g s (TRADEKERNEL_STALL_COMMIT)", _commits, STALL[1])
        time.sleep(STALL[1])  # the fault itself: a write that does not return
        log.warning("journal commit %d resumes after its stall", _commits)
