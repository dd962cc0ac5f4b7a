"""The kernel shell's error families, all below the one root ``TradekernelError``.

``KernelError`` is the root of what the kernel process raises for its own conditions (a refused
address, an unusable control socket, a strategy that cannot be loaded, a bad fault spec, a
harness misuse); each module defines its specific errors as subclasses of it (also subclassing
the builtin its callers used to catch, where one did). Other families of the kernel package
(orders, venue, config) may be added here later.
"""

from __future__ import annotations

from machines.errors import TradekernelError


class KernelError(TradekernelError):
    """The root of the kernel shell's own errors."""


class UsageError(KernelError, ValueError):
    """A kernel API was called in a way it does not support (a programming or test error)."""


__all__ = ["KernelError", "TradekernelError", "UsageError"]
