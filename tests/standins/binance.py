"""A loopback Binance spot: market streams and the REST endpoints a market-data client uses.

* WebSocket: combined streams ``/stream?streams=a/b`` (each event as ``{"stream", "data"}``), raw
  streams ``/ws/<stream>`` and ``/ws`` (bare events); ``SUBSCRIBE``/``UNSUBSCRIBE``/
  ``LIST_SUBSCRIPTIONS`` answered ``{"result", "id"}``. Streams are matched by symbol and kind
  (``depth``, ``depth@100ms`` and ``depth@1000ms`` are one kind); a session frame is sent to a
  connection subscribed to its stream.
* REST on the same port: ``GET /api/v3/depth?symbol=&limit=`` (the book where the venue is, from the
  recorded snapshot and the session's depth events by the documented procedure; the recorded body
  itself while nothing past it was streamed), ``GET /api/v3/exchangeInfo`` (``symbol=`` or
  ``symbols=["A","B"]``), ``/api/v3/ping``, ``/api/v3/time``. Request weights (depth by ``limit``:
  5/25/50/250; exchangeInfo 20) are counted per minute, returned in ``X-MBX-USED-WEIGHT-1M``, and
  beyond ``weight_limit`` answered 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.standins.base import Conn, StandIn
from tests.standins.reference import BinanceLocalBook, SequenceGap
from tests.standins.sessions import BINANCE_RULES, binance_exchange_info

_KINDS = {"depthUpdate": "depth", "trade": "trade", "aggTrade": "aggTrade", "bookTicker": "bookTicker"}


def stream_key(name: str) -> tuple[str, str]:
    """``nknusdt@depth@100ms`` -> ``("NKNUSDT", "depth")``."""
    symbol, _, kind = name.partition("@")
    return symbol.upper(), kind.split("@")[0]


def data_text(text: str) -> tuple[dict[str, Any], str]:
    """An event and its exact text, from a combined-stream envelope or a bare event."""
    body = json.loads(text)
    if isinstance(body, dict) and "stream" in body and isinstance(body.get("data"), dict):
        start = text.index('"data":') + len('"data":')
        while text[start] in " \t\r\n":
            start += 1
        _, end = json.JSONDecoder().raw_decode(text, start)
        return body["data"], text[start:end]
    return body, text


def event_key(data: dict[str, Any]) -> tuple[str, str] | None:
    """The stream ``(SYMBOL, kind)`` an event belongs to (``None`` for a non-stream message)."""
    if not isinstance(data, dict) or not isinstance(data.get("s"), str):
        return None
    if "e" in data:
        kind = _KINDS.get(str(data["e"]))
        return None if kind is None else (data["s"].upper(), kind)
    return (data["s"].upper(), "bookTicker") if "u" in data and "b" in data else None


def depth_weight(limit: int) -> int:
    """The documented weight of ``GET /api/v3/depth`` for ``limit``."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class BinanceStandIn(StandIn):
    """Binance spot on 127.0.0.1: see the module docstring and ``StandIn``."""

    venue = "binance"

    def __init__(self, session: Any, *, weight_limit: int = 6000, **options: Any) -> None:
        super().__init__(session, **options)
        self.weight_limit = weight_limit
        self._weights: deque[tuple[float, int]] = deque()
        self._depth_429 = 0
        self._events: list[tuple[dict[str, Any], str] | None] = []
        for frame in session.frames:
            try:
                self._events.append(data_text(frame.text))
            except ValueError:
                self._events.append(None)
        self.depth_requests: list[tuple[float, str, int]] = []

    # -- WebSocket ----------------------------------------------------------------------------

    async def on_open(self, conn: Conn) -> None:
        """Streams named in the path start at once."""
        split = urlsplit(conn.ws.request.path if conn.ws.request else "/")
        names: list[str] = []
        if split.path.rstrip("/") == "/stream":
            conn.subscribed["combined"] = True
            for value in parse_qs(split.query).get("streams", []):
                names += [name for name in value.split("/") if name]
        elif split.path.startswith("/ws/"):
            names = [name for name in split.path[len("/ws/") :].split("/") if name]
        conn.subscribed["streams"] = {stream_key(name): name for name in names}
        if names:
            conn.started.set()

    async def on_message(self, conn: Conn, body: dict[str, Any]) -> None:
        """``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``; anything else an error answer."""
        method, request_id = body.get("method"), body.get("id")
        streams: dict[tuple[str, str], str] = conn.subscribed.setdefault("streams", {})
        params = body.get("params") if isinstance(body.get("params"), list) else []
        if method == "SUBSCRIBE":
            streams.update({stream_key(str(name)): str(name) for name in params})
            answer: dict[str, Any] = {"result": None, "id": request_id}
        elif method == "UNSUBSCRIBE":
            for name in params:
                streams.pop(stream_key(str(name)), None)
            answer = {"result": None, "id": request_id}
        elif method == "LIST_SUBSCRIPTIONS":
            answer = {"result": sorted(streams.values()), "id": request_id}
        else:
            answer = {"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": request_id}
        await self.send(conn, json.dumps(answer))
        if streams:
            conn.started.set()

    def outgoing(self, conn: Conn, index: int, text: str) -> str | None:
        """The frame if its stream is subscribed: in an envelope named as subscribed, or bare."""
        del text
        event = self._events[index]
        if event is None:
            return None
        key = event_key(event[0])
        name = None if key is None else conn.subscribed.get("streams", {}).get(key)
        if name is None:
            return None
        if conn.subscribed.get("combined"):
            return f'{{"stream":{json.dumps(name)},"data":{event[1]}}}'
        return event[1]

    def shutdown_frame(self, conn: Conn) -> str:
        """``serverShutdown``, in an envelope on a combined-stream connection."""
        event = json.dumps({"e": "serverShutdown", "E": int(time.time() * 1000)})
        return f'{{"stream":"!serverShutdown","data":{event}}}' if conn.subscribed.get("combined") else event

    # -- REST ---------------------------------------------------------------------------------

    async def rest(self, path: str) -> tuple[int, str, dict[str, str]]:
        """Depth snapshots, exchangeInfo, ping and time; weights counted per minute."""
        split = urlsplit(path)
        query = {name: values[-1] for name, values in parse_qs(split.query).items()}
        endpoint = split.path.rstrip("/")
        if endpoint == "/api/v3/depth":
            try:
                limit = min(max(int(query.get("limit", "100")), 1), 5000)
            except ValueError:
                return _error(400, -1100, "Illegal characters found in parameter 'limit'")
            weight = depth_weight(limit)
        elif endpoint == "/api/v3/exchangeInfo":
            weight = 20
        elif endpoint in ("/api/v3/ping", "/api/v3/time"):
            weight = 1
        else:
            return _error(404, -1, "unknown endpoint")
        used = self._use(weight)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if used > self.weight_limit:
            return 429, _message(-1003, "Too much request weight used"), {**headers, "Retry-After": "1"}
        if endpoint == "/api/v3/depth":
            return await self._depth(query.get("symbol", ""), limit, headers)
        if endpoint == "/api/v3/exchangeInfo":
            return self._exchange_info(query, headers)
        if endpoint == "/api/v3/time":
            return 200, json.dumps({"serverTime": int(time.time() * 1000)}), headers
        return 200, "{}", headers

    def _use(self, weight: int) -> int:
        now = time.monotonic()
        while self._weights and self._weights[0][0] < now - 60:
            self._weights.popleft()
        self._weights.append((now, weight))
        return sum(w for _, w in self._weights)

    async def _depth(self, symbol: str, limit: int, headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        self.depth_requests.append((time.monotonic(), symbol, limit))
        f = self.faults
        if self._depth_429 < f.rest_429:
            self._depth_429 += 1
            retry = {**headers, "Retry-After": str(f.retry_after)}
            return 429, _message(-1003, "Too many requests; please use the websocket for live updates"), retry
        if f.rest_delay:
            await asyncio.sleep(f.rest_delay)
        body = self.depth_body(symbol.upper(), limit)
        if body is None:
            return _error(400, -1121, "Invalid symbol.")
        return 200, body, headers

    def depth_answers(self, symbol: str) -> list[str]:
        """The session's recorded depth answers (status 200) of ``symbol``, oldest first."""
        bodies = []
        for answer in sorted(self.session.rest, key=lambda a: a.t_ns):
            split = urlsplit(answer.path)
            query = parse_qs(split.query)
            if split.path == "/api/v3/depth" and answer.status == 200 and query.get("symbol", [""])[-1] == symbol:
                bodies.append(answer.body)
        return bodies

    def depth_body(self, symbol: str, limit: int) -> str | None:
        """The depth answer for ``symbol`` where the venue is now (``high_water``): the recorded
        snapshot, moved on by the depth events streamed since. A recording whose stream has a hole
        (the client resynced) moves on from the next recorded snapshot that covers it."""
        answers = self.depth_answers(symbol)
        if not answers:
            return None
        local = BinanceLocalBook(json.loads(answers[0]))
        applied = False
        for event in self._events[: self.high_water]:
            if event is None or event_key(event[0]) != (symbol, "depth"):
                continue
            try:
                applied = local.apply(event[0]) or applied
            except SequenceGap:
                later = [BinanceLocalBook(json.loads(body)) for body in answers[1:]]
                covering = [book for book in later if book.last_update_id >= int(event[0]["U"]) - 1]
                if not covering:
                    raise
                local, applied = covering[0], True
                local.apply(event[0])
        if not applied and limit >= len(local.book.bids) and limit >= len(local.book.asks):
            return answers[0]
        return local.snapshot_body(limit)

    def _exchange_info(self, query: dict[str, str], headers: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        wanted = self._symbols(query)
        recorded = self.session.rest_answer("/api/v3/exchangeInfo")
        known: dict[str, Any] = {}
        base: dict[str, Any] = {}
        if recorded is not None:
            base = json.loads(recorded.body)
            known = {entry["symbol"]: entry for entry in base.get("symbols", [])}
        for symbol in BINANCE_RULES:
            known.setdefault(symbol, json.loads(binance_exchange_info([symbol]))["symbols"][0])
        if not base:
            base = json.loads(binance_exchange_info([]))
        if wanted is None:
            wanted = sorted(known)
        missing = [symbol for symbol in wanted if symbol not in known]
        if missing:
            return _error(400, -1121, "Invalid symbol.")
        base["symbols"] = [known[symbol] for symbol in wanted]
        return 200, json.dumps(base, separators=(",", ":")), headers

    @staticmethod
    def _symbols(query: dict[str, str]) -> list[str] | None:
        if "symbol" in query:
            return [query["symbol"].upper()]
        if "symbols" in query:
            try:
                names = json.loads(query["symbols"])
            except ValueError:
                return ["?"]
            return [str(name).upper() for name in names] if isinstance(names, list) else ["?"]
        return None


def _message(code: int, msg: str) -> str:
    return json.dumps({"code": code, "msg": msg})


def _error(status: int, code: int, msg: str) -> tuple[int, str, dict[str, str]]:
    return status, _message(code, msg), {}
