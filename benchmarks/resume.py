"""Resume after a crash: process start to ready-to-trade, reconciliation included. JSON lines.

Set-up (not timed): a paper venue process holds 10,000 working orders; a journal holds the same
10,000 orders live (``accepted``), placed through the real order path, and its last run was
killed. Two copies get filler history (orders created, sent, acked and canceled: ended entities)
up to 100,000 and 1,000,000 rows.

Timed: ``tradekernel run`` on each copy, from ``exec`` of the process to its log line ``ready:
order entry open``: open the journal (crash detected, entities of the killed run retired), rebuild
the 10,000 live orders, connect, reconcile every one of them with the venue (one ``open_orders``
request), open order entry. Each on a fresh copy; the two cases alternate (100k, 1M, 100k, 1M,
...: issue 17), so load on the machine hits both alike; medians of ``--repeats`` (default 5) each,
and the median of the per-pair ratios.

Target (issue 7): <= 2 s for both, and the 1M case <= 1.2 x the 100k case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from common import emit, fresh

from kernel.execution import VenueClient
from kernel.orders import OrderManager
from machines import ORDER
from machines.order_terms import OrderTerms
from storage import Journal
from storage.schema import copy_database

REPO = Path(__file__).resolve().parent.parent
LIVE = 10_000
CONFIG = '[kernel]\ncancel_on_stop = false\nstatus_view = "off"\n[strategy]\nname = "idle"\n'


def start_venue(workdir: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        # 10,000 resting orders placed at once: the venue's order rate and open-order limits off
        [sys.executable, "-m", "kernel", "venue", "--open", "--port", "0", "--db", os.path.join(workdir, "venue.db"),
         "--order-rate", "0", "--max-open-orders", "0"],
        stdout=subprocess.PIPE, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()[-1]


async def place_live_orders(url: str, db: str, count: int) -> None:
    """``count`` resting orders through the real order path; the journal is then left as a crash leaves it."""
    journal = Journal.open(fresh(db), durability="normal")
    client = VenueClient(url)
    manager = OrderManager(journal, client)
    await client.connect()
    runner = asyncio.create_task(manager.run())
    while manager.paused:
        await asyncio.sleep(0.01)
    for i in range(count):
        await manager.place(OrderTerms("BTCUSDT", "buy", Decimal("0.001"), Decimal("1.00") + Decimal(i % 500) / 100))
    while any(o.state == "pending_new" for o in manager.orders.values()):
        await asyncio.sleep(0.05)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await client.close()
    journal.abandon()  # killed: the next start detects the crash


def add_history(db: str, rows: int) -> None:
    """Ended orders (create, submit, accept, cancel) until the journal holds ``rows`` rows."""
    journal = Journal.open(db, durability="normal", start_run=False)
    n = 0
    while journal.last_seq < rows:
        for _ in range(250):
            n += 1
            order, created = ORDER.create(
                f"h-{n:07d}", instrument="BTCUSDT", side="sell", qty=Decimal(1), price=Decimal(90000)
            )
            journal.append(created, order)
            journal.fire(ORDER, order, "submit")
            journal.fire(ORDER, order, "accept", venue_order_id=f"VH{n}")
            journal.fire(ORDER, order, "cancel")
        journal.commit()
    journal.close()  # opened without a run: the killed run stays open


def time_resume(db: str, url: str, workdir: str) -> float:
    config = os.path.join(workdir, "kernel.toml")
    Path(config).write_text(CONFIG)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "run", "--config", config, "--db", db, "--venue", url],
        stderr=subprocess.PIPE, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if "ready: order entry open" in line:
                return time.perf_counter() - started
            if "Traceback" in line or " ERROR " in line:
                raise SystemExit(f"resume failed: {line}")
        raise SystemExit("the kernel exited before it was ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--live", type=int, default=LIVE, help=f"live orders (default {LIVE})")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case; the median (default 5)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="tk-resume-")
    venue, url = start_venue(workdir)
    try:
        base = os.path.join(workdir, "base.db")
        asyncio.run(place_live_orders(url, base, args.live))
        cases = (100_000, 1_000_000)
        templates = {}
        for rows in cases:
            templates[rows] = os.path.join(workdir, f"j{rows}.db")
            copy_database(base, templates[rows])
            add_history(templates[rows], rows)
        samples: dict[int, list[float]] = {rows: [] for rows in cases}
        db = os.path.join(workdir, "run.db")
        for _ in range(args.repeats):
            for rows in cases:  # interleaved
                for suffix in ("", "-wal", "-shm", ".lock", ".sock"):
                    if os.path.exists(db + suffix):
                        os.remove(db + suffix)
                copy_database(templates[rows], db)
                samples[rows].append(time_resume(db, url, workdir))
        figures = {rows: statistics.median(samples[rows]) for rows in cases}
        for rows in cases:
            emit({"bench": "resume", "live_orders": args.live, "journal_rows": rows, "repeats": args.repeats,
                  "seconds": round(figures[rows], 3), "target": "<= 2 s"})  # fmt: skip
        ratio = statistics.median(big / small for small, big in zip(*samples.values(), strict=True))
        emit({"bench": "resume.ratio", "ratio_1m_to_100k": round(ratio, 2), "target": "<= 1.2",
              "meets": ratio <= 1.2 and max(figures.values()) <= 2.0})  # fmt: skip
    finally:
        venue.send_signal(signal.SIGTERM)
        venue.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
