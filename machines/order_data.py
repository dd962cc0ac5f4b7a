"""An order's data: the terms ``create`` accepts, their checks, and reading them back from the journal.

The ``order`` machine (``machines/order.py``) uses these for its ``init`` and ``decode``; the quantity
and price checks of its triggers use ``to_decimal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from machines.base import Data
from machines.decimals import DecimalError, Sign, parse_decimal
from machines.errors import InvalidData
from machines.shared_parse import LastParse

SIDES = ("buy", "sell")
TYPES = ("limit", "market")
TIFS = ("gtc", "ioc", "fok", "day")
LIQUIDITIES = ("maker", "taker")
"""A fill's ``liquidity`` when the venue says: our order rested on the book, or took from it."""
ORIGINS = ("kernel", "external")
"""``origin`` of an order: sent by this kernel, or found at the venue and adopted by reconciliation."""
MAX_TAG_CHARS = 64
"""The longest ``tag`` (the strategy's own label for an order, never sent to the venue)."""
MAX_REASON_CHARS = 500
"""The longest ``reason`` a ``create`` may carry (why the kernel itself placed the order)."""
DECIMAL_FIELDS = (
    "qty",
    "price",
    "cum_qty",
    "leaves_qty",
    "avg_px",
    "filled_notional",
    "fees",
    "requested_qty",
    "requested_price",
)
ZERO = Decimal(0)


_POSITIVE = Sign.positive
_ANY = Sign.any


def to_decimal(value: Any, name: str, *, positive: bool = True) -> Decimal:
    """``value`` (Decimal, int or numeric string) as a finite Decimal (``positive``: above 0).

    Raises ``InvalidData`` with ``parse_decimal``'s message (which names ``name`` and the value).
    """
    try:
        return parse_decimal(value, name, sign=_POSITIVE if positive else _ANY)
    except DecimalError as exc:
        raise InvalidData(str(exc)) from None


def trade_id_of(data: Data) -> str:
    """A fill's ``trade_id``; ``InvalidData`` unless it is a non-empty string."""
    trade_id = data.get("trade_id")
    if not isinstance(trade_id, str) or not trade_id:
        raise InvalidData("fill needs a trade_id (a non-empty string)")
    return trade_id


FillTerms = tuple[Decimal, Decimal, str, Decimal]
"""A fill's (qty, price, trade_id, fee)."""

_FILLS: LastParse[FillTerms] = LastParse()


def fill_data(data: Data) -> FillTerms:
    """A fill's (qty, price, trade_id, fee), checked in that order; a missing fee is 0. An optional
    ``liquidity`` is checked last: ``maker`` or ``taker`` when present (``InvalidData`` otherwise).

    Parsed once per trigger: the guards and the effect of one ``fire`` share it (``LastParse``).
    """
    get = data.get
    key = (get("qty"), get("price"), get("trade_id"), get("fee"), get("liquidity"))
    terms = _FILLS.get(data, key)
    if terms is not None:
        return terms
    qty = to_decimal(key[0], "fill qty")
    price = to_decimal(key[1], "fill price")
    trade_id = key[2]
    if type(trade_id) is not str or not trade_id:
        trade_id = trade_id_of(data)  # a str subclass passes; anything else raises
    fee = ZERO if key[3] is None else to_decimal(key[3], "fee", positive=False)
    liquidity = key[4]
    if liquidity is not None and liquidity not in LIQUIDITIES:
        raise InvalidData(f"liquidity must be one of {', '.join(LIQUIDITIES)}, got {liquidity!r}")
    return _FILLS.put(data, key, (qty, price, trade_id, fee))


def new_fill_qty(data: Data, applied: list[str]) -> Decimal | None:
    """A fill's qty when its trade_id is not in ``applied``, else ``None``; trade_id checked first.

    Shares ``fill_data``'s parse when the whole fill is usable; otherwise reads trade_id then qty
    itself, so that bad data raises what this reader reads first.
    """
    try:
        qty, _, trade_id, _ = fill_data(data)
    except InvalidData:
        if trade_id_of(data) in applied:
            return None
        return to_decimal(data.get("qty"), "fill qty")
    return None if trade_id in applied else qty


def _choice(data: Data, name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    value = data.get(name, default)
    if value not in allowed:
        raise InvalidData(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value if type(value) is str else str(value)


_CREATE_FIELDS = frozenset({"instrument", "side", "type", "tif", "qty", "price", "tag", "origin", "reason"})


def init_data(data: Data) -> dict[str, Any]:
    """The data of a new order from its ``create`` data; ``InvalidData`` for bad terms."""
    if not _CREATE_FIELDS.issuperset(data):
        unknown = set(data) - _CREATE_FIELDS
        raise InvalidData(f"unknown order fields: {', '.join(sorted(unknown))}")
    get = data.get
    instrument = get("instrument")
    if not isinstance(instrument, str) or not instrument:
        raise InvalidData("instrument (a non-empty string) is required")
    order_type = get("type", "limit")
    if type(order_type) is not str or order_type not in TYPES:  # the common case without a call
        order_type = _choice(data, "type", TYPES, "limit")
    price = get("price")
    if order_type == "limit":
        if price is None:
            raise InvalidData("a limit order needs a price")
        price = to_decimal(price, "price")
    elif price is not None:
        raise InvalidData("a market order has no price")
    qty = to_decimal(get("qty"), "qty")
    tag = get("tag", "")
    if not isinstance(tag, str) or len(tag) > MAX_TAG_CHARS:
        raise InvalidData(f"tag must be a string of at most {MAX_TAG_CHARS} characters, got {tag!r}")
    side = get("side")
    if type(side) is not str or side not in SIDES:
        side = _choice(data, "side", SIDES)
    tif = get("tif", "gtc")
    if type(tif) is not str or tif not in TIFS:
        tif = _choice(data, "tif", TIFS, "gtc")
    reason = get("reason")
    if reason is not None:
        reason = _create_reason(data)
    origin = get("origin", "kernel")
    if type(origin) is not str or origin not in ORIGINS:
        origin = _choice(data, "origin", ORIGINS, "kernel")
    return {
        "instrument": instrument,
        "side": side,
        "type": order_type,
        "tif": tif,
        "qty": qty,
        "price": price,
        "cum_qty": ZERO,
        "leaves_qty": qty,
        "avg_px": None,
        "filled_notional": ZERO,
        "fees": ZERO,
        "venue_order_id": None,
        "prior_state": None,
        "requested_qty": None,
        "requested_price": None,
        "trade_ids": [],
        "duplicate_fills": 0,
        "late_fills": 0,
        "reason": reason,
        "tag": tag,
        "origin": origin,
    }


def _create_reason(data: Data) -> str | None:
    """Why the kernel placed the order (a stop, a flatten), kept until a later reason replaces it."""
    reason = data.get("reason")
    if reason is not None and (not isinstance(reason, str) or not reason or len(reason) > MAX_REASON_CHARS):
        raise InvalidData(f"reason must be a non-empty string of at most {MAX_REASON_CHARS} characters")
    return reason


def decode_data(data: dict[str, Any]) -> dict[str, Any]:
    """An order's data as read back from the journal (JSON): decimals and lists restored."""
    out = dict(data)
    for name in DECIMAL_FIELDS:
        if out.get(name) is not None:
            out[name] = Decimal(out[name])
    out["trade_ids"] = list(out.get("trade_ids", []))
    out.setdefault("origin", "kernel")  # journaled before orders had an origin: all were the kernel's
    return out


__all__ = [
    "DECIMAL_FIELDS",
    "LIQUIDITIES",
    "MAX_REASON_CHARS",
    "MAX_TAG_CHARS",
    "ORIGINS",
    "SIDES",
    "TIFS",
    "TYPES",
    "decode_data",
    "init_data",
    "to_decimal",
]
