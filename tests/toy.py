"""A small machine for tests: guards, effects, an internal transition, Decimal data, two terminals.

Registered as ``toy`` on import, so journals holding toy transitions can be replayed by
``storage.audit`` in this process (a subprocess ``tradekernel audit verify`` does not know it).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from machines import Entity, InvalidData, Rule, StateMachine, registry
from machines.base import Data


class ToyState(StrEnum):
    idle = "idle"
    active = "active"
    done = "done"
    dropped = "dropped"


def _positive(value: Any, name: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise InvalidData(f"{name} must be a decimal, got {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise InvalidData(f"{name} must be a positive number, got {value!r}")
    return number


def _init(data: Data) -> dict[str, Any]:
    target = _positive(data.get("target", "10"), "target")
    return {"target": target, "total": Decimal(0), "starts": 0}


def _start(entity: Entity, data: Data) -> dict[str, Any]:
    return {"starts": entity.data["starts"] + 1}


def _add(entity: Entity, data: Data) -> dict[str, Any]:
    if "qty" not in data:
        raise InvalidData("qty is required")
    return {"total": entity.data["total"] + _positive(data["qty"], "qty")}


def target_reached(entity: Entity, data: Data) -> bool:
    return bool(entity.data["total"] >= entity.data["target"])


def _decode(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "target": Decimal(data["target"]), "total": Decimal(data["total"])}


TOY = registry.register(
    StateMachine(
        "toy",
        states=ToyState,
        initial=ToyState.idle,
        terminal=(ToyState.done, ToyState.dropped),
        state_docs={
            ToyState.idle: "created, not started",
            ToyState.active: "accumulating quantity",
            ToyState.done: "target reached and finished",
            ToyState.dropped: "abandoned",
        },
        rules=(
            Rule("start", ToyState.idle, ToyState.active, effect=_start, doc="begin"),
            Rule("add", ToyState.active, None, effect=_add, doc="add a positive qty"),
            Rule("finish", ToyState.active, ToyState.done, guard=target_reached, doc="finish at target"),
            Rule("drop", (ToyState.idle, ToyState.active), ToyState.dropped, doc="abandon"),
        ),
        init=_init,
        decode=_decode,
    )
)
