"""Tick to order against a minimal loopback venue, and the kernel's own tick to send (issue 17).

Three processes on loopback, as in ``tick_to_order.py``, but the venue is ``loopback_venue.py``
(just enough of the venue protocol, no matching engine), so what is timed is the kernel:

* the venue pushes one trade, stamps the ``new_order`` it causes (``perf_counter_ns`` in its own
  process), answers it with an ack and an IOC cancel, waits a few ms, repeats;
* the kernel, ``tradekernel run`` with ``tick_to_order:OnePerTrade`` (one IOC buy per trade):
  feed → strategy → gate and risk → ``create`` + ``submit`` committed at ``full`` → outbox →
  ``new_order`` written. It runs with ``TRADEKERNEL_TICK_PROBE`` set (``kernel/tick_probe.py``),
  so it stamps, inside the kernel, the read of each trade frame and the write of the order bytes;
* the baseline: a bare ``websockets`` echo round trip of a ``new_order``-sized frame to an echo
  server (its own process), then one ``full`` SQLite commit of one row; the commit is timed alone
  too (the kernel-internal target is stated against it).

The two alternate: ``--repeats`` rounds, each a run of baseline round trips, then a fresh venue
and kernel for as many ticks. Percentiles are over all samples; the ``*_over_*`` gaps are the
median of the rounds' own gaps. Prints JSON lines:

* ``tick_loopback.raw``: echo + commit, and the commit alone;
* ``tick_loopback``: trade sent → order received, venue clock. Target p50 <= raw p50 + 200 µs;
* ``tick_loopback.kernel``: frame read → order bytes written, kernel clock; split at the order's
  queueing (journaled, committed, on the outbox). Target p50 <= one ``full`` commit p50 + 150 µs.

The kernel offers no permessage-deflate to a loopback host, nor does the baseline's client; with
``--no-compression`` the venue does not offer it either (only the kernel's older versions would care).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from common import emit, fresh
from loopback_venue import SETTLE_S
from roundtrip import ECHO_SERVER, start, stop
from websockets.asyncio.client import connect

from kernel.paper_protocol import NewOrder, encode
from kernel.tick_probe import ENV

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
WARMUP = 50


def us(ns: float) -> float:
    return round(ns / 1e3, 1)


def pcts(samples: list[int]) -> dict[str, float]:
    """p50 and p99 in µs of samples in ns."""
    ordered = sorted(samples)
    return {"p50_us": us(statistics.median(ordered)), "p99_us": us(ordered[max(int(len(ordered) * 0.99) - 1, 0)])}


async def raw_round_trips(port: str, db: str, count: int) -> tuple[list[int], list[int]]:
    """``count`` echo round trips, each followed by a one-row ``full`` commit: (echo + commit, commit) in ns.

    Each waits ``SETTLE_S`` first, as each tick does: on this loaded 2-core machine a process that
    slept is slow to wake (a cold ``send`` costs ~150 µs here, a warm one ~12 µs), and a baseline run
    back to back would be warmer than the ticks it stands next to."""
    frame = encode(NewOrder(client_order_id="o1-000001", instrument="BTCUSDT", side="buy",
                            qty=Decimal("0.5"), price=Decimal("39400.00"))).decode()  # fmt: skip
    conn = sqlite3.connect(fresh(db), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data TEXT)")
    totals, commits = [], []
    async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:  # as the kernel on loopback
        for i in range(count):
            await asyncio.sleep(SETTLE_S)
            start_ns = time.perf_counter_ns()
            await ws.send(frame)
            await ws.recv()
            commit_ns = time.perf_counter_ns()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?, ?)", (i, frame))
            conn.execute("COMMIT")
            end_ns = time.perf_counter_ns()
            totals.append(end_ns - start_ns)
            commits.append(end_ns - commit_ns)
    conn.close()
    return totals, commits


def kernel_round(workdir: str, ticks: int, round_no: int, compression: bool) -> tuple[list[int], list[list[int]]]:
    """A fresh loopback venue and kernel: (trade → order on the venue's clock, the kernel probe's samples)."""
    probe_path = os.path.join(workdir, f"probe-{round_no}.json")
    flags = [] if compression else ["--no-compression"]
    venue = subprocess.Popen(
        [sys.executable, str(HERE / "loopback_venue.py"), "--ticks", str(ticks), "--warmup", str(WARMUP), *flags],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert venue.stdout is not None
    url = venue.stdout.readline().split()[-1]
    config = os.path.join(workdir, "kernel.toml")
    with open(config, "w") as f:
        f.write('[kernel]\ncancel_on_stop = false\nstatus_view = "off"\nlog_level = "warning"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), ENV: probe_path}
    kernel = subprocess.Popen(
        [sys.executable, "-m", "kernel", "run", "--config", config, "--db", os.path.join(workdir, f"k-{round_no}.db"),
         "--venue", url, "--strategy", "tick_to_order:OnePerTrade"],
        cwd=workdir, env=env,
    )  # fmt: skip
    try:
        line = venue.stdout.readline()
    finally:
        kernel.send_signal(signal.SIGTERM)
        try:
            kernel.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kernel.kill()
        venue.kill()
        venue.wait()
    if not line:
        raise SystemExit("the loopback venue ended without samples")
    with open(probe_path) as f:
        probe = json.load(f)["samples"]
    ticks = json.loads(line)
    return ticks, probe[-len(ticks) :]  # the same ticks: the earlier ones warmed up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=1000, help="ticks measured, over all rounds (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of baseline then kernel (default 5)")
    parser.add_argument("--no-compression", action="store_true", help="no permessage-deflate on either side")
    args = parser.parse_args()
    per_round = max(args.ticks // args.repeats, 1)
    workdir = tempfile.mkdtemp(prefix="tk-loopback-")
    raw: list[int] = []
    commits: list[int] = []
    ticks: list[int] = []
    sends: list[int] = []
    queued: list[int] = []
    gaps: list[float] = []
    kernel_gaps: list[float] = []
    try:
        echo, echo_port = start([sys.executable, "-c", ECHO_SERVER])
        try:
            for round_no in range(args.repeats):
                raw_round, commit_round = asyncio.run(
                    raw_round_trips(echo_port, os.path.join(workdir, "raw.db"), per_round)
                )
                tick_round, probe_round = kernel_round(workdir, per_round, round_no, not args.no_compression)
                raw += raw_round
                commits += commit_round
                ticks += tick_round
                sends += [s for s, _ in probe_round]
                queued += [q for _, q in probe_round]
                gaps.append(statistics.median(tick_round) - statistics.median(raw_round))
                kernel_gaps.append(statistics.median(s for s, _ in probe_round) - statistics.median(commit_round))
        finally:
            stop(echo)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    emit({"bench": "tick_loopback.raw", "round_trips": len(raw), **pcts(raw),
          "commit_p50_us": us(statistics.median(commits)), "commit_p99_us": pcts(commits)["p99_us"],
          "what": "websockets echo + one full SQLite commit (and the commit alone)"})  # fmt: skip
    gap = us(statistics.median(gaps))
    emit({"bench": "tick_loopback", "ticks": len(ticks), "repeats": args.repeats, **pcts(ticks),
          "p50_over_baseline_us": gap,
          "target": "p50 <= baseline p50 + 200 us", "meets": gap <= 200})  # fmt: skip
    kernel_gap = us(statistics.median(kernel_gaps))
    emit({"bench": "tick_loopback.kernel", "ticks": len(sends), **pcts(sends),
          "read_to_queued_p50_us": us(statistics.median(queued)),
          "queued_to_written_p50_us": us(statistics.median(s - q for s, q in zip(sends, queued, strict=True))),
          "commit_p50_us": us(statistics.median(commits)), "p50_over_commit_us": kernel_gap,
          "target": "p50 <= one full commit p50 + 150 us", "meets": kernel_gap <= 150})  # fmt: skip


if __name__ == "__main__":
    main()
