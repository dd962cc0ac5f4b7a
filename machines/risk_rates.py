"""Order and cancel rates: immutable sliding windows of recent timestamps (ms) for the rate limits.

The kernel keeps one ``Rates`` value and replaces it after each order or cancel it lets out
(``rates = rates.record_order(now_ms, limits)``); ``machines.risk`` asks it whether one more fits.
Time is an argument: nothing here reads a clock.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from machines.risk_limits import Limits, RiskError

SECOND_MS = 1000
MINUTE_MS = 60_000


class RateClockError(RiskError, ValueError):
    """An event was recorded before the last one: the clock given to the rates went backwards."""


@dataclass(frozen=True, slots=True)
class RateWindow:
    """Timestamps (ms, ascending) of recent events in a sliding window of ``window_ms``.

    An event at ``t`` counts at ``now_ms`` while ``now_ms - t < window_ms``: with a 1000 ms window,
    an event at 0 still counts at 999 and no longer at 1000. Immutable: ``record`` returns a new
    window holding only the events that still count.
    """

    window_ms: int
    times: tuple[int, ...] = ()

    def count(self, now_ms: int) -> int:
        """How many events count at ``now_ms``."""
        times = self.times
        return len(times) - bisect_right(times, now_ms - self.window_ms)

    def allows(self, now_ms: int, limit: int) -> bool:
        """True when one more event at ``now_ms`` keeps the count within ``limit``."""
        times = self.times
        return len(times) < limit or len(times) - bisect_right(times, now_ms - self.window_ms) < limit

    def record(self, now_ms: int) -> RateWindow:
        """This window with an event at ``now_ms`` added and expired ones dropped.

        Raises ``RateClockError`` (a ``ValueError``) when ``now_ms`` is before the last event (the
        clock must be monotonic).
        """
        times = self.times
        if times and now_ms < times[-1]:
            raise RateClockError(f"now_ms {now_ms} is before the last recorded event {times[-1]}")
        start = bisect_right(times, now_ms - self.window_ms)
        return RateWindow(self.window_ms, (*times[start:], now_ms))


@dataclass(frozen=True, slots=True)
class Rates:
    """Recent orders (new and replace) and cancels. Start with ``Rates()``; after each intent that
    leaves the process, replace it with ``record_order`` / ``record_cancel``."""

    orders_second: RateWindow = RateWindow(SECOND_MS)
    orders_minute: RateWindow = RateWindow(MINUTE_MS)
    cancels_second: RateWindow = RateWindow(SECOND_MS)

    def record_order(self, now_ms: int, limits: Limits) -> Rates:
        """These rates with an order at ``now_ms``, in each window whose limit is on (an unlimited
        window would only grow)."""
        return Rates(
            self.orders_second if limits.orders_per_second is None else self.orders_second.record(now_ms),
            self.orders_minute if limits.orders_per_minute is None else self.orders_minute.record(now_ms),
            self.cancels_second,
        )

    def record_cancel(self, now_ms: int, limits: Limits) -> Rates:
        """These rates with a cancel at ``now_ms`` (recorded only while ``cancels_per_second`` is on)."""
        if limits.cancels_per_second is None:
            return self
        return Rates(self.orders_second, self.orders_minute, self.cancels_second.record(now_ms))


__all__ = ["MINUTE_MS", "SECOND_MS", "RateClockError", "RateWindow", "Rates"]
