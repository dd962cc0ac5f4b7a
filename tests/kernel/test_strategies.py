"""The shipped strategies (``kernel.strategies``) and the strategy API's loading and params checks.

Pure unit tests: contexts are built by hand, callbacks are called directly, and the exact intents
(prices to the tick, sides, quantities, tags) are asserted. The code examples of
docs/strategies.md are executed here too.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import tomllib
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kernel.feed.events import QuoteEvent, TradeEvent
from kernel.strategies import ceil_to_tick, check_decimal, check_int, floor_to_tick
from kernel.strategies.market_maker import MarketMaker
from kernel.strategies.momentum import Momentum
from kernel.strategy import (
    BUILTIN,
    Cancel,
    Context,
    FillView,
    Intent,
    InvalidParams,
    MarketEvent,
    OrderUpdate,
    OrderView,
    Place,
    Replace,
    Strategy,
    StrategyError,
    build_params,
    load_strategy_class,
)
from machines import ORDER, Entity
from machines.positions import Position

D = Decimal
BTC = "BTCUSDT"
DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"


# -- helpers --------------------------------------------------------------------------------------


def quote(bid: str, ask: str, instrument: str = BTC) -> QuoteEvent:
    return QuoteEvent("paper", instrument, D(bid), D("1"), D(ask), D("1"), 0)


def trade(price: str, instrument: str = BTC, trade_id: str = "t") -> TradeEvent:
    return TradeEvent("paper", instrument, trade_id, D(price), D("0.1"), "buy", 0, "trade")


def order(
    client_order_id: str,
    side: str,
    price: str | None,
    *,
    tag: str = "",
    state: str = "accepted",
    qty: str = "0.001",
    cum_qty: str = "0",
    instrument: str = BTC,
) -> OrderView:
    return OrderView(
        client_order_id=client_order_id,
        instrument=instrument,
        side="buy" if side == "buy" else "sell",
        order_type="limit",
        tif="gtc",
        state=state,
        qty=D(qty),
        price=None if price is None else D(price),
        cum_qty=D(cum_qty),
        leaves_qty=D(qty) - D(cum_qty),
        avg_px=None,
        live=True,
        tag=tag,
    )


def context(
    *,
    now_ms: int = 1_000_000,
    allowed: bool = True,
    position: str | None = None,
    orders: Sequence[OrderView] = (),
    quotes: Sequence[QuoteEvent] = (),
    trades: Sequence[TradeEvent] = (),
    instrument: str = BTC,
) -> Context:
    positions = {} if position is None else {instrument: Position(instrument, qty=D(position))}
    return Context(
        now_ms=now_ms,
        trading_allowed=allowed,
        positions=positions,
        open_orders={o.client_order_id: o for o in orders},
        last_trade={t.instrument: t for t in trades},
        last_quote={q.instrument: q for q in quotes},
    )


def mm(**params: Any) -> MarketMaker:
    return MarketMaker(MarketMaker.Params(**params))


def bid(price: str, qty: str = "0.001") -> Place:
    return Place(BTC, "buy", D(qty), D(price), tag="bid")


def ask(price: str, qty: str = "0.001") -> Place:
    return Place(BTC, "sell", D(qty), D(price), tag="ask")


def fill_update(view: OrderView, qty: str = "0.001", price: str = "100000") -> OrderUpdate:
    return OrderUpdate(view, "fill", "accepted", FillView(D(qty), D(price), D(0), "x1"))


# -- helpers of kernel.strategies -----------------------------------------------------------------


def test_tick_rounding() -> None:
    assert floor_to_tick(D("99.999"), D("0.01")) == D("99.99")
    assert ceil_to_tick(D("99.991"), D("0.01")) == D("100.00")
    assert floor_to_tick(D("-0.001"), D("0.01")) == D("-0.01")
    assert floor_to_tick(D("10.7"), D("0.25")) == D("10.5")
    assert ceil_to_tick(D("10.7"), D("0.25")) == D("10.75")
    assert ceil_to_tick(D("10.75"), D("0.25")) == D("10.75")


def test_check_helpers() -> None:
    assert check_decimal("x", D("0")) == D("0")
    assert check_int("n", 3, minimum=2) == 3
    with pytest.raises(InvalidParams, match="n must be an integer"):
        check_int("n", True, minimum=0)
    with pytest.raises(InvalidParams, match="x must be a finite Decimal"):
        check_decimal("x", D("Infinity"))


# -- market_maker: quoting ------------------------------------------------------------------------


def test_first_quotes_around_mid() -> None:
    strategy = MarketMaker()
    intents = strategy.on_market(quote("99999", "100001"), context())
    assert intents == [bid("99950.00"), ask("100050.00")]
    first = intents[0]
    assert isinstance(first, Place)
    assert (first.order_type, first.tif, first.tag) == ("limit", "gtc", "bid")


def test_quotes_are_rounded_to_the_tick_outwards() -> None:
    # mid 100.005: bid 99.9549975 rounds down, ask 100.0550025 rounds up.
    intents = MarketMaker().on_market(quote("100.00", "100.01"), context())
    assert intents == [bid("99.95"), ask("100.06")]
    coarse = mm(tick_size=D("0.5"), spread_bps=D("0"))
    assert coarse.on_market(quote("100.10", "100.20"), context()) == [bid("100.0"), ask("100.5")]


def test_zero_spread_never_crosses() -> None:
    strategy = mm(spread_bps=D("0"))
    assert strategy.on_market(quote("99.99", "100.01"), context()) == [bid("100.00"), ask("100.01")]


def test_nothing_when_trading_not_allowed() -> None:
    strategy = MarketMaker()
    assert strategy.on_market(quote("99", "101"), context(allowed=False)) == []
    assert strategy.on_timer(context(allowed=False, quotes=[quote("99", "101")])) == []
    assert strategy.on_start(context(allowed=False, quotes=[quote("99", "101")])) == []


def test_nothing_without_a_mid() -> None:
    strategy = MarketMaker()
    assert strategy.on_timer(context()) == []
    assert strategy.on_start(context()) == []
    assert strategy.on_market(quote("0", "0"), context()) == []
    assert strategy.quote(context(), None) == []


def test_ignores_trades_and_other_instruments() -> None:
    strategy = MarketMaker()
    assert strategy.on_market(trade("100"), context()) == []
    assert strategy.on_market(quote("99", "101", instrument="ETHUSDT"), context()) == []


def test_timer_and_start_quote_from_the_last_quote() -> None:
    strategy = MarketMaker()
    assert MarketMaker.timer_interval_ms == 1000
    ctx = context(quotes=[quote("99999", "100001")])
    assert strategy.on_timer(ctx) == [bid("99950.00"), ask("100050.00")]
    assert strategy.on_start(ctx) == [bid("99950.00"), ask("100050.00")]


def test_resting_quotes_at_the_desired_prices_are_left_alone() -> None:
    orders = [order("b1", "buy", "99950.00", tag="bid"), order("a1", "sell", "100050.00", tag="ask")]
    assert MarketMaker().on_market(quote("99999", "100001"), context(orders=orders)) == []


@pytest.mark.parametrize("state", ["new", "pending_new", "pending_cancel", "pending_replace"])
def test_no_new_order_while_one_is_pending(state: str) -> None:
    # The bid rests far from the desired price, but waits for the venue: only the ask is placed.
    orders = [order("b1", "buy", "90000.00", tag="bid", state=state)]
    assert MarketMaker().on_market(quote("99999", "100001"), context(orders=orders)) == [ask("100050.00")]


def test_pending_order_of_either_side_blocks_only_that_side() -> None:
    orders = [
        order("b1", "buy", "99950.00", tag="bid", state="pending_replace"),
        order("a1", "sell", "100050.00", tag="ask", state="pending_new"),
    ]
    # Even at the inventory limit, a pending side is not canceled on top of its request.
    assert mm().on_market(quote("99999", "100001"), context(orders=orders, position="0.005")) == []


def test_replace_only_beyond_requote_bps() -> None:
    strategy = mm(spread_bps=D("0"))  # mid 10000.00: bid 10000.00, ask 10000.01; 2 bps of 10000 = 2.00
    ask_order = order("a1", "sell", "10000.01", tag="ask")
    at = [order("b1", "buy", "9998.00", tag="bid"), ask_order]
    assert strategy.on_market(quote("9999.99", "10000.01"), context(orders=at)) == []
    beyond = [order("b1", "buy", "9997.99", tag="bid"), ask_order]
    assert strategy.on_market(quote("9999.99", "10000.01"), context(orders=beyond)) == [
        Replace("b1", price=D("10000.00"))
    ]
    above = [order("b1", "buy", "10002.01", tag="bid"), ask_order]
    assert strategy.on_market(quote("9999.99", "10000.01"), context(orders=above)) == [
        Replace("b1", price=D("10000.00"))
    ]


def test_replace_an_ask_and_a_priceless_quote() -> None:
    orders = [order("b1", "buy", None, tag="bid"), order("a1", "sell", "100100.00", tag="ask")]
    assert MarketMaker().on_market(quote("99999", "100001"), context(orders=orders)) == [
        Replace("b1", price=D("99950.00")),
        Replace("a1", price=D("100050.00")),
    ]


def test_requote_bps_zero_replaces_on_any_move() -> None:
    orders = [order("b1", "buy", "99949.99", tag="bid"), order("a1", "sell", "100050.00", tag="ask")]
    strategy = mm(requote_bps=D("0"))
    assert strategy.on_market(quote("99999", "100001"), context(orders=orders)) == [Replace("b1", price=D("99950.00"))]


def test_a_second_order_with_the_same_tag_is_canceled() -> None:
    orders = [
        order("b1", "buy", "99950.00", tag="bid"),
        order("b2", "buy", "99000.00", tag="bid"),
        order("a1", "sell", "100050.00", tag="ask"),
    ]
    assert MarketMaker().on_market(quote("99999", "100001"), context(orders=orders)) == [Cancel("b2")]


# -- market_maker: inventory ----------------------------------------------------------------------


def test_long_at_the_limit_stops_and_cancels_the_bid() -> None:
    orders = [order("b1", "buy", "99950.00", tag="bid")]
    intents = MarketMaker().on_market(quote("99999", "100001"), context(position="0.005", orders=orders))
    assert intents == [Cancel("b1"), ask("100050.00")]
    # Without a live bid there is nothing to cancel.
    assert MarketMaker().on_market(quote("99999", "100001"), context(position="0.005")) == [ask("100050.00")]


def test_short_at_the_limit_stops_and_cancels_the_ask() -> None:
    orders = [order("a1", "sell", "100050.00", tag="ask")]
    intents = MarketMaker().on_market(quote("99999", "100001"), context(position="-0.005", orders=orders))
    assert intents == [bid("99950.00"), Cancel("a1")]


def test_limit_is_inclusive_and_the_live_quote_is_not_counted_twice() -> None:
    # Long 0.004 with a resting bid of 0.001: a fill would reach exactly 0.005; keep it.
    orders = [order("b1", "buy", "99950.00", tag="bid"), order("a1", "sell", "100050.00", tag="ask")]
    assert MarketMaker().on_market(quote("99999", "100001"), context(position="0.004", orders=orders)) == []
    assert MarketMaker().on_market(quote("99999", "100001"), context(position="0.004")) == [
        bid("99950.00"),
        ask("100050.00"),
    ]


def test_beyond_the_limit_the_reducing_side_still_quotes() -> None:
    intents = MarketMaker().on_market(quote("99999", "100001"), context(position="-0.009"))
    assert intents == [bid("99950.00")]


def test_open_same_side_leaves_count_toward_the_limit() -> None:
    # Another buy order (not a quote) with 0.003 left: 0.002 + 0.003 + 0.001 > 0.005.
    other = order("m1", "buy", "90000.00", tag="manual", qty="0.004", cum_qty="0.001")
    intents = MarketMaker().on_market(quote("99999", "100001"), context(position="0.002", orders=[other]))
    assert intents == [ask("100050.00")]
    # With 0.002 left it fits exactly; sell orders never count against the bid.
    other = order("m1", "buy", "90000.00", tag="manual", qty="0.002")
    sells = order("m2", "sell", "110000.00", tag="manual", qty="0.004")
    intents = MarketMaker().on_market(quote("99999", "100001"), context(position="0.002", orders=[other, sells]))
    assert intents == [bid("99950.00"), ask("100050.00")]  # the ask: 0.002 - 0.004 - 0.001 >= -0.005
    # ... but the sells count against the ask when short: -0.001 - 0.004 - 0.001 < -0.005.
    intents = MarketMaker().on_market(quote("99999", "100001"), context(position="-0.001", orders=[sells]))
    assert intents == [bid("99950.00")]


def test_skew_leans_against_inventory() -> None:
    strategy = mm(skew_bps=D("10"))  # half the limit: quotes move by 5 bps
    long = strategy.on_market(quote("99999", "100001"), context(position="0.0025"))
    assert long == [bid("99900.00"), ask("100000.00")]
    short = strategy.on_market(quote("99999", "100001"), context(position="-0.0025"))
    assert short == [bid("100000.00"), ask("100100.00")]
    flat = strategy.on_market(quote("99999", "100001"), context())
    assert flat == [bid("99950.00"), ask("100050.00")]


def test_a_side_whose_price_is_not_positive_is_not_quoted() -> None:
    strategy = mm(skew_bps=D("19998"))  # long half the limit: -9999 bps; bid below zero, ask 6 bps of mid
    orders = [order("b1", "buy", "99950.00", tag="bid")]
    intents = strategy.on_market(quote("99999", "100001"), context(position="0.0025", orders=orders))
    assert intents == [Cancel("b1"), ask("60.00")]
    assert mm(skew_bps=D("30000")).prices(D("100000"), D("0.0025")) == (None, None)


def test_on_order_requotes_after_a_fill_only() -> None:
    strategy = MarketMaker()
    filled = order("b1", "buy", "99950.00", tag="bid", state="filled", cum_qty="0.001")
    ctx = context(position="0.001", quotes=[quote("99999", "100001")])
    assert strategy.on_order(fill_update(filled), ctx) == [bid("99950.00"), ask("100050.00")]
    accepted = OrderUpdate(order("b1", "buy", "99950.00", tag="bid"), "accept", "pending_new")
    assert strategy.on_order(accepted, ctx) == []
    elsewhere = order("e1", "buy", "3000", instrument="ETHUSDT", state="filled", cum_qty="0.001")
    assert strategy.on_order(fill_update(elsewhere), ctx) == []


def test_market_maker_is_deterministic() -> None:
    events: list[MarketEvent] = [
        quote("99999", "100001"),
        quote("100100", "100102"),
        trade("100000"),
        quote("99000", "99002"),
    ]
    positions = ["0", "0.002", "0.004", "-0.005"]

    def run() -> list[Intent]:
        strategy = mm(skew_bps=D("3"))
        out: list[Intent] = []
        for event, position in zip(events, positions, strict=True):
            out.extend(strategy.on_market(event, context(position=position)))
        return out

    first = run()
    assert first == run()
    # Long 0.002 leans 1.2 bps down; short at the limit: no ask, and the bid leans 3 bps up.
    assert first == [bid("99950.00"), ask("100050.00"), bid("100038.93"), ask("100139.04"), bid("98981.19")]


# -- market_maker: params -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"instrument": ""}, "instrument"),
        ({"qty": D("0")}, "qty"),
        ({"qty": D("-1")}, "qty"),
        ({"qty": 0.001}, "qty"),
        ({"tick_size": D("0")}, "tick_size"),
        ({"max_position": D("0")}, "max_position"),
        ({"max_position": D("0.0005")}, "max_position"),
        ({"spread_bps": D("-1")}, "spread_bps"),
        ({"requote_bps": D("-0.1")}, "requote_bps"),
        ({"skew_bps": D("NaN")}, "skew_bps"),
    ],
)
def test_market_maker_params_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams, match=rf"^{field} must"):
        MarketMaker.Params(**kwargs)


# -- momentum -------------------------------------------------------------------------------------


def momentum(**params: Any) -> Momentum:
    return Momentum(Momentum.Params(**{"lookback": 3, **params}))


def feed(strategy: Momentum, prices: Iterable[str], ctx: Context | None = None) -> list[Intent]:
    """All intents of feeding ``prices`` as trades, in one context."""
    ctx = ctx or context()
    out: list[Intent] = []
    for price in prices:
        out.extend(strategy.on_market(trade(price), ctx))
    return out


def buy(price: str, qty: str = "0.001") -> Place:
    return Place(BTC, "buy", D(qty), D(price), tif="ioc", tag="momentum")


def sell(price: str, qty: str = "0.001") -> Place:
    return Place(BTC, "sell", D(qty), D(price), tif="ioc", tag="momentum")


def test_momentum_defaults() -> None:
    params = Momentum.Params()
    assert (params.lookback, params.threshold_bps, params.cooldown_ms) == (20, D("5"), 2000)
    assert Momentum.timer_interval_ms is None


def test_momentum_buys_a_rise_at_the_threshold() -> None:
    # 10000 -> 10005 is exactly 5 bps; the price is 10005 * 1.0005 = 10010.0025 rounded up.
    intents = feed(momentum(), ["10000", "10002", "10005"])
    assert intents == [buy("10010.01")]
    place = intents[0]
    assert isinstance(place, Place)
    assert (place.order_type, place.tif, place.tag) == ("limit", "ioc", "momentum")


def test_momentum_sells_a_fall_at_the_threshold() -> None:
    # 10000 -> 9995 is exactly -5 bps; the price is 9995 * 0.9995 = 9990.0025 rounded down.
    assert feed(momentum(), ["10000", "9999", "9995"]) == [sell("9990.00")]


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ("10004.99", []),
        ("10005.01", [buy("10010.02")]),  # 10010.0125... rounded up
        ("9995.01", []),
        ("9994.99", [sell("9989.99")]),  # 9989.992... rounded down
        ("10000", []),
    ],
)
def test_momentum_threshold_edges(last: str, expected: list[Intent]) -> None:
    assert feed(momentum(), ["10000", "10000", last]) == expected


def test_momentum_waits_for_a_full_window() -> None:
    strategy = momentum(lookback=4)
    assert feed(strategy, ["10000", "10010", "10020"]) == []
    assert feed(strategy, ["10030"]) == [buy("10035.02")]  # 10030 * 1.0005 = 10035.015


def test_momentum_window_rolls() -> None:
    strategy = momentum(cooldown_ms=0)
    assert feed(strategy, ["10000", "10001", "10002"]) == []  # 2 bps
    # The window is now 10001, 10002, 10007: 10007 / 10001 - 1 = 6 bps.
    assert feed(strategy, ["10007"]) == [buy("10012.01")]  # 10012.0035 rounded up


def test_momentum_cooldown() -> None:
    strategy = momentum()
    assert feed(strategy, ["10000", "10005", "10010"], context(now_ms=10_000)) == [buy("10015.01")]
    assert feed(strategy, ["10020"], context(now_ms=11_999)) == []  # a signal, but within 2000 ms
    assert feed(strategy, ["10030"], context(now_ms=12_000)) == [buy("10035.02")]


def test_momentum_not_when_trading_not_allowed_but_the_window_fills() -> None:
    strategy = momentum()
    assert feed(strategy, ["10000", "10005", "10010"], context(allowed=False)) == []
    assert feed(strategy, ["10015"]) == [buy("10020.01")]  # 10005 -> 10015: 10 bps


def test_momentum_not_while_an_own_order_is_open() -> None:
    own = order("m1", "buy", "10010.01", tag="momentum", state="pending_new")
    assert feed(momentum(), ["10000", "10005", "10010"], context(orders=[own])) == []
    # A foreign order does not block it.
    foreign = order("x1", "buy", "9000", tag="bid")
    assert feed(momentum(), ["10000", "10005", "10010"], context(orders=[foreign])) == [buy("10015.01")]


def test_momentum_position_limits() -> None:
    up, down = ["10000", "10005", "10010"], ["10000", "9995", "9990"]
    assert feed(momentum(), up, context(position="0.003")) == []
    assert feed(momentum(), up, context(position="0.002")) == [buy("10015.01")]
    assert feed(momentum(), up, context(position="-0.003")) == [buy("10015.01")]
    assert feed(momentum(), down, context(position="-0.003")) == []
    assert feed(momentum(), down, context(position="-0.002")) == [sell("9985.00")]  # 9985.005 down
    assert feed(momentum(), down, context(position="0.003")) == [sell("9985.00")]


def test_momentum_a_blocked_signal_does_not_start_the_cooldown() -> None:
    strategy = momentum()
    assert feed(strategy, ["10000", "10005", "10010"], context(position="0.003", now_ms=0)) == []
    assert feed(strategy, ["10015"], context(now_ms=1)) == [buy("10020.01")]


def test_momentum_ignores_quotes_and_other_instruments() -> None:
    strategy = momentum()
    feed(strategy, ["10000", "10005"])
    assert strategy.on_market(quote("10009", "10011"), context()) == []
    assert strategy.on_market(trade("20000", instrument="ETHUSDT"), context()) == []
    assert feed(strategy, ["10010"]) == [buy("10015.01")]


def test_momentum_does_not_sell_below_one_tick() -> None:
    strategy = momentum(cooldown_ms=0)
    assert feed(strategy, ["0.010", "0.008", "0.005"]) == []  # 0.005 * 0.9995 rounds down to 0.00
    assert feed(strategy, ["0.004"]) == []


def test_momentum_slippage_and_tick() -> None:
    strategy = momentum(slippage_bps=D("0"), tick_size=D("0.5"))
    assert feed(strategy, ["10000", "10005", "10010.2"]) == [buy("10010.5")]
    strategy = momentum(slippage_bps=D("0"), tick_size=D("0.5"))
    assert feed(strategy, ["10000", "9995", "9989.8"]) == [sell("9989.5")]


def test_momentum_is_deterministic() -> None:
    prices = ["10000", "10004", "10006", "10003", "9990", "9985", "9999", "10020", "10040", "10010"]

    def run() -> list[Intent]:
        strategy = momentum(cooldown_ms=1000)
        out: list[Intent] = []
        for i, price in enumerate(prices):
            out.extend(strategy.on_market(trade(price), context(now_ms=i * 400)))
        return out

    first = run()
    assert first == run()
    assert first == [buy("10011.01"), sell("9980.00"), buy("10045.02")]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"instrument": 5}, "instrument"),
        ({"qty": D("0")}, "qty"),
        ({"lookback": 1}, "lookback"),
        ({"lookback": D("5")}, "lookback"),
        ({"threshold_bps": D("0")}, "threshold_bps"),
        ({"max_position": D("0.0001")}, "max_position"),
        ({"cooldown_ms": -1}, "cooldown_ms"),
        ({"slippage_bps": D("-1")}, "slippage_bps"),
        ({"slippage_bps": D("10000")}, "slippage_bps"),
        ({"tick_size": D("0")}, "tick_size"),
    ],
)
def test_momentum_params_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParams, match=rf"^{field} must"):
        Momentum.Params(**kwargs)


# -- kernel.strategy: loading and params ----------------------------------------------------------


def test_load_builtin_strategies() -> None:
    assert load_strategy_class("market_maker") is MarketMaker
    assert load_strategy_class("momentum") is Momentum
    assert load_strategy_class("idle") is Strategy
    assert load_strategy_class("kernel.strategies.momentum:Momentum") is Momentum
    assert BUILTIN["market_maker"] == "kernel.strategies.market_maker:MarketMaker"
    assert MarketMaker.name == "market_maker"
    assert Momentum.name == "momentum"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown strategy 'nope': use one of idle, market_maker, momentum or module:Class"),
        (":Class", "unknown strategy"),
        ("module:", "unknown strategy"),
        ("no_such_module_xyz:Thing", "cannot import 'no_such_module_xyz'"),
        ("kernel.strategy:Place", "'Place' in 'kernel.strategy' is not a Strategy subclass"),
        ("kernel.strategy:BUILTIN", "is not a Strategy subclass"),
        ("kernel.strategy:Missing", "is not a Strategy subclass"),
    ],
)
def test_load_strategy_class_errors(spec: str, message: str) -> None:
    with pytest.raises(StrategyError, match=re.escape(message)):
        load_strategy_class(spec)


def test_build_params_from_toml_like_values() -> None:
    params = build_params(
        MarketMaker,
        {"instrument": "ETHUSDT", "qty": D("0.01"), "spread_bps": 8, "skew_bps": "4", "max_position": D("0.05")},
    )
    assert params == MarketMaker.Params(
        instrument="ETHUSDT", qty=D("0.01"), spread_bps=D(8), skew_bps=D(4), max_position=D("0.05")
    )
    assert isinstance(params.spread_bps, Decimal)
    momentum_params = build_params(Momentum, {"lookback": 5, "cooldown_ms": D("500"), "threshold_bps": "2.5"})
    assert (momentum_params.lookback, momentum_params.cooldown_ms) == (5, 500)
    assert type(momentum_params.cooldown_ms) is int
    assert build_params(MarketMaker, {}) == MarketMaker.Params()


@pytest.mark.parametrize(
    ("cls", "raw", "message"),
    [
        (MarketMaker, {"qty": 0.001}, "strategy.params.qty: expected a decimal number, got float 0.001"),
        (MarketMaker, {"qty": True}, "strategy.params.qty: expected a decimal number"),
        (MarketMaker, {"qty": [1]}, "strategy.params.qty: expected a decimal number"),
        (MarketMaker, {"qty": "abc"}, "strategy.params.qty: not a decimal number: 'abc'"),
        (MarketMaker, {"qty": "Infinity"}, "strategy.params.qty: must be finite"),
        (MarketMaker, {"qty": "0"}, "strategy.params: qty must be positive, got 0"),
        (MarketMaker, {"instrument": 5}, "strategy.params.instrument: expected a string"),
        (MarketMaker, {"spred_bps": 1}, "strategy.params.spred_bps: unknown parameter of strategy 'market_maker'"),
        (Momentum, {"lookback": 2.0}, "strategy.params.lookback: expected an integer"),
        (Momentum, {"lookback": D("2.5")}, "strategy.params.lookback: expected an integer"),
        (Momentum, {"lookback": True}, "strategy.params.lookback: expected an integer"),
        (Momentum, {"lookback": 1}, "strategy.params: lookback must be at least 2"),
        (Strategy, {"anything": 1}, "strategy.params.anything: unknown parameter of strategy 'Strategy' (known: none)"),
    ],
)
def test_build_params_errors(cls: type[Strategy], raw: dict[str, Any], message: str) -> None:
    with pytest.raises(StrategyError, match=re.escape(message)):
        build_params(cls, raw)


def test_build_params_names_where() -> None:
    with pytest.raises(StrategyError, match=re.escape("cfg.qty: expected a decimal number")):
        build_params(MarketMaker, {"qty": 1.5}, where="cfg")


class Typed(Strategy):
    """A strategy with a required parameter and every kind of field ``_coerce`` knows."""

    name: ClassVar[str] = "typed"

    @dataclass(frozen=True)
    class Params:
        required: str
        flag: bool = False
        ratio: float = 0.5
        count: int = 1
        anything: tuple[int, ...] = ()


def test_build_params_coerces_each_kind() -> None:
    params = build_params(Typed, {"required": "x", "flag": True, "ratio": D("0.25"), "count": 3, "anything": (1,)})
    assert params == Typed.Params("x", True, 0.25, 3, (1,))
    assert build_params(Typed, {"required": "y", "ratio": 2}).ratio == 2.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "strategy.params: "),  # the required key is missing: TypeError from the dataclass
        ({"required": "x", "flag": 1}, "strategy.params.flag: expected true or false"),
        ({"required": "x", "ratio": "0.5"}, "strategy.params.ratio: expected a number"),
        ({"required": "x", "ratio": False}, "strategy.params.ratio: expected a number"),
    ],
)
def test_build_params_coerce_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(StrategyError, match=re.escape(message)):
        build_params(Typed, raw)


# -- kernel.strategy: the API's own pieces --------------------------------------------------------


def test_base_strategy_does_nothing() -> None:
    strategy = Strategy()
    ctx = context(quotes=[quote("99", "101")])
    assert strategy.params == Strategy.Params()
    assert list(strategy.on_start(ctx)) == []
    assert list(strategy.on_market(quote("99", "101"), ctx)) == []
    assert list(strategy.on_order(fill_update(order("b1", "buy", "99")), ctx)) == []
    assert list(strategy.on_timer(ctx)) == []
    explicit = MarketMaker.Params(qty=D("0.002"))
    assert MarketMaker(explicit).params is explicit


def test_context_helpers() -> None:
    eth = order("e1", "sell", "3000", instrument="ETHUSDT")
    btc = order("b1", "buy", "99")
    ctx = context(position="0.002", orders=[eth, btc], quotes=[quote("99", "101")])
    assert ctx.position(BTC).qty == D("0.002")
    assert ctx.position("ETHUSDT") == Position("ETHUSDT")
    assert ctx.mid(BTC) == D("100")
    assert ctx.mid("ETHUSDT") is None
    assert ctx.orders_of(BTC) == [btc]


def test_order_view_of_an_entity() -> None:
    data = {
        "instrument": BTC,
        "side": "buy",
        "type": "limit",
        "tif": "gtc",
        "qty": D("0.002"),
        "price": D("100"),
        "cum_qty": D("0.001"),
        "leaves_qty": D("0.001"),
        "avg_px": D("100"),
        "tag": "bid",
    }
    view = OrderView.of(Entity(ORDER, "c1", "partially_filled", data))
    expected = order("c1", "buy", "100", tag="bid", state="partially_filled", qty="0.002", cum_qty="0.001")
    assert view == dataclasses.replace(expected, avg_px=D("100"))
    untagged = OrderView.of(Entity(ORDER, "c2", "filled", {**data, "tag": None}))
    assert (untagged.tag, untagged.live) == ("", False)


# -- docs/strategies.md ---------------------------------------------------------------------------


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_doc_python_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = doc_blocks("python")
    assert len(blocks) >= 3
    module = types.ModuleType("strategies_doc_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), module.__dict__)
    defined = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Strategy) and value.__module__ == module.__name__
    ]
    assert [cls.__name__ for cls in defined] == ["Dip"]
    # The example class loads like any user strategy, takes its params from config, and trades.
    cls = load_strategy_class(f"{module.__name__}:Dip")
    strategy = cls(build_params(cls, {"offset_bps": 10, "qty": "0.002"}))
    last = trade("50000.00")
    assert list(strategy.on_market(last, context())) == [Place(BTC, "buy", D("0.002"), D("49950.00"), tag="dip")]
    assert list(strategy.on_market(quote("1", "2"), context())) == []
    assert list(strategy.on_market(last, context(allowed=False))) == []
    assert list(strategy.on_market(last, context(position="0.002"))) == []
    resting = order("d1", "buy", "49900.00", tag="dip")
    assert list(strategy.on_timer(context(trades=[trade("50000.00")], orders=[resting]))) == []
    assert list(strategy.on_timer(context(trades=[trade("50100.00")], orders=[resting]))) == [Cancel("d1")]
    assert list(strategy.on_timer(context(orders=[resting]))) == []
    with pytest.raises(StrategyError, match=re.escape("strategy.params: qty must be positive")):
        build_params(cls, {"qty": 0})


def test_doc_toml_examples_build_params() -> None:
    blocks = doc_blocks("toml")
    assert blocks
    for block in blocks:
        config = tomllib.loads(block, parse_float=Decimal)
        cls = load_strategy_class(config["strategy"]["name"])
        params = build_params(cls, config["strategy"].get("params", {}))
        assert isinstance(params, cls.Params)
    assert params == MarketMaker.Params(
        instrument="ETHUSDT", qty=D("0.01"), max_position=D("0.05"), spread_bps=D(8), skew_bps=D(4)
    )


def test_doc_tables_list_every_param() -> None:
    headings = re.findall(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.M)
    assert "The shipped strategies" in headings
    for name, cls in (("market_maker", MarketMaker), ("momentum", Momentum)):
        section = DOC.read_text(encoding="utf-8").split(f"### `{name}`")[1]
        documented = re.findall(r"^\| `(\w+)` \|", re.split(r"\n##", section)[0], flags=re.M)
        assert documented == list(cls.Params.__dataclass_fields__)
