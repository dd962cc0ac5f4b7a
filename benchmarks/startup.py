"""Start-up of the read-only commands on an idle journal, next to a bare interpreter's start-up measured
in the same run. Prints JSON lines.

* ``startup.status``: wall time of ``python -m kernel status --db IDLE`` (no kernel running: it
  reads the journal), in a fresh subprocess;
* ``startup.audit_tail``: the same for ``python -m kernel audit tail --db IDLE``.

The baseline is ``python -c pass`` with the same interpreter. Each repeat runs the baseline and
then both commands, so load on the machine hits all three alike; the figures are medians of
``--repeats``. The journal is made once (``tradekernel migrate``) in a temporary folder, removed at
the end. Target (issue 17): each command <= 0.15 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import emit

TARGET_S = 0.15
COMMANDS = {"startup.status": ["status"], "startup.audit_tail": ["audit", "tail"]}


def wall(argv: list[str]) -> float:
    """Seconds from spawning ``argv`` to its exit (it must exit 0)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9, help="runs of each command; the median (default 9)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="tradekernel-bench-")
    db = os.path.join(workdir, "idle.db")
    kernel = [sys.executable, "-m", "kernel"]
    try:
        subprocess.run([*kernel, "migrate", "--db", db], check=True, stdout=subprocess.DEVNULL)
        for command in COMMANDS.values():  # warm the file cache: every repeat then starts alike
            wall([*kernel, *command, "--db", db])
        baseline: list[float] = []
        figures: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.repeats):
            baseline.append(wall([sys.executable, "-c", "pass"]))
            for name, command in COMMANDS.items():
                figures[name].append(wall([*kernel, *command, "--db", db]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    raw = statistics.median(baseline)
    for name, samples in figures.items():
        figure = statistics.median(samples)
        emit({"bench": name, "repeats": args.repeats, "seconds": round(figure, 3),
              "baseline_python_s": round(raw, 3), "over_baseline_s": round(figure - raw, 3),
              "target": f"<= {TARGET_S} s", "meets": figure <= TARGET_S})  # fmt: skip


if __name__ == "__main__":
    main()
