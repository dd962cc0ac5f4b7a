"""Journal basics: opening, durability, append and group commit, fire, current-state tables, views, runs."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from decimal import Decimal
from importlib import metadata
from types import MappingProxyType

import pytest

from machines import RUN, InvalidData, InvalidTransition, Transition
from storage import Journal, JournalClosed, JournalDataError, JournalOpenError, JournalWriteError, outage
from storage.audit import AuditReader
from storage.errors import JournalEncodeError
from tests.conftest import FakeClock
from tests.storage.conftest import count_rows, query, raw
from tests.toy import TOY

OpenJournal = Callable[..., Journal]


def toy_rows(path: str) -> list[tuple[object, ...]]:
    return query(path, "SELECT seq, entity, trigger, source, dest FROM transitions WHERE machine = 'toy' ORDER BY seq")


# -- opening ------------------------------------------------------------------------------------


def test_open_creates_the_file_in_wal_mode(journal: Journal, db_path: str) -> None:
    assert os.path.isfile(db_path)
    assert journal.path == db_path
    assert not journal.closed
    assert journal._conn is not None
    assert journal._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with raw(db_path, readonly=True) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
def test_durability_sets_synchronous(
    open_journal: OpenJournal, db_path: str, durability: str, synchronous: int
) -> None:
    journal = open_journal(db_path, durability=durability)
    assert journal.durability == durability
    assert journal._conn is not None
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous


def test_default_durability_is_full(journal: Journal) -> None:
    assert journal.durability == "full"
    assert journal._conn is not None
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_unknown_durability_is_refused_and_releases_the_lock(open_journal: OpenJournal, db_path: str) -> None:
    with pytest.raises(JournalOpenError, match="unknown durability 'extra'"):
        open_journal(db_path, durability="extra")
    # the writer lock was released: a correct open now succeeds
    journal = open_journal(db_path)
    assert journal.run_id == 1


def test_in_memory_database_is_refused_because_it_cannot_use_wal(
    open_journal: OpenJournal, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the lock file ":memory:.lock" lands here
    with pytest.raises(JournalOpenError, match="cannot switch the journal to WAL mode"):
        open_journal(":memory:")


# -- append and commit --------------------------------------------------------------------------


def test_append_returns_consecutive_seqs_and_tracks_pending(journal: Journal) -> None:
    first = journal.last_seq
    assert journal.committed_seq == first  # the run row is committed by open
    seqs = []
    for i in range(5):
        entity, created = TOY.create(f"e{i}")
        seqs.append(journal.append(created, entity))
    assert seqs == list(range(first + 1, first + 6))
    assert journal.pending == 5
    assert journal.last_seq == first + 5
    assert journal.committed_seq == first


def test_nothing_is_visible_before_commit_and_everything_after(journal: Journal, db_path: str) -> None:
    for i in range(10):
        entity, created = TOY.create(f"e{i}")
        journal.append(created, entity)
        journal.fire(TOY, entity, "start")
    with raw(db_path, readonly=True) as reader:
        assert reader.execute("SELECT count(*) FROM transitions WHERE machine = 'toy'").fetchone()[0] == 0
        assert reader.execute("SELECT count(*) FROM live_entities WHERE machine = 'toy'").fetchone()[0] == 0
        head_before = reader.execute("SELECT seq FROM journal_head").fetchone()[0]
        assert journal.commit() == 20
        assert reader.execute("SELECT count(*) FROM transitions WHERE machine = 'toy'").fetchone()[0] == 20
        assert reader.execute("SELECT count(*) FROM live_entities WHERE machine = 'toy'").fetchone()[0] == 10
        assert reader.execute("SELECT seq FROM journal_head").fetchone()[0] == head_before + 20
    assert journal.pending == 0
    assert journal.committed_seq == journal.last_seq


def test_commit_with_nothing_pending_returns_zero(journal: Journal, db_path: str) -> None:
    before = count_rows(db_path)
    assert journal.commit() == 0
    assert journal.commit() == 0
    assert count_rows(db_path) == before


def test_rows_store_exactly_what_was_appended(journal: Journal, db_path: str, clock: FakeClock) -> None:
    entity, created = TOY.create("o-1", target="2.5")
    seq = journal.append(created, entity)
    created_ts = clock.now  # append reads the clock exactly once, for ts
    journal.fire(TOY, entity, "start")
    start_ts = clock.now
    journal.commit()
    rows = query(db_path, "SELECT seq, ts, run, machine, entity, trigger, source, dest, data FROM transitions")
    assert rows[-2:] == [
        (seq, created_ts, 1, "toy", "o-1", "create", None, "idle", '{"target":"2.5"}'),
        (seq + 1, start_ts, 1, "toy", "o-1", "start", "idle", "active", "{}"),
    ]
    # every ts, the run's rows included, comes from the injected fake clock, not the wall clock
    assert all(1_700_000_000_000_000_000 < ts <= clock.now for _, ts, *_ in rows)
    assert all((ts - 1_700_000_000_000_000_000) % clock.step_ns == 0 for _, ts, *_ in rows)


def test_fire_fires_the_machine_and_appends(journal: Journal, db_path: str) -> None:
    entity, created = TOY.create("f-1", target="3")
    journal.append(created, entity)
    transition = journal.fire(TOY, entity, "start")
    assert transition == Transition("toy", "f-1", "start", "idle", "active", MappingProxyType({}))
    added = journal.fire(TOY, entity, "add", qty=Decimal("1.25"))
    assert added.source == added.dest == "active"
    assert entity.data["total"] == Decimal("1.25")
    assert journal.pending == 3
    journal.commit()
    assert [r[2:] for r in toy_rows(db_path)] == [
        ("create", None, "idle"),
        ("start", "idle", "active"),
        ("add", "active", "active"),
    ]
    assert query(db_path, "SELECT data FROM transitions WHERE trigger = 'add'") == [('{"qty":"1.25"}',)]


@pytest.mark.parametrize(
    ("trigger", "data", "error"),
    [
        ("finish", {}, InvalidTransition),  # from idle: no rule
        ("no_such_trigger", {}, InvalidTransition),
    ],
)
def test_a_refused_trigger_appends_nothing(
    journal: Journal, db_path: str, trigger: str, data: dict[str, object], error: type[Exception]
) -> None:
    entity, created = TOY.create("r-1")
    journal.append(created, entity)
    journal.commit()
    seq_before, hash_before = journal.last_seq, journal._hash
    with pytest.raises(error):
        journal.fire(TOY, entity, trigger, **data)
    assert journal.pending == 0
    assert journal.last_seq == seq_before
    assert journal._hash == hash_before
    assert entity.state == "idle"
    assert journal.commit() == 0
    assert len(toy_rows(db_path)) == 1


@pytest.mark.parametrize("qty", [Decimal(0), -1, 0.5, "abc"])
def test_refused_data_appends_nothing_and_leaves_the_entity(journal: Journal, qty: object) -> None:
    entity, created = TOY.create("r-2")
    journal.append(created, entity)
    journal.fire(TOY, entity, "start")
    pending, seq = journal.pending, journal.last_seq
    with pytest.raises(InvalidData):
        journal.fire(TOY, entity, "add", qty=qty)
    assert (journal.pending, journal.last_seq) == (pending, seq)
    assert entity.state == "active"
    assert entity.data["total"] == Decimal(0)
    # the guard of finish refuses too (total below target)
    with pytest.raises(InvalidTransition, match="no guard allowed it"):
        journal.fire(TOY, entity, "finish")
    assert journal.pending == pending


def test_mismatched_entity_and_transition_is_refused(journal: Journal) -> None:
    _, created = TOY.create("a")
    other, _ = TOY.create("b")
    with pytest.raises(JournalDataError, match="toy:a appended with entity toy:b"):
        journal.append(created, other)
    run_entity, _ = RUN.create("99", started_ns=1)
    with pytest.raises(JournalDataError, match="appended with entity run:99"):
        journal.append(created, run_entity)
    assert journal.pending == 0


def test_unencodable_transition_data_is_refused_and_buffers_nothing(journal: Journal, db_path: str) -> None:
    entity, created = TOY.create("u-1")
    journal.append(created, entity)
    seq, chain_hash = journal.last_seq, journal._hash
    bad = Transition("toy", "u-1", "add", "idle", "idle", MappingProxyType({"qty": object()}))
    unencodable = r"cannot journal data of .*: cannot journal a value of type object"
    with pytest.raises(JournalDataError, match=unencodable) as info:
        journal.append(bad, entity)
    assert isinstance(info.value.__cause__, JournalEncodeError)
    assert isinstance(info.value.__cause__, TypeError)
    assert journal.pending == 1
    assert (journal.last_seq, journal._hash) == (seq, chain_hash)
    # the next append continues the chain without a hole
    assert journal.fire(TOY, entity, "start").dest == "active"
    assert journal.last_seq == seq + 1
    assert journal.commit() == 2
    journal.close()
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


def test_unencodable_entity_data_makes_commit_fail_and_keeps_the_batch(journal: Journal, db_path: str) -> None:
    entity, created = TOY.create("u-2")
    journal.append(created, entity)
    before = count_rows(db_path)
    entity.data["weird"] = object()
    with pytest.raises(JournalDataError, match="cannot journal an entity's data"):
        journal.commit()
    assert isinstance(journal.failure, JournalDataError)
    assert journal.pending == 1
    assert count_rows(db_path) == before
    del entity.data["weird"]
    assert journal.commit() == 1
    assert journal.failure is None
    assert count_rows(db_path) == before + 1


# -- current state ------------------------------------------------------------------------------


def test_live_entities_are_rebuilt_with_decoded_data(journal: Journal) -> None:
    a, created = TOY.create("a", target="7.5")
    journal.append(created, a)
    journal.fire(TOY, a, "start")
    journal.fire(TOY, a, "add", qty="1.25")
    b, created = TOY.create("b")
    journal.append(created, b)
    assert journal.live_entities(TOY) == []  # only committed state is read back
    journal.commit()
    rebuilt = {e.entity_id: e for e in journal.live_entities(TOY)}
    assert set(rebuilt) == {"a", "b"}
    assert rebuilt["a"].state == "active"
    assert rebuilt["a"].machine is TOY
    assert rebuilt["a"].data == {"target": Decimal("7.5"), "total": Decimal("1.25"), "starts": 1}
    assert isinstance(rebuilt["a"].data["total"], Decimal)
    assert rebuilt["b"].state == "idle"
    # by name too, and the rebuilt entity can go on firing
    assert {e.entity_id for e in journal.live_entities("toy")} == {"a", "b"}
    journal.fire(TOY, rebuilt["a"], "add", qty="6.25")
    journal.fire(TOY, rebuilt["a"], "finish")
    journal.commit()
    assert [e.entity_id for e in journal.live_entities(TOY)] == ["b"]


def test_terminal_entities_move_to_ended_entities(journal: Journal, db_path: str) -> None:
    a, created = TOY.create("a")
    journal.append(created, a)
    journal.commit()
    assert query(db_path, "SELECT entity, state FROM live_entities WHERE machine = 'toy'") == [("a", "idle")]
    drop_seq = journal.last_seq + 1
    journal.fire(TOY, a, "drop")
    journal.commit()
    assert journal.live_entities(TOY) == []
    assert query(db_path, "SELECT count(*) FROM live_entities WHERE machine = 'toy'") == [(0,)]
    assert query(db_path, "SELECT entity, state, seq, data FROM ended_entities WHERE machine = 'toy'") == [
        ("a", "dropped", drop_seq, '{"starts":0,"target":"10","total":"0"}')
    ]


def test_an_entity_created_and_ended_in_one_batch_is_only_ended(journal: Journal, db_path: str) -> None:
    a, created = TOY.create("a")
    journal.append(created, a)
    journal.fire(TOY, a, "drop")
    journal.commit()
    assert query(db_path, "SELECT count(*) FROM live_entities WHERE machine = 'toy'") == [(0,)]
    assert query(db_path, "SELECT entity, state FROM ended_entities WHERE machine = 'toy'") == [("a", "dropped")]


def test_entities_view_unions_live_and_ended(journal: Journal, db_path: str) -> None:
    for name in ("keep", "gone"):
        entity, created = TOY.create(name)
        journal.append(created, entity)
        if name == "gone":
            journal.fire(TOY, entity, "drop")
    journal.commit()
    rows = query(db_path, "SELECT machine, entity, state, live FROM entities ORDER BY machine, entity")
    assert rows == [("run", "1", "running", 1), ("toy", "gone", "dropped", 0), ("toy", "keep", "idle", 1)]


def test_transition_log_view_has_readable_times(journal: Journal, db_path: str, clock: FakeClock) -> None:
    clock.now = 1_700_000_000_123_455_999  # the next ts is 1_700_000_000_123_456_999
    entity, created = TOY.create("t")
    seq = journal.append(created, entity)
    journal.commit()
    rows = query(
        db_path,
        "SELECT time, run, machine, entity, trigger, source, dest, data FROM transition_log WHERE seq=?",
        (seq,),
    )
    assert rows == [("2023-11-14T22:13:20.123Z", 1, "toy", "t", "create", None, "idle", "{}")]


# -- runs ---------------------------------------------------------------------------------------


def test_first_open_starts_run_one_and_close_stops_it(
    open_journal: OpenJournal, db_path: str, clock: FakeClock
) -> None:
    journal = open_journal(db_path)
    assert journal.run_id == 1
    assert journal.crashed_runs == []
    assert query(db_path, "SELECT run, state, pid, host, version, ended FROM runs") == [
        (1, "running", os.getpid(), socket.gethostname(), metadata.version("tradekernel"), None)
    ]
    journal.close()
    assert journal.closed
    runs = query(db_path, "SELECT run, state, started, ended, crash_detected_by_run FROM runs")
    assert len(runs) == 1
    run, state, started, ended, detected = runs[0]
    assert (run, state, detected) == (1, "stopped", None)
    assert started.startswith("2023-11-14T22:13:20.")
    assert ended >= started
    assert query(db_path, "SELECT trigger, source, dest, run FROM transitions WHERE machine = 'run'") == [
        ("create", None, "running", 1),
        ("stop", "running", "stopped", 1),
    ]
    # the next writer is run 2 and finds no crash
    second = open_journal(db_path)
    assert (second.run_id, second.crashed_runs) == (2, [])


def test_a_run_that_never_closed_is_recorded_as_crashed(open_journal: OpenJournal, db_path: str) -> None:
    """In-process variant (the SIGKILL variant is in test_crash.py): release without close()."""
    first = open_journal(db_path)
    first._release()  # the process "dies": no stop row, lock and connection gone
    second = open_journal(db_path)
    assert second.run_id == 2
    assert second.crashed_runs == [1]
    assert query(db_path, "SELECT run, state, crash_detected_by_run FROM runs ORDER BY run") == [
        (1, "crashed", 2),
        (2, "running", None),
    ]
    (data,) = query(db_path, "SELECT data FROM transitions WHERE machine = 'run' AND trigger = 'crash_detected'")[0]
    assert '"detected_by_run":2' in data


def test_run_version_without_an_installed_package(
    open_journal: OpenJournal, db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    open_journal(db_path)
    assert query(db_path, "SELECT version FROM runs") == [("0+unknown",)]


def test_start_run_false_records_no_run(open_journal: OpenJournal, db_path: str) -> None:
    journal = open_journal(db_path, start_run=False)
    assert journal.run_id == 0
    assert journal.crashed_runs == []
    journal.close()
    assert count_rows(db_path) == 0
    assert query(db_path, "SELECT count(*) FROM runs") == [(0,)]
    assert open_journal(db_path).run_id == 1


def test_start_run_false_does_not_judge_a_running_run(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path)._release()  # run 1 never stops
    maintenance = open_journal(db_path, start_run=False)
    assert maintenance.crashed_runs == []
    maintenance.close()
    assert query(db_path, "SELECT state FROM runs") == [("running",)]
    assert open_journal(db_path).crashed_runs == [1]


# -- closing ------------------------------------------------------------------------------------


def test_close_commits_pending_rows(open_journal: OpenJournal, db_path: str) -> None:
    journal = open_journal(db_path)
    entity, created = TOY.create("p")
    journal.append(created, entity)
    journal.close()
    assert [r[1:3] for r in toy_rows(db_path)] == [("p", "create")]
    assert not os.path.exists(db_path + "-wal") or os.path.getsize(db_path + "-wal") == 0


def test_operations_after_close_raise_journal_closed(journal: Journal) -> None:
    entity, created = TOY.create("c")
    journal.close()
    assert journal.closed
    with pytest.raises(JournalClosed, match="is closed"):
        journal.append(created, entity)
    with pytest.raises(JournalClosed):
        journal.commit()
    with pytest.raises(JournalClosed):
        journal.live_entities(TOY)
    journal.close()  # idempotent
    journal.close()
    assert journal.closed


def test_fire_after_close_raises_and_leaves_the_entity_unchanged(journal: Journal) -> None:
    """No transition without a journal row: a closed journal must not let fire() change the entity."""
    entity, created = TOY.create("c")
    journal.append(created, entity)
    journal.close()
    with pytest.raises(JournalClosed):
        journal.fire(TOY, entity, "start")
    assert entity.state == "idle"
    assert entity.data["starts"] == 0


def test_context_manager_closes(db_path: str, clock: FakeClock) -> None:
    with Journal.open(db_path, clock=clock) as journal:
        entity, created = TOY.create("cm")
        journal.append(created, entity)
    assert journal.closed
    assert query(db_path, "SELECT state FROM runs") == [("stopped",)]
    assert count_rows(db_path, "toy") == 1
    with Journal.open(db_path, clock=clock) as again:  # the lock was released
        assert again.run_id == 2


def test_context_manager_closes_on_error(db_path: str, clock: FakeClock) -> None:
    opened: list[Journal] = []

    def fail_inside() -> None:
        with Journal.open(db_path, clock=clock) as journal:
            opened.append(journal)
            entity, created = TOY.create("cm")
            journal.append(created, entity)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert opened[0].closed
    Journal.open(db_path, clock=clock, start_run=False).close()  # the lock was released
    assert count_rows(db_path, "toy") == 1
    assert query(db_path, "SELECT state FROM runs") == [("stopped",)]


def test_a_second_create_of_an_entity_is_refused_buffered_or_committed(db_path: str, clock: FakeClock) -> None:
    with Journal.open(db_path, clock=clock) as journal:
        entity, created = TOY.create("once")
        journal.append(created, entity)
        again, created_again = TOY.create("once")
        with pytest.raises(JournalDataError, match="already exists"):
            journal.append(created_again, again)  # still only buffered
        journal.commit()
        assert journal.has_entity("toy", "once")
        assert not journal.has_entity("toy", "other")
        journal.fire(TOY, entity, "drop")  # ended entities count too
        journal.commit()
        before = journal.last_seq
        with pytest.raises(JournalDataError, match="already exists"):
            journal.append(created_again, again)
        assert journal.last_seq == before
        assert journal.pending == 0


@pytest.mark.parametrize("bad_ts", [-1, 2**63, 1.5, True])
def test_a_clock_value_sqlite_cannot_store_is_refused_at_append(db_path: str, bad_ts: object) -> None:
    with Journal.open(db_path) as journal:
        journal._clock = lambda: bad_ts  # type: ignore[assignment,return-value]
        entity, created = TOY.create("t")
        with pytest.raises(JournalDataError, match="clock gave"):
            journal.append(created, entity)
        assert journal.pending == 0
        journal._clock = time.time_ns


def test_probe_finds_an_unwritable_journal_without_writing(db_path: str) -> None:
    journal = Journal.open(db_path)
    try:
        journal.probe()  # writable: nothing happens
        assert journal.failure is None
        seq = journal.committed_seq
        conn = journal._conn
        assert conn is not None
        conn.execute("PRAGMA query_only = 1")
        with pytest.raises(JournalWriteError, match="readonly"):
            journal.probe()
        assert isinstance(journal.failure, JournalWriteError)
        assert not conn.in_transaction
        conn.execute("PRAGMA query_only = 0")
        journal.probe()
        assert journal.failure is None
        assert journal.committed_seq == seq
    finally:
        journal.close()


def test_a_probe_does_not_clear_the_failure_of_rows_still_waiting(db_path: str) -> None:
    journal = Journal.open(db_path)
    try:
        conn = journal._conn
        assert conn is not None
        conn.execute("PRAGMA query_only = 1")
        journal.record_anomaly("test", "kind", "reason")
        with pytest.raises(JournalWriteError):
            journal.commit()
        conn.execute("PRAGMA query_only = 0")
        journal.probe()
        assert journal.failure is not None  # the buffered anomaly is not on disk yet
        journal.commit()
        assert journal.failure is None
    finally:
        journal.close()


def test_entity_loads_live_and_ended_entities(db_path: str) -> None:
    journal = Journal.open(db_path)
    try:
        assert journal.entity(RUN, str(journal.run_id)) is not None  # the live run
        assert journal.entity("run", "999") is None
        journal.close()
        journal = Journal.open(db_path)
        ended = journal.entity(RUN, "1")  # the first run, stopped: in ended_entities
        assert ended is not None
        assert (ended.entity_id, ended.state, ended.live) == ("1", "stopped", False)
    finally:
        journal.close()


# -- commit hooks and the bounded busy wait ------------------------------------------------------


def test_a_bounded_busy_wait_fails_a_locked_out_commit_quickly_and_keeps_the_batch(
    journal: Journal, db_path: str
) -> None:
    journal.bound_busy_wait(0.05)
    entity, created = TOY.create("t-busy")
    journal.append(created, entity)
    with raw(db_path) as other:
        other.execute("BEGIN EXCLUSIVE")  # another process's writer, for as long as it likes
        started = time.monotonic()
        with pytest.raises(JournalWriteError, match="another connection holds a write lock"):
            journal.commit()
        # the default wait is BUSY_TIMEOUT_S (2 s): bounded, the event loop is back well before
        assert time.monotonic() - started < 1.0
        with pytest.raises(JournalWriteError):
            journal.probe()
        assert journal.pending == 1
        other.execute("ROLLBACK")
    assert journal.commit() == 1
    assert journal.failure is None


def test_in_commit_runs_inside_the_transaction_and_after_commit_after_each_successful_commit(
    journal: Journal, db_path: str
) -> None:
    seen: list[tuple[str, int]] = []
    journal.in_commit = lambda: seen.append(("in", journal.committed_seq))
    journal.after_commit.append(lambda: seen.append(("after", journal.committed_seq)))
    before = journal.committed_seq
    entity, created = TOY.create("t-hooks")
    journal.append(created, entity)
    journal.commit()
    assert seen == [("in", before), ("after", before + 1)]
    journal.commit()  # nothing buffered: no commit, no hooks
    assert len(seen) == 2

    def failing() -> None:
        raise OSError("the disk went away")

    journal.in_commit = failing  # a write that fails inside the transaction: rolled back, kept
    journal.fire(TOY, entity, "start")
    with pytest.raises(JournalWriteError, match="the disk went away"):
        journal.commit()
    assert (len(seen), journal.pending) == (2, 1)

    def interrupted() -> None:
        raise KeyboardInterrupt

    journal.in_commit = interrupted  # Ctrl-C mid-commit: rolled back, batch kept, the interrupt goes on
    with pytest.raises(KeyboardInterrupt):
        journal.commit()
    assert journal.pending == 1
    assert journal._conn is not None
    assert not journal._conn.in_transaction
    journal.in_commit = None
    journal.after_commit.append(failing)  # a failing hook never turns a durable commit into a failure
    assert journal.commit() == 1
    assert seen[-1] == ("after", before + 2)


def test_a_failed_commit_marks_the_outage_beside_the_journal_until_a_commit_succeeds(
    journal: Journal, db_path: str
) -> None:
    marker = f"{db_path}.outage"
    assert outage.read(db_path) is None
    entity, created = TOY.create("t-outage")
    journal.append(created, entity)
    assert journal._conn is not None
    journal._conn.execute("PRAGMA query_only = 1")  # the file became read-only
    for _ in range(3):
        with pytest.raises(JournalWriteError):
            journal.commit()
    assert outage.read(db_path) == f"run {journal.run_id}: {journal.failure}"
    assert oct(os.stat(marker).st_mode & 0o777) == "0o600"
    journal._conn.execute("PRAGMA query_only = 0")
    assert journal.commit() == 1  # what the outage held is on disk: the mark goes
    assert not os.path.exists(marker)
    assert outage.read(db_path) is None


def test_a_mark_left_by_an_earlier_process_stays_until_its_owner_clears_it(
    open_journal: OpenJournal, db_path: str
) -> None:
    with open(f"{db_path}.outage", "w") as left:
        left.write("run 7: disk full\n")
    journal = open_journal(db_path)  # opening commits (the run): that is not this mark's outage
    assert outage.read(db_path) == "run 7: disk full"
    entity, created = TOY.create("t-later")
    journal.append(created, entity)
    journal.commit()
    assert outage.read(db_path) == "run 7: disk full"
    outage.clear(db_path)
    assert outage.read(db_path) is None
    outage.clear(db_path)  # idempotent


def test_an_outage_mark_that_cannot_be_written_read_or_removed_never_fails_the_journal(
    journal: Journal, db_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    os.mkdir(f"{db_path}.outage")  # something in the way that is not a file
    entity, created = TOY.create("t-in-the-way")
    journal.append(created, entity)
    assert journal._conn is not None
    journal._conn.execute("PRAGMA query_only = 1")
    with pytest.raises(JournalWriteError):
        journal.commit()
    assert "cannot mark the journal outage beside" in caplog.text
    assert (outage.read(db_path) or "").startswith("(unreadable: ")  # there: still a mark
    journal._conn.execute("PRAGMA query_only = 0")
    assert journal.commit() == 1  # the mark cannot be removed: logged, the commit stands
    assert "cannot remove the journal outage mark" in caplog.text
    os.rmdir(f"{db_path}.outage")
