"""Failure modes on real files: disk full, foreign locks, bad paths, damaged files, read-only files."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import storage.schema
from storage import (
    Journal,
    JournalCorrupt,
    JournalError,
    JournalLocked,
    JournalOpenError,
    JournalWriteError,
)
from storage.audit import AuditReader
from storage.errors import JournalBusy
from storage.schema import translate
from tests.conftest import FakeClock
from tests.storage.conftest import (
    Unprivileged,
    leftmost_leaf,
    overwrite,
    page_info,
    query,
    raw,
)
from tests.toy import TOY

OpenJournal = Callable[..., Journal]


def append_toys(journal: Journal, prefix: str, n: int) -> set[str]:
    ids = set()
    for i in range(n):
        entity, created = TOY.create(f"{prefix}-{i:05d}", target="5")
        journal.append(created, entity)
        ids.add(entity.entity_id)
    return ids


def toy_ids(path: str) -> set[str]:
    return {row[0] for row in query(path, "SELECT entity FROM transitions WHERE machine = 'toy'")}


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- disk full ----------------------------------------------------------------------------------


def test_disk_full_rolls_back_keeps_the_batch_and_a_retry_loses_nothing(journal: Journal, db_path: str) -> None:
    first = append_toys(journal, "ok", 10)
    journal.commit()
    conn = journal._conn
    assert conn is not None
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    assert conn.execute(f"PRAGMA max_page_count = {pages}").fetchone() == (pages,)

    big = append_toys(journal, "big", 500)
    seq_before = journal.committed_seq
    with pytest.raises(JournalWriteError, match="full") as failed:
        journal.commit()
    assert db_path in str(failed.value)
    assert journal.failure is failed.value
    assert journal.pending == 500
    assert journal.committed_seq == seq_before
    # nothing of the failed batch reached the file
    assert toy_ids(db_path) == first
    with AuditReader(db_path) as reader:
        assert reader.verify().ok
        assert reader.stats()["last_seq"] == seq_before
    assert not conn.in_transaction

    # a second failure is just as clean, and the buffer may grow meanwhile
    more = append_toys(journal, "more", 3)
    with pytest.raises(JournalWriteError):
        journal.commit()
    assert journal.pending == 503

    conn.execute("PRAGMA max_page_count = 1000000")
    assert journal.commit() == 503
    assert journal.failure is None
    assert journal.pending == 0
    assert toy_ids(db_path) == first | big | more
    journal.close()
    with AuditReader(db_path) as reader:
        result = reader.verify()
    assert result.ok, result


def test_close_that_cannot_commit_raises_and_can_be_retried(journal: Journal, db_path: str) -> None:
    conn = journal._conn
    assert conn is not None
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    ids = append_toys(journal, "late", 400)
    with pytest.raises(JournalWriteError):
        journal.close()
    assert not journal.closed
    assert journal.pending == 401  # the toys and the run's stop row
    conn.execute("PRAGMA max_page_count = 1000000")
    journal.close()
    assert journal.closed
    assert toy_ids(db_path) == ids
    assert query(db_path, "SELECT state FROM runs") == [("stopped",)]


# -- foreign locks ------------------------------------------------------------------------------


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """connect_writer reads BUSY_TIMEOUT_S at connect time, so a journal opened afterwards waits this long."""
    monkeypatch.setattr(storage.schema, "BUSY_TIMEOUT_S", 0.2)
    return 0.2


def test_commit_fails_while_a_foreign_connection_holds_an_exclusive_lock(
    short_busy_timeout: float, open_journal: OpenJournal, db_path: str
) -> None:
    journal = open_journal(db_path)
    ids = append_toys(journal, "x", 5)
    with raw(db_path) as other:
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(JournalWriteError, match="database is locked") as failed:
            journal.commit()
        assert time.monotonic() - started >= short_busy_timeout * 0.5  # it waited for the busy timeout
        assert db_path in str(failed.value)
        assert "another connection holds a write lock" in str(failed.value)
        assert journal.failure is failed.value
        assert journal.pending == 5
        other.execute("ROLLBACK")
    assert journal.commit() == 5
    assert journal.failure is None
    assert toy_ids(db_path) == ids


def test_open_while_a_foreign_connection_holds_an_exclusive_lock(
    short_busy_timeout: float, open_journal: OpenJournal, db_path: str
) -> None:
    open_journal(db_path).close()
    with raw(db_path) as other:
        other.execute("BEGIN EXCLUSIVE")
        # the journal is already in WAL mode: open gets as far as recording the run, which cannot
        # commit; that is another writer holding the database, reported as such
        with pytest.raises(JournalLocked) as failed:
            open_journal(db_path)
        assert db_path in str(failed.value)
        assert "write transaction" in str(failed.value)
        other.execute("ROLLBACK")
    journal = open_journal(db_path)  # the failed open released the writer lock and wrote nothing
    assert (journal.run_id, journal.crashed_runs) == (2, [])


def test_open_of_a_rollback_journal_file_locked_by_a_foreign_connection(
    short_busy_timeout: float, open_journal: OpenJournal, db_path: str
) -> None:
    with raw(db_path) as other:
        other.execute("BEGIN EXCLUSIVE")  # a fresh file, not yet in WAL mode: switching to WAL needs the lock
        with pytest.raises(JournalLocked) as failed:
            open_journal(db_path)
        assert failed.value.path == db_path
        assert db_path in str(failed.value)
        other.execute("ROLLBACK")
    assert open_journal(db_path).run_id == 1


def test_a_foreign_row_in_the_way_fails_the_commit_as_a_write_error(journal: Journal, db_path: str) -> None:
    """A writer that bypasses the lock and takes the next seq: the commit fails cleanly, nothing half-written."""
    append_toys(journal, "mine", 3)
    with raw(db_path) as other:
        other.execute(
            "INSERT INTO transitions VALUES (?, 1, 9, 'toy', 'intruder', 'create', NULL, 'idle', '{}', 'x')",
            (journal.committed_seq + 2,),
        )
    with pytest.raises(JournalWriteError, match="UNIQUE constraint failed"):
        journal.commit()
    assert journal.pending == 3
    assert toy_ids(db_path) == {"intruder"}


# -- paths and files ----------------------------------------------------------------------------


def test_missing_directory_is_named(open_journal: OpenJournal, tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "journal.db"
    with pytest.raises(JournalOpenError, match="does not exist") as failed:
        open_journal(str(path))
    assert str(tmp_path / "no" / "such") in str(failed.value)
    assert not (tmp_path / "no").exists()


def test_audit_reader_on_a_missing_file(db_path: str) -> None:
    with pytest.raises(JournalOpenError, match="no journal at"):
        AuditReader(db_path)
    assert not os.path.exists(db_path)


def test_a_directory_in_place_of_the_file(open_journal: OpenJournal, tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.mkdir()
    with pytest.raises(JournalOpenError, match="it is a directory") as failed:
        open_journal(str(path))
    assert str(path) in str(failed.value)


def test_garbage_file_is_corrupt(open_journal: OpenJournal, db_path: str) -> None:
    Path(db_path).write_bytes(bytes(range(256)) * 32)
    before = sha(db_path)
    with pytest.raises(JournalCorrupt, match="not a database") as failed:
        open_journal(db_path)
    assert db_path in str(failed.value)
    with pytest.raises(JournalCorrupt, match="not a database"):
        AuditReader(db_path)
    assert sha(db_path) == before
    # the failed open released the lock: the error stays the same on a retry
    with pytest.raises(JournalCorrupt):
        open_journal(db_path)


def make_foreign(path: str, *statements: str) -> None:
    with raw(path) as conn:
        for statement in statements:
            conn.execute(statement)


def test_someone_elses_database_is_refused_and_left_unmodified(open_journal: OpenJournal, db_path: str) -> None:
    make_foreign(db_path, "CREATE TABLE people (name TEXT)", "INSERT INTO people VALUES ('ada')")
    before = sha(db_path)
    with pytest.raises(JournalOpenError, match="not a tradekernel journal") as failed:
        open_journal(db_path)
    assert "people" in str(failed.value)
    assert db_path in str(failed.value)
    with pytest.raises(JournalOpenError, match="not a tradekernel journal"):
        AuditReader(db_path)
    with raw(db_path, readonly=True) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("people",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert sha(db_path) == before


def test_someone_elses_database_with_a_user_version_is_refused_as_not_a_journal(
    open_journal: OpenJournal, db_path: str
) -> None:
    """Many applications set PRAGMA user_version; that alone must not make a file look like a journal."""
    make_foreign(db_path, "CREATE TABLE people (name TEXT)", "PRAGMA user_version = 1")
    with pytest.raises(JournalOpenError, match="not a tradekernel journal"):
        open_journal(db_path)
    assert query(db_path, "SELECT name FROM sqlite_master") == [("people",)]


def test_someone_elses_table_named_like_ours_is_refused_and_left_unmodified(
    open_journal: OpenJournal, db_path: str
) -> None:
    make_foreign(db_path, "CREATE TABLE transitions (x)")
    with pytest.raises(JournalOpenError, match="not a tradekernel journal"):
        open_journal(db_path)
    assert query(db_path, "SELECT name FROM sqlite_master") == [("transitions",)]


def build_live_journal(path: str, clock: FakeClock, n: int = 300) -> None:
    with Journal.open(path, clock=clock) as journal:
        for i in range(n):
            entity, created = TOY.create(f"entity-{i:05d}", target="5")
            journal.append(created, entity)
            journal.fire(TOY, entity, "start")
    assert not os.path.exists(path + "-wal")  # the clean close folded the WAL into the file


def test_damaged_live_entities_page_is_caught_on_open(
    open_journal: OpenJournal, db_path: str, clock: FakeClock
) -> None:
    build_live_journal(db_path, clock)
    root, page_size = page_info(db_path, "live_entities")
    overwrite(db_path, (root - 1) * page_size, b"\xde\xad\xbe\xef" * 4)  # the page header
    with pytest.raises(JournalCorrupt) as failed:
        open_journal(db_path)
    assert db_path in str(failed.value)
    with pytest.raises(JournalCorrupt):  # and again: the failed open released everything
        open_journal(db_path)


def test_damaged_live_entities_cells_are_caught_by_quick_check_on_open(
    open_journal: OpenJournal, db_path: str, clock: FakeClock
) -> None:
    build_live_journal(db_path, clock)
    root, page_size = page_info(db_path, "live_entities")
    leaf = leftmost_leaf(db_path, root, page_size)
    overwrite(db_path, (leaf - 1) * page_size + 8, b"\xff" * 8)  # cell pointers out of range
    with pytest.raises(JournalCorrupt, match=r"quick_check|malformed"):
        open_journal(db_path)


def damage_oldest_transitions_page(path: str, offset: int, data: bytes) -> None:
    root, page_size = page_info(path, "transitions")
    leaf = leftmost_leaf(path, root, page_size)
    assert leaf != root
    overwrite(path, (leaf - 1) * page_size + offset, data)


def test_damaged_transitions_page_is_found_by_verify(open_journal: OpenJournal, db_path: str, clock: FakeClock) -> None:
    build_live_journal(db_path, clock)
    damage_oldest_transitions_page(db_path, 1, b"\xff\xff")  # the page's first-freeblock pointer
    # open checks only what resuming reads (live entities, head, last row): it succeeds
    with open_journal(db_path) as journal:
        assert len(journal.live_entities(TOY)) == 300
    with AuditReader(db_path) as reader:
        assert [t["trigger"] for t in reader.timeline("entity-00000")] == ["create", "start"]  # rows still read
        result = reader.verify()
    assert not result.ok
    assert "integrity" in (result.reason or ""), result
    assert result.first_bad_seq is None
    assert result.checks == []


def test_unreadable_transitions_page_fails_verify_and_the_readers(
    open_journal: OpenJournal, db_path: str, clock: FakeClock
) -> None:
    build_live_journal(db_path, clock)
    damage_oldest_transitions_page(db_path, 0, b"\xff")  # an invalid b-tree page type
    with open_journal(db_path):
        pass
    with AuditReader(db_path) as reader:
        result = reader.verify()
        assert not result.ok
        assert db_path in (result.reason or "")
        assert "damaged" in (result.reason or "")
        assert result.first_bad_seq is None
        with pytest.raises(JournalCorrupt):
            list(reader.export())
        with pytest.raises(JournalCorrupt):
            reader.timeline("entity-00000")
        assert len(reader.tail(5)) == 5  # the newest rows live on other pages


def test_undecodable_text_in_a_row_is_reported_by_verify(db_path: str, clock: FakeClock) -> None:
    build_live_journal(db_path, clock, n=50)
    with raw(db_path) as conn:
        conn.execute("DROP TRIGGER transitions_append_only_update")
        conn.execute("UPDATE transitions SET data = CAST(x'7b22ff22' AS TEXT) WHERE seq = 3")
    with AuditReader(db_path) as reader:
        result = reader.verify()
        assert not result.ok
        assert db_path in (result.reason or "")
        with pytest.raises(JournalError, match="decode"):
            list(reader.export())
        with pytest.raises(JournalError, match="decode"):
            reader.tail(1000)


# -- read-only files and directories ------------------------------------------------------------


def try_open(runner: Unprivileged, path: Path) -> dict[str, object]:
    done = runner.run("-m", "tests.storage.child_writer", "try-open", str(path))
    assert done.returncode == 0, done
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_read_only_file(unprivileged_runner: Unprivileged, shared_dir: Path, clock: FakeClock) -> None:
    path = shared_dir / "journal.db"
    with Journal.open(str(path), clock=clock) as journal:
        entity, created = TOY.create("ro")
        journal.append(created, entity)
    (shared_dir / "journal.db.lock").chmod(0o666)
    path.chmod(0o444)
    before = sha(str(path))
    result = try_open(unprivileged_runner, path)
    kind, message = result["open"]  # type: ignore[misc]
    assert kind == "JournalOpenError", result
    assert "read-only" in message
    assert str(path) in message
    # auditing a read-only journal works
    assert result["audit"] == {"ok": True, "transitions": 3, "tail": 3}, result
    assert sha(str(path)) == before


def test_read_only_directory(unprivileged_runner: Unprivileged, shared_dir: Path, clock: FakeClock) -> None:
    path = shared_dir / "journal.db"
    with Journal.open(str(path), clock=clock):
        pass
    shared_dir.chmod(0o555)
    for target in (path, shared_dir / "new.db"):
        result = try_open(unprivileged_runner, target)
        kind, message = result["open"]  # type: ignore[misc]
        assert kind == "JournalOpenError", result
        assert "not writable" in message
        assert str(shared_dir) in message
    assert sorted(p.name for p in shared_dir.iterdir()) == ["journal.db", "journal.db.lock"]


# -- translate ----------------------------------------------------------------------------------


def sqlite_error(code: int, message: str = "boom") -> sqlite3.Error:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("code", "writing", "expected", "hint"),
    [
        (sqlite3.SQLITE_CORRUPT, False, JournalCorrupt, "damaged"),
        (sqlite3.SQLITE_NOTADB, True, JournalCorrupt, "damaged"),
        (sqlite3.SQLITE_FULL, True, JournalWriteError, "size limit"),
        (sqlite3.SQLITE_BUSY, True, JournalWriteError, "write lock"),
        (sqlite3.SQLITE_LOCKED, True, JournalWriteError, "write lock"),
        (sqlite3.SQLITE_BUSY, False, JournalLocked, "already open for writing"),
        (sqlite3.SQLITE_READONLY, True, JournalOpenError, "writable"),
        (sqlite3.SQLITE_PERM, False, JournalOpenError, "writable"),
        (sqlite3.SQLITE_CANTOPEN, False, JournalOpenError, "writable"),
        (sqlite3.SQLITE_AUTH, False, JournalOpenError, "writable"),
        (sqlite3.SQLITE_IOERR, True, JournalWriteError, "I/O error"),
        (sqlite3.SQLITE_IOERR_FSYNC, True, JournalWriteError, "I/O error"),  # extended codes too
        (sqlite3.SQLITE_BUSY_SNAPSHOT, True, JournalWriteError, "write lock"),
        (sqlite3.SQLITE_ERROR, True, JournalError, "boom"),
    ],
)
def test_translate_maps_sqlite_codes(code: int, writing: bool, expected: type[JournalError], hint: str) -> None:
    error = translate(sqlite_error(code), "/x/journal.db", writing=writing)
    busy = writing and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    assert type(error) is (JournalBusy if busy else expected)
    assert isinstance(error, expected)
    assert "/x/journal.db" in str(error)
    assert hint in str(error)


def test_translate_without_an_error_code() -> None:
    error = translate(sqlite3.ProgrammingError("closed"), "/x/j.db", writing=True)
    assert type(error) is JournalError
    assert str(error) == "/x/j.db: closed"
