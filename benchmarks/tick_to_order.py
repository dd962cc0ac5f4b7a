"""Tick to order: from the venue sending a trade to the venue receiving the order it caused.

Three processes on loopback:

* the paper venue (``tick_venue.py``): pushes one market trade, waits for the ``new_order`` it
  causes, records the time between the two on its own clock, waits a few ms (so the order's ack
  is journaled before the next tick), repeats;
* the kernel, ``tradekernel run`` with the one-order-per-trade strategy below: feed → strategy →
  order gate → order machine (``create`` + ``submit``) → journal commit at ``full`` → execution
  client → venue. (No risk checks exist yet: issue 8 adds them to this path.)
* for the baseline, a bare ``websockets`` echo server: an echo round trip of a ``new_order``-sized
  frame plus one ``full`` SQLite commit (``roundtrip.raw``, measured in the same run).

Target (issue 6): p50 <= baseline p50 + 200 µs. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from common import emit
from roundtrip import ECHO_SERVER, percentiles, raw_round_trips, start, stop

from kernel.feed.events import TradeEvent
from kernel.strategy import Context, MarketEvent, Place, Strategy

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


class OnePerTrade(Strategy):
    """Places one small IOC buy far below the market for every trade: the venue cancels it at once,
    so the book stays empty however many ticks are measured."""

    name = "one_per_trade"

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Place]:
        if isinstance(event, TradeEvent) and ctx.trading_allowed:
            return [Place(event.instrument, "buy", Decimal("0.001"), Decimal("1.00"), tif="ioc", tag="tick")]
        return []


def run_kernel(venue_url: str, workdir: str) -> subprocess.Popen[bytes]:
    config = os.path.join(workdir, "kernel.toml")
    with open(config, "w") as f:
        f.write('[kernel]\ncancel_on_stop = false\nstatus_view = "off"\nlog_level = "warning"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    args = [sys.executable, "-m", "kernel", "run", "--config", config, "--db", os.path.join(workdir, "k.db"),
            "--venue", venue_url, "--strategy", "tick_to_order:OnePerTrade"]  # fmt: skip
    return subprocess.Popen(args, cwd=workdir, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=1000, help="ticks measured (default 1000)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="tk-bench-")
    echo, echo_port = start([sys.executable, "-c", ECHO_SERVER])
    try:
        raw = asyncio.run(raw_round_trips(echo_port, os.path.join(workdir, "raw.db"), args.ticks))
    finally:
        stop(echo)
    venue_proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "tick_venue.py"),
            "--ticks",
            str(args.ticks),
            "--db",
            os.path.join(workdir, "v.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert venue_proc.stdout is not None
    url = venue_proc.stdout.readline().split()[-1]
    kernel = run_kernel(url, workdir)
    try:
        line = venue_proc.stdout.readline()
        venue_proc.wait(timeout=600)
    finally:
        kernel.send_signal(signal.SIGTERM)
        try:
            kernel.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kernel.kill()
        if venue_proc.poll() is None:
            venue_proc.kill()
    samples_ns = json.loads(line)
    ours = percentiles([ns / 1e9 for ns in samples_ns])
    base = percentiles(raw)
    emit({"bench": "tick_to_order.raw", "round_trips": len(raw), **base,
          "what": "websockets echo + one full SQLite commit"})  # fmt: skip
    emit({"bench": "tick_to_order", "ticks": len(samples_ns), **ours,
          "p50_over_baseline_us": round(ours["p50_us"] - base["p50_us"], 1),
          "target": "p50 <= baseline p50 + 200 us",
          "meets": ours["p50_us"] <= base["p50_us"] + 200})  # fmt: skip


if __name__ == "__main__":
    main()
