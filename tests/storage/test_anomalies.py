"""Anomalies: bad input journaled with a sample, in the same group commit as transitions."""

from __future__ import annotations

import json
import sqlite3

import pytest

from kernel.cli import main
from storage import Journal, JournalClosed, JournalWriteError
from storage.audit import AuditReader
from storage.journal import MAX_SAMPLE
from tests.conftest import FakeClock
from tests.toy import TOY


def test_an_anomaly_is_buffered_until_the_next_commit(db_path: str, clock: FakeClock) -> None:
    with Journal.open(db_path, clock=clock) as journal:
        journal.record_anomaly("feed:paper", "decode_error", "not JSON", "garbage \x00")
        assert journal.pending_anomalies == 1
        with AuditReader(db_path) as reader:
            assert reader.anomalies() == []
        assert journal.commit() == 0  # no transitions, but the anomaly is written
        assert journal.pending_anomalies == 0
        with AuditReader(db_path) as reader:
            (row,) = reader.anomalies()
        assert (row["id"], row["run"], row["source"], row["kind"]) == (1, journal.run_id, "feed:paper", "decode_error")
        assert (row["reason"], row["sample"]) == ("not JSON", "garbage \x00")
        assert row["ts"].startswith("2023-11-14T22:13:20.")


def test_anomalies_and_transitions_commit_together_or_not_at_all(db_path: str) -> None:
    with Journal.open(db_path) as journal:
        entity, created = TOY.create("t")
        journal.append(created, entity)
        journal.record_anomaly("orders", "refused", "fill on a rejected order")
        pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[union-attr]
        journal._conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[union-attr]
        for i in range(200):
            journal.record_anomaly("orders", "refused", "x" * 1000, str(i))
        with pytest.raises(JournalWriteError):
            journal.commit()
        with AuditReader(db_path) as reader:
            assert reader.anomalies() == []
            assert reader.timeline("t") == []
        assert journal.pending_anomalies == 201  # kept for the retry
        journal._conn.execute("PRAGMA max_page_count = 1000000")  # type: ignore[union-attr]
        journal.commit()
    with AuditReader(db_path) as reader:
        assert len(reader.anomalies(n=500)) == 201
        assert [r["trigger"] for r in reader.timeline("t")] == ["create"]
        assert reader.verify().ok  # anomalies are not part of the chain or the replay


def test_samples_are_cut_and_filters_apply(db_path: str) -> None:
    with Journal.open(db_path) as journal:
        journal.record_anomaly("feed:a", "decode_error", "r", "x" * (MAX_SAMPLE * 3))
        journal.record_anomaly("feed:b", "duplicate", "r2")
        journal.commit()
    with AuditReader(db_path) as reader:
        assert len(reader.anomalies(source="feed:a")[0]["sample"]) == MAX_SAMPLE
        assert [a["source"] for a in reader.anomalies()] == ["feed:a", "feed:b"]  # oldest first
        assert [a["source"] for a in reader.anomalies(n=1)] == ["feed:b"]  # the latest
        assert reader.stats()["anomalies"] == {"feed:a": 1, "feed:b": 1}


def test_anomalies_are_append_only(db_path: str) -> None:
    with Journal.open(db_path) as journal:
        journal.record_anomaly("s", "k", "r")
    conn = sqlite3.connect(db_path)
    try:
        for statement in ("UPDATE anomalies SET reason = 'edited'", "DELETE FROM anomalies"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


def test_recording_on_a_closed_journal_is_refused(db_path: str) -> None:
    journal = Journal.open(db_path)
    journal.close()
    with pytest.raises(JournalClosed):
        journal.record_anomaly("s", "k", "r")


def test_audit_anomalies_command(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Journal.open(db_path) as journal:
        assert main(["audit", "anomalies", "--db", db_path]) == 0
        assert capsys.readouterr().out == "no anomalies\n"
        journal.record_anomaly("feed:paper", "decode_error", "not JSON", "garbage")
    assert main(["audit", "anomalies", "--db", db_path]) == 0
    out = capsys.readouterr().out
    assert "feed:paper" in out
    assert "garbage" in out
    assert main(["audit", "anomalies", "--db", db_path, "--json", "--source", "feed:paper"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert {"id", "ts", "run", "source", "kind", "reason", "sample"} <= set(row)
    assert main(["audit", "stats", "--db", db_path]) == 0
    assert "anomalies      1 from feed:paper" in capsys.readouterr().out
