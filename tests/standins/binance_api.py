"""A loopback Binance spot WebSocket API (``/ws-api/v3``) with its market streams and REST, for tests.

``async with BinanceApiStandIn(api_keys={"K": "S"}) as venue:`` serves on 127.0.0.1 (a free port):

* ``venue.ws_api_url`` (``ws://127.0.0.1:PORT/ws-api/v3``): requests ``{"id", "method", "params"}``
  answered ``{"id", "status", "result" | "error": {"code", "msg"}, "rateLimits"}``; methods
  ``ping``, ``time``, ``exchangeInfo``, ``depth``, ``order.place``, ``order.cancel``,
  ``order.cancelReplace``, ``order.amend.keepPriority``, ``order.status``, ``openOrders.status``,
  ``myTrades``, ``account.status`` (``binance_api_methods``), ``userDataStream.subscribe.signature``,
  ``userDataStream.unsubscribe``, ``session.subscriptions``; user data events as
  ``{"subscriptionId": N, "event": {...}}``.
* ``venue.stream_url`` (``ws://127.0.0.1:PORT``): ``/stream?streams=<sym>@depth@100ms/<sym>@trade/
  <sym>@bookTicker`` (``{"stream", "data"}`` envelopes) and ``/ws/<stream>`` (bare events), plus
  ``SUBSCRIBE``; ``venue.rest_url``: ``GET /api/v3/depth``, ``/api/v3/exchangeInfo``, ``/api/v3/time``,
  ``/api/v3/ping`` on the same port.

The market (``binance_api_engine.Exchange``) steps every ``pace_ms``. Rate limits: REQUEST_WEIGHT per
minute (``weight_limit``) and ORDERS per 10 s (``orders_limit``), counted per stand-in (one IP, one
account), in every answer's ``rateLimits``; over: 429 with -1003 / -1015 and ``error.data.retryAfter``.
``ApiFaults`` fire once each. ``state_path`` keeps orders, trades and balances across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.standins.binance_api_engine import ApiError, Exchange, load_state, save_state
from tests.standins.binance_api_methods import ORDER_METHODS, Methods, exchange_info_body

HOST = "127.0.0.1"
QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


@dataclass
class ApiFaults:
    """Fault switches, each fired once.

    ``drop_answer_to``: the first request of that method is served but never answered;
    ``close_after_requests``: the connection that answers its N-th request is closed (1001) after;
    ``server_shutdown_after_s``: a ``serverShutdown`` event on the first API connection after S s, then
    close 1001; ``event_stream_terminated_after_s``: ``eventStreamTerminated`` on the first user data
    subscription after S s (the subscription ends); ``clock_skew_ms``: the stand-in's clock is this far
    ahead (always); ``reject_next_order``: the next ``order.place`` refused with that code;
    ``force_429_at`` / ``force_418_at``: the N-th request (stand-in wide, from 1) is answered 429
    (``retry_after_ms``) / 418 and banned for ``ban_ms``.
    """

    drop_answer_to: str | None = None
    close_after_requests: int | None = None
    server_shutdown_after_s: float | None = None
    event_stream_terminated_after_s: float | None = None
    clock_skew_ms: int = 0
    reject_next_order: int | None = None
    force_429_at: int | None = None
    force_418_at: int | None = None
    retry_after_ms: int = 1000
    ban_ms: int = 2000


@dataclass(eq=False)
class ApiConn:
    """One WebSocket API connection and its user data subscriptions."""

    ws: ServerConnection
    opened: float
    subscriptions: dict[int, str] = field(default_factory=dict)
    next_subscription: int = 0
    requests: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)


def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDT`` -> ``("BTC", "USDT")`` by the known quote assets."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot split {symbol!r} into base and quote")


class BinanceApiStandIn:
    """The stand-in (see the module docstring)."""

    def __init__(
        self,
        symbol: str = "BTCUSDT",
        *,
        api_keys: dict[str, str] | None = None,
        ed25519_keys: dict[str, bytes] | None = None,
        balances: dict[str, Decimal] | None = None,
        start_price: Decimal = Decimal("30000"),
        tick: Decimal = Decimal("0.01"),
        step: Decimal = Decimal("0.00001"),
        min_notional: Decimal = Decimal("5"),
        fee_rate: Decimal = Decimal("0.001"),
        seed: int = 0,
        pace_ms: int = 100,
        max_seconds: float = 300.0,
        max_connections: int = 50,
        faults: ApiFaults | None = None,
        port: int = 0,
        state_path: Path | str | None = None,
        weight_limit: int = 6000,
        orders_limit: int = 50,
    ) -> None:
        base, quote = split_symbol(symbol)
        self.exchange = Exchange(symbol, base, quote, start_price, tick, step, min_notional, fee_rate, seed=seed)
        start = balances if balances is not None else {base: Decimal(1), quote: Decimal(100000)}
        for asset, amount in start.items():
            self.exchange.balance(asset)[0] = Decimal(amount)
        self.state_path = None if state_path is None else Path(state_path)
        if self.state_path is not None:
            load_state(self.exchange, self.state_path)
        self.methods = Methods(self.exchange, dict(api_keys or {}), dict(ed25519_keys or {}), self.exchange_info)
        self.faults = faults or ApiFaults()
        self.methods.reject_next = self.faults.reject_next_order
        self.pace_ms = pace_ms
        self.max_seconds = max_seconds
        self.max_connections = max_connections
        self.port = port
        self.weight_limit = weight_limit
        self.orders_limit = orders_limit
        self.fired: set[str] = set()
        self.requests: list[tuple[str, int]] = []
        self.connections = 0
        self.banned_until = 0
        self._weight: dict[str, tuple[int, int]] = {}
        self._api: set[ApiConn] = set()
        self._streams: dict[ServerConnection, tuple[dict[str, str], bool]] = {}
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._sending = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> BinanceApiStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on 127.0.0.1 and start the market."""
        self._server = await serve(
            self._handle,
            HOST,
            self.port,
            process_request=self._process_request,
            ping_interval=20,
            ping_timeout=60,
            close_timeout=2,
            max_size=2**20,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._market()), asyncio.create_task(self._expire())]

    async def stop(self) -> None:
        """Stop the market, close every connection, save the state."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        self._save()

    async def _expire(self) -> None:
        await asyncio.sleep(self.max_seconds)
        self._stopped.set()
        if self._server is not None:
            self._server.close()

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set or ``max_seconds`` pass."""
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._stopped.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    @property
    def ws_api_url(self) -> str:
        """The WebSocket API endpoint."""
        return f"ws://{HOST}:{self.port}/ws-api/v3"

    @property
    def stream_url(self) -> str:
        """The market streams base URL."""
        return f"ws://{HOST}:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST base URL (the same port)."""
        return f"http://{HOST}:{self.port}"

    def now_ms(self) -> int:
        """The stand-in's clock (``clock_skew_ms`` ahead of the machine's)."""
        return int(time.time() * 1000) + self.faults.clock_skew_ms

    def _once(self, name: str) -> bool:
        if name in self.fired:
            return False
        self.fired.add(name)
        return True

    def _save(self) -> None:
        if self.state_path is not None:
            save_state(self.exchange, self.state_path)

    # -- market and events --------------------------------------------------------------------

    async def _market(self) -> None:
        while True:
            await asyncio.sleep(self.pace_ms / 1000)
            self.exchange.step_market(self.now_ms())
            await self._flush()

    async def _flush(self) -> None:
        """Send queued user data events to every subscription and market events to every stream
        (one flush at a time, so events go out in the order they happened)."""
        async with self._sending:
            await self._flush_now()

    async def _flush_now(self) -> None:
        events, self.exchange.events = self.exchange.events, []
        market, self.exchange.market = self.exchange.market, []
        if events:
            self._save()
        for conn in list(self._api):
            for number in sorted(conn.subscriptions):
                for event in events:
                    await _send(conn.ws, {"subscriptionId": number, "event": event})
        for ws, (streams, combined) in list(self._streams.items()):
            for event in market:
                kind = {"depthUpdate": "depth", "trade": "trade"}.get(event.get("e", ""), "bookTicker")
                name = streams.get(kind)
                if name is not None:
                    await _send(ws, {"stream": name, "data": event} if combined else event)

    async def deposit(self, asset: str, amount: Decimal) -> None:
        """Credit (or debit, if negative) ``asset`` from outside: ``balanceUpdate`` then
        ``outboundAccountPosition`` to every subscription."""
        self.exchange.deposit(asset, amount, self.now_ms())
        await self._flush()

    def exchange_info(self) -> dict[str, Any]:
        """The ``exchangeInfo`` body of the one symbol (documented shape and filters)."""
        return exchange_info_body(self.exchange, self.weight_limit, self.orders_limit, self.now_ms())

    # -- rate limits --------------------------------------------------------------------------

    def _count(self, name: str, span_ms: int, amount: int, now_ms: int) -> int:
        bucket = now_ms // span_ms
        current, used = self._weight.get(name, (bucket, 0))
        used = (0 if current != bucket else used) + amount
        self._weight[name] = (bucket, used)
        return used

    def _rate_limits(self, now_ms: int, orders: bool) -> list[dict[str, Any]]:
        rows = []
        if orders:
            rows.append(_limit("ORDERS", "SECOND", 10, self.orders_limit, self._count("orders10s", 10_000, 0, now_ms)))
            rows.append(_limit("ORDERS", "DAY", 1, 160000, self._count("ordersday", 86_400_000, 0, now_ms)))
        rows.append(_limit("REQUEST_WEIGHT", "MINUTE", 1, self.weight_limit, self._count("weight", 60_000, 0, now_ms)))
        return rows

    def _admit(self, method: str, params: dict[str, Any], now_ms: int) -> None:
        """Count the request; ``ApiError`` 418 / 429 when banned or over a limit (or by fault)."""
        number = len(self.requests)
        if self.faults.force_418_at == number and self._once("force_418"):
            self.banned_until = now_ms + self.faults.ban_ms
        if now_ms < self.banned_until:
            until = self.banned_until
            raise ApiError(
                418,
                -1003,
                f"Way too much request weight used; IP banned until {until}. Please use "
                "WebSocket Streams for live updates to avoid bans.",
                {"serverTime": now_ms, "retryAfter": until},
            )
        used = self._count("weight", 60_000, self.methods.weight(method, params), now_ms)
        forced = self.faults.force_429_at == number and self._once("force_429")
        if used > self.weight_limit or forced:
            retry = now_ms + self.faults.retry_after_ms if forced else (now_ms // 60_000 + 1) * 60_000
            raise ApiError(
                429,
                -1003,
                f"Too much request weight used; current limit is {self.weight_limit} request "
                "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                {"serverTime": now_ms, "retryAfter": retry},
            )
        if method in ("order.place", "order.cancelReplace"):
            placed = self._count("orders10s", 10_000, 1, now_ms)
            self._count("ordersday", 86_400_000, 1, now_ms)
            if placed > self.orders_limit:
                raise ApiError(
                    429,
                    -1015,
                    f"Too many new orders; current limit is {self.orders_limit} orders per 10 SECOND.",
                    {"serverTime": now_ms, "retryAfter": (now_ms // 10_000 + 1) * 10_000},
                )

    # -- HTTP and WebSocket -------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        split = urlsplit(request.path)
        if split.path.startswith("/api/"):
            query = {name: values[-1] for name, values in parse_qs(split.query).items()}
            status, body = self._rest(split.path.rstrip("/"), query)
            response = conn.respond(status, json.dumps(body))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(self._count("weight", 60_000, 0, self.now_ms()))
            return response
        if self.connections >= self.max_connections:
            return conn.respond(503, "stand-in bound reached\n")
        return None

    def _rest(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        now = self.now_ms()
        if path == "/api/v3/depth":
            if query.get("symbol", "").upper() != self.exchange.symbol:
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            limit = int(query.get("limit", "100"))
            self._count("weight", 60_000, 5 if limit <= 100 else 25 if limit <= 500 else 50, now)
            return 200, self.exchange.snapshot(limit)
        if path == "/api/v3/exchangeInfo":
            self._count("weight", 60_000, 20, now)
            wanted = [query["symbol"]] if "symbol" in query else _names(query.get("symbols", "[]"))
            if any(name.upper() != self.exchange.symbol for name in wanted):
                return 400, {"code": -1121, "msg": "Invalid symbol."}
            return 200, self.exchange_info()
        if path == "/api/v3/time":
            return 200, {"serverTime": now}
        if path == "/api/v3/ping":
            return 200, {}
        return 404, {"code": -1, "msg": "unknown endpoint"}

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        split = urlsplit(ws.request.path if ws.request else "/")
        if split.path.rstrip("/") == "/ws-api/v3":
            await self._api_session(ws)
        elif split.path.rstrip("/") in ("/stream", "/ws") or split.path.startswith("/ws/"):
            await self._stream_session(ws, split.path, split.query)
        else:
            await ws.close(1008, "unknown path")

    async def _stream_session(self, ws: ServerConnection, path: str, query: str) -> None:
        names = [n for v in parse_qs(query).get("streams", []) for n in v.split("/") if n]
        if path.startswith("/ws/"):
            names = [n for n in path[len("/ws/") :].split("/") if n]
        streams = {self._stream_kind(n): n for n in names}
        self._streams[ws] = (streams, path.rstrip("/") == "/stream")
        try:
            async for message in ws:
                body = json.loads(message)
                wanted = [str(n) for n in body.get("params", [])]
                if body.get("method") == "SUBSCRIBE":
                    streams.update({self._stream_kind(n): n for n in wanted})
                elif body.get("method") == "UNSUBSCRIBE":
                    for name in wanted:
                        streams.pop(self._stream_kind(name), None)
                await _send(ws, {"result": None, "id": body.get("id")})
        except (ConnectionClosed, ValueError, AttributeError):
            pass
        finally:
            self._streams.pop(ws, None)

    def _stream_kind(self, name: str) -> str:
        symbol, _, kind = name.partition("@")
        return kind.split("@")[0] if symbol.upper() == self.exchange.symbol else "other:" + name

    async def _api_session(self, ws: ServerConnection) -> None:
        conn = ApiConn(ws, time.monotonic())
        self._api.add(conn)
        self._count("weight", 60_000, 2, self.now_ms())
        tasks = [asyncio.create_task(self._timed_faults(conn))]
        try:
            async for message in ws:
                await self._request(conn, message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        finally:
            self._api.discard(conn)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _timed_faults(self, conn: ApiConn) -> None:
        f = self.faults
        if f.event_stream_terminated_after_s is not None:
            await asyncio.sleep(f.event_stream_terminated_after_s)
            if conn.subscriptions and self._once("event_stream_terminated"):
                for number in sorted(conn.subscriptions):
                    await _send(
                        conn.ws, {"subscriptionId": number, "event": {"e": "eventStreamTerminated", "E": self.now_ms()}}
                    )
                conn.subscriptions.clear()
        if f.server_shutdown_after_s is not None:
            await asyncio.sleep(max(f.server_shutdown_after_s - (time.monotonic() - conn.opened), 0))
            if self._once("server_shutdown"):
                await _send(conn.ws, {"event": {"e": "serverShutdown", "E": self.now_ms()}})
                await asyncio.sleep(0.2)
                await conn.ws.close(1001, "server shutdown")

    async def _request(self, conn: ApiConn, text: str) -> None:
        now = self.now_ms()
        try:
            body = json.loads(text, parse_float=Decimal)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            await _send(conn.ws, {"id": None, "status": 400, "error": {"code": -1102, "msg": "Invalid request."}})
            return
        method = body["method"].removeprefix("v3/")
        params = body.get("params") or {}
        self.requests.append((method, now))
        conn.requests += 1
        orders = method in ORDER_METHODS
        answer: dict[str, Any] = {"id": body.get("id")}
        try:
            if not isinstance(params, dict):
                raise ApiError(400, -1102, "Invalid request: params must be an object.")
            self._admit(method, params, now)
            answer["status"], answer["result"] = 200, self._session_call(conn, method, params, now)
        except ApiError as exc:
            answer["status"], answer["error"] = exc.status, exc.error()
        if not isinstance(params, dict) or params.get("returnRateLimits", True) is not False:
            answer["rateLimits"] = self._rate_limits(now, orders)
        if method == self.faults.drop_answer_to and self._once("drop_answer_to"):
            await self._flush()
            return
        await _send(conn.ws, answer)
        for message in conn.pending:
            await _send(conn.ws, message)
        conn.pending.clear()
        await self._flush()
        limit = self.faults.close_after_requests
        if limit is not None and conn.requests >= limit and self._once("close_after_requests"):
            await conn.ws.close(1001, "going away")

    def _session_call(self, conn: ApiConn, method: str, params: dict[str, Any], now: int) -> Any:
        if method == "userDataStream.subscribe.signature":
            key = self.methods.verify(params, now)
            if key in conn.subscriptions.values():
                raise ApiError(400, -2035, "User Data Stream subscription already active.")
            number, conn.next_subscription = conn.next_subscription, conn.next_subscription + 1
            conn.subscriptions[number] = key
            return {"subscriptionId": number}
        if method == "userDataStream.unsubscribe":
            wanted = params.get("subscriptionId")
            for number in sorted(conn.subscriptions):
                if wanted is None or int(wanted) == number:
                    del conn.subscriptions[number]
                    event = {"e": "eventStreamTerminated", "E": now}
                    conn.pending.append({"subscriptionId": number, "event": event})
            return {}
        if method == "session.subscriptions":
            return [{"subscriptionId": number} for number in sorted(conn.subscriptions)]
        return self.methods.call(method, params, now)


def _names(text: str) -> list[str]:
    try:
        names = json.loads(text)
    except ValueError:
        return ["?"]
    return [str(name) for name in names] if isinstance(names, list) else ["?"]


def _limit(kind: str, interval: str, number: int, limit: int, count: int) -> dict[str, Any]:
    return {"rateLimitType": kind, "interval": interval, "intervalNum": number, "limit": limit, "count": count}


async def _send(ws: ServerConnection, body: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps(body, default=str))
