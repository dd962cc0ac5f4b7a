"""Positions (``machines.positions``): a pure Decimal fold over fills, average-cost basis.

Fill validation; long, short and flip cases with hand-computed P&L; ``Positions``; and Hypothesis
properties: folding one fill at a time equals ``Positions.rebuild``, the accounting identity
``realized + unrealized(mark) - fees == cash + qty * mark`` holds exactly, and ``qty`` is the signed
sum of fill quantities.

The ``position`` machine (``POSITION``): creation, every state with each case of the ``fill``
trigger (exact destination and data), refused data leaving the entity unchanged, the restore round
trip through the journal codec, and a Hypothesis property: firing any sequence of one instrument's
fills through ``POSITION`` gives exactly ``Positions.rebuild`` and the state is the sign of ``qty``.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from machines import POSITION, RUN, Entity, InvalidTransition, PositionState, registry
from machines.errors import InvalidData, StateMachineError
from machines.positions import (
    Fill,
    NotAPosition,
    Position,
    Positions,
    adds_or_reduces,
    buys,
    closes,
    flips,
    position_of,
    sells,
)
from storage import codec

D = Decimal


def buy(qty: str, price: str, fee: str = "0", instrument: str = "XYZ") -> Fill:
    return Fill(instrument, "buy", D(qty), D(price), D(fee))


def sell(qty: str, price: str, fee: str = "0", instrument: str = "XYZ") -> Fill:
    return Fill(instrument, "sell", D(qty), D(price), D(fee))


def dec(*values: int | str | None) -> tuple[Decimal | None, ...]:
    """Expected values as Decimals (``None`` stays ``None``)."""
    return tuple(None if v is None else D(v) for v in values)


def fold(*fills: Fill, instrument: str = "XYZ") -> Position:
    position = Position(instrument)
    for fill in fills:
        position = position.apply(fill)
    return position


def assert_identity(position: Position, mark: Decimal) -> None:
    """The module docstring's accounting identity, exactly."""
    assert position.realized_pnl + position.unrealized_pnl(mark) - position.fees == position.cash + position.qty * mark
    assert position.total_pnl(mark) == position.cash + position.qty * mark


# -- fills ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"side": "short"}, "side", id="bad-side"),
        pytest.param({"side": "BUY"}, "side", id="upper-case-side"),
        pytest.param({"qty": 1}, "qty must be a finite Decimal", id="int-qty"),
        pytest.param({"qty": 1.0}, "qty must be a finite Decimal", id="float-qty"),
        pytest.param({"qty": "1"}, "qty must be a finite Decimal", id="string-qty"),
        pytest.param({"price": 10}, "price must be a finite Decimal", id="int-price"),
        pytest.param({"fee": 0}, "fee must be a finite Decimal", id="int-fee"),
        pytest.param({"qty": D("NaN")}, "qty must be a finite Decimal", id="nan-qty"),
        pytest.param({"price": D("Infinity")}, "price must be a finite Decimal", id="infinite-price"),
        pytest.param({"fee": D("-Infinity")}, "fee must be a finite Decimal", id="infinite-fee"),
        pytest.param({"qty": D("0")}, "positive", id="zero-qty"),
        pytest.param({"qty": D("-1")}, "positive", id="negative-qty"),
        pytest.param({"price": D("0")}, "positive", id="zero-price"),
        pytest.param({"price": D("-5")}, "positive", id="negative-price"),
    ],
)
def test_fill_validation(kwargs: dict[str, Any], message: str) -> None:
    fields = {"instrument": "XYZ", "side": "buy", "qty": D("1"), "price": D("10"), **kwargs}
    with pytest.raises(InvalidData, match=message):
        Fill(**fields)


def test_fill_defaults_and_signed_qty() -> None:
    fill = Fill("XYZ", "buy", D("2"), D("10"))
    assert (fill.fee, fill.trade_id) == (D(0), "")
    assert fill.signed_qty == D("2")
    assert Fill("XYZ", "sell", D("2"), D("10"), D("0"), "T1").signed_qty == D("-2")
    assert Fill("XYZ", "buy", D("1"), D("1"), D("-0.01")).fee == D("-0.01")  # a rebate
    with pytest.raises(dataclasses.FrozenInstanceError):
        fill.qty = D("3")  # type: ignore[misc]


# -- one position -----------------------------------------------------------------------------


def test_flat_position() -> None:
    position = Position("XYZ")
    assert (position.qty, position.cost, position.realized_pnl, position.fees, position.cash) == dec(0, 0, 0, 0, 0)
    assert position.avg_px is None
    assert position.fills == 0
    assert position.unrealized_pnl(D("123")) == 0


def test_long_open_increase_reduce_close() -> None:
    p1 = fold(buy("10", "100", fee="1"))
    assert (p1.qty, p1.cost, p1.avg_px, p1.realized_pnl, p1.fees, p1.cash) == dec(10, 1000, 100, 0, 1, "-1001")
    assert p1.unrealized_pnl(D("105")) == 50

    p2 = p1.apply(buy("10", "110"))
    assert (p2.qty, p2.cost, p2.avg_px, p2.realized_pnl) == dec(20, 2100, 105, 0)
    assert p2.cash == D("-2101")

    p3 = p2.apply(sell("5", "120", fee="0.5"))  # realizes 5 * (120 - 105)
    assert (p3.qty, p3.cost, p3.avg_px, p3.realized_pnl) == dec(15, 1575, 105, 75)
    assert p3.fees == D("1.5")
    assert p3.cash == D("-1501.5")

    p4 = p3.apply(sell("15", "100"))  # realizes 15 * (100 - 105)
    assert (p4.qty, p4.cost, p4.avg_px) == dec(0, 0, None)
    assert p4.realized_pnl == 0
    assert p4.cash == D("-1.5")
    assert p4.total_pnl(D("999")) == D("-1.5")
    assert p4.fills == 4
    assert p1.qty == 10  # positions are immutable: apply returned new ones


def test_short_open_increase_reduce_close() -> None:
    p1 = fold(sell("10", "50"))
    assert (p1.qty, p1.cost, p1.avg_px, p1.cash) == dec(-10, -500, 50, 500)
    assert p1.unrealized_pnl(D("45")) == 50  # a short gains when the price falls

    p2 = p1.apply(sell("10", "40"))
    assert (p2.qty, p2.cost, p2.avg_px) == dec(-20, -900, 45)

    p3 = p2.apply(buy("4", "35"))  # realizes 4 * (45 - 35)
    assert (p3.qty, p3.cost, p3.avg_px, p3.realized_pnl) == dec(-16, -720, 45, 40)

    p4 = p3.apply(buy("16", "50"))  # realizes 16 * (45 - 50)
    assert (p4.qty, p4.cost, p4.avg_px, p4.realized_pnl) == dec(0, 0, None, -40)
    assert p4.cash == D("-40")


def test_flip_long_to_short_in_one_fill() -> None:
    position = fold(buy("10", "100"), sell("15", "110", fee="2"))
    assert position.realized_pnl == 100  # only the 10 closed: 10 * (110 - 100)
    assert (position.qty, position.cost, position.avg_px) == dec(-5, -550, 110)
    assert position.fees == 2
    assert position.cash == D("648")
    assert position.unrealized_pnl(D("100")) == 50
    assert_identity(position, D("100"))


def test_flip_short_to_long_in_one_fill() -> None:
    position = fold(sell("3", "20"), buy("5", "18"))
    assert position.realized_pnl == 6  # 3 * (20 - 18)
    assert (position.qty, position.cost, position.avg_px) == dec(2, 36, 18)


def test_partial_close_removes_proportional_cost() -> None:
    position = fold(buy("3", "10"), buy("1", "14"), sell("1", "15"))  # avg 11
    assert position.realized_pnl == 4
    assert (position.qty, position.cost, position.avg_px) == dec(3, 33, 11)


def test_realized_pnl_with_fractional_quantities() -> None:
    position = fold(buy("0.5", "20000.10"), buy("0.25", "19999.70"), sell("0.6", "20100", fee="0.12"))
    # avg = (10000.05 + 4999.925) / 0.75 = 19999.966666...; cost removed = 14999.975 * 0.6 / 0.75 = 11999.98
    assert position.realized_pnl == D("12060") - D("11999.98")
    assert position.qty == D("0.15")
    assert position.cost == D("2999.995")
    assert position.fees == D("0.12")
    assert_identity(position, D("20050.5"))


def test_accounting_identity_with_a_non_terminating_average() -> None:
    """An average cost of 207.02 / 3 does not terminate: the identity must still hold exactly.

    ``removed`` = 69.006666...67 leaves ``cost`` and enters ``realized_pnl``; the docstring
    promises that the same amount does both, so nothing is created or lost by rounding.
    """
    position = fold(buy("2", "100.01"), buy("1", "7"), sell("1", "101"))
    assert position.qty == 2
    assert position.cash == D("-106.02")
    assert_identity(position, D("101"))
    assert_identity(position, D("0.01"))
    flat = position.apply(sell("2", "101"))  # the round trip: 303 in, 207.02 out
    assert (flat.qty, flat.cost, flat.avg_px) == dec(0, 0, None)
    assert flat.cash == D("95.98")
    assert flat.realized_pnl == D("95.98")


def test_fill_of_another_instrument_is_invalid() -> None:
    position = fold(buy("1", "10"))
    with pytest.raises(InvalidData, match="'ABC'"):
        position.apply(buy("1", "10", instrument="ABC"))
    assert position == fold(buy("1", "10"))


# -- Positions --------------------------------------------------------------------------------


def test_positions_apply_get_and_snapshot() -> None:
    positions = Positions()
    assert positions.get("XYZ") == Position("XYZ")
    assert dict(positions.snapshot()) == {}
    returned = positions.apply(buy("2", "10", instrument="XYZ"))
    positions.apply(sell("1", "5", instrument="ABC"))
    positions.apply(buy("1", "13", instrument="XYZ"))
    assert returned.qty == 2
    assert positions.get("XYZ") == fold(buy("2", "10"), buy("1", "13"))
    assert positions.get("ABC").qty == -1
    assert positions.get("NEW") == Position("NEW")

    snap = positions.snapshot()
    assert set(snap) == {"XYZ", "ABC"}
    with pytest.raises(TypeError):
        snap["XYZ"] = Position("XYZ")  # type: ignore[index]
    positions.apply(buy("1", "1", instrument="QQQ"))
    assert "QQQ" not in snap  # a snapshot does not move with later fills
    assert "NEW" not in positions.snapshot()  # get() does not create positions


def test_positions_rebuild() -> None:
    fills = [buy("2", "10"), sell("1", "5", instrument="ABC"), sell("3", "12")]
    rebuilt = Positions.rebuild(fills)
    assert isinstance(rebuilt, Positions)
    assert rebuilt.get("XYZ") == fold(buy("2", "10"), sell("3", "12"))
    assert rebuilt.get("XYZ").qty == -1
    assert rebuilt.get("ABC") == fold(sell("1", "5", instrument="ABC"), instrument="ABC")
    assert dict(Positions.rebuild([]).snapshot()) == {}


def test_positions_apply_refuses_bad_fill_before_folding() -> None:
    positions = Positions()
    positions.apply(buy("1", "10"))
    with pytest.raises(InvalidData):
        positions.apply(Fill("XYZ", "buy", D("1"), D("0")))
    assert positions.get("XYZ") == fold(buy("1", "10"))


# -- properties -------------------------------------------------------------------------------

QUANTITIES = st.integers(1, 10_000).map(lambda n: D(n).scaleb(-2))  # 0.01 .. 100.00
PRICES = st.integers(1, 1_000_000).map(lambda n: D(n).scaleb(-2))  # 0.01 .. 10000.00
FEES = st.integers(0, 500).map(lambda n: D(n).scaleb(-3))
FILLS = st.builds(
    Fill,
    instrument=st.sampled_from(["XYZ", "ABC"]),
    side=st.sampled_from(["buy", "sell"]),
    qty=QUANTITIES,
    price=PRICES,
    fee=FEES,
)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(fills=st.lists(FILLS, max_size=30))
def test_folding_one_at_a_time_equals_rebuild(fills: list[Fill]) -> None:
    positions = Positions()
    for fill in fills:
        positions.apply(fill)
    rebuilt = Positions.rebuild(fills)
    assert dict(positions.snapshot()) == dict(rebuilt.snapshot())
    by_hand: dict[str, Position] = {}
    for fill in fills:
        by_hand[fill.instrument] = by_hand.get(fill.instrument, Position(fill.instrument)).apply(fill)
    assert dict(rebuilt.snapshot()) == by_hand


@PROPERTY_SETTINGS
@given(fills=st.lists(FILLS, max_size=30), mark=PRICES)
@example(fills=[buy("2", "100.01"), buy("1", "7"), sell("1", "101")], mark=D("101"))
@example(fills=[sell("0.01", "0.02"), sell("0.10", "0.01"), buy("0.01", "0.01")], mark=D("0.01"))
def test_accounting_identity_is_exact(fills: list[Fill], mark: Decimal) -> None:
    positions = Positions()
    for fill in fills:
        position = positions.apply(fill)
        assert_identity(position, mark)
    for position in positions.snapshot().values():
        assert_identity(position, mark)


@PROPERTY_SETTINGS
@given(fills=st.lists(FILLS, max_size=30))
def test_qty_is_the_signed_sum_of_fills(fills: list[Fill]) -> None:
    positions = Positions.rebuild(fills)
    for instrument in ("XYZ", "ABC"):
        own = [f for f in fills if f.instrument == instrument]
        position = positions.get(instrument)
        assert position.qty == sum((f.signed_qty for f in own), D(0))
        assert position.fills == len(own)
        assert position.fees == sum((f.fee for f in own), D(0))
        assert position.cash == sum((-f.signed_qty * f.price - f.fee for f in own), D(0))
        assert (position.avg_px is None) == (position.qty == 0)
        if position.qty == 0:
            assert position.cost == 0
        else:
            assert position.avg_px is not None
            assert position.avg_px > 0


# -- the position machine ---------------------------------------------------------------------

FLAT_DATA = {
    "qty": D(0),
    "cost": D(0),
    "realized_pnl": D(0),
    "fees": D(0),
    "cash": D(0),
    "fills": 0,
    "last_trade_id": None,
}


def fill_data(side: str, qty: str, price: str, fee: str | None = None, trade_id: str = "T9") -> dict[str, Any]:
    data: dict[str, Any] = {"side": side, "qty": D(qty), "price": D(price), "trade_id": trade_id}
    data["client_order_id"] = "C1"
    if fee is not None:
        data["fee"] = D(fee)
    return data


def position_in(state: str) -> Entity:
    """A ``BTCUSDT`` position entity: flat, long 2 @ 10 (fee 1) or short 2 @ 10 (fee 1)."""
    entity, _ = POSITION.create("BTCUSDT")
    if state != "flat":
        POSITION.fire(entity, "fill", **fill_data("buy" if state == "long" else "sell", "2", "10", "1", "T1"))
    assert entity.state == state
    return entity


def expected(
    qty: int | str, cost: int | str, realized: int | str, fees: int | str, cash: int | str, *, fills: int
) -> dict[str, Any]:
    return {
        "qty": D(qty),
        "cost": D(cost),
        "realized_pnl": D(realized),
        "fees": D(fees),
        "cash": D(cash),
        "fills": fills,
        "last_trade_id": "T9",
    }


def test_position_is_registered_and_exported() -> None:
    assert registry.get("position") is POSITION
    assert POSITION.state_names == ("flat", "long", "short")
    assert POSITION.initial is PositionState.flat
    assert POSITION.terminal == frozenset()
    assert POSITION.triggers == ("fill",)
    assert all(rule.doc and rule.guard for rule in POSITION.rules)


def test_position_create() -> None:
    entity, created = POSITION.create("BTCUSDT")
    assert (entity.entity_id, entity.state, entity.live) == ("BTCUSDT", "flat", True)
    assert entity.data == FLAT_DATA
    assert all(type(entity.data[name]) is Decimal for name in ("qty", "cost", "realized_pnl", "fees", "cash"))
    assert (created.machine, created.trigger, created.source, created.dest) == ("position", "create", None, "flat")
    assert dict(created.data) == {}
    assert position_of(entity) == Position("BTCUSDT")


def test_position_create_refuses_any_data() -> None:
    with pytest.raises(InvalidData, match="unknown position fields: cash, qty") as info:
        POSITION.create("BTCUSDT", qty=D(1), cash=D(0))
    assert (info.value.machine, info.value.entity_id, info.value.trigger) == ("position", "BTCUSDT", "create")


# Long 2 @ 10 and short 2 @ 10 both paid a fee of 1: before the fill, cost is +-20, fees 1 and
# cash -21 (long) or 19 (short). Each case: (state, fill, dest, expected data, the guard that chose).
FILL_CASES = [
    pytest.param("flat", fill_data("buy", "2", "10", "1"), "long", (2, 20, 0, 1, -21), buys, id="flat-buy-opens-long"),
    pytest.param("flat", fill_data("sell", "2", "10"), "short", (-2, -20, 0, 0, 20), sells, id="flat-sell-opens-short"),
    pytest.param("long", fill_data("buy", "1", "13"), "long", (3, 33, 0, 1, -34), adds_or_reduces, id="long-buy-adds"),
    pytest.param(
        "long",
        fill_data("sell", "1", "13", "0.5"),
        "long",
        (1, 10, 3, "1.5", "-8.5"),
        adds_or_reduces,
        id="long-smaller-sell-reduces",
    ),
    pytest.param("long", fill_data("sell", "2", "13"), "flat", (0, 0, 6, 1, 5), closes, id="long-equal-sell-closes"),
    pytest.param(
        "long", fill_data("sell", "3", "13"), "short", (-1, -13, 6, 1, 18), flips, id="long-larger-sell-flips"
    ),
    pytest.param(
        "short", fill_data("sell", "1", "7"), "short", (-3, -27, 0, 1, 26), adds_or_reduces, id="short-sell-adds"
    ),
    pytest.param(
        "short",
        fill_data("buy", "1", "7"),
        "short",
        (-1, -10, 3, 1, 12),
        adds_or_reduces,
        id="short-smaller-buy-reduces",
    ),
    pytest.param("short", fill_data("buy", "2", "7"), "flat", (0, 0, 6, 1, 5), closes, id="short-equal-buy-closes"),
    pytest.param("short", fill_data("buy", "3", "7"), "long", (1, 7, 6, 1, -2), flips, id="short-larger-buy-flips"),
]


@pytest.mark.parametrize(("state", "data", "dest", "values", "guard"), FILL_CASES)
def test_every_state_and_fill_case(
    state: str, data: dict[str, Any], dest: str, values: tuple[int | str, ...], guard: Any
) -> None:
    entity = position_in(state)
    before = position_of(entity)
    rules = [rule for rule in POSITION.rules if PositionState(state) in rule.sources]
    chose = [rule for rule in rules if rule.guard is not None and rule.guard(entity, data)]
    assert [rule.guard for rule in chose] == [guard]  # exactly one guard lets each fill through
    assert chose[0].dest == dest

    transition = POSITION.fire(entity, "fill", **data)

    assert (transition.machine, transition.entity_id, transition.trigger) == ("position", "BTCUSDT", "fill")
    assert (transition.source, transition.dest, entity.state) == (state, dest, dest)
    assert dict(transition.data) == data
    assert entity.data == expected(*values, fills=before.fills + 1)
    # The effect is the fold: one place computes positions.
    fee = data.get("fee", D(0))
    assert position_of(entity) == before.apply(
        Fill("BTCUSDT", data["side"], data["qty"], data["price"], fee, data["trade_id"])
    )


def test_fill_accepts_journaled_strings_and_ints() -> None:
    """Replaying a journaled row gives Decimals back as strings: the same fill, the same position."""
    entity = position_in("flat")
    POSITION.fire(entity, "fill", side="buy", qty="0.50", price=100, fee="-0.01", trade_id="T1", client_order_id="")
    assert entity.state == "long"
    assert entity.data == {
        "qty": D("0.50"),
        "cost": D("50.00"),
        "realized_pnl": D(0),
        "fees": D("-0.01"),
        "cash": D("-49.99"),
        "fills": 1,
        "last_trade_id": "T1",
    }


BAD_FILLS = [
    pytest.param({"side": None}, "side must be buy or sell", id="no-side"),
    pytest.param({"side": "BUY"}, "side must be buy or sell", id="upper-case-side"),
    pytest.param({"qty": None}, "fill qty must be a decimal number", id="no-qty"),
    pytest.param({"qty": 1.5}, "qty is a float", id="float-qty"),
    pytest.param({"qty": True}, "fill qty must be a decimal number", id="bool-qty"),
    pytest.param({"qty": "one"}, "fill qty is not a number", id="text-qty"),
    pytest.param({"qty": D(0)}, "fill qty must be positive", id="zero-qty"),
    pytest.param({"qty": D(-1)}, "fill qty must be positive", id="negative-qty"),
    pytest.param({"qty": D("NaN")}, "not a finite number", id="nan-qty"),
    pytest.param({"price": D(0)}, "fill price must be positive", id="zero-price"),
    pytest.param({"price": "Infinity"}, "fill price must be finite", id="infinite-price"),
    pytest.param({"fee": 0.1}, "fee is a float", id="float-fee"),
    pytest.param({"fee": "-Infinity"}, "fill fee must be finite", id="infinite-fee"),
    pytest.param({"trade_id": None}, "trade_id", id="no-trade-id"),
    pytest.param({"trade_id": ""}, "trade_id", id="empty-trade-id"),
    pytest.param({"trade_id": 7}, "trade_id", id="int-trade-id"),
    pytest.param({"client_order_id": None}, "client_order_id", id="no-client-order-id"),
    pytest.param({"client_order_id": 1}, "client_order_id", id="int-client-order-id"),
    pytest.param({"instrument": "ETHUSDT"}, "unknown fill fields: instrument", id="unknown-field"),
]


@pytest.mark.parametrize("state", [s.value for s in PositionState])
@pytest.mark.parametrize(("changes", "message"), BAD_FILLS)
@pytest.mark.parametrize("side", ["buy", "sell"])
def test_bad_fill_is_refused_and_changes_nothing(state: str, changes: dict[str, Any], message: str, side: str) -> None:
    entity = position_in(state)
    data = {**fill_data(side, "2", "10"), **changes}
    data = {name: value for name, value in data.items() if value is not None}
    before = (entity.state, dict(entity.data))
    with pytest.raises(InvalidData, match=message) as info:
        POSITION.fire(entity, "fill", **data)
    assert (info.value.machine, info.value.entity_id, info.value.state) == ("position", "BTCUSDT", state)
    assert (entity.state, entity.data) == before


def test_guards_refuse_bad_data_themselves() -> None:
    entity = position_in("long")
    for guard in (buys, sells, closes, flips, adds_or_reduces):
        with pytest.raises(InvalidData, match="fill qty must be positive"):
            guard(entity, fill_data("sell", "0", "10"))


def test_unknown_trigger_is_an_invalid_transition() -> None:
    entity = position_in("long")
    with pytest.raises(InvalidTransition, match="unknown trigger"):
        POSITION.fire(entity, "close", **fill_data("sell", "2", "10"))
    assert entity.data["qty"] == 2


def test_position_of_refuses_other_machines_entities() -> None:
    run, _ = RUN.create("1", started_ns=1)
    with pytest.raises(NotAPosition, match="not a position entity") as info:
        position_of(run)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, StateMachineError)


def test_restore_round_trip_through_the_journal_codec() -> None:
    entity = position_in("short")
    POSITION.fire(entity, "fill", **fill_data("buy", "0.5", "9.75", "0.001"))
    text = codec.encode_text(entity.data)
    decoded = codec.decode(text)
    assert decoded["qty"] == "-1.5"  # the journal stores Decimals as strings
    restored = POSITION.restore("BTCUSDT", entity.state, decoded)
    assert (restored.state, restored.data) == (entity.state, entity.data)
    assert all(type(restored.data[name]) is Decimal for name in ("qty", "cost", "realized_pnl", "fees", "cash"))
    assert codec.encode_text(restored.data) == text
    assert position_of(restored) == position_of(entity)
    # A restored position folds on exactly like the one it was saved from.
    POSITION.fire(restored, "fill", **fill_data("buy", "2", "8"))
    POSITION.fire(entity, "fill", **fill_data("buy", "2", "8"))
    assert entity.state == "long"
    assert (restored.state, restored.data) == (entity.state, entity.data)


ONE_INSTRUMENT_FILLS = st.builds(
    Fill,
    instrument=st.just("BTCUSDT"),
    side=st.sampled_from(["buy", "sell"]),
    qty=st.integers(1, 400).map(lambda n: D(n).scaleb(-2)),  # small range: flats and flips happen often
    price=PRICES,
    fee=FEES | st.integers(-50, 0).map(lambda n: D(n).scaleb(-3)),
)


@PROPERTY_SETTINGS
@given(fills=st.lists(ONE_INSTRUMENT_FILLS, max_size=40))
@example(fills=[buy("2", "10", instrument="BTCUSDT"), sell("2", "11", instrument="BTCUSDT")])
@example(fills=[sell("1", "10", instrument="BTCUSDT"), buy("3", "9", instrument="BTCUSDT")])
def test_position_machine_equals_the_fold(fills: list[Fill]) -> None:
    entity, created = POSITION.create("BTCUSDT")
    replayed, _ = POSITION.create("BTCUSDT", **codec.decode(codec.encode_text(created.data)))
    for i, fill in enumerate(fills):
        trade_id = f"T{i}"
        transition = POSITION.fire(
            entity,
            "fill",
            side=fill.side,
            qty=fill.qty,
            price=fill.price,
            fee=fill.fee,
            trade_id=trade_id,
            client_order_id=f"C{i // 3}",
        )
        qty = entity.data["qty"]
        assert entity.state == ("long" if qty > 0 else "short" if qty < 0 else "flat")
        assert transition.dest == entity.state
        assert entity.data["last_trade_id"] == trade_id
        # The audit replays the journaled row (Decimals as strings): the same checkpoint, byte for byte.
        POSITION.fire(replayed, "fill", **codec.decode(codec.encode_text(transition.data)))
        assert replayed.state == entity.state
        assert codec.encode_text(replayed.data) == codec.encode_text(entity.data)
    assert position_of(entity) == Positions.rebuild(fills).get("BTCUSDT")
    restored = POSITION.restore("BTCUSDT", entity.state, codec.decode(codec.encode_text(entity.data)))
    assert (restored.state, restored.data) == (entity.state, entity.data)
