"""``audit verify`` at scale: rows per second and peak memory, next to a raw scan. JSON lines.

Set-up (not timed): a journal of ``--live`` live orders (created, submitted, accepted) and filler
history until it holds the given number of rows: order lifecycles that end ``filled`` (create,
submit, accept, fill, fill) or ``canceled`` (create, submit, accept, cancel), written through the
real journal. The same live orders in every size, so only the history grows.

Timed, each in a fresh subprocess (so that its peak resident memory, ``ru_maxrss``, is its own):

* ``verify`` — ``AuditReader.verify()``: quick_check, the hash chain, replay of every row through
  the machine tables, the current-state tables compared with the replay.
* the baseline — a raw ``SELECT`` of the same rows in ``seq`` order with the same chained hash
  computed per row (``codec.row_hash``): what any verify must at least do.

The two alternate (verify, scan, verify, scan, ...), ``--repeats`` times at 100k rows and
``--repeats-large`` times at the large size; medians reported. Peak RSS includes the interpreter
and the imports (both children import the same modules); what matters is that it does not grow
with the history (the ``rss_growth_mib`` of the large case over the small one).

Targets (issue 17): >= 200,000 rows/s at 1M rows, memory O(live entities).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from common import emit

REPO = Path(__file__).resolve().parent.parent


def build(path: str, rows: int, live: int) -> None:
    """A journal of ``live`` accepted orders plus ended lifecycles until it holds ``rows`` rows."""
    from machines import ORDER
    from storage import Journal

    journal = Journal.open(path, durability="normal", start_run=False)
    try:
        for i in range(live):
            order, created = ORDER.create(
                f"live-{i:06d}", instrument="BTCUSDT", side="buy", qty=Decimal("0.5"), price=Decimal("90000.5")
            )
            journal.append(created, order)
            journal.fire(ORDER, order, "submit")
            journal.fire(ORDER, order, "accept", venue_order_id=f"VL{i}")
            if i % 1000 == 999:
                journal.commit()
        n = 0
        while journal.last_seq < rows:
            for _ in range(500):
                n += 1
                order, created = ORDER.create(
                    f"h-{n:07d}", instrument="BTCUSDT", side="sell", qty=Decimal(1), price=Decimal("90000.5")
                )
                journal.append(created, order)
                journal.fire(ORDER, order, "submit")
                journal.fire(ORDER, order, "accept", venue_order_id=f"VH{n}")
                if n % 2:
                    journal.fire(ORDER, order, "fill", qty=Decimal("0.4"), price=Decimal("90000.5"), trade_id=f"A{n}")
                    journal.fire(ORDER, order, "fill", qty=Decimal("0.6"), price=Decimal("90000.4"), trade_id=f"B{n}")
                else:
                    journal.fire(ORDER, order, "cancel")
            journal.commit()
    finally:
        journal.close()


def child(kind: str, path: str) -> None:
    """Run one measurement in this process; print seconds, rows and peak RSS as one JSON line."""
    import resource
    import time

    from storage import codec
    from storage.audit import AuditReader

    with AuditReader(path) as reader:
        start = time.perf_counter()
        if kind == "verify":
            result = reader.verify()
            if not result.ok:
                raise SystemExit(f"verify failed: {result.as_json()}")
            rows = result.transitions
        else:
            conn = reader._conn  # the same read-only connection settings as verify
            prev = codec.GENESIS_HASH
            rows = 0
            for row in conn.execute("SELECT seq, ts, run, machine, entity, trigger, source, dest, data, hash "
                                    "FROM transitions ORDER BY seq"):  # fmt: skip
                if codec.row_hash(prev, row[:8], row[8].encode()) != row[9]:
                    raise SystemExit(f"bad hash at {row[0]}")
                prev = row[9]
                rows += 1
        seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_kib": peak_kib}), flush=True)


def measure(kind: str, path: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, path],
        check=True, capture_output=True, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large journal (default 1M)")
    parser.add_argument("--live", type=int, default=10_000, help="live orders in every journal (default 10,000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each at 100k rows; the median (default 5)")
    parser.add_argument("--repeats-large", type=int, default=3, help="runs of each at the large size (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    workdir = tempfile.mkdtemp(prefix="tk-verify-")
    try:
        small = min(100_000, args.rows)
        cases = {small: args.repeats, args.rows: args.repeats_large} if args.rows != small else {small: args.repeats}
        peaks: dict[int, float] = {}
        for rows, repeats in cases.items():
            path = os.path.join(workdir, f"j{rows}.db")
            build(path, rows, args.live)
            runs: dict[str, list[dict[str, float]]] = {"verify": [], "scan": []}
            for _ in range(repeats):
                for kind in runs:  # interleaved
                    runs[kind].append(measure(kind, path))
            total = int(runs["verify"][0]["rows"])
            verify_s = statistics.median(r["seconds"] for r in runs["verify"])
            scan_s = statistics.median(r["seconds"] for r in runs["scan"])
            ratio = statistics.median(
                s["seconds"] / v["seconds"] for v, s in zip(runs["verify"], runs["scan"], strict=True)
            )
            peaks[rows] = statistics.median(r["peak_kib"] for r in runs["verify"]) / 1024
            record = {
                "bench": "audit.verify",
                "rows": total,
                "live_orders": args.live,
                "repeats": repeats,
                "rows_per_s": round(total / verify_s),
                "seconds": round(verify_s, 3),
                "peak_rss_mib": round(peaks[rows], 1),
                "baseline_scan_hash_rows_per_s": round(total / scan_s),
                "baseline_peak_rss_mib": round(statistics.median(r["peak_kib"] for r in runs["scan"]) / 1024, 1),
                "ratio_to_baseline": round(ratio, 2),
                "target": ">= 200,000 rows/s at 1M rows, memory O(live entities)",
            }
            if rows == args.rows and rows != small:
                record["rss_growth_mib_over_100k"] = round(peaks[rows] - peaks[small], 1)
                record["meets"] = total / verify_s >= 200_000 and peaks[rows] - peaks[small] < 0.2 * peaks[small]
            emit(record)
            os.remove(path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
