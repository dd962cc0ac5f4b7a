"""The ``trading`` machine: whether the kernel may trade, and the emergency shutdown sequence.

One entity, ``ENTITY_ID`` (``kernel``), created once per journal and never ended: it has no
terminal state, so it stays live in the journal and a restarted kernel restores it as it was. A
``halted`` kernel stays halted across restarts until an operator ``arm``s it.

* ``active`` — new orders are allowed (subject to the risk checks).
* ``reducing`` — only orders that reduce exposure are allowed (operator ``reduce``).
* ``halting`` — the shutdown sequence: every open order is being canceled and, when the halt asked
  for it (``flatten``), the positions are then closed; the kernel waits for the confirmations
  (``all_canceled``, then ``flattened``) until ``deadline_ms``, after which ``timeout`` ends it.
* ``halted`` — nothing but cancels goes out, until an operator ``arm``s the kernel.

A halt comes from the operator (``halt``) or from the kernel itself: a risk limit breached
(``risk_breach``), a component unhealthy (``health_unhealthy``), the journal unable to commit
(``journal_failed``: no audit, no trade). While ``halting`` or ``halted`` these three automatic
causes are recorded (an internal transition, ``last_trigger`` says which) and change nothing else:
the halt already under way keeps its reason, flatten and deadline. A second operator ``halt`` is
refused. Cancels are never refused in any state: they only reduce risk.

Every trigger requires ``now_ms`` (the shell's monotonic clock in ms; this module reads no clock)
and is journaled with its reason. Triggers that enter ``halting`` accept ``flatten`` (bool, default
false) and ``timeout_ms`` (positive int, default ``DEFAULT_TIMEOUT_MS``). The pure helpers
``is_halted_or_halting`` and ``next_timeout`` answer the halt driver's questions
(``machines/halt.py``). docs/machines/trading.md explains each state and trigger.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Any

from machines.base import MAX_NOW_MS, Data, Entity, Rule, StateMachine, timed_args
from machines.errors import InvalidData, StateMachineError
from machines.registry import register


class TradingState(StrEnum):
    """Public state names of the trading entity."""

    active = "active"
    reducing = "reducing"
    halting = "halting"
    halted = "halted"


S = TradingState
ENTITY_ID = "kernel"
"""The id of the one trading entity."""
DEFAULT_TIMEOUT_MS = 10_000
"""How long a halt waits for its confirmations when the trigger gives no ``timeout_ms``."""
RUNNING = (S.active, S.reducing)  # the states a halt can start from
STOPPED = (S.halting, S.halted)  # the states in which automatic halt causes are only recorded
_HALT_OPTIONS = ("flatten", "timeout_ms")


# -- reading trigger data -----------------------------------------------------------------------


def _text(data: Data, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidData(f"{name} must be a non-empty string, got {value!r}")
    return value


def _optional_text(data: Data, name: str) -> str | None:
    return None if data.get(name) is None else _text(data, name)


def _amount(data: Data, name: str) -> str:
    """A Decimal, int or non-empty str (never a float or a bool), as the text a reason quotes."""
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str) or value == "":
        raise InvalidData(f"{name} must be a Decimal, an int or a non-empty string, got {value!r}")
    return str(value)


def _optional_amount(data: Data, name: str) -> str | None:
    return None if data.get(name) is None else _amount(data, name)


def _halt_options(data: Data, now_ms: int) -> tuple[bool, int]:
    """``flatten`` and the deadline (``now_ms + timeout_ms``) of a trigger that starts a halt."""
    flatten = data.get("flatten", False)
    if not isinstance(flatten, bool):
        raise InvalidData(f"flatten must be true or false, got {flatten!r}")
    timeout_ms = data.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms <= 0:
        raise InvalidData(f"timeout_ms must be a positive int, got {timeout_ms!r}")
    deadline_ms = now_ms + timeout_ms
    if deadline_ms > MAX_NOW_MS:
        raise InvalidData(f"the deadline now_ms + timeout_ms ({deadline_ms}) is out of range")
    return flatten, deadline_ms


def _init(data: Data) -> dict[str, Any]:
    return {
        "reason": None,
        "since_ms": timed_args(data),
        "deadline_ms": None,
        "flatten": False,
        "canceled": False,
        "timed_out": False,
        "last_trigger": "create",
        "halts": 0,
    }


# -- the reason each halt cause records ---------------------------------------------------------


def _halt_reason(data: Data) -> str:
    return _text(data, "reason")


def _risk_reason(data: Data) -> str:
    limit = _text(data, "limit")
    value = _amount(data, "value")
    threshold = _optional_amount(data, "threshold")
    extra = _optional_text(data, "reason")
    text = f"risk breach: {limit} {value}" + (f" > {threshold}" if threshold is not None else "")
    return text + (f"; {extra}" if extra is not None else "")


def _health_reason(data: Data) -> str:
    component = _text(data, "component")
    extra = _optional_text(data, "reason")
    return f"{component} unhealthy" + (f": {extra}" if extra is not None else "")


def _journal_reason(data: Data) -> str:
    return f"journal failed: {_text(data, 'reason')}"


Cause = Callable[[Data], str]
_CAUSES: dict[str, tuple[tuple[str, ...], Cause]] = {
    "halt": (("reason",), _halt_reason),
    "risk_breach": (("limit", "value", "threshold", "reason"), _risk_reason),
    "health_unhealthy": (("component", "reason"), _health_reason),
    "journal_failed": (("reason",), _journal_reason),
}


def _halting(trigger: str) -> Callable[[Entity, Data], dict[str, Any]]:
    """The effect of ``trigger`` starting a halt: reason, flatten, deadline, one more halt."""
    fields, cause = _CAUSES[trigger]

    def effect(entity: Entity, data: Data) -> dict[str, Any]:
        now_ms = timed_args(data, *fields, *_HALT_OPTIONS)
        reason = cause(data)
        flatten, deadline_ms = _halt_options(data, now_ms)
        return {
            "reason": reason,
            "since_ms": now_ms,
            "deadline_ms": deadline_ms,
            "flatten": flatten,
            "canceled": False,
            "timed_out": False,
            "last_trigger": trigger,
            "halts": entity.data["halts"] + 1,
        }

    effect.__name__ = f"_{trigger}"
    return effect


def _recorded(trigger: str) -> Callable[[Entity, Data], dict[str, Any]]:
    """The effect of ``trigger`` while already halting or halted: checked, recorded, nothing else."""
    fields, cause = _CAUSES[trigger]

    def effect(entity: Entity, data: Data) -> dict[str, Any]:
        now_ms = timed_args(data, *fields, *_HALT_OPTIONS)
        cause(data)
        _halt_options(data, now_ms)
        return {"last_trigger": trigger}

    effect.__name__ = f"_{trigger}_recorded"
    return effect


# -- guards -------------------------------------------------------------------------------------


def no_flatten(entity: Entity, data: Data) -> bool:
    """The halt does not flatten: confirmed cancels end it."""
    return not entity.data["flatten"]


def flatten_pending(entity: Entity, data: Data) -> bool:
    """The halt flattens and its cancels are not confirmed yet."""
    return bool(entity.data["flatten"] and not entity.data["canceled"])


def canceled_and_flatten(entity: Entity, data: Data) -> bool:
    """The halt flattens and its cancels are confirmed: the flatten is what it waits for."""
    return bool(entity.data["flatten"] and entity.data["canceled"])


def deadline_passed(entity: Entity, data: Data) -> bool:
    """``now_ms`` has reached the halt's ``deadline_ms``."""
    deadline: int = entity.data["deadline_ms"]
    return timed_args(data) >= deadline


# -- effects ------------------------------------------------------------------------------------


def _reduce(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "reason")
    return {"reason": _text(data, "reason"), "since_ms": now_ms, "last_trigger": "reduce"}


def _arm(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "reason")
    return {
        "reason": _text(data, "reason"),
        "since_ms": now_ms,
        "deadline_ms": None,
        "flatten": False,
        "canceled": False,
        "timed_out": False,
        "last_trigger": "arm",
    }


def _all_canceled_halted(entity: Entity, data: Data) -> dict[str, Any]:
    return {"since_ms": timed_args(data), "deadline_ms": None, "canceled": True, "last_trigger": "all_canceled"}


def _all_canceled_flatten(entity: Entity, data: Data) -> dict[str, Any]:
    timed_args(data)
    return {"canceled": True, "last_trigger": "all_canceled"}


def _flattened(entity: Entity, data: Data) -> dict[str, Any]:
    return {"since_ms": timed_args(data), "deadline_ms": None, "last_trigger": "flattened"}


def _timeout(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data)
    if entity.data["canceled"]:
        missing = "flatten"  # canceled while still halting: only a flattening halt waits after its cancels
    elif entity.data["flatten"]:
        missing = "cancels and flatten"
    else:
        missing = "cancels"
    reason = f"halt timed out: {missing} not confirmed by deadline_ms {entity.data['deadline_ms']}"
    return {
        "reason": f"{reason} ({entity.data['reason']})",
        "since_ms": now_ms,
        "deadline_ms": None,
        "timed_out": True,
        "last_trigger": "timeout",
    }


TRADING = register(
    StateMachine(
        "trading",
        doc=__doc__ or "",
        states=TradingState,
        initial=S.active,
        terminal=(),
        state_docs={
            S.active: "New orders are allowed (subject to the risk checks).",
            S.reducing: "Only orders that reduce exposure are allowed (the operator's reason says why).",
            S.halting: (
                "Canceling every open order, then flattening when asked; waits for the confirmations "
                "until deadline_ms. Only cancels (and the flatten) go out."
            ),
            S.halted: "Only cancels go out; survives restarts until an operator arms the kernel.",
        },
        rules=(
            Rule(
                "halt",
                RUNNING,
                S.halting,
                effect=_halting("halt"),
                doc="Operator halt (reason, flatten, timeout_ms): cancel everything; refused while halting or halted.",
            ),
            Rule(
                "reduce",
                S.active,
                S.reducing,
                effect=_reduce,
                doc="Operator: only orders that reduce exposure from now on (reason).",
            ),
            Rule(
                "arm",
                (S.reducing, S.halted),
                S.active,
                effect=_arm,
                doc="Operator re-arms trading (a non-empty reason); not while halting: the halt finishes first.",
            ),
            Rule(
                "risk_breach",
                RUNNING,
                S.halting,
                effect=_halting("risk_breach"),
                doc="A risk limit is breached (limit, value, threshold): halt, the reason quoting them.",
            ),
            Rule(
                "risk_breach",
                STOPPED,
                None,
                effect=_recorded("risk_breach"),
                doc="Already halting or halted: recorded only; the halt under way is unchanged.",
            ),
            Rule(
                "health_unhealthy",
                RUNNING,
                S.halting,
                effect=_halting("health_unhealthy"),
                doc="A component is unhealthy (component, reason): halt.",
            ),
            Rule(
                "health_unhealthy",
                STOPPED,
                None,
                effect=_recorded("health_unhealthy"),
                doc="Already halting or halted: recorded only; the halt under way is unchanged.",
            ),
            Rule(
                "journal_failed",
                RUNNING,
                S.halting,
                effect=_halting("journal_failed"),
                doc="The journal cannot commit (reason): no audit, no trade, so halt.",
            ),
            Rule(
                "journal_failed",
                STOPPED,
                None,
                effect=_recorded("journal_failed"),
                doc="Already halting or halted: recorded only; the halt under way is unchanged.",
            ),
            Rule(
                "all_canceled",
                S.halting,
                S.halted,
                guard=no_flatten,
                effect=_all_canceled_halted,
                doc="Every open order is confirmed canceled and the halt does not flatten: halted.",
            ),
            Rule(
                "all_canceled",
                S.halting,
                None,
                guard=flatten_pending,
                effect=_all_canceled_flatten,
                doc="Every open order is confirmed canceled; the halt flattens: canceled, now flattening.",
            ),
            Rule(
                "flattened",
                S.halting,
                S.halted,
                guard=canceled_and_flatten,
                effect=_flattened,
                doc="Every position is confirmed flat (after the cancels): halted.",
            ),
            Rule(
                "timeout",
                S.halting,
                S.halted,
                guard=deadline_passed,
                effect=_timeout,
                doc="The deadline passed unconfirmed: halted, timed_out, the reason says what was missing.",
            ),
        ),
        init=_init,
    )
)


# -- helpers for the halt driver ----------------------------------------------------------------


class NotATradingEntity(StateMachineError, ValueError):
    """A trading helper was given another machine's entity (a programming error)."""


def _state(entity: Entity) -> str:
    if entity.machine is not TRADING:
        raise NotATradingEntity(f"not a trading entity: {entity!r}")
    return entity.state


def is_halted_or_halting(entity: Entity) -> bool:
    """The kernel is shutting trading down or has: ``halting`` or ``halted``."""
    return _state(entity) in STOPPED


def next_timeout(entity: Entity) -> int | None:
    """When the shell must fire ``timeout`` (``deadline_ms``) while ``halting``; otherwise ``None``."""
    if _state(entity) != S.halting:
        return None
    deadline: int = entity.data["deadline_ms"]
    return deadline


__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "ENTITY_ID",
    "TRADING",
    "NotATradingEntity",
    "TradingState",
    "is_halted_or_halting",
    "next_timeout",
]
