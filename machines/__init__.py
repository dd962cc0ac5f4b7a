"""Pure state machines: declarative tables, compiled once per kind, fired on bare entities.

Nothing in this package awaits, sleeps, reads a clock or does I/O (the sans-I/O rule).
"""

from machines import registry
from machines.base import CREATE, Entity, Rule, StateMachine, Transition, check_data
from machines.errors import (
    DefinitionError,
    InvalidData,
    InvalidTransition,
    StateMachineError,
    TradekernelError,
    TransitionRefused,
    UnknownMachine,
)
from machines.feed import FEED, FeedState
from machines.health import HEALTH, Finding, HealthRule, HealthState, Observation, Thresholds
from machines.order import ORDER, OrderState, Overfill
from machines.positions import POSITION, PositionState
from machines.reconciliation import RECONCILIATION, ReconciliationState
from machines.run import RUN, RunState
from machines.trading import TRADING, TradingState

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
