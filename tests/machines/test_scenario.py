"""Scripted scenarios (``machines.scenario``): parsing, running, checking, reporting.

Parse errors name where the problem is (``ScenarioError.where``); ``run`` checks each step's
expectations (state, error by class or base class, any data field compared as decimals) and runs on
after a failure; ``record`` sees only what the machine accepted; ``assert_scenario`` is the pytest
entry point; ``as_json`` is the ``drive --json`` shape.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from machines import Entity, StateMachineError, Transition
from machines.scenario import (
    REPORTED_FIELDS,
    Scenario,
    ScenarioError,
    Step,
    _same,
    assert_scenario,
    parse,
    run,
    run_all,
)

CREATE = {"instrument": "XYZ", "side": "buy", "type": "limit", "qty": "10", "price": "10.00"}
STEP_KEYS = {"trigger", "ok", "state", "cum_qty", "leaves_qty", "avg_px", "error", "failures"}


def order_scenario(*steps: dict[str, Any], entity: str = "o-1", **extra: Any) -> dict[str, Any]:
    return {"machine": "order", "entity": entity, "create": dict(CREATE), "steps": list(steps), **extra}


def one(document: Any) -> Scenario:
    (scenario,) = parse(document)
    return scenario


SUBMIT = {"trigger": "submit", "expect": {"state": "pending_new"}}
ACCEPT = {"trigger": "accept", "data": {"venue_order_id": "V1"}, "expect": {"state": "accepted"}}


def fill(qty: str, price: str = "10", trade_id: str = "T1", **expect: Any) -> dict[str, Any]:
    return {"trigger": "fill", "data": {"qty": qty, "price": price, "trade_id": trade_id}, "expect": expect}


# -- parsing ----------------------------------------------------------------------------------


def test_parse_one_scenario() -> None:
    document = order_scenario(
        {"trigger": "submit", "note": "why not"}, fill("1", state="partially_filled"), name="a name", description="d"
    )
    snapshot = copy.deepcopy(document)
    scenario = one(document)
    assert scenario == Scenario(
        machine="order",
        entity="o-1",
        create=CREATE,
        steps=(
            Step("submit", {}, {}),
            Step("fill", {"qty": "1", "price": "10", "trade_id": "T1"}, {"state": "partially_filled"}),
        ),
        name="a name",
    )
    assert document == snapshot


def test_parse_defaults() -> None:
    scenario = one({"machine": "order", "entity": "o-1", "steps": []})
    assert (scenario.create, scenario.steps, scenario.name) == ({}, (), "")
    scenario = one({"machine": "order", "entity": "o-1", "create": None, "steps": [{"trigger": "x", "data": None}]})
    assert scenario.create == {}
    assert scenario.steps == (Step("x", {}, {}),)


def test_parse_list() -> None:
    scenarios = parse([order_scenario(entity="a"), order_scenario(entity="b")])
    assert [s.entity for s in scenarios] == ["a", "b"]


def _bad(**change: Any) -> dict[str, Any]:
    document = order_scenario(dict(SUBMIT))
    for key, value in change.items():
        if value is ...:
            del document[key]
        else:
            document[key] = value
    return document


@pytest.mark.parametrize(
    ("document", "where", "problem"),
    [
        pytest.param("scenario", "", "a scenario must be an object, got str", id="not-an-object"),
        pytest.param(None, "", "a scenario must be an object, got NoneType", id="null"),
        pytest.param([], "", "holds no scenario", id="empty-list"),
        pytest.param(_bad(extra=1, other=2), "", "unknown keys: extra, other", id="unknown-keys"),
        pytest.param(_bad(machine=...), "machine", "a machine name (string) is required", id="missing-machine"),
        pytest.param(_bad(machine=3), "machine", "a machine name (string) is required", id="non-string-machine"),
        pytest.param(_bad(machine="rocket"), "machine", "unknown machine 'rocket'", id="unknown-machine"),
        pytest.param(_bad(entity=...), "entity", "an entity id (non-empty string) is required", id="missing-entity"),
        pytest.param(_bad(entity=""), "entity", "an entity id (non-empty string) is required", id="empty-entity"),
        pytest.param(_bad(steps=...), "steps", "a list of steps is required", id="missing-steps"),
        pytest.param(_bad(steps={"trigger": "submit"}), "steps", "a list of steps is required", id="steps-not-list"),
        pytest.param(_bad(steps=[SUBMIT, "submit"]), "steps[1]", "a step must be an object", id="step-not-object"),
        pytest.param(
            _bad(steps=[{"trigger": "submit", "expected": {}}]), "steps[0]", "unknown keys: expected", id="step-keys"
        ),
        pytest.param(_bad(steps=[{"data": {}}]), "steps[0].trigger", "a trigger name", id="missing-trigger"),
        pytest.param(_bad(steps=[{"trigger": ""}]), "steps[0].trigger", "a trigger name", id="empty-trigger"),
        pytest.param(_bad(steps=[{"trigger": 1}]), "steps[0].trigger", "a trigger name", id="non-string-trigger"),
        pytest.param(
            _bad(steps=[{"trigger": "fill", "data": ["qty"]}]),
            "steps[0].data",
            "must be an object, got list",
            id="data-not-object",
        ),
        pytest.param(
            _bad(steps=[{"trigger": "fill", "data": {1: "qty"}}]),
            "steps[0].data",
            "must be an object, got dict",
            id="data-non-string-keys",
        ),
        pytest.param(
            _bad(steps=[{"trigger": "fill", "expect": "filled"}]),
            "steps[0].expect",
            "must be an object, got str",
            id="expect-not-object",
        ),
        pytest.param(_bad(create=[1]), "create", "must be an object, got list", id="create-not-object"),
        pytest.param(_bad(name=5), "name", "must be a string", id="name-not-string"),
    ],
)
def test_parse_errors(document: Any, where: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse(document)
    assert info.value.where == where
    assert problem in info.value.problem
    assert str(info.value) == (f"{where}: {info.value.problem}" if where else info.value.problem)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, StateMachineError)


def test_parse_errors_in_a_list_name_the_index() -> None:
    good = order_scenario(dict(SUBMIT))
    bad = _bad(steps=[SUBMIT, {"note": "no trigger"}])
    with pytest.raises(ScenarioError) as info:
        parse([good, bad])
    assert info.value.where == "[1].steps[1].trigger"
    with pytest.raises(ScenarioError) as info:
        parse([good, 7])
    assert info.value.where == "[1]"
    assert "got int" in info.value.problem
    with pytest.raises(ScenarioError) as info:
        parse([_bad(machine="rocket")])
    assert info.value.where == "[0].machine"


def test_parse_errors_are_prefixed_with_the_source() -> None:
    with pytest.raises(ScenarioError) as info:
        parse(_bad(steps=[{}]), source="file.json")
    assert info.value.where == "file.json: steps[0].trigger"
    assert str(info.value) == "file.json: steps[0].trigger: a trigger name (string) is required"

    with pytest.raises(ScenarioError) as info:
        parse([order_scenario(), _bad(entity=...)], source="dir/file.json")
    assert info.value.where == "dir/file.json: [1].entity"

    with pytest.raises(ScenarioError) as info:
        parse(_bad(surprise=True), source="file.json")
    assert info.value.where == "file.json"
    assert info.value.problem == "unknown keys: surprise"

    with pytest.raises(ScenarioError) as info:
        parse([], source="empty.json")
    assert info.value.where == "empty.json"
    assert str(info.value) == "empty.json: holds no scenario"


def test_scenario_error_without_where() -> None:
    error = ScenarioError("", "something")
    assert (error.where, error.problem, str(error)) == ("", "something", "something")


# -- running ----------------------------------------------------------------------------------


def test_run_passing_scenario() -> None:
    result = run(
        one(
            order_scenario(
                SUBMIT,
                ACCEPT,
                fill("4", "10", state="partially_filled", cum_qty="4", leaves_qty="6.0", avg_px="10.00"),
                fill("6", "11", "T2", state="filled", avg_px="10.6", reason=None, venue_order_id="V1"),
            )
        )
    )
    assert result.passed
    assert result.create_error is None
    assert [s.ok for s in result.steps] == [True] * 4
    assert [s.state for s in result.steps] == ["pending_new", "accepted", "partially_filled", "filled"]
    assert result.steps[0].fields == {"cum_qty": "0", "leaves_qty": "10", "avg_px": None}
    assert result.steps[3].fields == {"cum_qty": "10", "leaves_qty": "0", "avg_px": "10.6"}
    assert result.describe_failures() == []


def test_run_create_error() -> None:
    document = order_scenario(SUBMIT)
    document["create"] = {**CREATE, "qty": "-1"}
    result = run(one(document))
    assert not result.passed
    assert result.steps == []
    assert result.create_error is not None
    assert result.create_error.startswith("InvalidData: ")
    assert "qty must be positive" in result.create_error
    assert result.describe_failures() == [f"create: {result.create_error}"]
    assert result.as_json() == {
        "entity": "o-1",
        "machine": "order",
        "passed": False,
        "steps": [],
        "create_error": result.create_error,
    }


@pytest.mark.parametrize("name", ["InvalidTransition", "TransitionRefused", "StateMachineError", "Exception"])
def test_expected_error_by_class_or_base_class(name: str) -> None:
    result = run(one(order_scenario({"trigger": "fill", "expect": {"error": name, "state": "new"}})))
    assert result.passed, result.describe_failures()
    assert result.steps[0].error == "InvalidTransition"
    assert result.steps[0].ok


@pytest.mark.parametrize("name", ["Overfill", "InvalidData", "TransitionRefused"])
def test_overfill_matches_its_bases(name: str) -> None:
    result = run(one(order_scenario(SUBMIT, ACCEPT, {**fill("11"), "expect": {"error": name, "cum_qty": "0"}})))
    assert result.passed, result.describe_failures()
    assert result.steps[2].error == "Overfill"


def test_wrong_error_class_fails() -> None:
    result = run(one(order_scenario({"trigger": "fill", "expect": {"error": "InvalidData"}})))
    assert not result.passed
    (failure,) = result.steps[0].failures
    assert failure.startswith("expected error InvalidData, got InvalidTransition: order 'o-1' in state 'new'")


def test_unexpected_error_fails() -> None:
    result = run(one(order_scenario({"trigger": "fill", "expect": {"state": "new"}})))
    assert not result.passed
    step = result.steps[0]
    assert (step.ok, step.state, step.error) == (False, "new", "InvalidTransition")
    (failure,) = step.failures
    assert failure.startswith("unexpected InvalidTransition: ")
    assert "not allowed from this state" in failure


def test_unexpected_error_without_expectations_fails() -> None:
    result = run(one(order_scenario({"trigger": "no_such_trigger"})))
    assert not result.passed
    assert result.steps[0].failures == [
        "unexpected InvalidTransition: order 'o-1' in state 'new' refused trigger 'no_such_trigger': unknown trigger"
    ]


def test_expected_error_not_raised_fails() -> None:
    result = run(one(order_scenario({"trigger": "submit", "expect": {"error": "InvalidTransition"}})))
    assert not result.passed
    assert result.steps[0].failures == ["expected error InvalidTransition, but the trigger was accepted"]
    assert result.steps[0].error is None
    assert result.steps[0].state == "pending_new"


def test_wrong_state_fails() -> None:
    result = run(one(order_scenario({"trigger": "submit", "expect": {"state": "accepted"}})))
    assert result.steps[0].failures == ["expected state accepted, got pending_new"]


def test_unknown_field_fails() -> None:
    result = run(one(order_scenario({"trigger": "submit", "expect": {"colour": "red"}})))
    assert result.steps[0].failures == ["expected colour = red, but order has no field 'colour'"]


def test_wrong_field_value_fails_and_reports_actual() -> None:
    result = run(one(order_scenario({"trigger": "submit", "expect": {"leaves_qty": "9", "avg_px": "1"}})))
    assert result.steps[0].failures == ["expected leaves_qty = 9, got 10", "expected avg_px = 1, got None"]


def test_steps_continue_after_a_failure() -> None:
    result = run(
        one(
            order_scenario(
                {"trigger": "submit", "expect": {"state": "wrong"}},
                {"trigger": "accept", "expect": {"state": "accepted"}},  # no venue_order_id: InvalidData
                {"trigger": "accept", "data": {"venue_order_id": "V1"}, "expect": {"state": "accepted"}},
                fill("1", cum_qty="2"),
            )
        )
    )
    assert [s.ok for s in result.steps] == [False, False, True, False]
    assert [s.state for s in result.steps] == ["pending_new", "pending_new", "accepted", "partially_filled"]
    assert result.describe_failures() == [
        "step 1 (submit): expected state wrong, got pending_new",
        "step 2 (accept): expected state accepted, got pending_new; unexpected InvalidData: order 'o-1' in state "
        "'pending_new' refused trigger 'accept': accept needs a venue_order_id (a non-empty string)",
        "step 4 (fill): expected cum_qty = 2, got 1",
    ]


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        pytest.param("10", Decimal("10.00"), True, id="str-decimal"),
        pytest.param("10.00", Decimal("10"), True, id="str-decimal-scale"),
        pytest.param(10, Decimal("10.0"), True, id="int-decimal"),
        pytest.param(Decimal("1E+1"), "10", True, id="decimal-str"),
        pytest.param("10.01", Decimal("10"), False, id="str-decimal-differs"),
        pytest.param("ten", Decimal("10"), False, id="not-a-number-vs-decimal"),
        pytest.param(True, Decimal("1"), False, id="bool-vs-decimal"),
        pytest.param(None, None, True, id="none-none"),
        pytest.param(None, Decimal("0"), False, id="none-vs-decimal"),
        pytest.param("0", None, False, id="str-vs-none"),
        pytest.param(0, None, False, id="zero-vs-none"),
        pytest.param(1, 1, True, id="int-int"),
        pytest.param("1", 1, True, id="str-int"),
        pytest.param(2, 1, False, id="int-int-differs"),
        pytest.param("V1", "V1", True, id="str-str"),
        pytest.param("V1", "V2", False, id="str-str-differs"),
        pytest.param("3", "3.0", False, id="numeric-strings-are-text"),
        pytest.param(True, True, True, id="bool-bool"),
        pytest.param(False, True, False, id="bool-bool-differs"),
        pytest.param("True", True, False, id="str-vs-bool"),
        pytest.param(["T1"], ["T1"], True, id="list-list"),
        pytest.param(["T1"], ["T2"], False, id="list-list-differs"),
    ],
)
def test_same_compares_as_decimals(expected: Any, actual: Any, same: bool) -> None:
    assert _same(expected, actual) is same


def test_field_comparisons_in_a_run() -> None:
    result = run(
        one(
            order_scenario(
                {
                    "trigger": "submit",
                    "expect": {
                        "qty": 10,
                        "price": "10",
                        "avg_px": None,
                        "reason": None,
                        "duplicate_fills": "0",
                        "trade_ids": [],
                        "side": "buy",
                    },
                },
                ACCEPT,
                fill("2", "10.5", duplicate_fills=0, trade_ids=["T1"], avg_px="10.50", cum_qty=2),
            )
        )
    )
    assert result.passed, result.describe_failures()


def test_record_sees_create_and_accepted_transitions_only() -> None:
    seen: list[tuple[Transition, str, str]] = []

    def record(transition: Transition, entity: Entity) -> None:
        seen.append((transition, entity.entity_id, entity.state))

    result = run(
        one(
            order_scenario(
                SUBMIT,
                {"trigger": "fill", "data": {"qty": "0"}, "expect": {"error": "InvalidData"}},
                {"trigger": "cancel_reject", "expect": {"error": "InvalidTransition"}},
                ACCEPT,
                fill("1"),
                fill("1", cum_qty="1", duplicate_fills=1),  # a duplicate is accepted (and recorded)
            )
        ),
        record,
    )
    assert result.passed, result.describe_failures()
    assert [(t.trigger, t.source, t.dest) for t, _, _ in seen] == [
        ("create", None, "new"),
        ("submit", "new", "pending_new"),
        ("accept", "pending_new", "accepted"),
        ("fill", "accepted", "partially_filled"),
        ("fill", "partially_filled", "partially_filled"),
    ]
    assert [(entity_id, state) for _, entity_id, state in seen][-1] == ("o-1", "partially_filled")
    assert dict(seen[0][0].data) == CREATE


def test_record_not_called_when_create_fails() -> None:
    seen: list[Transition] = []
    document = order_scenario(SUBMIT)
    document["create"] = {"instrument": "XYZ"}
    result = run(one(document), lambda transition, entity: seen.append(transition))
    assert result.create_error is not None
    assert seen == []


def test_run_all_runs_in_order() -> None:
    scenarios = parse([order_scenario(SUBMIT, entity="a"), order_scenario({"trigger": "accept"}, entity="b")])
    results = run_all(scenarios)
    assert [(r.scenario.entity, r.passed) for r in results] == [("a", True), ("b", False)]


# -- assert_scenario --------------------------------------------------------------------------


def test_assert_scenario_returns_the_result() -> None:
    result = assert_scenario(order_scenario(SUBMIT, ACCEPT))
    assert result.passed
    assert result.scenario.entity == "o-1"
    assert [s.state for s in result.steps] == ["pending_new", "accepted"]


def test_assert_scenario_returns_the_last_result_of_a_list() -> None:
    result = assert_scenario([order_scenario(SUBMIT, entity="a"), order_scenario(SUBMIT, ACCEPT, entity="b")])
    assert result.scenario.entity == "b"


def test_assert_scenario_names_step_and_reason() -> None:
    document = [
        order_scenario(SUBMIT, entity="good"),
        order_scenario(SUBMIT, {"trigger": "accept", "data": {"venue_order_id": "V1"}, "expect": {"state": "filled"}}),
    ]
    with pytest.raises(AssertionError) as info:
        assert_scenario(document)
    assert str(info.value) == "scenario failed:\norder 'o-1': step 2 (accept): expected state filled, got accepted"


def test_assert_scenario_reports_create_errors() -> None:
    document = order_scenario(SUBMIT)
    document["create"] = {**CREATE, "side": "hold"}
    with pytest.raises(AssertionError, match=r"order 'o-1': create: InvalidData: .*side must be one of buy, sell"):
        assert_scenario(document)


def test_assert_scenario_raises_scenario_error_for_malformed_documents() -> None:
    with pytest.raises(ScenarioError):
        assert_scenario({"machine": "order"})


# -- JSON shapes ------------------------------------------------------------------------------


def test_as_json_shapes() -> None:
    result = run(one(order_scenario(SUBMIT, {"trigger": "fill", "expect": {"state": "new"}})))
    out = result.as_json()
    assert set(out) == {"entity", "machine", "passed", "steps"}
    assert (out["entity"], out["machine"], out["passed"]) == ("o-1", "order", False)
    assert [set(step) for step in out["steps"]] == [STEP_KEYS, STEP_KEYS]
    assert out["steps"][0] == {
        "trigger": "submit",
        "ok": True,
        "state": "pending_new",
        "cum_qty": "0",
        "leaves_qty": "10",
        "avg_px": None,
        "error": None,
        "failures": [],
    }
    assert out["steps"][1]["ok"] is False
    assert out["steps"][1]["error"] == "InvalidData"
    assert out["steps"][1]["failures"] == ["expected state new, got pending_new", *out["steps"][1]["failures"][1:]]
    assert out["steps"][1]["failures"][1].startswith("unexpected InvalidData")
    assert set(REPORTED_FIELDS) == {"cum_qty", "leaves_qty", "avg_px"}


# -- another machine --------------------------------------------------------------------------


def test_scenario_on_the_run_machine() -> None:
    document = {
        "machine": "run",
        "entity": "1",
        "create": {"started_ns": 1, "pid": 42, "host": "h", "version": "0"},
        "steps": [
            {"trigger": "stop", "expect": {"error": "InvalidData", "state": "running"}},
            {"trigger": "stop", "data": {"ended_ns": 5}, "expect": {"state": "stopped", "ended_ns": "5", "pid": 42}},
            {"trigger": "crash_detected", "data": {"detected_by_run": 2}, "expect": {"error": "InvalidTransition"}},
        ],
    }
    result = assert_scenario(document)
    assert [s.state for s in result.steps] == ["running", "stopped", "stopped"]
    for step in result.steps:
        assert step.fields == {"cum_qty": None, "leaves_qty": None, "avg_px": None}
    assert result.as_json()["steps"][1]["cum_qty"] is None


def test_an_error_expectation_of_null_means_no_error() -> None:
    document = {
        "machine": "order",
        "entity": "o-null",
        "create": {"instrument": "X", "side": "buy", "qty": "1", "price": "1"},
        "steps": [
            {"trigger": "submit", "expect": {"error": None}},
            {"trigger": "submit", "expect": {"error": None}},
        ],
    }
    result = run(parse(document)[0])
    assert [step.ok for step in result.steps] == [True, False]
    assert result.steps[1].failures[0].startswith("expected no error, got InvalidTransition")


def test_a_description_must_be_text() -> None:
    with pytest.raises(ScenarioError) as bad:
        parse({"machine": "order", "entity": "o", "steps": [], "description": 5})
    assert bad.value.where == "description"
