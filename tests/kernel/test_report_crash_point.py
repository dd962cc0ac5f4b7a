"""The crash point ``after_report_commit`` (kernel/faults.py): which commits it counts.

The kill itself is ``crash_point``'s (``tests/kernel/test_faults.py``); the torture test uses the
point against a real kernel. Here ``crash_point`` is replaced by a recorder.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from kernel import faults
from machines import Transition


def change(machine: str, trigger: str) -> tuple[object, Transition]:
    return None, Transition(machine, "o-1", trigger, "accepted", "filled", MappingProxyType({}))


@pytest.fixture
def hits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(faults, "_TARGET", ("after_report_commit", 2))
    monkeypatch.setattr(faults, "crash_point", seen.append)
    return seen


def test_the_point_parses() -> None:
    assert faults._parse("after_report_commit:3") == ("after_report_commit", 3)


def test_only_normal_commits_with_an_order_fill_count(hits: list[str]) -> None:
    faults.after_report_commit(True, [change("order", "accept")])
    faults.after_report_commit(False, [change("order", "fill")])  # a full commit
    faults.after_report_commit(True, [change("position", "fill")])
    faults.after_report_commit(True, [change("order", "reconcile_fill")])  # reconciling: its own point
    assert hits == []
    faults.after_report_commit(True, [change("order", "accept"), change("order", "fill"), change("position", "fill")])
    assert hits == ["after_report_commit"]


def test_unset_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(faults, "_TARGET", None)
    monkeypatch.setattr(faults, "crash_point", seen.append)
    faults.after_report_commit(True, [change("order", "fill")])
    monkeypatch.setattr(faults, "_TARGET", ("after_send", 1))
    faults.after_report_commit(True, [change("order", "fill")])
    assert seen == []
