"""The ``health`` machine and its assessment (``machines.health``).

Ladder: creation; a table test over every state x trigger against the table the
spec gives (written out here, not derived from ``HEALTH``), and the rules table likewise; ``now_ms``, ``reason`` and
``pauses_entry`` validation; the guards on identical re-reports; each health rule at, under and
over its threshold; ``overall`` aggregation and reason order; ``trigger_for`` for every (entity
state, finding) pair; a Hypothesis ``RuleBasedStateMachine`` keeping every entity equal to the
assessment; the docs (rules table verbatim) and the documented scenarios.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import machines
import machines.health as health_module
from machines import CREATE, HEALTH, Entity, FeedState, HealthState, InvalidData, InvalidTransition, registry
from machines.health import (
    COMPONENTS,
    FINDING_NAMES,
    KERNEL,
    RULES,
    Finding,
    HealthRule,
    Observation,
    Thresholds,
    assess,
    overall,
    reason_changed,
    reason_or_pause_changed,
    rules_markdown,
    trigger_for,
)
from machines.scenario import parse, run
from storage import codec

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "machines" / "health.md"
SCENARIOS = REPO / "docs" / "scenarios" / "health.json"
SOURCE = REPO / "machines" / "health.py"
LATE = 10**9
H = HealthState

# Everything fine: the baseline each rule test changes one field of.
FINE = Observation("streaming", venue_connected=True)

# -- helpers ----------------------------------------------------------------------------------


def snapshot(entity: Entity) -> tuple[str, dict[str, Any]]:
    return entity.state, copy.deepcopy(entity.data)


def assert_unchanged(entity: Entity, before: tuple[str, dict[str, Any]]) -> None:
    assert (entity.state, entity.data) == before


def new(entity_id: str = "feed", now_ms: int = 0) -> Entity:
    entity, _ = HEALTH.create(entity_id, now_ms=now_ms)
    return entity


def fire(entity: Entity, trigger: str, now_ms: int, **data: Any) -> Entity:
    HEALTH.fire(entity, trigger, now_ms=now_ms, **data)
    return entity


def healthy() -> Entity:
    return fire(new(), "ok", 10)


def degraded() -> Entity:
    return fire(healthy(), "degrade", 20, reason="feed stale", pauses_entry=True)


def unhealthy() -> Entity:
    return fire(degraded(), "fail", 30, reason="feed failed: auth refused")


def stopping() -> Entity:
    return fire(unhealthy(), "stop", 40, reason="operator stop")


def stopped() -> Entity:
    return fire(stopping(), "stopped", 50)


BUILDERS: dict[str, Callable[[], Entity]] = {
    "starting": new,
    "healthy": healthy,
    "degraded": degraded,
    "unhealthy": unhealthy,
    "stopping": stopping,
    "stopped": stopped,
}

# The transition table as the spec states it, written out by hand: (state, trigger) -> destination;
# absent: refused.
TABLE: dict[tuple[str, str], str] = {
    ("starting", "ok"): "healthy",
    ("starting", "degrade"): "degraded",
    ("starting", "fail"): "unhealthy",
    ("starting", "stop"): "stopping",
    ("healthy", "degrade"): "degraded",
    ("healthy", "fail"): "unhealthy",
    ("healthy", "stop"): "stopping",
    ("degraded", "ok"): "healthy",
    ("degraded", "degrade"): "degraded",  # another reason or pause
    ("degraded", "fail"): "unhealthy",
    ("degraded", "stop"): "stopping",
    ("unhealthy", "ok"): "healthy",
    ("unhealthy", "degrade"): "degraded",
    ("unhealthy", "fail"): "unhealthy",  # another reason
    ("unhealthy", "stop"): "stopping",
    ("stopping", "stopped"): "stopped",
    # stopped: terminal, refuses everything
}
TRIGGERS = ("ok", "degrade", "fail", "stop", "stopped")
# Trigger data that differs from what every builder's entity says (so the guards let it through).
VALID: dict[str, dict[str, Any]] = {
    "ok": {},
    "degrade": {"reason": "venue session down", "pauses_entry": False},
    "fail": {"reason": "journal cannot commit: disk full"},
    "stop": {"reason": "SIGTERM"},
    "stopped": {},
}
# What each accepted trigger leaves in (reason, pauses_entry); None: the reason it had.
AFTER: dict[str, tuple[str | None, bool]] = {
    "ok": (None, False),
    "degrade": ("venue session down", False),
    "fail": ("journal cannot commit: disk full", True),
    "stop": ("SIGTERM", True),
}


# -- creation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("entity_id", [*FINDING_NAMES, "feed-r7", "kernel-r12"])
def test_create(entity_id: str) -> None:
    entity, created = HEALTH.create(entity_id, now_ms=1234)
    assert (entity.state, entity.entity_id, entity.live) == ("starting", entity_id, True)
    assert entity.data == {"since_ms": 1234, "reason": None, "pauses_entry": True, "changes": 0}
    assert (created.machine, created.trigger, created.source, created.dest) == ("health", CREATE, None, "starting")
    assert dict(created.data) == {"now_ms": 1234}


def test_finding_names() -> None:
    assert KERNEL == "kernel"
    assert COMPONENTS == ("feed", "venue", "journal", "loop", "strategy")
    assert ("kernel", *COMPONENTS) == FINDING_NAMES


@pytest.mark.parametrize(
    ("entity_id", "data", "message"),
    [
        pytest.param("feed", {}, "now_ms", id="missing-now"),
        pytest.param("feed", {"now_ms": -1}, "now_ms must be a non-negative int", id="negative-now"),
        pytest.param("feed", {"now_ms": 1.0}, "now_ms is a float", id="float-now"),
        pytest.param("feed", {"now_ms": True}, "now_ms must be a non-negative int", id="bool-now"),
        pytest.param("feed", {"now_ms": 0, "reason": "x"}, "unknown health fields: reason", id="unknown-field"),
    ],
)
def test_create_refuses_bad_input(entity_id: str, data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidData, match=message) as info:
        HEALTH.create(entity_id, **data)
    assert (info.value.machine, info.value.entity_id, info.value.state, info.value.trigger) == (
        "health",
        entity_id,
        None,
        CREATE,
    )


def test_public_names() -> None:
    assert HEALTH.state_names == ("starting", "healthy", "degraded", "unhealthy", "stopping", "stopped")
    assert HEALTH.initial is H.starting
    assert HEALTH.terminal_names == {"stopped"}
    assert HEALTH.triggers == TRIGGERS
    assert registry.get("health") is HEALTH
    assert machines.HEALTH is HEALTH
    assert machines.HealthState is HealthState
    assert (machines.Finding, machines.HealthRule, machines.Observation, machines.Thresholds) == (
        Finding,
        HealthRule,
        Observation,
        Thresholds,
    )
    assert all(rule.doc for rule in HEALTH.rules)
    assert all(HEALTH.state_docs[state] for state in HealthState)


# -- table test: every state x every trigger ---------------------------------------------------


def test_builders_cover_every_state() -> None:
    assert set(BUILDERS) == set(HEALTH.state_names)
    for state, build in BUILDERS.items():
        assert build().state == state


@pytest.mark.parametrize(
    ("state", "trigger"),
    list(itertools.product(BUILDERS, TRIGGERS)),
    ids=[f"{s}-{t}" for s, t in itertools.product(BUILDERS, TRIGGERS)],
)
def test_every_state_and_trigger(state: str, trigger: str) -> None:
    entity = BUILDERS[state]()
    before = snapshot(entity)
    data = {"now_ms": LATE, **VALID[trigger]}
    if (state, trigger) not in TABLE:
        with pytest.raises(InvalidTransition) as info:
            HEALTH.fire(entity, trigger, **data)
        assert (info.value.machine, info.value.entity_id, info.value.state, info.value.trigger) == (
            "health",
            "feed",
            state,
            trigger,
        )
        assert str(info.value).startswith(f"health 'feed' in state {state!r} refused trigger {trigger!r}")
        assert_unchanged(entity, before)
        return
    transition = HEALTH.fire(entity, trigger, **data)
    assert entity.state == TABLE[state, trigger]
    assert (transition.source, transition.dest, transition.trigger, dict(transition.data)) == (
        state,
        entity.state,
        trigger,
        data,
    )
    reason, pauses = AFTER.get(trigger, (before[1]["reason"], True))
    assert entity.data == {
        "since_ms": LATE,
        "reason": reason,
        "pauses_entry": pauses,
        "changes": before[1]["changes"] + 1,
    }


def test_unknown_trigger() -> None:
    entity = healthy()
    with pytest.raises(InvalidTransition, match="unknown trigger"):
        HEALTH.fire(entity, "recover", now_ms=1)


def test_stopped_is_final_and_keeps_the_stop_reason() -> None:
    entity = stopped()
    assert not entity.live
    assert HEALTH.allowed_triggers("stopped") == ()
    assert HEALTH.allowed_triggers("stopping") == ("stopped",)
    assert entity.data == {"since_ms": 50, "reason": "operator stop", "pauses_entry": True, "changes": 5}


def test_a_whole_life_counts_every_change() -> None:
    entity = new("kernel", 5)
    fire(entity, "degrade", 10, reason="feed: feed not streaming (connecting)", pauses_entry=True)
    fire(entity, "ok", 20)
    fire(entity, "degrade", 30, reason="loop: event loop lag >= 250 ms", pauses_entry=False)
    fire(entity, "degrade", 31, reason="loop: event loop lag >= 250 ms", pauses_entry=True)
    fire(entity, "fail", 40, reason="journal: journal cannot commit: disk full")
    fire(entity, "fail", 41, reason="journal: journal cannot commit: disk I/O error")
    fire(entity, "degrade", 50, reason="journal: slow commits (>= 250 ms)", pauses_entry=False)
    assert (entity.state, entity.data) == (
        "degraded",
        {"since_ms": 50, "reason": "journal: slow commits (>= 250 ms)", "pauses_entry": False, "changes": 7},
    )


# -- trigger data -----------------------------------------------------------------------------

ACCEPTING = [(s, t) for (s, t) in TABLE]


@pytest.mark.parametrize(("state", "trigger"), ACCEPTING, ids=[f"{s}-{t}" for s, t in ACCEPTING])
def test_every_trigger_requires_now_ms(state: str, trigger: str) -> None:
    entity = BUILDERS[state]()
    before = snapshot(entity)
    with pytest.raises(InvalidData, match=r"now_ms .* is required"):
        HEALTH.fire(entity, trigger, **VALID[trigger])
    for bad in ("1000", True, -1, None, 2**63):
        with pytest.raises(InvalidData, match="now_ms must be a non-negative int"):
            HEALTH.fire(entity, trigger, **VALID[trigger], now_ms=bad)
    with pytest.raises(InvalidData, match="now_ms is a float"):
        HEALTH.fire(entity, trigger, **VALID[trigger], now_ms=1.5)
    with pytest.raises(InvalidData, match="unknown fields: extra"):
        HEALTH.fire(entity, trigger, **VALID[trigger], now_ms=LATE, extra=1)
    assert_unchanged(entity, before)
    HEALTH.fire(entity, trigger, **VALID[trigger], now_ms=0)  # zero is a time like any other
    assert entity.data["since_ms"] == 0


REASON_TRIGGERS = [(s, t) for (s, t) in TABLE if t in ("degrade", "fail", "stop")]


@pytest.mark.parametrize(("state", "trigger"), REASON_TRIGGERS, ids=[f"{s}-{t}" for s, t in REASON_TRIGGERS])
@pytest.mark.parametrize("reason", [None, "", 5, ["x"]], ids=["missing", "empty", "int", "list"])
def test_reason_must_be_non_empty_text(state: str, trigger: str, reason: Any) -> None:
    entity = BUILDERS[state]()
    before = snapshot(entity)
    data = {k: v for k, v in VALID[trigger].items() if k != "reason"}
    if reason is not None:
        data["reason"] = reason
    with pytest.raises(InvalidData, match="reason must be a non-empty string"):
        HEALTH.fire(entity, trigger, now_ms=LATE, **data)
    assert_unchanged(entity, before)


@pytest.mark.parametrize("state", ["starting", "healthy", "degraded", "unhealthy"])
@pytest.mark.parametrize("pauses", [None, 1, "yes", 0], ids=["missing", "one", "text", "zero"])
def test_degrade_needs_pauses_entry_as_a_bool(state: str, pauses: Any) -> None:
    entity = BUILDERS[state]()
    before = snapshot(entity)
    data: dict[str, Any] = {"reason": "venue session down"}
    if pauses is not None:
        data["pauses_entry"] = pauses
    with pytest.raises(InvalidData, match="pauses_entry must be true or false"):
        fire(entity, "degrade", LATE, **data)
    assert_unchanged(entity, before)


@pytest.mark.parametrize(
    ("trigger", "extra"),
    [("ok", "reason"), ("fail", "pauses_entry"), ("stop", "pauses_entry"), ("stopped", "reason")],
)
def test_fields_a_trigger_does_not_take_are_refused(trigger: str, extra: str) -> None:
    state = next(s for (s, t) in TABLE if t == trigger)
    entity = BUILDERS[state]()
    before = snapshot(entity)
    with pytest.raises(InvalidData, match=f"unknown fields: {extra}"):
        fire(entity, trigger, LATE, **VALID[trigger], **{extra: "x"})
    assert_unchanged(entity, before)


# -- guards: an identical re-report is refused loudly ----------------------------------------


def test_identical_degrade_is_refused() -> None:
    entity = degraded()
    before = snapshot(entity)
    with pytest.raises(InvalidTransition, match="no guard allowed it") as info:
        fire(entity, "degrade", LATE, reason="feed stale", pauses_entry=True)
    assert (info.value.state, info.value.trigger) == ("degraded", "degrade")
    assert_unchanged(entity, before)


@pytest.mark.parametrize(
    ("reason", "pauses"),
    [("feed resyncing after a gap", True), ("feed stale", False), ("feed resyncing after a gap", False)],
)
def test_degrade_with_another_reason_or_pause_is_recorded(reason: str, pauses: bool) -> None:
    entity = degraded()
    transition = HEALTH.fire(entity, "degrade", now_ms=99, reason=reason, pauses_entry=pauses)
    assert (transition.source, transition.dest) == ("degraded", "degraded")
    assert entity.data == {"since_ms": 99, "reason": reason, "pauses_entry": pauses, "changes": 3}


def test_identical_fail_is_refused_another_reason_is_recorded() -> None:
    entity = unhealthy()
    before = snapshot(entity)
    with pytest.raises(InvalidTransition, match="no guard allowed it"):
        fire(entity, "fail", LATE, reason="feed failed: auth refused")
    assert_unchanged(entity, before)
    fire(entity, "fail", 77, reason="feed failed: retry budget spent")
    assert (entity.state, entity.data) == (
        "unhealthy",
        {"since_ms": 77, "reason": "feed failed: retry budget spent", "pauses_entry": True, "changes": 4},
    )


def test_the_same_report_from_another_state_is_a_change() -> None:
    # The guards compare only within degraded/unhealthy; from elsewhere the state itself changes.
    entity = fire(new(), "degrade", 1, reason="r", pauses_entry=True)
    fire(entity, "fail", 2, reason="r")
    fire(entity, "degrade", 3, reason="r", pauses_entry=True)
    assert (entity.state, entity.data["changes"]) == ("degraded", 3)


def test_guards_directly_both_ways() -> None:
    entity = degraded()
    assert not reason_or_pause_changed(entity, {"now_ms": 1, "reason": "feed stale", "pauses_entry": True})
    assert reason_or_pause_changed(entity, {"now_ms": 1, "reason": "feed stale", "pauses_entry": False})
    assert reason_or_pause_changed(entity, {"now_ms": 1, "reason": "other", "pauses_entry": True})
    entity = unhealthy()
    assert not reason_changed(entity, {"now_ms": 1, "reason": "feed failed: auth refused"})
    assert reason_changed(entity, {"now_ms": 1, "reason": "other"})


def test_guards_check_the_data_before_comparing() -> None:
    with pytest.raises(InvalidData, match="now_ms"):
        reason_or_pause_changed(degraded(), {"reason": "feed stale", "pauses_entry": True})
    with pytest.raises(InvalidData, match="reason"):
        reason_changed(unhealthy(), {"now_ms": 1})


# -- thresholds and observations ---------------------------------------------------------------

THRESHOLD_FIELDS = [f.name for f in dataclasses.fields(Thresholds) if f.name != "venue_outage_halt_ms"]


def test_threshold_defaults() -> None:
    assert dataclasses.asdict(Thresholds()) == {
        "loop_lag_degraded_ms": 250,
        "loop_lag_unhealthy_ms": 2000,
        "commit_latency_degraded_ms": 250,
        "strategy_errors_unhealthy": 5,
        "venue_outage_halt_ms": 0,  # off: a venue outage never halts by itself
    }


@pytest.mark.parametrize("bad", [-1, True, 1.5, "300", None])
def test_venue_outage_halt_ms_is_a_non_negative_int(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^venue_outage_halt_ms must be a non-negative int"):
        Thresholds(venue_outage_halt_ms=bad)
    assert Thresholds(venue_outage_halt_ms=0).venue_outage_halt_ms == 0


@pytest.mark.parametrize("name", THRESHOLD_FIELDS)
@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "300", None])
def test_thresholds_must_be_positive_ints(name: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a positive int"):
        Thresholds(**{name: bad})


@pytest.mark.parametrize("unhealthy_ms", [250, 100])
def test_unhealthy_lag_must_be_above_degraded_lag(unhealthy_ms: int) -> None:
    with pytest.raises(ValueError, match=r"loop_lag_unhealthy_ms .* must be above loop_lag_degraded_ms"):
        Thresholds(loop_lag_degraded_ms=250, loop_lag_unhealthy_ms=unhealthy_ms)
    assert Thresholds(loop_lag_degraded_ms=1, loop_lag_unhealthy_ms=2).loop_lag_unhealthy_ms == 2


def test_thresholds_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Thresholds().loop_lag_degraded_ms = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"feed_state": "streamin"}, "feed_state must be a feed state name or None", id="typo-state"),
        pytest.param({"feed_state": 3}, "feed_state must be a feed state name or None", id="int-state"),
        pytest.param({"feed_reason": 3}, "feed_reason must be a string or None", id="int-feed-reason"),
        pytest.param({"venue_failed": False}, "venue_failed must be a string or None", id="bool-venue-failed"),
        pytest.param({"journal_error": 1}, "journal_error must be a string or None", id="int-journal-error"),
        pytest.param({"strategy_error": b"x"}, "strategy_error must be a string or None", id="bytes-error"),
        pytest.param({"venue_connected": 1}, "venue_connected must be true or false", id="int-connected"),
        pytest.param({"venue_resolving": None}, "venue_resolving must be true or false", id="none-resolving"),
        pytest.param({"commit_latency_ms": -1}, "commit_latency_ms must be a non-negative int", id="negative-latency"),
        pytest.param({"loop_lag_ms": 2.5}, "loop_lag_ms must be a non-negative int", id="float-lag"),
        pytest.param({"strategy_errors": True}, "strategy_errors must be a non-negative int", id="bool-errors"),
        pytest.param({"venue_down_ms": -1}, "venue_down_ms must be a non-negative int", id="negative-outage"),
        pytest.param({"venue_down_ms": 1.5}, "venue_down_ms must be a non-negative int", id="float-outage"),
    ],
)
def test_observation_refuses_bad_measurements(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(FINE, **change)


def test_observation_accepts_every_feed_state_and_enum_members() -> None:
    for state in FeedState:
        assert Observation(state).feed_state == state
        assert Observation(str(state.value)).feed_state == state
    assert Observation(None).feed_state is None


# -- the rules, one component at a time --------------------------------------------------------


def level_of(observation: Observation, component: str, thresholds: Thresholds | None = None) -> Finding:
    findings = assess(observation) if thresholds is None else assess(observation, thresholds)
    return findings[component]


def test_everything_fine_is_healthy() -> None:
    findings = assess(FINE)
    assert list(findings) == list(COMPONENTS)
    assert findings == {c: Finding(c, H.healthy, None, False) for c in COMPONENTS}


FEED_EXPECTED: dict[str | None, tuple[HealthState, str | None, bool]] = {
    "streaming": (H.healthy, None, False),
    "failed": (H.unhealthy, "feed failed: auth refused", True),
    "stale": (H.degraded, "feed stale", True),
    "resyncing": (H.degraded, "feed resyncing after a gap", True),
    "idle": (H.degraded, "feed not streaming (idle)", True),
    "connecting": (H.degraded, "feed not streaming (connecting)", True),
    "subscribing": (H.degraded, "feed not streaming (subscribing)", True),
    "syncing": (H.degraded, "feed not streaming (syncing)", True),
    "backoff": (H.degraded, "feed not streaming (backoff)", True),
    "closed": (H.degraded, "feed not streaming (closed)", True),
    None: (H.degraded, "feed not streaming (no feed)", True),
}


def test_feed_expectations_cover_every_feed_state() -> None:
    assert set(FEED_EXPECTED) == {*(str(s.value) for s in FeedState), None}


@pytest.mark.parametrize("feed_state", list(FEED_EXPECTED), ids=str)
def test_feed_rules(feed_state: str | None) -> None:
    finding = level_of(dataclasses.replace(FINE, feed_state=feed_state, feed_reason="auth refused"), "feed")
    assert (finding.level, finding.reason, finding.pauses_entry) == FEED_EXPECTED[feed_state]


@pytest.mark.parametrize(("feed_reason", "reason"), [(None, "feed failed"), ("", "feed failed")])
def test_failed_feed_without_a_reason(feed_reason: str | None, reason: str) -> None:
    finding = level_of(dataclasses.replace(FINE, feed_state="failed", feed_reason=feed_reason), "feed")
    assert (finding.level, finding.reason) == (H.unhealthy, reason)


def test_feed_reason_does_not_matter_unless_failed() -> None:
    assert level_of(dataclasses.replace(FINE, feed_reason="going away"), "feed").level == H.healthy
    assert level_of(dataclasses.replace(FINE, feed_state="backoff", feed_reason="x"), "feed").reason == (
        "feed not streaming (backoff)"
    )


@pytest.mark.parametrize(
    ("connected", "resolving", "failed", "expected"),
    [
        (True, False, None, (H.healthy, None, False)),
        (True, True, None, (H.degraded, "reconciling with the venue", True)),
        (False, False, None, (H.degraded, "venue session down", True)),
        (False, True, None, (H.degraded, "venue session down", True)),  # down is worse than resolving
        (False, False, "5 reconnects refused", (H.unhealthy, "venue failed: 5 reconnects refused", True)),
        (True, True, "5 reconnects refused", (H.unhealthy, "venue failed: 5 reconnects refused", True)),
        (False, False, "", (H.unhealthy, "venue failed", True)),  # failed without a why is still failed
    ],
)
def test_venue_rules(
    connected: bool, resolving: bool, failed: str | None, expected: tuple[HealthState, str | None, bool]
) -> None:
    observation = dataclasses.replace(FINE, venue_connected=connected, venue_resolving=resolving, venue_failed=failed)
    finding = level_of(observation, "venue")
    assert (finding.level, finding.reason, finding.pauses_entry) == expected


DOWN = "venue session down"
HALTS = (H.unhealthy, "venue session down for >= 10000 ms", True)


@pytest.mark.parametrize(
    ("halt_ms", "connected", "down_ms", "expected"),
    [
        # Off (the default): however long the outage, the venue is only degraded, entry paused.
        (0, False, None, (H.degraded, DOWN, True)),
        (0, False, 0, (H.degraded, DOWN, True)),
        (0, False, 10_000, (H.degraded, DOWN, True)),
        (0, False, 86_400_000, (H.degraded, DOWN, True)),
        # Set to 10 s: degraded under it, unhealthy (which halts trading) at and over it.
        (10_000, False, None, (H.degraded, DOWN, True)),
        (10_000, False, 9_999, (H.degraded, DOWN, True)),
        (10_000, False, 10_000, HALTS),
        (10_000, False, 600_000, HALTS),
        # Connected again: the outage is over whatever the last measurement said.
        (10_000, True, 600_000, (H.healthy, None, False)),
        (10_000, True, None, (H.healthy, None, False)),
    ],
)
def test_venue_outage_halt_rows(
    halt_ms: int, connected: bool, down_ms: int | None, expected: tuple[HealthState, str | None, bool]
) -> None:
    observation = dataclasses.replace(FINE, venue_connected=connected, venue_down_ms=down_ms)
    finding = level_of(observation, "venue", Thresholds(venue_outage_halt_ms=halt_ms))
    assert (finding.level, finding.reason, finding.pauses_entry) == expected


def test_a_venue_that_cannot_reconnect_is_worse_than_a_long_outage() -> None:
    observation = dataclasses.replace(FINE, venue_connected=False, venue_down_ms=60_000, venue_failed="version 2")
    finding = level_of(observation, "venue", Thresholds(venue_outage_halt_ms=10_000))
    assert (finding.level, finding.reason) == (H.unhealthy, "venue failed: version 2")


def test_only_an_opted_in_outage_halts_trading() -> None:
    from machines.halt import health_halt
    from machines.trading import TRADING

    trading, _ = TRADING.create("trading", now_ms=0)
    outage = dataclasses.replace(FINE, venue_connected=False, venue_down_ms=3_600_000)
    off = assess(outage)
    assert health_halt(trading, overall(off), off) is None
    on = assess(outage, Thresholds(venue_outage_halt_ms=10_000))
    halt = health_halt(trading, overall(on), on)
    assert halt is not None
    assert (halt.trigger, halt.data) == (
        "health_unhealthy",
        {"component": "venue", "reason": "venue session down for >= 10000 ms"},
    )


@pytest.mark.parametrize(
    ("error", "latency", "expected"),
    [
        (None, 0, (H.healthy, None, False)),
        (None, 249, (H.healthy, None, False)),
        (None, 250, (H.degraded, "slow commits (>= 250 ms)", False)),
        (None, 10_000, (H.degraded, "slow commits (>= 250 ms)", False)),
        ("disk I/O error", 0, (H.unhealthy, "journal cannot commit: disk I/O error", True)),
        ("disk I/O error", 900, (H.unhealthy, "journal cannot commit: disk I/O error", True)),
        ("", 0, (H.unhealthy, "journal cannot commit", True)),
    ],
)
def test_journal_rules(error: str | None, latency: int, expected: tuple[HealthState, str | None, bool]) -> None:
    finding = level_of(dataclasses.replace(FINE, journal_error=error, commit_latency_ms=latency), "journal")
    assert (finding.level, finding.reason, finding.pauses_entry) == expected


@pytest.mark.parametrize(
    ("lag", "expected"),
    [
        (0, (H.healthy, None, False)),
        (249, (H.healthy, None, False)),
        (250, (H.degraded, "event loop lag >= 250 ms", False)),
        (251, (H.degraded, "event loop lag >= 250 ms", False)),
        (1999, (H.degraded, "event loop lag >= 250 ms", False)),
        (2000, (H.unhealthy, "event loop lag >= 2000 ms", True)),
        (60_000, (H.unhealthy, "event loop lag >= 2000 ms", True)),
    ],
)
def test_loop_rules(lag: int, expected: tuple[HealthState, str | None, bool]) -> None:
    finding = level_of(dataclasses.replace(FINE, loop_lag_ms=lag), "loop")
    assert (finding.level, finding.reason, finding.pauses_entry) == expected


@pytest.mark.parametrize(
    ("errors", "last", "expected"),
    [
        (0, None, (H.healthy, None, False)),
        (0, "KeyError: 'BTC'", (H.healthy, None, False)),  # a success reset the count: the old error is history
        (1, "KeyError: 'BTC'", (H.degraded, "strategy error: KeyError: 'BTC'", False)),
        (4, "KeyError: 'BTC'", (H.degraded, "strategy error: KeyError: 'BTC'", False)),
        (4, None, (H.degraded, "strategy error", False)),
        (5, "KeyError: 'BTC'", (H.unhealthy, "strategy failed 5 times in a row: KeyError: 'BTC'", True)),
        (6, "ValueError", (H.unhealthy, "strategy failed 6 times in a row: ValueError", True)),
        (5, None, (H.unhealthy, "strategy failed 5 times in a row", True)),
    ],
)
def test_strategy_rules(errors: int, last: str | None, expected: tuple[HealthState, str | None, bool]) -> None:
    finding = level_of(dataclasses.replace(FINE, strategy_errors=errors, strategy_error=last), "strategy")
    assert (finding.level, finding.reason, finding.pauses_entry) == expected


def test_thresholds_move_the_lines() -> None:
    thresholds = Thresholds(
        loop_lag_degraded_ms=10, loop_lag_unhealthy_ms=20, commit_latency_degraded_ms=5, strategy_errors_unhealthy=1
    )
    observation = dataclasses.replace(FINE, loop_lag_ms=10, commit_latency_ms=5, strategy_errors=1)
    findings = assess(observation, thresholds)
    assert (findings["loop"].level, findings["loop"].reason) == (H.degraded, "event loop lag >= 10 ms")
    assert (findings["journal"].level, findings["journal"].reason) == (H.degraded, "slow commits (>= 5 ms)")
    assert (findings["strategy"].level, findings["strategy"].reason) == (
        H.unhealthy,
        "strategy failed 1 times in a row",
    )
    assert assess(dataclasses.replace(observation, loop_lag_ms=20), thresholds)["loop"].level == H.unhealthy
    assert assess(dataclasses.replace(observation, loop_lag_ms=9, commit_latency_ms=4), thresholds) == {
        **findings,
        "loop": Finding("loop", H.healthy, None, False),
        "journal": Finding("journal", H.healthy, None, False),
    }


def test_components_are_assessed_independently() -> None:
    observation = Observation("stale", venue_connected=False, journal_error="disk full", loop_lag_ms=300)
    findings = assess(observation)
    assert [(f.component, f.level) for f in findings.values()] == [
        ("feed", H.degraded),
        ("venue", H.degraded),
        ("journal", H.unhealthy),
        ("loop", H.degraded),
        ("strategy", H.healthy),
    ]


def test_rules_are_worst_first_and_grouped_by_component() -> None:
    components = [r.component for r in RULES]
    assert list(dict.fromkeys(components)) == list(COMPONENTS)  # each component's rules are contiguous
    for component in COMPONENTS:
        levels = [r.level for r in RULES if r.component == component]
        assert levels == sorted(levels, key=[H.unhealthy, H.degraded].index), component
    assert all(r.pauses_entry for r in RULES if r.level == H.unhealthy)
    assert all(r.when for r in RULES)


# -- findings and rules validate themselves ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("order", H.healthy, None, False), "component must be one of", id="unknown-component"),
        pytest.param(("feed", H.stopping, "x", True), "level must be healthy, degraded or unhealthy", id="stopping"),
        pytest.param(("feed", "sick", "x", True), "level must be", id="unknown-level"),
        pytest.param(("feed", H.healthy, "fine", False), "a healthy finding has no reason", id="healthy-reason"),
        pytest.param(("feed", H.healthy, None, True), "a healthy finding .* does not pause", id="healthy-pause"),
        pytest.param(("feed", H.degraded, None, True), "a degraded finding needs a reason", id="no-reason"),
        pytest.param(("feed", H.degraded, "", True), "a degraded finding needs a reason", id="empty-reason"),
        pytest.param(("feed", H.unhealthy, "down", False), "an unhealthy finding always pauses", id="no-pause"),
        pytest.param(("feed", H.degraded, "x", 1), "pauses_entry must be true or false", id="int-pause"),
    ],
)
def test_finding_refuses_contradictions(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Finding(*args)


def test_finding_takes_a_level_name() -> None:
    finding = Finding("kernel", "degraded", "x", False)  # type: ignore[arg-type]
    assert finding.level is H.degraded


def _never(observation: Observation, thresholds: Thresholds) -> str | None:
    return None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("kernel", H.degraded, True, "x"), "component must be one of", id="kernel"),
        pytest.param(("feed", H.healthy, False, "x"), "a rule finds degraded or unhealthy", id="healthy"),
        pytest.param(("feed", H.unhealthy, False, "x"), "an unhealthy rule always pauses", id="no-pause"),
        pytest.param(("feed", H.degraded, True, ""), "when .* is required", id="no-when"),
    ],
)
def test_health_rule_refuses_contradictions(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HealthRule(*args, check=_never)


# -- overall -----------------------------------------------------------------------------------


def test_overall_all_healthy_and_empty() -> None:
    assert overall(assess(FINE)) == Finding(KERNEL, H.healthy, None, False)
    assert overall({}) == Finding(KERNEL, H.healthy, None, False)


def test_overall_takes_the_worst_level_and_lists_reasons_in_component_order() -> None:
    findings = {
        "strategy": Finding("strategy", H.degraded, "strategy error: boom", False),
        "loop": Finding("loop", H.healthy, None, False),
        "journal": Finding("journal", H.degraded, "slow commits (>= 250 ms)", False),
        "venue": Finding("venue", H.unhealthy, "venue failed: gave up", True),
        "feed": Finding("feed", H.degraded, "feed stale", True),
    }
    assert overall(findings) == Finding(
        KERNEL,
        H.unhealthy,
        "feed: feed stale; venue: venue failed: gave up; journal: slow commits (>= 250 ms); "
        "strategy: strategy error: boom",
        True,
    )


def test_overall_degraded_pauses_only_if_a_component_pauses() -> None:
    quiet = {
        "journal": Finding("journal", H.degraded, "slow commits (>= 250 ms)", False),
        "loop": Finding("loop", H.degraded, "event loop lag >= 250 ms", False),
    }
    assert overall(quiet) == Finding(
        KERNEL, H.degraded, "journal: slow commits (>= 250 ms); loop: event loop lag >= 250 ms", False
    )
    pausing = {**quiet, "venue": Finding("venue", H.degraded, "venue session down", True)}
    result = overall(pausing)
    assert (result.level, result.pauses_entry) == (H.degraded, True)
    assert result.reason is not None
    assert result.reason.startswith("venue: venue session down; journal:")


def test_overall_of_a_real_assessment() -> None:
    observation = Observation("stale", venue_connected=True, loop_lag_ms=300, strategy_errors=5, strategy_error="E")
    assert overall(assess(observation)) == Finding(
        KERNEL,
        H.unhealthy,
        "feed: feed stale; loop: event loop lag >= 250 ms; strategy: strategy failed 5 times in a row: E",
        True,
    )


def test_overall_refuses_strangers_and_misfiled_findings() -> None:
    with pytest.raises(ValueError, match="not a component: 'kernel'"):
        overall({"kernel": Finding("kernel", H.healthy, None, False)})
    with pytest.raises(ValueError, match="the finding under 'feed' is 'venue'"):
        overall({"feed": Finding("venue", H.healthy, None, False)})


# -- trigger_for -------------------------------------------------------------------------------

# Findings about the builders' entity ("feed"). The degraded builder says ("feed stale", pauses);
# the unhealthy builder says "feed failed: auth refused".
FINDINGS: dict[str, Finding] = {
    "healthy": Finding("feed", H.healthy, None, False),
    "stale-pausing": Finding("feed", H.degraded, "feed stale", True),
    "stale-not-pausing": Finding("feed", H.degraded, "feed stale", False),
    "resyncing": Finding("feed", H.degraded, "feed resyncing after a gap", True),
    "failed-auth": Finding("feed", H.unhealthy, "feed failed: auth refused", True),
    "failed-budget": Finding("feed", H.unhealthy, "feed failed: retry budget spent", True),
}
OK = ("ok", {})


def _degrade(f: str) -> tuple[str, dict[str, Any]]:
    finding = FINDINGS[f]
    return "degrade", {"reason": finding.reason, "pauses_entry": finding.pauses_entry}


def _fail(f: str) -> tuple[str, dict[str, Any]]:
    return "fail", {"reason": FINDINGS[f].reason}


MOVES: dict[str, tuple[str, dict[str, Any]] | None] = {
    f: (OK if FINDINGS[f].level == H.healthy else _degrade(f) if FINDINGS[f].level == H.degraded else _fail(f))
    for f in FINDINGS
}
TRIGGER_FOR: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = {
    **{("starting", f): MOVES[f] for f in FINDINGS},  # nothing said yet: every finding is news
    **{("healthy", f): MOVES[f] for f in FINDINGS},
    ("healthy", "healthy"): None,
    **{("degraded", f): MOVES[f] for f in FINDINGS},
    ("degraded", "stale-pausing"): None,
    **{("unhealthy", f): MOVES[f] for f in FINDINGS},
    ("unhealthy", "failed-auth"): None,
    **{("stopping", f): None for f in FINDINGS},  # shutdown wins
    **{("stopped", f): None for f in FINDINGS},
}


def test_trigger_for_expectations_cover_every_pair() -> None:
    assert set(TRIGGER_FOR) == set(itertools.product(BUILDERS, FINDINGS))


@pytest.mark.parametrize(("state", "finding"), list(TRIGGER_FOR), ids=[f"{s}-{f}" for s, f in TRIGGER_FOR])
def test_trigger_for(state: str, finding: str) -> None:
    entity = BUILDERS[state]()
    before = snapshot(entity)
    move = trigger_for(entity, FINDINGS[finding])
    assert move == TRIGGER_FOR[state, finding]
    assert_unchanged(entity, before)
    if move is None:
        return
    trigger, data = move
    HEALTH.fire(entity, trigger, now_ms=LATE, **data)
    wanted = FINDINGS[finding]
    assert (entity.state, entity.data["reason"], entity.data["pauses_entry"]) == (
        wanted.level,
        wanted.reason,
        wanted.pauses_entry,
    )
    assert trigger_for(entity, wanted) is None  # and now it says exactly that


def test_trigger_for_a_fresh_entity_always_moves() -> None:
    # starting pauses and has no reason, unlike any finding: the first assessment always lands.
    entity = new("journal")
    assert trigger_for(entity, Finding("journal", H.healthy, None, False)) == OK


def test_trigger_for_any_entity_id() -> None:
    # Entity ids are the shell's (one set per run): the finding's component need not match the id.
    entity = new("venue-r3")
    assert trigger_for(entity, Finding("venue", H.healthy, None, False)) == OK


def test_trigger_for_refuses_another_machine() -> None:
    feed_entity, _ = registry.get("feed").create("feed", url="ws://x", instruments=["BTC"])
    with pytest.raises(ValueError, match="not a health entity"):
        trigger_for(feed_entity, Finding("feed", H.healthy, None, False))


def test_the_kernel_entity_follows_overall() -> None:
    kernel = new(KERNEL)
    finding = overall(assess(Observation("syncing", venue_connected=True)))
    move = trigger_for(kernel, finding)
    assert move == ("degrade", {"reason": "feed: feed not streaming (syncing)", "pauses_entry": True})
    fire(kernel, move[0], 5, **move[1])
    assert trigger_for(kernel, overall(assess(Observation("syncing", venue_connected=True)))) is None
    assert trigger_for(kernel, overall(assess(FINE))) == OK


# -- property: the entities always say what the assessment found -------------------------------

TEXT = st.sampled_from([None, "", "boom", "disk full"])
OBSERVATIONS = st.builds(
    Observation,
    feed_state=st.sampled_from([None, *(str(s.value) for s in FeedState)]),
    feed_reason=TEXT,
    venue_connected=st.booleans(),
    venue_resolving=st.booleans(),
    venue_failed=TEXT,
    venue_down_ms=st.sampled_from([None, 0, 9_999, 10_000, 3_600_000]),
    journal_error=TEXT,
    commit_latency_ms=st.integers(0, 600),
    loop_lag_ms=st.sampled_from([0, 1, 249, 250, 251, 999, 1999, 2000, 2001, 10_000]),
    strategy_errors=st.integers(0, 8),
    strategy_error=TEXT,
)
THRESHOLDS = st.builds(
    Thresholds,
    loop_lag_degraded_ms=st.sampled_from([1, 250, 1000]),
    loop_lag_unhealthy_ms=st.sampled_from([2000, 5000]),
    commit_latency_degraded_ms=st.integers(1, 500),
    strategy_errors_unhealthy=st.integers(1, 6),
    venue_outage_halt_ms=st.sampled_from([0, 10_000]),
)


class HealthFollowsAssessment(RuleBasedStateMachine):
    """Any sequence of observations, applied with ``trigger_for`` + ``fire``: never a refusal, and
    every entity says exactly what ``assess`` (and, for the kernel, ``overall``) found."""

    @initialize(thresholds=THRESHOLDS, now=st.integers(0, 10**6))
    def start(self, thresholds: Thresholds, now: int) -> None:
        self.thresholds = thresholds
        self.now = now
        self.entities = {name: new(f"{name}-r1", now) for name in FINDING_NAMES}
        self.wanted: dict[str, Finding] | None = None
        self.stopped_as: dict[str, tuple[str, dict[str, Any]]] = {}

    def _apply(self, entity_id: str, finding: Finding) -> None:
        entity = self.entities[entity_id]
        changes = entity.data["changes"]
        move = trigger_for(entity, finding)
        if move is not None:
            trigger, data = move
            transition = HEALTH.fire(entity, trigger, now_ms=self.now, **data)  # never raises
            assert entity.data["changes"] == changes + 1
            assert entity.data["since_ms"] == self.now
            assert transition.dest == entity.state

    @rule(observation=OBSERVATIONS, advance=st.integers(0, 5000))
    def observe(self, observation: Observation, advance: int) -> None:
        self.now += advance
        findings = assess(observation, self.thresholds)
        self.wanted = {**findings, KERNEL: overall(findings)}
        for entity_id in FINDING_NAMES:
            self._apply(entity_id, self.wanted[entity_id])

    @precondition(lambda self: len(self.stopped_as) < len(FINDING_NAMES))
    @rule(data=st.data())
    def stop_one(self, data: st.DataObject) -> None:
        entity_id = data.draw(st.sampled_from([e for e in FINDING_NAMES if e not in self.stopped_as]))
        entity = self.entities[entity_id]
        fire(entity, "stop", self.now, reason="shutdown")
        if data.draw(st.booleans()):
            fire(entity, "stopped", self.now)
        self.stopped_as[entity_id] = snapshot(entity)

    @invariant()
    def entities_say_what_was_found(self) -> None:
        for entity_id, entity in self.entities.items():
            if entity_id in self.stopped_as:
                assert snapshot(entity) == self.stopped_as[entity_id]  # shutdown wins
                continue
            if self.wanted is None:
                assert (entity.state, entity.data["changes"]) == ("starting", 0)
                continue
            finding = self.wanted[entity_id]
            assert (entity.state, entity.data["reason"], entity.data["pauses_entry"]) == (
                finding.level,
                finding.reason,
                finding.pauses_entry,
            )
            assert trigger_for(entity, finding) is None

    @invariant()
    def journal_round_trip(self) -> None:
        for entity in self.entities.values():
            decoded = codec.decode(codec.encode_text(entity.data))
            assert HEALTH.restore(entity.entity_id, entity.state, decoded).data == entity.data


HealthFollowsAssessment.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestHealthFollowsAssessment = HealthFollowsAssessment.TestCase


# -- docs, scenarios, sans-I/O -----------------------------------------------------------------


# The health rules as the spec states them, worst first per component, written out by hand.
RULES_TABLE = """\
| component | condition | level | pauses new orders |
| --- | --- | --- | --- |
| `feed` | the feed is `failed` (fatal error or retry budget spent) | `unhealthy` | yes |
| `feed` | the feed is `stale` | `degraded` | yes |
| `feed` | the feed is `resyncing` (a gap: instruments await a snapshot) | `degraded` | yes |
| `feed` | no feed, or the feed is `idle`, `connecting`, `subscribing`, `syncing`, `backoff` or `closed` | `degraded` | yes |
| `venue` | reconnecting to the venue gave up (`venue_failed`) | `unhealthy` | yes |
| `venue` | the venue session has been down for `venue_outage_halt_ms` or longer (only when set: off by default) | `unhealthy` | yes |
| `venue` | the venue session is down (the kernel keeps reconnecting) | `degraded` | yes |
| `venue` | connected, the session not yet reconciled | `degraded` | yes |
| `venue` | the venue answered `rate_limited` (docs/risk.md) | `degraded` | no |
| `journal` | the last commit failed (`journal_error`) | `unhealthy` | yes |
| `journal` | `commit_latency_ms` >= `commit_latency_degraded_ms` (250) | `degraded` | no |
| `loop` | `loop_lag_ms` >= `loop_lag_unhealthy_ms` (2000) | `unhealthy` | yes |
| `loop` | `loop_lag_ms` >= `loop_lag_degraded_ms` (250) | `degraded` | no |
| `strategy` | `strategy_errors` >= `strategy_errors_unhealthy` (5) in a row | `unhealthy` | yes |
| `strategy` | the last strategy callback failed (`strategy_errors` > 0) | `degraded` | no |
"""  # noqa: E501


def test_rules_markdown() -> None:
    assert rules_markdown() == RULES_TABLE
    assert [(r.component, str(r.level), r.pauses_entry) for r in RULES] == [
        ("feed", "unhealthy", True),
        ("feed", "degraded", True),
        ("feed", "degraded", True),
        ("feed", "degraded", True),
        ("venue", "unhealthy", True),
        ("venue", "unhealthy", True),
        ("venue", "degraded", True),
        ("venue", "degraded", True),
        ("venue", "degraded", False),
        ("journal", "unhealthy", True),
        ("journal", "degraded", False),
        ("loop", "unhealthy", True),
        ("loop", "degraded", False),
        ("strategy", "unhealthy", True),
        ("strategy", "degraded", False),
    ]


def test_rules_markdown_escapes_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_module, "RULES", (HealthRule("loop", H.degraded, False, "a | b\nc", _never),))
    assert rules_markdown().splitlines()[2] == "| `loop` | a \\| b c | `degraded` | no |"


def test_docs_hold_the_rules_table_verbatim() -> None:
    page = DOCS.read_text(encoding="utf-8")
    assert rules_markdown() in page, "docs/machines/health.md: paste rules_markdown() output (the rules changed)"


def test_documented_scenarios_pass() -> None:
    document = json.loads(SCENARIOS.read_text(encoding="utf-8"))
    scenarios = parse(document, source=SCENARIOS.name)
    assert len(scenarios) >= 3
    assert {s.machine for s in scenarios} == {"health"}
    for scenario in scenarios:
        result = run(scenario)
        assert result.passed, "\n".join(result.describe_failures())


def test_restore_round_trip_through_the_journal_codec() -> None:
    entity = degraded()
    restored = HEALTH.restore("feed", entity.state, codec.decode(codec.encode_text(entity.data)))
    assert restored.data == entity.data
    for copy_of in (restored, entity):
        fire(copy_of, "fail", 100, reason="feed failed: auth refused")
    assert (restored.state, restored.data) == (entity.state, entity.data)


def test_the_module_is_sans_io() -> None:
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= {"__future__", "collections", "dataclasses", "enum", "typing", "machines"}
