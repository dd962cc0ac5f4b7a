"""Claimed namespaces of new ids (``Journal.claim_fresh``): no lookup above the mark, the create
check's guarantee unchanged below it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from storage import Journal, JournalDataError
from tests.toy import TOY


def lookups(journal: Journal) -> list[str]:
    """The entity lookups the journal's connection runs from now on (a trace of its statements)."""
    seen: list[str] = []
    conn = journal._conn
    assert conn is not None
    conn.set_trace_callback(lambda sql: seen.append(sql) if "entities WHERE" in sql else None)
    return seen


def create(journal: Journal, entity_id: str) -> None:
    entity, created = TOY.create(entity_id)
    journal.append(created, entity)


def test_ids_above_the_mark_are_answered_without_a_lookup(journal: Journal) -> None:
    assert journal.claim_fresh("toy", "p-")
    seen = lookups(journal)
    for entity_id in ("p-000001", "p-000002", "p-999999", "p-1000000"):  # the counter outgrows its width
        assert not journal.has_entity("toy", entity_id)
        create(journal, entity_id)
        assert journal.has_entity("toy", entity_id)
    journal.commit()
    assert not journal.has_entity("toy", "p-1000001")
    assert seen == []


def test_a_second_create_is_refused_in_a_claimed_namespace_too(journal: Journal) -> None:
    assert journal.claim_fresh("toy", "p-")
    create(journal, "p-000005")
    with pytest.raises(JournalDataError, match="already exists"):
        create(journal, "p-000005")  # buffered
    seen = lookups(journal)
    create(journal, "p-000003")  # below the mark: looked up, and new
    assert len(seen) == 1
    journal.commit()
    for entity_id in ("p-000003", "p-000005"):  # committed
        with pytest.raises(JournalDataError, match="already exists"):
            create(journal, entity_id)
    assert journal.has_entity("toy", "p-000003")
    assert not journal.has_entity("toy", "p-000004")


def test_a_namespace_that_holds_an_entity_is_not_claimed(open_journal: Callable[..., Journal], db_path: str) -> None:
    with open_journal(db_path) as journal:
        create(journal, "q-000009")
        assert not journal.claim_fresh("toy", "q-")  # appended, not yet committed
        journal.commit()
        assert not journal.claim_fresh("toy", "q-")
    with open_journal(db_path) as journal:
        assert not journal.claim_fresh("toy", "q-")  # committed by an earlier run
        assert journal.claim_fresh("toy", "q-0000091")  # a longer prefix nobody used
        seen = lookups(journal)
        assert journal.has_entity("toy", "q-000009")  # outside the claimed one: looked up
        with pytest.raises(JournalDataError, match="already exists"):
            create(journal, "q-000009")
        assert len(seen) == 2
        assert journal.claim_fresh("toy", "q-0000091")  # claimed before: still claimed


def test_other_machines_and_prefixes_are_looked_up(journal: Journal) -> None:
    assert journal.claim_fresh("toy", "p-")
    seen = lookups(journal)
    assert not journal.has_entity("toy", "x-000001")
    assert not journal.has_entity("run", "p-000001")
    assert len(seen) == 2
