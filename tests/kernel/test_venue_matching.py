"""The paper venue's matching engine, one test per rule (pure: no I/O, time passed in)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from kernel.paper_protocol import Execution, NewOrder, OrderType, Side, TimeInForce
from kernel.venue import matching
from kernel.venue.matching import EngineConfig, MatchingEngine, Order

X = "BTCUSDT"
T0 = 1_610_064_000_000


def order(
    coid: str,
    side: Side = "buy",
    qty: str = "1",
    price: str | None = "100",
    order_type: OrderType = "limit",
    tif: TimeInForce = "gtc",
    instrument: str = X,
) -> NewOrder:
    return NewOrder(
        client_order_id=coid,
        instrument=instrument,
        side=side,
        qty=D(qty),
        order_type=order_type,
        tif=tif,
        price=None if price is None else D(price),
    )


def kinds(reports: list[Execution]) -> list[tuple[str, str]]:
    return [(r.exec, r.status) for r in reports]


def fills(reports: list[Execution]) -> list[tuple[str, D, D]]:
    return [(r.client_order_id, r.fill.qty, r.fill.price) for r in reports if r.fill is not None]


@pytest.fixture
def engine() -> MatchingEngine:
    return MatchingEngine(EngineConfig(instruments=(X,)))


def quoted(engine: MatchingEngine, bid: str = "99", bid_qty: str = "2", ask: str = "101", ask_qty: str = "2") -> None:
    assert engine.on_quote(X, D(bid), D(bid_qty), D(ask), D(ask_qty), T0) == []


# -- resting limits and trades ------------------------------------------------------------------


def test_a_resting_buy_fills_only_when_the_market_trades_through_not_at_the_touch(engine: MatchingEngine) -> None:
    assert kinds(engine.new_order(order("b"), T0)) == [("new", "new")]
    assert engine.on_trade(X, D("100"), D("5"), T0 + 1) == []  # touch
    assert engine.on_trade(X, D("100.5"), D("5"), T0 + 2) == []  # above a buy
    reports = engine.on_trade(X, D("99.99"), D("5"), T0 + 3)
    assert kinds(reports) == [("trade", "filled")]
    assert fills(reports) == [("b", D("1"), D("100"))]  # at the limit, not the trade price
    assert reports[0].ts_ms == T0 + 3


def test_a_resting_sell_fills_when_a_trade_prints_above_it(engine: MatchingEngine) -> None:
    engine.new_order(order("s", side="sell", price="100"), T0)
    assert engine.on_trade(X, D("100"), D("5"), T0) == []
    assert engine.on_trade(X, D("99"), D("5"), T0) == []
    assert fills(engine.on_trade(X, D("100.01"), D("5"), T0)) == [("s", D("1"), D("100"))]


def test_a_short_trade_fills_partially_and_the_rest_keeps_resting(engine: MatchingEngine) -> None:
    engine.new_order(order("b", qty="1"), T0)
    first = engine.on_trade(X, D("99"), D("0.3"), T0 + 1)
    assert kinds(first) == [("trade", "partially_filled")]
    assert (first[0].cum_qty, first[0].leaves_qty) == (D("0.3"), D("0.7"))
    second = engine.on_trade(X, D("99"), D("0.7"), T0 + 2)
    assert kinds(second) == [("trade", "filled")]
    assert engine.on_trade(X, D("98"), D("5"), T0 + 3) == []  # filled orders no longer rest
    assert [f.trade_id for f in engine.fills_since(0)] == ["F1", "F2"]


def test_trade_volume_is_shared_by_price_then_time_priority(engine: MatchingEngine) -> None:
    engine.new_order(order("early-100", qty="1", price="100"), T0)
    engine.new_order(order("late-100", qty="1", price="100"), T0 + 1)
    engine.new_order(order("best-101", qty="1", price="101"), T0 + 2)
    engine.new_order(order("not-crossed", qty="1", price="98"), T0 + 3)
    reports = engine.on_trade(X, D("99"), D("2.5"), T0 + 4)
    assert fills(reports) == [
        ("best-101", D("1"), D("101")),
        ("early-100", D("1"), D("100")),
        ("late-100", D("0.5"), D("100")),
    ]
    order_late = engine.order("late-100")
    assert order_late is not None
    assert order_late.status == "partially_filled"


def test_both_sides_crossed_by_one_trade_each_get_its_volume(engine: MatchingEngine) -> None:
    engine.new_order(order("b", side="buy", price="101"), T0)
    engine.new_order(order("s", side="sell", price="99"), T0)
    assert fills(engine.on_trade(X, D("100"), D("1"), T0)) == [("b", D("1"), D("101")), ("s", D("1"), D("99"))]


def test_trades_of_another_instrument_do_not_touch_the_book() -> None:
    engine = MatchingEngine()
    engine.new_order(order("b"), T0)
    assert engine.on_trade("ETHUSDT", D("1"), D("100"), T0) == []


# -- taking liquidity ---------------------------------------------------------------------------


def test_a_marketable_limit_fills_at_the_quote_price_up_to_its_size_and_rests_the_rest(engine: MatchingEngine) -> None:
    quoted(engine, ask="101", ask_qty="0.4")
    reports = engine.new_order(order("b", qty="1", price="102"), T0)
    assert kinds(reports) == [("new", "new"), ("trade", "partially_filled")]
    assert fills(reports) == [("b", D("0.4"), D("101"))]
    assert reports[-1].leaves_qty == D("0.6")
    # the quote's size was taken: a second buy finds nothing left at 101 and rests
    assert kinds(engine.new_order(order("b2", qty="1", price="102"), T0)) == [("new", "new")]
    quote = engine.quote(X)
    assert quote is not None
    assert quote.ask_qty == 0


def test_a_marketable_sell_limit_takes_the_bid(engine: MatchingEngine) -> None:
    quoted(engine, bid="99", bid_qty="5")
    reports = engine.new_order(order("s", side="sell", qty="1", price="98"), T0)
    assert fills(reports) == [("s", D("1"), D("99"))]
    assert reports[-1].status == "filled"


def test_a_limit_below_the_ask_is_not_marketable(engine: MatchingEngine) -> None:
    quoted(engine, ask="101")
    assert kinds(engine.new_order(order("b", price="100.99"), T0)) == [("new", "new")]


def test_a_market_order_takes_the_quote_worsened_by_slippage() -> None:
    engine = MatchingEngine(EngineConfig(slippage_bps=D("10")))
    engine.on_quote(X, D("99"), D("5"), D("100"), D("5"), T0)
    buy = engine.new_order(order("mb", qty="1", price=None, order_type="market"), T0)
    assert fills(buy) == [("mb", D("1"), D("100.1"))]
    assert buy[-1].price is None
    sell = engine.new_order(order("ms", side="sell", qty="1", price=None, order_type="market"), T0)
    assert fills(sell) == [("ms", D("1"), D("98.901"))]


def test_a_market_order_remainder_beyond_the_quote_size_is_canceled(engine: MatchingEngine) -> None:
    quoted(engine, ask_qty="0.25")
    reports = engine.new_order(order("m", qty="1", price=None, order_type="market"), T0)
    assert kinds(reports) == [("new", "new"), ("trade", "partially_filled"), ("canceled", "canceled")]
    assert reports[-1].cum_qty == D("0.25")
    assert reports[-1].leaves_qty == 0
    assert reports[-1].reason == "market remainder canceled"


def test_a_market_order_without_a_quote_is_rejected(engine: MatchingEngine) -> None:
    reports = engine.new_order(order("m", price=None, order_type="market"), T0)
    assert kinds(reports) == [("rejected", "rejected")]
    assert reports[0].reason == "no market"


def test_an_ioc_remainder_is_canceled(engine: MatchingEngine) -> None:
    quoted(engine, ask="101", ask_qty="0.5")
    reports = engine.new_order(order("i", qty="2", price="101", tif="ioc"), T0)
    assert kinds(reports) == [("new", "new"), ("trade", "partially_filled"), ("canceled", "canceled")]
    assert reports[-1].reason == "ioc remainder canceled"
    assert engine.open_orders() == []


def test_an_ioc_that_is_not_marketable_is_canceled_at_once(engine: MatchingEngine) -> None:
    quoted(engine, ask="101")
    assert kinds(engine.new_order(order("i", price="100", tif="ioc"), T0)) == [("new", "new"), ("canceled", "canceled")]


def test_a_fok_is_killed_when_the_quote_is_short(engine: MatchingEngine) -> None:
    quoted(engine, ask="101", ask_qty="0.5")
    reports = engine.new_order(order("f", qty="1", price="101", tif="fok"), T0)
    assert kinds(reports) == [("new", "new"), ("canceled", "canceled")]
    assert reports[-1].cum_qty == 0
    assert engine.fills_since(0) == []
    quote = engine.quote(X)
    assert quote is not None
    assert quote.ask_qty == D("0.5")  # a killed FOK takes nothing


def test_a_fok_fills_completely_when_the_quote_is_enough(engine: MatchingEngine) -> None:
    quoted(engine, ask="101", ask_qty="1")
    reports = engine.new_order(order("f", qty="1", price="101", tif="fok"), T0)
    assert kinds(reports) == [("new", "new"), ("trade", "filled")]


def test_a_day_order_expires_at_end_of_day_and_gtc_stays(engine: MatchingEngine) -> None:
    engine.new_order(order("d", tif="day"), T0)
    engine.new_order(order("g", tif="gtc"), T0)
    reports = engine.end_of_day(T0 + 1)
    assert [(r.client_order_id, r.exec, r.status) for r in reports] == [("d", "expired", "expired")]
    assert [o.client_order_id for o in engine.open_orders()] == ["g"]


def test_fees_are_fee_bps_of_the_notional() -> None:
    engine = MatchingEngine(EngineConfig(fee_bps=D("10")))
    engine.new_order(order("b", qty="0.004", price="39400.00"), T0)
    (report,) = engine.on_trade(X, D("39399"), D("1"), T0)
    assert report.fill is not None
    assert report.fill.fee == D("0.1576")
    assert isinstance(report.fill.fee, D)


def test_without_fee_bps_the_fee_is_zero(engine: MatchingEngine) -> None:
    engine.new_order(order("b"), T0)
    (report,) = engine.on_trade(X, D("99"), D("1"), T0)
    assert report.fill is not None
    assert report.fill.fee == 0


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (order("a", qty="0"), "qty must be positive"),
        (order("a", qty="-1"), "qty must be positive"),
        (order("a", qty="NaN"), "qty must be positive"),
        (order("a", price=None), "a limit order needs a positive price"),
        (order("a", price="0"), "a limit order needs a positive price"),
        (order("a", price="1", order_type="market"), "a market order has no price"),
        (order("a", instrument="ETHUSDT"), "unknown instrument ETHUSDT"),
        (order(""), "client_order_id must not be empty"),
    ],
)
def test_invalid_orders_are_rejected_with_a_reason(engine: MatchingEngine, message: NewOrder, reason: str) -> None:
    (report,) = engine.new_order(message, T0)
    assert (report.exec, report.status, report.reason) == ("rejected", "rejected", reason)
    assert report.leaves_qty == 0


def test_a_known_id_is_not_entered_twice_but_counted_as_a_duplicate(engine: MatchingEngine) -> None:
    engine.new_order(order("a"), T0)
    engine.take_changes()
    with pytest.raises(ValueError, match="already exists"):
        engine.new_order(order("a"), T0)
    snapshot = engine.duplicate("a")
    assert snapshot.duplicate_submits == 1
    assert [o.client_order_id for o in engine.take_changes().orders] == ["a"]
    assert len(engine.orders()) == 1


# -- cancel and replace -------------------------------------------------------------------------


def test_cancel_of_a_working_order(engine: MatchingEngine) -> None:
    engine.new_order(order("a"), T0)
    (report,) = engine.cancel("a", T0 + 1)
    assert (report.exec, report.status, report.leaves_qty) == ("canceled", "canceled", 0)
    assert engine.on_trade(X, D("1"), D("10"), T0 + 2) == []


def test_cancel_of_a_done_or_unknown_order_is_cancel_rejected(engine: MatchingEngine) -> None:
    engine.new_order(order("a"), T0)
    engine.on_trade(X, D("99"), D("1"), T0)
    (done,) = engine.cancel("a", T0)
    assert (done.exec, done.status, done.reason) == ("cancel_rejected", "filled", "too late to cancel")
    (unknown,) = engine.cancel("zzz", T0)
    assert (unknown.exec, unknown.reason, unknown.venue_order_id, unknown.qty) == (
        "cancel_rejected",
        "unknown order",
        "",
        0,
    )


def test_replace_to_at_or_below_cum_qty_finishes_the_order(engine: MatchingEngine) -> None:
    engine.new_order(order("a", qty="1"), T0)
    engine.on_trade(X, D("99"), D("0.4"), T0)
    (report,) = engine.replace("a", D("0.3"), None, T0)
    assert (report.exec, report.status, report.qty, report.cum_qty, report.leaves_qty) == (
        "replaced",
        "filled",
        D("0.4"),
        D("0.4"),
        0,
    )
    assert engine.open_orders() == []


def test_replace_qty_up_keeps_resting_with_more_leaves(engine: MatchingEngine) -> None:
    engine.new_order(order("a", qty="1"), T0)
    engine.on_trade(X, D("99"), D("0.4"), T0)
    (report,) = engine.replace("a", D("2"), None, T0)
    assert (report.exec, report.status, report.leaves_qty) == ("replaced", "partially_filled", D("1.6"))


def test_replace_price_keeps_resting_or_fills_when_it_becomes_marketable(engine: MatchingEngine) -> None:
    quoted(engine, ask="101", ask_qty="5")
    engine.new_order(order("a", qty="1", price="100"), T0)
    (moved,) = engine.replace("a", None, D("100.5"), T0)
    assert (moved.exec, moved.status, moved.price) == ("replaced", "new", D("100.5"))
    reports = engine.replace("a", None, D("101"), T0)
    assert kinds(reports) == [("replaced", "new"), ("trade", "filled")]
    assert fills(reports) == [("a", D("1"), D("101"))]


def test_a_price_change_loses_time_priority(engine: MatchingEngine) -> None:
    engine.new_order(order("first", price="100"), T0)
    engine.new_order(order("second", price="100"), T0)
    engine.replace("first", None, D("99.5"), T0)
    engine.replace("first", None, D("100"), T0)
    assert fills(engine.on_trade(X, D("99"), D("1"), T0)) == [("second", D("1"), D("100"))]


@pytest.mark.parametrize(
    ("qty", "price", "reason"),
    [
        (None, None, "nothing to replace: give qty and/or price"),
        (D("0"), None, "qty must be positive"),
        (None, D("-1"), "price must be positive"),
    ],
)
def test_impossible_replaces_are_replace_rejected(
    engine: MatchingEngine, qty: D | None, price: D | None, reason: str
) -> None:
    engine.new_order(order("a"), T0)
    (report,) = engine.replace("a", qty, price, T0)
    assert (report.exec, report.status, report.reason) == ("replace_rejected", "new", reason)


def test_replace_of_a_market_price_a_done_or_an_unknown_order_is_rejected(engine: MatchingEngine) -> None:
    quoted(engine)
    engine.new_order(order("m", price=None, order_type="market"), T0)
    assert engine.replace("m", None, D("1"), T0)[0].reason == "too late to replace"
    (unknown,) = engine.replace("nope", D("1"), None, T0)
    assert (unknown.exec, unknown.reason) == ("replace_rejected", "unknown order")
    market = MatchingEngine()
    market.on_quote(X, D("99"), D("0"), D("101"), D("0"), T0)  # no size: a market GTC would be canceled
    problem = matching._replace_problem(
        Order("x", "V9", X, "buy", "market", "gtc", D(1), None, "new", leaves_qty=D(1)), None, D("5")
    )
    assert problem == "a market order has no price"


def test_restate_changes_a_working_order_with_a_reason(engine: MatchingEngine) -> None:
    engine.new_order(order("a", qty="2"), T0)
    (report,) = engine.restate("a", T0, qty=D("1"), reason="risk limit")
    assert (report.exec, report.status, report.qty, report.reason) == ("restated", "new", D("1"), "risk limit")
    with pytest.raises(KeyError):
        engine.restate("nope", T0, qty=D("1"))
    engine.cancel("a", T0)
    with pytest.raises(ValueError, match="too late"):
        engine.restate("a", T0, qty=D("1"))


def test_unsolicited_cancel_of_a_working_order(engine: MatchingEngine) -> None:
    engine.new_order(order("a"), T0)
    (report,) = engine.cancel("a", T0, reason="venue maintenance")
    assert (report.exec, report.reason) == ("canceled", "venue maintenance")


# -- randomness ---------------------------------------------------------------------------------


def run_random(seed: int, rate: float = 0.5) -> list[tuple[str, str, str | None]]:
    engine = MatchingEngine(EngineConfig(reject_rate=rate, unsolicited_cancel_rate=rate, seed=seed))
    out: list[tuple[str, str, str | None]] = []
    for i in range(40):
        for r in engine.new_order(order(f"o{i}", price=str(100 + i % 3)), T0 + i):
            out.append((r.client_order_id, r.exec, r.reason))
        for r in engine.on_quote(X, D("90"), D("1"), D("110"), D("1"), T0 + i):
            out.append((r.client_order_id, r.exec, r.reason))
    return out


def test_random_rejects_and_cancels_repeat_for_a_seed_and_differ_for_another() -> None:
    first = run_random(7)
    assert first == run_random(7)
    assert first != run_random(8)
    reasons = {reason for _, _, reason in first}
    assert {"random reject", "unsolicited"} <= reasons


def test_rates_of_zero_and_one() -> None:
    assert {e for _, e, _ in run_random(1, rate=0.0)} == {"new"}
    assert {e for _, e, _ in run_random(1, rate=1.0)} == {"rejected"}


@pytest.mark.parametrize(
    "kwargs",
    [{"reject_rate": 1.5}, {"unsolicited_cancel_rate": -0.1}, {"fee_bps": D("-1")}, {"slippage_bps": D("NaN")}],
)
def test_bad_engine_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        EngineConfig(**kwargs)  # type: ignore[arg-type]


# -- state for the store ------------------------------------------------------------------------


def test_changes_name_every_touched_order_and_new_fill_once(engine: MatchingEngine) -> None:
    engine.new_order(order("a", qty="2"), T0)
    engine.new_order(order("b", qty="1", price="50"), T0)
    engine.on_trade(X, D("99"), D("1"), T0)
    changes = engine.take_changes()
    assert sorted(o.client_order_id for o in changes.orders) == ["a", "b"]
    assert [f.trade_id for f in changes.fills] == ["F1"]
    assert (changes.next_venue_order, changes.next_fill_seq, changes.next_priority) == (3, 2, 3)
    empty = engine.take_changes()
    assert (empty.orders, empty.fills) == ([], [])


def test_a_restored_engine_continues_numbering_and_matching(engine: MatchingEngine) -> None:
    engine.new_order(order("a", qty="2"), T0)
    engine.on_trade(X, D("99"), D("1"), T0)
    changes = engine.take_changes()
    again = MatchingEngine(
        EngineConfig(instruments=(X,)),
        next_venue_order=changes.next_venue_order,
        next_fill_seq=changes.next_fill_seq,
        next_priority=changes.next_priority,
    )
    again.restore(changes.orders)
    reports = again.on_trade(X, D("99"), D("5"), T0 + 1)
    assert [(r.fill.trade_id if r.fill else None, r.status) for r in reports] == [("F2", "filled")]
    assert [f.fill_seq for f in again.fills_since(0)] == [1, 2]
    assert [f.fill_seq for f in again.fills_since(1)] == [2]
    assert again.new_order(order("b"), T0)[0].venue_order_id == "V2"
    snapshot = again.order("a")
    assert snapshot is not None
    assert snapshot.snapshot().fills[0].trade_id == "F1"


# -- accounts and balances (issue 15) -------------------------------------------------------------


def test_two_accounts_may_use_one_client_order_id_and_never_touch_each_others() -> None:
    engine = MatchingEngine()
    (a,) = engine.new_order(order("same", qty="1", price="100"), T0, "alice")
    (b,) = engine.new_order(order("same", side="sell", qty="2", price="200"), T0, "bob")
    assert (a.venue_order_id, b.venue_order_id) == ("V1", "V2")
    assert (engine.account_of("V1"), engine.account_of("V2"), engine.account_of("V9")) == ("alice", "bob", None)
    assert engine.order("same", "mallory") is None
    (refused,) = engine.cancel("same", T0, account="mallory")
    assert (refused.exec, refused.reason) == ("cancel_rejected", "unknown order")
    (refused,) = engine.replace("same", D("5"), D("300"), T0, "mallory")
    assert (refused.exec, refused.reason) == ("replace_rejected", "unknown order")
    assert [o.client_order_id for o in engine.open_orders("alice")] == ["same"]
    assert [o.side for o in engine.open_orders("bob")] == ["sell"]
    changes = engine.take_changes()
    assert sorted((o.account, o.client_order_id) for o in changes.orders) == [("alice", "same"), ("bob", "same")]


def test_fills_debit_and_credit_the_accounts_balances_with_fees() -> None:
    engine = MatchingEngine(EngineConfig(fee_bps=D(10), balances={"USDT": D(1000), "BTC": D(1)}))
    engine.new_order(order("b", qty="2", price="100"), T0, "alice")
    engine.new_order(order("s", side="sell", qty="0.5", price="300"), T0, "bob")
    engine.on_trade(X, D("99"), D("2"), T0)
    engine.on_trade(X, D("301"), D("1"), T0)
    ledger = engine.ledger
    # alice: USDT 1000 - 200 - 0.2 fee; BTC 1 + 2.  bob: BTC 1 - 0.5; USDT 1000 + 150 - 0.15 fee
    assert (ledger.amount("alice", "USDT"), ledger.amount("alice", "BTC")) == (D("799.8"), D("3"))
    assert (ledger.amount("bob", "USDT"), ledger.amount("bob", "BTC")) == (D("1149.85"), D("0.5"))
    changes = engine.take_changes()
    assert changes.fill_accounts == ["alice", "bob"]
    assert changes.balances == {
        ("alice", "USDT"): D("799.8"),
        ("alice", "BTC"): D("3"),
        ("bob", "BTC"): D("0.5"),
        ("bob", "USDT"): D("1149.85"),
    }


def test_an_order_beyond_the_balance_less_open_reservations_is_rejected_and_a_restore_keeps_them() -> None:
    config = EngineConfig(balances={"USDT": D(1000), "BTC": D(1)})
    engine = MatchingEngine(config)
    assert kinds(engine.new_order(order("b1", qty="6", price="100"), T0, "alice")) == [("new", "new")]
    (short,) = engine.new_order(order("b2", qty="5", price="100"), T0, "alice")  # 600 + 500 > 1000
    assert (short.exec, short.reason) == ("rejected", "insufficient balance")
    assert kinds(engine.new_order(order("b2", qty="5", price="100"), T0, "bob")) == [("new", "new")]  # bob's own
    (short,) = engine.new_order(order("s1", side="sell", qty="1.5", price="100"), T0, "alice")
    assert short.reason == "insufficient balance"
    restored = MatchingEngine(config, next_venue_order=9)
    restored.restore(engine.orders())
    (short,) = restored.new_order(order("b3", qty="5", price="100"), T0, "alice")  # b1 still reserves 600
    assert short.reason == "insufficient balance"
    restored.cancel("b1", T0, account="alice")
    assert kinds(restored.new_order(order("b4", qty="10", price="100"), T0, "alice")) == [("new", "new")]
