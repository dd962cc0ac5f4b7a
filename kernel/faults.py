"""Crash points for the kill -9 torture test: the process SIGKILLs itself at a named point.

``TRADEKERNEL_CRASH_AT="NAME:N"`` (read once, at import) makes the N-th call of
``crash_point("NAME")`` kill the process with SIGKILL, exactly as an OOM kill or power loss would:
no cleanup, no flush, nothing after it runs. Unset (always, outside tests) every call is one
comparison. The named points:

* ``after_commit``: a new order's ``create`` + ``submit`` is committed, nothing sent yet;
* ``after_send``: the new order has just been handed to the socket;
* ``reconciling``: a reconciliation entity is committed, nothing reconciled yet.
"""

from __future__ import annotations

import os
import signal

from kernel.errors import KernelError

POINTS = ("after_commit", "after_send", "reconciling")


class CrashPointError(KernelError, ValueError):
    """``TRADEKERNEL_CRASH_AT`` is set but does not name a crash point."""


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
