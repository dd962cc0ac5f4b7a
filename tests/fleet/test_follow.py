"""Shipping while things happen: ``ship --follow`` through a PostgreSQL outage, and
``tradekernel run`` with ``[ship] url`` shipping from its own thread while it trades."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psycopg
import pytest

from tests.conftest import REPO, run_cli
from tests.fleet.conftest import PgCluster
from tests.fleet.journals import PAPER_CONFIG, append_session, journal_id, local_rows

STORE_TRANSITIONS = (
    "SELECT seq, ts, run, machine, entity, trigger, source, dest, data, hash FROM transitions "
    "WHERE kernel_id = %s ORDER BY seq"
)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def tk(*args: str, stderr: IO[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kernel", *args],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def store_seq(dsn: str, kernel_id: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute("SELECT last_seq FROM kernels WHERE kernel_id = %s", (kernel_id,)).fetchone()
    except psycopg.Error:  # down, or not migrated yet
        return -1
    return 0 if row is None else int(row[0])


def store_rows(dsn: str, kernel_id: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(STORE_TRANSITIONS, (kernel_id,)).fetchall()


@pytest.mark.slow
def test_follow_rides_out_a_postgresql_outage(pg_cluster: PgCluster, pg_dsn: str, tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    append_session(db)
    kernel_id = journal_id(db)
    log = tmp_path / "ship.log"
    with log.open("w") as err:
        follower = tk(
            "ship", "--db", str(db), "--to", pg_dsn, "--follow", "--interval", "0.1", "--max-backoff", "0.3", stderr=err
        )
    try:
        wait_for(lambda: store_seq(pg_dsn, kernel_id) == 2, "the first run shipped")
        pg_cluster.stop()
        try:
            for session in range(3):  # the journal moves on while the store is down
                append_session(db, anomaly=f"anomaly {session}")
            wait_for(lambda: "retrying" in log.read_text(), "the shipper to notice the outage")
        finally:
            pg_cluster.start()
        wait_for(lambda: store_seq(pg_dsn, kernel_id) == 8, "the shipper to catch up")
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=30)
    assert follower.returncode == 0, log.read_text()[-2000:]
    assert store_rows(pg_dsn, kernel_id) == local_rows(db)
    with psycopg.connect(pg_dsn) as conn:
        anomalies = conn.execute("SELECT id, reason FROM anomalies ORDER BY id").fetchall()
        runs = conn.execute("SELECT run, state FROM runs ORDER BY run").fetchall()
    assert anomalies == [(1, "anomaly 0"), (2, "anomaly 1"), (3, "anomaly 2")]
    assert runs == [(1, "stopped"), (2, "stopped"), (3, "stopped"), (4, "stopped")]


def shipped_seq(db: Path, dsn: str) -> int:
    if not db.exists():
        return -1
    try:
        kernel_id = journal_id(db)
    except sqlite3.Error:  # the kernel is still creating it
        return -1
    return store_seq(dsn, kernel_id)


@pytest.mark.slow
def test_run_ships_its_journal_while_it_trades(pg_dsn: str, tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    config = tmp_path / "kernel.toml"
    config.write_text(f'{PAPER_CONFIG}\n[ship]\nurl = "{pg_dsn}"\ninterval_s = 0.1\n')
    with (tmp_path / "run.log").open("w") as err:
        kernel = tk("run", "--config", str(config), "--db", str(db), "--status-view", "off", "--duration", "5",
                    stderr=err)  # fmt: skip
    try:
        wait_for(lambda: shipped_seq(db, pg_dsn) > 0, "rows shipped during the run")
        assert kernel.poll() is None, "the kernel had already stopped"
        status = run_cli("status", "--db", str(db), "--json", timeout=30)
        ship = json.loads(status.stdout)["ship"]
        assert ship["state"] in ("shipping", "caught_up")
        assert ship["kernel_id"] == journal_id(db)
        assert ship["shipped_seq"] > 0
        assert ship["lag_rows"] >= 0
    finally:
        kernel.wait(timeout=60)
    assert kernel.returncode == 0, (tmp_path / "run.log").read_text()[-2000:]
    rows = local_rows(db)
    assert rows[-1][3:6] == ("run", "1", "stop")  # the last pass, after the journal closed, shipped the end
    assert store_rows(pg_dsn, journal_id(db)) == rows
