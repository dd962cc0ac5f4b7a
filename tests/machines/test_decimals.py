"""The one decimal reader (``machines.decimals.parse_decimal``): every branch, with the exact value
or message written out by hand."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from machines.decimals import MAX_ADJUSTED, MAX_DIGITS, PLAIN_DECIMAL_TEXT, DecimalError, Sign, parse_decimal
from machines.errors import TradekernelError

D = Decimal
TYPE = "x must be a decimal number (Decimal, int or string), got "


def refused(value: object, message: str, **options: object) -> None:
    with pytest.raises(DecimalError) as info:
        parse_decimal(value, "x", **options)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_the_error_is_ours_and_a_value_error() -> None:
    assert issubclass(DecimalError, TradekernelError)
    assert issubclass(DecimalError, ValueError)


def test_the_limits() -> None:
    assert (MAX_DIGITS, MAX_ADJUSTED) == (40, 30)
    assert PLAIN_DECIMAL_TEXT.fullmatch("-12.50")
    assert not PLAIN_DECIMAL_TEXT.fullmatch("12.")


# -- types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [(True, "True"), (False, "False"), (1.5, "1.5"), (None, "None"), ([1], "[1]"), (b"1", "b'1'")],
    ids=["true", "false", "float", "none", "list", "bytes"],
)
def test_bools_floats_and_other_types_are_refused(value: object, shown: str) -> None:
    refused(value, TYPE + shown)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D("1.50"), "1.50"),  # kept exactly, trailing zero and all
        (5, "5"),
        ("1.5", "1.5"),
        ("0.00000001", "1E-8"),
        ("1e3", "1E+3"),  # exponents are fine unless plain_text
        ("1e-30", "1E-30"),
        ("1e999999", "1E+999999"),  # huge, but finite and not bounded
        ("123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
    ],
)
def test_decimals_ints_and_numeric_text_are_read_exactly(value: object, expected: str) -> None:
    number = parse_decimal(value, "x")
    assert type(number) is Decimal
    assert str(number) == expected


# -- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\u0661", "'\u0661'"),  # ARABIC-INDIC DIGIT ONE: Decimal() would take it
        ("\uff11", "'\uff11'"),  # FULLWIDTH DIGIT ONE
        (" 1_0 ", "' 1_0 '"),
        ("1_0", "'1_0'"),  # Decimal() would read 10
        (" 1", "' 1'"),
        ("1\n", "'1\\n'"),
    ],
)
def test_spaces_underscores_and_non_ascii_digits_are_refused(text: str, shown: str) -> None:
    refused(text, f"x: not a decimal: {shown}")
    refused(text, f"x: not a decimal: {shown}", plain_text=True)


@pytest.mark.parametrize(("text", "shown"), [("abc", "'abc'"), ("", "''"), ("1.2.3", "'1.2.3'"), ("--1", "'--1'")])
def test_text_that_is_no_number(text: str, shown: str) -> None:
    refused(text, f"x is not a number: {shown}")


def test_long_text_is_cut_to_40_characters_in_the_message() -> None:
    refused("a" * 50, "x is not a number: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'")
    refused("9" * 41, "x: not a decimal: '9999999999999999999999999999999999999999'", plain_text=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5", "0.5"), ("12", "12"), ("-1.5", "-1.5"), ("9" * 40, "9" * 40), ("0." + "0" * 39 + "1", "1E-40")],
)
def test_plain_text_takes_plain_decimals(text: str, expected: str) -> None:
    assert str(parse_decimal(text, "x", plain_text=True, sign=Sign.any)) == expected


@pytest.mark.parametrize("text", ["1e3", "1e-30", "1E5", "+1", "1.", ".5", "-", "NaN", "Infinity", "0x10", "1,5"])
def test_plain_text_refuses_exponents_signs_and_bare_points(text: str) -> None:
    refused(text, f"x: not a decimal: {text!r}", plain_text=True, sign=Sign.any)


def test_plain_text_does_not_apply_to_decimals_and_ints() -> None:
    assert parse_decimal(D("1E+3"), "x", plain_text=True) == 1000
    assert parse_decimal(7, "x", plain_text=True) == 7


# -- finiteness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (D("NaN"), "Decimal('NaN')"),
        (D("-Infinity"), "Decimal('-Infinity')"),
        ("NaN", "'NaN'"),
        ("nan", "'nan'"),
        ("sNaN", "'sNaN'"),
        ("Infinity", "'Infinity'"),
        ("-inf", "'-inf'"),
    ],
)
def test_nan_and_infinity_are_refused_whatever_the_sign(value: object, shown: str) -> None:
    for sign in Sign:
        refused(value, f"x must be finite, got {shown}", sign=sign)


# -- bounded --------------------------------------------------------------------------------------


def test_bounded_refuses_too_many_digits_and_huge_or_tiny_magnitudes() -> None:
    refused("1" * 41, "x: more than 40 digits", bounded=True)
    refused(D("1." + "0" * 40), "x: more than 40 digits", bounded=True)
    refused("1e31", "x: out of range: 1E+31", bounded=True)
    refused("1e-31", "x: out of range: 1E-31", bounded=True)
    refused("-1e31", "x: out of range: -1E+31", bounded=True, sign=Sign.any)
    refused("1e999999", "x: out of range: 1E+999999", bounded=True)


def test_bounded_accepts_the_edges_and_zero_with_any_exponent() -> None:
    assert str(parse_decimal("1e30", "x", bounded=True)) == "1E+30"
    assert str(parse_decimal("1e-30", "x", bounded=True)) == "1E-30"
    assert str(parse_decimal("9" * 31, "x", bounded=True)) == "9" * 31
    refused("1" * 40, "x: out of range: " + "1" * 40, bounded=True)  # 40 digits, but 1e39
    assert str(parse_decimal("0e100", "x", bounded=True, sign=Sign.non_negative)) == "0E+100"
    refused("0e100", "x must be positive, got 0E+100", bounded=True)


# -- signs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sign", "expected"),
    [
        ("1", Sign.positive, "1"),
        ("0.001", Sign.positive, "0.001"),
        ("0", Sign.non_negative, "0"),
        (0, Sign.non_negative, "0"),
        ("1", Sign.non_negative, "1"),
        ("-5", Sign.any, "-5"),
        (-5, Sign.any, "-5"),
        ("-0", Sign.any, "-0"),
        ("0", Sign.any, "0"),
    ],
)
def test_signs_that_pass(value: object, sign: Sign, expected: str) -> None:
    assert str(parse_decimal(value, "x", sign=sign)) == expected


@pytest.mark.parametrize(
    ("value", "sign", "message"),
    [
        ("0", Sign.positive, "x must be positive, got 0"),
        (0, Sign.positive, "x must be positive, got 0"),
        ("0.000", Sign.positive, "x must be positive, got 0.000"),
        ("-0", Sign.positive, "x must be positive, got -0"),
        ("-1", Sign.positive, "x must be positive, got -1"),
        (D("-0.5"), Sign.positive, "x must be positive, got -0.5"),
        ("-0", Sign.non_negative, "x must not be negative, got -0"),  # -0 counts as negative
        ("-1", Sign.non_negative, "x must not be negative, got -1"),
        (-1, Sign.non_negative, "x must not be negative, got -1"),
    ],
)
def test_signs_that_are_refused(value: object, sign: Sign, message: str) -> None:
    refused(value, message, sign=sign)


def test_positive_is_the_default_sign() -> None:
    refused("0", "x must be positive, got 0")
    assert Sign.positive.value == "positive"
    assert [s.value for s in Sign] == ["any", "non-negative", "positive"]


def test_the_name_leads_every_message() -> None:
    with pytest.raises(DecimalError, match=r"^fill qty must be positive, got 0$"):
        parse_decimal("0", "fill qty")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1E-7", "1E-7"),
        ("1.0E-7", "1.0E-7"),
        ("2.5e-10", "2.5E-10"),
        ("1E+1", "1E+1"),
        ("-3e2", "-3E+2"),
        ("0.5", "0.5"),
    ],
)
def test_scientific_plain_text_takes_the_exponents_str_decimal_writes(text: str, expected: str) -> None:
    assert str(parse_decimal(text, "x", plain_text=True, scientific=True, sign=Sign.any)) == expected


@pytest.mark.parametrize(
    "text",
    ["1e100", "1e1000000", "1e", "e5", "1e+-5", "+1", ".5e1", "1.e1", "NaN", "\u0661e1", "1e\u0661", " 1e1", "1_0e1"],
)
def test_scientific_plain_text_refuses_long_exponents_and_everything_plain_text_refuses(text: str) -> None:
    refused(text, f"x: not a decimal: {text!r}", plain_text=True, scientific=True, sign=Sign.any)


# -- the short path for short unsigned plain text --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("100.5", {}, "100.5"),
        ("00.10", {}, "0.10"),  # kept exactly, as the general path reads it
        ("7", {"plain_text": True}, "7"),
        ("0", {"sign": Sign.any}, "0"),
        ("0.000", {"sign": Sign.non_negative}, "0.000"),
        ("1234567890123456789012345678901234567.89", {"plain_text": True}, "1234567890123456789012345678901234567.89"),
        (
            "12345678901234567890123456789012345678.91",
            {"plain_text": True},
            "12345678901234567890123456789012345678.91",
        ),
        ("0.5", {"plain_text": True, "scientific": True, "sign": Sign.non_negative}, "0.5"),
    ],
    ids=["point", "zeros", "int", "zero-any", "zero-non-negative", "40-chars", "41-chars", "scientific"],
)
def test_short_plain_text_is_read_exactly(text: str, options: dict[str, object], expected: str) -> None:
    number = parse_decimal(text, "x", **options)  # type: ignore[arg-type]
    assert type(number) is Decimal
    assert str(number) == expected


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("0", {}, "x must be positive, got 0"),
        ("0.00", {}, "x must be positive, got 0.00"),
        ("12.", {"plain_text": True}, "x: not a decimal: '12.'"),
        (".5", {"plain_text": True}, "x: not a decimal: '.5'"),
        ("1.2.3", {}, "x is not a number: '1.2.3'"),
        ("1..2", {}, "x is not a number: '1..2'"),
        ("0.0000000000000000000000000000001", {"bounded": True}, "x: out of range: 1E-31"),
        ("1" * 41, {"bounded": True}, "x: more than 40 digits"),
    ],
    ids=["zero", "zeros", "trailing-point", "leading-point", "two-points", "double-point", "tiny", "41-digits"],
)
def test_short_plain_text_is_refused_as_before(text: str, options: dict[str, object], message: str) -> None:
    refused(text, message, **options)


def test_a_bare_point_on_either_side_is_read_by_the_general_path() -> None:
    assert str(parse_decimal(".5", "x")) == "0.5"
    assert str(parse_decimal("5.", "x")) == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9" * 31, Decimal("9999999999999999999999999999999")),  # 31 characters: below 10**31
        ("0." + "0" * 28 + "1", Decimal("1E-29")),  # 31 characters: at least 10**-29
        ("12.50", Decimal("12.50")),
    ],
)
def test_short_plain_text_is_read_at_once_even_when_bounded(text: str, expected: Decimal) -> None:
    assert parse_decimal(text, "qty", bounded=True) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9" * 32, "qty: out of range: 99999999999999999999999999999999"),  # one more: the general path
        ("0." + "0" * 30 + "1", "qty: out of range: 1E-31"),
    ],
)
def test_bounded_text_past_the_short_length_takes_every_check(text: str, message: str) -> None:
    with pytest.raises(DecimalError, match=re.escape(message)):
        parse_decimal(text, "qty", bounded=True)
