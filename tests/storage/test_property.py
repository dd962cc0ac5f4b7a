"""Property: any sequence of triggers, refused or not, committed at any points, replays to the same state."""

from __future__ import annotations

import os
import tempfile
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from machines import Entity, TransitionRefused
from storage import Journal
from storage.audit import AuditReader
from storage.codec import encode_text
from tests.conftest import FakeClock
from tests.toy import TOY

ENTITIES = ("e0", "e1", "e2")

quantities = st.one_of(
    st.integers(min_value=-2, max_value=5),
    st.decimals(min_value=Decimal("-1"), max_value=Decimal("5"), places=2, allow_nan=False, allow_infinity=False),
    st.just(0.5),  # a float: always refused
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(ENTITIES), st.sampled_from(["1", "3", "0", "2.5"])),
        st.tuples(st.sampled_from(["start", "finish", "drop", "bogus"]), st.sampled_from(ENTITIES), st.none()),
        st.tuples(st.just("add"), st.sampled_from(ENTITIES), quantities),
        st.tuples(st.just("commit"), st.none(), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=30, deadline=None, database=None)
@given(steps=steps)
def test_random_triggers_replay_to_the_in_memory_state(steps: list[tuple[str, str | None, object]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "journal.db")
        entities: dict[str, Entity] = {}
        appended = 0
        committed = 0
        with Journal.open(path, clock=FakeClock(), durability="normal") as journal:
            base = journal.last_seq
            for action, name, arg in steps:
                if action == "commit":
                    assert journal.commit() == appended - committed
                    committed = appended
                    continue
                assert name is not None
                seq, pending = journal.last_seq, journal.pending
                try:
                    if action == "create":
                        if name in entities:
                            continue  # one create per entity
                        entity, created = TOY.create(name, target=arg)
                        entities[name] = entity
                        journal.append(created, entity)
                    elif name not in entities:
                        continue
                    elif action == "add":
                        journal.fire(TOY, entities[name], "add", qty=arg)
                    else:
                        journal.fire(TOY, entities[name], action)
                except TransitionRefused:
                    assert (journal.last_seq, journal.pending) == (seq, pending)
                    continue
                appended += 1
                assert (journal.last_seq, journal.pending) == (seq + 1, pending + 1)
            assert journal.last_seq == base + appended
        with AuditReader(path) as reader:
            result = reader.verify()
            assert result.ok, result
            assert result.transitions == appended + 2  # the run's create and stop
            stored = {e["entity"]: (e["state"], e["live"], encode_text(e["data"])) for e in reader.entities("toy")}
        expected = {k: (e.state, e.live, encode_text(e.data)) for k, e in entities.items()}
        assert stored == expected
