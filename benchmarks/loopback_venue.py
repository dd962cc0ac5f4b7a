"""The venue side of ``tick_loopback.py``: just enough of the venue protocol to time trade → order.

Not the paper venue (no matching engine, no database, no accounts): a ``websockets`` server that
speaks ``docs/venue-protocol.md`` as far as a kernel needs to log in, reconcile an empty account
and stream:

* ``hello`` → ``welcome`` (instrument ``BTCUSDT``, no authentication, like ``--open``);
* ``subscribe`` → ``subscribed``; that connection is the market-data one;
* ``open_orders``, ``fills_since``, ``order_status``, ``balances``, ``ping``: empty answers;
* ``new_order`` → its receipt time is stamped (``perf_counter_ns``, before decoding), then it is
  answered with ``execution new`` and ``execution canceled`` (the IOC remainder killed), so the
  kernel's order ends and its state stays sane;
* a ``cancel_order`` (the kernel's stop) → ``cancel_rejected``, unknown order.

Prints ``listening URL`` once bound. Then, once the kernel answers trades with orders (it is
streaming and its order entry is open), it pushes ``--warmup`` + ``--ticks`` trades, one at a time:
stamp, send the trade frame, wait for the ``new_order`` it caused; between ticks it waits
``SETTLE_S`` (the order's ack and cancel are journaled meanwhile). Prints one JSON line: the list
of nanoseconds from each measured trade's send to its order's receipt. No compression is
negotiated when ``--no-compression`` is given (the kernel then sends uncompressed frames too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from decimal import Decimal

from websockets.asyncio.server import ServerConnection, serve

from kernel.paper_protocol import (
    VERSION,
    BalancesReport,
    CancelOrder,
    Execution,
    Fills,
    FillsSinceRequest,
    Hello,
    Message,
    NewOrder,
    OpenOrders,
    OpenOrdersRequest,
    OrderStatus,
    OrderStatusRequest,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    Trade,
    Welcome,
    decode_client,
    encode,
)

INSTRUMENT = "BTCUSDT"
SETTLE_S = 0.01
"""Pause between ticks, so the previous order's ack and cancel are handled before the next trade."""
ZERO = Decimal(0)


async def _send(ws: ServerConnection, message: Message) -> None:
    await ws.send(encode(message), text=True)  # JSON bytes as a text frame, as the protocol says


class LoopbackVenue:
    """The server's state: the market-data connection, the trade ``seq`` and the orders' stamps."""

    def __init__(self) -> None:
        self.feed: ServerConnection | None = None
        self.seq = 0
        self.orders: asyncio.Queue[int] = asyncio.Queue()
        self.venue_ids = 0

    async def handler(self, ws: ServerConnection) -> None:
        async for frame in ws:
            received = time.perf_counter_ns()
            message = decode_client(frame)
            if isinstance(message, NewOrder):
                self.orders.put_nowait(received)
                await self._ack_and_kill(ws, message)
            elif isinstance(message, Hello):
                await _send(ws, Welcome(version=VERSION, session="loopback", instruments=[INSTRUMENT]))
            elif isinstance(message, Subscribe):
                self.feed = ws
                answer = Subscribed(instruments=message.instruments, channels=list(message.channels), id=message.id)
                await _send(ws, answer)
            elif isinstance(message, OpenOrdersRequest):
                await _send(ws, OpenOrders(orders=[], id=message.id))
            elif isinstance(message, FillsSinceRequest):
                await _send(ws, Fills(fills=[], id=message.id, next=message.after))
            elif isinstance(message, OrderStatusRequest):
                await _send(ws, OrderStatus(client_order_id=message.client_order_id, order=None, id=message.id))
            elif isinstance(message, Ping):
                await _send(ws, Pong(id=message.id))
            elif isinstance(message, CancelOrder):
                await _send(ws, self._execution(message.client_order_id, "cancel_rejected", "rejected", ""))
            else:  # balances
                await _send(ws, BalancesReport(balances=[], id=getattr(message, "id", "")))

    def _execution(self, client_order_id: str, exec_: str, status: str, venue_order_id: str) -> Execution:
        return Execution(client_order_id=client_order_id, exec=exec_, status=status,  # type: ignore[arg-type]
                         venue_order_id=venue_order_id, qty=ZERO, price=None, cum_qty=ZERO, leaves_qty=ZERO,
                         ts_ms=int(time.time() * 1000), reason=None if exec_ == "new" else "unknown order")  # fmt: skip

    async def _ack_and_kill(self, ws: ServerConnection, order: NewOrder) -> None:
        self.venue_ids += 1
        venue_order_id = f"L{self.venue_ids}"
        now = int(time.time() * 1000)
        fields = {"client_order_id": order.client_order_id, "venue_order_id": venue_order_id, "qty": order.qty,
                  "price": order.price, "cum_qty": ZERO, "ts_ms": now}  # fmt: skip
        await _send(ws, Execution(exec="new", status="new", leaves_qty=order.qty, **fields))
        await _send(ws, Execution(exec="canceled", status="canceled", leaves_qty=ZERO, reason="ioc", **fields))

    async def push_trade(self) -> None:
        assert self.feed is not None
        self.seq += 1
        trade = Trade(instrument=INSTRUMENT, seq=self.seq, trade_id=f"T{self.seq}", price=Decimal("40000.00"),
                      qty=Decimal("0.01"), taker_side="buy", ts_ms=int(time.time() * 1000))  # fmt: skip
        await _send(self.feed, trade)


async def main(ticks: int, warmup: int, compression: bool) -> None:
    venue = LoopbackVenue()
    async with serve(venue.handler, "127.0.0.1", 0, compression="deflate" if compression else None) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening", f"ws://127.0.0.1:{port}", flush=True)
        # Until the kernel is streaming and its order entry is open, trades cause nothing.
        while venue.orders.empty():
            if venue.feed is not None:
                await venue.push_trade()
            await asyncio.sleep(0.05)
        samples: list[int] = []
        for i in range(warmup + ticks):
            await asyncio.sleep(SETTLE_S)
            while not venue.orders.empty():
                venue.orders.get_nowait()
            sent = time.perf_counter_ns()
            await venue.push_trade()
            received = await asyncio.wait_for(venue.orders.get(), timeout=10)
            if i >= warmup:
                samples.append(received - sent)
        print(json.dumps(samples), flush=True)
        await asyncio.sleep(3600)  # until the benchmark stops it (after the kernel)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--no-compression", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.ticks, args.warmup, not args.no_compression))
