"""The paper venue simulator's errors: one family (``SimulatorError``) under ``TradekernelError``.

Each also subclasses the builtin that callers caught before the family existed (``ValueError``,
``KeyError``, ``RuntimeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from machines.errors import TradekernelError


class SimulatorError(TradekernelError):
    """Base class of every error the paper venue simulator raises for its own conditions."""


class SimulatorSettingError(SimulatorError, ValueError):
    """A venue, engine or random-walk setting out of range (the message names the setting)."""


class UnknownOrder(SimulatorError, KeyError):
    """No order with that client order id at the venue."""


class OrderChangeRefused(SimulatorError, ValueError):
    """An order cannot be entered or changed as asked (already exists, already done, impossible change)."""


class UnknownInstrument(SimulatorError, ValueError):
    """An instrument the venue does not trade."""


class VenueStateError(SimulatorError, RuntimeError):
    """The venue is not in a state to do that (already running, not running)."""
