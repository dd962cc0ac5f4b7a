"""REST GETs of the live venues (Binance's depth snapshots and exchange info) over httpx, with
timeouts, retries through tenacity, and the venue's weight limits respected.

``RestClient(base_url)``: ``await client.get(path)`` returns the body text of a 200 answer.

* Timeouts and transport errors, and 5xx answers, are retried with an exponential wait.
* 429 (too many requests) and 418 (IP banned after ignoring 429s) set a pause for EVERY request of
  this client until ``Retry-After`` seconds from now (default ``DEFAULT_RETRY_AFTER_S``), then retry.
* Requests are staggered: at most one every ``stagger_s`` seconds per client, so resyncing many
  symbols never becomes a storm of snapshots.
* Any other answer (400 for an unknown symbol ...) raises ``RestFailed`` at once; so does a
  retryable failure once the retries are spent (``stop``, by default 5 attempts).
* ``on_rest(path, status, body, t_ns)`` is told of every answer received (``--record``).

``sleep`` and ``stop`` are injectable (tests use a fake sleep that records the waits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential
from tenacity.stop import StopBaseT

from kernel.feed.errors import FeedError
from kernel.feed.source import RestTap

log = logging.getLogger(__name__)

RATE_LIMITED: Final = frozenset({429, 418})
"""Binance: 429 when a weight limit is hit, 418 when an IP kept sending after a 429."""
DEFAULT_RETRY_AFTER_S: Final = 10.0
"""The pause after a rate-limit answer without a usable ``Retry-After``."""
MAX_RETRY_AFTER_S: Final = 86_400.0
"""The longest ``Retry-After`` believed (a longer or negative one is read as this bound or 0)."""
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_STAGGER_S: Final = 0.5
"""Binance's depth with limit=1000 weighs 50 of 6000 a minute: two a second stays below the limit."""

Sleep = Callable[[float], Awaitable[None]]


class RestFailed(FeedError):
    """A REST request that did not succeed: an answer retrying cannot fix, or retries spent."""


class _Retryable(FeedError):
    def __init__(self, reason: str, *, rate_limited: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rate_limited = rate_limited


def retry_after_seconds(header: str | None) -> float:
    """``Retry-After`` (whole seconds) as a pause, bounded; ``DEFAULT_RETRY_AFTER_S`` if absent or not a number."""
    if header is None or not header.strip().isdigit():
        return DEFAULT_RETRY_AFTER_S
    return min(float(int(header.strip())), MAX_RETRY_AFTER_S)


class RestClient:
    """GETs under ``base_url`` (see the module docstring). ``http``: a shared ``httpx.AsyncClient``
    (else one is opened per request and closed after it); ``clock``: monotonic seconds."""

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        stagger_s: float = DEFAULT_STAGGER_S,
        stop: StopBaseT | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_rest: RestTap | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.timeout = timeout
        self.stagger_s = stagger_s
        self.stop: StopBaseT = stop if stop is not None else stop_after_attempt(5)
        self.sleep = sleep
        self.clock = clock
        self.on_rest = on_rest
        self.requests = 0
        self._lock = asyncio.Lock()
        self._not_before = 0.0
        self._last_request: float | None = None
        self._backoff = wait_exponential(multiplier=0.5, max=8)

    async def get(self, path: str) -> str:
        """The body of ``GET {base_url}{path}`` answered 200; ``RestFailed`` otherwise (see above)."""
        retrying = AsyncRetrying(
            stop=self.stop,
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(path)
        except _Retryable as exc:
            raise RestFailed(f"GET {path}: {exc.reason} (retries spent)") from None
        raise RestFailed(f"GET {path}: no attempt made")  # only with a stop that allows none

    def _wait(self, state: RetryCallState) -> float:
        """Rate limits wait in the gate (for every request); other failures back off exponentially."""
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, _Retryable) and error.rate_limited:
            return 0.0
        return float(self._backoff(state))

    async def _gate(self) -> None:
        """Wait out a rate-limit pause and the stagger since the previous request (one at a time)."""
        async with self._lock:
            now = self.clock()
            due = self._not_before
            if self._last_request is not None:
                due = max(due, self._last_request + self.stagger_s)
            if due > now:
                await self.sleep(due - now)
            self._last_request = self.clock()

    async def _once(self, path: str) -> str:
        await self._gate()
        url = self.base_url + path
        self.requests += 1
        try:
            if self.http is None:
                async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as http:
                    response = await http.get(url)
            else:
                response = await self.http.get(url, timeout=self.timeout)
        except httpx.TimeoutException:
            log.warning("GET %s: no answer within %ss", url, self.timeout)
            raise _Retryable(f"no answer within {self.timeout}s") from None
        except httpx.TransportError as exc:
            log.warning("GET %s failed: %r", url, exc)
            raise _Retryable(f"transport error: {exc!r}"[:200]) from None
        status, body = response.status_code, response.text
        if self.on_rest is not None:
            self.on_rest(path, status, body, time.time_ns())
        if status in RATE_LIMITED:
            pause = retry_after_seconds(response.headers.get("Retry-After"))
            self._not_before = max(self._not_before, self.clock() + pause)
            log.warning("GET %s: HTTP %d, every request of %s waits %ss", url, status, self.base_url, pause)
            raise _Retryable(f"HTTP {status}: rate limited for {pause}s", rate_limited=True)
        if status >= 500:
            raise _Retryable(f"HTTP {status}")
        if status != 200:
            raise RestFailed(f"GET {path}: HTTP {status}: {body[:160]}")
        return body
