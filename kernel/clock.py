"""The process clocks, in integer milliseconds. Machines never read them: the shell passes times in."""

from __future__ import annotations

import time


def wall_ms() -> int:
    """Milliseconds since the epoch (the strategy's ``ctx.now_ms``, journal timestamps for humans)."""
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    """The monotonic clock in milliseconds (machine timers, deadlines, health)."""
    return time.monotonic_ns() // 1_000_000
