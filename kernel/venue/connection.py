"""One client connection of the paper venue: its outbound queue, subscriptions and ``seq`` numbers.

The venue queues messages without ever blocking (``send``); the connection's writer task
(``write_loop``) sends them in order, numbers market data per instrument and channel as it sends
it, and sends a ``heartbeat`` after ``heartbeat_s`` of silence. A subscriber that falls
``HIGH_WATER`` behind holds the replay back (``wait_writable``) and is dropped after
``SLOW_CONSUMER_S``; one ``MAX_OUTBOUND`` behind is dropped at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kernel.paper_protocol import Heartbeat, Message, Quote, Trade, encode
from kernel.venue.marketdata import MarketQuote, MarketTrade

log = logging.getLogger(__name__)

HIGH_WATER = 1_000
"""A replay waits while a subscriber has this many messages queued (backpressure)."""
MAX_OUTBOUND = 50_000
"""A connection with this many messages queued is a stuck consumer and is dropped."""
SLOW_CONSUMER_S = 10.0
"""How long the replay waits for a subscriber to get below ``HIGH_WATER`` before dropping it."""

LOCAL_ACCOUNT = "local"
"""The account of a connection that has not authenticated (until accounts land: every connection's)."""

Channel = Literal["trades", "quotes"]
Outbound = Message | MarketTrade | MarketQuote
"""What a connection queues: protocol messages, and market events it numbers as it sends them."""


class Connection:
    """One client connection: its outbound queue, subscriptions and market data counters."""

    def __init__(self, ws: ServerConnection, heartbeat_s: float, clock: Callable[[], int]) -> None:
        self.ws = ws
        self.account = LOCAL_ACCOUNT
        """The venue account this connection acts for (set by its ``hello``): it sees and touches
        only that account's orders, fills and balances."""
        self.authenticated = False
        """True once an authenticated ``hello`` was welcomed (``kernel.venue.auth``)."""
        self.nonce = ""
        """The nonce of this connection's ``challenge`` (sent when a ``hello`` brings a key to sign)."""
        self.charged: str | None = None
        """The account this connection is counted against (``kernel.venue.limits``), once counted."""
        self.queue: asyncio.Queue[Outbound] = asyncio.Queue()
        self.subscriptions: set[tuple[str, Channel]] = set()
        self.seq: dict[tuple[str, Channel], int] = {}
        self.open = True
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._space = asyncio.Event()
        self._space.set()

    async def run(self, on_frame: Callable[[Connection, str | bytes], Awaitable[None]]) -> None:
        """Serve the connection until it closes: its writer task, and ``on_frame`` for each frame
        received, in order. The client going away (or being dropped) ends it quietly."""
        try:
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(self.write_loop(), name=f"venue-writer-{self.ws.id}")
                try:
                    async for frame in self.ws:
                        await on_frame(self, frame)
                finally:
                    writer.cancel()
        except* ConnectionClosed:
            pass  # the client went away (or was dropped): its orders stay at the venue
        finally:
            self.open = False

    def send(self, message: Outbound) -> None:
        """Queue a message (never blocks); a hopelessly stuck consumer is disconnected."""
        if not self.open:
            return
        self.queue.put_nowait(message)
        if self.queue.qsize() >= HIGH_WATER:
            self._space.clear()
        if self.queue.qsize() >= MAX_OUTBOUND:
            log.warning("dropping connection %s: %d messages queued", self.ws.id, self.queue.qsize())
            self.abort()

    def abort(self) -> None:
        """Close the connection abruptly (no close handshake)."""
        self.open = False
        self._space.set()
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def wait_writable(self) -> None:
        """Wait until fewer than ``HIGH_WATER`` messages are queued (or the connection is gone)."""
        if self._space.is_set():
            return
        try:
            async with asyncio.timeout(SLOW_CONSUMER_S):
                await self._space.wait()
        except TimeoutError:
            log.warning("dropping slow consumer %s", self.ws.id)
            self.abort()

    async def write_loop(self) -> None:
        """Send queued messages in order; a heartbeat after ``heartbeat_s`` without any."""
        while True:
            item: Outbound
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    item = await self.queue.get()
            except TimeoutError:
                item = Heartbeat(ts_ms=self._clock())
            if self.queue.qsize() < HIGH_WATER:
                self._space.set()
            await self.ws.send(encode(self._numbered(item)), text=True)

    def _numbered(self, item: Outbound) -> Message:
        if isinstance(item, MarketTrade):
            return Trade(
                instrument=item.instrument,
                seq=self._next_seq(item.instrument, "trades"),
                trade_id=item.trade_id,
                price=item.price,
                qty=item.qty,
                taker_side=item.taker_side,
                ts_ms=item.ts_ms,
            )
        if isinstance(item, MarketQuote):
            return Quote(
                instrument=item.instrument,
                seq=self._next_seq(item.instrument, "quotes"),
                bid=item.bid,
                bid_qty=item.bid_qty,
                ask=item.ask,
                ask_qty=item.ask_qty,
                ts_ms=item.ts_ms,
            )
        return item

    def _next_seq(self, instrument: str, channel: Channel) -> int:
        seq = self.seq.get((instrument, channel), 0) + 1
        self.seq[(instrument, channel)] = seq
        return seq
