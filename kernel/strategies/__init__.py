"""The strategies shipped with the kernel, and the small pure helpers they share.

``market_maker`` (``kernel.strategies.market_maker:MarketMaker``) quotes a bid and an ask around
the mid with inventory limits; ``momentum`` (``kernel.strategies.momentum:Momentum``) buys or sells
when the last trades moved beyond a threshold. Both are named in ``kernel.strategy.BUILTIN``.

The helpers below do tick rounding and parameter checks in ``Decimal`` only: a strategy never
touches a binary float, a clock or a socket.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from kernel.strategy import InvalidParams

BPS = Decimal(10_000)
"""Basis points in one."""

PENDING_STATES = frozenset({"new", "pending_new", "pending_cancel", "pending_replace"})
"""Order states in which the venue has yet to answer our last request: wait, do not pile on."""


def floor_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """``price`` rounded down to a multiple of ``tick`` (a bid, an aggressive sell price), written
    with the tick's decimal places."""
    return ((price / tick).to_integral_value(rounding=ROUND_FLOOR) * tick).quantize(tick)


def ceil_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """``price`` rounded up to a multiple of ``tick`` (an ask, an aggressive buy price), written
    with the tick's decimal places."""
    return ((price / tick).to_integral_value(rounding=ROUND_CEILING) * tick).quantize(tick)


def check_instrument(value: object) -> None:
    """Raise ``InvalidParams`` naming ``instrument`` unless ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"instrument must be a non-empty string, got {value!r}")


def check_decimal(name: str, value: object, *, positive: bool = False) -> Decimal:
    """``value`` if it is a finite ``Decimal``, non-negative (or, with ``positive``, above zero).

    Raises ``InvalidParams`` naming ``name`` otherwise: a float is refused, never converted.
    """
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidParams(f"{name} must be a finite Decimal, got {type(value).__name__} {value!r}")
    if positive and value <= 0:
        raise InvalidParams(f"{name} must be positive, got {value}")
    if value < 0:
        raise InvalidParams(f"{name} must not be negative, got {value}")
    return value


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` if it is an ``int`` (not a bool) of at least ``minimum``; ``InvalidParams`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise InvalidParams(f"{name} must be at least {minimum}, got {value}")
    return value


__all__ = [
    "BPS",
    "PENDING_STATES",
    "ceil_to_tick",
    "check_decimal",
    "check_instrument",
    "check_int",
    "floor_to_tick",
]
