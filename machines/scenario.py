"""Scripted scenarios: drive a machine with triggers and check each step's result. Pure.

A scenario (what ``tradekernel drive`` reads from JSON, and what tests pass as a dict)::

    {"machine": "order", "entity": "o-1",
     "create": {"instrument": "BTCUSDT", "side": "buy", "type": "limit", "qty": "10", "price": "10.00"},
     "steps": [
        {"trigger": "submit", "expect": {"state": "pending_new"}},
        {"trigger": "fill", "data": {"qty": "1", "price": "10", "trade_id": "T1"},
         "expect": {"error": "InvalidTransition"}}]}

``expect`` may name ``state``, ``error`` (the class name of the expected error, or of one of its
bases, e.g. ``TransitionRefused``) and any field of the entity's data. Numbers compare as decimals:
``"10"`` equals ``"10.00"``. A step that raises without an ``error`` expectation fails; so does one
that expects an error and gets none. Steps run on, after a failure, so one run shows every problem.

Use from pytest::

    from machines.scenario import assert_scenario
    assert_scenario({"machine": "order", ...})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from machines import registry
from machines.base import Entity, Transition
from machines.errors import StateMachineError, TransitionRefused

REPORTED_FIELDS = ("cum_qty", "leaves_qty", "avg_px")
"""Data fields every step result reports (``None`` when the machine has no such field)."""


class ScenarioError(StateMachineError, ValueError):
    """A scenario is malformed; ``where`` says which part (e.g. ``steps[2].trigger``).

    Also a ``ValueError``, for callers that read a scenario file like any other bad value."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


@dataclass(frozen=True)
class Step:
    """One scripted trigger with its data and expectations."""

    trigger: str
    data: Mapping[str, Any]
    expect: Mapping[str, Any]


@dataclass(frozen=True)
class Scenario:
    """A machine, an entity created with ``create`` data, and the steps to run on it."""

    machine: str
    entity: str
    create: Mapping[str, Any]
    steps: tuple[Step, ...]
    name: str = ""


@dataclass
class StepResult:
    """What one step did: the entity's state and reported fields after it, and any failure."""

    trigger: str
    ok: bool
    state: str
    fields: dict[str, str | None]
    error: str | None = None
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The ``drive --json`` shape of a step."""
        return {
            "trigger": self.trigger,
            "ok": self.ok,
            "state": self.state,
            **self.fields,
            "error": self.error,
            "failures": self.failures,
        }


@dataclass
class ScenarioResult:
    """The outcome of one scenario."""

    scenario: Scenario
    steps: list[StepResult]
    create_error: str | None = None

    @property
    def passed(self) -> bool:
        """True when the entity was created and every step met its expectations."""
        return self.create_error is None and all(step.ok for step in self.steps)

    def as_json(self) -> dict[str, Any]:
        """The ``drive --json`` shape of a scenario."""
        out: dict[str, Any] = {
            "entity": self.scenario.entity,
            "machine": self.scenario.machine,
            "passed": self.passed,
            "steps": [s.as_json() for s in self.steps],
        }
        if self.create_error:
            out["create_error"] = self.create_error
        return out

    def describe_failures(self) -> list[str]:
        """One line per failed step (or the create error)."""
        if self.create_error:
            return [f"create: {self.create_error}"]
        return [
            f"step {i} ({step.trigger}): {'; '.join(step.failures)}"
            for i, step in enumerate(self.steps, 1)
            if not step.ok
        ]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ScenarioError(where, f"must be an object, got {type(value).__name__}")
    return value


def parse(document: Any, *, source: str = "") -> list[Scenario]:
    """Validate a decoded JSON document (one scenario or a list); raise ``ScenarioError``."""
    items = document if isinstance(document, list) else [document]
    if not items:
        raise ScenarioError(source, "holds no scenario")
    scenarios = []
    for index, item in enumerate(items):
        where = f"[{index}]" if isinstance(document, list) else ""
        try:
            scenarios.append(_parse_one(item, where))
        except ScenarioError as exc:
            if not source:
                raise
            raise ScenarioError(f"{source}: {exc.where}" if exc.where else source, exc.problem) from None
    return scenarios


def _parse_one(item: Any, where: str) -> Scenario:
    prefix = f"{where}." if where else ""
    if not isinstance(item, dict):
        raise ScenarioError(where, f"a scenario must be an object, got {type(item).__name__}")
    unknown = set(item) - {"machine", "entity", "create", "steps", "name", "description"}
    if unknown:
        raise ScenarioError(where, f"unknown keys: {', '.join(sorted(unknown))}")
    machine = item.get("machine")
    if not isinstance(machine, str):
        raise ScenarioError(f"{prefix}machine", "a machine name (string) is required")
    try:
        registry.get(machine)
    except StateMachineError as exc:
        raise ScenarioError(f"{prefix}machine", str(exc)) from None
    entity = item.get("entity")
    if not isinstance(entity, str) or not entity:
        raise ScenarioError(f"{prefix}entity", "an entity id (non-empty string) is required")
    steps = item.get("steps")
    if not isinstance(steps, list):
        raise ScenarioError(f"{prefix}steps", "a list of steps is required")
    parsed = []
    for i, step in enumerate(steps):
        step_where = f"{prefix}steps[{i}]"
        if not isinstance(step, dict):
            raise ScenarioError(step_where, "a step must be an object")
        extra = set(step) - {"trigger", "data", "expect", "note"}
        if extra:
            raise ScenarioError(step_where, f"unknown keys: {', '.join(sorted(extra))}")
        trigger = step.get("trigger")
        if not isinstance(trigger, str) or not trigger:
            raise ScenarioError(f"{step_where}.trigger", "a trigger name (string) is required")
        parsed.append(
            Step(
                trigger,
                _mapping(step.get("data"), f"{step_where}.data"),
                _mapping(step.get("expect"), f"{step_where}.expect"),
            )
        )
    name = item.get("name", "")
    if not isinstance(name, str):
        raise ScenarioError(f"{prefix}name", "must be a string")
    if not isinstance(item.get("description", ""), str):
        raise ScenarioError(f"{prefix}description", "must be a string")
    return Scenario(machine, entity, _mapping(item.get("create"), f"{prefix}create"), tuple(parsed), name)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _same(expected: Any, actual: Any) -> bool:
    """Numbers (Decimal or int fields) compare as decimals; everything else exactly."""
    if isinstance(actual, bool) or isinstance(expected, bool) or expected is None or actual is None:
        return type(expected) is type(actual) and bool(expected == actual)
    if isinstance(actual, Decimal | int) or isinstance(expected, Decimal):
        try:
            return Decimal(str(expected)) == Decimal(str(actual))
        except InvalidOperation:
            return False
    return bool(expected == actual)


def _check(expect: Mapping[str, Any], entity: Entity, error: StateMachineError | None) -> list[str]:
    failures = []
    for key, wanted in expect.items():
        if key == "error":
            if wanted is None:
                if error is not None:
                    failures.append(f"expected no error, got {type(error).__name__}: {error}")
            elif error is None:
                failures.append(f"expected error {wanted}, but the trigger was accepted")
            elif wanted not in {cls.__name__ for cls in type(error).__mro__}:
                failures.append(f"expected error {wanted}, got {type(error).__name__}: {error}")
        elif key == "state":
            if entity.state != wanted:
                failures.append(f"expected state {wanted}, got {entity.state}")
        elif key not in entity.data:
            failures.append(f"expected {key} = {wanted}, but {entity.machine.name} has no field {key!r}")
        elif not _same(wanted, entity.data[key]):
            failures.append(f"expected {key} = {wanted}, got {_text(entity.data[key])}")
    if error is not None and "error" not in expect:
        failures.append(f"unexpected {type(error).__name__}: {error}")
    return failures


Recorder = Callable[[Transition, Entity], object]


def run(scenario: Scenario, record: Recorder | None = None) -> ScenarioResult:
    """Run ``scenario`` through the real machine; ``record`` sees every accepted transition."""
    machine = registry.get(scenario.machine)
    try:
        entity, created = machine.create(scenario.entity, **scenario.create)
    except TransitionRefused as exc:
        return ScenarioResult(scenario, [], create_error=f"{type(exc).__name__}: {exc}")
    if record:
        record(created, entity)
    results = []
    for step in scenario.steps:
        error: TransitionRefused | None = None
        try:
            transition = machine.fire(entity, step.trigger, **step.data)
        except TransitionRefused as exc:
            error = exc
        else:
            if record:
                record(transition, entity)
        failures = _check(step.expect, entity, error)
        results.append(
            StepResult(
                trigger=step.trigger,
                ok=not failures,
                state=entity.state,
                fields={name: _text(entity.data.get(name)) for name in REPORTED_FIELDS},
                error=type(error).__name__ if error else None,
                failures=failures,
            )
        )
    return ScenarioResult(scenario, results)


def run_all(scenarios: Sequence[Scenario], record: Recorder | None = None) -> list[ScenarioResult]:
    """Run several scenarios in order."""
    return [run(s, record) for s in scenarios]


def assert_scenario(document: Any) -> ScenarioResult:
    """Parse and run one scenario (dict) or several (list); raise ``AssertionError`` on any failure."""
    results = run_all(parse(document))
    failed = [r for r in results if not r.passed]
    if failed:
        lines = [
            f"{r.scenario.machine} {r.scenario.entity!r}: {line}" for r in failed for line in r.describe_failures()
        ]
        raise AssertionError("scenario failed:\n" + "\n".join(lines))
    return results[-1]
