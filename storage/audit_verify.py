"""``audit verify``: the file, the hash chain, the head, and replay against the current state.

One pass over ``transitions`` in ``seq`` order checks the chain and replays each row through its
machine's compiled dispatch as it comes. Memory is O(live entities), not O(history): an entity
is held only while it may still change. The query joins each row with the ``ended_entities`` row
stored *at that seq* for the same entity; when replay has just put the entity in a terminal state
equal to that stored row (state, seq, data), the entity is done (nothing later touches it in a
journal that agrees with itself) and is dropped. Whatever is still held at the end is compared
with the stored rows one by one, as before.

Every check the whole-history replay made is kept, with the same first bad ``seq`` and reason:

* a row for an entity not held is either its first ``create``, or (only in a damaged journal) a
  row for an entity dropped earlier: the stored ended row's ``seq`` names the row where it was
  dropped, and the entity is picked up again from that row (what it was when dropped) — a
  second ``create`` is refused, a later transition is replayed and makes its stored row differ;
* stored rows no replayed entity consumed are counted (the dropped ones, plus those compared at
  the end); only when the count falls short are they looked for ("has no transitions").
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import msgspec

from machines import CREATE, StateMachine, StateMachineError, registry
from storage import codec
from storage.errors import JournalCorrupt
from storage.schema import integrity_problem, translate

_STREAM = (
    "SELECT t.seq, t.ts, t.run, t.machine, t.entity, t.trigger, t.source, t.dest, t.data, t.hash, e.seq, "
    "CASE WHEN e.seq = t.seq THEN e.state END, CASE WHEN e.seq = t.seq THEN e.data END "
    "FROM transitions t LEFT JOIN ended_entities e ON e.machine = t.machine AND e.entity = t.entity "
    "ORDER BY t.seq"
)
_UNCONSUMED_ENDED = (
    "SELECT e.seq, e.machine, e.entity FROM ended_entities e LEFT JOIN transitions t ON t.seq = e.seq "
    "WHERE t.seq IS NULL OR t.machine IS NOT e.machine OR t.entity IS NOT e.entity"
)

Key = tuple[str, str]
_decode = msgspec.json.Decoder().decode  # codec.decode's plain decoder, without its wrapper: once per row


@dataclass
class VerifyResult:
    """What ``verify`` found. ``first_bad_seq`` is ``None`` when ``ok`` or for whole-file damage."""

    ok: bool
    transitions: int = 0
    entities: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None
    checks: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The public ``audit verify --json`` shape."""
        out: dict[str, Any] = {"ok": self.ok, "transitions": self.transitions, "entities": self.entities}
        if not self.ok:
            out["first_bad_seq"] = self.first_bad_seq
            out["reason"] = self.reason
        out["checks"] = self.checks
        return out


class _Bad(JournalCorrupt):
    """The first problem ``verify`` found (``seq``: the first bad row, ``None``: the whole file)."""

    def __init__(self, seq: int | None, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(reason)


def verify(conn: sqlite3.Connection, path: str) -> VerifyResult:
    """Check the file, the hash chain, the head, and that replay reproduces current state.

    Runs in one read transaction on ``conn`` (read-only), so it sees one consistent snapshot even
    while a kernel writes. Names the first bad ``seq`` it finds.
    """
    result = VerifyResult(ok=True)
    try:
        conn.execute("BEGIN")
        try:
            _Verifier(conn, result).run()
        finally:
            conn.execute("COMMIT")
    except _Bad as bad:
        result.ok = False
        result.first_bad_seq = bad.seq
        result.reason = bad.reason
    except sqlite3.Error as exc:
        error = translate(exc, path, writing=False)
        result.ok = False
        result.reason = str(error)
    return result


class _Verifier:
    def __init__(self, conn: sqlite3.Connection, result: VerifyResult) -> None:
        self._conn = conn
        self._result = result
        self._held: dict[Key, list[Any]] = {}  # entity -> [Entity, last seq], while it may change
        self._dropped = 0  # ended rows consumed when their entity was dropped
        self._revived: set[Key] = set()  # dropped, then touched again (a damaged journal only)
        self._machines: dict[str, StateMachine] = {}

    def run(self) -> None:
        result = self._result
        problem = integrity_problem(self._conn)
        if problem:
            raise _Bad(None, f"SQLite integrity check failed: {problem}")
        result.checks.append("sqlite quick_check")
        self._scan()
        result.checks.append("hash chain and head")
        result.checks.append("replay through machine tables")
        self._compare_current_state()
        result.checks.append("current-state tables match replay")

    # -- the pass over the history ------------------------------------------------------------

    def _scan(self) -> None:
        held = self._held
        machines = self._machines
        decode = _decode
        encode_text = codec.encode_text
        header = codec.encode
        sha256 = hashlib.sha256
        prev_hash = codec.GENESIS_HASH
        expected_seq = 1
        created = 0
        for row in self._conn.execute(_STREAM):
            (seq, ts, run, machine_name, entity_id, trigger, source, dest, data_text, stored_hash,
             ended_seq, ended_state, ended_data) = row  # fmt: skip
            if seq != expected_seq:
                raise _Bad(expected_seq, f"row seq {expected_seq} is missing (the next row is seq {seq})")
            # codec.row_hash, inlined: the one cost every row pays
            computed = sha256(
                prev_hash.encode()
                + header((seq, ts, run, machine_name, entity_id, trigger, source, dest))
                + data_text.encode()
            ).hexdigest()
            if computed != stored_hash:
                raise _Bad(seq, "hash mismatch: this row was edited (or its stored hash was)")
            prev_hash = stored_hash
            expected_seq += 1
            machine = machines.get(machine_name) or self._machine(seq, machine_name)
            key = (machine_name, entity_id)
            data = decode(data_text)
            slot = held.get(key)
            try:
                if trigger == CREATE:
                    if slot is not None or (ended_seq is not None and self._dropped_before(key, ended_seq, seq)):
                        raise _Bad(seq, f"{machine_name} {entity_id!r} is created a second time")
                    entity, _ = machine.create(entity_id, **data)
                    slot = held[key] = [entity, seq]
                    created += 1
                else:
                    if slot is None:
                        slot = self._revive(machine, key, ended_seq, seq)
                    entity = slot[0]
                    if entity.state != source:
                        raise _Bad(seq, f"row says source {source!r} but replay has {entity.state!r}")
                    machine.fire(entity, trigger, **data)
                    slot[1] = seq
            except StateMachineError as exc:
                raise _Bad(seq, f"replay refused the row: {exc}") from None
            if entity.state != dest:
                raise _Bad(seq, f"row says dest {dest!r} but replay reached {entity.state!r}")
            if (
                ended_state is not None
                and ended_state == entity.state
                and not entity.live
                and ended_data == encode_text(entity.data)
            ):
                del held[key]  # done: equal to its stored ended row at this very seq
                self._dropped += 1
        self._result.transitions = expected_seq - 1
        self._result.entities = created
        head_seq, head_hash = self._conn.execute("SELECT seq, hash FROM journal_head WHERE id = 1").fetchone()
        last_seq = expected_seq - 1
        if head_seq > last_seq:
            raise _Bad(last_seq + 1, f"rows after seq {last_seq} are missing (the head records seq {head_seq})")
        if (head_seq, head_hash) != (last_seq, prev_hash):
            raise _Bad(head_seq, f"the chain head (seq {head_seq}) does not match the last row (seq {last_seq})")

    def _machine(self, seq: int, name: str) -> StateMachine:
        try:
            machine = registry.get(name)
        except StateMachineError as exc:
            raise _Bad(seq, f"cannot replay: {exc}") from None
        self._machines[name] = machine
        return machine

    def _dropped_before(self, key: Key, ended_seq: int, seq: int) -> bool:
        """Was ``key`` dropped earlier? Its stored ended row is older than ``seq`` and names a row of
        this very entity (an entity is only ever dropped at the seq its ended row records)."""
        if ended_seq >= seq:
            return False
        found = self._conn.execute("SELECT machine, entity FROM transitions WHERE seq = ?", (ended_seq,)).fetchone()
        return found is not None and (found[0], found[1]) == key

    def _revive(self, machine: StateMachine, key: Key, ended_seq: int | None, seq: int) -> list[Any]:
        """A row for an entity not held: pick up a dropped entity again, else it was never created."""
        if ended_seq is None or not self._dropped_before(key, ended_seq, seq):
            raise _Bad(seq, f"{key[0]} {key[1]!r} has a transition but was never created")
        state, data_text = self._conn.execute(
            "SELECT state, data FROM ended_entities WHERE machine = ? AND entity = ?", key
        ).fetchone()
        entity = machine.restore(key[1], state, codec.decode(data_text))  # what it was when dropped
        self._revived.add(key)
        slot = self._held[key] = [entity, ended_seq]
        return slot

    # -- the current-state tables --------------------------------------------------------------

    def _compare_current_state(self) -> None:
        conn = self._conn
        both = conn.execute(
            "SELECT e.seq, e.machine, e.entity FROM ended_entities e "
            "JOIN live_entities l ON l.machine = e.machine AND l.entity = e.entity ORDER BY e.seq LIMIT 1"
        ).fetchone()
        if both is not None:
            raise _Bad(both[0], f"{both[1]} {both[2]!r} is both live and ended")
        stored_live: dict[Key, tuple[str, int, bool, str]] = {
            (machine, entity_id): (state, seq, True, data)
            for machine, entity_id, state, seq, data in conn.execute(
                "SELECT machine, entity, state, seq, data FROM live_entities"
            )
        }
        bad: list[tuple[int, str]] = []
        consumed = self._dropped
        for key, (entity, seq) in self._held.items():
            row = stored_live.pop(key, None)
            if row is None:
                ended = conn.execute(
                    "SELECT state, seq, data FROM ended_entities WHERE machine = ? AND entity = ?", key
                ).fetchone()
                if ended is not None:
                    row = (ended[0], ended[1], False, ended[2])
                    consumed += key not in self._revived  # a revived entity's row was counted when dropped
            expected = (entity.state, seq, entity.live, codec.encode_text(entity.data))
            if row != expected:
                what = "is missing" if row is None else "differs from replay"
                bad.append((seq, f"current state of {key[0]} {key[1]!r} {what}"))
        for (machine, entity_id), (_state, seq, _live, _data) in stored_live.items():
            bad.append((seq, f"current state of {machine} {entity_id!r} has no transitions"))
        (ended_rows,) = conn.execute("SELECT count(*) FROM ended_entities").fetchone()
        if consumed < ended_rows:  # some ended row no replayed entity reached: find them
            for seq, machine, entity_id in conn.execute(_UNCONSUMED_ENDED):
                if (machine, entity_id) not in self._held:
                    bad.append((seq, f"current state of {machine} {entity_id!r} has no transitions"))
        if bad:
            raise _Bad(*min(bad))
