"""One parse of a trigger's data, shared by the guards and the effect of one ``fire``.

A fill's guards and its effect each need the same checked values (an order ``fill`` needs its
quantity in the guard that asks whether it completes the order, and quantity, price, trade id and
fee in the effect; a position ``fill`` builds its ``Fill`` in up to three guards and the effect).
``LastParse`` remembers the last successful parse, keyed by the identity of the data mapping (each
``fire`` gets a fresh one, and the slot keeps it alive, so its identity is never reused) *and* the
identity of every raw value the parse read, so that a mapping changed in place is parsed again.
Only successes are remembered: bad data is parsed again by every caller, in the caller's own order,
so the error raised is exactly the one the unshared code raised. The values parsed are immutable
(``str``, ``int``, ``Decimal``), so a hit returns what parsing again would.

No clock, no I/O: a one-slot memo. The slot is one tuple, replaced whole, so a reader never sees
half of one parse and half of another.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import is_
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LastParse(Generic[T]):
    """The last successful parse of one kind of trigger data (see the module docstring)."""

    __slots__ = ("_slot",)

    def __init__(self) -> None:
        self._slot: tuple[Mapping[str, Any], tuple[object, ...], T] | None = None

    def get(self, data: Mapping[str, Any], key: tuple[object, ...]) -> T | None:
        """The value parsed from ``data`` when ``key`` (the raw values read) is the very same."""
        slot = self._slot
        if slot is not None and slot[0] is data and len(slot[1]) == len(key) and all(map(is_, slot[1], key)):
            return slot[2]
        return None

    def put(self, data: Mapping[str, Any], key: tuple[object, ...], value: T) -> T:
        """Remember ``value`` as the parse of ``data`` read as ``key``; return it."""
        self._slot = (data, key, value)
        return value
