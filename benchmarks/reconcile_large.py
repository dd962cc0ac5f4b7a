"""Reconciliation against a venue with a large history (issue 14 item 8). JSON lines.

Set-up (not timed): the paper venue's store gets 200,000 working orders and 25,000 filled orders
with 20 fills each (500,000 fills, ``fill_seq`` 1..500,000) of the kernel's account, written
straight into its SQLite file (``VenueStore.save_step``: one ``executemany`` per table, not
through the matching engine); a kernel journal knows the same orders (working ones ``accepted``,
filled ones with every fill and its ``trade_id``; buys and sells alike, so the position is flat).
A venue process is started on the store (this script with ``--serve-venue``: the paper venue
without market data).

Timed, in this process: ``OrderManager.run()`` with the kernel's reconciliation, from the start to
order entry open: every open-orders page (default page of 1,000) and every fills page, each
snapshot and fill compared with the journal, the fills cursor journaled. Then one order is placed
and must be acknowledged. Then a second start on the same journal (the restart case): only the
fills after the cursor are asked for.

Baseline (same run): reading the same rows raw from the venue's file with plain SQLite
(``SELECT`` of the open orders and of every fill), the floor under any reconciliation of them.
Before paging, the kernel never completed this: it looped on ``1009 message too big``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from common import emit

from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.reconcile import Reconciler
from kernel.venue.server import PaperVenue, VenueConfig
from machines import ORDER
from machines.order_terms import OrderTerms
from storage import Journal
from storage.venue_store import Counters, StoredFill, StoredOrder, VenueStore

REPO = Path(__file__).resolve().parent.parent
X = "BTCUSDT"
OPEN = 200_000
FILLED = 25_000
FILLS_EACH = 20
FILL_QTY = Decimal("0.0001")


def _open_coid(n: int) -> str:
    return f"k-{n:06d}"


def _filled_coid(n: int) -> str:
    return f"f-{n:05d}"


def _price(n: int) -> Decimal:
    return Decimal("1.00") + Decimal(n % 500) / 100


def build_venue(path: str, open_count: int, filled: int) -> int:
    """The venue's rows, straight into its store; returns the number of fills."""
    orders: list[StoredOrder] = []
    fills: list[StoredFill] = []
    for n in range(1, open_count + 1):
        orders.append(
            StoredOrder(_open_coid(n), f"V{n}", X, "buy", "limit", "gtc", Decimal("0.001"), _price(n), "new",
                        Decimal(0), Decimal("0.001"), None, 0, n, n)
        )  # fmt: skip
    seq = 0
    for n in range(1, filled + 1):
        coid, number = _filled_coid(n), open_count + n
        orders.append(
            StoredOrder(coid, f"V{number}", X, "buy" if n % 2 else "sell", "limit", "gtc", FILL_QTY * FILLS_EACH,
                        Decimal(100), "filled", FILL_QTY * FILLS_EACH, Decimal(0), None, 0, number, number)
        )  # fmt: skip
        for _ in range(FILLS_EACH):
            seq += 1
            fills.append(StoredFill(seq, f"T{seq}", coid, FILL_QTY, Decimal(100), Decimal(0), 1_000 + seq))
    last = open_count + filled
    with VenueStore.open(path) as store:
        store.save_step(orders, fills, Counters(last + 1, seq + 1, last + 1))
    return seq


def build_journal(path: str, open_count: int, filled: int) -> None:
    """A journal that knows every venue order as the venue has it (fills and trade ids included)."""
    journal = Journal.open(path, durability="normal")
    for n in range(1, open_count + 1):
        order, created = ORDER.create(_open_coid(n), instrument=X, side="buy", qty=Decimal("0.001"), price=_price(n))
        journal.append(created, order)
        journal.fire(ORDER, order, "submit")
        journal.fire(ORDER, order, "accept", venue_order_id=f"V{n}")
        if n % 5_000 == 0:
            journal.commit()
    seq = 0
    for n in range(1, filled + 1):
        side = "buy" if n % 2 else "sell"
        order, created = ORDER.create(
            _filled_coid(n), instrument=X, side=side, qty=FILL_QTY * FILLS_EACH, price=Decimal(100)
        )
        journal.append(created, order)
        journal.fire(ORDER, order, "submit")
        journal.fire(ORDER, order, "accept", venue_order_id=f"V{open_count + n}")
        for _ in range(FILLS_EACH):
            seq += 1
            journal.fire(ORDER, order, "fill", qty=FILL_QTY, price=Decimal(100), trade_id=f"T{seq}")
        if n % 500 == 0:
            journal.commit()
    journal.close()


def raw_read(path: str) -> float:
    """Seconds to read the open orders and every fill of the venue's file with plain SQLite."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    started = time.perf_counter()
    conn.execute("SELECT * FROM orders WHERE status NOT IN ('filled', 'canceled', 'rejected', 'expired')").fetchall()
    conn.execute("SELECT * FROM fills ORDER BY fill_seq").fetchall()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def serve_venue(store: str) -> None:
    """The venue process: the paper venue on ``store`` without market data (``autoplay`` off: the
    matching engine scans every resting order per market trade, which 200,000 would saturate),
    until SIGTERM."""
    venue = PaperVenue(store, VenueConfig(instruments=(X,), autoplay=False, max_open_orders=0))  # 200,000 open
    await venue.start()
    print(f"venue listening on {venue.url}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await venue.stop()


def start_venue(store: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-venue", store],
        stdout=subprocess.PIPE, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()[-1]


async def start_kernel(db: str, url: str, place: bool) -> dict[str, object]:
    """Open the journal, connect, reconcile (timed, to order entry open); optionally trade once."""
    journal = Journal.open(db, durability="normal")
    client = VenueClient(url)
    manager = OrderManager.resume(journal, client)
    reconciler = Reconciler(manager, timeout=30.0)
    reports = []

    async def reconcile(generation: int) -> None:
        reports.append(await reconciler.run(f"benchmark session {generation}"))

    manager.reconcile = reconcile
    started = time.perf_counter()
    await client.connect()
    runner = asyncio.create_task(manager.run())
    try:
        while manager.paused:
            if runner.done():
                runner.result()
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        result: dict[str, object] = {"seconds": round(seconds, 3), "counts": reports[-1].counts}
        if place:
            order = await manager.place(OrderTerms(X, "buy", Decimal("0.001"), Decimal("1.00")))
            deadline = time.perf_counter() + 30
            while order.state == "pending_new" and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            result["placed"] = {"client_order_id": order.entity_id, "state": str(order.state)}
        return result
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await client.close()
        journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=OPEN, help=f"working orders (default {OPEN})")
    parser.add_argument("--filled", type=int, default=FILLED, help=f"filled orders of {FILLS_EACH} fills ({FILLED})")
    parser.add_argument("--serve-venue", metavar="STORE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_venue:
        asyncio.run(serve_venue(args.serve_venue))
        return
    workdir = tempfile.mkdtemp(prefix="tk-reconcile-")
    try:
        store, db = os.path.join(workdir, "venue.db"), os.path.join(workdir, "kernel.db")
        built = time.perf_counter()
        fills = build_venue(store, args.open, args.filled)
        build_journal(db, args.open, args.filled)
        setup_s = time.perf_counter() - built
        raw_s = raw_read(store)
        venue, url = start_venue(store)
        try:
            first = asyncio.run(start_kernel(db, url, place=True))
            second = asyncio.run(start_kernel(db, url, place=False))
        finally:
            venue.send_signal(signal.SIGTERM)
            venue.wait(timeout=120)
        placed = first.get("placed") or {}
        emit({"bench": "reconcile.large", "venue_open_orders": args.open, "venue_fills": fills,
              "first_start_s": first["seconds"], "restart_s": second["seconds"], "raw_read_s": round(raw_s, 3),
              "ratio_to_raw": round(float(str(first["seconds"])) / raw_s, 1), "setup_s": round(setup_s, 1),
              "counts": first["counts"], "placed": placed,
              "meets": isinstance(placed, dict) and placed.get("state") == "accepted"})  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
