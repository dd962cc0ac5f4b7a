"""Risk limits: the frozen configuration the pre-trade checks and the stop watchers read.

``InstrumentLimits`` holds the limits that apply to each instrument, ``Limits`` the defaults, the
per-instrument overrides (merged field by field once, at construction) and the kernel-wide limits;
``limits_from_mapping`` builds them from the ``[risk]`` config table. Every bad value raises
``RiskLimitError`` (also a ``ValueError``) naming the field. docs/risk.md lists every limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from machines.decimals import DecimalError, Sign, parse_decimal
from machines.errors import StateMachineError


class RiskError(StateMachineError):
    """Base class of the errors ``machines.risk`` raises (a denial is a value, never an error)."""


class RiskLimitError(RiskError, ValueError):
    """A risk limit or a ``[risk]`` table is malformed; the message names the field (``where.key``)."""


def _decimal_limit(value: object, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int):  # never text or a binary float
        raise RiskLimitError(f"{name} must be a decimal number (Decimal or int) or None, got {value!r}")
    try:
        return parse_decimal(value, name, sign=Sign.positive)
    except DecimalError:
        raise RiskLimitError(f"{name} must be positive and finite, got {value!r}") from None


def _count_limit(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RiskLimitError(f"{name} must be a positive int or None, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class InstrumentLimits:
    """Limits that apply to each instrument. ``None`` is off (in an override: inherit the default).

    Raises ``RiskLimitError`` naming a field that is not a positive Decimal (int is converted) or bool.
    """

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    min_notional: Decimal | None = None
    price_collar_bps: Decimal | None = None
    max_position: Decimal | None = None
    tick_size: Decimal | None = None
    lot_size: Decimal | None = None
    reduce_only: bool | None = None
    stop_loss_bps: Decimal | None = None
    trailing_stop_bps: Decimal | None = None

    def __post_init__(self) -> None:
        for name in INSTRUMENT_DECIMAL_KEYS:
            object.__setattr__(self, name, _decimal_limit(getattr(self, name), name))
        if self.reduce_only is not None and not isinstance(self.reduce_only, bool):
            raise RiskLimitError(f"reduce_only must be true, false or None, got {self.reduce_only!r}")

    def merged(self, override: InstrumentLimits) -> InstrumentLimits:
        """These limits with every field ``override`` sets (not ``None``) replaced."""
        changes = {name: value for name in INSTRUMENT_KEYS if (value := getattr(override, name)) is not None}
        return replace(self, **changes)


INSTRUMENT_KEYS = tuple(f.name for f in fields(InstrumentLimits))
INSTRUMENT_DECIMAL_KEYS = tuple(name for name in INSTRUMENT_KEYS if name != "reduce_only")


@dataclass(frozen=True, slots=True)
class Limits:
    """All risk limits. ``defaults`` apply to every instrument; ``per_instrument[name]`` overrides
    them field by field. The other fields are kernel-wide; ``None`` is off.

    ``Limits()`` checks nothing but the trading state and the shape of the intent. Raises
    ``RiskLimitError`` naming a bad field.
    """

    defaults: InstrumentLimits = InstrumentLimits()
    per_instrument: Mapping[str, InstrumentLimits] = field(default_factory=dict)
    max_gross_exposure: Decimal | None = None
    max_open_orders: int | None = None
    orders_per_second: int | None = None
    orders_per_minute: int | None = None
    cancels_per_second: int | None = None
    daily_loss_limit: Decimal | None = None
    max_drawdown: Decimal | None = None
    _merged: Mapping[str, InstrumentLimits] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.defaults, InstrumentLimits):
            raise RiskLimitError(f"defaults must be InstrumentLimits, got {self.defaults!r}")
        for instrument, override in self.per_instrument.items():
            if not isinstance(instrument, str) or not instrument:
                raise RiskLimitError(f"per_instrument keys must be instrument names, got {instrument!r}")
            if not isinstance(override, InstrumentLimits):
                raise RiskLimitError(f"per_instrument[{instrument!r}] must be InstrumentLimits, got {override!r}")
        object.__setattr__(self, "per_instrument", MappingProxyType(dict(self.per_instrument)))
        for name in ("max_gross_exposure", "daily_loss_limit", "max_drawdown"):
            object.__setattr__(self, name, _decimal_limit(getattr(self, name), name))
        for name in ("max_open_orders", "orders_per_second", "orders_per_minute", "cancels_per_second"):
            _count_limit(getattr(self, name), name)
        merged = {name: self.defaults.merged(override) for name, override in self.per_instrument.items()}
        object.__setattr__(self, "_merged", merged)

    def for_instrument(self, instrument: str) -> InstrumentLimits:
        """The limits for ``instrument``: the defaults with its override applied (precomputed)."""
        return self._merged.get(instrument, self.defaults)


KERNEL_KEYS = (
    "max_gross_exposure",
    "max_open_orders",
    "orders_per_second",
    "orders_per_minute",
    "cancels_per_second",
    "daily_loss_limit",
    "max_drawdown",
)


def limits_from_mapping(raw: Mapping[str, Any], where: str = "risk") -> Limits:
    """``Limits`` from a config table (the ``[risk]`` TOML table, see docs/risk.md).

    Top-level keys are the kernel-wide limits and the instrument defaults; ``instruments`` maps an
    instrument name to a table of overrides. Raises ``RiskLimitError`` (a ``ValueError``) naming
    ``where.key`` for an unknown key or a bad value.
    """
    known = {*KERNEL_KEYS, *INSTRUMENT_KEYS, "instruments"}
    for key in raw:
        if key not in known:
            raise RiskLimitError(f"{where}.{key}: unknown risk limit (known: {', '.join(sorted(known))})")
    defaults = _instrument_limits({k: v for k, v in raw.items() if k in INSTRUMENT_KEYS}, where)
    instruments = raw.get("instruments", {})
    if not isinstance(instruments, Mapping):
        raise RiskLimitError(f"{where}.instruments must be a table of instrument tables, got {instruments!r}")
    overrides = {}
    for instrument, table in instruments.items():
        here = f"{where}.instruments.{instrument}"
        if not isinstance(table, Mapping):
            raise RiskLimitError(f"{here} must be a table, got {table!r}")
        unknown = sorted(set(table) - set(INSTRUMENT_KEYS))
        if unknown:
            raise RiskLimitError(f"{here}.{unknown[0]}: unknown instrument limit (known: {', '.join(INSTRUMENT_KEYS)})")
        overrides[instrument] = _instrument_limits(table, here)
    try:
        return Limits(defaults, overrides, **{k: v for k, v in raw.items() if k in KERNEL_KEYS})
    except RiskLimitError as exc:
        raise RiskLimitError(f"{where}.{exc}") from None


def _instrument_limits(table: Mapping[str, Any], where: str) -> InstrumentLimits:
    try:
        return InstrumentLimits(**table)
    except RiskLimitError as exc:
        raise RiskLimitError(f"{where}.{exc}") from None


__all__ = [
    "INSTRUMENT_DECIMAL_KEYS",
    "INSTRUMENT_KEYS",
    "KERNEL_KEYS",
    "InstrumentLimits",
    "Limits",
    "RiskError",
    "RiskLimitError",
    "limits_from_mapping",
]
