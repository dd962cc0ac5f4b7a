"""Health, metrics and status over HTTP: ``GET /healthz``, ``GET /metrics``, ``GET /status``.

Served by the ``websockets`` server's ``process_request`` hook: every request is answered with a
plain HTTP response before any WebSocket handshake, so the kernel needs no second HTTP stack
(``websockets`` is already a dependency and its server is asyncio-native). Off unless asked for;
loopback only unless ``allow_remote``. A running kernel serves them from its endpoint thread
(``kernel/endpoints.py``), so they answer while the kernel's event loop is blocked.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kernel.errors import KernelError
from kernel.net import is_loopback

log = logging.getLogger(__name__)

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RemoteBindRefused(KernelError, ValueError):
    """A non-loopback address was asked for without ``allow_remote``."""


T = TypeVar("T")
Source = Callable[[], T | Awaitable[T]]
"""What computes an answer: a function, or a coroutine function (the kernel's endpoint thread
hands the request to the kernel's loop and waits for it, boundedly)."""


class HttpEndpoints:
    """The three endpoints, each computed on request by the callables given (plain or async).

    ``health()`` returns ``(ok, body)``: 200 when ok (healthy or degraded), else 503.
    """

    def __init__(
        self,
        health: Source[tuple[bool, dict[str, Any]]],
        metrics: Source[str],
        status: Source[dict[str, Any]],
    ) -> None:
        self._health = health
        self._metrics = metrics
        self._status = status
        self._server: Server | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` once started."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self, host: str, port: int, *, allow_remote: bool = False) -> None:
        """Listen on ``host:port`` (0: any free port). Raises ``RemoteBindRefused`` or ``OSError``."""
        if not allow_remote and not is_loopback(host):
            raise RemoteBindRefused(
                f"refusing to serve health/metrics on non-loopback address {host!r}: pass --allow-remote to expose it"
            )
        quiet = logging.getLogger("tradekernel.http.server")
        quiet.setLevel(logging.WARNING)  # websockets logs every answered request at INFO
        self._server = await serve(self._handler, host, port, process_request=self._route, logger=quiet)
        sock = next(iter(self._server.sockets))
        self.host, self.port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
        log.info("health/metrics/status on %s", self.url)

    async def stop(self) -> None:
        """Stop listening. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handler(self, connection: ServerConnection) -> None:  # pragma: no cover - never reached
        await connection.close()

    async def _route(self, connection: ServerConnection, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                ok, body = await _value(self._health())
                return _respond(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, _json(body))
            if path == "/metrics":
                return _respond(HTTPStatus.OK, await _value(self._metrics()), PROMETHEUS_TYPE)
            if path == "/status":
                return _respond(HTTPStatus.OK, _json(await _value(self._status())))
        except Exception as exc:  # a bug in a snapshot must not take the endpoint down
            log.exception("HTTP %s failed", path)
            return _respond(HTTPStatus.INTERNAL_SERVER_ERROR, _json({"error": f"{type(exc).__name__}: {exc}"}))
        return _respond(HTTPStatus.NOT_FOUND, _json({"error": f"no such endpoint: {path}"}))


async def _value(answer: T | Awaitable[T]) -> T:
    if inspect.isawaitable(answer):
        return await answer
    return answer


def _json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2) + "\n"


def _respond(status: HTTPStatus, body: str, content_type: str = "application/json") -> Response:
    data = body.encode()
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, data)
