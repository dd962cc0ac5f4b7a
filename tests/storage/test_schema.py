"""Schema version, forward-only migrations, refusal of newer or unknown schemas, the chain head check."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils

from storage import SCHEMA_VERSION, Journal, JournalCorrupt, JournalOpenError, JournalVersionError
from storage.audit import AuditReader
from storage.codec import GENESIS_HASH
from storage.schema import MIGRATION_NAMES, MIGRATIONS, migrate, user_version
from tests.conftest import run_cli
from tests.storage.conftest import SmallJournal, count_rows, drop_append_only_triggers, query, raw
from tests.toy import TOY

OpenJournal = Callable[..., Journal]
VIEWS = {"entities", "runs", "transition_log", "anomaly_log", "fills", "orders", "positions", "trading_states"}
TRIGGERS = {
    "transitions_append_only_update",
    "transitions_append_only_delete",
    "anomalies_append_only_update",
    "anomalies_append_only_delete",
}


def objects(path: str, kind: str) -> set[str]:
    return {row[0] for row in query(path, "SELECT name FROM sqlite_master WHERE type = ?", (kind,))}


def applied_migrations(path: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in query(path, "SELECT migration_set, name FROM _sqlite_migrations ORDER BY id")]


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_v1(path: str) -> None:
    """A database as the first release wrote it: only the first migration applied."""
    db = sqlite_utils.Database(path)
    try:
        MIGRATIONS.apply(db, stop_before=MIGRATION_NAMES[1])
        db.execute("PRAGMA user_version = 1")
    finally:
        db.close()


def downgrade_to_v1(path: str) -> None:
    """Undo the second migration of a journal that holds data (what a v1 writer would have left)."""
    with raw(path) as conn:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER {trigger}")
        for view in VIEWS:
            conn.execute(f"DROP VIEW {view}")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", (MIGRATION_NAMES[1],))
        conn.execute("PRAGMA user_version = 1")


def test_the_migrations_in_order() -> None:
    assert SCHEMA_VERSION == len(MIGRATION_NAMES) == 7
    assert MIGRATION_NAMES == [
        "m001_core_tables",
        "m002_audit_views_and_guards",
        "m003_anomalies",
        "m004_fill_index",
        "m005_state_digests",
        "m006_journal_id",
        "m007_reader_views",
    ]


def test_fresh_journal_has_the_current_schema(open_journal: OpenJournal, db_path: str) -> None:
    journal = open_journal(db_path)
    assert (journal.schema_before, journal.schema_version) == (0, SCHEMA_VERSION)
    journal.close()
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert applied_migrations(db_path) == [("tradekernel", name) for name in MIGRATION_NAMES]
    assert objects(db_path, "table") == {
        "transitions",
        "live_entities",
        "ended_entities",
        "journal_head",
        "anomalies",
        "journal_info",
        "_sqlite_migrations",
    }
    assert objects(db_path, "view") == VIEWS
    assert objects(db_path, "trigger") == TRIGGERS
    assert query(db_path, "SELECT id, seq, hash FROM journal_head") == [
        (1, 2, query(db_path, "SELECT hash FROM transitions WHERE seq = 2")[0][0])
    ]


def test_empty_journal_head_is_genesis(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path, start_run=False).close()
    assert query(db_path, "SELECT id, seq, hash FROM journal_head") == [(1, 0, GENESIS_HASH)]


def test_migrate_is_idempotent(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path).close()
    again = open_journal(db_path)
    assert (again.schema_before, again.schema_version) == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert again._conn is not None
    assert migrate(again._conn, db_path) == (SCHEMA_VERSION, SCHEMA_VERSION)
    again.close()
    assert applied_migrations(db_path) == [("tradekernel", name) for name in MIGRATION_NAMES]
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_v1_database_is_migrated_on_open(open_journal: OpenJournal, db_path: str) -> None:
    build_v1(db_path)
    assert objects(db_path, "view") == set()
    assert applied_migrations(db_path) == [("tradekernel", MIGRATION_NAMES[0])]
    journal = open_journal(db_path)
    assert (journal.schema_before, journal.schema_version) == (1, SCHEMA_VERSION)
    assert journal.run_id == 1
    journal.close()
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert objects(db_path, "view") == VIEWS
    assert objects(db_path, "trigger") == TRIGGERS
    assert applied_migrations(db_path) == [("tradekernel", name) for name in MIGRATION_NAMES]
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


def test_v1_journal_with_data_keeps_it_through_migration(
    small_journal: SmallJournal, open_journal: OpenJournal
) -> None:
    path = small_journal.path
    downgrade_to_v1(path)
    with pytest.raises(JournalOpenError, match=r"schema version 1.*run `tradekernel migrate --db"):
        AuditReader(path)
    journal = open_journal(path)
    assert journal.schema_before == 1
    live = {e.entity_id: e.state for e in journal.live_entities(TOY)}
    assert live == {k: v for k, v in small_journal.states.items() if v in ("idle", "active")}
    journal.close()
    with AuditReader(path) as reader:
        result = reader.verify()
        assert result.ok, result
        assert result.transitions == small_journal.rows + 2
        assert {e["entity"]: e["state"] for e in reader.entities("toy")} == small_journal.states
    # the views and guards came with the migration
    assert query(path, "SELECT count(*) FROM runs") == [(2,)]
    with raw(path) as conn, pytest.raises(Exception, match="append-only"):
        conn.execute("DELETE FROM transitions WHERE seq = 1")


def test_cli_migrate_reports_the_versions(db_path: str) -> None:
    build_v1(db_path)
    done = run_cli("migrate", "--db", db_path)
    assert done.returncode == 0, done
    assert f"migrated journal {db_path} from schema version 1 to {SCHEMA_VERSION}" in done.stdout
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert count_rows(db_path) == 0  # maintenance records no run


def test_newer_database_is_refused_everywhere(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path).close()
    newer = SCHEMA_VERSION + 1
    with raw(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    before = sha(db_path)
    with pytest.raises(JournalVersionError) as refused:
        open_journal(db_path)
    assert (refused.value.found, refused.value.supported, refused.value.path) == (newer, SCHEMA_VERSION, db_path)
    assert f"schema version {newer}" in str(refused.value)
    assert f"up to version {SCHEMA_VERSION}" in str(refused.value)
    with pytest.raises(JournalVersionError, match=f"schema version {newer}.*up to version {SCHEMA_VERSION}"):
        AuditReader(db_path)
    done = run_cli("migrate", "--db", db_path)
    assert done.returncode == 2
    assert f"schema version {newer}" in done.stderr
    assert "never downgraded" in done.stderr
    assert sha(db_path) == before  # refused without writing a byte
    assert query(db_path, "PRAGMA user_version") == [(newer,)]


def test_unknown_migration_name_is_refused(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path).close()
    with raw(db_path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('tradekernel', 'm999_future', '')"
        )
    with pytest.raises(JournalVersionError) as refused:
        open_journal(db_path)
    assert db_path in str(refused.value)
    assert refused.value.supported == SCHEMA_VERSION
    assert refused.value.found == SCHEMA_VERSION  # user_version; the unknown migration is named
    assert "m999_future" in str(refused.value)


def test_another_migration_set_in_the_same_file_is_ignored(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path).close()
    with raw(db_path) as conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('plugin', 'm001_other', '')"
        )
    journal = open_journal(db_path)
    assert journal.schema_before == SCHEMA_VERSION


def test_audit_reader_on_a_v1_database_asks_for_migrate(db_path: str) -> None:
    build_v1(db_path)
    with pytest.raises(JournalOpenError, match=r"run `tradekernel migrate --db .*journal\.db` first"):
        AuditReader(db_path)


def test_audit_reader_on_an_unversioned_database(db_path: str) -> None:
    with raw(db_path) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert query(db_path, "PRAGMA user_version") == [(0,)]
    with pytest.raises(JournalOpenError, match="is not a tradekernel journal"):
        AuditReader(db_path)


def test_user_version_helper(db_path: str) -> None:
    with raw(db_path) as conn:
        assert user_version(conn) == 0
        conn.execute("PRAGMA user_version = 7")
        assert user_version(conn) == 7


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE journal_head SET seq = seq + 1",
        "UPDATE journal_head SET hash = '" + "a" * 64 + "'",
        "UPDATE journal_head SET seq = seq - 1",
    ],
)
def test_head_mismatch_is_corrupt(small_journal: SmallJournal, open_journal: OpenJournal, tamper: str) -> None:
    with raw(small_journal.path) as conn:
        conn.execute(tamper)
    with pytest.raises(JournalCorrupt, match=r"chain head records seq .* but the last row is seq") as refused:
        open_journal(small_journal.path)
    assert small_journal.path in str(refused.value)
    assert "audit verify" in str(refused.value)


def test_deleted_tail_is_caught_on_open(small_journal: SmallJournal, open_journal: OpenJournal) -> None:
    with raw(small_journal.path) as conn:
        drop_append_only_triggers(conn)
        conn.execute("DELETE FROM transitions WHERE seq = (SELECT max(seq) FROM transitions)")
    with pytest.raises(JournalCorrupt, match=f"records seq {small_journal.rows} but the last row is seq"):
        open_journal(small_journal.path)


def test_a_crash_between_migrations_and_user_version_is_completed(open_journal: OpenJournal, db_path: str) -> None:
    """Migrations ran but user_version was never written (killed in between): the next open finishes."""
    db = sqlite_utils.Database(db_path)
    try:
        MIGRATIONS.apply(db)
    finally:
        db.close()
    assert query(db_path, "PRAGMA user_version") == [(0,)]
    journal = open_journal(db_path)
    assert (journal.schema_before, journal.schema_version) == (0, SCHEMA_VERSION)
    journal.close()
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


JOURNAL_ID = re.compile(r"[a-z2-7]{8}")


def downgrade_to_v5(path: str) -> None:
    """Undo the sixth and seventh migrations of a journal that holds data (what a v5 writer would
    have left; the views migration 7 replaced stay in their new form, which it replaces again)."""
    with raw(path) as conn:
        conn.execute("DROP TABLE journal_info")
        for view in ("fills", "orders", "positions", "trading_states"):
            conn.execute(f"DROP VIEW {view}")
        conn.execute("DROP INDEX transitions_creates")
        conn.execute("DROP INDEX transitions_trading")
        for name in ("m006_journal_id", "m007_reader_views"):
            conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", (name,))
        conn.execute("PRAGMA user_version = 5")


def test_a_fresh_journal_has_a_random_journal_id_kept_across_opens(open_journal: OpenJournal, tmp_path: Path) -> None:
    first = open_journal(str(tmp_path / "a.db"))
    second = open_journal(str(tmp_path / "b.db"))
    ids = (first.journal_id, second.journal_id)
    first.close()
    second.close()
    assert all(JOURNAL_ID.fullmatch(i) for i in ids), ids
    assert ids[0] != ids[1]
    again = open_journal(str(tmp_path / "a.db"))
    assert again.journal_id == ids[0]
    again.close()
    assert query(str(tmp_path / "a.db"), "SELECT id, journal_id FROM journal_info") == [(1, ids[0])]


def test_v5_journal_gets_a_journal_id_on_migration_and_keeps_its_data(
    small_journal: SmallJournal, open_journal: OpenJournal
) -> None:
    path = small_journal.path
    downgrade_to_v5(path)
    assert "journal_info" not in objects(path, "table")
    with pytest.raises(JournalOpenError, match=r"schema version 5.*run `tradekernel migrate --db"):
        AuditReader(path)
    journal = open_journal(path)
    assert (journal.schema_before, journal.schema_version) == (5, 7)
    journal_id = journal.journal_id
    journal.close()
    assert JOURNAL_ID.fullmatch(journal_id), journal_id
    assert query(path, "SELECT journal_id FROM journal_info") == [(journal_id,)]
    assert query(path, "PRAGMA user_version") == [(7,)]
    with AuditReader(path) as reader:
        result = reader.verify()
        assert result.ok, result
        assert {e["entity"]: e["state"] for e in reader.entities("toy")} == small_journal.states
    again = open_journal(path)
    assert again.journal_id == journal_id  # made once, on migration
    again.close()


def test_a_missing_journal_id_row_is_a_typed_error(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path).close()
    with raw(db_path) as conn:
        conn.execute("DELETE FROM journal_info")
    with pytest.raises(JournalCorrupt, match=r"journal_info row \(the journal's id\) is missing"):
        open_journal(db_path)
