"""Human output of decimals: quantized to the instrument's tick and lot, money to its currency."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kernel.display import Precision, fixed, money_places, places_of, precisions, quote_currency
from kernel.paper_defaults import TradingRules


@pytest.mark.parametrize(
    ("step", "places"),
    [("0.01", 2), ("0.00001", 5), ("1", 0), ("10", 0), ("0.10", 1), ("1E-8", 8)],
)
def test_places_of_a_step(step: str, places: int) -> None:
    assert places_of(Decimal(step)) == places


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        ("-0.28307565598800000000", 2, "-0.28"),
        ("39472.87961448048895157894737", 2, "39472.88"),
        ("0.001", 5, "0.00100"),
        ("0.000000", 5, "0.00000"),
        ("-0.000001", 2, "0.00"),
        ("0.125", 2, "0.12"),
        ("0.135", 2, "0.14"),
        ("1E+3", 2, "1000.00"),
        ("12", 0, "12"),
    ],
)
def test_fixed_rounds_half_even_in_plain_notation(value: str, places: int, text: str) -> None:
    assert fixed(Decimal(value), places) == text


def test_fixed_of_nothing_is_a_dash() -> None:
    assert fixed(None, 2) == "-"


@pytest.mark.parametrize(
    ("instrument", "quote"),
    [("BTCUSDT", "USDT"), ("BTC-USD", "USD"), ("XBT/USD", "USD"), ("ETHBTC", "BTC"), ("btcfdusd", "FDUSD"), ("X", "")],
)
def test_quote_currency(instrument: str, quote: str) -> None:
    assert quote_currency(instrument) == quote


def test_money_places_cents_for_fiat_like_and_eight_for_crypto() -> None:
    assert money_places("USDT") == 2
    assert money_places("eur") == 2
    assert money_places("BTC") == 8
    assert money_places("") == 8


def test_precision_from_rules() -> None:
    p = Precision.of("BTCUSDT", TradingRules(Decimal("0.01"), Decimal("0.00001")))
    assert (p.price(Decimal("39472.879")), p.qty(Decimal("0.001")), p.money(Decimal("-0.283075"))) == (
        "39472.88",
        "0.00100",
        "-0.28",
    )


def test_precision_defaults_and_crypto_quote() -> None:
    p = Precision.of("ETHBTC", None)
    assert p == Precision(price_places=2, qty_places=5, money_places=8)
    assert p.money(Decimal("0.000012345678")) == "0.00001235"


def test_precisions_per_instrument() -> None:
    got = precisions({"BTCUSDT": TradingRules(Decimal("0.1"), Decimal("0.001")), "ETH-USD": None})
    assert got == {"BTCUSDT": Precision(1, 3, 2), "ETH-USD": Precision(2, 5, 2)}
