"""The machine base (``machines.base``, ``machines.errors``, ``machines.registry``) and the ``run`` machine.

Ladder: definition errors, firing, the registry, table tests over every state x trigger of the toy
and run machines (expectations derived from each machine's own ``rules``), and a Hypothesis
``RuleBasedStateMachine`` over the toy machine.
"""

from __future__ import annotations

import copy
import enum
import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from machines import (
    CREATE,
    RUN,
    DefinitionError,
    Entity,
    InvalidData,
    InvalidTransition,
    Rule,
    RunState,
    StateMachine,
    StateMachineError,
    Transition,
    TransitionRefused,
    UnknownMachine,
    check_data,
    registry,
)
from machines.base import Data
from tests.toy import TOY, ToyState

# -- helpers ----------------------------------------------------------------------------------


def snapshot(entity: Entity) -> tuple[str, dict[str, Any]]:
    """A deep copy of what ``fire`` must leave untouched when it refuses."""
    return entity.state, copy.deepcopy(entity.data)


def assert_unchanged(entity: Entity, before: tuple[str, dict[str, Any]]) -> None:
    assert (entity.state, entity.data) == before


def toy_entity(state: str = "idle", *, total: str = "0", target: str = "10", starts: int = 0) -> Entity:
    """A toy entity in ``state`` (restored, as the journal would), with Decimal data."""
    return TOY.restore("t-1", state, {"target": target, "total": total, "starts": starts})


# A minimal valid definition; each definition-error test breaks exactly one thing in it.


class Light(StrEnum):
    off = "off"
    on = "on"
    gone = "gone"


LIGHT_DOCS = {Light.off: "dark", Light.on: "lit", Light.gone: "removed for good"}
LIGHT_RULES = (
    Rule("switch_on", Light.off, Light.on),
    Rule("switch_off", Light.on, Light.off),
    Rule("remove", (Light.off, Light.on), Light.gone),
)


def define(name: str = "light", **overrides: Any) -> StateMachine:
    spec: dict[str, Any] = {
        "states": Light,
        "initial": Light.off,
        "terminal": (Light.gone,),
        "rules": LIGHT_RULES,
        "state_docs": LIGHT_DOCS,
    }
    spec.update(overrides)
    return StateMachine(name, **spec)


class Foreign(enum.Enum):
    """A plain Enum whose members are not states of ``Light``."""

    elsewhere = "elsewhere"


class LightTwin(StrEnum):
    """A different StrEnum with the same values as ``Light``: its members are still not Light states."""

    off = "off"
    on = "on"
    gone = "gone"


# -- definition errors ------------------------------------------------------------------------


def test_minimal_definition_is_valid() -> None:
    machine = define()
    assert machine.state_names == ("off", "on", "gone")
    assert machine.terminal_names == frozenset({"gone"})
    assert machine.triggers == ("switch_on", "switch_off", "remove")
    assert repr(machine) == "StateMachine('light', states=3, rules=3)"


@pytest.mark.parametrize("name", ["my-light", "2lights", "", "light one"])
def test_name_must_be_an_identifier(name: str) -> None:
    with pytest.raises(DefinitionError, match="name must be an identifier"):
        define(name)


def test_state_value_must_be_an_identifier_string() -> None:
    class Numbered(enum.Enum):
        first = 1

    with pytest.raises(DefinitionError, match="needs an identifier string value"):
        StateMachine("numbered", states=Numbered, initial=Numbered.first, rules=(), state_docs={Numbered.first: "x"})


def test_state_value_with_a_space_is_refused() -> None:
    class Spaced(StrEnum):
        ok = "ok"
        bad = "not ok"

    with pytest.raises(DefinitionError, match="needs an identifier string value"):
        StateMachine("spaced", states=Spaced, initial=Spaced.ok, rules=(), state_docs={Spaced.ok: "x", Spaced.bad: "y"})


def test_initial_must_be_a_member() -> None:
    with pytest.raises(DefinitionError, match=r"initial state .* is not one of its states"):
        define(initial=Foreign.elsewhere)


def test_initial_of_a_same_valued_str_enum_is_not_a_member() -> None:
    # LightTwin.off == "off" == Light.off as strings, but it is not a state of this machine.
    with pytest.raises(DefinitionError, match="is not one of its states"):
        define(initial=LightTwin.off)


def test_initial_cannot_be_terminal() -> None:
    with pytest.raises(DefinitionError, match="initial state 'off' cannot be terminal"):
        define(terminal=(Light.off, Light.gone))


def test_terminal_states_must_be_members() -> None:
    with pytest.raises(DefinitionError, match=r"not a state of this machine|not one of its states"):
        define(terminal=(Light.gone, Foreign.elsewhere))


def test_every_state_needs_a_description() -> None:
    with pytest.raises(DefinitionError, match=r"states without a description: gone$"):
        define(state_docs={Light.off: "dark", Light.on: "lit"})


def test_an_empty_description_counts_as_missing() -> None:
    with pytest.raises(DefinitionError, match=r"states without a description: on$"):
        define(state_docs={**LIGHT_DOCS, Light.on: ""})


@pytest.mark.parametrize("trigger", ["switch on", "9lives", ""])
def test_trigger_must_be_an_identifier(trigger: str) -> None:
    with pytest.raises(DefinitionError, match="trigger must be an identifier"):
        define(rules=(*LIGHT_RULES, Rule(trigger, Light.off, Light.on)))


def test_trigger_cannot_be_named_create() -> None:
    with pytest.raises(DefinitionError, match="other than 'create'"):
        define(rules=(*LIGHT_RULES, Rule(CREATE, Light.off, Light.on)))


def test_rule_needs_a_source() -> None:
    with pytest.raises(DefinitionError, match="rule 'flicker': no source states"):
        define(rules=(*LIGHT_RULES, Rule("flicker", (), Light.on)))


@pytest.mark.parametrize("where", ["source", "dest"])
def test_rule_naming_a_state_of_another_enum_is_refused(where: str) -> None:
    bad = (
        Rule("wander", Foreign.elsewhere, Light.on)  # type: ignore[arg-type]
        if where == "source"
        else Rule("wander", Light.on, Foreign.elsewhere)
    )
    with pytest.raises(DefinitionError, match=r"<Foreign\.elsewhere: 'elsewhere'> is not a state of this machine"):
        define(rules=(*LIGHT_RULES, bad))


@pytest.mark.parametrize("where", ["source", "dest"])
def test_rule_naming_a_state_of_a_same_valued_str_enum_is_refused(where: str) -> None:
    # Membership must be by identity, not by string equality: LightTwin.on == Light.on == "on".
    bad = Rule("wander", LightTwin.on, Light.off) if where == "source" else Rule("wander", Light.off, LightTwin.on)
    with pytest.raises(DefinitionError, match="is not a state of this machine"):
        define(rules=(*LIGHT_RULES, bad))


@pytest.mark.parametrize("where", ["source", "dest"])
def test_rule_naming_a_plain_string_is_a_definition_error(where: str) -> None:
    # A str where an Enum member goes is a table mistake: it must be reported as one, not crash later.
    bad = Rule("wander", ["on"], Light.off) if where == "source" else Rule("wander", Light.off, "on")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError):
        define(rules=(*LIGHT_RULES, bad))


def test_unguarded_rule_shadows_a_later_rule_for_the_same_trigger_and_source() -> None:
    shadowed = Rule("switch_on", Light.off, Light.gone, guard=lambda entity, data: True)
    with pytest.raises(DefinitionError, match="unreachable, an earlier unguarded rule already handles it from 'off'"):
        define(rules=(*LIGHT_RULES, shadowed))


def test_two_unguarded_rules_for_the_same_trigger_and_source_are_refused() -> None:
    with pytest.raises(DefinitionError, match="earlier unguarded rule"):
        define(rules=(*LIGHT_RULES, Rule("remove", Light.on, Light.off)))


def test_guarded_rule_before_an_unguarded_one_is_allowed() -> None:
    machine = define(
        rules=(
            Rule("switch_on", Light.off, Light.gone, guard=lambda entity, data: bool(data.get("blow"))),
            *LIGHT_RULES,
        )
    )
    assert machine.triggers == ("switch_on", "switch_off", "remove")


def test_same_trigger_from_different_sources_is_allowed() -> None:
    machine = define(rules=(*LIGHT_RULES, Rule("toggle", Light.off, Light.on), Rule("toggle", Light.on, Light.off)))
    assert machine.allowed_triggers("on") == ("switch_off", "remove", "toggle")


def test_rule_leaving_a_terminal_state_for_a_live_state_is_refused() -> None:
    with pytest.raises(DefinitionError, match="leaves terminal state 'gone' for a non-terminal state"):
        define(rules=(*LIGHT_RULES, Rule("revive", Light.gone, Light.on)))


def test_terminal_to_terminal_and_internal_rules_from_terminal_states_are_allowed() -> None:
    class Bulb(StrEnum):
        lit = "lit"
        burnt = "burnt"
        binned = "binned"

    machine = StateMachine(
        "bulb",
        states=Bulb,
        initial=Bulb.lit,
        terminal=(Bulb.burnt, Bulb.binned),
        state_docs={Bulb.lit: "on", Bulb.burnt: "dead", Bulb.binned: "thrown away"},
        rules=(
            Rule("burn_out", Bulb.lit, Bulb.burnt),
            Rule("bin", Bulb.burnt, Bulb.binned),
            Rule("label", Bulb.burnt, None, effect=lambda entity, data: {"label": data["text"]}),
        ),
    )
    bulb, _ = machine.create("b")
    machine.fire(bulb, "burn_out")
    assert not bulb.live
    labelled = machine.fire(bulb, "label", text="dud")
    assert (labelled.source, labelled.dest, bulb.data) == ("burnt", "burnt", {"label": "dud"})
    machine.fire(bulb, "bin")
    assert (bulb.state, bulb.live) == ("binned", False)


def test_state_unreachable_from_initial_is_refused() -> None:
    class Lamp(StrEnum):
        off = "off"
        on = "on"
        attic = "attic"
        museum = "museum"

    with pytest.raises(DefinitionError, match=r"states unreachable from 'off': attic, museum$"):
        StateMachine(
            "lamp",
            states=Lamp,
            initial=Lamp.off,
            state_docs={Lamp.off: "a", Lamp.on: "b", Lamp.attic: "c", Lamp.museum: "d"},
            # attic -> museum exists, but nothing leads to attic.
            rules=(Rule("switch_on", Lamp.off, Lamp.on), Rule("donate", Lamp.attic, Lamp.museum)),
        )


# -- a machine with guards, conditional rules, effects and internal transitions ----------------


class Gate(StrEnum):
    closed = "closed"
    open = "open"
    locked = "locked"
    broken = "broken"
    removed = "removed"


def _force(data: Data) -> int:
    force = data.get("force")
    if type(force) is not int:
        raise InvalidData("force (int) is required")
    return force


def force_at_least_5(entity: Entity, data: Data) -> bool:
    return _force(data) >= 5


def force_at_least_1(entity: Entity, data: Data) -> bool:
    return _force(data) >= 1


def _knock(entity: Entity, data: Data) -> dict[str, Any]:
    return {"knocks": entity.data.get("knocks", 0) + 1}


def _lock(entity: Entity, data: Data) -> dict[str, Any]:
    return {"code": data["code"]}


def _unlock(entity: Entity, data: Data) -> dict[str, Any]:
    if data.get("code") != entity.data["code"]:
        raise InvalidData("wrong code")
    return {"code": None, "unlocks": entity.data.get("unlocks", 0) + 1}


def _no_changes(entity: Entity, data: Data) -> None:
    return None


GATE = StateMachine(
    "gate",
    states=Gate,
    initial=Gate.closed,
    terminal=(Gate.broken, Gate.removed),
    state_docs={
        Gate.closed: "shut",
        Gate.open: "open",
        Gate.locked: "shut and locked",
        Gate.broken: "pushed too hard",
        Gate.removed: "taken away",
    },
    rules=(
        # Conditional: the first rule whose guard passes wins.
        Rule("push", Gate.closed, Gate.broken, guard=force_at_least_5),
        Rule("push", Gate.closed, Gate.open, guard=force_at_least_1),
        Rule("shut", Gate.open, Gate.closed),
        Rule("lock", Gate.closed, Gate.locked, effect=_lock),
        Rule("unlock", Gate.locked, Gate.closed, effect=_unlock),
        Rule("knock", (Gate.closed, Gate.open, Gate.locked), None, effect=_knock),
        Rule("look", Gate.closed, None, effect=_no_changes),
        Rule("remove", Gate.broken, Gate.removed),
    ),
)


def gate(state: str = "closed", **data: Any) -> Entity:
    return GATE.restore("g-1", state, dict(data))


# -- firing -----------------------------------------------------------------------------------


def test_fire_returns_the_transition_record() -> None:
    entity = gate()
    record = GATE.fire(entity, "lock", code="1234")
    assert isinstance(record, Transition)
    assert record == Transition("gate", "g-1", "lock", "closed", "locked", {"code": "1234"})
    assert (record.machine, record.entity_id, record.trigger) == ("gate", "g-1", "lock")
    assert (record.source, record.dest, dict(record.data)) == ("closed", "locked", {"code": "1234"})
    assert (entity.state, entity.data) == ("locked", {"code": "1234"})


def test_transition_is_immutable() -> None:
    record = GATE.fire(gate(), "lock", code="1234")
    with pytest.raises(AttributeError):
        record.dest = "open"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.data["code"] = "0000"  # type: ignore[index]
    with pytest.raises(TypeError):
        del record.data["code"]  # type: ignore[attr-defined]
    assert record.data == {"code": "1234"}


def test_transition_data_is_not_the_callers_dict() -> None:
    payload = {"code": "1234"}
    record = GATE.fire(gate(), "lock", **payload)
    payload["code"] = "changed"
    assert record.data == {"code": "1234"}


def test_unknown_trigger_is_an_invalid_transition() -> None:
    entity = gate(knocks=2)
    before = snapshot(entity)
    with pytest.raises(InvalidTransition) as info:
        GATE.fire(entity, "fly")
    err = info.value
    assert (err.machine, err.entity_id, err.state, err.trigger, err.reason) == (
        "gate",
        "g-1",
        "closed",
        "fly",
        "unknown trigger",
    )
    assert str(err) == "gate 'g-1' in state 'closed' refused trigger 'fly': unknown trigger"
    assert_unchanged(entity, before)


def test_create_is_not_a_trigger_that_can_be_fired() -> None:
    with pytest.raises(InvalidTransition, match="unknown trigger"):
        GATE.fire(gate(), CREATE)


def test_trigger_not_allowed_from_the_state_is_an_invalid_transition() -> None:
    entity = gate("locked", code="1", knocks=1)
    before = snapshot(entity)
    with pytest.raises(InvalidTransition) as info:
        GATE.fire(entity, "shut")
    err = info.value
    assert (err.machine, err.entity_id, err.state, err.trigger) == ("gate", "g-1", "locked", "shut")
    assert err.reason == "not allowed from this state"
    message = str(err)
    for part in ("gate", "'g-1'", "'locked'", "'shut'", "not allowed from this state"):
        assert part in message
    assert_unchanged(entity, before)


def test_entity_of_another_machine_is_refused() -> None:
    entity, _ = TOY.create("t-9")
    before = snapshot(entity)
    with pytest.raises(InvalidTransition, match="entity belongs to machine 'toy'") as info:
        GATE.fire(entity, "start")
    assert (info.value.machine, info.value.entity_id, info.value.state) == ("gate", "t-9", "idle")
    assert_unchanged(entity, before)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"code": 1.5}, r"code is a float \(1\.5\); use Decimal or int$"),
        ({"code": [1, 2.0]}, r"code\[1\] is a float"),
        ({"code": {"a": {"b": 0.1}}}, r"code\.a\.b is a float"),
        ({"code": [{"x": [3, float("nan")]}]}, r"code\[0\]\.x\[1\] is a float"),
        ({"code": (1, 2.5)}, r"code\[1\] is a float"),
        ({"code": {1: "one"}}, "code has a non-string key 1"),
        ({"code": {"ok": {None: 1}}}, r"code\.ok has a non-string key None"),
        ({"code": object()}, "code has type object, which the journal cannot store"),
        ({"code": {1, 2}}, "code has type set"),
        ({"code": [b"raw"]}, r"code\[0\] has type bytes"),
        ({"code": "1", "extra": 2.0}, "extra is a float"),
    ],
    ids=[
        "float",
        "float-in-list",
        "float-in-dict",
        "deep",
        "tuple",
        "int-key",
        "none-key",
        "object",
        "set",
        "bytes",
        "2nd",
    ],
)
def test_unjournalable_data_is_refused_with_its_key_path(data: dict[str, Any], message: str) -> None:
    entity = gate(knocks=0)
    before = snapshot(entity)
    with pytest.raises(InvalidData, match=message) as info:
        GATE.fire(entity, "lock", **data)
    err = info.value
    assert (err.machine, err.entity_id, err.state, err.trigger) == ("gate", "g-1", "closed", "lock")
    assert_unchanged(entity, before)


def test_journalable_data_is_accepted() -> None:
    payload: dict[str, Any] = {
        "code": "1234",
        "price": Decimal("101.25"),
        "qty": 3,
        "flag": True,
        "nothing": None,
        "nested": [1, "a", Decimal("0.1"), None, False, [2, {"k": [Decimal(1)]}]],
        "mapping": {"a": {"b": [1, 2]}, "c": None},
        "pair": (1, "x"),
    }
    assert check_data(payload) is None
    entity = gate()
    record = GATE.fire(entity, "lock", **payload)
    assert record.data == payload
    assert entity.state == "locked"


def test_check_data_accepts_scalar_subclasses() -> None:
    class Side(StrEnum):
        buy = "buy"

    class Level(enum.IntEnum):
        one = 1

    assert check_data({"side": Side.buy, "level": Level.one, "nested": [Side.buy]}) is None


def test_float_data_is_refused_even_with_a_valid_trigger_and_guard() -> None:
    entity = gate()
    with pytest.raises(InvalidData, match="force is a float"):
        GATE.fire(entity, "push", force=10.0)
    assert entity.state == "closed"


def test_first_rule_whose_guard_passes_wins() -> None:
    # Both guards pass at force 10: the first rule (-> broken) wins.
    strong = gate()
    assert GATE.fire(strong, "push", force=10).dest == "broken"
    # Only the second guard passes at force 3.
    gentle = gate()
    assert GATE.fire(gentle, "push", force=3).dest == "open"
    assert gentle.state == "open"


def test_no_guard_allowing_it_is_an_invalid_transition() -> None:
    entity = gate(knocks=1)
    before = snapshot(entity)
    with pytest.raises(InvalidTransition) as info:
        GATE.fire(entity, "push", force=0)
    assert info.value.reason == "no guard allowed it"
    assert (info.value.machine, info.value.entity_id, info.value.state, info.value.trigger) == (
        "gate",
        "g-1",
        "closed",
        "push",
    )
    assert_unchanged(entity, before)


def test_guard_raising_invalid_data_is_bound_and_leaves_the_entity_unchanged() -> None:
    entity = gate(knocks=1)
    before = snapshot(entity)
    with pytest.raises(InvalidData) as info:
        GATE.fire(entity, "push", force="hard")
    err = info.value
    assert (err.reason, err.machine, err.entity_id, err.state, err.trigger) == (
        "force (int) is required",
        "gate",
        "g-1",
        "closed",
        "push",
    )
    assert str(err) == "gate 'g-1' in state 'closed' refused trigger 'push': force (int) is required"
    assert_unchanged(entity, before)


def test_effect_raising_invalid_data_leaves_state_and_data_unchanged() -> None:
    entity = gate("locked", code="1234", unlocks=0)
    before = snapshot(entity)
    with pytest.raises(InvalidData) as info:
        GATE.fire(entity, "unlock", code="0000")
    err = info.value
    assert (err.reason, err.machine, err.entity_id, err.state, err.trigger) == (
        "wrong code",
        "gate",
        "g-1",
        "locked",
        "unlock",
    )
    assert_unchanged(entity, before)
    # And the right code goes through afterwards.
    GATE.fire(entity, "unlock", code="1234")
    assert (entity.state, entity.data) == ("closed", {"code": None, "unlocks": 1})


def test_internal_transition_keeps_the_state_and_applies_the_effect() -> None:
    for state in ("closed", "open", "locked"):
        entity = gate(state, knocks=4)
        record = GATE.fire(entity, "knock")
        assert (record.source, record.dest) == (state, state)
        assert (entity.state, entity.data) == (state, {"knocks": 5})


def test_effect_returning_none_changes_nothing() -> None:
    entity = gate(knocks=2)
    before = snapshot(entity)
    record = GATE.fire(entity, "look", note="just looking")
    assert (record.source, record.dest) == ("closed", "closed")
    assert_unchanged(entity, before)


def test_allowed_triggers() -> None:
    assert GATE.allowed_triggers("closed") == ("push", "lock", "knock", "look")
    assert GATE.allowed_triggers("locked") == ("unlock", "knock")
    assert GATE.allowed_triggers("broken") == ("remove",)
    assert GATE.allowed_triggers("removed") == ()
    assert GATE.allowed_triggers("nowhere") == ()
    assert TOY.allowed_triggers("idle") == ("start", "drop")
    assert TOY.allowed_triggers("active") == ("add", "finish", "drop")


# -- create and restore -----------------------------------------------------------------------


def test_create_returns_the_entity_and_its_create_record() -> None:
    entity, record = GATE.create("g-2", colour="green")
    assert (entity.machine, entity.entity_id, entity.state, entity.data) == (GATE, "g-2", "closed", {"colour": "green"})
    assert record == Transition("gate", "g-2", CREATE, None, "closed", {"colour": "green"})
    with pytest.raises(TypeError):
        record.data["colour"] = "red"  # type: ignore[index]
    # The entity's data is its own dict: changing it does not rewrite the record.
    entity.data["colour"] = "red"
    assert record.data == {"colour": "green"}


def test_create_with_an_init_hook() -> None:
    entity, record = TOY.create("t-1", target=5)
    assert entity.data == {"target": Decimal(5), "total": Decimal(0), "starts": 0}
    assert (record.trigger, record.source, record.dest, dict(record.data)) == (CREATE, None, "idle", {"target": 5})


def test_create_with_float_data_is_refused() -> None:
    with pytest.raises(InvalidData, match="target is a float") as info:
        TOY.create("t-1", target=2.5)
    err = info.value
    assert (err.machine, err.entity_id, err.state, err.trigger) == ("toy", "t-1", None, CREATE)


def test_create_with_an_init_raising_invalid_data() -> None:
    with pytest.raises(InvalidData) as info:
        TOY.create("t-1", target=0)
    err = info.value
    assert (err.reason, err.machine, err.entity_id, err.state, err.trigger) == (
        "target must be a positive number, got 0",
        "toy",
        "t-1",
        None,
        CREATE,
    )
    assert str(err) == "toy 't-1' in state None refused trigger 'create': target must be a positive number, got 0"


def test_restore_with_an_unknown_state_is_refused() -> None:
    with pytest.raises(InvalidData, match="unknown state 'sleeping'") as info:
        TOY.restore("t-1", "sleeping", {})
    assert (info.value.machine, info.value.entity_id, info.value.state, info.value.trigger) == (
        "toy",
        "t-1",
        "sleeping",
        "restore",
    )


def test_restore_applies_the_decode_hook() -> None:
    entity = TOY.restore("t-1", "active", {"target": "10", "total": "2.5", "starts": 1})
    assert entity.data == {"target": Decimal(10), "total": Decimal("2.5"), "starts": 1}
    assert isinstance(entity.data["total"], Decimal)
    assert entity.state == "active"


def test_restore_without_a_decode_hook_keeps_the_data() -> None:
    data = {"code": "1"}
    entity = GATE.restore("g-1", "locked", data)
    assert entity.data is data


def test_entity_live_and_repr() -> None:
    entity = gate(knocks=1)
    assert entity.live
    assert repr(entity) == "Entity(gate:'g-1' state='closed' data={'knocks': 1})"
    GATE.fire(entity, "push", force=9)
    assert not entity.live
    assert repr(entity) == "Entity(gate:'g-1' state='broken' data={'knocks': 1})"


# -- errors -----------------------------------------------------------------------------------


def test_error_families() -> None:
    assert issubclass(InvalidTransition, TransitionRefused)
    assert issubclass(InvalidData, TransitionRefused)
    assert issubclass(TransitionRefused, StateMachineError)
    assert issubclass(DefinitionError, StateMachineError)
    assert not issubclass(DefinitionError, TransitionRefused)
    assert issubclass(UnknownMachine, LookupError)


def test_unbound_refusal_is_just_its_reason() -> None:
    err = InvalidData("qty must be positive")
    assert str(err) == "qty must be positive"
    assert (err.machine, err.entity_id, err.state, err.trigger) == (None, None, None, None)


def test_bind_fills_only_missing_fields() -> None:
    err = InvalidData("bad")
    assert err.bind(machine="m", entity_id="e", state="s", trigger="t") is err
    assert (err.machine, err.entity_id, err.state, err.trigger) == ("m", "e", "s", "t")

    preset = InvalidTransition("bad", machine="order", entity_id="", state="new", trigger="fill")
    preset.bind(machine="m", entity_id="e", state="s", trigger="t")
    assert (preset.machine, preset.entity_id, preset.state, preset.trigger) == ("order", "", "new", "fill")
    assert str(preset) == "order '' in state 'new' refused trigger 'fill': bad"


def test_effect_error_with_its_own_context_keeps_it() -> None:
    def reject(entity: Entity, data: Data) -> None:
        raise InvalidData("venue says no", trigger="venue_reject")

    class One(StrEnum):
        a = "a"

    machine = StateMachine(
        "one", states=One, initial=One.a, state_docs={One.a: "x"}, rules=(Rule("poke", One.a, None, effect=reject),)
    )
    entity, _ = machine.create("e")
    with pytest.raises(InvalidData) as info:
        machine.fire(entity, "poke")
    assert (info.value.machine, info.value.entity_id, info.value.state, info.value.trigger) == (
        "one",
        "e",
        "a",
        "venue_reject",
    )


def test_unknown_machine_lists_the_known_names() -> None:
    err = UnknownMachine("order", ["feed", "run"])
    assert (err.name, err.known) == ("order", ["feed", "run"])
    assert str(err) == "unknown machine 'order' (known: feed, run)"
    assert str(UnknownMachine("order", [])) == "unknown machine 'order' (known: none)"


# -- registry ---------------------------------------------------------------------------------


@pytest.fixture
def register() -> Iterator[Callable[[StateMachine], StateMachine]]:
    """Register machines for one test; unregister them (and only them) afterwards."""
    mine: list[str] = []

    def _register(machine: StateMachine) -> StateMachine:
        result = registry.register(machine)
        mine.append(machine.name)
        return result

    yield _register
    for name in mine:
        assert name not in ("run", "toy"), "tests must not unregister the product machines"
        registry.unregister(name)


def test_register_returns_the_machine_and_get_finds_it(register: Callable[[StateMachine], StateMachine]) -> None:
    machine = define("testreg_light")
    assert register(machine) is machine
    assert registry.get("testreg_light") is machine
    assert "testreg_light" in registry.names()


def test_registering_the_same_machine_twice_is_harmless(register: Callable[[StateMachine], StateMachine]) -> None:
    machine = define("testreg_light")
    register(machine)
    assert register(machine) is machine
    assert registry.names().count("testreg_light") == 1


def test_a_different_machine_with_a_taken_name_is_refused(register: Callable[[StateMachine], StateMachine]) -> None:
    first = register(define("testreg_light"))
    with pytest.raises(DefinitionError, match="a different machine named 'testreg_light' is already registered"):
        registry.register(define("testreg_light"))
    assert registry.get("testreg_light") is first
    with pytest.raises(DefinitionError, match="'toy'"):
        registry.register(define("toy"))
    assert registry.get("toy") is TOY


def test_get_unknown_machine(register: Callable[[StateMachine], StateMachine]) -> None:
    register(define("testreg_light"))
    with pytest.raises(UnknownMachine) as info:
        registry.get("nope")
    assert isinstance(info.value, LookupError)
    assert info.value.name == "nope"
    assert info.value.known == registry.names()
    assert "testreg_light" in str(info.value)
    assert "run" in str(info.value)


def test_names_are_sorted(register: Callable[[StateMachine], StateMachine]) -> None:
    register(define("testreg_zz"))
    register(define("testreg_aa"))
    names = registry.names()
    assert names == sorted(names)
    assert {"run", "toy", "testreg_aa", "testreg_zz"} <= set(names)


def test_unregister(register: Callable[[StateMachine], StateMachine]) -> None:
    register(define("testreg_light"))
    registry.unregister("testreg_light")
    assert "testreg_light" not in registry.names()
    with pytest.raises(UnknownMachine):
        registry.get("testreg_light")
    registry.unregister("testreg_light")  # forgetting an unknown name is a no-op
    # A different machine may now take the name.
    other = register(define("testreg_light"))
    assert registry.get("testreg_light") is other


def test_product_machines_are_registered() -> None:
    assert registry.get("run") is RUN
    assert registry.get("toy") is TOY


# -- table tests: every state x every trigger, expectations from the machine's own rules ----------

# Trigger data that satisfies each rule's effect, and entity data that makes each guard pass or fail.
TOY_TRIGGER_DATA: dict[str, dict[str, Any]] = {"add": {"qty": Decimal("2.5")}}
TOY_GUARD_DATA: dict[tuple[str, bool], dict[str, str]] = {
    ("target_reached", True): {"total": "10", "target": "10"},
    ("target_reached", False): {"total": "9.99", "target": "10"},
}
RUN_TRIGGER_DATA: dict[str, dict[str, Any]] = {
    "stop": {"ended_ns": 1_700_000_000_000_000_500},
    "crash_detected": {"detected_by_run": 2, "detected_ns": 1_700_000_000_000_000_900},
}


def rules_for(machine: StateMachine, state: str, trigger: str) -> list[Rule]:
    return [r for r in machine.rules if r.trigger == trigger and any(str(s.value) == state for s in r.sources)]


def table_cases(machine: StateMachine) -> list[Any]:
    """One case per (state, trigger); guarded rules get a guard-passes and a guard-fails case."""
    cases = []
    for state, trigger in itertools.product(machine.state_names, machine.triggers):
        rules = rules_for(machine, state, trigger)
        if not rules:
            kinds = ["refused"]
        elif rules[0].guard is None:
            kinds = ["fires"]
        else:
            kinds = ["guard-passes", "guard-fails"]
        cases += [pytest.param(state, trigger, kind, id=f"{state}-{trigger}-{kind}") for kind in kinds]
    return cases


def check_table_case(machine: StateMachine, entity: Entity, trigger: str, kind: str, data: dict[str, Any]) -> None:
    state = entity.state
    rules = rules_for(machine, state, trigger)
    assert (trigger in machine.allowed_triggers(state)) == bool(rules)
    before = snapshot(entity)
    if kind in ("refused", "guard-fails"):
        with pytest.raises(InvalidTransition) as info:
            machine.fire(entity, trigger, **data)
        expected = "not allowed from this state" if kind == "refused" else "no guard allowed it"
        assert info.value.reason == expected
        assert (info.value.machine, info.value.state, info.value.trigger) == (machine.name, state, trigger)
        assert_unchanged(entity, before)
        return
    rule = rules[0]
    record = machine.fire(entity, trigger, **data)
    dest = state if rule.dest is None else str(rule.dest.value)
    assert (record.machine, record.trigger, record.source, record.dest) == (machine.name, trigger, state, dest)
    assert entity.state == dest
    assert entity.live == (dest not in machine.terminal_names)


@pytest.mark.parametrize(("state", "trigger", "kind"), table_cases(TOY))
def test_toy_table(state: str, trigger: str, kind: str) -> None:
    rules = rules_for(TOY, state, trigger)
    guard = rules[0].guard_label if rules else ""
    entity_data = TOY_GUARD_DATA.get((guard, kind == "guard-passes"), {}) if guard else {}
    entity = toy_entity(state, **entity_data)
    check_table_case(TOY, entity, trigger, kind, TOY_TRIGGER_DATA.get(trigger, {}))


def test_toy_table_effects() -> None:
    """What the table test cannot see from dests alone: the toy's effects on data."""
    entity, _ = TOY.create("t-1", target="5")
    TOY.fire(entity, "start")
    TOY.fire(entity, "add", qty=Decimal("2.5"))
    TOY.fire(entity, "add", qty="2.5")
    TOY.fire(entity, "finish")
    assert (entity.state, entity.data) == ("done", {"target": Decimal(5), "total": Decimal(5), "starts": 1})


@pytest.mark.parametrize(("state", "trigger", "kind"), table_cases(RUN))
def test_run_table(state: str, trigger: str, kind: str) -> None:
    entity = RUN.restore(
        "1", state, {"started_ns": 1_700_000_000_000_000_000, "ended_ns": None, "detected_by_run": None}
    )
    check_table_case(RUN, entity, trigger, kind, RUN_TRIGGER_DATA.get(trigger, {}))


def test_table_cases_cover_every_pair() -> None:
    for machine in (TOY, RUN):
        pairs = {(c.values[0], c.values[1]) for c in table_cases(machine)}
        assert pairs == set(itertools.product(machine.state_names, machine.triggers))
    # The toy exercises every kind of row.
    kinds = {c.values[2] for c in table_cases(TOY)}
    assert kinds == {"refused", "fires", "guard-passes", "guard-fails"}


# -- the toy machine's own data checks ---------------------------------------------------------


@pytest.mark.parametrize("qty", [0, -1, Decimal("-0.01"), "0", "abc", "", None, True, [1]], ids=repr)
def test_toy_add_refuses_non_positive_or_non_decimal_qty(qty: Any) -> None:
    entity = toy_entity("active", total="1")
    before = snapshot(entity)
    with pytest.raises(InvalidData, match="qty must be"):
        TOY.fire(entity, "add", qty=qty)
    assert_unchanged(entity, before)


def test_toy_add_without_qty_is_refused() -> None:
    entity = toy_entity("active")
    with pytest.raises(InvalidData, match="qty is required"):
        TOY.fire(entity, "add")


@pytest.mark.parametrize("qty", ["NaN", "sNaN", Decimal("NaN")], ids=repr)
def test_toy_add_refuses_nan_qty_as_invalid_data(qty: Any) -> None:
    # A NaN quantity is not positive: fire must refuse it with InvalidData, never let
    # decimal.InvalidOperation (not a TransitionRefused) escape.
    entity = toy_entity("active", total="1")
    before = snapshot(entity)
    with pytest.raises(InvalidData):
        TOY.fire(entity, "add", qty=qty)
    assert_unchanged(entity, before)


@pytest.mark.parametrize("target", ["abc", "NaN", None], ids=repr)
def test_toy_create_refuses_a_non_decimal_target_as_invalid_data(target: Any) -> None:
    with pytest.raises(InvalidData):
        TOY.create("t-1", target=target)


# -- the run machine --------------------------------------------------------------------------


def test_run_create_requires_started_ns() -> None:
    with pytest.raises(InvalidData, match="started_ns") as info:
        RUN.create("1", pid=1)
    assert (info.value.machine, info.value.entity_id, info.value.trigger) == ("run", "1", CREATE)
    with pytest.raises(InvalidData, match="started_ns"):
        RUN.create("1", started_ns="1700000000")


def test_run_create_keeps_its_data_and_defaults() -> None:
    entity, record = RUN.create("3", started_ns=5, pid=42, host="h", version="1.0")
    assert entity.data == {
        "ended_ns": None,
        "detected_by_run": None,
        "detected_ns": None,
        "started_ns": 5,
        "pid": 42,
        "host": "h",
        "version": "1.0",
    }
    assert (record.trigger, record.source, record.dest) == (CREATE, None, "running")
    assert entity.live


def test_run_stop_requires_ended_ns() -> None:
    entity, _ = RUN.create("1", started_ns=5)
    before = snapshot(entity)
    for data in ({}, {"ended_ns": "6"}, {"ended_ns": None}):
        with pytest.raises(InvalidData, match="ended_ns") as info:
            RUN.fire(entity, "stop", **data)
        assert (info.value.machine, info.value.entity_id, info.value.state, info.value.trigger) == (
            "run",
            "1",
            "running",
            "stop",
        )
        assert_unchanged(entity, before)
    RUN.fire(entity, "stop", ended_ns=6)
    assert (entity.state, entity.data["ended_ns"], entity.live) == (RunState.stopped, 6, False)


def test_run_crash_detected_requires_detected_by_run() -> None:
    entity, _ = RUN.create("1", started_ns=5)
    before = snapshot(entity)
    for data in ({"detected_ns": 9}, {"detected_by_run": "2", "detected_ns": 9}):
        with pytest.raises(InvalidData, match="detected_by_run"):
            RUN.fire(entity, "crash_detected", **data)
        assert_unchanged(entity, before)
    record = RUN.fire(entity, "crash_detected", detected_by_run=2, detected_ns=9)
    assert (record.source, record.dest) == ("running", "crashed")
    assert entity.data["detected_by_run"] == 2
    assert not entity.live


def test_run_terminal_states_refuse_everything() -> None:
    for state in ("stopped", "crashed"):
        entity = RUN.restore("1", state, {"started_ns": 5})
        assert RUN.allowed_triggers(state) == ()
        for trigger, data in RUN_TRIGGER_DATA.items():
            with pytest.raises(InvalidTransition, match="not allowed from this state"):
                RUN.fire(entity, trigger, **data)
        assert entity.state == state


# -- property test: random triggers and data on toy entities -------------------------------------

MISSING = object()

positive_qty = st.one_of(
    st.integers(min_value=1, max_value=1000),
    st.decimals(min_value=Decimal("0.01"), max_value=1000, places=2),
    st.sampled_from(["1", "0.5", "7.25"]),
)
# NaN quantities are left to test_toy_add_refuses_nan_qty_as_invalid_data.
bad_qty = st.one_of(
    st.integers(max_value=0),
    st.decimals(max_value=0, allow_nan=False, places=3),
    st.floats(),
    st.sampled_from(["0", "-2", "abc", "", None, True, False, [1], {"q": 1}]),
)
trigger_data = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"qty": st.one_of(positive_qty, bad_qty)}),
    st.fixed_dictionaries({"qty": positive_qty, "note": st.one_of(st.text(max_size=3), st.floats())}),
)
targets = st.one_of(
    st.just(MISSING),
    st.integers(min_value=-3, max_value=30),
    st.decimals(min_value=-1, max_value=30, places=1),
    st.floats(),
)


def has_float(value: Any) -> bool:
    """True when ``check_data`` must refuse: a float anywhere, or a non-finite Decimal."""
    if isinstance(value, float):
        return True
    if isinstance(value, Decimal):
        return not value.is_finite()
    if isinstance(value, dict):
        return any(has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(has_float(v) for v in value)
    return False


class ToyMachine(RuleBasedStateMachine):
    """Toy entities under random triggers; a plain-Python model predicts every outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.entities: dict[str, Entity] = {}
        self.accepted: dict[str, Decimal] = {}  # sum of accepted qty per entity
        self.last_total: dict[str, Decimal] = {}
        self.ended: dict[str, str] = {}  # entity id -> the terminal state it reached

    @rule(goal=targets)
    def create(self, goal: Any) -> None:
        entity_id = f"t-{len(self.entities)}"
        data = {} if goal is MISSING else {"target": goal}
        valid = goal is MISSING or (not isinstance(goal, float) and Decimal(goal) > 0)
        if not valid:
            with pytest.raises(InvalidData):
                TOY.create(entity_id, **data)
            return
        entity, record = TOY.create(entity_id, **data)
        assert (record.trigger, record.source, record.dest) == (CREATE, None, "idle")
        self.entities[entity_id] = entity
        self.accepted[entity_id] = Decimal(0)
        self.last_total[entity_id] = Decimal(0)

    @precondition(lambda self: bool(self.entities))
    @rule(
        which=st.data(),
        trigger=st.sampled_from([*TOY.triggers, "bogus", CREATE]),
        data=trigger_data,
    )
    def fire(self, which: st.DataObject, trigger: str, data: dict[str, Any]) -> None:
        entity_id = which.draw(st.sampled_from(sorted(self.entities)), label="entity")
        entity = self.entities[entity_id]
        before = snapshot(entity)
        expected = self.predict(entity, trigger, data)
        if isinstance(expected, type):
            with pytest.raises(expected) as info:
                TOY.fire(entity, trigger, **data)
            err = info.value
            assert (err.machine, err.entity_id, err.state, err.trigger) == ("toy", entity_id, before[0], trigger)
            assert_unchanged(entity, before)
            return
        record = TOY.fire(entity, trigger, **data)
        assert entity.state == expected, f"{trigger} {data} reached {entity.state}; model expected {expected}"
        assert (record.source, record.dest) == (before[0], entity.state)
        if trigger == "add":
            self.accepted[entity_id] += Decimal(str(data["qty"]))
        if not entity.live:
            self.ended[entity_id] = entity.state

    @staticmethod
    def predict(entity: Entity, trigger: str, data: dict[str, Any]) -> str | type[TransitionRefused]:
        """The state ``fire`` must reach, or the refusal it must raise."""
        if trigger not in TOY.allowed_triggers(entity.state):
            return InvalidTransition
        if has_float(data):
            return InvalidData
        if trigger == "start":
            return "active"
        if trigger == "drop":
            return "dropped"
        if trigger == "finish":
            return "done" if entity.data["total"] >= entity.data["target"] else InvalidTransition
        qty = data.get("qty", MISSING)
        if qty is MISSING or isinstance(qty, bool | list | dict) or qty is None:
            return InvalidData
        try:
            return entity.state if Decimal(str(qty)) > 0 else InvalidData
        except ArithmeticError:
            return InvalidData

    @invariant()
    def states_are_members(self) -> None:
        for entity in self.entities.values():
            assert entity.state in TOY.state_names

    @invariant()
    def terminal_states_stay_terminal(self) -> None:
        for entity_id, state in self.ended.items():
            assert self.entities[entity_id].state == state
            assert state in TOY.terminal_names

    @invariant()
    def total_never_decreases_and_sums_the_accepted_qty(self) -> None:
        for entity_id, entity in self.entities.items():
            total = entity.data["total"]
            assert isinstance(total, Decimal)
            assert total >= self.last_total[entity_id]
            assert total == self.accepted[entity_id]
            self.last_total[entity_id] = total


ToyMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestToyMachine = ToyMachine.TestCase


def test_toy_state_enum_matches_the_machine() -> None:
    assert TOY.state_names == tuple(s.value for s in ToyState)
    assert TOY.terminal_names == {"done", "dropped"}


def test_run_crash_detected_requires_and_keeps_detected_ns() -> None:
    entity, _ = RUN.create("1", started_ns=5)
    for data in ({"detected_by_run": 2}, {"detected_by_run": 2, "detected_ns": True}):
        with pytest.raises(InvalidData, match="detected_ns"):
            RUN.fire(entity, "crash_detected", **data)
        assert entity.state == "running"
    RUN.fire(entity, "crash_detected", detected_by_run=2, detected_ns=9)
    assert (entity.data["detected_by_run"], entity.data["detected_ns"]) == (2, 9)


@pytest.mark.parametrize("name", ["started_ns", "ended_ns"])
def test_run_refuses_a_bool_where_an_int_time_belongs(name: str) -> None:
    if name == "started_ns":
        with pytest.raises(InvalidData, match="started_ns"):
            RUN.create("1", started_ns=True)
        return
    entity, _ = RUN.create("1", started_ns=5)
    with pytest.raises(InvalidData, match="ended_ns"):
        RUN.fire(entity, "stop", ended_ns=False)
    assert entity.state == "running"


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")], ids=str)
def test_check_data_refuses_non_finite_decimals(value: Decimal) -> None:
    assert check_data({"price": value}) == f"price is not a finite number ({value})"
    assert check_data({"fills": [{"price": value}]}) == f"fills[0].price is not a finite number ({value})"
    entity, _ = TOY.create("t-nan")
    TOY.fire(entity, "start")
    with pytest.raises(InvalidData, match="not a finite number"):
        TOY.fire(entity, "add", qty=value)
    assert entity.data["total"] == 0


def test_create_copies_nested_data_so_the_record_stays_as_recorded() -> None:
    kind = StateMachine("nested_copy", states=Light, initial=Light.off, rules=LIGHT_RULES, state_docs=LIGHT_DOCS)
    legs = [{"qty": "1"}]
    entity, record = kind.create("n-1", legs=legs)
    entity.data["legs"].append({"qty": "2"})
    assert record.data["legs"] == [{"qty": "1"}]


def test_timed_args_returns_now_ms_and_refuses_other_keys() -> None:
    from machines.base import MAX_NOW_MS, timed_args

    assert timed_args({"now_ms": 5, "reason": "x"}, "reason") == 5
    assert timed_args({"now_ms": MAX_NOW_MS}) == MAX_NOW_MS
    for data, message in (
        ({"now_ms": 1, "extra": 2}, "unknown fields: extra"),
        ({}, "now_ms .* is required"),
        ({"now_ms": -1}, "non-negative int"),
        ({"now_ms": True}, "non-negative int"),
        ({"now_ms": MAX_NOW_MS + 1}, "non-negative int"),
    ):
        with pytest.raises(InvalidData, match=message):
            timed_args(data)
