"""``audit verify`` in one pass: entities are held only while they may change, every check kept.

The whole-history checks are in ``test_audit.py``; these cover what the streaming pass adds:
ended entities dropped when they match their stored row (and transitions that reach an order
after it ended), an entity touched again after it was dropped, and stored rows nothing reached.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from machines import ORDER
from storage import Journal
from storage.audit import AuditReader, VerifyResult
from storage.audit_verify import VerifyResult as _Result
from storage.audit_verify import _Verifier
from tests.conftest import FakeClock
from tests.storage.conftest import copy_db, drop_append_only_triggers, query, raw
from tests.toy import TOY


def verify(path: str) -> VerifyResult:
    with AuditReader(path) as reader:
        return reader.verify()


def order(journal: Journal, name: str, *, fills: int = 1, late: bool = False) -> None:
    """An order created, submitted, accepted, then filled in ``fills`` parts (``late``: then a duplicate fill
    and a refused cancel reach it after it is ``filled``)."""
    entity, created = ORDER.create(name, instrument="BTCUSDT", side="buy", qty=Decimal(fills), price=Decimal("10.5"))
    journal.append(created, entity)
    journal.fire(ORDER, entity, "submit")
    journal.fire(ORDER, entity, "accept", venue_order_id=f"V-{name}")
    for i in range(fills):
        journal.fire(ORDER, entity, "fill", qty=Decimal(1), price=Decimal("10.5"), trade_id=f"{name}-T{i}")
    if late:
        journal.fire(ORDER, entity, "fill", qty=Decimal(1), price=Decimal("10.5"), trade_id=f"{name}-T0")
        journal.fire(ORDER, entity, "cancel_reject", reason="too late")


def build(path: str, clock: FakeClock, *, late: bool = True) -> None:
    """seq 1-4: order a (filled); 5-10: b, filled, then a duplicate fill (9) and a cancel reject (10);
    11-13: c, accepted (live); 14-18: d, filled in two parts."""
    with Journal.open(path, clock=clock, start_run=False) as journal:
        order(journal, "a")
        order(journal, "b", late=late)
        entity, created = ORDER.create("c", instrument="BTCUSDT", side="sell", qty=Decimal(2), price=Decimal(11))
        journal.append(created, entity)
        journal.fire(ORDER, entity, "submit")
        journal.fire(ORDER, entity, "accept", venue_order_id="V-c")
        order(journal, "d", fills=2)


def test_transitions_after_an_order_ended_are_replayed(db_path: str, clock: FakeClock) -> None:
    build(db_path, clock)
    result = verify(db_path)
    assert result.ok, result
    assert (result.transitions, result.entities) == (18, 4)
    assert query(db_path, "SELECT entity, seq FROM ended_entities ORDER BY seq") == [("a", 4), ("b", 10), ("d", 18)]


def test_only_live_entities_are_held_at_the_end(db_path: str, clock: FakeClock) -> None:
    build(db_path, clock)
    with AuditReader(db_path) as reader:
        verifier = _Verifier(reader._conn, _Result(ok=True))
        verifier._scan()
        assert sorted(verifier._held) == [("order", "c")]
        assert verifier._dropped == 3


def tampered(source: str, tmp_path: Path, *statements: str) -> VerifyResult:
    path = copy_db(source, str(tmp_path / "tampered.db"))
    with raw(path) as conn:
        drop_append_only_triggers(conn)
        for statement in statements:
            conn.execute(statement)
    return verify(path)


def test_an_ended_row_stored_before_the_last_transition_is_found(
    db_path: str, tmp_path: Path, clock: FakeClock
) -> None:
    # b's ended row says what b was when filled (seq 8), but a duplicate fill and a refused cancel
    # reached it afterwards: b is dropped at 8, picked up again at 9, and differs at 10
    build(db_path, clock)
    early = str(tmp_path / "early.db")
    build(early, FakeClock(), late=False)
    ((data_at_8,),) = query(early, "SELECT data FROM ended_entities WHERE entity = 'b'")
    result = tampered(db_path, tmp_path, f"UPDATE ended_entities SET seq = 8, data = '{data_at_8}' WHERE entity = 'b'")
    assert not result.ok
    assert result.first_bad_seq == 10
    assert result.reason == "current state of order 'b' differs from replay"


def test_an_ended_row_pointing_at_another_entitys_row_is_found(db_path: str, tmp_path: Path, clock: FakeClock) -> None:
    build(db_path, clock)
    result = tampered(db_path, tmp_path, "UPDATE ended_entities SET seq = 12 WHERE entity = 'd'")
    assert not result.ok
    assert result.first_bad_seq == 18
    assert result.reason == "current state of order 'd' differs from replay"


def test_an_ended_row_without_transitions_is_found(db_path: str, tmp_path: Path, clock: FakeClock) -> None:
    build(db_path, clock)
    result = tampered(
        db_path,
        tmp_path,
        "INSERT INTO ended_entities (machine, entity, state, seq, data) "
        "SELECT machine, 'ghost', state, 7, data FROM ended_entities WHERE entity = 'a'",
    )
    assert not result.ok
    assert result.first_bad_seq == 7
    assert result.reason == "current state of order 'ghost' has no transitions"


def test_a_create_after_the_entity_ended_is_found(
    db_path: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Journal, "has_entity", lambda self, machine, entity_id: False)
    with Journal.open(db_path, clock=clock, start_run=False) as journal:
        entity, created = TOY.create("twice")
        journal.append(created, entity)
        journal.fire(TOY, entity, "drop")
        journal.commit()
        again, created_again = TOY.create("twice")
        journal.append(created_again, again)
    result = verify(db_path)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.reason == "toy 'twice' is created a second time"


def test_a_transition_after_the_entity_was_dropped_is_replayed_from_its_stored_row(
    db_path: str, clock: FakeClock
) -> None:
    # toy 'x' is dropped at seq 2 and its ended row written; a row at seq 3 then starts 'x' from
    # 'dropped', which its table refuses: the replay must reach that row with 'x' as it ended
    with Journal.open(db_path, clock=clock, start_run=False) as journal:
        entity, created = TOY.create("x")
        journal.append(created, entity)
        journal.fire(TOY, entity, "drop")
        journal.commit()
        ghost = TOY.restore("x", "idle", {"target": "10", "total": "0", "starts": 0})
        journal.fire(TOY, ghost, "start")
    result = verify(db_path)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.reason == "row says source 'idle' but replay has 'dropped'"


def test_damage_found_mid_scan_is_reported(db_path: str, clock: FakeClock) -> None:
    build(db_path, clock)
    with raw(db_path) as conn:
        conn.execute("DROP TRIGGER transitions_append_only_delete")
        conn.execute("DELETE FROM transitions WHERE seq = 9")
    result = verify(db_path)
    assert (result.ok, result.first_bad_seq) == (False, 9)
    assert result.reason == "row seq 9 is missing (the next row is seq 10)"
