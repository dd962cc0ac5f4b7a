"""Typed errors raised by machine definitions and by firing triggers.

Two families, kept apart on purpose:

* ``DefinitionError`` — the table itself is wrong (a programming error, found when the machine is
  built, at import time).
* ``TransitionRefused`` — one trigger on one entity was refused. The entity is left exactly as it
  was. ``InvalidTransition`` means no rule allows the trigger from the entity's state;
  ``InvalidData`` means a rule exists but the trigger's data is unusable (a float where money goes,
  a non-positive quantity, ...). Machines raise subclasses of these for their own anomalies.
"""

from __future__ import annotations


class TradekernelError(Exception):
    """The root of every error tradekernel raises for its own conditions.

    Families below it: ``StateMachineError`` (machines), ``JournalError`` (the journal), the
    kernel's venue, order, config and CLI errors. Catch this to catch anything of ours and nothing
    of Python's or a library's.
    """


class StateMachineError(TradekernelError):
    """Base class of every error raised by ``machines``."""


class DefinitionError(StateMachineError):
    """A machine's table is malformed: unknown state, unreachable state, shadowed rule, ..."""


class UnknownMachine(StateMachineError, LookupError):
    """No machine of that name is registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown machine {name!r} (known: {', '.join(known) or 'none'})")


class TransitionRefused(StateMachineError):
    """A trigger was refused; the entity is unchanged.

    Carries the machine name, entity id, the entity's state and the trigger. Effects and guards may
    raise a subclass with only a ``reason``; ``StateMachine.fire`` fills in the rest via ``bind``.
    """

    def __init__(
        self,
        reason: str,
        *,
        machine: str | None = None,
        entity_id: str | None = None,
        state: str | None = None,
        trigger: str | None = None,
    ) -> None:
        self.reason = reason
        self.machine = machine
        self.entity_id = entity_id
        self.state = state
        self.trigger = trigger
        super().__init__(reason)

    def bind(self, *, machine: str, entity_id: str, state: str | None, trigger: str) -> TransitionRefused:
        """Fill in the context that the raiser did not know; return self for ``raise ... from``."""
        self.machine = self.machine if self.machine is not None else machine
        self.entity_id = self.entity_id if self.entity_id is not None else entity_id
        self.state = self.state if self.state is not None else state
        self.trigger = self.trigger if self.trigger is not None else trigger
        return self

    def __str__(self) -> str:
        if self.machine is None:
            return self.reason
        return (
            f"{self.machine} {self.entity_id!r} in state {self.state!r} refused trigger {self.trigger!r}: {self.reason}"
        )


class InvalidTransition(TransitionRefused):
    """No rule allows this trigger from the entity's current state (or no guard let it through)."""


class InvalidData(TransitionRefused):
    """A rule exists, but the trigger's data cannot be applied (wrong type, impossible value)."""
