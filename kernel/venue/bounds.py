"""The bounds on an order's numbers at the paper venue: what keeps matching arithmetic finite.

The wire refuses anything else (``kernel.paper_protocol.wire_decimal``: plain ASCII decimals, at
most ``MAX_DIGITS`` digits, magnitude within 10**±``MAX_ADJUSTED``, positive). The engine checks
again (``out_of_bounds``: orders from other callers, orders an older version stored, which are
expired at load), and checks an instrument's tick and lot in a context of ``WIDE_PRECISION`` digits,
where every bounded value fits. A fill whose arithmetic fails all the same (a bug) cancels its
order only; the server contains any other exception of a step to the request or event that caused it.
"""

from __future__ import annotations

import logging
from decimal import Decimal, localcontext

from kernel.paper_defaults import TradingRules
from machines.decimals import MAX_ADJUSTED, MAX_DIGITS, DecimalError, Sign, parse_decimal

__all__ = [
    "MAX_ADJUSTED",
    "MAX_DIGITS",
    "WIDE_PRECISION",
    "expired_at_load",
    "order_problem",
    "out_of_bounds",
    "venue_error",
]

log = logging.getLogger(__name__)

WIDE_PRECISION = 200
"""Digits of the context the tick and lot rules are checked in: ``qty % lot`` needs the whole
quotient, and Decimal's default 28 digits raised ``InvalidOperation`` for 1e30 over a lot of 0.00001."""


def out_of_bounds(**values: Decimal | None) -> str | None:
    """Why one of ``values`` (by name; ``None`` skipped) is not finite or breaks the digit and
    magnitude bounds, or ``None``."""
    for name, value in values.items():
        if value is None:
            continue
        try:
            parse_decimal(value, name, sign=Sign.any, bounded=True)
        except DecimalError as exc:
            return str(exc)
    return None


def order_problem(rules: TradingRules | None, price: Decimal | None, qty: Decimal) -> str | None:
    """Why an order of ``qty`` at ``price`` is off the bounds or off ``rules`` (tick, lot), or ``None``."""
    problem = out_of_bounds(qty=qty, price=price)
    if problem is None and rules is not None:
        with localcontext(prec=WIDE_PRECISION):
            problem = rules.problem(price, qty)
    return problem


def venue_error(client_order_id: str, exc: Exception) -> str:
    """Log (once, with its traceback) an exception contained to one order; the reason the order ends with."""
    log.error("venue error contained to order %r", client_order_id, exc_info=exc)
    return f"venue error: {type(exc).__name__}"


def expired_at_load(client_order_id: str, why: str) -> str:
    """Log a stored order off the bounds (an older version's) being expired; the reason it ends with."""
    log.warning("stored order %r expired at load: %s", client_order_id, why)
    return f"expired at load: {why}"
