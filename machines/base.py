"""Declarative state machines: a table of states and rules, compiled once into a shared engine.

A machine kind is data. ``StateMachine(name, states, initial, terminal, rules, ...)`` takes an Enum
of states (public names are the Enum *values*), the initial state, the terminal states and a tuple
of ``Rule`` rows ``(trigger, sources, dest, guard, effect)``. That table is the single source for
the engine, the generated docs diagram (``machines.diagram``) and the table tests.

The table is compiled once per kind into a plain ``transitions.Machine`` that every entity of the
kind shares: it validates the table, draws the diagrams and is the *reference* semantics
(``fire_reference`` fires through it). Entities are never attached to it with ``add_model`` (that
costs memory per entity and time proportional to the models already attached). No
``AsyncMachine``, no ``Timeout`` states, ``auto_transitions=False``: see DESIGN.md for the
measurements behind each choice.

The hot path, ``fire``, does not go through ``transitions`` (8-9 us a trigger, issue 17): the same
table is also compiled into a per-(trigger, state) dispatch, the candidate rules in table order,
and ``fire`` runs them the way ``transitions`` does: the first guard that passes wins, its effect
runs, the changes and the state are applied. Same ``Transition``, same errors, same entity after;
``tests/machines/test_dispatch_differential.py`` drives both paths with random triggers and data
for every registered machine and requires identical results.

Rules for a row, in the order the engine applies them:

* ``sources``: the states the trigger is allowed from. Rules for the same trigger and source are
  tried in table order; the first whose ``guard(entity, data)`` is true wins. No winner refuses
  the trigger with ``InvalidTransition``.
* ``guard`` chooses; it must not change anything. It may raise ``InvalidData`` to reject bad data.
* ``effect(entity, data)`` returns the changes to the entity's data (a mapping) or ``None``. It runs
  after the guard and before the state changes; it must compute everything before returning, so
  that raising leaves the entity untouched. The base applies the returned changes.
* ``dest=None`` keeps the entity in its state (an internal transition: data may still change).

Nothing here reads a clock or does I/O: time, when a rule needs it, arrives in the trigger data.
Trigger data must be JSON-safe (str, int, bool, None, ``Decimal``, lists and str-keyed dicts of
those) because every transition is journaled and replayed; floats are refused (money is Decimal).
"""

from __future__ import annotations

import copy
import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from transitions import EventData, Machine

from machines.errors import DefinitionError, InvalidData, InvalidTransition, TransitionRefused

# transitions logs every trigger at INFO/DEBUG; at INFO that quadruples the cost of a trigger.
logging.getLogger("transitions").setLevel(logging.WARNING)

CREATE = "create"
"""The trigger name journaled when an entity is created (source ``None``, dest the initial state)."""

Data = Mapping[str, Any]
Guard = Callable[["Entity", Data], bool]
Effect = Callable[["Entity", Data], "Mapping[str, Any] | None"]

_SCALARS = (str, int, bool, Decimal, type(None))
_PLAIN = frozenset((str, int, bool, type(None)))  # scalars that need no further check


@dataclass(frozen=True, slots=True, init=False)
class Rule:
    """One row of a machine's table: ``trigger`` moves an entity from any of ``sources`` to ``dest``.

    ``dest=None`` stays in the source state. ``guard`` and ``effect`` are described in the module
    docstring; ``doc`` is the one-line description shown in the generated docs.
    """

    trigger: str
    sources: tuple[enum.Enum, ...]
    dest: enum.Enum | None
    guard: Guard | None = None
    effect: Effect | None = None
    doc: str = ""
    guard_label: str = field(default="", compare=False)

    def __init__(
        self,
        trigger: str,
        sources: enum.Enum | Iterable[enum.Enum],
        dest: enum.Enum | None,
        *,
        guard: Guard | None = None,
        effect: Effect | None = None,
        doc: str = "",
        guard_label: str = "",
    ) -> None:
        object.__setattr__(self, "trigger", trigger)
        srcs = (sources,) if isinstance(sources, enum.Enum) else tuple(sources)
        object.__setattr__(self, "sources", srcs)
        object.__setattr__(self, "dest", dest)
        object.__setattr__(self, "guard", guard)
        object.__setattr__(self, "effect", effect)
        object.__setattr__(self, "doc", doc)
        name = getattr(guard, "__name__", "guard") if guard else ""
        label = guard_label or ("guard" if name == "<lambda>" else name)
        object.__setattr__(self, "guard_label", label.lstrip("_"))


class Entity:
    """One stateful thing governed by a machine: its id, its state name and its data.

    ``state`` holds the state's public name (the Enum value, a ``str``); ``data`` the entity's
    current data (e.g. an order's ``cum_qty``). Change both only through ``StateMachine.fire``.
    """

    __slots__ = ("machine", "entity_id", "state", "data")

    def __init__(self, machine: StateMachine, entity_id: str, state: str, data: dict[str, Any]) -> None:
        self.machine = machine
        self.entity_id = entity_id
        self.state = state
        self.data = data

    @property
    def live(self) -> bool:
        """True while the entity is not in a terminal state."""
        return self.state not in self.machine.terminal_names

    def __repr__(self) -> str:
        return f"Entity({self.machine.name}:{self.entity_id!r} state={self.state!r} data={self.data!r})"


class _Step(NamedTuple):
    """One compiled candidate rule of a (trigger, state): guard, effect, destination state name."""

    guard: Guard | None
    effect: Effect | None
    dest: str | None


class Transition(NamedTuple):
    """The immutable record of one fired trigger: what the journal appends.

    ``source`` is ``None`` for the ``create`` record of a new entity. ``data`` is the trigger's data
    as given (read-only). A named tuple rather than a frozen dataclass: it is built on every
    trigger, and constructs several times faster.
    """

    machine: str
    entity_id: str
    trigger: str
    source: str | None
    dest: str
    data: Mapping[str, Any]


MAX_NOW_MS = 2**63 - 1
"""The latest ``now_ms`` a trigger may carry: the journal stores 64-bit integers."""


def timed_args(data: Mapping[str, Any], *fields: str) -> int:
    """Check a timed trigger's data: ``now_ms`` (required) plus ``fields``, every other key
    refused with ``InvalidData``; return ``now_ms``. Time is data: machines never read a clock."""
    unknown = set(data) - {"now_ms", *fields}
    if unknown:
        raise InvalidData(f"unknown fields: {', '.join(sorted(unknown))}")
    if "now_ms" not in data:
        raise InvalidData("now_ms (int, the shell's monotonic clock in ms) is required")
    now_ms = data["now_ms"]
    if not isinstance(now_ms, int) or isinstance(now_ms, bool) or not 0 <= now_ms <= MAX_NOW_MS:
        raise InvalidData(f"now_ms must be a non-negative int, got {now_ms!r}")
    return now_ms


def check_data(data: Mapping[str, Any]) -> str | None:
    """Return why ``data`` cannot be journaled and replayed, or ``None`` when it can."""
    for key, value in data.items():
        kind = type(value)
        if kind in _PLAIN or (kind is Decimal and value.is_finite()):
            continue
        problem = _check_value(value, key)
        if problem:
            return problem
    return None


def _check_value(value: Any, path: str) -> str | None:
    if isinstance(value, Decimal):
        return None if value.is_finite() else f"{path} is not a finite number ({value})"
    if isinstance(value, _SCALARS):
        return None
    if isinstance(value, float):
        return f"{path} is a float ({value!r}); use Decimal or int"
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = _check_value(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            problem = _check_value(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    return f"{path} has type {type(value).__name__}, which the journal cannot store"


class StateMachine:
    """A machine kind: the declarative table plus the shared ``transitions`` engine built from it.

    Raises ``DefinitionError`` at construction when the table is malformed.
    """

    def __init__(
        self,
        name: str,
        *,
        states: type[enum.Enum],
        initial: enum.Enum,
        terminal: Iterable[enum.Enum] = (),
        rules: Iterable[Rule],
        state_docs: Mapping[enum.Enum, str],
        doc: str = "",
        init: Callable[[Data], dict[str, Any]] | None = None,
        decode: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.states = states
        self.initial = initial
        self.terminal = frozenset(terminal)
        self.rules = tuple(rules)
        self.state_docs = dict(state_docs)
        self.doc = doc
        self._init = init
        self._decode = decode
        self._validate()
        self.state_names = tuple(str(s.value) for s in states)
        self.terminal_names = frozenset(str(s.value) for s in self.terminal)
        self.triggers = tuple(dict.fromkeys(r.trigger for r in self.rules))
        self._allowed: dict[str, frozenset[str]] = {
            t: frozenset(str(s.value) for r in self.rules if r.trigger == t for s in r.sources) for t in self.triggers
        }
        self._engine = self._build_engine()
        self._events = {t: self._engine.events[t] for t in self.triggers}
        self._dispatch = self._compile()

    # -- definition -------------------------------------------------------------------------

    def _validate(self) -> None:
        where = f"machine {self.name!r}"
        if not self.name.isidentifier():
            raise DefinitionError(f"{where}: name must be an identifier")
        for state in self.states:
            if not isinstance(state.value, str) or not state.value.isidentifier():
                raise DefinitionError(f"{where}: state {state!r} needs an identifier string value")
        if not self._is_state(self.initial):
            raise DefinitionError(f"{where}: initial state {self.initial!r} is not one of its states")
        for state in self.terminal:
            if not self._is_state(state):
                raise DefinitionError(f"{where}: terminal state {state!r} is not one of its states")
        if self.initial in self.terminal:
            raise DefinitionError(f"{where}: initial state {self.initial.value!r} cannot be terminal")
        missing_docs = [str(s.value) for s in self.states if not self.state_docs.get(s)]
        if missing_docs:
            raise DefinitionError(f"{where}: states without a description: {', '.join(missing_docs)}")
        seen_unguarded: set[tuple[str, enum.Enum]] = set()
        for rule in self.rules:
            self._validate_rule(rule, seen_unguarded)
        self._check_reachable()

    def _is_state(self, state: object) -> bool:
        # By type, not equality: a StrEnum member equals a plain string or a same-valued member of
        # another Enum, and neither belongs in this table.
        return isinstance(state, self.states)

    def _validate_rule(self, rule: Rule, seen_unguarded: set[tuple[str, enum.Enum]]) -> None:
        where = f"machine {self.name!r}, rule {rule.trigger!r}"
        if not rule.trigger.isidentifier() or rule.trigger == CREATE:
            raise DefinitionError(f"{where}: trigger must be an identifier other than {CREATE!r}")
        if not rule.sources:
            raise DefinitionError(f"{where}: no source states")
        for state in (*rule.sources, *([rule.dest] if rule.dest is not None else [])):
            if not self._is_state(state):
                raise DefinitionError(f"{where}: {state!r} is not a state of this machine")
        for source in rule.sources:
            if (rule.trigger, source) in seen_unguarded:
                raise DefinitionError(
                    f"{where}: unreachable, an earlier unguarded rule already handles it from {source.value!r}"
                )
            if source in self.terminal and rule.dest is not None and rule.dest not in self.terminal:
                raise DefinitionError(f"{where}: leaves terminal state {source.value!r} for a non-terminal state")
            if rule.guard is None:
                seen_unguarded.add((rule.trigger, source))

    def _check_reachable(self) -> None:
        reached = {self.initial}
        frontier = [self.initial]
        while frontier:
            state = frontier.pop()
            for rule in self.rules:
                if state in rule.sources and rule.dest is not None and rule.dest not in reached:
                    reached.add(rule.dest)
                    frontier.append(rule.dest)
        unreachable = [str(s.value) for s in self.states if s not in reached]
        if unreachable:
            raise DefinitionError(
                f"machine {self.name!r}: states unreachable from {self.initial.value!r}: {', '.join(unreachable)}"
            )

    def _build_engine(self) -> Machine:
        engine = Machine(
            model=None,
            states=[str(s.value) for s in self.states],
            initial=str(self.initial.value),
            auto_transitions=False,
            send_event=True,
            ignore_invalid_triggers=False,
            name=self.name,
        )
        for rule in self.rules:
            conditions: list[str | Callable[..., bool | None]] = [_guard_callback(rule.guard)] if rule.guard else []
            before: list[str | Callable[..., bool | None]] = [_effect_callback(rule.effect)] if rule.effect else []
            for source in rule.sources:
                engine.add_transition(
                    rule.trigger,
                    str(source.value),
                    None if rule.dest is None else str(rule.dest.value),
                    conditions=conditions,
                    before=before,
                )
        return engine

    def _compile(self) -> dict[str, dict[str, tuple[_Step, ...]]]:
        """trigger -> source state -> the candidate rules from there, in table order."""
        dispatch: dict[str, dict[str, list[_Step]]] = {}
        for rule in self.rules:
            step = _Step(rule.guard, rule.effect, None if rule.dest is None else str(rule.dest.value))
            by_state = dispatch.setdefault(rule.trigger, {})
            for source in rule.sources:
                by_state.setdefault(str(source.value), []).append(step)
        return {t: {s: tuple(steps) for s, steps in by_state.items()} for t, by_state in dispatch.items()}

    # -- entities ---------------------------------------------------------------------------

    def create(self, entity_id: str, /, **data: Any) -> tuple[Entity, Transition]:
        """Create an entity in the initial state; return it and its ``create`` record.

        Raises ``InvalidData`` (nothing created) when ``data`` is unusable.
        """
        initial = str(self.initial.value)
        problem = check_data(data)
        if problem:
            raise InvalidData(problem, machine=self.name, entity_id=entity_id, state=None, trigger=CREATE)
        try:
            entity_data = self._init(data) if self._init else copy.deepcopy(dict(data))
        except TransitionRefused as exc:
            exc.bind(machine=self.name, entity_id=entity_id, state=None, trigger=CREATE)
            raise
        entity = Entity(self, entity_id, initial, entity_data)
        return entity, Transition(self.name, entity_id, CREATE, None, initial, MappingProxyType(data))

    def restore(self, entity_id: str, state: str, data: dict[str, Any]) -> Entity:
        """Rebuild an entity from a saved state and its (JSON-decoded) data; nothing is recorded."""
        if state not in self.state_names:
            raise InvalidData(
                f"unknown state {state!r}",
                machine=self.name,
                entity_id=entity_id,
                state=state,
                trigger="restore",
            )
        return Entity(self, entity_id, state, self._decode(data) if self._decode else data)

    def fire(self, entity: Entity, trigger: str, /, **data: Any) -> Transition:
        """Fire ``trigger`` on ``entity`` with ``data``; return the record of what happened.

        Raises ``InvalidTransition`` when no rule allows the trigger from the entity's state (or no
        guard lets it through), ``InvalidData`` (or a machine's subclass) when the data is unusable.
        Either way the entity is left unchanged. Runs the compiled dispatch; ``fire_reference``
        runs the same table through ``transitions`` with the same results.
        """
        source = entity.state
        if entity.machine is not self:
            raise InvalidTransition(
                f"entity belongs to machine {entity.machine.name!r}",
                machine=self.name,
                entity_id=entity.entity_id,
                state=source,
                trigger=trigger,
            )
        by_state = self._dispatch.get(trigger)
        steps = None if by_state is None else by_state.get(source)
        if steps is None:
            reason = "unknown trigger" if by_state is None else "not allowed from this state"
            raise InvalidTransition(
                reason, machine=self.name, entity_id=entity.entity_id, state=source, trigger=trigger
            )
        if data:
            problem = check_data(data)
            if problem:
                raise InvalidData(problem, machine=self.name, entity_id=entity.entity_id, state=source, trigger=trigger)
        try:
            for guard, effect, dest in steps:
                if guard is None or guard(entity, data):
                    if effect is not None:
                        changes = effect(entity, data)
                        if changes:
                            entity.data.update(changes)
                    if dest is not None:
                        entity.state = dest
                    return Transition(
                        self.name, entity.entity_id, trigger, source, entity.state, MappingProxyType(data)
                    )
        except TransitionRefused as exc:
            exc.bind(machine=self.name, entity_id=entity.entity_id, state=source, trigger=trigger)
            raise
        raise InvalidTransition(
            "no guard allowed it", machine=self.name, entity_id=entity.entity_id, state=source, trigger=trigger
        )

    def fire_reference(self, entity: Entity, trigger: str, /, **data: Any) -> Transition:
        """``fire`` through the ``transitions`` engine built from the same table: the reference
        semantics the compiled dispatch is tested against. Same results, several times slower.

        One difference, in the reference's disfavour: a data key ``model`` or ``self`` collides
        with ``transitions``' own arguments there (``TypeError``); ``fire`` takes any key.
        """
        source = entity.state
        if entity.machine is not self:
            raise InvalidTransition(
                f"entity belongs to machine {entity.machine.name!r}",
                machine=self.name,
                entity_id=entity.entity_id,
                state=source,
                trigger=trigger,
            )
        allowed = self._allowed.get(trigger)
        if allowed is None or source not in allowed:
            reason = "unknown trigger" if allowed is None else "not allowed from this state"
            raise InvalidTransition(
                reason, machine=self.name, entity_id=entity.entity_id, state=source, trigger=trigger
            )
        problem = check_data(data)
        if problem:
            raise InvalidData(problem, machine=self.name, entity_id=entity.entity_id, state=source, trigger=trigger)
        try:
            fired = self._events[trigger].trigger(entity, **data)
        except TransitionRefused as exc:
            exc.bind(machine=self.name, entity_id=entity.entity_id, state=source, trigger=trigger)
            raise
        if not fired:
            raise InvalidTransition(
                "no guard allowed it",
                machine=self.name,
                entity_id=entity.entity_id,
                state=source,
                trigger=trigger,
            )
        return Transition(self.name, entity.entity_id, trigger, source, entity.state, MappingProxyType(data))

    def allowed_triggers(self, state: str) -> tuple[str, ...]:
        """The triggers that have a rule from ``state`` (guards may still refuse them)."""
        return tuple(t for t in self.triggers if state in self._allowed[t])

    def __repr__(self) -> str:
        return f"StateMachine({self.name!r}, states={len(self.state_names)}, rules={len(self.rules)})"


def _guard_callback(guard: Guard) -> Callable[[EventData], bool]:
    def condition(event: EventData) -> bool:
        return bool(guard(cast(Entity, event.model), event.kwargs))

    return condition


def _effect_callback(effect: Effect) -> Callable[[EventData], None]:
    def before(event: EventData) -> None:
        entity = cast(Entity, event.model)
        changes = effect(entity, event.kwargs)
        if changes:
            entity.data.update(changes)

    return before
