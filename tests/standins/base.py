"""What the three stand-ins share: a loopback WebSocket server replaying a ``RecordedSession`` to
each connection, with bounds, pacing and fault switches.

Each connection has its own cursor into the session's frames; a new connection starts where the
venue "is" (the furthest any connection got: ``high_water``), as a real venue streams from now.
Books the venue serves again (a Binance REST snapshot, a Coinbase or Kraken snapshot on a new
subscription) are computed by the documented procedures (``reference``) over the session up to
that point, dropped frames included: the venue's book does not miss what a client missed.

Faults fire once per stand-in (the first connection that reaches the point):

* ``drop_frame``: session frame index never sent the first time it is due (a gap);
* ``corrupt_checksum``: Kraken: that session frame is sent with a wrong ``checksum``;
* ``close_after``: close with 1001 after this many data frames on a connection (Binance's 24 h);
* ``shutdown_after``: Binance: send ``serverShutdown``, stop, and close 1001 after ``shutdown_grace``;
* ``stall_after``: stop sending (socket kept open) for ``stall_seconds``; ``None`` stalls for good
  and stops reading too, so the client's pings go unanswered;
* ``rest_delay``: seconds before each depth snapshot answer; ``rest_429``: that many depth requests
  answered 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.standins.sessions import RecordedSession

HOST = "127.0.0.1"


@dataclass
class Faults:
    """Fault switches (see the module docstring); each fires at most once."""

    drop_frame: int | None = None
    corrupt_checksum: int | None = None
    close_after: int | None = None
    shutdown_after: int | None = None
    shutdown_grace: float = 0.3
    stall_after: int | None = None
    stall_seconds: float | None = 6.0
    rest_delay: float = 0.0
    rest_429: int = 0
    retry_after: int = 1


@dataclass
class Conn:
    """One client connection and where it is in the session."""

    ws: ServerConnection
    number: int
    cursor: int
    sent: int = 0
    last_send: float = 0.0
    subscribed: dict[str, Any] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)


class StandIn(ABC):
    """A venue stand-in on 127.0.0.1 (``async with``): see the module docstring.

    ``pace``: ``None`` sends frames as fast as possible, else the recorded gaps divided by ``pace``
    (each at most ``max_gap`` seconds). Bounds: ``max_connections`` accepted, ``max_frames`` sent,
    ``max_seconds`` of life (then it closes every connection and stops serving).
    """

    venue = ""
    heartbeat_every: float | None = None

    def __init__(
        self,
        session: RecordedSession,
        *,
        faults: Faults | None = None,
        pace: float | None = None,
        max_gap: float = 1.0,
        port: int = 0,
        max_connections: int = 50,
        max_frames: int = 200_000,
        max_seconds: float = 300.0,
    ) -> None:
        if session.venue != self.venue:
            raise ValueError(f"a {session.venue} session given to the {self.venue} stand-in")
        self.session = session
        self.faults = faults or Faults()
        self.pace = pace
        self.max_gap = max_gap
        self.port = port
        self.max_connections = max_connections
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self.high_water = 0
        self.connections = 0
        self.frames_sent = 0
        self.fired: set[str] = set()
        self.closes: list[tuple[int, int]] = []
        self.rest_log: list[tuple[float, str, int]] = []
        self.log: list[str] = []
        self._server: Server | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._conns: dict[int, Conn] = {}
        self._numbers = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> StandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on 127.0.0.1 (``port``; 0 picks a free one)."""
        self._server = await serve(
            self._handle,
            HOST,
            self.port,
            process_request=self._process_request,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
            max_size=2**20,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._watchdog = asyncio.create_task(self._expire())

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _expire(self) -> None:
        await asyncio.sleep(self.max_seconds)
        self.log.append("max_seconds reached: stopping")
        if self._server is not None:
            self._server.close()

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set or ``max_seconds`` pass."""
        assert self._watchdog is not None
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, self._watchdog], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    @property
    def ws_url(self) -> str:
        """The WebSocket base URL."""
        return f"ws://{HOST}:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST base URL (the same port)."""
        return f"http://{HOST}:{self.port}"

    # -- HTTP ---------------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/api/"):
            status, body, headers = await self.rest(request.path)
            self.rest_log.append((time.monotonic(), request.path, status))
            response = conn.respond(status, body)
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            for name, value in headers.items():
                response.headers[name] = value
            return response
        if self.connections >= self.max_connections or self.frames_sent >= self.max_frames:
            return conn.respond(503, "stand-in bound reached\n")
        return None

    async def rest(self, path: str) -> tuple[int, str, dict[str, str]]:
        """Answer one REST GET: ``(status, body, extra headers)``. Only Binance has any."""
        del path
        return 404, json.dumps({"code": -1, "msg": "no REST here"}), {}

    # -- WebSocket ----------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        conn = Conn(ws, next(self._numbers), self.high_water)
        self._conns[conn.number] = conn
        tasks = [asyncio.create_task(self._replay(conn)), asyncio.create_task(self._receive(conn))]
        if self.heartbeat_every is not None:
            tasks.append(asyncio.create_task(self._heartbeats(conn)))
        try:
            await self.on_open(conn)
            await ws.wait_closed()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._conns.pop(conn.number, None)
            self.closes.append((conn.number, ws.close_code or 1006))

    async def _receive(self, conn: Conn) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in conn.ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                try:
                    body = json.loads(text)
                except ValueError:
                    body = None
                await self.on_message(conn, body if isinstance(body, dict) else {})

    async def send(self, conn: Conn, text: str) -> None:
        """Send one frame (counted against ``max_frames``)."""
        self.frames_sent += 1
        conn.last_send = time.monotonic()
        await conn.ws.send(text)

    async def _heartbeats(self, conn: Conn) -> None:
        assert self.heartbeat_every is not None
        with contextlib.suppress(ConnectionClosed):
            await conn.started.wait()
            while True:
                await asyncio.sleep(self.heartbeat_every / 4)
                if "stalling" in conn.subscribed:
                    continue
                if time.monotonic() - conn.last_send >= self.heartbeat_every:
                    for text in self.heartbeat_frames(conn):
                        await self.send(conn, text)

    async def _replay(self, conn: Conn) -> None:
        frames = self.session.frames
        with contextlib.suppress(ConnectionClosed):
            await conn.started.wait()
            previous: int | None = None
            while conn.cursor < len(frames):
                index = conn.cursor
                frame = frames[index]
                if self.pace is not None and previous is not None and frame.t_ns > previous:
                    await asyncio.sleep(min((frame.t_ns - previous) / 1e9 / self.pace, self.max_gap))
                previous = frame.t_ns
                conn.cursor += 1
                self.high_water = max(self.high_water, conn.cursor)
                text = self.outgoing(conn, index, frame.text)
                if text is None:
                    continue
                if index == self.faults.drop_frame and self._once("drop_frame"):
                    self.log.append(f"conn {conn.number}: dropped frame {index}")
                    continue
                if index == self.faults.corrupt_checksum and self._once("corrupt_checksum"):
                    text = self.corrupt(text)
                    self.log.append(f"conn {conn.number}: corrupted frame {index}")
                await self.send(conn, text)
                conn.sent += 1
                if self.frames_sent >= self.max_frames:
                    await conn.ws.close(1001, "stand-in max_frames")
                    return
                if await self._after_send(conn):
                    return
            await conn.ws.wait_closed()

    async def _after_send(self, conn: Conn) -> bool:
        """Faults counted in frames sent on this connection; ``True`` when the connection is done."""
        f = self.faults
        if f.close_after is not None and conn.sent >= f.close_after and self._once("close_after"):
            self.log.append(f"conn {conn.number}: close 1001 after {conn.sent} frames")
            await conn.ws.close(1001, "going away")
            return True
        if f.shutdown_after is not None and conn.sent >= f.shutdown_after and self._once("shutdown_after"):
            self.log.append(f"conn {conn.number}: serverShutdown after {conn.sent} frames")
            await self.send(conn, self.shutdown_frame(conn))
            await asyncio.sleep(f.shutdown_grace)
            await conn.ws.close(1001, "server shutdown")
            return True
        if f.stall_after is not None and conn.sent >= f.stall_after and self._once("stall_after"):
            self.log.append(f"conn {conn.number}: stall after {conn.sent} frames for {f.stall_seconds} s")
            conn.subscribed["stalling"] = True
            if f.stall_seconds is None:
                transport = conn.ws.transport
                transport.pause_reading()
                await conn.ws.wait_closed()
                return True
            await asyncio.sleep(f.stall_seconds)
            del conn.subscribed["stalling"]
        return False

    def _once(self, name: str) -> bool:
        if name in self.fired:
            return False
        self.fired.add(name)
        return True

    # -- per venue ----------------------------------------------------------------------------

    @abstractmethod
    async def on_open(self, conn: Conn) -> None:
        """A connection opened (Binance's combined streams start here)."""

    @abstractmethod
    async def on_message(self, conn: Conn, body: dict[str, Any]) -> None:
        """A client message (subscribe, ping ...)."""

    @abstractmethod
    def outgoing(self, conn: Conn, index: int, text: str) -> str | None:
        """The text to send for session frame ``index`` on ``conn``, or ``None`` to skip it."""

    def heartbeat_frames(self, conn: Conn) -> list[str]:
        """Heartbeats to send on an idle connection."""
        del conn
        return []

    def corrupt(self, text: str) -> str:
        """The frame with a wrong checksum (Kraken)."""
        return text

    def shutdown_frame(self, conn: Conn) -> str:
        """Binance's ``serverShutdown``."""
        del conn
        return "{}"


def now_iso() -> str:
    """The current UTC time as ISO-8601 with microseconds and ``Z``."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns // 1000 % 1_000_000:06d}Z"
