"""One WebSocket API connection to Binance spot, kept up: requests and their answers, events.

``WsApiSession`` opens ``ws_api_url`` (``/ws-api/v3``), runs ``on_open`` (the client syncs the
server clock and subscribes to the user data stream there) and only then counts the session as up
(``generation`` + 1). A dropped connection is re-opened with capped exponential backoff plus
jitter, forever, until ``close()``.

Requests are JSON text frames ``{"id", "method", "params"}``; the answer with the same ``id``
resolves the request's future, or the request times out (``VenueTimeout``: it may still have been
served; nothing is ever re-sent by this module). An answer with an ``error`` raises the matching
``BinanceError``; ``status`` 429 pauses every request until ``retryAfter``, 418 (an IP ban) halts
them until the ban ends: meanwhile ``request`` raises ``BinanceRateLimited``/``BinanceBanned``
without sending. Every answer's ``rateLimits`` is kept in ``rate_limits``. Frames with an
``event`` go to ``on_event``; a ``serverShutdown`` event recycles the connection at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from kernel.binance import wire
from kernel.binance.errors import (
    CANCEL_REPLACE_FAILED,
    BinanceBanned,
    BinanceError,
    BinanceRateLimited,
    BinanceWireError,
    error_of,
)
from kernel.execution import VenueError, VenueTimeout, VenueUnavailable
from kernel.net import redact_url

log = logging.getLogger(__name__)

Json = dict[str, Any]
PAUSE_FALLBACK_MS = 1_000
"""The pause after a 429 that gives no ``retryAfter``."""
BAN_FALLBACK_MS = 120_000
"""The halt after a 418 that gives no ``retryAfter`` (Binance's shortest ban is 2 minutes)."""
Clock = Callable[[], int]
Sleep = Callable[[float], Awaitable[None]]


class WsApiSession:
    """A kept-up connection to Binance's WebSocket API (see the module docstring).

    ``on_open(session)`` runs on each new connection before it counts as up (it may send
    requests; raising recycles the connection). ``on_event(event)`` gets each event object;
    ``now_ms`` is the local wall clock in ms (injectable)."""

    def __init__(
        self,
        url: str,
        *,
        on_open: Callable[[WsApiSession], Awaitable[None]],
        on_event: Callable[[wire.UserEvent], Awaitable[None]],
        now_ms: Clock,
        open_timeout: float = 10.0,
        backoff: float = 0.2,
        backoff_max: float = 5.0,
        jitter: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.url = url
        self._on_open = on_open
        self._on_event = on_event
        self._now_ms = now_ms
        self._open_timeout = open_timeout
        self._backoff, self._backoff_max, self._jitter = backoff, backoff_max, jitter
        self._sleep = sleep
        self._ws: ClientConnection | None = None  # open, maybe not yet up
        self._up = False
        self._pending: dict[str, asyncio.Future[wire.Response]] = {}
        self._ids = itertools.count(1)
        self._generation = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.paused_until_ms = 0
        """Requests are refused locally until then (a 429 answer's ``retryAfter``)."""
        self.banned_until_ms = 0
        """Requests are refused locally until then (a 418 answer: an IP ban)."""
        self.rate_limits: list[wire.RateLimit] = []
        """The ``rateLimits`` of the latest answer that had them."""
        self.connect_attempts = 0
        self.malformed_frames = 0
        self.last_error: str = ""

    # -- state --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session is up (opened and ``on_open`` done)."""
        return self._up and self._ws is not None

    @property
    def generation(self) -> int:
        """Sessions that came up so far."""
        return self._generation

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_connected(self, after: int = 0) -> int:
        """Wait for a session with ``generation > after``; ``VenueUnavailable`` once closed."""
        while True:
            if self._closed:
                raise VenueUnavailable("Binance client is closed")
            if self.connected and self._generation > after:
                return self._generation
            await self._changed.wait()

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background, and keep reconnecting until ``close()``. Idempotent."""
        if self._closed:
            raise VenueUnavailable("Binance client is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"binance-ws-api {redact_url(self.url)}")

    async def close(self) -> None:
        """Close the connection and stop reconnecting; wakes every waiter. Idempotent."""
        self._closed = True
        task, self._task = self._task, None
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lost("client closed")

    async def recycle(self, reason: str) -> None:
        """Drop the current connection (the run loop opens a new one)."""
        log.warning("Binance connection recycled: %s", reason)
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            try:
                ws = await self._open()
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                failures += 1
                self.last_error = f"cannot connect to {redact_url(self.url)}: {exc!r}"
                await self._wait_before_retry(failures, self.last_error)
                continue
            reader = asyncio.create_task(self._read(ws), name="binance-ws-api-reader")
            try:
                await self._on_open(self)
            except Exception as exc:  # any failure to set the session up: a new connection tries again
                failures += 1
                self.last_error = f"session set-up failed: {exc}"
                if not isinstance(exc, BinanceError | VenueError | OSError | ConnectionClosed):
                    log.exception("Binance session set-up raised")
                await ws.close()
                reason = await reader
                self._lost(reason)
                await self._wait_before_retry(failures, self.last_error)
                continue
            failures = 0
            self._up = True
            self._generation += 1
            log.info("Binance WebSocket API session up (generation %d)", self._generation)
            self._notify()
            reason = await reader
            self._lost(reason)
            if not self._closed:
                log.warning("Binance connection lost (%s); reconnecting", reason)

    async def _wait_before_retry(self, failures: int, why: str) -> None:
        delay = min(self._backoff * 2 ** (failures - 1), self._backoff_max) + random.uniform(0, self._jitter)
        level = logging.WARNING if failures <= 5 or failures % 30 == 0 else logging.DEBUG
        log.log(level, "%s; retrying in %.2fs (attempt %d)", why, delay, failures)
        await self._sleep(delay)

    async def _open(self) -> ClientConnection:
        self.connect_attempts += 1
        try:
            ws = await connect(self.url, open_timeout=self._open_timeout, max_size=2**24, close_timeout=2.0)
        except InvalidURI as exc:
            raise VenueError(f"bad Binance WebSocket API url {redact_url(self.url)!r}") from exc
        self._ws = ws
        return ws

    def _lost(self, reason: str) -> None:
        self._ws = None
        self._up = False
        error = VenueUnavailable(f"connection to Binance lost: {reason}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._notify()

    async def _read(self, ws: ClientConnection) -> str:
        try:
            async for frame in ws:
                await self._dispatch(frame)
        except ConnectionClosed as exc:
            return str(exc)
        except Exception as exc:  # a bug in a handler: recycle, never die silently
            log.exception("Binance reader failed; connection recycled")
            with contextlib.suppress(Exception):
                await ws.close()
            return f"reader failed: {exc!r}"
        return "closed by Binance"

    async def _dispatch(self, frame: str | bytes) -> None:
        try:
            message = wire.decode_frame(frame)
        except BinanceWireError as exc:
            self.malformed_frames += 1
            log.warning("malformed Binance frame skipped: %s", exc)
            return
        if isinstance(message, wire.EventFrame):
            try:
                event = wire.decode_event(message.event)
            except BinanceWireError as exc:
                self.malformed_frames += 1
                log.warning("malformed Binance event skipped: %s", exc)
                return
            if isinstance(event, wire.ServerShutdownEvent):
                await self.recycle("serverShutdown event")
                return
            await self._on_event(event)
            return
        future = self._pending.pop(str(message.id), None)
        if future is not None and not future.done():
            future.set_result(message)
        else:
            log.info("Binance answer nobody waits for (timed out?) ignored: id %r", message.id)

    # -- requests -----------------------------------------------------------------------------

    def check_allowed(self) -> None:
        """Raise ``BinanceBanned``/``BinanceRateLimited`` while requests are held back."""
        now = self._now_ms()
        if now < self.banned_until_ms:
            raise BinanceBanned(-1003, "IP banned by Binance (status 418); no request sent", self.banned_until_ms)
        if now < self.paused_until_ms:
            raise BinanceRateLimited(-1003, "rate limited (status 429); no request sent", self.paused_until_ms)

    async def request(
        self, method: str, params: Json | None, timeout: float, *, during_open: bool = False
    ) -> wire.Response:
        """Send ``method`` with ``params``; return the answer (``status`` 200; ``wire.decode_result``
        reads its ``result``).

        Raises ``VenueUnavailable`` (not sent, or the connection dropped before the answer),
        ``VenueTimeout`` (no answer in time: it may have been served), ``BinanceError`` (refused)."""
        ws = self._ws
        if ws is None or not (self._up or during_open):
            raise VenueUnavailable(f"not connected to Binance; {method} not sent")
        self.check_allowed()
        request_id = str(next(self._ids))
        future: asyncio.Future[wire.Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = msgspec.json.encode(
            {"id": request_id, "method": method, **({"params": params} if params else {})}
        ).decode()
        try:
            try:
                await ws.send(frame)
            except ConnectionClosed as exc:
                raise VenueUnavailable(f"connection lost while sending {method}: {exc}") from exc
            try:
                async with asyncio.timeout(timeout):
                    answer = await future
            except TimeoutError:
                raise VenueTimeout(f"no answer to {method} (request {request_id}) within {timeout}s") from None
        finally:
            self._pending.pop(request_id, None)
        return self._result(method, answer)

    def _result(self, method: str, answer: wire.Response) -> wire.Response:
        if answer.rate_limits:
            self.rate_limits = answer.rate_limits
        if answer.status == 200:
            return answer
        error = answer.error or wire.ErrorObject(code=0, msg=f"status {answer.status} without an error")
        data = error.data or {}
        retry_at = data.get("retryAfter")
        now = self._now_ms()
        if answer.status == 418:
            self.banned_until_ms = retry_at if isinstance(retry_at, int) else now + BAN_FALLBACK_MS
            log.error("Binance banned this IP until %d (418): order entry halted until then", self.banned_until_ms)
        elif answer.status == 429:
            self.paused_until_ms = retry_at if isinstance(retry_at, int) else now + PAUSE_FALLBACK_MS
            log.warning("Binance rate limit hit (429): requests paused until %d", self.paused_until_ms)
        code, msg = error.code, error.msg
        cancel = data.get("cancelResponse")
        if code == CANCEL_REPLACE_FAILED and isinstance(cancel, dict) and isinstance(cancel.get("code"), int):
            code, msg = cancel["code"], str(cancel.get("msg", ""))  # why the cancel half failed
        raise error_of(answer.status, code, msg, error.data)
