"""The fleet reader's replay of one entity from the store's rows (no PostgreSQL needed): the data
it rebuilds, and the histories it refuses (each a ``ShipError`` naming kernel, machine and entity)."""

from __future__ import annotations

import pytest

import tests.toy  # noqa: F401  (registers the toy machine)
from storage.fleet.errors import ShipError
from storage.fleet.reader import _grouped, _replay

K = "kernel01"


def row(seq: int, trigger: str, source: str | None, dest: str, data: str = "{}") -> tuple[object, ...]:
    """A row as the reader streams it: kernel_id, machine, entity, seq, trigger, source, dest, data."""
    return (K, "toy", "t-1", seq, trigger, source, dest, data)


def test_replay_rebuilds_the_entity_s_data_and_state() -> None:
    rows = [
        row(3, "create", None, "idle", '{"target":"5"}'),
        row(4, "start", "idle", "active"),
        row(9, "add", "active", "active", '{"qty":"2.5"}'),
        row(12, "add", "active", "active", '{"qty":"2.5"}'),
        row(13, "finish", "active", "done"),
    ]
    assert _replay(K, "toy", "t-1", rows) == ("done", 13, False, {"starts": 1, "target": "5", "total": "5.0"})
    assert _replay(K, "toy", "t-1", rows[:3]) == ("active", 9, True, {"starts": 1, "target": "5", "total": "2.5"})


@pytest.mark.parametrize(
    ("machine", "rows", "message"),
    [
        ("nosuch", [row(1, "create", None, "idle")], "nosuch 't-1' does not replay"),
        ("toy", [row(2, "start", "idle", "active")], "its first row \\(seq 2\\) is 'start', not 'create'"),
        ("toy", [row(1, "create", None, "idle"), row(2, "finish", "idle", "done")], "does not replay"),
        ("toy", [row(1, "create", None, "active")], "replay reached 'idle', the last row says 'active'"),
    ],
)
def test_replay_refuses_a_history_the_machine_does_not_accept(
    machine: str, rows: list[tuple[object, ...]], message: str
) -> None:
    with pytest.raises(ShipError, match=message) as caught:
        _replay(K, machine, "t-1", rows)
    assert str(caught.value).startswith(f"kernel {K}: {machine} 't-1'")


def test_rows_are_grouped_by_kernel_machine_and_entity() -> None:
    rows = [
        ("a", "toy", "x", 1),
        ("a", "toy", "x", 2),
        ("a", "toy", "y", 3),
        ("b", "toy", "x", 1),
    ]
    assert [(key, [r[3] for r in group]) for key, group in _grouped(iter(rows))] == [
        (("a", "toy", "x"), [1, 2]),
        (("a", "toy", "y"), [3]),
        (("b", "toy", "x"), [1]),
    ]
    assert list(_grouped(iter([]))) == []
