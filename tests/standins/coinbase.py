"""A loopback Coinbase Exchange feed (``wss://ws-feed.exchange.coinbase.com``'s protocol).

The client sends ``{"type": "subscribe", "product_ids": [...], "channels": [...]}`` (a channel as a
name or as ``{"name", "product_ids"}``); the answer is one ``subscriptions`` message listing what is
subscribed. Then, per channel:

* ``level2`` / ``level2_batch`` / ``level2_50``: a ``snapshot`` of each product (the recorded one
  when the session has not reached it yet, else the book where the connection is, by the
  documented procedure), then the session's ``l2update`` messages;
* ``matches`` (``match``, ``last_match``), ``ticker``: the session's messages;
* ``heartbeat``: one per product each second without other traffic, with the product's
  ``last_trade_id`` as far as the venue is (a dropped ``match`` shows in it: a gap).

An unknown product is answered with ``{"type": "error", "message": "Failed to subscribe"}``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.standins.base import Conn, StandIn, now_iso
from tests.standins.reference import Book, coinbase_apply, coinbase_load

LEVEL2 = frozenset({"level2", "level2_batch", "level2_50"})
_CHANNEL_OF = {
    "snapshot": "level2",
    "l2update": "level2",
    "match": "matches",
    "last_match": "matches",
    "ticker": "ticker",
    "heartbeat": "heartbeat",
}


class CoinbaseStandIn(StandIn):
    """Coinbase Exchange's feed on 127.0.0.1: see the module docstring and ``StandIn``."""

    venue = "coinbase"
    heartbeat_every = 1.0

    def __init__(self, session: Any, **options: Any) -> None:
        super().__init__(session, **options)
        self._bodies: list[dict[str, Any]] = []
        for frame in session.frames:
            try:
                body = json.loads(frame.text)
            except ValueError:
                body = {}
            self._bodies.append(body if isinstance(body, dict) else {})
        self._sequence = itertools.count(1)

    def _channels(self, conn: Conn) -> dict[str, set[str]]:
        channels: dict[str, set[str]] = conn.subscribed.setdefault("channels", {})
        return channels

    async def on_open(self, conn: Conn) -> None:
        """Nothing: the venue waits for a ``subscribe``."""
        del conn

    async def on_message(self, conn: Conn, body: dict[str, Any]) -> None:
        """``subscribe`` / ``unsubscribe``."""
        kind = body.get("type")
        if kind not in ("subscribe", "unsubscribe"):
            await self.send(
                conn,
                json.dumps({"type": "error", "message": "Failed to subscribe", "reason": f"unknown type {kind!r}"}),
            )
            return
        default = [str(p) for p in body.get("product_ids") or []]
        wanted: list[tuple[str, list[str]]] = []
        for channel in body.get("channels") or []:
            if isinstance(channel, dict):
                wanted.append((str(channel.get("name")), [str(p) for p in channel.get("product_ids") or default]))
            else:
                wanted.append((str(channel), default))
        unknown = sorted({p for _, products in wanted for p in products} - set(self.session.instruments))
        if unknown or not wanted:
            reason = f"{unknown[0]} is not a valid product" if unknown else "No channels provided"
            await self.send(conn, json.dumps({"type": "error", "message": "Failed to subscribe", "reason": reason}))
            return
        channels = self._channels(conn)
        fresh: list[str] = []
        for name, products in wanted:
            current = channels.setdefault(name, set())
            if kind == "subscribe":
                fresh += [p for p in products if name in LEVEL2 and p not in current]
                current.update(products)
            else:
                current.difference_update(products)
        listed = [{"name": name, "product_ids": sorted(products)} for name, products in channels.items() if products]
        await self.send(conn, json.dumps({"type": "subscriptions", "channels": listed}))
        for product in dict.fromkeys(fresh):
            snapshot = self.snapshot_at(product, conn.cursor)
            if snapshot is not None:
                await self.send(conn, snapshot)
        conn.started.set()

    def _subscribed(self, conn: Conn, channel: str, product: str) -> bool:
        channels = self._channels(conn)
        names = LEVEL2 if channel == "level2" else {channel}
        return any(product in channels.get(name, ()) for name in names)

    def outgoing(self, conn: Conn, index: int, text: str) -> str | None:
        """The session's message if its channel and product are subscribed."""
        body = self._bodies[index]
        channel = _CHANNEL_OF.get(str(body.get("type")))
        product = body.get("product_id")
        if channel is None or not isinstance(product, str) or not self._subscribed(conn, channel, product):
            return None
        return text

    def book_at(self, product: str, position: int) -> Book | None:
        """``product``'s level2 book after the session's first ``position`` frames (``None`` before
        its first snapshot)."""
        book: Book | None = None
        for body in self._bodies[:position]:
            if body.get("product_id") != product:
                continue
            if body.get("type") == "snapshot":
                book = coinbase_load(body)
            elif body.get("type") == "l2update" and book is not None:
                coinbase_apply(book, body)
        return book

    def snapshot_at(self, product: str, position: int) -> str | None:
        """A ``snapshot`` message of the book at ``position``; ``None`` before the recorded one."""
        book = self.book_at(product, position)
        if book is None:
            return None
        return json.dumps(
            {
                "type": "snapshot",
                "product_id": product,
                "bids": [[level.price_text, level.qty_text] for level in book.sorted_bids()],
                "asks": [[level.price_text, level.qty_text] for level in book.sorted_asks()],
                "time": now_iso(),
            },
            separators=(",", ":"),
        )

    def last_trade_id(self, product: str) -> int:
        """The product's last trade id as far as the venue is (0 if none)."""
        last = 0
        for body in self._bodies[: self.high_water]:
            if body.get("product_id") == product and body.get("type") in ("match", "last_match", "ticker"):
                last = max(last, int(body.get("trade_id") or 0))
        return last

    def heartbeat_frames(self, conn: Conn) -> list[str]:
        """One ``heartbeat`` per product of the ``heartbeat`` channel."""
        return [
            json.dumps(
                {
                    "type": "heartbeat",
                    "sequence": next(self._sequence),
                    "last_trade_id": self.last_trade_id(product),
                    "product_id": product,
                    "time": now_iso(),
                }
            )
            for product in sorted(self._channels(conn).get("heartbeat", ()))
        ]
