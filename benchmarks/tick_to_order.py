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

The two alternate (issue 17): ``--repeats`` rounds, each a run of baseline round trips on the one
echo server, then a venue and a kernel started afresh for as many ticks; the percentiles are over
every sample of all rounds, and ``p50_over_baseline_us`` is the median of the rounds' own gaps.
The temporary folder is removed at the end.

Target (issue 6): p50 <= baseline p50 + 200 µs. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
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


def run_kernel(venue_url: str, workdir: str, db: str) -> subprocess.Popen[bytes]:
    config = os.path.join(workdir, "kernel.toml")
    with open(config, "w") as f:
        f.write('[kernel]\ncancel_on_stop = false\nstatus_view = "off"\nlog_level = "warning"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    args = [sys.executable, "-m", "kernel", "run", "--config", config, "--db", db,
            "--venue", venue_url, "--strategy", "tick_to_order:OnePerTrade"]  # fmt: skip
    return subprocess.Popen(args, cwd=workdir, env=env)


def kernel_ticks(workdir: str, ticks: int, round_no: int) -> list[float]:
    """One round: a fresh venue and kernel, ``ticks`` measured ticks; seconds from trade to order."""
    venue_db, kernel_db = (os.path.join(workdir, f"{name}-{round_no}.db") for name in ("v", "k"))
    venue_proc = subprocess.Popen(
        [sys.executable, str(HERE / "tick_venue.py"), "--ticks", str(ticks), "--db", venue_db],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert venue_proc.stdout is not None
    url = venue_proc.stdout.readline().split()[-1]
    kernel = run_kernel(url, workdir, kernel_db)
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
    return [ns / 1e9 for ns in json.loads(line)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=1000, help="ticks measured, over all rounds (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of baseline then kernel (default 5)")
    args = parser.parse_args()
    per_round = max(args.ticks // args.repeats, 1)
    workdir = tempfile.mkdtemp(prefix="tk-bench-")
    raw: list[float] = []
    ours: list[float] = []
    gaps: list[float] = []
    try:
        echo, echo_port = start([sys.executable, "-c", ECHO_SERVER])
        try:
            for round_no in range(args.repeats):
                raw_round = asyncio.run(raw_round_trips(echo_port, os.path.join(workdir, "raw.db"), per_round))
                our_round = kernel_ticks(workdir, per_round, round_no)
                raw += raw_round
                ours += our_round
                gaps.append((statistics.median(our_round) - statistics.median(raw_round)) * 1e6)
        finally:
            stop(echo)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base, figure = percentiles(raw), percentiles(ours)
    gap = statistics.median(gaps)
    emit({"bench": "tick_to_order.raw", "round_trips": len(raw), **base,
          "what": "websockets echo + one full SQLite commit"})  # fmt: skip
    emit({"bench": "tick_to_order", "ticks": len(ours), "repeats": args.repeats, **figure,
          "p50_over_baseline_us": round(gap, 1), "target": "p50 <= baseline p50 + 200 us",
          "meets": gap <= 200})  # fmt: skip


if __name__ == "__main__":
    main()
