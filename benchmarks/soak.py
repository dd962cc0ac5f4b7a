"""Soak: a long order flood, the kernel's resident memory (RSS) sampled throughout.

Two processes on loopback: the paper venue (``tradekernel venue``, its random walk; its own memory
is not measured) and, in this process, a ``Kernel`` running the flood strategy below: every
``on_timer`` (5 ms) it cancels the orders it has resting and places new ones, so orders are
created, accepted, canceled, expired (IOC far from the market) and filled (a crossing buy and sell)
continuously, with a handful live at any time. The journal is at durability ``normal`` (the flood
is bounded by the loop, not by fsync).

RSS (``VmRSS`` of ``/proc/self/status``) is sampled every ``--every`` seconds. Issue 14's target:
after the first minute, RSS stays within 10% of its value at the first minute. Prints JSON lines
(one per sample with ``"sample": true``, then the result) and exits 1 when the growth exceeds
``--max-growth``. ``make soak`` runs it for 10 minutes (not part of ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

from common import emit
from roundtrip import start, stop

from kernel.app import Kernel
from kernel.config import load
from kernel.strategy import Cancel, Context, Intent, Place, Strategy

REPO = Path(__file__).resolve().parent.parent
QTY = Decimal("0.001")


def rss_kb() -> int:
    """This process's resident set size in KiB (``VmRSS``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS in /proc/self/status")  # pragma: no cover - Linux only


class Flood(Strategy):
    """Each timer: cancel what rests, place a resting buy far below, an IOC far below (expires), and
    a crossing buy and sell at 1% through the mid (filled; the position stays flat)."""

    name = "soak_flood"
    timer_interval_ms: ClassVar[int | None] = 5

    def on_timer(self, ctx: Context) -> Iterable[Intent]:
        if not ctx.trading_allowed:
            return []
        intents: list[Intent] = [Cancel(o.client_order_id) for o in ctx.open_orders.values() if o.state == "accepted"]
        if len(ctx.open_orders) > 20:  # the venue is behind: let it catch up
            return intents
        instrument = "BTCUSDT"
        mid = ctx.mid(instrument)
        intents.append(Place(instrument, "buy", QTY, Decimal("1.00"), tag="rest"))
        intents.append(Place(instrument, "buy", QTY, Decimal("1.00"), tif="ioc", tag="ioc"))
        if mid is not None:
            step = (mid / 100).quantize(Decimal("0.01"))
            intents.append(Place(instrument, "buy", QTY, mid + step, tif="ioc", tag="take"))
            intents.append(Place(instrument, "sell", QTY, mid - step, tif="ioc", tag="take"))
        return intents


async def soak(venue_url: str, workdir: str, seconds: float, every: float) -> tuple[list[tuple[float, int]], Kernel]:
    overrides = {
        "kernel.db": os.path.join(workdir, "kernel.db"),
        "kernel.durability": "normal",
        "kernel.status_view": "off",
        "kernel.log_level": "error",
        "kernel.control_socket": os.path.join(workdir, "k.sock"),
        "venue.url": venue_url,
        "venue.instruments": ["BTCUSDT"],
    }
    kernel = Kernel(load(None, overrides), strategy=Flood())
    task = asyncio.create_task(kernel.run(), name="soak-kernel")
    samples: list[tuple[float, int]] = []
    began = time.monotonic()
    try:
        while (elapsed := time.monotonic() - began) < seconds:
            if task.done():
                raise SystemExit(f"the kernel stopped after {elapsed:.0f} s: exit {task.result()}")
            samples.append((elapsed, rss_kb()))
            manager = kernel.manager
            emit({"sample": True, "t_s": round(elapsed, 1), "rss_kb": samples[-1][1],
                  "orders_in_memory": 0 if manager is None else len(manager.orders),
                  "orders_ended": 0 if manager is None else sum(manager.ended.values())})  # fmt: skip
            await asyncio.sleep(every)
        samples.append((time.monotonic() - began, rss_kb()))
    finally:
        kernel.request_stop("soak finished")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(30):
                await task
    return samples, kernel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to flood (default 600)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    parser.add_argument("--warmup", type=float, default=60.0, help="growth is measured from this time (default 60)")
    parser.add_argument("--max-growth", type=float, default=0.10, help="largest growth allowed (default 0.10)")
    args = parser.parse_args()
    if args.seconds <= args.warmup:
        parser.error("--seconds must be longer than --warmup")
    with tempfile.TemporaryDirectory(prefix="tk-soak-") as workdir:
        venue, url = start([sys.executable, "-m", "kernel", "venue", "--open", "--port", "0", "--seed", "14",
                            "--db", os.path.join(workdir, "venue.db"), "--order-rate", "0"])  # fmt: skip
        try:
            samples, kernel = asyncio.run(soak(url, workdir, args.seconds, args.every))
        finally:
            stop(venue)
    at_warmup = next(rss for t, rss in samples if t >= args.warmup)
    end = samples[-1][1]
    peak = max(rss for t, rss in samples if t >= args.warmup)
    growth = (peak - at_warmup) / at_warmup
    manager = kernel.manager
    ended = {} if manager is None else dict(manager.ended)
    emit({
        "name": "soak.rss",
        "seconds": round(samples[-1][0], 1),
        "orders": sum(ended.values()),
        "orders_by_end": ended,
        "rss_first_minute_kb": at_warmup,
        "rss_end_kb": end,
        "rss_peak_after_first_minute_kb": peak,
        "growth": round(growth, 4),
        "target": f"<= {args.max_growth}",
        "ok": growth <= args.max_growth,
    })  # fmt: skip
    return 0 if growth <= args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
