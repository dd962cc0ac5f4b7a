"""The feed's decimal reader (kernel.feed._common.decimal): the short plain-text fast path keeps the bounds."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from kernel.feed._common import Invalid, decimal, price, size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", D("0")),
        ("0.000", D("0.000")),
        ("39432.48", D("39432.48")),
        ("007.50", D("7.50")),
        ("1234567890123456789012345678901", D("1234567890123456789012345678901")),  # 31 digits: below 10**31
        ("0.00000000000000000000000000001", D("1E-29")),  # 31 characters
        ("0.000000000000000000000000000001", D("1E-30")),  # 32 characters: the full check, still in bounds
    ],
)
def test_plain_text_within_the_bounds_is_read_exactly(text: str, expected: D) -> None:
    value = decimal(text, "qty")
    assert value == expected
    assert str(value) == str(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12345678901234567890123456789012", "qty: out of range: 12345678901234567890123456789012"),
        ("0.0000000000000000000000000000001", "qty: out of range: 1E-31"),
        ("-0", "qty: negative: -0"),
        ("-1.5", "qty: negative: -1.5"),
        ("1e5", "qty: not a decimal: '1e5'"),
        (" 1", "qty: not a decimal: ' 1'"),
        ("1.", "qty: not a decimal: '1.'"),
        (".5", "qty: not a decimal: '.5'"),
        ("NaN", "qty: not a decimal: 'NaN'"),
        ("١", "qty: not a decimal: '١'"),
    ],
)
def test_anything_else_gets_the_full_check(text: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        decimal(text, "qty")
    assert str(caught.value) == message


def test_prices_stay_positive_and_sizes_may_be_zero() -> None:
    assert size("0", "bid_qty") == D("0")
    with pytest.raises(Invalid, match=r"^price: must be positive: 0\.00$"):
        price("0.00")


@pytest.mark.parametrize(
    ("number", "outcome"),
    [
        (D("39432.48"), D("39432.48")),
        (D("1234567890123456789012345678901"), D("1234567890123456789012345678901")),
        (D("1E-29"), D("1E-29")),  # written with an exponent: the full check, in bounds
        (D("1E+30"), D("1E+30")),
        (D("1E+31"), "qty: out of range: 1E+31"),
        (D("1E-31"), "qty: out of range: 1E-31"),
        (D("-0"), "qty: negative: -0"),
        (D("NaN"), "qty: not a finite number: NaN"),
        (D("Infinity"), "qty: not a finite number: Infinity"),
        (D("1" * 41), "qty: more than 40 digits"),
    ],
)
def test_a_decimal_already_decoded_is_checked_the_same(number: D, outcome: D | str) -> None:
    if isinstance(outcome, str):
        with pytest.raises(Invalid) as caught:
            decimal(number, "qty")
        assert str(caught.value) == outcome
    else:
        assert decimal(number, "qty") is number
