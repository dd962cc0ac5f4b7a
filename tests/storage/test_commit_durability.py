"""Per-commit durability (``Journal.commit(durability=...)``): a ``normal`` commit of what the venue
told us, a ``full`` commit before anything leaves the process (docs/architecture.md, Durability
before effect).

SQLite's ``synchronous`` is per connection and cannot change inside a transaction, so the journal
sets it before ``BEGIN`` and restores its own after; these tests read it inside each transaction
(the ``in_commit`` hook) and after it. What ``FULL`` means on disk (in WAL mode the log is fsynced
at each commit, and an fsync covers every frame of the file, those of earlier ``NORMAL`` commits
too) is SQLite's; what the journal adds is the fsync of a ``full`` commit with nothing to write.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from storage import Journal
from storage.errors import JournalError
from tests.storage.conftest import query
from tests.toy import TOY

OpenJournal = Callable[..., Journal]


def synchronous(journal: Journal) -> int:
    assert journal._conn is not None
    value: int = journal._conn.execute("PRAGMA synchronous").fetchone()[0]
    return value


def unsynced(journal: Journal) -> bool:
    return journal.unsynced  # a call: each read is fresh (no narrowing across commits)


def watch_levels(journal: Journal) -> list[int]:
    """The ``synchronous`` level in effect inside each commit's transaction, in order."""
    seen: list[int] = []
    journal.in_commit = lambda: seen.append(synchronous(journal))
    return seen


def add(journal: Journal, entity_id: str) -> None:
    entity, created = TOY.create(entity_id)
    journal.append(created, entity)


def test_a_normal_commit_then_a_full_one_leaves_both_committed_and_restores_the_pragma(
    open_journal: OpenJournal, db_path: str
) -> None:
    journal = open_journal(db_path)  # full by default
    levels = watch_levels(journal)
    add(journal, "ack")
    assert journal.commit(durability="normal") == 1
    assert synchronous(journal) == 2  # FULL again right after the normal commit
    assert unsynced(journal)
    add(journal, "send")
    assert journal.commit(durability="full") == 1
    assert synchronous(journal) == 2
    assert not unsynced(journal)  # the full commit's fsync of the log covered the normal commit's rows
    assert levels == [1, 2]  # NORMAL inside the first transaction, FULL inside the second
    journal.close()
    assert query(db_path, "SELECT entity FROM transitions WHERE machine = 'toy' ORDER BY seq") == [("ack",), ("send",)]
    assert query(db_path, "SELECT entity FROM live_entities WHERE machine = 'toy' ORDER BY entity") == [
        ("ack",),
        ("send",),
    ]


def test_none_is_the_journals_own_durability(open_journal: OpenJournal, db_path: str) -> None:
    journal = open_journal(db_path, durability="normal")
    levels = watch_levels(journal)
    add(journal, "a")
    journal.commit()
    add(journal, "b")
    journal.commit(durability="full")  # a full commit on a normal journal: FULL for that one only
    add(journal, "c")
    journal.commit(durability=None)
    assert levels == [1, 2, 1]
    assert synchronous(journal) == 1


def test_a_failed_normal_commit_rolls_back_and_restores_the_pragma(open_journal: OpenJournal, db_path: str) -> None:
    journal = open_journal(db_path)

    def fail() -> None:
        raise OSError("disk gone")

    journal.in_commit = fail
    add(journal, "x")
    with pytest.raises(JournalError, match="disk gone"):
        journal.commit(durability="normal")
    assert synchronous(journal) == 2
    assert journal._conn is not None
    assert not journal._conn.in_transaction
    assert journal.pending == 1  # kept for a retry
    journal.in_commit = None
    assert journal.commit(durability="normal") == 1
    assert synchronous(journal) == 2


def test_a_full_commit_with_nothing_buffered_fsyncs_what_normal_commits_left(
    open_journal: OpenJournal, db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = open_journal(db_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert journal.commit() == 0  # nothing normal before it: nothing to sync
    add(journal, "fill")
    journal.commit(durability="normal")
    assert journal.commit(durability="normal") == 0  # a normal commit never syncs
    assert synced == []
    assert journal.commit() == 0
    assert synced == [os.path.realpath(db_path) + "-wal"]
    assert not unsynced(journal)
    assert journal.commit() == 0
    assert len(synced) == 1  # once


def test_an_unknown_durability_is_refused_and_nothing_is_written(journal: Journal) -> None:
    add(journal, "x")
    with pytest.raises(JournalError, match="unknown durability 'off'"):
        journal.commit(durability="off")  # type: ignore[arg-type]
    assert journal.pending == 1
    assert synchronous(journal) == 2
