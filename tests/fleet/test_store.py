"""``FleetStore.ingest`` on a real PostgreSQL: idempotent re-sends, and every refusal an incident."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from storage.codec import GENESIS_HASH, row_hash
from storage.fleet.errors import ChainBroken
from storage.fleet.store import AnomalyRow, FleetStore, KernelHead, TransitionRow
from storage.fleet.verify import compare


def chain(count: int, previous: str = GENESIS_HASH, first_seq: int = 1) -> list[TransitionRow]:
    """``count`` toy rows chained with the journal's hash function."""
    rows = []
    for seq in range(first_seq, first_seq + count):
        data = f'{{"n":{seq}}}'
        header = (seq, 1_000 + seq, 1, "toy", "t1", "start", "idle", "active")
        previous = row_hash(previous, header, data.encode())
        rows.append(TransitionRow(*header, data, previous))
    return rows


def incidents(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT kind, seq, expected_hash, got_hash FROM incidents ORDER BY id").fetchall()


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM transitions").fetchone()
    assert row is not None
    return int(row[0])


def test_a_resent_overlapping_batch_changes_nothing(pg_dsn: str) -> None:
    rows = chain(5)
    with FleetStore(pg_dsn, host="h1") as store:
        head = store.ingest("k1", rows[:3])
        assert head == KernelHead(3, rows[2].hash, 0)
        assert store.ingest("k1", rows[:3]) == head  # the same batch again
        assert store.ingest("k1", rows[1:], [AnomalyRow(1, 5, 1, "feed", "bad", "why", "s")]) == KernelHead(
            5, rows[4].hash, 1
        )
        assert store.head("k1") == KernelHead(5, rows[4].hash, 1)
        assert store.head("nobody") == KernelHead(0, GENESIS_HASH, 0)
    assert count(pg_dsn) == 5
    assert incidents(pg_dsn) == []


def test_a_different_row_under_a_shipped_seq_is_refused_as_an_incident(pg_dsn: str) -> None:
    rows = chain(3)
    forged = dataclasses.replace(rows[1], hash="f" * 64)
    with FleetStore(pg_dsn) as store:
        store.ingest("k1", rows)
        with pytest.raises(ChainBroken) as caught:
            store.ingest("k1", [rows[0], forged, *chain(1, forged.hash, 3)])
    assert (caught.value.kind, caught.value.seq) == ("rewritten", 2)
    assert incidents(pg_dsn) == [("rewritten", 2, rows[1].hash, "f" * 64)]
    assert count(pg_dsn) == 3


def test_a_row_that_does_not_continue_the_chain_is_refused(pg_dsn: str) -> None:
    rows = chain(4)
    other = chain(2, previous="1" * 64, first_seq=3)  # seq 3 and 4 of some other chain
    with FleetStore(pg_dsn) as store:
        store.ingest("k1", rows[:2])
        with pytest.raises(ChainBroken, match="seq 3"):
            store.ingest("k1", other)
        assert store.head("k1") == KernelHead(2, rows[1].hash, 0)
    assert incidents(pg_dsn) == [("chain_broken", 3, rows[2].hash, other[0].hash)]
    assert count(pg_dsn) == 2


def test_a_batch_that_skips_rows_is_refused(pg_dsn: str) -> None:
    rows = chain(4)
    with FleetStore(pg_dsn) as store:
        store.ingest("k1", rows[:1])
        with pytest.raises(ChainBroken, match="gap at seq 2"):
            store.ingest("k1", rows[2:])
    assert incidents(pg_dsn) == [("gap", 2, rows[0].hash, "")]


def test_kernels_are_kept_apart(pg_dsn: str) -> None:
    with FleetStore(pg_dsn) as store:
        store.ingest("k1", chain(3))
        store.ingest("k2", chain(2))
        assert store.head("k1").last_seq == 3
        assert store.head("k2").last_seq == 2
        assert list(store.hashes("k2")) == [(r.seq, r.hash) for r in chain(2)]


def test_compare_merges_both_streams() -> None:
    local = [(1, "a"), (2, "b"), (3, "x"), (5, "e"), (6, "f")]
    store = [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    result = compare(local, store)
    assert (result.compared, result.mismatches, result.first_mismatch) == (4, 1, (3, "x", "c"))
    assert (result.missing_locally, result.first_missing_locally) == (1, 4)
    assert (result.missing_in_store, result.first_missing_in_store) == (1, 6)
    assert not result.ok
    lag = compare([(1, "a"), (2, "b")], [(1, "a")])
    assert lag.ok
    assert (lag.compared, lag.missing_in_store) == (1, 1)
    assert compare([], []).ok
