"""Order benchmarks: lifecycles per second and memory per live order. Prints JSON lines.

A lifecycle is create → submit → accept → fill (part) → fill (rest) → ``filled``: five triggers
after the create. Figures:

* ``orders.lifecycles`` — in memory (the real order machine), next to a raw baseline measured in
  the same run: the same state changes and Decimal arithmetic done with plain dict updates and no
  machine (what the table, guards and ``transitions`` cost on top), and with every transition
  journaled at ``full`` (commit every 100 transitions), next to plain ``executemany`` of the same
  rows at ``full``.
* ``orders.memory`` — resident memory per live (``accepted``) order with 100,000 live orders,
  next to the same number of bare dicts holding the same fields.

Targets (issue 3): >= 15,000 lifecycles/s in memory, >= 9,000 journaled at ``full``,
<= 2 KB resident per live order. (Context: NautilusTrader's Cython order model does about 9,000
such lifecycles/s on this machine.)
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from common import BATCH, emit, fresh, journal_rows, median_of, raw_insert

from machines import ORDER, Entity
from storage import Journal

CREATE = {"instrument": "BTCUSDT", "side": "buy", "type": "limit", "qty": "10", "price": "100.5", "tif": "gtc"}
STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("submit", {}),
    ("accept", {"venue_order_id": "V"}),
    ("fill", {"qty": "4", "price": "100.5", "trade_id": "T1"}),
    ("fill", {"qty": "6", "price": "100.4", "trade_id": "T2"}),
)


def lifecycle(order_id: str) -> Entity:
    order, _ = ORDER.create(order_id, **CREATE)
    for trigger, data in STEPS:
        ORDER.fire(order, trigger, **data)
    return order


def in_memory(count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        lifecycle(f"o-{i}")
    return time.perf_counter() - start


def raw_in_memory(count: int) -> float:
    """The same state changes and arithmetic with plain dicts: no table, guards or engine."""
    start = time.perf_counter()
    for i in range(count):
        qty = Decimal(CREATE["qty"])
        order: dict[str, Any] = {
            "id": f"o-{i}",
            "state": "new",
            "qty": qty,
            "cum_qty": Decimal(0),
            "leaves_qty": qty,
            "notional": Decimal(0),
            "trade_ids": [],
        }
        order["state"] = "pending_new"
        order["state"] = "accepted"
        order["venue_order_id"] = "V"
        for _, data in STEPS[2:]:
            fill_qty, price = Decimal(data["qty"]), Decimal(data["price"])
            order["cum_qty"] += fill_qty
            order["notional"] += fill_qty * price
            order["avg_px"] = order["notional"] / order["cum_qty"]
            order["leaves_qty"] = order["qty"] - order["cum_qty"]
            order["trade_ids"] = [*order["trade_ids"], data["trade_id"]]
            order["state"] = "filled" if order["cum_qty"] == order["qty"] else "partially_filled"
    return time.perf_counter() - start


def journaled(path: str, count: int) -> float:
    journal = Journal.open(fresh(path), durability="full")
    pending = 0
    start = time.perf_counter()
    for i in range(count):
        order, created = ORDER.create(f"o-{i}", **CREATE)
        journal.append(created, order)
        for trigger, data in STEPS:
            journal.fire(ORDER, order, trigger, **data)
        pending += 1 + len(STEPS)
        if pending >= BATCH:
            journal.commit()
            pending = 0
    journal.commit()
    elapsed = time.perf_counter() - start
    journal.close()
    return elapsed


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_item(count: int, make: Callable[[int], object]) -> float:
    gc.collect()
    before = resident_bytes()
    items = [make(i) for i in range(count)]
    gc.collect()
    after = resident_bytes()
    assert len(items) == count
    return (after - before) / count


def live_order(i: int) -> Entity:
    order, _ = ORDER.create(f"o-{i:08d}", **CREATE)
    ORDER.fire(order, "submit")
    ORDER.fire(order, "accept", venue_order_id=f"V{i:08d}")
    return order


def bare_order(i: int) -> dict[str, Any]:
    qty = Decimal(CREATE["qty"])
    return {
        "client_order_id": f"o-{i:08d}",
        "state": "accepted",
        "instrument": CREATE["instrument"],
        "side": "buy",
        "type": "limit",
        "tif": "gtc",
        "qty": qty,
        "price": Decimal(CREATE["price"]),
        "cum_qty": Decimal(0),
        "leaves_qty": qty,
        "venue_order_id": f"V{i:08d}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lifecycles", type=int, default=20_000, help="per run (default 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs (default 3)")
    parser.add_argument("--live", type=int, default=100_000, help="live orders for the memory figure")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="tradekernel-bench-")
    try:
        n = args.lifecycles
        memory_s = median_of(args.repeats, lambda: in_memory(n))
        raw_memory_s = median_of(args.repeats, lambda: raw_in_memory(n))
        emit(
            {
                "bench": "orders.lifecycles",
                "mode": "in_memory",
                "lifecycles": n,
                "lifecycles_per_s": round(n / memory_s),
                "raw_dict_lifecycles_per_s": round(n / raw_memory_s),
                "ratio": round(raw_memory_s / memory_s, 3),
                "target": ">= 15000/s",
                "meets": n / memory_s >= 15_000,
            }
        )
        journal_path = os.path.join(workdir, "orders.db")
        journal_s = median_of(args.repeats, lambda: journaled(journal_path, n))
        raw_s = raw_insert(os.path.join(workdir, "raw.db"), "full", journal_rows(journal_path, "order"))
        emit(
            {
                "bench": "orders.lifecycles",
                "mode": "journal_full",
                "lifecycles": n,
                "transitions_per_lifecycle": 1 + len(STEPS),
                "lifecycles_per_s": round(n / journal_s),
                "raw_rows_lifecycles_per_s": round(n / raw_s),
                "ratio": round(raw_s / journal_s, 3),
                "target": ">= 9000/s",
                "meets": n / journal_s >= 9_000,
            }
        )
        per_order = memory_per_item(args.live, live_order)
        per_dict = memory_per_item(args.live, bare_order)
        emit(
            {
                "bench": "orders.memory",
                "live_orders": args.live,
                "bytes_per_order": round(per_order),
                "bare_dict_bytes_per_order": round(per_dict),
                "ratio": round(per_order / per_dict, 3),
                "target": "<= 2048",
                "meets": per_order <= 2048,
            }
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
