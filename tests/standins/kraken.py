"""A loopback Kraken Spot WebSocket v2 (``wss://ws.kraken.com/v2``'s protocol).

On connect: a ``status`` message (``system: online``). Requests ``{"method": "subscribe", "params":
{"channel", "symbol": [...], "depth"?, "snapshot"?}, "req_id"?}`` are answered once per symbol
(``success`` true with ``result {channel, symbol}``, or false with ``error`` for an unknown symbol);
``unsubscribe`` likewise; ``ping`` gets ``pong``. Then, per channel:

* ``book``: a snapshot (the recorded one when the session has not reached it yet, else the book
  where the connection is, truncated to the depth, with its checksum), then the session's updates;
* ``trade``, ``ticker``: the session's messages; ``instrument``: a snapshot of the pair's
  precisions (``PAIRS``);
* ``heartbeat`` (``{"channel": "heartbeat"}``) each second without other traffic.

Frames are sent as recorded: their numbers keep their exact text. ``corrupt_checksum`` adds 1 to
one frame's ``checksum``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.standins.base import Conn, StandIn, now_iso
from tests.standins.reference import KrakenLocalBook, parse_exact

PAIRS: dict[str, dict[str, Any]] = {
    "BTC/USD": {
        "symbol": "BTC/USD",
        "base": "BTC",
        "quote": "USD",
        "status": "online",
        "qty_precision": 8,
        "qty_increment": "0.00000001",
        "price_precision": 1,
        "price_increment": "0.1",
        "cost_precision": 5,
        "cost_min": "0.5",
        "qty_min": "0.0001",
        "marginable": True,
        "has_index": True,
    }
}
"""Pair precisions served on the ``instrument`` channel (BTC/USD as Kraken lists it)."""
_CHECKSUM = re.compile(r'"checksum":(\d+)')


class KrakenStandIn(StandIn):
    """Kraken v2 on 127.0.0.1: see the module docstring and ``StandIn``."""

    venue = "kraken"
    heartbeat_every = 1.0

    def __init__(self, session: Any, **options: Any) -> None:
        super().__init__(session, **options)
        self._bodies: list[dict[str, Any]] = []
        for frame in session.frames:
            try:
                body = parse_exact(frame.text)
            except ValueError:
                body = {}
            self._bodies.append(body if isinstance(body, dict) else {})

    def _channels(self, conn: Conn) -> dict[str, dict[str, int]]:
        channels: dict[str, dict[str, int]] = conn.subscribed.setdefault("channels", {})
        return channels

    async def on_open(self, conn: Conn) -> None:
        """The ``status`` message every connection starts with."""
        status = {
            "channel": "status",
            "type": "update",
            "data": [{"api_version": "v2", "connection_id": conn.number, "system": "online", "version": "2.0.0"}],
        }
        await self.send(conn, json.dumps(status))

    async def on_message(self, conn: Conn, body: dict[str, Any]) -> None:
        """``subscribe``, ``unsubscribe``, ``ping``."""
        method = body.get("method")
        request_id = body.get("req_id")
        times = {"time_in": now_iso(), "time_out": now_iso()}
        if method == "ping":
            await self.send(
                conn, json.dumps({"method": "pong", **({"req_id": request_id} if request_id else {}), **times})
            )
            return
        params = body.get("params") if isinstance(body.get("params"), dict) else {}
        channel = str(params.get("channel"))
        symbols = [str(s) for s in params.get("symbol") or []]
        if method not in ("subscribe", "unsubscribe") or not symbols:
            error = {"method": method, "error": "Invalid request", "success": False, **times}
            await self.send(conn, json.dumps({**error, **({"req_id": request_id} if request_id else {})}))
            return
        depth = int(params.get("depth") or 10)
        subscribed = self._channels(conn).setdefault(channel, {})
        for symbol in symbols:
            answer: dict[str, Any] = {"method": method}
            if symbol not in self.session.instruments and symbol not in PAIRS:
                answer |= {"error": f"Currency pair not supported {symbol}", "success": False, "symbol": symbol}
            else:
                result: dict[str, Any] = {"channel": channel, "symbol": symbol}
                if channel == "book":
                    result |= {"depth": depth, "snapshot": params.get("snapshot", True)}
                answer |= {"result": result, "success": True}
            answer |= times
            if request_id is not None:
                answer["req_id"] = request_id
            await self.send(conn, json.dumps(answer))
            if not answer["success"]:
                continue
            if method == "unsubscribe":
                subscribed.pop(symbol, None)
                continue
            subscribed[symbol] = depth
            await self._snapshot(conn, channel, symbol, depth, snapshot=params.get("snapshot", True) is not False)
        conn.started.set()

    async def _snapshot(self, conn: Conn, channel: str, symbol: str, depth: int, *, snapshot: bool) -> None:
        if channel == "instrument":
            pair = PAIRS.get(symbol)
            data = {"assets": [], "pairs": [pair] if pair else []}
            await self.send(conn, json.dumps({"channel": "instrument", "type": "snapshot", "data": data}))
        elif channel == "book" and snapshot:
            frame = self.snapshot_at(symbol, conn.cursor, depth)
            if frame is not None:
                await self.send(conn, frame)

    def _symbols(self, body: dict[str, Any]) -> list[str]:
        data = body.get("data")
        return [str(item.get("symbol")) for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    def outgoing(self, conn: Conn, index: int, text: str) -> str | None:
        """The session's message if its channel and one of its symbols are subscribed."""
        body = self._bodies[index]
        subscribed = self._channels(conn).get(str(body.get("channel")), {})
        if not any(symbol in subscribed for symbol in self._symbols(body)):
            return None
        return text

    def book_at(self, symbol: str, position: int, depth: int) -> KrakenLocalBook | None:
        """``symbol``'s book after the session's first ``position`` frames (``None`` before its
        first snapshot)."""
        pair = PAIRS.get(symbol, {"price_precision": 1, "qty_precision": 8})
        local: KrakenLocalBook | None = None
        for body in self._bodies[:position]:
            if body.get("channel") != "book":
                continue
            for data in body.get("data") or []:
                if data.get("symbol") != symbol:
                    continue
                if body.get("type") == "snapshot":
                    local = KrakenLocalBook(
                        depth=depth, price_precision=pair["price_precision"], qty_precision=pair["qty_precision"]
                    )
                if local is not None:
                    local.apply(data, snapshot=body.get("type") == "snapshot", verify=False)
        return local

    def snapshot_at(self, symbol: str, position: int, depth: int) -> str | None:
        """A ``book`` snapshot frame of the book at ``position`` (``None`` before the recorded one)."""
        local = self.book_at(symbol, position, depth)
        return None if local is None else local.snapshot_frame(symbol)

    def heartbeat_frames(self, conn: Conn) -> list[str]:
        """``{"channel": "heartbeat"}`` once subscribed to anything."""
        return ['{"channel":"heartbeat"}'] if any(self._channels(conn).values()) else []

    def corrupt(self, text: str) -> str:
        """The frame with its ``checksum`` plus one."""
        return _CHECKSUM.sub(lambda m: f'"checksum":{(int(m.group(1)) + 1) % 2**32}', text, count=1)
