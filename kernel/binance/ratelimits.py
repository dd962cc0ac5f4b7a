"""Binance rate limits, read and enforced locally. Pure: every time is an argument.

Binance counts ``REQUEST_WEIGHT`` per IP (e.g. 6000 per minute) and ``ORDERS`` per account (e.g.
50 per 10 s and 160000 per day) in fixed windows, and reports the usage in ``rateLimits`` on every
response. Over a limit a request fails with status 429 and ``retryAfter`` (epoch ms when one may
send again); repeated violations ban the IP: status 418, ``retryAfter`` is when the ban ends.

* ``limit_of``: one ``rateLimits`` entry as a ``Limit`` (the 429/418 pauses themselves are
  ``kernel.binance.session``'s).
* ``RateLimitTracker``: fed the ``rateLimits`` of each answer (``observe``) and each order we send
  (``note_order``); ``order_pause_ms`` says whether one more order would go over an ``ORDERS``
  limit (counted locally between answers) and for how long to hold it, so the risk layer denies
  it before Binance refuses it.

Times are Binance's clock (``ServerClock.now``): the windows are aligned to it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass

from kernel.binance.errors import BinanceWireError
from kernel.binance.wire import RateLimit

INTERVAL_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
"""Length of each ``interval`` unit Binance uses."""
ORDERS = "ORDERS"
REQUEST_WEIGHT = "REQUEST_WEIGHT"


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: ``kind`` (``ORDERS``, ``REQUEST_WEIGHT``, ``RAW_REQUESTS``), window ``window_ms``,
    ``limit`` per window, and ``count`` used (None when not reported, as in ``exchangeInfo``)."""

    kind: str
    window_ms: int
    limit: int
    count: int | None = None


def limit_of(row: RateLimit) -> Limit:
    """A ``rateLimits`` entry as a ``Limit``.
    Raises ``BinanceWireError`` for an unknown interval or a non-positive window."""
    unit = INTERVAL_MS.get(row.interval)
    if unit is None or row.interval_num < 1:
        raise BinanceWireError(f"rate limit {row.rate_limit_type}: unknown interval {row.interval_num} {row.interval}")
    return Limit(row.rate_limit_type, unit * row.interval_num, row.limit, row.count)


def _window_start(at_ms: int, window_ms: int) -> int:
    return at_ms - at_ms % window_ms


@dataclass(slots=True)
class _Usage:
    limit: Limit
    seen_at_ms: int


class RateLimitTracker:
    """The latest reported usage of each limit plus the orders sent since, by window."""

    __slots__ = ("_orders", "_usage")

    def __init__(self, limits: Iterable[Limit] = ()) -> None:
        """Start from ``limits`` (e.g. ``exchangeInfo``'s, without counts)."""
        self._usage: dict[tuple[str, int], _Usage] = {}
        self._orders: list[int] = []
        for limit in limits:
            self._usage[(limit.kind, limit.window_ms)] = _Usage(limit, 0)

    def observe(self, rows: Iterable[RateLimit], at_ms: int) -> None:
        """Take the ``rateLimits`` of an answer Binance sent at ``at_ms``."""
        for row in rows:
            limit = limit_of(row)
            self._usage[(limit.kind, limit.window_ms)] = _Usage(limit, at_ms)

    def note_order(self, at_ms: int) -> None:
        """Count one order request (place, cancel-replace) sent at ``at_ms``; orders older than the
        longest ``ORDERS`` window are forgotten."""
        insort(self._orders, at_ms)
        longest = max((limit.window_ms for limit in self.limits(ORDERS)), default=0)
        del self._orders[: bisect_left(self._orders, _window_start(at_ms, longest) if longest else at_ms)]

    def limits(self, kind: str | None = None) -> list[Limit]:
        """The limits known (of ``kind`` when given), shortest window first."""
        found = [u.limit for key, u in self._usage.items() if kind is None or key[0] == kind]
        return sorted(found, key=lambda limit: (limit.kind, limit.window_ms))

    def order_count(self, window_ms: int, now_ms: int) -> int:
        """Orders counted in the ``ORDERS`` window of ``window_ms`` holding ``now_ms``: the count
        reported in that window plus the orders sent after the report (or all the window's orders
        sent, when nothing was reported in it)."""
        start = _window_start(now_ms, window_ms)
        usage = self._usage.get((ORDERS, window_ms))
        if usage is not None and usage.limit.count is not None and usage.seen_at_ms >= start:
            # The report counts what was sent up to it; count what went after.
            base, first = usage.limit.count, bisect_right(self._orders, usage.seen_at_ms)
        else:
            base, first = 0, bisect_left(self._orders, start)
        return base + max(0, bisect_right(self._orders, now_ms) - first)

    def order_pause_ms(self, now_ms: int) -> int:
        """0 when one more order fits every ``ORDERS`` limit at ``now_ms``; else how long until the
        fullest window ends (the order should be denied locally, not sent)."""
        wait = 0
        for limit in self.limits(ORDERS):
            if self.order_count(limit.window_ms, now_ms) + 1 > limit.limit:
                wait = max(wait, _window_start(now_ms, limit.window_ms) + limit.window_ms - now_ms)
        return wait

    def order_allowed(self, now_ms: int) -> bool:
        """True when one more order fits every ``ORDERS`` limit (``order_pause_ms`` is 0)."""
        return self.order_pause_ms(now_ms) == 0

    def weight_pause_ms(self, weight: int, now_ms: int) -> int:
        """0 when a request of ``weight`` fits the reported ``REQUEST_WEIGHT`` usage; else how long
        until that window ends. Weight used since the last report is not counted locally."""
        wait = 0
        for limit in self.limits(REQUEST_WEIGHT):
            usage = self._usage[(REQUEST_WEIGHT, limit.window_ms)]
            start = _window_start(now_ms, limit.window_ms)
            used = limit.count if limit.count is not None and usage.seen_at_ms >= start else 0
            if used + weight > limit.limit:
                wait = max(wait, start + limit.window_ms - now_ms)
        return wait
