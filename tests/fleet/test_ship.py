"""``tradekernel ship`` and ``audit verify --against`` on a real PostgreSQL, with journals from a paper run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_cli
from tests.fleet.journals import (
    append_session,
    copy_journal,
    journal_id,
    local_rows,
    paper_run,
    rewrite_fill_price,
)

STORE_TRANSITIONS = (
    "SELECT seq, ts, run, machine, entity, trigger, source, dest, data, hash FROM transitions "
    "WHERE kernel_id = %s ORDER BY seq"
)


@pytest.fixture(scope="module")
def paper_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal of one short paper run of the market maker, with fills (made once, copied by tests)."""
    db = tmp_path_factory.mktemp("paper") / "paper.db"
    paper_run(db)
    with sqlite3.connect(db) as conn:
        fills = conn.execute("SELECT count(*) FROM transitions WHERE machine = 'order' AND trigger = 'fill'")
        assert fills.fetchone()[0] > 0
    return db


@pytest.fixture
def journal(paper_journal: Path, tmp_path: Path) -> Path:
    return copy_journal(paper_journal, tmp_path / "journal.db")


def ship(db: Path, dsn: str, *more: str) -> tuple[int, str, str]:
    result = run_cli("ship", "--db", str(db), "--to", dsn, *more, timeout=60)
    return result.returncode, result.stdout, result.stderr


def store_rows(dsn: str, kernel_id: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(STORE_TRANSITIONS, (kernel_id,)).fetchall()


def store_one(dsn: str, sql: str, *params: object) -> tuple[object, ...] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchone()  # type: ignore[arg-type]


def test_ship_copies_every_row_exactly(journal: Path, pg_dsn: str) -> None:
    kernel_id = journal_id(journal)
    code, out, err = ship(journal, pg_dsn, "--batch-rows", "50")
    assert code == 0, err
    rows = local_rows(journal)
    assert f"shipped {len(rows)} rows of {journal} (kernel {kernel_id})" in out
    assert store_rows(pg_dsn, kernel_id) == rows
    assert store_one(pg_dsn, "SELECT last_seq, last_hash FROM kernels WHERE kernel_id = %s", kernel_id) == (
        rows[-1][0],
        rows[-1][-1],
    )
    run = store_one(pg_dsn, "SELECT run, state, ended_ns IS NOT NULL, pid > 0, version FROM runs")
    assert run == (1, "stopped", True, True, "0.1.0")
    fill = store_one(
        pg_dsn,
        "SELECT data_json->>'price', data FROM transitions WHERE trigger = 'fill' ORDER BY seq LIMIT 1",
    )
    assert fill is not None
    assert f'"price":"{fill[0]}"' in str(fill[1])  # the jsonb copy keeps the exact decimal string
    assert store_one(pg_dsn, "SELECT count(*) FROM incidents") == (0,)


def test_a_second_ship_changes_nothing(journal: Path, pg_dsn: str) -> None:
    kernel_id = journal_id(journal)
    assert ship(journal, pg_dsn)[0] == 0
    before = store_one(pg_dsn, "SELECT last_seq, last_hash, last_anomaly_id FROM kernels")
    code, out, _ = ship(journal, pg_dsn)
    assert code == 0
    assert "shipped 0 rows" in out
    assert store_one(pg_dsn, "SELECT last_seq, last_hash, last_anomaly_id FROM kernels") == before
    assert store_rows(pg_dsn, kernel_id) == local_rows(journal)
    assert store_one(pg_dsn, "SELECT count(*) FROM incidents") == (0,)


def test_shipping_resumes_from_the_stores_last_seq(journal: Path, pg_dsn: str) -> None:
    kernel_id = journal_id(journal)
    assert ship(journal, pg_dsn)[0] == 0
    first = len(local_rows(journal))
    append_session(journal, anomaly="a frame that did not parse")
    code, out, err = ship(journal, pg_dsn)
    assert code == 0, err
    assert "shipped 2 rows" in out  # run 2: create and stop
    assert len(local_rows(journal)) == first + 2
    assert store_rows(pg_dsn, kernel_id) == local_rows(journal)
    assert store_one(pg_dsn, "SELECT run, state FROM runs WHERE run = 2") == (2, "stopped")
    anomaly = store_one(pg_dsn, "SELECT id, kind, reason, sample FROM anomalies")
    assert anomaly == (1, "bad_input", "a frame that did not parse", "x\\u0000y")


def test_a_journal_rewritten_after_shipping_is_an_incident(journal: Path, pg_dsn: str) -> None:
    kernel_id = journal_id(journal)
    assert ship(journal, pg_dsn)[0] == 0
    shipped = store_rows(pg_dsn, kernel_id)
    seq = rewrite_fill_price(journal)
    original = next(row[-1] for row in shipped if row[0] == seq)
    rewritten = next(row[-1] for row in local_rows(journal) if row[0] == seq)
    append_session(journal)  # and the kernel carried on
    assert run_cli("audit", "verify", "--db", str(journal)).returncode == 0  # locally, nothing shows

    code, _, err = ship(journal, pg_dsn)
    assert code == 1
    assert f"seq {seq}" in err
    assert original in err
    assert rewritten in err
    incident = store_one(pg_dsn, "SELECT kernel_id, kind, seq, expected_hash, got_hash FROM incidents")
    assert incident == (kernel_id, "rewritten", seq, original, rewritten)
    assert store_rows(pg_dsn, kernel_id) == shipped  # nothing merged

    verify = run_cli("audit", "verify", "--db", str(journal), "--against", pg_dsn)
    assert verify.returncode == 1
    assert f"seq {seq} differs (local hash {rewritten}, store hash {original})" in verify.stdout


def test_verify_against_notes_lag_and_passes(journal: Path, pg_dsn: str) -> None:
    assert ship(journal, pg_dsn)[0] == 0
    shipped = len(local_rows(journal))
    append_session(journal)
    verify = run_cli("audit", "verify", "--db", str(journal), "--against", pg_dsn, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    against = json.loads(verify.stdout)["against"]
    assert against["ok"] is True
    assert (against["compared"], against["mismatches"], against["missing_locally"]) == (shipped, 0, 0)
    assert (against["missing_in_store"], against["first_missing_in_store"]) == (2, shipped + 1)


def test_two_journals_claiming_one_kernel_id_is_an_incident(
    journal: Path, paper_journal: Path, tmp_path: Path, pg_dsn: str
) -> None:
    other = tmp_path / "other.db"
    append_session(other)  # a different journal: one run
    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE journal_info SET journal_id = ?", (journal_id(journal),))
    assert ship(journal, pg_dsn)[0] == 0
    shipped = store_rows(pg_dsn, journal_id(journal))

    code, _, err = ship(other, pg_dsn)
    assert code == 1
    assert "INCIDENT" in err
    kind, seq = store_one(pg_dsn, "SELECT kind, seq FROM incidents") or ("", 0)
    assert (kind, seq) == ("rewritten", 1)  # its run 1 is not the shipped journal's run 1
    assert store_rows(pg_dsn, journal_id(journal)) == shipped


def test_a_restored_older_backup_is_an_incident(journal: Path, tmp_path: Path, pg_dsn: str) -> None:
    backup = copy_journal(journal, tmp_path / "backup.db")
    append_session(journal)
    assert ship(journal, pg_dsn)[0] == 0
    head = len(local_rows(journal))

    code, _, err = ship(backup, pg_dsn)
    assert code == 1
    assert store_one(pg_dsn, "SELECT kind, seq FROM incidents") == ("behind", head - 1)
    assert "INCIDENT" in err


def test_an_unreachable_store_fails_after_the_attempts(journal: Path, pg_cluster: object) -> None:
    code, _, err = ship(journal, "postgresql://postgres@127.0.0.1:1/none", "--attempts", "2", "--max-backoff", "0.1")
    assert code == 1
    assert "unreachable" in err
    assert "gave up after 2 attempts" in err


def test_verify_against_only_local_rows_is_ok_with_a_note(journal: Path, pg_dsn: str) -> None:
    verify = run_cli("audit", "verify", "--db", str(journal), "--against", pg_dsn)
    assert verify.returncode == 0
    assert f"note: {len(local_rows(journal))} local rows not shipped yet (from seq 1)" in verify.stdout
