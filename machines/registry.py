"""The machine kinds this process knows, by name: what the journal replays and the CLI documents."""

from __future__ import annotations

from machines.base import StateMachine
from machines.errors import DefinitionError, UnknownMachine

_MACHINES: dict[str, StateMachine] = {}
BUILT_IN: tuple[str, ...] = (
    "machines.feed",
    "machines.health",
    "machines.order",
    "machines.positions",
    "machines.reconciliation",
    "machines.run",
    "machines.trading",
)
"""The modules that define (and register) the kernel's own machines, imported on first lookup."""
_loaded = False


def _load_built_in() -> None:
    global _loaded
    if not _loaded:
        import importlib

        for module in BUILT_IN:
            importlib.import_module(module)
        _loaded = True


def register(machine: StateMachine) -> StateMachine:
    """Make ``machine`` known by its name; registering the same object twice is harmless.

    Raises ``DefinitionError`` if a different machine already has that name.
    """
    existing = _MACHINES.get(machine.name)
    if existing is not None and existing is not machine:
        raise DefinitionError(f"a different machine named {machine.name!r} is already registered")
    _MACHINES[machine.name] = machine
    return machine


def unregister(name: str) -> None:
    """Forget the machine called ``name`` (tests use it to clean up their own machines)."""
    _MACHINES.pop(name, None)


def get(name: str) -> StateMachine:
    """The machine called ``name``; raises ``UnknownMachine`` listing the known ones."""
    _load_built_in()
    try:
        return _MACHINES[name]
    except KeyError:
        raise UnknownMachine(name, names()) from None


def names() -> list[str]:
    """Names of every registered machine, sorted."""
    _load_built_in()
    return sorted(_MACHINES)
