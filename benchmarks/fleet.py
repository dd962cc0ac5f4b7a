"""Fleet store benchmarks (issue 19): shipping to PostgreSQL. Prints JSON lines.

Starts its own throwaway PostgreSQL cluster on loopback (``tests/fleet/pg.py``, as the tests'
fixture does: initdb in a temporary directory, ``fsync=off``) and removes it at the end.

Lines printed (``bench`` field), each figure the median of ``--repeats`` runs alternated with its
baseline in the same run:

* ``fleet.ship.raw`` / ``fleet.ship`` — one kernel's journal of ``--rows`` rows (the journal
  benchmark's order-like machine) shipped by ``Shipper.ship_available`` (read from SQLite, chain
  recomputed, ``COPY`` in batches of 2,000, one transaction each) into a fresh database, against
  a plain ``COPY`` of the very same rows (read into memory beforehand) into a table of the same
  shape, in the same batches.
* ``fleet.ingest.raw`` / ``fleet.ingest`` — 10 shippers at once (10 processes, one journal each,
  ``--rows`` / 10 rows each) into one store: total rows / wall time; the baseline is 10 processes
  doing the plain ``COPY`` of their rows at once.
* ``fleet.tick_to_order`` — a paper kernel's tick-to-order p50 (``tick_to_order.py``'s venue and
  one-order-per-trade strategy) with ``[ship] url`` set, PostgreSQL up, then stopped for
  ``--outage`` seconds (30; ``--quick``: 5) starting as the kernel starts; the ticks are measured
  during the outage; ``catch_up_s`` is the time from PostgreSQL's restart until the store holds
  the kernel's whole journal, and ``duplicates`` counts rows stored twice (must be 0).

``--quick`` shortens everything (20,000 rows, 2 repeats, 200 ticks, a 5 s outage).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from common import emit
from journal import audited
from roundtrip import percentiles

from kernel.ship import ShipOptions, Shipper
from storage.fleet.store import TRANSITION_COLUMNS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the cluster helper the tests use (tests/ is not an installed package)
from tests.fleet.pg import PgCluster  # noqa: E402

HERE = Path(__file__).resolve().parent
BATCH_ROWS = 2000
SHIPPERS = 10
RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS raw_transitions (kernel_id TEXT NOT NULL, seq BIGINT NOT NULL, ts BIGINT NOT NULL, "
    "run BIGINT NOT NULL, machine TEXT NOT NULL, entity TEXT NOT NULL, trigger TEXT NOT NULL, source TEXT, "
    "dest TEXT NOT NULL, data TEXT NOT NULL, data_json JSONB, hash TEXT NOT NULL, PRIMARY KEY (kernel_id, seq))"
)


def make_journal(path: str, rows: int) -> None:
    """A journal of ``rows`` transitions of the journal benchmark's order-like machine."""
    audited(path, "normal", rows)


def copy_with_id(source: str, dest: str, kernel_id: str) -> str:
    """A copy of a closed journal claiming another kernel id (the id is not part of the chain)."""
    shutil.copyfile(source, dest)
    with sqlite3.connect(dest) as conn:
        conn.execute("UPDATE journal_info SET journal_id = ?", (kernel_id,))
    conn.close()
    return dest


def read_rows(path: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT {', '.join(TRANSITION_COLUMNS)} FROM transitions ORDER BY seq").fetchall()
    conn.close()
    return rows


def ship_once(path: str, url: str) -> float:
    """Seconds for one shipper to ship the whole journal ``path`` to ``url``."""
    shipper = Shipper(path, url, ShipOptions(batch_rows=BATCH_ROWS))
    try:
        start = time.perf_counter()
        shipper.ship_available()
        return time.perf_counter() - start
    finally:
        shipper.close()


def raw_table(url: str) -> str:
    """Create the baseline's table in ``url`` (before concurrent copies: CREATE TABLE races); ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_TABLE)
    return url


def raw_copy(url: str, kernel_id: str, rows: list[tuple[Any, ...]]) -> float:
    """Seconds for a plain ``COPY`` of ``rows`` in batches of ``BATCH_ROWS``, one transaction each
    (into ``raw_table``'s table)."""
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(0, len(rows), BATCH_ROWS):
            with conn.transaction(), conn.cursor() as cursor:
                columns = ", ".join(("kernel_id", *TRANSITION_COLUMNS, "data_json"))
                with cursor.copy(f"COPY raw_transitions ({columns}) FROM STDIN") as copy:
                    for row in rows[i : i + BATCH_ROWS]:
                        copy.write_row((kernel_id, *row, row[8]))
        return time.perf_counter() - start


def _raw_worker(job: tuple[str, str, str]) -> float:
    url, kernel_id, path = job
    return raw_copy(url, kernel_id, read_rows(path))


def _ship_worker(job: tuple[str, str, str]) -> float:
    url, _kernel_id, path = job
    return ship_once(path, url)


def concurrent(worker: Any, jobs: list[tuple[str, str, str]]) -> float:
    """Wall seconds for ``worker`` over ``jobs``, one process each, all at once."""
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        pool.map(_noop, range(len(jobs)))  # the processes exist before the clock starts
        start = time.perf_counter()
        pool.map(worker, jobs, chunksize=1)
        return time.perf_counter() - start


def _noop(_: int) -> None:
    return None


def store_head(url: str, kernel_id: str) -> tuple[int, int, int]:
    """``(count(*), count(DISTINCT seq), max(seq))`` of a kernel's rows in the store."""
    with psycopg.connect(url, connect_timeout=2) as conn:
        try:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT seq), COALESCE(max(seq), 0) FROM transitions WHERE kernel_id = %s",
                (kernel_id,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # the shipper has not migrated the fresh store yet
            return 0, 0, 0
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def local_head(path: str) -> tuple[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        (kernel_id,) = conn.execute("SELECT journal_id FROM journal_info").fetchone()
        (seq,) = conn.execute("SELECT seq FROM journal_head WHERE id = 1").fetchone()
    conn.close()
    return str(kernel_id), int(seq)


def tick_round(
    workdir: str, ticks: int, round_no: int, cluster: PgCluster, url: str, outage_s: float
) -> tuple[list[float], float | None, int]:
    """One kernel (``[ship] url``) and tick venue; PostgreSQL stopped for ``outage_s`` when > 0.
    Returns the tick-to-order samples (s), the catch-up time after the restart and duplicates."""
    venue_db, kernel_db = (os.path.join(workdir, f"{name}-{round_no}-{int(outage_s)}.db") for name in ("v", "k"))
    config = os.path.join(workdir, f"kernel-{round_no}.toml")
    with open(config, "w") as f:
        f.write('[kernel]\ncancel_on_stop = false\nstatus_view = "off"\nlog_level = "error"\n')
        f.write(f'[ship]\nurl = "{url}"\ninterval_s = 0.2\nmax_backoff_s = 2.0\nstop_timeout_s = 30\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    venue = subprocess.Popen(
        [sys.executable, str(HERE / "tick_venue.py"), "--ticks", str(ticks), "--db", venue_db],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert venue.stdout is not None
    venue_url = venue.stdout.readline().split()[-1]
    argv = [sys.executable, "-m", "kernel", "run", "--config", config, "--db", kernel_db, "--venue", venue_url,
            "--strategy", "tick_to_order:OnePerTrade"]  # fmt: skip
    kernel = subprocess.Popen(argv, cwd=workdir, env=env)
    stopped_at = time.monotonic()
    if outage_s:
        cluster.stop()
    catch_up: float | None = None
    try:
        line = venue.stdout.readline()
        venue.wait(timeout=600)
        if outage_s:
            time.sleep(max(0.0, stopped_at + outage_s - time.monotonic()))  # the outage's length
            cluster.start()
            restarted = time.monotonic()
            kernel_id, head = local_head(kernel_db)
            while store_head(url, kernel_id)[2] < head:
                if time.monotonic() - restarted > 300:
                    raise RuntimeError("the shipper did not catch up within 300 s")
                time.sleep(0.05)
                kernel_id, head = local_head(kernel_db)
            catch_up = time.monotonic() - restarted
    finally:
        kernel.send_signal(signal.SIGTERM)
        try:
            kernel.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kernel.kill()
        if venue.poll() is None:
            venue.kill()
    kernel_id, head = local_head(kernel_db)
    count, distinct, last = store_head(url, kernel_id)
    if last != head:
        raise RuntimeError(f"the store holds seq {last}, the journal {head}")
    return [ns / 1e9 for ns in json.loads(line)], catch_up, count - distinct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the shipped journal (default 200,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each figure and its baseline (default 3)")
    parser.add_argument("--ticks", type=int, default=500, help="ticks measured per tick-to-order round (500)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds PostgreSQL is stopped (default 30)")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 2 repeats, 200 ticks, a 5 s outage")
    parser.add_argument(
        "--only", choices=("ship", "ingest", "tick"), action="append", help="only these figures (repeatable)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats, args.ticks, args.outage = 20_000, 2, 200, 5.0
    workdir = tempfile.mkdtemp(prefix="tk-bench-fleet-")
    cluster = PgCluster.create()
    try:
        cluster.start()
        parts = set(args.only or ("ship", "ingest", "tick"))
        if "ship" in parts:
            ship_figures(workdir, cluster, args.rows, args.repeats)
        if "ingest" in parts:
            ingest_figures(workdir, cluster, args.rows, args.repeats)
        if "tick" in parts:
            tick_figures(workdir, cluster, args.ticks, args.repeats, args.outage)
    finally:
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def ship_figures(workdir: str, cluster: PgCluster, count: int, repeats: int) -> None:
    """``fleet.ship`` and its raw baseline: one journal of ``count`` rows, alternated ``repeats`` times."""
    source = os.path.join(workdir, "journal.db")
    make_journal(source, count)
    rows = read_rows(source)
    ours: list[float] = []
    raw: list[float] = []
    for n in range(repeats):
        raw.append(raw_copy(raw_table(cluster.create_database()), f"raw{n}", rows))
        ours.append(ship_once(source, cluster.create_database()))
    emit({"bench": "fleet.ship.raw", "rows": len(rows), "rows_per_s": round(len(rows) / statistics.median(raw)),
          "what": "plain COPY of the same rows, 2,000 per transaction"})  # fmt: skip
    emit({"bench": "fleet.ship", "rows": len(rows), "repeats": repeats,
          "rows_per_s": round(len(rows) / statistics.median(ours)),
          "ratio": round(statistics.median(raw) / statistics.median(ours), 3)})  # fmt: skip


def ingest_figures(workdir: str, cluster: PgCluster, count: int, repeats: int) -> None:
    """``fleet.ingest`` and its raw baseline: ``SHIPPERS`` journals of ``count / SHIPPERS`` rows at once."""
    each = max(count // SHIPPERS, 1)
    part = os.path.join(workdir, "part.db")
    make_journal(part, each)
    paths = [copy_with_id(part, os.path.join(workdir, f"part-{i}.db"), f"bench{i:02d}") for i in range(SHIPPERS)]
    total = len(read_rows(part)) * SHIPPERS
    ours: list[float] = []
    raw: list[float] = []
    for _ in range(repeats):
        url = raw_table(cluster.create_database())
        raw.append(concurrent(_raw_worker, [(url, f"bench{i:02d}", p) for i, p in enumerate(paths)]))
        url = cluster.create_database()
        ours.append(concurrent(_ship_worker, [(url, f"bench{i:02d}", p) for i, p in enumerate(paths)]))
    emit({"bench": "fleet.ingest.raw", "shippers": SHIPPERS, "rows": total,
          "rows_per_s": round(total / statistics.median(raw)),
          "what": "10 processes of plain COPY at once"})  # fmt: skip
    emit({"bench": "fleet.ingest", "shippers": SHIPPERS, "rows": total, "repeats": repeats,
          "rows_per_s": round(total / statistics.median(ours)),
          "ratio": round(statistics.median(raw) / statistics.median(ours), 3), "cores": os.cpu_count()})  # fmt: skip


def tick_figures(workdir: str, cluster: PgCluster, ticks: int, repeats: int, outage_s: float) -> None:
    """``fleet.tick_to_order`` with the store up and down, the order alternated round by round."""
    up: list[float] = []
    down: list[float] = []
    catch_ups: list[float] = []
    duplicates = 0
    for round_no in range(repeats):
        url = cluster.create_database()
        for outage in (0.0, outage_s) if round_no % 2 == 0 else (outage_s, 0.0):
            samples, catch_up, dup = tick_round(workdir, ticks, round_no, cluster, url, outage)
            (down if outage else up).extend(samples)
            duplicates += dup
            if catch_up is not None:
                catch_ups.append(catch_up)
    p_up, p_down = percentiles(up), percentiles(down)
    emit({"bench": "fleet.tick_to_order", "store": "up", "ticks": len(up), **p_up})
    emit({"bench": "fleet.tick_to_order", "store": "down", "outage_s": outage_s, "ticks": len(down), **p_down,
          "p50_delta_us": round(p_down["p50_us"] - p_up["p50_us"], 1),
          "catch_up_s": round(statistics.median(catch_ups), 3), "duplicates": duplicates})  # fmt: skip


if __name__ == "__main__":
    main()
