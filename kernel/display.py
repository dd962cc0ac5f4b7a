"""Numbers for people: prices to the instrument's tick, quantities to its lot, money to its currency.

Every human output (the live view, ``status``, reports, log lines) formats decimals here; JSON
output keeps the exact strings. Values are rounded half-even to the step's decimal places and never
shown in exponent form: ``Decimal("0.28307565598800000000")`` of USDT is ``0.28``,
``avg_px 39472.87961448048895157894737`` at tick ``0.01`` is ``39472.88``, and a ``cum_qty`` of
``0.001`` at lot ``0.00001`` is ``0.00100`` wherever it appears.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from kernel.paper_defaults import DEFAULT_LOT, DEFAULT_TICK, TradingRules

FIAT_LIKE: frozenset[str] = frozenset({"USD", "USDT", "USDC", "BUSD", "FDUSD", "TUSD", "DAI", "EUR", "GBP", "JPY"})
"""Currencies shown to 2 decimal places (cents); any other (BTC, ETH, ...) to ``CRYPTO_PLACES``."""
CRYPTO_PLACES = 8
QUOTES: tuple[str, ...] = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "GBP", "JPY", "BTC", "ETH", "BNB", "DAI",
)  # fmt: skip
"""Quote currencies recognised at the end of a symbol written without a separator (``BTCUSDT``)."""
MISSING = "-"
"""What a value that is not known (``None``) shows as."""


def places_of(step: Decimal) -> int:
    """The decimal places a step has: ``0.01`` -> 2, ``0.00001`` -> 5, ``1`` -> 0, ``10`` -> 0."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def fixed(value: Decimal | None, places: int) -> str:
    """``value`` rounded half-even to ``places`` decimals, in plain notation (``MISSING`` for ``None``)."""
    if value is None:
        return MISSING
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if rounded.is_zero():
        rounded = abs(rounded)  # no "-0.00"
    return f"{rounded:f}"


def quote_currency(instrument: str) -> str:
    """The quote currency of ``instrument``: after ``-`` or ``/`` (``BTC-USD``, ``XBT/USD``), else
    the longest known quote it ends with (``BTCUSDT`` -> ``USDT``); ``""`` when unknown."""
    for separator in ("-", "/"):
        if separator in instrument:
            return instrument.rsplit(separator, 1)[1].upper()
    upper = instrument.upper()
    for quote in QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return quote
    return ""


def money_places(currency: str) -> int:
    """Decimal places shown for an amount of ``currency``: 2 for fiat and stablecoins, else 8."""
    return 2 if currency.upper() in FIAT_LIKE else CRYPTO_PLACES


@dataclass(frozen=True, slots=True)
class Precision:
    """How one instrument's numbers are shown: prices, quantities and money (P&L, fees, notional)."""

    price_places: int
    qty_places: int
    money_places: int

    @classmethod
    def of(cls, instrument: str, rules: TradingRules | None = None) -> Precision:
        """From the instrument's rules (tick and lot size; the paper venue's defaults when unknown)
        and its quote currency."""
        tick = rules.tick_size if rules is not None else DEFAULT_TICK
        lot = rules.lot_size if rules is not None else DEFAULT_LOT
        return cls(places_of(tick), places_of(lot), money_places(quote_currency(instrument)))

    def price(self, value: Decimal | None) -> str:
        """A price, to the tick."""
        return fixed(value, self.price_places)

    def qty(self, value: Decimal | None) -> str:
        """A quantity, to the lot."""
        return fixed(value, self.qty_places)

    def money(self, value: Decimal | None) -> str:
        """An amount of the quote currency (P&L, fees, notional)."""
        return fixed(value, self.money_places)


def precisions(instruments: Mapping[str, TradingRules | None]) -> dict[str, Precision]:
    """The ``Precision`` of each instrument, from its rules (``None``: defaults)."""
    return {instrument: Precision.of(instrument, rules) for instrument, rules in instruments.items()}
