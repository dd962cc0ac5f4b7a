"""Backing off when the venue says ``rate_limited``: a pure decision on an immutable value.

The venue answers an order request over its rate with ``rate_limited`` and a ``retry_after_ms``
hint (docs/venue-protocol.md, "Limits"). The kernel's order is ended (rejected, never resent),
and new orders and replaces are paused until the hint has passed: ``VenueBackoff`` says until
when. The shell keeps one value and replaces it with ``rate_limited(...)`` on each answer; before
a new order or a replace it asks ``block(now_ms)``. Cancels are never paused (they only reduce
risk). Time is an argument: nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from machines.risk_limits import RiskError

DEFAULT_BACKOFF_MS = 1_000
"""The pause when the venue gives no (or no positive) ``retry_after_ms``."""
MAX_BACKOFF_MS = 60_000
"""The longest pause one answer can ask for: a larger hint is capped (a venue cannot stop us for good)."""


class BackoffError(RiskError, ValueError):
    """A back-off fact that cannot be used (a negative time)."""


@dataclass(frozen=True, slots=True)
class VenueBackoff:
    """New orders and replaces wait while ``now_ms < until_ms``; ``answers`` counts the
    ``rate_limited`` answers seen, ``reason`` is the last one's message."""

    until_ms: int = 0
    answers: int = 0
    reason: str = ""

    def rate_limited(self, now_ms: int, retry_after_ms: int | None, reason: str) -> VenueBackoff:
        """This back-off after a ``rate_limited`` answer at ``now_ms``: paused for ``retry_after_ms``
        (``DEFAULT_BACKOFF_MS`` without a positive one, at most ``MAX_BACKOFF_MS``), never shorter
        than a pause already running. Raises ``BackoffError`` for a negative ``now_ms``."""
        if now_ms < 0:
            raise BackoffError(f"now_ms must be >= 0, got {now_ms}")
        pause = retry_after_ms if retry_after_ms is not None and retry_after_ms > 0 else DEFAULT_BACKOFF_MS
        until = max(self.until_ms, now_ms + min(pause, MAX_BACKOFF_MS))
        return VenueBackoff(until, self.answers + 1, reason)

    def paused(self, now_ms: int) -> bool:
        """True while new orders and replaces wait."""
        return now_ms < self.until_ms

    def block(self, now_ms: int) -> str | None:
        """Why a new order or replace may not go out at ``now_ms`` (``None``: it may)."""
        if not self.paused(now_ms):
            return None
        return f"venue rate limited: new orders paused for {self.until_ms - now_ms} ms ({self.reason})"


__all__ = ["DEFAULT_BACKOFF_MS", "MAX_BACKOFF_MS", "BackoffError", "VenueBackoff"]
