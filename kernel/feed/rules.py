"""Instrument rules (tick size, lot size, minimum notional) from Binance's ``GET /api/v3/exchangeInfo``.

Per symbol, from its ``filters``: ``PRICE_FILTER`` ``tickSize``, ``LOT_SIZE`` ``stepSize``, and
``NOTIONAL`` (or the older ``MIN_NOTIONAL``) ``minNotional`` when present. Decimals are read exactly
(``machines.decimals.parse_decimal`` through the decoders' ``decimal``); a symbol missing from the
answer, or without a price or lot filter, is a ``RulesError``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from kernel.feed._common import Invalid, decimal
from kernel.feed.errors import FeedError
from kernel.feed.rest import RestClient, RestFailed


class RulesError(FeedError):
    """Instrument rules could not be had (an answer that is not exchange info, a symbol missing)."""


@dataclass(frozen=True, slots=True)
class InstrumentRules:
    """What the venue accepts for ``instrument``: prices in steps of ``tick_size``, quantities in steps
    of ``lot_size``, and ``price * qty`` at least ``min_notional`` (``None``: no minimum)."""

    instrument: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal | None


class _Symbol(msgspec.Struct, frozen=True):
    symbol: str
    filters: list[dict[str, Any]]


class _ExchangeInfo(msgspec.Struct, frozen=True):
    symbols: list[_Symbol]


def exchange_info_path(instruments: Sequence[str]) -> str:
    """``/api/v3/exchangeInfo?symbols=["A","B"]`` (upper-case symbols, compact JSON)."""
    symbols = json.dumps([symbol.upper() for symbol in instruments], separators=(",", ":"))
    return f"/api/v3/exchangeInfo?symbols={symbols}"


def parse_binance_rules(body: str | bytes, instruments: Sequence[str]) -> dict[str, InstrumentRules]:
    """The rules of ``instruments`` from an ``exchangeInfo`` body; ``RulesError`` if any is missing."""
    try:
        info = msgspec.json.decode(body, type=_ExchangeInfo)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RulesError(f"exchangeInfo: {exc}") from None
    found = {entry.symbol: entry for entry in info.symbols}
    rules: dict[str, InstrumentRules] = {}
    for instrument in (symbol.upper() for symbol in instruments):
        entry = found.get(instrument)
        if entry is None:
            raise RulesError(f"exchangeInfo has no symbol {instrument!r}")
        try:
            rules[instrument] = _rules(instrument, entry.filters)
        except Invalid as exc:
            raise RulesError(f"exchangeInfo of {instrument}: {exc}") from None
    return rules


def _rules(instrument: str, filters: list[dict[str, Any]]) -> InstrumentRules:
    by_type = {str(item.get("filterType")): item for item in filters}
    price_filter, lot = by_type.get("PRICE_FILTER"), by_type.get("LOT_SIZE")
    if price_filter is None or lot is None:
        raise Invalid("no PRICE_FILTER or LOT_SIZE filter")
    notional = by_type.get("NOTIONAL") or by_type.get("MIN_NOTIONAL")
    minimum = None if notional is None or "minNotional" not in notional else _text(notional, "minNotional")
    return InstrumentRules(
        instrument,
        tick_size=_text(price_filter, "tickSize"),
        lot_size=_text(lot, "stepSize"),
        min_notional=minimum,
    )


def _text(item: dict[str, Any], field: str) -> Decimal:
    value = item.get(field)
    if not isinstance(value, str):
        raise Invalid(f"{field} is not a decimal string")
    return decimal(value, field)


async def fetch_binance_rules(
    rest_url: str,
    instruments: Sequence[str],
    *,
    client: httpx.AsyncClient | RestClient | None = None,
) -> dict[str, InstrumentRules]:
    """``GET {rest_url}/api/v3/exchangeInfo?symbols=[...]`` as ``{symbol: InstrumentRules}``.

    ``client``: an ``httpx.AsyncClient`` to use, or a configured ``RestClient`` (retries, taps);
    default a ``RestClient`` on ``rest_url``. Raises ``RulesError``.
    """
    rest = client if isinstance(client, RestClient) else RestClient(rest_url, http=client)
    try:
        body = await rest.get(exchange_info_path(instruments))
    except RestFailed as exc:
        raise RulesError(str(exc)) from None
    return parse_binance_rules(body, instruments)
