"""Crashes with a real SIGKILL: group commit is all-or-nothing, and the next writer records the crash."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import Journal
from storage.audit import AuditReader
from tests.conftest import FakeClock
from tests.storage.child_writer import BATCH
from tests.storage.conftest import Child, count_rows, query

Spawn = Callable[[str, str], Child]
KILLS = 8


def assert_crash_recorded(db_path: str, crashed_run: int, clock: FakeClock) -> int:
    """Open the journal as the next writer: it must record ``crashed_run`` as crashed. Returns its run id."""
    with Journal.open(db_path, clock=clock) as journal:
        assert journal.crashed_runs == [crashed_run]
        run_id = journal.run_id
    assert query(db_path, "SELECT state, crash_detected_by_run FROM runs WHERE run = ?", (crashed_run,)) == [
        ("crashed", run_id)
    ]
    return run_id


def test_sigkilled_writer_is_recorded_as_crashed_by_the_next_open(spawn: Spawn, db_path: str, clock: FakeClock) -> None:
    child = spawn("open-wait", db_path)
    run_id = int(child.expect("opened")[1])
    assert run_id == 1
    assert query(db_path, "SELECT run, state, pid FROM runs") == [(1, "running", child.pid)]
    child.kill()
    assert query(db_path, "SELECT state FROM runs") == [("running",)]  # nobody knows yet
    with Journal.open(db_path, clock=clock) as journal:
        assert journal.run_id == 2
        assert journal.crashed_runs == [1]
    rows = query(db_path, "SELECT run, state, crash_detected_by_run FROM runs ORDER BY run")
    assert rows == [(1, "crashed", 2), (2, "stopped", None)]
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


def test_a_cleanly_closed_child_run_is_not_a_crash(spawn: Spawn, db_path: str, clock: FakeClock) -> None:
    child = spawn("open-wait", db_path)
    child.expect("opened")
    child.send("close\n")
    child.expect("closed")
    assert child.wait() == 0
    with Journal.open(db_path, clock=clock) as journal:
        assert journal.crashed_runs == []
    assert query(db_path, "SELECT run, state FROM runs ORDER BY run") == [(1, "stopped"), (2, "stopped")]


def test_group_commit_is_atomic_under_sigkill(spawn: Spawn, tmp_path: Path, clock: FakeClock) -> None:
    """Kill a writer committing batches of 100 at random moments: only whole batches are ever on disk.

    Each kill gets its own journal, so verifying it stays cheap however fast the child writes.
    """
    rng = random.Random(20240607)
    committed_somewhere = 0
    for iteration in range(KILLS):
        db_path = str(tmp_path / f"kill-{iteration}.db")
        child = spawn("batches", db_path)
        run_id = int(child.expect("opened")[1])
        # let it commit for a random while; it must still be running when we pull the plug
        with pytest.raises(subprocess.TimeoutExpired):
            child.proc.wait(timeout=rng.uniform(0.01, 0.2))
        child.kill()
        last = child.last("committed")
        reported = int(last[1]) if last else 0

        on_disk = count_rows(db_path, "toy")
        assert on_disk % BATCH == 0, f"iteration {iteration}: {on_disk} toy rows is not whole batches"
        # everything the child was told is committed is on disk; at most one more batch committed unreported
        assert reported <= on_disk <= reported + BATCH, (iteration, reported, on_disk)
        assert count_rows(db_path) == on_disk + 1  # plus the child's run create row
        with AuditReader(db_path) as reader:
            result = reader.verify()
            assert result.ok, (iteration, result)
            assert result.transitions == on_disk + 1
            # every toy entity is in the state its batch left it: created and started
            toys = reader.entities(machine="toy")
            assert len(toys) == on_disk // 2
            assert {e["state"] for e in toys} <= {"active"}
        assert_crash_recorded(db_path, run_id, clock)
        committed_somewhere += on_disk
    assert committed_somewhere > 0, "no batch was ever committed: the kill delays are too short to test anything"


def test_uncommitted_batch_dies_with_the_process(spawn: Spawn, db_path: str, clock: FakeClock) -> None:
    child = spawn("ready", db_path)
    run_id = int(child.expect("opened")[1])
    _, committed_seq, pending = child.expect("ready")
    assert int(pending) == BATCH
    child.kill()
    assert count_rows(db_path, "toy") == BATCH
    assert query(db_path, "SELECT max(seq) FROM transitions") == [(int(committed_seq),)]
    entities = {row[0] for row in query(db_path, "SELECT entity FROM transitions WHERE machine = 'toy'")}
    assert entities == {f"b1-{i}" for i in range(BATCH // 2)}
    with AuditReader(db_path) as reader:
        assert reader.verify().ok
    next_run = assert_crash_recorded(db_path, run_id, clock)
    assert next_run == run_id + 1
