"""The read side: listings, stats, time formatting, and ``verify`` against every kind of tampering."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from machines import CREATE, ORDER, RUN, TradekernelError, Transition, registry
from storage import Journal
from storage.audit import AuditReader, VerifyResult, iso_time
from storage.codec import encode_text
from storage.errors import JournalCorrupt
from storage.schema import SCHEMA_VERSION
from tests.conftest import FakeClock
from tests.storage.conftest import COLUMNS, SmallJournal, copy_db, drop_append_only_triggers, query, raw
from tests.toy import TOY

OpenJournal = Callable[..., Journal]


@pytest.fixture
def reader(small_journal: SmallJournal) -> Iterator[AuditReader]:
    with AuditReader(small_journal.path) as r:
        yield r


def verify(path: str) -> VerifyResult:
    with AuditReader(path) as r:
        return r.verify()


# -- iso_time -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00.000000000Z"),
        (5, "1970-01-01T00:00:00.000000005Z"),
        (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
        (1_700_000_000_999_999_999, "2023-11-14T22:13:20.999999999Z"),
        (951_782_400_000_000_001, "2000-02-29T00:00:00.000000001Z"),
    ],
)
def test_iso_time_has_nanoseconds(ns: int, text: str) -> None:
    assert iso_time(ns) == text


# -- listings -----------------------------------------------------------------------------------


def test_tail_is_oldest_first_and_filters(reader: AuditReader, small_journal: SmallJournal) -> None:
    last = small_journal.rows
    assert [t["seq"] for t in reader.tail(3)] == [last - 2, last - 1, last]
    assert [t["seq"] for t in reader.tail()] == list(range(last - 19, last + 1))  # default 20
    assert len(reader.tail(1000)) == last
    assert reader.tail(0) == []
    newest = reader.tail(1)[0]
    assert (newest["machine"], newest["trigger"], newest["dest"]) == ("run", "stop", "stopped")
    toys = reader.tail(1000, machine="toy")
    assert {t["machine"] for t in toys} == {"toy"}
    assert len(toys) == last - 2
    done = reader.tail(2, entity="done-1")
    assert [(t["trigger"], t["source"], t["dest"]) for t in done] == [
        ("add", "active", "active"),
        ("finish", "active", "done"),
    ]
    assert reader.tail(5, machine="run", entity="done-1") == []
    assert [t["trigger"] for t in reader.tail(9, machine="run", entity="1")] == ["create", "stop"]


def test_transition_dicts_carry_every_column(reader: AuditReader, small_journal: SmallJournal) -> None:
    stored = query(
        small_journal.path,
        f"SELECT {', '.join(COLUMNS)} FROM transitions WHERE entity = 'active-1' AND trigger = 'add'",
    )
    row = dict(zip(COLUMNS, stored[0], strict=True))
    first_add = reader.timeline("active-1")[2]
    assert first_add == {
        "seq": row["seq"],
        "ts": iso_time(row["ts"]),
        "ts_ns": row["ts"],
        "run": 1,
        "machine": "toy",
        "entity": "active-1",
        "trigger": "add",
        "source": "active",
        "dest": "active",
        "data": {"qty": "1.5"},
        "hash": row["hash"],
    }


def test_timeline_lists_one_entity_in_order(reader: AuditReader) -> None:
    timeline = reader.timeline("dropped-active")
    assert [(t["trigger"], t["dest"]) for t in timeline] == [
        ("create", "idle"),
        ("start", "active"),
        ("add", "active"),
        ("drop", "dropped"),
    ]
    seqs = [t["seq"] for t in timeline]
    assert seqs == sorted(seqs)
    assert reader.timeline("dropped-active", machine="run") == []
    assert [t["trigger"] for t in reader.timeline("1", machine="run")] == ["create", "stop"]
    assert reader.timeline("nobody") == []


def test_entities_with_and_without_live_only(reader: AuditReader, small_journal: SmallJournal) -> None:
    everything = reader.entities()
    assert {(e["machine"], e["entity"]): e["state"] for e in everything} == {
        ("run", "1"): "stopped",
        **{("toy", k): v for k, v in small_journal.states.items()},
    }
    toys = reader.entities(machine="toy")
    assert [e["seq"] for e in toys] == sorted(e["seq"] for e in toys)
    assert {e["entity"]: e["live"] for e in toys} == {
        k: v in ("idle", "active") for k, v in small_journal.states.items()
    }
    live = reader.entities(live_only=True)
    assert {e["entity"] for e in live} == {"idle-1", "active-1", "active-2", "idle-2", "active-3"}
    assert all(e["live"] is True for e in live)
    active = next(e for e in live if e["entity"] == "active-1")
    assert active["data"] == {"starts": 1, "target": "100", "total": "6.75"}
    assert reader.entities(machine="run", live_only=True) == []


def test_export_streams_everything_after_since(reader: AuditReader, small_journal: SmallJournal) -> None:
    exported = reader.export()
    assert not isinstance(exported, list)
    everything = list(exported)
    assert [t["seq"] for t in everything] == list(range(1, small_journal.rows + 1))
    assert [t["seq"] for t in reader.export(since=small_journal.rows - 2)] == [
        small_journal.rows - 1,
        small_journal.rows,
    ]
    assert list(reader.export(since=small_journal.rows)) == []
    assert everything == reader.tail(small_journal.rows)


def test_stats(open_journal: OpenJournal, db_path: str, clock: FakeClock) -> None:
    journal = open_journal(db_path)
    first_ts = clock.now
    for name in ("a", "b", "c"):
        entity, created = TOY.create(name)
        journal.append(created, entity)
        if name == "c":
            journal.fire(TOY, entity, "drop")
    journal.commit()
    last_ts = clock.now
    journal._release()  # run 1 "crashes"
    open_journal(db_path)  # run 2, still running
    with AuditReader(db_path) as r:
        stats = r.stats()
    assert stats["path"] == db_path
    assert stats["schema_version"] == SCHEMA_VERSION
    assert stats["transitions_per_machine"] == {"run": 3, "toy": 4}
    assert stats["transitions"] == 7
    assert stats["live_entities"] == {"run": 1, "toy": 2}
    assert stats["ended_entities"] == {"run": 1, "toy": 1}
    assert stats["runs"] == {"crashed": 1, "running": 1}
    assert (stats["first_seq"], stats["last_seq"]) == (1, 7)
    assert stats["first_ts"] == iso_time(first_ts)
    assert stats["last_ts"] > iso_time(last_ts)  # run 2's rows came later
    assert stats["file_bytes"]["db"] == os.path.getsize(db_path)
    assert set(stats["file_bytes"]) <= {"db", "-wal", "-shm"}
    assert "-wal" in stats["file_bytes"]  # a writer has it open
    assert stats["total_bytes"] == sum(stats["file_bytes"].values())


def test_stats_of_an_empty_journal(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path, start_run=False).close()
    with AuditReader(db_path) as r:
        stats = r.stats()
    assert stats["transitions"] == 0
    assert stats["transitions_per_machine"] == {}
    assert stats["runs"] == {}
    assert (stats["first_seq"], stats["last_seq"], stats["first_ts"], stats["last_ts"]) == (None, None, None, None)


def test_reader_never_writes(small_journal: SmallJournal) -> None:
    before = Path(small_journal.path).read_bytes()
    with AuditReader(small_journal.path) as r:
        assert r.verify().ok
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            r._conn.execute("DELETE FROM live_entities")
    assert Path(small_journal.path).read_bytes() == before


# -- verify: the good case ----------------------------------------------------------------------


def test_verify_ok_on_an_untouched_journal(small_journal: SmallJournal) -> None:
    result = verify(small_journal.path)
    assert result.ok
    assert result.transitions == small_journal.rows
    assert result.entities == len(small_journal.states) + 1  # the toys and run 1
    assert (result.first_bad_seq, result.reason) == (None, None)
    assert result.checks == [
        "sqlite quick_check",
        "hash chain and head",
        "replay through machine tables",
        "current-state tables match replay",
    ]
    assert result.as_json() == {
        "ok": True,
        "transitions": small_journal.rows,
        "entities": len(small_journal.states) + 1,
        "checks": result.checks,
    }


def test_verify_ok_on_an_empty_journal(open_journal: OpenJournal, db_path: str) -> None:
    open_journal(db_path, start_run=False).close()
    result = verify(db_path)
    assert result.ok
    assert (result.transitions, result.entities) == (0, 0)


def test_verify_while_a_writer_has_the_journal_open(open_journal: OpenJournal, db_path: str) -> None:
    journal = open_journal(db_path)
    for i in range(20):
        entity, created = TOY.create(f"w{i}")
        journal.append(created, entity)
    journal.commit()
    entity, created = TOY.create("pending")
    journal.append(created, entity)  # not committed: invisible to the reader
    with AuditReader(db_path) as r:
        first = r.verify()
        assert first.ok, first
        assert first.transitions == 21
        journal.commit()
        second = r.verify()  # a new read transaction sees the new commit
        assert second.ok, second
        assert second.transitions == 22
    assert not journal.closed


@pytest.mark.parametrize(
    ("edit", "damage"),
    [
        ("ts = 'noon'", r"\(ts 'noon'\)"),
        ("data = '{not json'", r"\(JSON is malformed"),
    ],
)
def test_a_damaged_row_is_a_typed_error_when_listed(
    small_journal: SmallJournal, tmp_path: Path, edit: str, damage: str
) -> None:
    path = copy_db(small_journal.path, str(tmp_path / "damaged.db"))
    with raw(path) as conn:
        drop_append_only_triggers(conn)
        conn.execute(f"UPDATE transitions SET {edit} WHERE seq = 3")
    with AuditReader(path) as reader, pytest.raises(JournalCorrupt, match=r"^transition seq 3 is damaged ") as info:
        reader.tail(1000)
    assert re.search(damage, str(info.value))
    assert str(info.value).endswith("; run `tradekernel audit verify`")
    assert isinstance(info.value, TradekernelError)


# -- verify: tampering --------------------------------------------------------------------------


def tampered(small_journal: SmallJournal, tmp_path: Path, name: str, *statements: str) -> VerifyResult:
    """Verify a copy of the small journal after running ``statements`` on it (append-only triggers dropped)."""
    path = copy_db(small_journal.path, str(tmp_path / f"{name}.db"))
    with raw(path) as conn:
        drop_append_only_triggers(conn)
        for statement in statements:
            conn.execute(statement)
    return verify(path)


EDITS = {
    "seq": "seq = seq + 100000",
    "ts": "ts = ts + 1",
    "run": "run = run + 1",
    "machine": "machine = machine || 'x'",
    "entity": "entity = entity || 'x'",
    "trigger": "trigger = trigger || 'x'",
    "source": "source = COALESCE(source || 'x', 'idle')",
    "dest": "dest = dest || 'x'",
    "data": "data = json_set(data, '$.edited', 1)",
    "hash": "hash = CASE substr(hash, 1, 1) WHEN '0' THEN '1' ELSE '0' END || substr(hash, 2)",
}


def test_edits_cover_every_column() -> None:
    assert set(EDITS) == set(COLUMNS)


@pytest.mark.parametrize("column", list(EDITS))
def test_editing_any_column_of_any_row_is_found_at_that_row(
    small_journal: SmallJournal, tmp_path: Path, column: str
) -> None:
    assert small_journal.rows >= 30
    wrong = []
    for seq in range(1, small_journal.rows + 1):
        result = tampered(
            small_journal, tmp_path, f"{column}-{seq}", f"UPDATE transitions SET {EDITS[column]} WHERE seq = {seq}"
        )
        if result.ok or result.first_bad_seq != seq:
            wrong.append((seq, result.ok, result.first_bad_seq, result.reason))
        os.remove(tmp_path / f"{column}-{seq}.db")
    assert wrong == []


def test_editing_only_the_hash_is_a_hash_mismatch(small_journal: SmallJournal, tmp_path: Path) -> None:
    result = tampered(small_journal, tmp_path, "hash", "UPDATE transitions SET hash = upper(hash) WHERE seq = 7")
    assert not result.ok
    assert result.first_bad_seq == 7
    assert "hash mismatch" in (result.reason or "")
    assert result.checks == ["sqlite quick_check"]
    assert result.as_json()["first_bad_seq"] == 7
    assert result.as_json()["reason"] == result.reason


def test_deleting_any_row_is_found_at_that_row(small_journal: SmallJournal, tmp_path: Path) -> None:
    wrong = []
    for seq in range(1, small_journal.rows + 1):
        result = tampered(small_journal, tmp_path, f"del-{seq}", f"DELETE FROM transitions WHERE seq = {seq}")
        if result.ok or result.first_bad_seq != seq or "missing" not in (result.reason or ""):
            wrong.append((seq, result.ok, result.first_bad_seq, result.reason))
    assert wrong == []


def test_a_recomputed_chain_does_not_hide_a_changed_head(small_journal: SmallJournal, tmp_path: Path) -> None:
    result = tampered(small_journal, tmp_path, "head", "UPDATE journal_head SET hash = upper(hash)")
    assert not result.ok
    assert result.first_bad_seq == small_journal.rows
    assert "chain head" in (result.reason or "")


def entity_seq(path: str, table: str, entity: str) -> int:
    return int(query(path, f"SELECT seq FROM {table} WHERE entity = ?", (entity,))[0][0])


@pytest.mark.parametrize(
    ("table", "entity", "change"),
    [
        ("live_entities", "active-1", "state = 'idle'"),
        ("live_entities", "active-1", "data = json_set(data, '$.total', '999')"),
        ("live_entities", "active-1", "seq = seq - 1"),
        ("live_entities", "idle-1", "entity = 'idle-9'"),
        ("live_entities", "idle-1", "machine = 'run'"),
        ("ended_entities", "done-1", "state = 'dropped'"),
        ("ended_entities", "dropped-idle", "data = '{}'"),
        ("ended_entities", "1", "data = json_set(data, '$.pid', 1)"),
    ],
)
def test_editing_a_current_state_row_is_found(
    small_journal: SmallJournal, tmp_path: Path, table: str, entity: str, change: str
) -> None:
    expected = entity_seq(small_journal.path, table, entity)
    result = tampered(small_journal, tmp_path, "state", f"UPDATE {table} SET {change} WHERE entity = '{entity}'")
    assert not result.ok
    assert result.first_bad_seq == expected
    assert entity in (result.reason or "")
    assert result.checks[-1] == "replay through machine tables"


@pytest.mark.parametrize(("table", "entity"), [("live_entities", "active-2"), ("ended_entities", "done-1")])
def test_deleting_a_current_state_row_is_found(
    small_journal: SmallJournal, tmp_path: Path, table: str, entity: str
) -> None:
    expected = entity_seq(small_journal.path, table, entity)
    result = tampered(small_journal, tmp_path, "gone", f"DELETE FROM {table} WHERE entity = '{entity}'")
    assert not result.ok
    assert result.first_bad_seq == expected
    assert f"current state of toy '{entity}' is missing" in (result.reason or "")


def test_an_ended_entity_moved_back_to_live_is_found(small_journal: SmallJournal, tmp_path: Path) -> None:
    expected = entity_seq(small_journal.path, "ended_entities", "done-1")
    result = tampered(
        small_journal,
        tmp_path,
        "moved",
        "INSERT INTO live_entities SELECT * FROM ended_entities WHERE entity = 'done-1'",
        "DELETE FROM ended_entities WHERE entity = 'done-1'",
    )
    assert not result.ok
    assert result.first_bad_seq == expected
    assert "differs from replay" in (result.reason or "")


def test_an_entity_both_live_and_ended_is_found(small_journal: SmallJournal, tmp_path: Path) -> None:
    result = tampered(
        small_journal,
        tmp_path,
        "both",
        "INSERT INTO ended_entities SELECT * FROM live_entities WHERE entity = 'idle-1'",
    )
    assert not result.ok
    assert result.first_bad_seq == entity_seq(small_journal.path, "live_entities", "idle-1")
    assert "both live and ended" in (result.reason or "")


def test_an_entity_without_transitions_is_found(small_journal: SmallJournal, tmp_path: Path) -> None:
    result = tampered(
        small_journal,
        tmp_path,
        "phantom",
        "INSERT INTO live_entities (machine, entity, state, seq, data) VALUES ('toy', 'phantom', 'idle', 5, "
        """'{"starts":0,"target":"10","total":"0"}')""",
    )
    assert not result.ok
    assert result.first_bad_seq == 5
    assert "current state of toy 'phantom' has no transitions" in (result.reason or "")


def test_the_first_of_several_problems_is_named(small_journal: SmallJournal, tmp_path: Path) -> None:
    late = entity_seq(small_journal.path, "live_entities", "active-2")
    early = entity_seq(small_journal.path, "live_entities", "idle-1")
    assert early < late
    result = tampered(
        small_journal,
        tmp_path,
        "two",
        "DELETE FROM live_entities WHERE entity = 'active-2'",
        "UPDATE live_entities SET state = 'active' WHERE entity = 'idle-1'",
    )
    assert result.first_bad_seq == early


def test_an_unknown_machine_cannot_be_replayed(small_journal: SmallJournal) -> None:
    first_toy = int(query(small_journal.path, "SELECT min(seq) FROM transitions WHERE machine = 'toy'")[0][0])
    registry.unregister("toy")
    try:
        result = verify(small_journal.path)
    finally:
        registry.register(TOY)
    assert registry.get("toy") is TOY
    assert not result.ok
    assert result.first_bad_seq == first_toy
    assert "cannot replay" in (result.reason or "")
    assert "unknown machine 'toy'" in (result.reason or "")


def journal_of(path: str, clock: FakeClock, build: Callable[[Journal], None]) -> VerifyResult:
    """Write a journal whose rows are chained correctly but say something impossible; verify it."""
    with Journal.open(path, clock=clock) as journal:
        build(journal)
    return verify(path)


def test_a_second_create_of_the_same_entity_is_found(
    db_path: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # append refuses a second create (see test_journal); bypass that guard to build the bad journal
    monkeypatch.setattr(Journal, "has_entity", lambda self, machine, entity_id: False)

    def build(journal: Journal) -> None:
        entity, created = TOY.create("twice")
        journal.append(created, entity)
        again, created_again = TOY.create("twice")
        journal.append(created_again, again)

    result = journal_of(db_path, clock, build)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "created a second time" in (result.reason or "")


def test_a_transition_for_an_entity_never_created_is_found(db_path: str, clock: FakeClock) -> None:
    def build(journal: Journal) -> None:
        ghost = TOY.restore("ghost", "idle", {"target": "1", "total": "0", "starts": 0})
        journal.fire(TOY, ghost, "start")

    result = journal_of(db_path, clock, build)
    assert not result.ok
    assert result.first_bad_seq == 2
    assert "never created" in (result.reason or "")


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (Transition("toy", "t", "start", "active", "active", {}), "row says source 'active' but replay has 'idle'"),
        (Transition("toy", "t", "start", "idle", "done", {}), "row says dest 'done' but replay reached 'active'"),
        (Transition("toy", "t", "finish", "idle", "done", {}), "replay refused the row"),
        (Transition("toy", "t", "add", "idle", "idle", {"qty": "1"}), "replay refused the row"),
    ],
)
def test_a_row_the_machine_would_not_produce_is_found(
    db_path: str, clock: FakeClock, record: Transition, why: str
) -> None:
    def build(journal: Journal) -> None:
        entity, created = TOY.create("t")
        journal.append(created, entity)
        journal.append(record, entity)

    result = journal_of(db_path, clock, build)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert why in (result.reason or "")


def test_a_create_the_machine_refuses_is_found(db_path: str, clock: FakeClock) -> None:
    def build(journal: Journal) -> None:
        entity, _ = TOY.create("neg")
        journal.append(Transition("toy", "neg", CREATE, None, "idle", {"target": "-1"}), entity)

    result = journal_of(db_path, clock, build)
    assert not result.ok
    assert result.first_bad_seq == 2
    assert "replay refused the row" in (result.reason or "")
    assert "target must be" in (result.reason or "")


def test_run_rows_are_replayed_too(small_journal: SmallJournal, tmp_path: Path) -> None:
    run_stop = int(
        query(small_journal.path, "SELECT seq FROM transitions WHERE machine = 'run' AND trigger = 'stop'")[0][0]
    )
    result = tampered(small_journal, tmp_path, "run", "DELETE FROM ended_entities WHERE machine = 'run'")
    assert not result.ok
    assert result.first_bad_seq == run_stop
    assert RUN.name in (result.reason or "")


# -- the append-only guards ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE transitions SET data = '{}' WHERE seq = 3",
        "DELETE FROM transitions WHERE seq = 3",
        "DELETE FROM transitions",
    ],
)
def test_transitions_are_append_only(small_journal: SmallJournal, statement: str) -> None:
    with raw(small_journal.path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="transitions is append-only"):
            conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM transitions").fetchone() == (small_journal.rows,)
    assert verify(small_journal.path).ok


def test_current_state_is_stored_as_canonical_json(small_journal: SmallJournal) -> None:
    (data,) = query(small_journal.path, "SELECT data FROM live_entities WHERE entity = 'active-2'")[0]
    assert data == '{"starts":1,"target":"9","total":"6"}'
    assert data == encode_text({"total": Decimal(6), "target": Decimal(9), "starts": 1})


def test_fills_lists_each_applied_fill_once_with_its_order_terms(db_path: str) -> None:
    journal = Journal.open(db_path)
    try:
        buy, created = ORDER.create("b1", instrument="BTCUSDT", side="buy", qty=Decimal(3), price=Decimal(10))
        journal.append(created, buy)
        sell, created = ORDER.create("s1", instrument="ETHUSDT", side="sell", qty=Decimal(1), price=Decimal(20))
        journal.append(created, sell)
        for order in (buy, sell):
            journal.fire(ORDER, order, "submit")
            journal.fire(ORDER, order, "accept", venue_order_id=f"V{order.entity_id}")
        journal.fire(ORDER, buy, "fill", qty=Decimal(1), price=Decimal("9.5"), trade_id="T1", fee=Decimal("0.01"))
        journal.fire(ORDER, sell, "fill", qty=Decimal(1), price=Decimal(21), trade_id="T2")
        journal.fire(ORDER, buy, "fill", qty=Decimal(1), price=Decimal("9.5"), trade_id="T1")  # duplicate report
        journal.fire(ORDER, buy, "fill", qty=Decimal(2), price=Decimal(10), trade_id="T3")
        journal.commit()
    finally:
        journal.close()
    with AuditReader(db_path) as reader:
        fills = reader.fills()
    assert [(f["client_order_id"], f["trade_id"]) for f in fills] == [("b1", "T1"), ("s1", "T2"), ("b1", "T3")]
    assert {k: fills[0][k] for k in ("client_order_id", "instrument", "side", "qty", "price", "fee", "trade_id")} == {
        "client_order_id": "b1",
        "instrument": "BTCUSDT",
        "side": "buy",
        "qty": Decimal(1),
        "price": Decimal("9.5"),
        "fee": Decimal("0.01"),
        "trade_id": "T1",
    }
    assert fills[1]["side"] == "sell"
    assert fills[1]["fee"] == Decimal(0)
