"""Pre-trade risk (``machines.risk``): every check at, just under and just over its limit.

Ladder: limits validation and the per-instrument merge; the config mapping; the trading state
(reducing, halting, halted) and reduce-only; the shape of the intent; each order check (quantity,
lot, tick, collar, notional, position, open orders, gross exposure, rates); replaces; cancels; the
rate windows on a fake clock (the exact window edges); Decimal exactness; Hypothesis (never raises,
deterministic, names a known check); the docs table verbatim; the sans-I/O rule.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import machines.risk as risk_module
from machines.errors import StateMachineError
from machines.order_terms import OrderTerms
from machines.risk import (
    CHECKS,
    TRADING_STATES,
    Denial,
    InstrumentLimits,
    Limits,
    OpenOrder,
    RateClockError,
    Rates,
    RateWindow,
    RiskCheck,
    RiskError,
    RiskLimitError,
    RiskView,
    check_cancel,
    check_new,
    check_replace,
    checks_markdown,
    limits_from_mapping,
)

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "risk.md"
SOURCES = sorted((REPO / "machines").glob("risk*.py"))
D = Decimal
BTC = "BTCUSDT"
ETH = "ETHUSDT"
NAMES = {check.name for check in CHECKS}
ZERO, TWO, HUNDRED = D(0), D(2), D(100)


def view(
    positions: Mapping[str, Decimal] | None = None,
    open_orders: Sequence[OpenOrder] = (),
    refs: Mapping[str, Decimal] | None = None,
    state: str = "active",
) -> RiskView:
    return RiskView(positions or {}, open_orders, {BTC: D(100)} if refs is None else refs, state)


def new(
    limits: Limits,
    qty: str | Decimal = "1",
    price: str | Decimal | None = "100",
    *,
    side: str = "buy",
    order_type: str = "limit",
    on: RiskView | None = None,
    instrument: str = BTC,
    now_ms: int = 0,
    rates: Rates | None = None,
) -> Denial | None:
    terms = OrderTerms(instrument, side, D(qty), None if price is None else D(price), order_type)  # type: ignore[arg-type]
    return check_new(terms, on or view(), limits, now_ms, rates or Rates())


def only(**fields: Any) -> Limits:
    return Limits(InstrumentLimits(**fields))


def denied(result: Denial | None, check: str) -> str:
    assert result is not None, f"expected a {check} denial"
    assert result.check == check, result
    assert result.check in NAMES
    return result.reason


@dataclasses.dataclass(frozen=True)
class Working:
    """An order being replaced (what ``OrderView`` offers)."""

    instrument: str = BTC
    side: str = "buy"
    leaves_qty: Decimal = TWO
    order_type: str = "limit"
    qty: Decimal = TWO
    cum_qty: Decimal = ZERO
    price: Decimal | None = HUNDRED

    def open(self) -> OpenOrder:
        return OpenOrder(self.instrument, self.side, self.leaves_qty)


def replace(limits: Limits, order: Working, qty: str | None = None, price: str | None = None, **kw: Any) -> Any:
    on = kw.pop("on", None) or view(open_orders=[order.open()])
    return check_replace(
        order,
        None if qty is None else D(qty),
        None if price is None else D(price),
        on,
        limits,
        kw.pop("now_ms", 0),
        kw.pop("rates", Rates()),
    )


# -- limits -------------------------------------------------------------------------------------


def test_no_limits_allow_any_well_formed_order() -> None:
    assert new(Limits()) is None
    assert new(Limits(), "123456789.123", "0.00001", side="sell") is None


def test_instrument_limits_convert_ints_and_keep_decimals() -> None:
    limits = InstrumentLimits(max_order_qty=5, tick_size=D("0.1"))  # type: ignore[arg-type]
    assert limits.max_order_qty == D(5)
    assert type(limits.max_order_qty) is Decimal
    assert limits.tick_size == D("0.1")


@pytest.mark.parametrize("value", [1.5, True, "5", D(0), D(-1), D("NaN"), D("Infinity"), 0])
def test_instrument_limits_refuse_bad_values(value: object) -> None:
    with pytest.raises(RiskLimitError, match=r"^max_order_notional "):
        InstrumentLimits(max_order_notional=value)  # type: ignore[arg-type]


def test_limit_and_clock_errors_are_typed_value_errors() -> None:
    # the config loader catches ValueError from limits_from_mapping; the family is the machines'
    for error in (RiskLimitError, RateClockError):
        assert issubclass(error, ValueError)
        assert issubclass(error, RiskError)
    assert issubclass(RiskError, StateMachineError)


def test_reduce_only_must_be_a_bool() -> None:
    with pytest.raises(RiskLimitError, match="reduce_only must be true, false or None"):
        InstrumentLimits(reduce_only=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["max_open_orders", "orders_per_second", "orders_per_minute", "cancels_per_second"])
@pytest.mark.parametrize("value", [0, -1, True, 1.0, D(3)])
def test_count_limits_refuse_bad_values(name: str, value: object) -> None:
    with pytest.raises(RiskLimitError, match=f"^{name} must be a positive int"):
        Limits(**{name: value})  # type: ignore[arg-type]


def test_limits_refuse_bad_gross_defaults_and_overrides() -> None:
    with pytest.raises(RiskLimitError, match=r"^max_gross_exposure "):
        Limits(max_gross_exposure=1.0)  # type: ignore[arg-type]
    with pytest.raises(RiskLimitError, match="defaults must be InstrumentLimits"):
        Limits({"max_order_qty": 1})  # type: ignore[arg-type]
    with pytest.raises(RiskLimitError, match="per_instrument keys must be instrument names"):
        Limits(per_instrument={"": InstrumentLimits()})
    with pytest.raises(RiskLimitError, match=r"per_instrument\['BTCUSDT'\] must be InstrumentLimits"):
        Limits(per_instrument={BTC: {"max_order_qty": 1}})  # type: ignore[dict-item]
    assert Limits(max_gross_exposure=10).max_gross_exposure == D(10)  # type: ignore[arg-type]


def test_per_instrument_overrides_field_by_field() -> None:
    defaults = InstrumentLimits(max_order_qty=D(5), tick_size=D("0.5"), reduce_only=True)
    override = InstrumentLimits(max_order_qty=D(2), reduce_only=False)
    source = {BTC: override}
    limits = Limits(defaults, source)
    source[ETH] = override  # the limits took a copy
    btc = limits.for_instrument(BTC)
    assert (btc.max_order_qty, btc.tick_size, btc.reduce_only) == (D(2), D("0.5"), False)
    assert limits.for_instrument(ETH) is defaults
    assert ETH not in limits.per_instrument
    with pytest.raises(TypeError):
        limits.per_instrument[ETH] = override  # type: ignore[index]
    # and the checks use the merged limits
    assert denied(new(limits, "3", "100"), "max_order_qty").endswith("max_order_qty 2 (BTCUSDT)")
    assert new(limits, "3", "100", instrument=ETH, side="sell", on=view({ETH: D(10)})) is None


def test_limits_replace_recomputes_the_merge() -> None:
    limits = Limits(per_instrument={BTC: InstrumentLimits(max_order_qty=D(2))})
    changed = dataclasses.replace(limits, defaults=InstrumentLimits(lot_size=D(1)))
    assert changed.for_instrument(BTC) == InstrumentLimits(max_order_qty=D(2), lot_size=D(1))


# -- config mapping -----------------------------------------------------------------------------


def test_limits_from_mapping() -> None:
    raw = {
        "max_gross_exposure": D(250000),
        "max_open_orders": 20,
        "orders_per_second": 5,
        "orders_per_minute": 120,
        "cancels_per_second": 10,
        "max_order_qty": D(1),
        "price_collar_bps": 200,
        "reduce_only": False,
        "instruments": {BTC: {"max_order_qty": D("0.5"), "tick_size": D("0.01")}, ETH: {}},
    }
    limits = limits_from_mapping(raw)
    assert limits == Limits(
        InstrumentLimits(max_order_qty=D(1), price_collar_bps=D(200), reduce_only=False),
        {BTC: InstrumentLimits(max_order_qty=D("0.5"), tick_size=D("0.01")), ETH: InstrumentLimits()},
        max_gross_exposure=D(250000),
        max_open_orders=20,
        orders_per_second=5,
        orders_per_minute=120,
        cancels_per_second=10,
    )
    assert limits_from_mapping({}) == Limits()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"max_qty": 1}, r"^risk\.max_qty: unknown risk limit \(known: "),
        ({"instruments": [1]}, r"^risk\.instruments must be a table"),
        ({"instruments": {BTC: 1}}, r"^risk\.instruments\.BTCUSDT must be a table"),
        ({"instruments": {BTC: {"max_open_orders": 1}}}, r"^risk\.instruments\.BTCUSDT\.max_open_orders: unknown"),
        ({"instruments": {BTC: {"lot_size": 0}}}, r"^risk\.instruments\.BTCUSDT\.lot_size must be positive"),
        ({"tick_size": 0.1}, r"^risk\.tick_size must be a decimal number"),
        ({"orders_per_second": 0}, r"^risk\.orders_per_second must be a positive int"),
    ],
)
def test_limits_from_mapping_names_the_bad_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(RiskLimitError, match=message):
        limits_from_mapping(raw)


def test_stop_and_loss_limit_keys_from_mapping() -> None:
    raw = {
        "daily_loss_limit": 5000,
        "max_drawdown": D("8000.5"),
        "stop_loss_bps": 100,
        "trailing_stop_bps": D("150"),
        "instruments": {BTC: {"stop_loss_bps": D("50")}, ETH: {"trailing_stop_bps": 25}},
    }
    limits = limits_from_mapping(raw)
    assert (limits.daily_loss_limit, limits.max_drawdown) == (D(5000), D("8000.5"))
    assert type(limits.daily_loss_limit) is Decimal
    btc, eth, other = (limits.for_instrument(name) for name in (BTC, ETH, "SOLUSDT"))
    assert (btc.stop_loss_bps, btc.trailing_stop_bps) == (D(50), D(150))
    assert (eth.stop_loss_bps, eth.trailing_stop_bps) == (D(100), D(25))
    assert (other.stop_loss_bps, other.trailing_stop_bps) == (D(100), D(150))
    assert Limits().daily_loss_limit is None
    assert InstrumentLimits().stop_loss_bps is None


@pytest.mark.parametrize("value", [0, -1, D(0), D("-0.01"), 1.5, True, "100", D("NaN"), D("Infinity")])
@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (lambda v: {"stop_loss_bps": v}, "risk.stop_loss_bps"),
        (lambda v: {"trailing_stop_bps": v}, "risk.trailing_stop_bps"),
        (lambda v: {"instruments": {BTC: {"stop_loss_bps": v}}}, "risk.instruments.BTCUSDT.stop_loss_bps"),
        (lambda v: {"instruments": {BTC: {"trailing_stop_bps": v}}}, "risk.instruments.BTCUSDT.trailing_stop_bps"),
        (lambda v: {"daily_loss_limit": v}, "risk.daily_loss_limit"),
        (lambda v: {"max_drawdown": v}, "risk.max_drawdown"),
    ],
)
def test_stop_and_loss_limit_keys_must_be_positive_decimals(raw: Any, name: str, value: object) -> None:
    with pytest.raises(RiskLimitError, match="^" + name.replace(".", r"\.") + " must be"):
        limits_from_mapping(raw(value))


@pytest.mark.parametrize("key", ["daily_loss_limit", "max_drawdown"])
def test_loss_limits_are_kernel_wide_not_per_instrument(key: str) -> None:
    with pytest.raises(RiskLimitError, match=f"^risk\\.instruments\\.BTCUSDT\\.{key}: unknown instrument limit"):
        limits_from_mapping({"instruments": {BTC: {key: 1}}})


def test_stop_keys_do_not_change_the_order_checks() -> None:
    limits = limits_from_mapping({"stop_loss_bps": 1, "trailing_stop_bps": 1, "daily_loss_limit": 1, "max_drawdown": 1})
    assert new(limits, "1000", "100") is None
    assert new(limits, "1000", None, order_type="market", side="sell", on=view({BTC: D(-5)})) is None


# -- trading state and reduce-only --------------------------------------------------------------


@pytest.mark.parametrize("state", ["halting", "halted"])
def test_halting_and_halted_deny_new_orders_and_replaces_but_allow_cancels(state: str) -> None:
    on = view(state=state)
    reason = denied(new(Limits(), on=on), "trading_state")
    assert reason == f"trading state is {state}: new orders and replaces are refused"
    assert denied(replace(Limits(), Working(), qty="1", on=on), "trading_state") == reason
    # cancels pass even with the cancel rate exhausted
    rates = Rates().record_cancel(0, Limits(cancels_per_second=1))
    assert check_cancel(on, Limits(cancels_per_second=1), 0, rates) is None


def test_an_unknown_trading_state_denies() -> None:
    on = view(state="paused")
    assert denied(new(Limits(), on=on), "trading_state") == (
        "unknown trading state 'paused': new orders and replaces are refused"
    )
    assert denied(replace(Limits(), Working(), price="101", on=on), "trading_state").startswith("unknown")


REDUCING_CASES = [
    # (position, side, qty, open orders, passes)
    (D(2), "sell", "1", [], True),  # reducing a long
    (D(2), "sell", "2", [], True),  # exactly to flat
    (D(2), "sell", "1", [OpenOrder(BTC, "sell", D(1))], True),  # with the open sell: to flat
    (D(2), "sell", "3", [], False),  # past flat: a flip
    (D(2), "sell", "2", [OpenOrder(BTC, "sell", D(1))], False),  # the open sell takes it past flat
    (D(2), "sell", "1", [OpenOrder(BTC, "sell", D(1)), OpenOrder(ETH, "sell", D(5))], True),  # ETH not counted
    (D(2), "buy", "1", [], False),  # adding to a long
    (D(0), "buy", "1", [], False),  # flat: nothing to reduce
    (D(0), "sell", "1", [], False),
    (D(-2), "buy", "2", [OpenOrder(BTC, "sell", D(9))], True),  # reducing a short; open sells do not count
    (D(-2), "buy", "1", [OpenOrder(BTC, "buy", D("1.5"))], False),
    (D(-2), "sell", "1", [], False),  # adding to a short
]


@pytest.mark.parametrize(("position", "side", "qty", "opens", "passes"), REDUCING_CASES)
def test_reducing_state_passes_only_reducing_orders(
    position: Decimal, side: str, qty: str, opens: list[OpenOrder], passes: bool
) -> None:
    result = new(Limits(), qty, side=side, on=view({BTC: position}, opens, state="reducing"))
    if passes:
        assert result is None
    else:
        assert denied(result, "trading_state").startswith("trading state is reducing: ")


@pytest.mark.parametrize(("position", "side", "qty", "opens", "passes"), REDUCING_CASES)
def test_reduce_only_passes_only_reducing_orders(
    position: Decimal, side: str, qty: str, opens: list[OpenOrder], passes: bool
) -> None:
    result = new(only(reduce_only=True), qty, side=side, on=view({BTC: position}, opens))
    if passes:
        assert result is None
    else:
        assert denied(result, "reduce_only").startswith("reduce-only: ")


def test_reduce_only_reasons() -> None:
    limits = only(reduce_only=True)
    assert denied(new(limits, "1", on=view({BTC: D(2)})), "reduce_only") == (
        "reduce-only: buy 1 would not reduce the position 2 (BTCUSDT)"
    )
    assert denied(new(limits, "3", side="sell", on=view({BTC: D(2)})), "reduce_only") == (
        "reduce-only: sell 3 with open sells 0 could take the position 2 past flat to -1 (BTCUSDT)"
    )
    opens = [OpenOrder(BTC, "buy", D(1))]
    assert denied(new(limits, "2", on=view({BTC: D(-2)}, opens)), "reduce_only") == (
        "reduce-only: buy 2 with open buys 1 could take the position -2 past flat to 1 (BTCUSDT)"
    )
    assert denied(new(limits, "1", side="sell", on=view({BTC: D(-2)})), "reduce_only") == (
        "reduce-only: sell 1 would not reduce the position -2 (BTCUSDT)"
    )


def test_reduce_only_per_instrument_and_switched_off_by_an_override() -> None:
    limits = Limits(InstrumentLimits(reduce_only=True), {ETH: InstrumentLimits(reduce_only=False)})
    assert new(limits, instrument=ETH, on=view(refs={ETH: D(100)})) is None
    denied(new(limits), "reduce_only")
    assert new(Limits(per_instrument={ETH: InstrumentLimits(reduce_only=True)})) is None


# -- the shape of the intent --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"side": "long"}, "side must be buy or sell, got 'long'"),
        ({"qty": "0"}, "qty must be positive, got 0"),
        ({"qty": "-1"}, "qty must be positive, got -1"),
        ({"order_type": "stop"}, "order type must be limit or market, got 'stop'"),
        ({"price": None}, "a limit order needs a positive price, got None"),
        ({"price": "0"}, "a limit order needs a positive price, got 0"),
    ],
)
def test_malformed_intents_are_denied(kw: dict[str, Any], reason: str) -> None:
    assert denied(new(Limits(), **kw), "intent") == reason


def test_a_market_order_ignores_its_price() -> None:
    limits = only(tick_size=D(1), price_collar_bps=D(1))
    assert new(limits, "1", "100.5", order_type="market") is None
    assert new(limits, "1", None, order_type="market", on=view(refs={})) is None


# -- order checks at, under and over ------------------------------------------------------------


@pytest.mark.parametrize(("qty", "passes"), [("4.999", True), ("5", True), ("5.001", False)])
def test_max_order_qty(qty: str, passes: bool) -> None:
    result = new(only(max_order_qty=D(5)), qty)
    if passes:
        assert result is None
    else:
        assert denied(result, "max_order_qty") == "order qty 5.001 exceeds max_order_qty 5 (BTCUSDT)"


@pytest.mark.parametrize(("qty", "passes"), [("0.002", True), ("0.0025", False), ("1", True), ("0.0019", False)])
def test_lot_size(qty: str, passes: bool) -> None:
    result = new(only(lot_size=D("0.001")), qty)
    if passes:
        assert result is None
    else:
        assert denied(result, "lot_size") == f"order qty {qty} is not a multiple of lot_size 0.001 (BTCUSDT)"


@pytest.mark.parametrize(("price", "passes"), [("100.5", True), ("100", True), ("100.25", False), ("99.9", False)])
def test_tick_size(price: str, passes: bool) -> None:
    result = new(only(tick_size=D("0.5")), "1", price)
    if passes:
        assert result is None
    else:
        assert denied(result, "tick_size") == f"price {price} is not a multiple of tick_size 0.5 (BTCUSDT)"


def test_a_price_too_far_from_its_step_is_not_a_multiple() -> None:
    # 1e30 / 1e-8 has more digits than the context holds: refused, never raised
    assert denied(new(only(tick_size=D("1e-8")), "1", "1e30"), "tick_size").startswith("price 1000000")
    assert denied(new(only(lot_size=D("1e-8")), "1e30", "100"), "lot_size").startswith("order qty 1000000")


@pytest.mark.parametrize(
    ("price", "passes"),
    [("102", True), ("101.99", True), ("102.01", False), ("98", True), ("97.99", False), ("100", True)],
)
def test_price_collar(price: str, passes: bool) -> None:
    result = new(only(price_collar_bps=D(200)), "1", price)
    if passes:
        assert result is None
    else:
        assert denied(result, "price_collar") == (
            f"limit price {price} is more than 200 bps from the reference price 100 (allowed 98 to 102) (BTCUSDT)"
        )


def test_price_collar_without_a_reference_denies_only_when_configured() -> None:
    no_ref = view(refs={})
    assert denied(new(only(price_collar_bps=D(50)), on=no_ref), "price_collar") == (
        "no reference price for the collar (BTCUSDT)"
    )
    assert new(Limits(), on=no_ref) is None
    assert new(only(price_collar_bps=D(50)), "1", "100", order_type="market", on=no_ref) is None


@pytest.mark.parametrize(("qty", "passes"), [("399.99", True), ("400", True), ("400.01", False)])
def test_max_order_notional(qty: str, passes: bool) -> None:
    result = new(only(max_order_notional=D(40000)), qty, "100")
    if passes:
        assert result is None
    else:
        assert denied(result, "max_order_notional") == (
            "order notional 40001.00 exceeds max_order_notional 40000 (BTCUSDT)"
        )


def test_max_order_notional_reason_as_in_the_issue() -> None:
    reason = denied(new(only(max_order_notional=D(40000)), "0.5", "80247"), "max_order_notional")
    assert reason == "order notional 40123.5 exceeds max_order_notional 40000 (BTCUSDT)"


@pytest.mark.parametrize(("qty", "passes"), [("0.05", True), ("0.051", True), ("0.049", False)])
def test_min_notional(qty: str, passes: bool) -> None:
    result = new(only(min_notional=D(5)), qty, "100")
    if passes:
        assert result is None
    else:
        assert denied(result, "min_notional") == "order notional 4.900 is below min_notional 5 (BTCUSDT)"


def test_market_orders_are_valued_at_the_reference_price() -> None:
    limits = only(max_order_notional=D(1000), min_notional=D(10))
    on = view(refs={BTC: D(250)})
    assert new(limits, "4", None, order_type="market", on=on) is None
    assert denied(new(limits, "4.01", None, order_type="market", on=on), "max_order_notional") == (
        "order notional 1002.50 (at the reference price 250) exceeds max_order_notional 1000 (BTCUSDT)"
    )
    assert denied(new(limits, "0.03", "9999", order_type="market", on=on), "min_notional") == (
        "order notional 7.50 (at the reference price 250) is below min_notional 10 (BTCUSDT)"
    )
    # the limit price would have passed: the market order is valued at the reference
    assert new(limits, "0.03", "9999") is None


@pytest.mark.parametrize(
    ("limits", "check"),
    [(only(max_order_notional=D(1)), "max_order_notional"), (only(min_notional=D(1)), "min_notional")],
)
def test_market_order_without_a_reference_cannot_be_valued(limits: Limits, check: str) -> None:
    result = new(limits, "1", None, order_type="market", on=view(refs={}))
    assert denied(result, check) == "no reference price to value a market order (BTCUSDT)"


def test_decimal_exactness() -> None:
    # in binary floats 0.1 * 3 > 0.3, 0.3 % 0.1 != 0 and 0.2 + 0.1 > 0.3: Decimal gets each exactly
    assert 0.1 * 3 > 0.3
    assert 0.2 + 0.1 > 0.3
    assert new(only(max_order_notional=D("0.3")), "3", "0.1") is None
    assert new(only(lot_size=D("0.1"), tick_size=D("0.1")), "0.3", "0.3") is None
    assert new(only(max_position=D("0.3")), "0.1", on=view({BTC: D("0.2")})) is None
    denied(new(only(max_position=D("0.3")), "0.1", on=view({BTC: D("0.2000000000000000000001")})), "max_position")


# -- positions and exposure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "side", "qty", "opens", "passes"),
    [
        (D(3), "buy", "2", [OpenOrder(BTC, "buy", D(1))], True),  # 3 + 1 + 2 = 6
        (D(3), "buy", "2.001", [OpenOrder(BTC, "buy", D(1))], False),
        (D(3), "buy", "1.999", [OpenOrder(BTC, "buy", D(1))], True),
        (D(3), "buy", "2", [OpenOrder(BTC, "sell", D(5)), OpenOrder(ETH, "buy", D(5))], True),  # others ignored
        (D(-3), "sell", "2", [OpenOrder(BTC, "sell", D(1))], True),  # -(-3 - 1 - 2) = 6
        (D(-3), "sell", "2.001", [OpenOrder(BTC, "sell", D(1))], False),
        (D(3), "sell", "9", [], True),  # -(3 - 9) = 6
        (D(3), "sell", "9.001", [], False),
        (D(10), "sell", "1", [], True),  # above the limit already: reducing passes
        (D(-10), "buy", "1", [], True),
        (D(10), "buy", "0.001", [], False),
    ],
)
def test_max_position(position: Decimal, side: str, qty: str, opens: list[OpenOrder], passes: bool) -> None:
    result = new(only(max_position=D(6)), qty, side=side, on=view({BTC: position}, opens))
    if passes:
        assert result is None
    else:
        assert denied(result, "max_position").endswith("exceeds max_position 6 (BTCUSDT)")


def test_max_position_reason() -> None:
    on = view({BTC: D(3)}, [OpenOrder(BTC, "buy", D(1))])
    assert denied(new(only(max_position=D(5)), "2", on=on), "max_position") == (
        "worst-case position 6 (position 3, open buys 1, this buy 2) exceeds max_position 5 (BTCUSDT)"
    )
    on = view({BTC: D(-3)}, [OpenOrder(BTC, "sell", D(1))])
    assert denied(new(only(max_position=D(5)), "2", side="sell", on=on), "max_position") == (
        "worst-case position -6 (position -3, open sells 1, this sell 2) exceeds max_position 5 (BTCUSDT)"
    )


def gross(limit: str, **kw: Any) -> Limits:
    return Limits(max_gross_exposure=D(limit), **kw)


REFS = {BTC: D(100), ETH: D(10)}


@pytest.mark.parametrize(("qty", "passes"), [("4", True), ("3.99", True), ("4.01", False)])
def test_max_gross_exposure(qty: str, passes: bool) -> None:
    # worst cases: BTC 1 + 1 open + qty at 100; ETH max(|-10 + 0|, |-10 - 5|) = 15 at 10
    opens = [OpenOrder(BTC, "buy", D(1)), OpenOrder(ETH, "sell", D(5)), OpenOrder(ETH, "buy", D(3))]
    on = view({BTC: D(1), ETH: D(-10)}, opens, REFS)
    result = new(gross("750"), qty, on=on)
    if passes:
        assert result is None
    else:
        assert denied(result, "max_gross_exposure") == (
            "worst-case gross exposure 751.00 exceeds max_gross_exposure 750 (buy 4.01 BTCUSDT)"
        )


def test_gross_exposure_lets_an_order_through_that_does_not_raise_the_worst_case() -> None:
    # above the limit already; BTC's worst case is the long side (2 + 3 open buys): a sell of 4 does not raise it
    on = view({BTC: D(2), ETH: D(100)}, [OpenOrder(BTC, "buy", D(3))], REFS)
    assert new(gross("10"), "4", side="sell", on=on) is None
    # a sell of 8 takes the short side to |2 - 8| = 6 > 5: raises it
    assert denied(new(gross("10"), "8", side="sell", on=on), "max_gross_exposure").startswith(
        "worst-case gross exposure 1600"
    )


def test_gross_exposure_counts_instruments_with_only_open_orders_and_skips_flat_ones() -> None:
    on = view({BTC: D(0), ETH: D(0)}, [OpenOrder(ETH, "buy", D(10)), OpenOrder("SOLUSDT", "sell", D(0))], REFS)
    assert new(gross("200"), "1", on=on) is None  # 100 + 100
    denied(new(gross("199.99"), "1", on=on), "max_gross_exposure")


def test_gross_exposure_needs_a_reference_for_every_exposed_instrument() -> None:
    on = view({BTC: D(1), ETH: D(1)}, [], {BTC: D(100)})
    assert denied(new(gross("1000000"), "1", on=on), "max_gross_exposure") == (
        "no reference price for ETHUSDT to value the gross exposure"
    )
    on = view({}, [OpenOrder(ETH, "buy", D(1))], {})
    # the open ETH order is named first: the instrument of the order comes after positions and books
    assert denied(new(gross("1000000"), "1", on=on), "max_gross_exposure") == (
        "no reference price for ETHUSDT to value the gross exposure"
    )


def test_gross_exposure_shares_the_book_with_the_position_checks() -> None:
    limits = Limits(InstrumentLimits(max_position=D(5), reduce_only=True), max_gross_exposure=D(1000))
    on = view({BTC: D(-4)}, [OpenOrder(BTC, "buy", D(1)), OpenOrder(ETH, "buy", D(1))], REFS)
    assert new(limits, "3", on=on) is None
    denied(new(limits, "3.01", on=on), "reduce_only")
    assert new(Limits(only(max_position=D(5)).defaults, max_gross_exposure=D(1000)), "8", on=on) is None
    denied(new(Limits(only(max_position=D(5)).defaults, max_gross_exposure=D(1000)), "8.01", on=on), "max_position")


@pytest.mark.parametrize(("count", "passes"), [(3, True), (4, False), (5, False)])
def test_max_open_orders(count: int, passes: bool) -> None:
    on = view(open_orders=[OpenOrder(ETH, "buy", D(1))] * count)
    result = new(Limits(max_open_orders=4), on=on)
    if passes:
        assert result is None
    else:
        assert denied(result, "max_open_orders") == f"{count} open orders and this one exceed max_open_orders 4"


# -- rates --------------------------------------------------------------------------------------


def test_rate_window_edges_on_a_fake_clock() -> None:
    window = RateWindow(1000).record(0)
    assert window.count(0) == 1
    assert window.count(999) == 1
    assert window.count(1000) == 0
    assert not window.allows(999, 1)
    assert window.allows(1000, 1)
    assert window.allows(999, 2)
    later = window.record(500).record(1000)
    assert later.times == (500, 1000)  # 0 expired at 1000
    assert later.count(1499) == 2
    assert later.count(1500) == 1
    assert window.times == (0,)  # immutable


def test_rate_window_refuses_time_going_backwards() -> None:
    with pytest.raises(RateClockError, match="now_ms 4 is before the last recorded event 5"):
        RateWindow(1000).record(5).record(4)
    assert RateWindow(1000).record(5).record(5).times == (5, 5)


def test_rates_record_only_windows_whose_limit_is_on() -> None:
    rates = Rates()
    assert rates.record_order(7, Limits()) == rates
    assert rates.record_cancel(7, Limits()) is rates
    both = rates.record_order(7, Limits(orders_per_second=1, orders_per_minute=1, cancels_per_second=1))
    assert (both.orders_second.times, both.orders_minute.times, both.cancels_second.times) == ((7,), (7,), ())
    minute = rates.record_order(7, Limits(orders_per_minute=1))
    assert (minute.orders_second.times, minute.orders_minute.times) == ((), (7,))
    cancels = both.record_cancel(8, Limits(cancels_per_second=3))
    assert cancels.cancels_second.times == (8,)
    assert cancels.orders_second is both.orders_second


def test_orders_per_second_at_the_edges() -> None:
    limits = Limits(orders_per_second=2)
    rates = Rates()
    for now in (0, 10):
        assert new(limits, now_ms=now, rates=rates) is None
        rates = rates.record_order(now, limits)
    assert denied(new(limits, now_ms=999, rates=rates), "orders_per_second") == (
        "order rate limit reached: 2 orders in the last second (orders_per_second)"
    )
    assert new(limits, now_ms=1000, rates=rates) is None


def test_orders_per_minute_at_the_edges() -> None:
    limits = Limits(orders_per_minute=3, orders_per_second=100)
    rates = Rates()
    for now in (0, 20_000, 40_000):
        assert new(limits, now_ms=now, rates=rates) is None
        rates = rates.record_order(now, limits)
    assert denied(new(limits, now_ms=59_999, rates=rates), "orders_per_minute") == (
        "order rate limit reached: 3 orders in the last minute (orders_per_minute)"
    )
    assert new(limits, now_ms=60_000, rates=rates) is None


@pytest.mark.parametrize("state", ["active", "reducing"])
def test_cancel_rate_applies_while_active_or_reducing(state: str) -> None:
    limits = Limits(cancels_per_second=2)
    on = view(state=state)
    rates = Rates()
    assert check_cancel(on, Limits(), 0, rates.record_cancel(0, limits).record_cancel(0, limits)) is None
    for now in (0, 500):
        assert check_cancel(on, limits, now, rates) is None
        rates = rates.record_cancel(now, limits)
    result = check_cancel(on, limits, 999, rates)
    assert result == Denial(
        "cancels_per_second", "cancel rate limit reached: 2 cancels in the last second (cancels_per_second)"
    )
    assert check_cancel(on, limits, 1000, rates) is None
    # cancels do not count against order rates, nor orders against cancels
    assert new(Limits(orders_per_second=1, cancels_per_second=1), now_ms=999, rates=rates) is None


# -- replaces -----------------------------------------------------------------------------------


def test_replace_intent_shape() -> None:
    order = Working()
    assert denied(replace(Limits(), order), "intent") == "a replace needs a new qty or price"
    assert denied(replace(Limits(), order, qty="0"), "intent") == "qty must be positive, got 0"
    assert denied(replace(Limits(), order, price="-1"), "intent") == "price must be positive, got -1"
    market = Working(order_type="market", price=None)
    assert denied(replace(Limits(), market, price="10"), "intent") == "a market order has no price to replace"
    assert replace(Limits(), market, qty="1") is None


def test_replace_checks_the_new_terms() -> None:
    order = Working()
    limits = only(max_order_qty=D(3), tick_size=D("0.5"), max_order_notional=D(300), lot_size=D(1))
    assert replace(limits, order, qty="3") is None
    assert denied(replace(limits, order, qty="4"), "max_order_qty").startswith("order qty 4 exceeds")
    assert denied(replace(limits, order, qty="2.5"), "lot_size")
    assert denied(replace(limits, order, price="100.2"), "tick_size")
    assert denied(replace(limits, order, price="151"), "max_order_notional") == (
        "order notional 302 exceeds max_order_notional 300 (BTCUSDT)"
    )


def test_replace_applies_the_collar_only_to_a_new_price() -> None:
    order = Working(price=D(150))  # the market moved away since it was placed
    limits = only(price_collar_bps=D(100))
    assert replace(limits, order, qty="1") is None
    assert replace(limits, order, qty="1", price="150") is None  # same price: no change
    assert denied(replace(limits, order, price="140"), "price_collar")
    assert replace(limits, order, price="101") is None


def test_replace_counts_only_the_change_in_leaves() -> None:
    order = Working(qty=D(4), cum_qty=D(1), leaves_qty=D(3))
    on = view({BTC: D(2)}, [order.open(), OpenOrder(BTC, "buy", D(1))])
    limits = only(max_position=D(8))
    # worst case now 2 + 3 + 1 = 6; qty 6 makes leaves 5: 2 + 5 + 1 = 8
    assert replace(limits, order, qty="6", on=on) is None
    assert denied(replace(limits, order, qty="6.5", on=on), "max_position") == (
        "worst-case position 8.5 (position 2, open buys 4, this buy 2.5) exceeds max_position 8 (BTCUSDT)"
    )
    # shrinking passes even above a lowered limit
    assert replace(only(max_position=D(1)), order, qty="2", on=on) is None
    # at or below cum_qty: no leaves left
    assert replace(only(max_position=D(1)), order, qty="1", on=on) is None


def test_replace_in_reducing_state() -> None:
    order = Working(side="sell", qty=D(2), leaves_qty=D(2))
    on = view({BTC: D(1)}, [order.open()], state="reducing")  # the sell could flip: placed before reducing
    assert replace(Limits(), order, qty="1", on=on) is None  # only lowers the quantity
    assert replace(Limits(), order, qty="1", price="99", on=on) is None  # within flat with the new price
    denied(replace(Limits(), order, price="99", on=on), "trading_state")  # keeps the flip, moves the price
    denied(replace(Limits(), order, qty="3", on=on), "trading_state")


def test_replace_does_not_add_an_open_order_but_counts_rates() -> None:
    order = Working()
    on = view(open_orders=[order.open()])
    assert replace(Limits(max_open_orders=1), order, qty="1", on=on) is None
    limits = Limits(orders_per_second=1)
    rates = Rates().record_order(0, limits)
    denied(replace(limits, order, qty="1", on=on, rates=rates, now_ms=999), "orders_per_second")


def test_replace_gross_exposure() -> None:
    order = Working(leaves_qty=D(1), qty=D(1))
    on = view({BTC: D(1)}, [order.open()], REFS)
    assert replace(gross("300"), order, qty="2", on=on) is None
    denied(replace(gross("300"), order, qty="2.01", on=on), "max_gross_exposure")


# -- properties ---------------------------------------------------------------------------------

decimals = st.decimals(min_value=D("-1e6"), max_value=D("1e6"), places=4, allow_nan=False, allow_infinity=False)
positives = st.decimals(min_value=D("0.0001"), max_value=D("1e6"), places=4, allow_nan=False, allow_infinity=False)
maybe = st.none() | positives
instruments = st.sampled_from([BTC, ETH, "SOLUSDT"])
instrument_limits = st.builds(
    InstrumentLimits,
    max_order_qty=maybe,
    max_order_notional=maybe,
    min_notional=maybe,
    price_collar_bps=maybe,
    max_position=maybe,
    tick_size=maybe,
    lot_size=maybe,
    reduce_only=st.none() | st.booleans(),
    stop_loss_bps=maybe,
    trailing_stop_bps=maybe,
)
counts = st.none() | st.integers(1, 5)
limit_values = st.builds(
    Limits,
    defaults=instrument_limits,
    per_instrument=st.dictionaries(instruments, instrument_limits, max_size=2),
    max_gross_exposure=maybe,
    max_open_orders=counts,
    orders_per_second=counts,
    orders_per_minute=counts,
    cancels_per_second=counts,
    daily_loss_limit=maybe,
    max_drawdown=maybe,
)
views = st.builds(
    RiskView,
    positions=st.dictionaries(instruments, decimals, max_size=3),
    open_orders=st.lists(st.builds(OpenOrder, instruments, st.sampled_from(["buy", "sell"]), positives), max_size=6),
    reference_price=st.dictionaries(instruments, positives, max_size=3),
    trading_state=st.sampled_from([*TRADING_STATES, "unknown"]),
)


@st.composite
def rate_values(draw: st.DrawFn) -> tuple[Rates, int]:
    times = sorted(draw(st.lists(st.integers(0, 120_000), max_size=8)))
    rates = Rates()
    everything = Limits(orders_per_second=1, orders_per_minute=1, cancels_per_second=1)
    for t in times:
        rates = rates.record_order(t, everything).record_cancel(t, everything)
    return rates, (times[-1] if times else 0) + draw(st.integers(0, 70_000))


@settings(max_examples=300, deadline=None)
@given(
    instrument=instruments,
    side=st.sampled_from(["buy", "sell"]),
    qty=positives,
    price=maybe,
    order_type=st.sampled_from(["limit", "market"]),
    on=views,
    limits=limit_values,
    clock=rate_values(),
)
def test_check_new_never_raises_and_is_deterministic(
    instrument: str,
    side: str,
    qty: Decimal,
    price: Decimal | None,
    order_type: str,
    on: RiskView,
    limits: Limits,
    clock: tuple[Rates, int],
) -> None:
    rates, now = clock
    terms = OrderTerms(instrument, side, qty, price, order_type)  # type: ignore[arg-type]
    first = check_new(terms, on, limits, now, rates)
    assert first == check_new(terms, on, limits, now, rates)
    if first is not None:
        assert first.check in NAMES
        assert first.reason
    if on.trading_state in ("halting", "halted", "unknown"):
        assert first is not None
        assert first.check == "trading_state"
    if first is None and limits.max_open_orders is not None:
        assert len(on.open_orders) < limits.max_open_orders
    cancel = check_cancel(on, limits, now, rates)
    if on.trading_state in ("halting", "halted"):
        assert cancel is None


@settings(max_examples=200, deadline=None)
@given(on=views, limits=limit_values, qty=maybe, price=maybe, clock=rate_values(), working=st.data())
def test_check_replace_never_raises(
    on: RiskView,
    limits: Limits,
    qty: Decimal | None,
    price: Decimal | None,
    clock: tuple[Rates, int],
    working: st.DataObject,
) -> None:
    order_qty = working.draw(positives)
    cum_qty = working.draw(st.decimals(min_value=0, max_value=order_qty, places=4))
    order = Working(
        instrument=working.draw(instruments),
        side=working.draw(st.sampled_from(["buy", "sell"])),
        qty=order_qty,
        cum_qty=cum_qty,
        leaves_qty=order_qty - cum_qty,
        order_type=working.draw(st.sampled_from(["limit", "market"])),
    )
    result = check_replace(order, qty, price, on, limits, clock[1], clock[0])
    assert result is None or result.check in NAMES


# -- docs and the sans-I/O rule -----------------------------------------------------------------


def test_checks_table() -> None:
    assert len(NAMES) == len(CHECKS)
    assert {c.key for c in CHECKS if c.key} == {*risk_module.INSTRUMENT_KEYS, *risk_module.KERNEL_KEYS}
    lines = checks_markdown().splitlines()
    assert lines[:2] == ["| check | limits | config key | scope | example |", "| --- | --- | --- | --- | --- |"]
    assert len(lines) == len(CHECKS) + 2
    assert lines[2].startswith("| `trading_state` | ")
    assert lines[2].endswith(" | - | kernel | - |")
    assert (
        "| `max_order_qty` | the quantity of one order | `max_order_qty` | instrument | `max_order_qty = 2` |" in lines
    )


def test_checks_markdown_escapes_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(risk_module, "CHECKS", (RiskCheck("x", "a | b\nc", "", "", ""),))
    assert checks_markdown().splitlines()[2] == "| `x` | a \\| b c | - | - | - |"


def test_docs_hold_the_checks_table_verbatim() -> None:
    page = DOCS.read_text(encoding="utf-8")
    assert checks_markdown() in page, "docs/risk.md: paste checks_markdown() output (the checks changed)"


def test_the_modules_are_sans_io() -> None:
    assert [path.name for path in SOURCES] == [
        "risk.py",
        "risk_backoff.py",
        "risk_checks.py",
        "risk_limits.py",
        "risk_rates.py",
    ]
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        imported = {
            alias.name
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        stdlib = {"__future__", "bisect", "collections.abc", "dataclasses", "decimal", "types", "typing"}
        ours = {"machines.decimals", "machines.errors", "machines.order_terms"} | {
            f"machines.{path.stem}" for path in SOURCES
        }
        assert imported <= stdlib | ours, source.name
        assert "float(" not in text, source.name
