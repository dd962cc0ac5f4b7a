"""A tiny loopback stand-in for Binance's WebSocket API, scripted per test (``FakeWsApi``).

Each request is recorded (``calls``: method, params); ``answers[method]`` gives what to answer: a
callable ``(params) -> frame dict | None`` (``None``: no answer, the request is dropped). Signed
requests are checked with an HMAC-SHA256 computed here by hand (sorted ``k=v&...``), so a wrong
signature fails the test. ``push(event)`` sends a user data event on every open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

Frame = dict[str, Any]
Answer = Callable[[dict[str, Any]], Frame | None]

API_KEY = "test-key"
SECRET = "test-secret"
SERVER_TIME = 1_700_000_000_000


def ok(result: Any) -> Frame:
    """A 200 answer (the ``id`` is filled in)."""
    return {"status": 200, "result": result, "rateLimits": []}


def err(status: int, code: int, msg: str, data: dict[str, Any] | None = None) -> Frame:
    """An error answer."""
    error: dict[str, Any] = {"code": code, "msg": msg}
    if data is not None:
        error["data"] = data
    return {"status": status, "error": error}


def order_json(coid: str, order_id: int = 11, status: str = "NEW", executed: str = "0") -> Frame:
    """An order object as ``order.status`` gives it (limit buy 0.01 @ 100)."""
    return {
        "symbol": "BTCUSDT",
        "orderId": order_id,
        "clientOrderId": coid,
        "price": "100.00",
        "origQty": "0.01000",
        "executedQty": executed,
        "status": status,
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
    }


def execution_report(coid: str, x: str, big_x: str, order_id: int = 11, **extra: Any) -> Frame:
    """An ``executionReport`` event of a limit buy 0.01 @ 100."""
    event = {
        "e": "executionReport",
        "E": SERVER_TIME,
        "s": "BTCUSDT",
        "c": coid,
        "S": "BUY",
        "o": "LIMIT",
        "f": "GTC",
        "q": "0.01000",
        "p": "100.00",
        "x": x,
        "X": big_x,
        "r": "NONE",
        "i": order_id,
        "l": "0",
        "z": "0",
        "L": "0",
        "n": "0",
        "N": None,
        "T": SERVER_TIME,
        "t": -1,
        "C": "",
    }
    event.update(extra)
    return event


class FakeWsApi:
    """Serve ``/ws-api/v3`` on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.bad_signatures = 0
        self.connections: list[ServerConnection] = []
        self.answers: dict[str, Answer] = {
            "time": lambda p: ok({"serverTime": SERVER_TIME}),
            "userDataStream.subscribe.signature": lambda p: ok({"subscriptionId": len(self.connections) - 1}),
        }
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> FakeWsApi:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws-api/v3"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        return [method for method, _ in self.calls]

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        with contextlib.suppress(Exception):
            async for frame in ws:
                request = json.loads(frame)
                method, params = request["method"], request.get("params") or {}
                self.calls.append((method, params))
                if "signature" in params:
                    self._check_signature(params)
                answer = (
                    self.answers[method](params)
                    if method in self.answers
                    else err(400, -1100, f"not scripted: {method}")
                )
                if answer is not None:
                    await ws.send(json.dumps({"id": request["id"], **answer}))

    def _check_signature(self, params: dict[str, Any]) -> None:
        def text(value: Any) -> str:
            return ("true" if value else "false") if isinstance(value, bool) else str(value)

        payload = "&".join(f"{k}={text(params[k])}" for k in sorted(params) if k != "signature")
        expected = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if params["signature"] != expected or params.get("apiKey") != API_KEY:
            self.bad_signatures += 1

    async def push(self, event: Frame) -> None:
        """Send a user data event on every open connection."""
        for ws in self.connections:
            with contextlib.suppress(Exception):
                await ws.send(json.dumps({"subscriptionId": 0, "event": event}))

    async def drop_connections(self) -> None:
        """Close every connection (the client reconnects)."""
        for ws in list(self.connections):
            await ws.close()
        await asyncio.sleep(0)
