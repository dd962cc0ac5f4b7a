"""The venue side of ``tick_to_order.py``: a paper venue that times trade → ``new_order``.

Prints ``listening URL`` once bound, then (after ``--ticks`` measured ticks) one JSON line: the
list of nanoseconds from pushing each trade to receiving the order it caused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from decimal import Decimal

from kernel.paper_protocol import ClientMessage, NewOrder
from kernel.venue.server import PaperVenue, VenueConfig

WARMUP_TICKS = 50
SETTLE_S = 0.02
"""Pause between ticks, so the previous order's ack and IOC cancel are journaled before the next trade."""


async def main(ticks: int, db: str) -> None:
    venue = PaperVenue(db, VenueConfig(instruments=("BTCUSDT",), autoplay=False, heartbeat_s=1.0))
    orders: asyncio.Queue[int] = asyncio.Queue()

    def on_request(message: ClientMessage) -> None:
        if isinstance(message, NewOrder):
            orders.put_nowait(time.perf_counter_ns())

    venue.on_request = on_request
    await venue.start("127.0.0.1", 0)
    print("listening", venue.url, flush=True)
    # Until the kernel is streaming and its order entry is open, trades cause nothing.
    while orders.empty():
        await venue.push_trade("BTCUSDT", Decimal("40000.00"), Decimal("0.01"), "buy")
        await asyncio.sleep(0.05)
    samples: list[int] = []
    for i in range(WARMUP_TICKS + ticks):
        await asyncio.sleep(SETTLE_S)
        while not orders.empty():
            orders.get_nowait()
        sent = time.perf_counter_ns()
        await venue.push_trade("BTCUSDT", Decimal("40000.00"), Decimal("0.01"), "buy")
        received = await asyncio.wait_for(orders.get(), timeout=10)
        if i >= WARMUP_TICKS:
            samples.append(received - sent)
    print(json.dumps(samples), flush=True)
    await venue.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.ticks, args.db))
