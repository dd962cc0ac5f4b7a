"""Order round trip on loopback, next to a raw baseline measured in the same run. Prints JSON lines.

* ``roundtrip.order``: the kernel decides → the order (``create`` + ``submit``) is committed to the
  journal at ``full`` → ``new_order`` is sent → the paper venue (its own process) acks → the ack
  is journaled (``accept``, committed at ``normal``: what the venue tells us, docs/architecture.md
  "Durability before effect"). Measured from the decision to the ack's commit, one order at a time.
* ``roundtrip.raw``: a bare ``websockets`` echo round trip to an echo server (its own process) of a
  frame the size of a ``new_order``, plus one ``full`` SQLite commit of one row. No compression,
  as the kernel's own sockets to a loopback host (``kernel.paper_session.open_socket``).

The two alternate (issue 17): ``--repeats`` rounds, each ``--orders / repeats`` raw round trips
then as many orders (a fresh journal per round; the echo server and the venue run throughout).
Percentiles are over every sample of all rounds; ``p50_over_baseline_us`` is the median of the
rounds' own gaps. The temporary folder is removed at the end.

Targets (issue 4): p50 <= baseline p50 + 150 µs, p99 <= 3 x baseline p99. Note what the order path
holds that the baseline does not: a second commit (the ack's, at ``normal``: no fsync) and the
order machine's transitions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
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
from websockets.asyncio.client import connect

from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.paper_protocol import NewOrder, encode
from machines import Entity, Transition
from machines.order_terms import OrderTerms
from storage import Journal

REPO = Path(__file__).resolve().parent.parent
ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", 0) as server:
        print("listening", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
"""


def start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server process; return it and the last word of its first line (its port or url)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=str(REPO),
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        proc.kill()
        raise SystemExit(f"{args} did not start")
    return proc, proc.stdout.readline().split()[-1]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99) - 1] * 1e6, 1),
    }


async def raw_round_trips(port: str, db: str, count: int) -> list[float]:
    frame = encode(NewOrder(client_order_id="o1-000001", instrument="BTCUSDT", side="buy",
                            qty=Decimal("0.5"), price=Decimal("39400.00"))).decode()  # fmt: skip
    conn = sqlite3.connect(fresh(db), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data TEXT)")
    samples = []
    async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:  # as the kernel on loopback
        for i in range(count):
            start_s = time.perf_counter()
            await ws.send(frame)
            await ws.recv()
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (?, ?)", (i, frame))
            conn.execute("COMMIT")
            samples.append(time.perf_counter() - start_s)
    conn.close()
    return samples


async def order_round_trips(url: str, db: str, count: int) -> list[float]:
    journal = Journal.open(fresh(db), durability="full")
    client = VenueClient(url)
    manager = OrderManager(journal, client)
    acked: asyncio.Queue[float] = asyncio.Queue()

    def on_update(order: Entity, transition: Transition) -> None:
        if transition.trigger == "accept":
            acked.put_nowait(time.perf_counter())  # listeners run after the ack's commit

    manager.listeners.append(on_update)
    samples = []
    await client.connect()
    runner = asyncio.create_task(manager.run())
    try:
        while manager.paused:
            await asyncio.sleep(0.001)
        for _ in range(count):
            start_s = time.perf_counter()
            await manager.place(OrderTerms("BTCUSDT", "buy", Decimal("0.5"), Decimal("100")))  # far from the market
            samples.append(await asyncio.wait_for(acked.get(), timeout=10) - start_s)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.close()
        journal.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000, help="round trips per figure (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of baseline then orders (default 5)")
    args = parser.parse_args()
    per_round = max(args.orders // args.repeats, 1)
    workdir = tempfile.mkdtemp(prefix="tradekernel-bench-")
    raw: list[float] = []
    orders: list[float] = []
    gaps: list[float] = []
    try:
        echo, echo_port = start([sys.executable, "-c", ECHO_SERVER])
        try:
            # orders as fast as they go: the venue's order rate limit off (docs/venue-protocol.md, Limits)
            venue, url = start([sys.executable, "-m", "kernel", "venue", "--open", "--port", "0",
                                "--db", os.path.join(workdir, "venue.db"), "--order-rate", "0"])  # fmt: skip
            try:
                for _ in range(args.repeats):
                    raw_round = asyncio.run(raw_round_trips(echo_port, os.path.join(workdir, "raw.db"), per_round))
                    our_round = asyncio.run(order_round_trips(url, os.path.join(workdir, "kernel.db"), per_round))
                    raw += raw_round
                    orders += our_round
                    gaps.append((statistics.median(our_round) - statistics.median(raw_round)) * 1e6)
            finally:
                stop(venue)
        finally:
            stop(echo)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base, ours = percentiles(raw), percentiles(orders)
    gap = statistics.median(gaps)
    emit({"bench": "roundtrip.raw", "round_trips": len(raw), **base,
          "what": "websockets echo + one full SQLite commit"})  # fmt: skip
    emit({"bench": "roundtrip.order", "round_trips": len(orders), "repeats": args.repeats, **ours,
          "p50_over_baseline_us": round(gap, 1),
          "p99_ratio": round(ours["p99_us"] / base["p99_us"], 2),
          "target": "p50 <= baseline + 150 us, p99 <= 3 x baseline p99",
          "meets": gap <= 150 and ours["p99_us"] <= 3 * base["p99_us"]})  # fmt: skip


if __name__ == "__main__":
    main()
