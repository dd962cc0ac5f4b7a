"""The reconciliation machine: its table, its data checks and the report it carries."""

from __future__ import annotations

from typing import Any

import pytest

from machines import RECONCILIATION, InvalidData, InvalidTransition, ReconciliationState
from machines.reconciliation import REPORT_COUNTS

COUNTS = dict.fromkeys(REPORT_COUNTS, 0)
REPORT = {"counts": {**COUNTS, "orders_checked": 3, "lost": 1}, "differences": [{"kind": "lost", "detail": "o1"}]}
VALID: dict[str, dict[str, Any]] = {
    "abandon": {"reason": "its run ended without a clean stop"},
    "fail": {"error": "venue unreachable"},
    "retry": {},
    "complete": REPORT,
}
ALLOWED = {
    ("running", "fail"): "failed",
    ("failed", "retry"): "running",
    ("running", "complete"): "done",
    ("running", "abandon"): "abandoned",
    ("failed", "abandon"): "abandoned",
}


def entity_in(state: str) -> Any:
    entity, _ = RECONCILIATION.create("recon-r1-1", now_ms=5, reason="run 1 crashed")
    if state == "failed":
        RECONCILIATION.fire(entity, "fail", now_ms=6, error="timeout")
    elif state == "done":
        RECONCILIATION.fire(entity, "complete", now_ms=6, **REPORT)
    elif state == "abandoned":
        RECONCILIATION.fire(entity, "abandon", now_ms=6, reason="killed")
    return entity


def test_create() -> None:
    entity, created = RECONCILIATION.create("recon-r1-1", now_ms=5, reason="run 1 crashed")
    assert entity.state == ReconciliationState.running
    assert entity.data == {"started_ms": 5, "reason": "run 1 crashed", "attempts": 1, "error": None, "ended_ms": None}
    assert created.dest == "running"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"reason": "x"}, "now_ms"),
        ({"now_ms": -1, "reason": "x"}, "now_ms"),
        ({"now_ms": True, "reason": "x"}, "now_ms"),
        ({"now_ms": 1}, "reason"),
        ({"now_ms": 1, "reason": ""}, "reason"),
        ({"now_ms": 1, "reason": "x", "extra": 1}, "unknown fields: extra"),
        ({"now_ms": 2**63, "reason": "x"}, "now_ms must be a non-negative int"),
    ],
)
def test_create_refuses_bad_data(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidData, match=message):
        RECONCILIATION.create("recon-r1-1", **data)


@pytest.mark.parametrize("state", [s.value for s in ReconciliationState])
@pytest.mark.parametrize("trigger", sorted(VALID))
def test_every_state_and_trigger(state: str, trigger: str) -> None:
    entity = entity_in(state)
    dest = ALLOWED.get((state, trigger))
    if dest is None:
        with pytest.raises(InvalidTransition):
            RECONCILIATION.fire(entity, trigger, now_ms=9, **VALID[trigger])
        assert entity.state == state
    else:
        RECONCILIATION.fire(entity, trigger, now_ms=9, **VALID[trigger])
        assert entity.state == dest


def test_fail_retry_complete_keeps_the_report() -> None:
    entity = entity_in("running")
    RECONCILIATION.fire(entity, "fail", now_ms=7, error="timeout")
    assert (entity.data["error"], entity.data["ended_ms"]) == ("timeout", 7)
    RECONCILIATION.fire(entity, "retry", now_ms=8)
    assert (entity.data["attempts"], entity.data["ended_ms"]) == (2, None)
    transition = RECONCILIATION.fire(entity, "complete", now_ms=9, **REPORT)
    assert entity.state == "done"
    assert not entity.live
    assert entity.data["counts"]["lost"] == 1
    assert entity.data["differences"] == 1
    assert entity.data["error"] is None
    assert transition.data["differences"] == [{"kind": "lost", "detail": "o1"}]  # the report is in the journal row


@pytest.mark.parametrize(
    ("trigger", "data", "message"),
    [
        ("abandon", {}, "reason"),
        ("fail", {}, "error"),
        ("fail", {"error": ""}, "error"),
        ("retry", {}, "now_ms"),
        ("complete", {"counts": COUNTS}, "differences"),
        ("complete", {"counts": {"lost": 1}, "differences": []}, "counts must hold exactly"),
        ("complete", {"counts": {**COUNTS, "lost": -1}, "differences": []}, "counts.lost"),
        ("complete", {"counts": {**COUNTS, "lost": True}, "differences": []}, "counts.lost"),
        ("complete", {"counts": COUNTS, "differences": [{"kind": "x"}]}, "differences"),
        ("complete", {"counts": COUNTS, "differences": "none"}, "differences"),
        ("abandon", {"reason": "x", "error": "y"}, "unknown fields: error"),
        ("fail", {"error": "x", "reason": "y"}, "unknown fields: reason"),
        ("retry", {"now_ms": 9, "error": "x"}, "unknown fields: error"),
        ("complete", {**REPORT, "reason": "x"}, "unknown fields: reason"),
        ("retry", {"now_ms": -1}, "now_ms must be a non-negative int"),
    ],
)
def test_trigger_data_is_checked(trigger: str, data: dict[str, Any], message: str) -> None:
    entity = entity_in("failed" if trigger == "retry" else "running")
    now = {} if trigger == "retry" else {"now_ms": 9}
    with pytest.raises(InvalidData, match=message):
        RECONCILIATION.fire(entity, trigger, **now, **data)
