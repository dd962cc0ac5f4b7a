"""One writer per database: the flock on PATH.lock, seen from other processes, the CLI and SIGKILL."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest

from storage import Journal, JournalLocked, JournalOpenError
from storage.audit import AuditReader
from storage.lock import WriterLock, lock_path
from tests.conftest import FakeClock, run_cli
from tests.storage.conftest import Child, count_rows, query

Spawn = Callable[[str, str], Child]


def test_lock_path_is_beside_the_database() -> None:
    assert lock_path("/data/journal.db") == "/data/journal.db.lock"


def test_writer_lock_records_the_holder_and_releases(db_path: str) -> None:
    lock = WriterLock(db_path)
    try:
        assert lock.held
        assert lock.path == db_path + ".lock"
        with open(lock.path) as f:
            assert f.read() == f"pid {os.getpid()} on {socket.gethostname()}\n"
        # flock is per open file: a second lock in the same process is refused too
        with pytest.raises(JournalLocked) as refused:
            WriterLock(db_path)
        assert refused.value.path == db_path
        assert refused.value.holder == f"pid {os.getpid()} on {socket.gethostname()}"
    finally:
        lock.release()
    assert not lock.held
    lock.release()  # idempotent
    assert os.path.exists(db_path + ".lock")  # the file stays; only the lock goes
    again = WriterLock(db_path)
    again.release()


def test_writer_lock_in_a_missing_directory_is_an_open_error(tmp_path) -> None:
    missing = tmp_path / "nope" / "journal.db"
    with pytest.raises(JournalOpenError, match=r"cannot create lock file .*nope/journal\.db\.lock"):
        WriterLock(str(missing))


def test_second_journal_in_the_same_process_is_refused(db_path: str, clock: FakeClock) -> None:
    with Journal.open(db_path, clock=clock) as first:
        with pytest.raises(JournalLocked, match=f"already open for writing by pid {os.getpid()}"):
            Journal.open(db_path, clock=clock)
        assert first.commit() == 0  # the refused open did not disturb the holder
    assert query(db_path, "SELECT run, state FROM runs") == [(1, "stopped")]


def test_one_writer_per_database(spawn: Spawn, db_path: str, clock: FakeClock) -> None:
    child = spawn("hold", db_path)
    child_run = int(child.expect("opened")[1])
    child.expect("committing")

    # (a) a second writer in another process is refused, naming the holder
    with pytest.raises(JournalLocked) as refused:
        Journal.open(db_path, clock=clock)
    assert f"pid {child.pid} on " in str(refused.value)
    assert "already open for writing" in str(refused.value)
    assert refused.value.path == db_path

    # (b) so is `tradekernel migrate`
    migrate = run_cli("migrate", "--db", db_path)
    assert migrate.returncode == 2, migrate
    assert "already open for writing" in migrate.stderr
    assert f"pid {child.pid}" in migrate.stderr

    # readers are welcome meanwhile, and see consistent snapshots while the child commits
    for _ in range(3):
        with AuditReader(db_path) as reader:
            result = reader.verify()
            assert result.ok, result

    child.send("stop\n")
    committed = int(child.expect("stopped")[1])
    assert child.wait() == 0
    assert committed > 0
    assert count_rows(db_path, "toy") == committed
    assert query(db_path, "SELECT count(DISTINCT entity) FROM transitions WHERE machine = 'toy'") == [(committed,)]
    with AuditReader(db_path) as reader:
        assert reader.verify().ok
    assert query(db_path, "SELECT state FROM runs WHERE run = ?", (child_run,)) == [("stopped",)]

    # the lock went with the clean close
    with Journal.open(db_path, clock=clock) as journal:
        assert journal.crashed_runs == []
        assert journal.run_id == child_run + 1


def test_lock_is_released_when_the_holder_is_sigkilled(spawn: Spawn, db_path: str, clock: FakeClock) -> None:
    child = spawn("hold", db_path)
    child_run = int(child.expect("opened")[1])
    with pytest.raises(JournalLocked):
        Journal.open(db_path, clock=clock)
    child.kill()
    with Journal.open(db_path, clock=clock) as journal:
        assert journal.crashed_runs == [child_run]
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


def test_cli_migrate_succeeds_once_the_writer_is_gone(db_path: str, clock: FakeClock) -> None:
    created = run_cli("migrate", "--db", db_path)
    assert created.returncode == 0, created
    assert "created journal" in created.stdout
    with Journal.open(db_path, clock=clock):
        refused = run_cli("migrate", "--db", db_path)
        assert refused.returncode == 2
        assert f"pid {os.getpid()}" in refused.stderr
    again = run_cli("migrate", "--db", db_path)
    assert again.returncode == 0, again
    assert "is up to date" in again.stdout


def test_writer_active_tells_whether_a_kernel_holds_the_journal(db_path: str) -> None:
    from storage.lock import writer_active

    assert not writer_active(db_path)  # no lock file yet
    journal = Journal.open(db_path)
    try:
        assert writer_active(db_path)
    finally:
        journal.close()
    assert not writer_active(db_path)  # the lock file stays, but nobody holds it
    reopened = Journal.open(db_path)  # and probing never got in the way of a writer
    reopened.close()
