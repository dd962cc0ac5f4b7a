"""Order benchmarks: lifecycles per second, one fill transition, memory per live order. JSON lines.

A lifecycle is create → submit → accept → fill (part) → fill (rest) → ``filled``: five triggers
after the create. Figures:

* ``orders.lifecycles`` — in memory (the real order machine), next to a raw baseline measured in
  the same run: the same state changes and Decimal arithmetic done with plain dict updates and no
  machine (what the table, guards and ``transitions`` cost on top), and with every transition
  journaled at ``full`` (commit every 100 transitions), next to plain ``executemany`` of the same
  rows at ``full``.
* ``orders.fill`` — one ``fill`` transition (a partial fill of an accepted order), in microseconds,
  next to the same fill done on a plain dict.
* ``orders.memory`` — resident memory per live (``accepted``) order with 100,000 live orders,
  next to the same number of bare dicts holding the same fields.

Each figure and its baseline are measured alternately, ``--repeats`` times each, and the medians
reported, so that load on the machine weighs on both alike. ``--engine reference`` fires through
the ``transitions`` reference engine (``StateMachine.fire_reference``) instead of the compiled
dispatch, for comparison.

Targets (issue 17): >= 60,000 lifecycles/s in memory, <= 3 us per fill transition, >= 30,000
journaled at ``full``; <= 2 KB resident per live order (issue 3). (Context: NautilusTrader 1.221
does about 60,000 such lifecycles/s on this machine, 5.8 us per fill event built and applied.)
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from common import BATCH, emit, fresh, journal_rows, raw_insert

from machines import ORDER, Entity, Transition
from storage import Journal

CREATE = {"instrument": "BTCUSDT", "side": "buy", "type": "limit", "qty": "10", "price": "100.5", "tif": "gtc"}
STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("submit", {}),
    ("accept", {"venue_order_id": "V"}),
    ("fill", {"qty": "4", "price": "100.5", "trade_id": "T1"}),
    ("fill", {"qty": "6", "price": "100.4", "trade_id": "T2"}),
)


FILL = STEPS[2][1]
Fire = Callable[..., Transition]


def interleaved(repeats: int, *measures: Callable[[], float]) -> list[float]:
    """The median of each measure, the measures run alternately ``repeats`` times."""
    runs: list[list[float]] = [[] for _ in measures]
    for _ in range(repeats):
        for times, measure in zip(runs, measures, strict=True):
            times.append(measure())
    return [statistics.median(times) for times in runs]


def lifecycle(order_id: str, fire: Fire = ORDER.fire) -> Entity:
    order, _ = ORDER.create(order_id, **CREATE)
    for trigger, data in STEPS:
        fire(order, trigger, **data)
    return order


def in_memory(count: int, fire: Fire) -> float:
    start = time.perf_counter()
    for i in range(count):
        lifecycle(f"o-{i}", fire)
    return time.perf_counter() - start


def one_fill(count: int, fire: Fire) -> float:
    """Seconds for ``count`` fill transitions, one per accepted order (made beforehand, untimed)."""
    orders = [live_order(i) for i in range(count)]
    start = time.perf_counter()
    for order in orders:
        fire(order, "fill", **FILL)
    return time.perf_counter() - start


def raw_one_fill(count: int) -> float:
    """The same fill on plain dicts: parse, arithmetic, the state change."""
    orders = [bare_order(i) for i in range(count)]
    for order in orders:
        order.update(notional=Decimal(0), trade_ids=[])
    start = time.perf_counter()
    for order in orders:
        fill_qty, price = Decimal(FILL["qty"]), Decimal(FILL["price"])
        order["cum_qty"] += fill_qty
        order["notional"] += fill_qty * price
        order["avg_px"] = order["notional"] / order["cum_qty"]
        order["leaves_qty"] = order["qty"] - order["cum_qty"]
        order["trade_ids"] = [*order["trade_ids"], FILL["trade_id"]]
        order["state"] = "filled" if order["cum_qty"] == order["qty"] else "partially_filled"
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


def journaled(path: str, count: int, fire: Fire) -> float:
    journal = Journal.open(fresh(path), durability="full")
    pending = 0
    start = time.perf_counter()
    for i in range(count):
        order, created = ORDER.create(f"o-{i}", **CREATE)
        journal.append(created, order)
        for trigger, data in STEPS:
            journal.append(fire(order, trigger, **data), order)
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
    parser.add_argument("--repeats", type=int, default=5, help="median of this many runs (default 5)")
    parser.add_argument("--live", type=int, default=100_000, help="live orders for the memory figure")
    parser.add_argument("--engine", choices=("compiled", "reference"), default="compiled", help="how to fire")
    args = parser.parse_args()
    fire: Fire = ORDER.fire if args.engine == "compiled" else ORDER.fire_reference
    workdir = tempfile.mkdtemp(prefix="tradekernel-bench-")
    try:
        n = args.lifecycles
        memory_s, raw_memory_s = interleaved(args.repeats, lambda: in_memory(n, fire), lambda: raw_in_memory(n))
        emit(
            {
                "bench": "orders.lifecycles",
                "mode": "in_memory",
                "engine": args.engine,
                "lifecycles": n,
                "repeats": args.repeats,
                "lifecycles_per_s": round(n / memory_s),
                "raw_dict_lifecycles_per_s": round(n / raw_memory_s),
                "ratio": round(raw_memory_s / memory_s, 3),
                "target": ">= 60000/s",
                "meets": n / memory_s >= 60_000,
            }
        )
        fill_s, raw_fill_s = interleaved(args.repeats, lambda: one_fill(n, fire), lambda: raw_one_fill(n))
        emit(
            {
                "bench": "orders.fill",
                "engine": args.engine,
                "fills": n,
                "repeats": args.repeats,
                "fill_us": round(fill_s / n * 1e6, 2),
                "raw_dict_fill_us": round(raw_fill_s / n * 1e6, 2),
                "ratio": round(raw_fill_s / fill_s, 3),
                "target": "<= 3 us",
                "meets": fill_s / n * 1e6 <= 3,
            }
        )
        journal_path = os.path.join(workdir, "orders.db")
        journaled(journal_path, n, fire)
        rows = journal_rows(journal_path, "order")
        raw_path = os.path.join(workdir, "raw.db")
        journal_s, raw_s = interleaved(
            args.repeats, lambda: journaled(journal_path, n, fire), lambda: raw_insert(raw_path, "full", rows)
        )
        emit(
            {
                "bench": "orders.lifecycles",
                "mode": "journal_full",
                "engine": args.engine,
                "lifecycles": n,
                "repeats": args.repeats,
                "transitions_per_lifecycle": 1 + len(STEPS),
                "lifecycles_per_s": round(n / journal_s),
                "raw_rows_lifecycles_per_s": round(n / raw_s),
                "ratio": round(raw_s / journal_s, 3),
                "target": ">= 30000/s",
                "meets": n / journal_s >= 30_000,
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
                "ratio": round(per_order / per_dict, 3) if per_dict > 0 else None,  # small --live: pages
                "target": "<= 2048",
                "meets": per_order <= 2048,
            }
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
