"""The ``trading`` machine (``machines.trading``): its table, its data checks, the halt sequence, the helpers.

Ladder: creation; every state x trigger against the table the spec gives (written out here, not
derived from ``TRADING``), with the exact data each allowed trigger leaves and the full context of
each refusal; data validation per trigger; the full sequences (halt, flatten, timeout); the
automatic halt causes; restart (halted survives); the helpers; the docs page.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from machines import HEALTH, Entity, InvalidData, InvalidTransition, registry
from machines.diagram import extract_block, markdown
from machines.trading import (
    DEFAULT_TIMEOUT_MS,
    ENTITY_ID,
    TRADING,
    NotATradingEntity,
    TradingState,
    is_halted_or_halting,
    next_timeout,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "machines" / "trading.md"
NOW = 20_000

CREATED = {
    "reason": None,
    "since_ms": 1,
    "deadline_ms": None,
    "flatten": False,
    "canceled": False,
    "timed_out": False,
    "last_trigger": "create",
    "halts": 0,
}

# The table tests' situations: the four states, halting split by what the halt still waits for.
SITUATIONS = ("active", "reducing", "halting", "halting_flatten", "halting_canceled", "halted")


def entity_in(situation: str) -> Entity:
    """The kernel entity in ``situation``, built through the machine's own triggers."""
    entity, _ = TRADING.create(ENTITY_ID, now_ms=1)
    if situation == "reducing":
        TRADING.fire(entity, "reduce", now_ms=2, reason="wind down")
    elif situation.startswith("halting") or situation == "halted":
        TRADING.fire(entity, "halt", now_ms=100, reason="operator stop", flatten=situation != "halting")
        if situation in ("halting_canceled", "halted"):
            TRADING.fire(entity, "all_canceled", now_ms=200)
        if situation == "halted":
            TRADING.fire(entity, "flattened", now_ms=300)
    return entity


def state_of(situation: str) -> str:
    return situation.split("_")[0]


VALID: dict[str, dict[str, Any]] = {
    "halt": {"reason": "manual"},
    "reduce": {"reason": "trim"},
    "arm": {"reason": "venue checked"},
    "risk_breach": {"limit": "daily_loss", "value": Decimal("1523.20"), "threshold": 1500},
    "health_unhealthy": {"component": "feed", "reason": "feed failed"},
    "journal_failed": {"reason": "disk full"},
    "all_canceled": {},
    "flattened": {},
    "timeout": {},
}


def _halt(reason: str, trigger: str, halts: int) -> dict[str, Any]:
    return {
        "reason": reason,
        "since_ms": NOW,
        "deadline_ms": NOW + DEFAULT_TIMEOUT_MS,
        "flatten": False,
        "canceled": False,
        "timed_out": False,
        "last_trigger": trigger,
        "halts": halts,
    }


HALT_REASONS = {
    "halt": "manual",
    "risk_breach": "risk breach: daily_loss 1523.20 > 1500",
    "health_unhealthy": "feed unhealthy: feed failed",
    "journal_failed": "journal failed: disk full",
}
ARMED = {
    "reason": "venue checked",
    "since_ms": NOW,
    "deadline_ms": None,
    "flatten": False,
    "canceled": False,
    "timed_out": False,
    "last_trigger": "arm",
}
TIMED_OUT = "halt timed out: {missing} not confirmed by deadline_ms 10100 (operator stop)"

# (situation, trigger) -> (dest, the data changes it makes). Anything absent is refused.
ALLOWED: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("active", "reduce"): ("reducing", {"reason": "trim", "since_ms": NOW, "last_trigger": "reduce"}),
    ("reducing", "arm"): ("active", ARMED),
    ("halted", "arm"): ("active", ARMED),
    ("halting", "all_canceled"): (
        "halted",
        {"since_ms": NOW, "deadline_ms": None, "canceled": True, "last_trigger": "all_canceled"},
    ),
    ("halting_flatten", "all_canceled"): ("halting", {"canceled": True, "last_trigger": "all_canceled"}),
    ("halting_canceled", "flattened"): ("halted", {"since_ms": NOW, "deadline_ms": None, "last_trigger": "flattened"}),
    **{
        (situation, "timeout"): (
            "halted",
            {
                "reason": TIMED_OUT.format(missing=missing),
                "since_ms": NOW,
                "deadline_ms": None,
                "timed_out": True,
                "last_trigger": "timeout",
            },
        )
        for situation, missing in (
            ("halting", "cancels"),
            ("halting_flatten", "cancels and flatten"),
            ("halting_canceled", "flatten"),
        )
    },
}
for _cause, _reason in HALT_REASONS.items():
    ALLOWED[("active", _cause)] = ("halting", _halt(_reason, _cause, 1))
    ALLOWED[("reducing", _cause)] = ("halting", _halt(_reason, _cause, 1))
    if _cause != "halt":  # recorded while stopping; a second operator halt is refused
        for _situation in ("halting", "halting_flatten", "halting_canceled", "halted"):
            ALLOWED[(_situation, _cause)] = (state_of(_situation), {"last_trigger": _cause})


# -- creation and the table ---------------------------------------------------------------------


def test_create() -> None:
    entity, created = TRADING.create(ENTITY_ID, now_ms=1)
    assert entity.state == TradingState.active
    assert entity.data == CREATED
    assert (created.machine, created.entity_id, created.source, created.dest) == ("trading", "kernel", None, "active")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "now_ms"),
        ({"now_ms": -1}, "now_ms"),
        ({"now_ms": True}, "now_ms"),
        ({"now_ms": 2**63}, "now_ms"),
        ({"now_ms": 1.0}, "float"),
        ({"now_ms": 1, "reason": "x"}, "unknown fields: reason"),
    ],
)
def test_create_refuses_bad_data(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidData, match=message):
        TRADING.create(ENTITY_ID, **data)


def test_the_table_is_documented_and_has_no_terminal_state() -> None:
    assert registry.get("trading") is TRADING
    assert TRADING.state_names == ("active", "reducing", "halting", "halted")
    assert TRADING.terminal == frozenset()
    assert set(TRADING.triggers) == set(VALID)
    assert all(rule.doc for rule in TRADING.rules)
    assert all(TRADING.state_docs[state] for state in TradingState)


@pytest.mark.parametrize("situation", SITUATIONS)
@pytest.mark.parametrize("trigger", sorted(VALID))
def test_every_state_and_trigger(situation: str, trigger: str) -> None:
    entity = entity_in(situation)
    before = copy.deepcopy(entity.data)
    expected = ALLOWED.get((situation, trigger))
    if expected is None:
        with pytest.raises(InvalidTransition) as info:
            TRADING.fire(entity, trigger, now_ms=NOW, **VALID[trigger])
        state = state_of(situation)
        assert (info.value.machine, info.value.entity_id, info.value.state, info.value.trigger) == (
            "trading",
            "kernel",
            state,
            trigger,
        )
        assert f"trading 'kernel' in state '{state}' refused trigger '{trigger}'" in str(info.value)
        assert entity.state == state
        assert entity.data == before
    else:
        dest, changes = expected
        transition = TRADING.fire(entity, trigger, now_ms=NOW, **VALID[trigger])
        assert entity.state == dest
        assert entity.data == {**before, **changes}
        assert (transition.source, transition.dest, transition.trigger) == (state_of(situation), dest, trigger)
        assert dict(transition.data) == {"now_ms": NOW, **VALID[trigger]}


# -- data validation ----------------------------------------------------------------------------

BAD_COMMON: list[tuple[dict[str, Any], str]] = [
    ({"now_ms": None}, "now_ms"),
    ({"now_ms": -5}, "now_ms"),
    ({"now_ms": False}, "now_ms"),
    ({"now_ms": "5"}, "now_ms"),
    ({"now_ms": 5.0}, "float"),
    ({"now_ms": NOW, "extra": 1}, "unknown fields: extra"),
]
BAD_HALT_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"flatten": "yes"}, "flatten must be true or false"),
    ({"flatten": 1}, "flatten must be true or false"),
    ({"timeout_ms": 0}, "timeout_ms must be a positive int"),
    ({"timeout_ms": -1}, "timeout_ms must be a positive int"),
    ({"timeout_ms": True}, "timeout_ms must be a positive int"),
    ({"timeout_ms": "10"}, "timeout_ms must be a positive int"),
    ({"timeout_ms": 1.5}, "float"),
    ({"now_ms": 2**63 - 1, "timeout_ms": 1}, r"deadline .* out of range"),
]
BAD_BY_TRIGGER: dict[str, list[tuple[dict[str, Any], str]]] = {
    "halt": [({"reason": ""}, "reason"), ({"reason": None}, "reason"), ({"reason": 3}, "reason")],
    "reduce": [({"reason": ""}, "reason"), ({"flatten": True}, "unknown fields: flatten")],
    "arm": [({"reason": ""}, "reason must be a non-empty string"), ({"reason": None}, "reason")],
    "risk_breach": [
        ({"limit": ""}, "limit"),
        ({"limit": 7}, "limit"),
        ({"value": 1.5}, "value is a float"),
        ({"value": True}, "value must be a Decimal, an int or a non-empty string"),
        ({"value": None}, "value must be"),
        ({"value": ""}, "value must be"),
        ({"value": [1]}, "value must be"),
        ({"value": Decimal("NaN")}, "not a finite number"),
        ({"threshold": 1500.0}, "threshold is a float"),
        ({"threshold": False}, "threshold must be"),
        ({"reason": ""}, "reason"),
        ({"reason": 5}, "reason"),
    ],
    "health_unhealthy": [
        ({"component": ""}, "component"),
        ({"component": None}, "component"),
        ({"reason": ""}, "reason"),
    ],
    "journal_failed": [({"reason": ""}, "reason"), ({"reason": None}, "reason")],
    "all_canceled": [({"reason": "x"}, "unknown fields: reason")],
    "flattened": [({"flatten": True}, "unknown fields: flatten")],
    "timeout": [({"deadline_ms": 1}, "unknown fields: deadline_ms")],
}
SITUATION_FOR = {
    "halt": ("active", "reducing"),
    "reduce": ("active",),
    "arm": ("reducing", "halted"),
    "risk_breach": SITUATIONS,
    "health_unhealthy": SITUATIONS,
    "journal_failed": SITUATIONS,
    "all_canceled": ("halting", "halting_flatten"),
    "flattened": ("halting_canceled",),
    "timeout": ("halting", "halting_flatten", "halting_canceled"),
}
HALT_CAUSES = ("halt", "risk_breach", "health_unhealthy", "journal_failed")
BAD_CASES = [
    (situation, trigger, bad, message)
    for trigger, situations in SITUATION_FOR.items()
    for situation in situations
    for bad, message in [
        *BAD_COMMON,
        *BAD_BY_TRIGGER[trigger],
        *(BAD_HALT_OPTIONS if trigger in HALT_CAUSES else []),
    ]
]


@pytest.mark.parametrize(("situation", "trigger", "bad", "message"), BAD_CASES)
def test_trigger_data_is_checked(situation: str, trigger: str, bad: dict[str, Any], message: str) -> None:
    entity = entity_in(situation)
    before = (entity.state, copy.deepcopy(entity.data))
    with pytest.raises(InvalidData, match=message) as info:
        TRADING.fire(entity, trigger, **{"now_ms": NOW, **VALID[trigger], **bad})
    assert (info.value.machine, info.value.state, info.value.trigger) == ("trading", state_of(situation), trigger)
    assert (entity.state, entity.data) == before


@pytest.mark.parametrize(
    ("situation", "trigger"), [(s, t) for t, situations in SITUATION_FOR.items() for s in situations]
)
def test_now_ms_is_required(situation: str, trigger: str) -> None:
    entity = entity_in(situation)
    with pytest.raises(InvalidData, match=r"now_ms .* is required"):
        TRADING.fire(entity, trigger, **VALID[trigger])


def test_a_none_optional_field_is_the_same_as_none_given() -> None:
    entity = entity_in("active")
    TRADING.fire(entity, "risk_breach", now_ms=5, limit="gross", value="12", threshold=None, reason=None)
    assert entity.data["reason"] == "risk breach: gross 12"


# -- the sequences ------------------------------------------------------------------------------


def test_halt_all_canceled_halted_arm() -> None:
    entity = entity_in("active")
    records = [TRADING.fire(entity, "halt", now_ms=1_000, reason="fat finger", timeout_ms=500)]
    assert entity.state == "halting"
    assert (entity.data["deadline_ms"], next_timeout(entity)) == (1_500, 1_500)
    assert is_halted_or_halting(entity) is True
    records.append(TRADING.fire(entity, "all_canceled", now_ms=1_200))
    assert entity.state == "halted"
    assert entity.data == {
        "reason": "fat finger",
        "since_ms": 1_200,
        "deadline_ms": None,
        "flatten": False,
        "canceled": True,
        "timed_out": False,
        "last_trigger": "all_canceled",
        "halts": 1,
    }
    assert next_timeout(entity) is None
    with pytest.raises(InvalidTransition, match="not allowed from this state"):
        TRADING.fire(entity, "timeout", now_ms=9_999)
    records.append(TRADING.fire(entity, "arm", now_ms=2_000, reason="ops: alice, venue checked"))
    assert entity.state == "active"
    assert is_halted_or_halting(entity) is False
    assert entity.data["reason"] == "ops: alice, venue checked"
    assert entity.data["halts"] == 1
    assert [(r.trigger, r.source, r.dest) for r in records] == [
        ("halt", "active", "halting"),
        ("all_canceled", "halting", "halted"),
        ("arm", "halted", "active"),
    ]
    assert records[0].data["reason"] == "fat finger"  # every row carries its reason
    assert records[2].data["reason"] == "ops: alice, venue checked"


def test_halt_flatten_all_canceled_flattened_halted() -> None:
    entity = entity_in("reducing")
    TRADING.fire(entity, "halt", now_ms=1_000, reason="close the book", flatten=True)
    assert (entity.state, entity.data["flatten"], entity.data["deadline_ms"]) == ("halting", True, 11_000)
    with pytest.raises(InvalidTransition, match="no guard allowed it"):
        TRADING.fire(entity, "flattened", now_ms=1_100)  # not before the cancels
    TRADING.fire(entity, "all_canceled", now_ms=1_200)
    assert (entity.state, entity.data["canceled"], entity.data["since_ms"]) == ("halting", True, 1_000)
    assert next_timeout(entity) == 11_000
    with pytest.raises(InvalidTransition, match="no guard allowed it"):
        TRADING.fire(entity, "all_canceled", now_ms=1_300)  # confirmed once
    TRADING.fire(entity, "flattened", now_ms=1_400)
    assert entity.state == "halted"
    assert (entity.data["since_ms"], entity.data["timed_out"], entity.data["reason"]) == (
        1_400,
        False,
        "close the book",
    )


def test_flattened_is_refused_when_the_halt_does_not_flatten() -> None:
    entity = entity_in("halting")
    with pytest.raises(InvalidTransition, match="no guard allowed it"):
        TRADING.fire(entity, "flattened", now_ms=NOW)


def test_timeout_before_and_after_the_deadline() -> None:
    entity = entity_in("active")
    TRADING.fire(entity, "halt", now_ms=1_000, reason="fat finger")
    for early in (0, 1_000, 10_999):
        with pytest.raises(InvalidTransition, match="no guard allowed it") as info:
            TRADING.fire(entity, "timeout", now_ms=early)
        assert (info.value.state, info.value.trigger) == ("halting", "timeout")
        assert entity.state == "halting"
    with pytest.raises(InvalidData, match="now_ms"):
        TRADING.fire(entity, "timeout")
    TRADING.fire(entity, "timeout", now_ms=11_000)  # exactly at the deadline
    assert entity.state == "halted"
    assert entity.data["timed_out"]
    assert entity.data["reason"] == "halt timed out: cancels not confirmed by deadline_ms 11000 (fat finger)"
    # A late confirmation after the timeout is refused: the shell reads the state first.
    with pytest.raises(InvalidTransition):
        TRADING.fire(entity, "all_canceled", now_ms=12_000)
    TRADING.fire(entity, "arm", now_ms=13_000, reason="venue checked by hand")
    assert (entity.state, entity.data["timed_out"], entity.data["canceled"]) == ("active", False, False)


def test_a_second_halt_is_refused_while_halting_and_halted() -> None:
    entity = entity_in("halting")
    with pytest.raises(InvalidTransition, match="not allowed from this state"):
        TRADING.fire(entity, "halt", now_ms=NOW, reason="again", flatten=True)
    assert entity.data["flatten"] is False
    TRADING.fire(entity, "all_canceled", now_ms=NOW)
    with pytest.raises(InvalidTransition, match="not allowed from this state"):
        TRADING.fire(entity, "halt", now_ms=NOW, reason="again")


def test_arm_is_refused_while_halting() -> None:
    for situation in ("halting", "halting_flatten", "halting_canceled"):
        entity = entity_in(situation)
        with pytest.raises(InvalidTransition, match="not allowed from this state"):
            TRADING.fire(entity, "arm", now_ms=NOW, reason="now")


# -- the automatic halt causes ------------------------------------------------------------------


@pytest.mark.parametrize("situation", ["active", "reducing"])
@pytest.mark.parametrize(
    ("trigger", "data", "reason"),
    [
        (
            "risk_breach",
            {"limit": "daily_loss", "value": Decimal("1523.20"), "threshold": Decimal("1500")},
            "risk breach: daily_loss 1523.20 > 1500",
        ),
        ("risk_breach", {"limit": "position", "value": 12}, "risk breach: position 12"),
        (
            "risk_breach",
            {"limit": "order_rate", "value": "31/s", "threshold": "30/s", "reason": "strategy loop"},
            "risk breach: order_rate 31/s > 30/s; strategy loop",
        ),
        (
            "health_unhealthy",
            {"component": "venue", "reason": "reconnect gave up"},
            "venue unhealthy: reconnect gave up",
        ),
        ("health_unhealthy", {"component": "loop"}, "loop unhealthy"),
        ("journal_failed", {"reason": "database is locked"}, "journal failed: database is locked"),
    ],
)
def test_automatic_causes_halt(situation: str, trigger: str, data: dict[str, Any], reason: str) -> None:
    entity = entity_in(situation)
    TRADING.fire(entity, trigger, now_ms=50, flatten=True, timeout_ms=2_000, **data)
    assert entity.state == "halting"
    assert entity.data == {
        "reason": reason,
        "since_ms": 50,
        "deadline_ms": 2_050,
        "flatten": True,
        "canceled": False,
        "timed_out": False,
        "last_trigger": trigger,
        "halts": 1,
    }


def test_automatic_causes_are_recorded_while_stopping_and_change_nothing_else() -> None:
    entity = entity_in("halting_flatten")
    before = dict(entity.data)
    record = TRADING.fire(entity, "risk_breach", now_ms=500, limit="gross", value=9, flatten=False, timeout_ms=1)
    assert (record.source, record.dest) == ("halting", "halting")
    assert entity.data == {**before, "last_trigger": "risk_breach"}
    TRADING.fire(entity, "health_unhealthy", now_ms=600, component="journal")
    TRADING.fire(entity, "journal_failed", now_ms=700, reason="disk full")
    assert entity.data == {**before, "last_trigger": "journal_failed"}
    assert next_timeout(entity) == before["deadline_ms"]


def test_halts_count_every_halt() -> None:
    entity = entity_in("active")
    TRADING.fire(entity, "halt", now_ms=1, reason="one")
    TRADING.fire(entity, "all_canceled", now_ms=2)
    TRADING.fire(entity, "risk_breach", now_ms=3, limit="gross", value=1)  # recorded, not a new halt
    TRADING.fire(entity, "arm", now_ms=4, reason="ok")
    TRADING.fire(entity, "journal_failed", now_ms=5, reason="io error")
    assert (entity.state, entity.data["halts"]) == ("halting", 2)


# -- restart ------------------------------------------------------------------------------------


@pytest.mark.parametrize("situation", SITUATIONS)
def test_every_state_survives_a_restart(situation: str) -> None:
    entity = entity_in(situation)
    assert entity.live  # no terminal state: the entity stays live in the journal
    saved = json.loads(json.dumps(entity.data))
    restored = TRADING.restore(ENTITY_ID, entity.state, saved)
    assert (restored.state, restored.data) == (entity.state, entity.data)
    assert (is_halted_or_halting(restored), next_timeout(restored)) == (
        is_halted_or_halting(entity),
        next_timeout(entity),
    )


def test_halted_stays_halted_until_armed() -> None:
    restored = TRADING.restore(ENTITY_ID, "halted", json.loads(json.dumps(entity_in("halted").data)))
    assert TRADING.allowed_triggers("halted") == ("arm", "risk_breach", "health_unhealthy", "journal_failed")
    assert is_halted_or_halting(restored) is True
    assert next_timeout(restored) is None
    TRADING.fire(restored, "arm", now_ms=5, reason="resumed after review")
    assert restored.state == "active"


# -- helpers ------------------------------------------------------------------------------------

HELPERS = {
    # situation: (is_halted_or_halting, next_timeout)
    "active": (False, None),
    "reducing": (False, None),
    "halting": (True, 10_100),
    "halting_flatten": (True, 10_100),
    "halting_canceled": (True, 10_100),
    "halted": (True, None),
}


@pytest.mark.parametrize("situation", SITUATIONS)
def test_helpers(situation: str) -> None:
    entity = entity_in(situation)
    got = (is_halted_or_halting(entity), next_timeout(entity))
    assert got == HELPERS[situation]


@pytest.mark.parametrize("helper", [is_halted_or_halting, next_timeout])
def test_helpers_refuse_another_machines_entity(helper: Any) -> None:
    other, _ = HEALTH.create("kernel-r1", now_ms=1)
    with pytest.raises(NotATradingEntity, match="not a trading entity"):
        helper(other)


# -- docs ---------------------------------------------------------------------------------------


def test_docs_page_is_fresh() -> None:
    assert extract_block(DOCS.read_text(encoding="utf-8"), TRADING) == markdown(TRADING)
