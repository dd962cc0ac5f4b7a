"""Pure state machines: declarative tables, compiled once per kind, fired on bare entities.

Nothing in this package awaits, sleeps, reads a clock or does I/O (the sans-I/O rule).
"""

from typing import TYPE_CHECKING, Any

from machines import registry
from machines.errors import (
    DefinitionError,
    InvalidData,
    InvalidTransition,
    StateMachineError,
    TradekernelError,
    TransitionRefused,
    UnknownMachine,
)

if TYPE_CHECKING:
    from machines.base import CREATE, Entity, Rule, StateMachine, Transition, check_data
    from machines.feed import FEED, FeedState
    from machines.health import HEALTH, Finding, HealthRule, HealthState, Observation, Thresholds
    from machines.order import ORDER, OrderState, Overfill
    from machines.positions import POSITION, PositionState
    from machines.reconciliation import RECONCILIATION, ReconciliationState
    from machines.run import RUN, RunState
    from machines.trading import TRADING, TradingState

_LAZY: dict[str, str] = {
    **dict.fromkeys(("CREATE", "Entity", "Rule", "StateMachine", "Transition", "check_data"), "machines.base"),
    **dict.fromkeys(("FEED", "FeedState"), "machines.feed"),
    **dict.fromkeys(("HEALTH", "Finding", "HealthRule", "HealthState", "Observation", "Thresholds"), "machines.health"),
    **dict.fromkeys(("ORDER", "OrderState", "Overfill"), "machines.order"),
    **dict.fromkeys(("POSITION", "PositionState"), "machines.positions"),
    **dict.fromkeys(("RECONCILIATION", "ReconciliationState"), "machines.reconciliation"),
    **dict.fromkeys(("RUN", "RunState"), "machines.run"),
    **dict.fromkeys(("TRADING", "TradingState"), "machines.trading"),
}
"""Where each public name lives. Building a machine's table costs milliseconds, so a machine module
is imported on first use (PEP 562), not by ``import machines``: a read-only command such as
``tradekernel status`` pays only for what it touches. ``registry.get``/``names`` load them all."""


def __getattr__(name: str) -> Any:
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'machines' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CREATE",
    "FEED",
    "HEALTH",
    "ORDER",
    "POSITION",
    "RECONCILIATION",
    "RUN",
    "TRADING",
    "DefinitionError",
    "Entity",
    "FeedState",
    "Finding",
    "HealthRule",
    "HealthState",
    "InvalidData",
    "InvalidTransition",
    "Observation",
    "OrderState",
    "Overfill",
    "PositionState",
    "ReconciliationState",
    "Rule",
    "RunState",
    "StateMachine",
    "StateMachineError",
    "Thresholds",
    "TradekernelError",
    "TradingState",
    "Transition",
    "TransitionRefused",
    "UnknownMachine",
    "check_data",
    "registry",
]
