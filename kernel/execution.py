"""Order entry to a venue: the ``ExecutionClient`` interface and ``VenueClient``, its WebSocket shell.

``ExecutionClient`` is everything the order manager needs from a venue: send orders, cancels and
replaces, ask for status, and a stream of execution reports. The paper venue and a live adapter
present the same interface, so ``machines/`` and ``storage/`` never change with the venue.

``VenueClient`` speaks the venue protocol (``docs/venue-protocol.md``) over one WebSocket:

* ``hello`` first, and the session is refused unless ``welcome.version`` is ours.
* Requests carry an ``id``; answers resolve a future keyed by it, or time out (``VenueTimeout``).
* ``execution`` reports and duplicate ``order_status_report`` answers go to one report queue that
  outlives connections; nothing is dropped (a full queue pushes back on the socket instead).
* A malformed frame is counted and logged, never fatal.
* A dropped connection is re-established with capped exponential backoff plus jitter
  (``tenacity``): forever with ``attempts=None`` (what the kernel uses: a venue outage pauses order
  entry, it never ends the session for good), else a bounded number of attempts per burst; when a
  bounded burst fails the client is ``failed`` and every waiter gets ``ReconnectFailed``.
  ``websockets``' own reconnect iterator is not used, so the backoff is ours to bound, log and
  test (``sleep`` is injectable). ``start()`` connects in the background (a venue that is not
  there yet is waited for); ``connect()`` waits for the first session.
* Sending while disconnected raises ``VenueUnavailable``: no silent drop.

The client owns one task (the reader), started by ``connect()`` or ``start()`` and awaited by ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Protocol, TypeVar, runtime_checkable

import tenacity
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from kernel import paper_protocol as protocol
from kernel.execution_errors import (
    HandshakeFailed,
    ReaderFailed,
    ReconnectFailed,
    VenueError,
    VenueRequestError,
    VenueSettingError,
    VenueTimeout,
    VenueUnavailable,
    VenueUnreachable,
    VenueVersionMismatch,
)
from kernel.net import redact_in, redact_url
from kernel.paper_protocol import (
    CancelOrder,
    Execution,
    Fill,
    Fills,
    FillsSinceRequest,
    NewOrder,
    OpenOrders,
    OpenOrdersRequest,
    OrderSnapshot,
    OrderStatus,
    OrderStatusRequest,
    ReplaceOrder,
)
from kernel.paper_session import Credentials, HelloRefused, SocketOptions, VersionRefused, connect_paper
from kernel.tick_probe import PROBE

log = logging.getLogger(__name__)

Report = Execution | OrderStatus | protocol.Error
"""What the report stream carries: execution reports, duplicate-submit status answers, and the
``rate_limited`` errors that name an order (its request was refused, nothing executed)."""

Sleep = Callable[[float], Awaitable[None]]
_Answer = TypeVar("_Answer", OrderStatus, OpenOrders, Fills)


# -- the interface ------------------------------------------------------------------------------


@runtime_checkable
class ExecutionClient(Protocol):
    """What the order manager needs from a venue; a live adapter implements exactly this.

    ``generation`` counts successful sessions (1 after the first ``connect``): a change means the
    connection was lost and re-established, and in-flight orders must be resolved again.
    """

    @property
    def connected(self) -> bool:
        """True while a session with the venue is up."""

    @property
    def generation(self) -> int:
        """Number of sessions established so far."""

    async def connect(self) -> None:
        """Establish the session (retrying a bounded burst); raise ``VenueError`` on failure."""

    async def close(self) -> None:
        """End the session and stop reconnecting. Idempotent."""

    async def wait_connected(self, after: int = 0) -> int:
        """Wait for a session with ``generation > after``; return its generation.

        Raises ``ReconnectFailed`` when reconnecting gave up, ``VenueUnavailable`` once closed.
        """

    async def send_new(self, order: NewOrder) -> None:
        """Send a new order; ``VenueUnavailable`` when it could not be sent."""

    async def send_cancel(self, client_order_id: str) -> None:
        """Ask to cancel an order; ``VenueUnavailable`` when it could not be sent."""

    async def send_replace(self, client_order_id: str, qty: Decimal | None, price: Decimal | None) -> None:
        """Ask to change an order's qty and/or price; ``VenueUnavailable`` when it could not be sent."""

    async def order_status(self, client_order_id: str, timeout: float) -> OrderSnapshot | None:
        """The venue's view of one order; ``None`` when it never received it."""

    async def open_orders(self, timeout: float) -> list[OrderSnapshot]:
        """Every order the venue holds as not done."""

    async def fills_since(self, after: int, timeout: float) -> list[Fill]:
        """Every fill with ``fill_seq > after``, in order."""

    async def next_reports(self, max_batch: int = 256) -> list[Report]:
        """Wait for at least one report; return it with any others already queued (up to ``max_batch``)."""

    def reports(self) -> AsyncIterator[Report]:
        """The report stream, one at a time (never ends while the client lives)."""


# -- the WebSocket client -----------------------------------------------------------------------

_RETRYABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    InvalidHandshake,
    ConnectionClosed,
    HandshakeFailed,
)
"""Failures a later attempt may not repeat: refused or dropped connections, timeouts, a bad hello."""


def _log_retry(state: tenacity.RetryCallState) -> None:
    outcome = state.outcome.exception() if state.outcome else None
    delay, n = state.upcoming_sleep, state.attempt_number
    # A long outage retries forever: the first attempts and then every 30th are warnings.
    level = logging.WARNING if n <= 5 or n % 30 == 0 else logging.DEBUG
    log.log(level, "venue connection attempt %d failed (%r); retrying in %.3fs", n, outcome, delay)


class ReportStream:
    """The report side every execution client shares: one queue (``_reports``, made by the client)
    that outlives its connections, read in batches or one at a time."""

    _reports: asyncio.Queue[Report]

    async def next_reports(self, max_batch: int = 256) -> list[Report]:
        """Wait for at least one report; return it with others already queued (up to ``max_batch``)."""
        batch = [await self._reports.get()]
        while len(batch) < max_batch and not self._reports.empty():
            batch.append(self._reports.get_nowait())
        return batch

    async def reports(self) -> AsyncGenerator[Report, None]:
        """The report stream, one at a time."""
        while True:
            yield await self._reports.get()


async def every_fill(fills_page: Callable[[int], Awaitable[Fills]], after: int) -> list[Fill]:
    """Every fill with ``fill_seq > after``, in order: ``fills_page(cursor)`` answers one page, and
    pages are asked for until one says there is no more (or its cursor does not move on)."""
    fills: list[Fill] = []
    while True:
        page = await fills_page(after)
        fills.extend(page.fills)
        if not page.more or page.next <= after:
            return fills
        after = page.next


class VenueClient(ReportStream):
    """``ExecutionClient`` over the venue WebSocket protocol (see the module docstring).

    ``attempts`` bounds each burst of connection attempts (``None``: never give up); waits between
    them grow as ``backoff * 2**n``, capped at ``backoff_max``, plus up to ``jitter`` seconds
    (also at the cap, so clients that lost the same venue do not retry in lockstep). ``sleep`` is what
    tenacity awaits between attempts (inject a fake in tests). ``max_size`` bounds one incoming
    frame: 32 MiB (the venue pages ``open_orders`` and ``fills_since`` answers in frames of at
    most 4 MiB, ``paper_protocol.PAGE_MAX_BYTES``). ``request_timeout`` is the default
    for status queries; ``open_timeout`` bounds the opening handshake and ``hello``/``welcome``.
    """

    def __init__(
        self,
        url: str,
        *,
        client_name: str = "tradekernel",
        open_timeout: float = 5.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
        close_timeout: float = 2.0,
        max_size: int = 2**25,
        max_queue: int = 64,
        report_queue: int = 10_000,
        attempts: int | None = 5,
        backoff: float = 0.1,
        backoff_max: float = 5.0,
        jitter: float = 0.1,
        sleep: Sleep = asyncio.sleep,
        on_anomaly: Callable[[str, str, str], None] | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        if attempts is not None and attempts < 1:
            raise VenueSettingError("attempts must be at least 1 (or None: never give up)")
        self.url = url
        self.client_name = client_name
        self._credentials = credentials  # the account's key and secret (hello signs the venue's challenge)
        self._socket = SocketOptions(open_timeout, ping_interval, ping_timeout, close_timeout, max_size, max_queue)
        self.attempts = attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.jitter = jitter
        self._sleep = sleep
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reports: asyncio.Queue[Report] = asyncio.Queue(report_queue)
        self._pending: dict[str, asyncio.Future[protocol.VenueMessage]] = {}
        self._ids = itertools.count(1)
        self._generation = 0
        self._closed = False
        self._failure: ReconnectFailed | None = None
        self._changed = asyncio.Event()
        self.session: str | None = None
        self.instruments: list[str] = []
        self.malformed_frames = 0
        """Frames that were not a valid venue message (counted, logged, skipped)."""
        self.unexpected_messages = 0
        """Valid messages nobody asked for (an answer after its timeout, market data, stray errors)."""
        self.venue_errors: list[protocol.Error] = []
        self.last_balances: list[protocol.Balance] | None = None  # the account's, as last sent by the venue
        """``error`` messages not tied to a pending request (e.g. a refused ``new_order``), newest last."""
        self.connect_attempts = 0
        """Connection attempts made, successful or not."""
        self.on_anomaly = on_anomaly
        """Called with ``(kind, reason, sample)`` when the session fails oddly (e.g. to journal it)."""
        self.reader_failures = 0
        """Sessions recycled because their reader raised."""

    # -- state ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session is up (``welcome`` received, socket open)."""
        return self._ws is not None

    @property
    def generation(self) -> int:
        """Number of sessions established so far (0 before the first)."""
        return self._generation

    @property
    def failure(self) -> ReconnectFailed | None:
        """Why reconnecting gave up, or ``None``."""
        return self._failure

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_connected(self, after: int = 0) -> int:
        """Wait for a session with ``generation > after``; return its generation.

        Raises ``ReconnectFailed`` when a reconnect burst gave up, ``VenueUnavailable`` once closed.
        """
        while True:
            if self._closed:
                raise VenueUnavailable("venue client is closed")
            if self._failure is not None:
                raise ReconnectFailed(str(self._failure)) from self._failure
            if self._ws is not None and self._generation > after:
                return self._generation
            await self._changed.wait()

    # -- connecting -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open a session (a bounded burst of attempts) and start reading.

        Raises ``ReconnectFailed`` when every attempt failed, ``VenueVersionMismatch`` when the
        venue speaks another protocol version. Calling it again after a failure starts a new burst.
        """
        if self._closed:
            raise VenueUnavailable("venue client is closed")
        if self._reader is not None and not self._reader.done():
            if self._ws is None:  # started (``start``) or reconnecting: wait for that session
                await self.wait_connected(after=self._generation)
            return
        self._failure = None
        ws = await self._connect_burst()
        self._up(ws)
        self._reader = asyncio.create_task(self._read_forever(ws), name=f"venue-reader {redact_url(self.url)}")

    def start(self) -> None:
        """Connect in the background and return at once: the reader task opens the session
        (retrying as configured) and keeps it up. ``wait_connected`` says when it is up; a bounded
        burst that fails or a refusal retrying cannot fix leaves ``failure`` set. Idempotent
        while the reader runs; after a failure it starts over."""
        if self._closed:
            raise VenueUnavailable("venue client is closed")
        if self._reader is not None and not self._reader.done():
            return
        self._failure = None
        self._reader = asyncio.create_task(self._read_forever(None), name=f"venue-reader {redact_url(self.url)}")

    def wait_strategy(self) -> tenacity.wait.wait_base:
        """The wait before retry ``n`` (1 = the first): ``min(backoff * 2**(n-1), backoff_max)``
        plus a uniform ``[0, jitter]``."""
        capped = tenacity.wait_exponential(multiplier=self.backoff, max=self.backoff_max)
        return capped + tenacity.wait_random(0, self.jitter)

    async def _connect_burst(self) -> ClientConnection:
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_never if self.attempts is None else tenacity.stop_after_attempt(self.attempts),
            wait=self.wait_strategy(),
            retry=tenacity.retry_if_exception_type(_RETRYABLE),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._open()
        except _RETRYABLE as exc:
            raise ReconnectFailed(
                f"{redact_url(self.url)}: no session after {self.attempts} attempts: {exc!r}"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _open(self) -> ClientConnection:
        """One attempt: WebSocket handshake, ``hello``, ``welcome`` with our version (``kernel.paper_session``)."""
        self.connect_attempts += 1
        try:
            ws, welcome = await connect_paper(
                self.url,
                client_name=self.client_name,
                options=self._socket,
                on_malformed=self._malformed,
                credentials=self._credentials,
            )
        except InvalidURI as exc:
            raise VenueError(f"bad venue url {redact_url(self.url)!r}: {redact_in(str(exc), self.url)}") from exc
        except VersionRefused as exc:
            raise VenueVersionMismatch(str(exc)) from exc
        except HelloRefused as exc:
            raise HandshakeFailed(str(exc)) from exc
        self.session = welcome.session
        self.instruments = list(welcome.instruments)
        return ws

    def _up(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._generation += 1
        log.info("venue session %s up (generation %d)", self.session, self._generation)
        self._notify()

    def _down(self, reason: str) -> None:
        self._ws = None
        error = VenueUnavailable(f"connection to the venue lost: {reason}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._notify()

    async def _read_forever(self, ws: ClientConnection | None) -> None:
        """Read frames; on a drop (or with no session yet: ``ws`` is ``None``), reconnect and carry on."""
        while True:
            if ws is not None:
                reason = await self._read(ws)
                self._down(reason)
                if self._closed:
                    return
                log.warning("venue connection lost (%s); reconnecting", reason)
            try:
                ws = await self._connect_burst()
            except (ReconnectFailed, VenueError) as exc:
                log.error("venue reconnect gave up: %s", exc)
                self._failure = exc if isinstance(exc, ReconnectFailed) else ReconnectFailed(str(exc))
                self._notify()
                return
            self._up(ws)

    async def _read(self, ws: ClientConnection) -> str:
        try:
            async for frame in ws:
                message = self._decode(frame)
                if message is not None:
                    await self._dispatch(message)
        except ConnectionClosed as exc:
            return str(exc)
        except Exception as exc:
            return await self._reader_failed(ws, exc)
        return "closed by the venue"

    async def _reader_failed(self, ws: ClientConnection, exc: Exception) -> str:
        """The reader raised: pause order entry at once, log and report it once, drop the connection."""
        self._ws = None  # order entry sees the session down before anything else is awaited
        self._notify()
        self.reader_failures += 1
        failure = ReaderFailed(f"venue report reader failed: {exc!r}; session recycled")
        log.error("%s", failure, exc_info=exc)
        if self.on_anomaly is not None:
            try:
                self.on_anomaly("reader_failed", str(failure), "")
            except Exception:
                log.exception("could not record the venue reader failure")
        with contextlib.suppress(Exception):
            await ws.close()
        return str(failure)

    def _decode(self, frame: str | bytes) -> protocol.VenueMessage | None:
        try:
            return protocol.decode_venue(frame)
        except protocol.ProtocolError as exc:
            self._malformed(frame, exc)
            return None

    def _malformed(self, frame: str | bytes, error: protocol.ProtocolError) -> None:
        del frame  # the error says what was wrong with it
        self.malformed_frames += 1
        log.warning("malformed venue frame #%d skipped: %s", self.malformed_frames, error)

    async def _dispatch(self, message: protocol.VenueMessage) -> None:
        if isinstance(message, Execution) or (isinstance(message, OrderStatus) and message.duplicate):
            await self._reports.put(message)
            return
        if isinstance(message, protocol.Error) and message.code == "rate_limited" and message.client_order_id:
            await self._reports.put(message)  # the order manager ends the request (docs/risk.md)
            return
        if isinstance(message, protocol.Heartbeat | protocol.Welcome):
            return
        ref = message.ref if isinstance(message, protocol.Error) else getattr(message, "id", "")
        future = self._pending.pop(ref, None) if ref else None
        if future is not None and not future.done():
            future.set_result(message)
        elif isinstance(message, protocol.BalancesReport):  # asked for, or pushed as they moved
            self.last_balances = message.balances
        elif isinstance(message, protocol.Error):
            self.venue_errors = [*self.venue_errors[-99:], message]
            log.warning("venue error %s (ref %r): %s", message.code, message.ref, message.message)
        else:
            self.unexpected_messages += 1
            log.info("unexpected venue message ignored: %r", message)

    # -- closing ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the session, stop reconnecting and wake every waiter. Idempotent."""
        self._closed = True
        reader, self._reader = self._reader, None
        ws = self._ws
        if ws is not None:
            await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._down("client closed")

    async def __aenter__(self) -> VenueClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sending ----------------------------------------------------------------------------

    async def _send(self, message: protocol.Message) -> None:
        ws = self._ws
        if ws is None:
            raise VenueUnavailable(f"not connected to the venue; {type(message).__name__} not sent")
        try:
            await ws.send(protocol.encode(message).decode())
        except ConnectionClosed as exc:
            raise VenueUnavailable(f"connection lost while sending {type(message).__name__}: {exc}") from exc

    async def send_new(self, order: NewOrder) -> None:
        """Send ``new_order``. Raises ``VenueUnavailable`` when not sent."""
        await self._send(order)
        if PROBE is not None:  # a benchmark's tick-to-send stamps (kernel.tick_probe)
            PROBE.order_written(order.client_order_id)

    async def send_cancel(self, client_order_id: str) -> None:
        """Send ``cancel_order``. Raises ``VenueUnavailable`` when not sent."""
        await self._send(CancelOrder(client_order_id=client_order_id))

    async def send_replace(self, client_order_id: str, qty: Decimal | None, price: Decimal | None) -> None:
        """Send ``replace_order``. Raises ``VenueUnavailable`` when not sent."""
        await self._send(ReplaceOrder(client_order_id=client_order_id, qty=qty, price=price))

    async def _request(
        self, build: Callable[[str], protocol.Message], answer: type[_Answer], timeout: float
    ) -> _Answer:
        request_id = str(next(self._ids))
        future: asyncio.Future[protocol.VenueMessage] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(build(request_id))
            async with asyncio.timeout(timeout):
                message = await future
        except TimeoutError:
            raise VenueTimeout(f"no answer to request {request_id} within {timeout}s") from None
        finally:
            self._pending.pop(request_id, None)
        if isinstance(message, protocol.Error):
            raise VenueRequestError(message.code, message.message)
        if not isinstance(message, answer):
            raise VenueRequestError("invalid", f"expected {answer.__name__}, got {type(message).__name__}")
        return message

    async def order_status(self, client_order_id: str, timeout: float = 5.0) -> OrderSnapshot | None:
        """The venue's view of one order; ``None`` when it never received it.

        Raises ``VenueUnavailable``, ``VenueTimeout`` or ``VenueRequestError``.
        """
        answer = await self._request(
            lambda rid: OrderStatusRequest(client_order_id=client_order_id, id=rid), OrderStatus, timeout
        )
        return answer.order

    async def open_orders(self, timeout: float = 5.0) -> list[OrderSnapshot]:
        """Every order the venue holds as not done (every page; ``timeout`` bounds each)."""
        orders: list[OrderSnapshot] = []
        after = ""
        while True:
            page = await self.open_orders_page(after, timeout=timeout)
            orders.extend(page.orders)
            if not page.more or page.next == after:
                return orders
            after = page.next

    async def fills_since(self, after: int, timeout: float = 5.0) -> list[Fill]:
        """Every fill with ``fill_seq > after``, in order (every page; ``timeout`` bounds each)."""
        return await every_fill(lambda cursor: self.fills_page(cursor, timeout=timeout), after)

    async def open_orders_page(self, after: str = "", limit: int | None = None, timeout: float = 5.0) -> OpenOrders:
        """One page of the open orders whose ``client_order_id`` sorts after ``after`` (at most
        ``limit``; ``None``: the venue's default); ``more``/``next`` say how to go on."""
        return await self._request(lambda rid: OpenOrdersRequest(id=rid, after=after, limit=limit), OpenOrders, timeout)

    async def fills_page(self, after: int, limit: int | None = None, timeout: float = 5.0) -> Fills:
        """One page of the fills with ``fill_seq > after`` (at most ``limit``; ``None``: the venue's
        default); ``more``/``next`` say how to go on, ``last_fill_seq`` is the venue's newest."""
        return await self._request(lambda rid: FillsSinceRequest(after=after, id=rid, limit=limit), Fills, timeout)

    async def request_balances(self) -> None:
        """Ask for the account's balances without waiting: the answer, and each push of the venue as
        they move from then on, lands in ``last_balances`` (per asset ``total``, ``available``)."""
        await self._send(protocol.BalancesRequest())


__all__ = [
    "ExecutionClient",
    "HandshakeFailed",
    "ReaderFailed",
    "ReconnectFailed",
    "Report",
    "ReportStream",
    "VenueClient",
    "VenueError",
    "VenueRequestError",
    "VenueSettingError",
    "VenueTimeout",
    "VenueUnavailable",
    "VenueUnreachable",
    "VenueVersionMismatch",
    "every_fill",
]
