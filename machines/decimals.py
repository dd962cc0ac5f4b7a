"""Reading a decimal number: the one place that turns text, ints or Decimals into a checked ``Decimal``.

Money and quantities never pass through a binary float. Every reader in the code base (trigger data,
venue frames, config values, the paper venue's store, CLI arguments) calls ``parse_decimal`` and turns
``DecimalError`` into its own typed error where it needs one.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from enum import Enum

from machines.errors import TradekernelError

PLAIN_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?")
"""A plain decimal as venues send it: ASCII digits, at most one point, an optional leading minus."""
SCIENTIFIC_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,40}(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,2})?")
"""``PLAIN_DECIMAL_TEXT`` with an optional exponent of at most two digits, as ``str(Decimal)`` writes
values below 1e-6 (``"1E-7"``) or with a positive exponent (``"1E+1"``)."""
MAX_DIGITS = 40
MAX_ADJUSTED = 30
SHORT_BOUNDED = 31
"""Unsigned plain text of at most this many characters is inside every ``bounded`` limit: at most
31 digits (< ``MAX_DIGITS``), below 10**31 (adjusted exponent <= ``MAX_ADJUSTED``) and, unless zero,
at least 10**-29. Such text is read at once, bounded or not (issue 17: the common case of every
venue frame and trigger datum)."""


class DecimalError(TradekernelError, ValueError):
    """A value is not a usable decimal; the message names the field and the value."""


class Sign(Enum):
    """Which values ``parse_decimal`` accepts besides their being finite."""

    any = "any"
    non_negative = "non-negative"
    positive = "positive"


def parse_decimal(
    value: object,
    name: str,
    *,
    sign: Sign = Sign.positive,
    plain_text: bool = False,
    bounded: bool = False,
    scientific: bool = False,
) -> Decimal:
    """``value`` (a ``Decimal``, an ``int`` or numeric text) as a finite ``Decimal``.

    ``sign`` says which values pass (``-0`` counts as negative). ``plain_text`` accepts only
    ``PLAIN_DECIMAL_TEXT`` for strings (no exponent), as for venue frames; text with spaces,
    underscores or non-ASCII digits is always refused; with ``scientific`` too, ``plain_text`` also
    takes an exponent of at most two digits (``SCIENTIFIC_DECIMAL_TEXT``, the client side of the
    venue wire). ``bounded`` refuses more than ``MAX_DIGITS``
    digits and magnitudes beyond 10**±``MAX_ADJUSTED``. Floats and bools are refused. Raises
    ``DecimalError``.
    """
    # Venue frames and trigger data pass millions of values through here: the common cases take
    # the shortest path. Short unsigned plain text ("12.50": ASCII digits, at most one point with
    # digits on both sides; ASCII has no digits but 0-9) passes every text check of every option
    # and cannot be negative, infinite or beyond MAX_DIGITS (nor, up to SHORT_BOUNDED characters, out
    # of the bounded range), so only a zero (not positive) and longer bounded text need the
    # general path.
    if type(value) is str and len(value) <= (SHORT_BOUNDED if bounded else MAX_DIGITS) and value.isascii():
        head, point, tail = value.partition(".")
        if head.isdigit() and (tail.isdigit() or not point):
            number = Decimal(value)
            if number or sign is not Sign.positive:
                return number
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if plain_text:
            if (SCIENTIFIC_DECIMAL_TEXT if scientific else PLAIN_DECIMAL_TEXT).fullmatch(value) is None:
                raise DecimalError(f"{name}: not a decimal: {value[:40]!r}")
        elif not value.isascii() or "_" in value or value != value.strip():
            raise DecimalError(f"{name}: not a decimal: {value[:40]!r}")
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError):
            raise DecimalError(f"{name} is not a number: {value[:40]!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    else:
        raise DecimalError(f"{name} must be a decimal number (Decimal, int or string), got {value!r}")
    if not number.is_finite():
        raise DecimalError(f"{name} must be finite, got {value!r}")
    if bounded:
        if len(number.as_tuple().digits) > MAX_DIGITS:
            raise DecimalError(f"{name}: more than {MAX_DIGITS} digits")
        if number and abs(number.adjusted()) > MAX_ADJUSTED:
            raise DecimalError(f"{name}: out of range: {number}")
    if sign is Sign.positive:
        if number <= 0 or number.is_signed():
            raise DecimalError(f"{name} must be positive, got {number}")
    elif sign is Sign.non_negative and number.is_signed():
        raise DecimalError(f"{name} must not be negative, got {number}")
    return number
