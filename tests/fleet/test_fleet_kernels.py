"""Three paper kernels ship to one PostgreSQL while running; an outage of PostgreSQL mid-run.

Real ``tradekernel run`` processes on the embedded paper venue, each with its own journal and
``[ship] url`` pointing at a real, throwaway PostgreSQL cluster (``tests/fleet/pg.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fleet.journals import journal_id, local_rows
from tests.fleet.kernels import audit_json, finish, orders_created, start_kernel, wait_until
from tests.fleet.pg import PgCluster

STORE_ROWS = (
    "SELECT seq, ts, run, machine, entity, trigger, source, dest, data, hash FROM transitions "
    "WHERE kernel_id = %s ORDER BY seq"
)


def store_count(dsn: str, kernel_id: str) -> tuple[int, int, int]:
    """``(count(*), count(DISTINCT seq), max(seq))`` of one kernel's rows in the store."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT seq), COALESCE(max(seq), 0) FROM transitions WHERE kernel_id = %s",
            (kernel_id,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_three_kernels_ship_to_one_store_and_its_fills_agree_with_each_journal(tmp_path: Path, pg_dsn: str) -> None:
    kernels = [start_kernel(tmp_path / f"k{n}", pg_dsn, seconds=4) for n in range(3)]
    for process in kernels:
        finish(process)
    journals = [tmp_path / f"k{n}" / "journal.db" for n in range(3)]
    ids = [journal_id(db) for db in journals]
    assert len(set(ids)) == 3
    expected: list[dict[str, object]] = []
    for db, kernel_id in sorted(zip(journals, ids, strict=True), key=lambda pair: pair[1]):
        # Shipping caught up at stop: every local row, once, identical.
        rows = local_rows(db)
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute(STORE_ROWS, (kernel_id,)).fetchall() == rows
        local = audit_json("fills", "--db", str(db))
        assert isinstance(local, list)
        assert local, f"kernel {kernel_id} made no fill"
        expected += [{"kernel_id": kernel_id, **fill} for fill in local]
        narrowed = audit_json("fills", "--db", pg_dsn, "--kernel", kernel_id)
        assert narrowed == [{"kernel_id": kernel_id, **fill} for fill in local]
    assert audit_json("fills", "--db", pg_dsn) == expected
    stats = audit_json("stats", "--db", pg_dsn)
    assert isinstance(stats, dict)
    assert [k["kernel_id"] for k in stats["kernels"]] == sorted(ids)
    assert stats["runs"] == {"stopped": 3}


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own: it is stopped mid-test (the session's cluster stays up)."""
    cluster = PgCluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def test_an_outage_of_the_store_neither_stops_trading_nor_loses_or_duplicates_rows(
    tmp_path: Path, own_cluster: PgCluster
) -> None:
    dsn = own_cluster.create_database()
    db = tmp_path / "k" / "journal.db"
    kernel = start_kernel(tmp_path / "k", dsn, seconds=16, max_backoff_s=0.5)
    try:
        wait_until(lambda: db.exists() and orders_created(db) > 0, timeout=30, what="the kernel's first order")
        kernel_id = journal_id(db)
        wait_until(lambda: store_count(dsn, kernel_id)[0] > 0, timeout=30, what="the first shipped rows")
        own_cluster.stop()
        outage_ends = time.monotonic() + 5
        during = orders_created(db)
        wait_until(lambda: orders_created(db) > during, timeout=10, what="a new order while the store is down")
        time.sleep(max(0.0, outage_ends - time.monotonic()))  # the outage lasts 5 s (a duration, not a wait)
        after = orders_created(db)
        own_cluster.start()
    finally:
        err = finish(kernel)
    assert after > during, "the kernel stopped trading while the store was down"
    assert "retrying" in err  # the shipper saw the outage and backed off
    rows = local_rows(db)
    assert store_count(dsn, kernel_id) == (len(rows), len(rows), rows[-1][0])
    with psycopg.connect(dsn) as conn:
        assert conn.execute(STORE_ROWS, (kernel_id,)).fetchall() == rows
        assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
