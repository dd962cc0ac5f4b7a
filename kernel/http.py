"""Health, readiness, metrics and status over HTTP: ``/healthz``, ``/readyz``, ``/metrics``, ``/status``.

A small HTTP/1.1 server: asyncio streams for the sockets and ``h11`` (the sans-I/O HTTP/1.1
protocol, already installed with ``httpx``) for parsing and framing, so HEAD, keep-alive and
bad requests are handled by the book. Off unless asked for; loopback only unless
``allow_remote``. A running kernel serves it from its endpoint thread (``kernel/endpoints.py``),
so it answers while the kernel's event loop is blocked.

The rules, in the order they are applied to each request:

* the ``Host`` header must name the bound address (``127.0.0.1:PORT``, ``localhost:PORT``,
  ``[::1]:PORT``, or the address listened on) or a name in ``http.allowed_hosts``; else
  ``421 Misdirected Request`` (a DNS-rebinding page in a browser cannot read ``/status``);
* ``GET`` and ``HEAD`` only; anything else is ``405`` with ``Allow: GET, HEAD``;
* ``HEAD`` answers the headers ``GET`` would, ``Content-Length`` included, without the body;
* the body is gzipped when ``Accept-Encoding`` allows it; every answer says ``Vary: Accept-Encoding``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

import h11

from kernel.errors import KernelError
from kernel.net import is_loopback

log = logging.getLogger(__name__)

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_TYPE = "application/json"
ALLOW = "GET, HEAD"
IDLE_S = 10.0
"""A connection idle this long (no complete request) is closed."""
MAX_REQUEST_BYTES = 16 * 1024
"""The longest request head accepted (``h11``'s bound on an incomplete event)."""
READ_BYTES = 8 * 1024


class RemoteBindRefused(KernelError, ValueError):
    """A non-loopback address was asked for without ``allow_remote``."""


T = TypeVar("T")
Source = Callable[[], T | Awaitable[T]]
"""What computes an answer: a function, or a coroutine function (the kernel's endpoint thread
hands the request to the kernel's loop and waits for it, boundedly)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One response before encoding: status, body and its content type."""

    status: HTTPStatus
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()


class HttpEndpoints:
    """The four endpoints, each computed on request by the callables given (plain or async).

    ``health()`` and ``ready()`` return ``(ok, body)``: 200 when ok, else 503. ``metrics()``
    returns the Prometheus text. ``allowed_hosts``: names the ``Host`` header may carry beyond
    the bound address (``NAME`` matches any port, ``NAME:PORT`` that port only).
    """

    def __init__(
        self,
        health: Source[tuple[bool, dict[str, Any]]],
        ready: Source[tuple[bool, dict[str, Any]]],
        metrics: Source[bytes],
        status: Source[dict[str, Any]],
        *,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self._health = health
        self._ready = ready
        self._metrics = metrics
        self._status = status
        self._allowed_names = {name.lower() for name in allowed_hosts}
        self._hosts: frozenset[str] = frozenset()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` once started."""
        return f"http://{_authority(self.host)}:{self.port}"

    async def start(self, host: str, port: int, *, allow_remote: bool = False) -> None:
        """Listen on ``host:port`` (0: any free port). Raises ``RemoteBindRefused`` or ``OSError``."""
        if not allow_remote and not is_loopback(host):
            raise RemoteBindRefused(
                f"refusing to serve health/metrics on non-loopback address {host!r}: pass --allow-remote to expose it"
            )
        self._server = await asyncio.start_server(self._connection, host, port)
        sock = next(iter(self._server.sockets))
        self.host, self.port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
        self._hosts = self._served_hosts()
        log.info("health/readiness/metrics/status on %s", self.url)

    def _served_hosts(self) -> frozenset[str]:
        names = {"127.0.0.1", "localhost", "[::1]", _authority(self.host).lower()}
        hosts = {f"{name}:{self.port}" for name in names}
        if self.port == 80:  # a client leaves the default port out
            hosts |= names
        return frozenset(hosts)

    def host_allowed(self, host: str) -> bool:
        """True when a request's ``Host`` header names this server (see the class docstring)."""
        host = host.strip().lower()
        return host in self._hosts or host in self._allowed_names or _hostname(host) in self._allowed_names

    async def stop(self) -> None:
        """Stop listening and close open connections. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()  # each ends its connection (see _connection)
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    # -- one connection ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        try:
            while await self._exchange(conn, reader, writer):
                conn.start_next_cycle()
        except (OSError, TimeoutError, h11.ProtocolError):
            pass  # the peer went away, idled out or broke the protocol after an answer: nothing to say
        except asyncio.CancelledError:
            # only stop() cancels a connection: it ends here (asyncio's streams would log a
            # connection task that ends cancelled as an error)
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _exchange(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; True when the connection can take another."""
        try:
            request = await _next_request(conn, reader)
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = HTTPStatus(exc.error_status_hint)
                await _send(conn, writer, "GET", _error(status, f"bad request: {exc}"), (), close=True)
            return False
        if request is None:
            return False
        method = request.method.decode("ascii", "replace")
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers}
        answer = await self._answer(method, request.target.decode("latin-1"), headers.get("host"))
        close = answer.status in (HTTPStatus.METHOD_NOT_ALLOWED, HTTPStatus.MISDIRECTED_REQUEST)
        encodings = [value for name, value in request.headers if name.lower() == b"accept-encoding"]
        await _send(conn, writer, method, answer, encodings, close=close)
        if close or conn.our_state is not h11.DONE:
            return False
        # the request's body (none is expected) must be read before the next request
        while conn.their_state is h11.SEND_BODY:
            event = await _next_event(conn, reader)
            if isinstance(event, h11.ConnectionClosed):
                return False
        return conn.their_state is h11.DONE

    async def _answer(self, method: str, target: str, host: str | None) -> Answer:
        if host is None or not self.host_allowed(host):
            return _error(
                HTTPStatus.MISDIRECTED_REQUEST,
                f"host {host!r} is not served here: ask for {self.url} or add the name to http.allowed_hosts",
            )
        if method not in ("GET", "HEAD"):
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"method {method} not allowed: GET or HEAD", (("Allow", ALLOW),)
            )
        path = target.split("?", 1)[0]
        try:
            if path in ("/healthz", "/readyz"):
                ok, body = await _value(self._health() if path == "/healthz" else self._ready())
                return Answer(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, _json(body))
            if path == "/metrics":
                return Answer(HTTPStatus.OK, await _value(self._metrics()), PROMETHEUS_TYPE)
            if path == "/status":
                return Answer(HTTPStatus.OK, _json(await _value(self._status())))
        except Exception as exc:  # a bug in a snapshot must not take the endpoint down
            log.exception("HTTP %s failed", path)
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        return _error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        async with asyncio.timeout(IDLE_S):
            data = await reader.read(READ_BYTES)
        conn.receive_data(data)


async def _next_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    """The next request, or ``None`` when the peer closed the connection."""
    event = await _next_event(conn, reader)
    return event if isinstance(event, h11.Request) else None


async def _send(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    method: str,
    answer: Answer,
    accept_encodings: Iterable[bytes],
    *,
    close: bool,
) -> None:
    body = answer.body
    headers = [
        ("Content-Type", answer.content_type),
        ("Cache-Control", "no-store"),
        ("Vary", "Accept-Encoding"),
        *answer.headers,
    ]
    if gzip_accepted(accept_encodings):
        body = gzip.compress(body, mtime=0)
        headers.append(("Content-Encoding", "gzip"))
    headers.append(("Content-Length", str(len(body))))
    if close:
        headers.append(("Connection", "close"))
    response = h11.Response(status_code=answer.status.value, headers=headers, reason=answer.status.phrase)
    data = conn.send(response) or b""
    if method != "HEAD":
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()


def gzip_accepted(values: Iterable[bytes]) -> bool:
    """True when an ``Accept-Encoding`` header (all its values) allows gzip (``gzip``, ``x-gzip``
    or ``*`` with a quality above 0, and gzip not refused by name)."""
    qualities: dict[str, float] = {}
    for value in values:
        for item in value.decode("latin-1").split(","):
            coding, *params = (part.strip() for part in item.split(";"))
            quality = 1.0
            for param in params:
                key, _, number = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        quality = float(number)
                    except ValueError:
                        quality = 0.0
            if coding:
                qualities[coding.lower()] = quality
    named = qualities.get("gzip", qualities.get("x-gzip"))
    if named is not None:
        return named > 0
    return qualities.get("*", 0.0) > 0


async def _value(answer: T | Awaitable[T]) -> T:
    if inspect.isawaitable(answer):
        return await answer
    return answer


def _json(value: Any) -> bytes:
    return (json.dumps(value, default=str, indent=2) + "\n").encode()


def _error(status: HTTPStatus, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, _json({"error": message}), JSON_TYPE, headers)


def _hostname(authority: str) -> str:
    """``authority`` without its port (``[::1]:80`` -> ``[::1]``, ``name:80`` -> ``name``)."""
    if authority.startswith("["):
        return authority.split("]", 1)[0] + "]"
    return authority.rsplit(":", 1)[0]


def _authority(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["ALLOW", "PROMETHEUS_TYPE", "Answer", "HttpEndpoints", "RemoteBindRefused", "gzip_accepted"]
