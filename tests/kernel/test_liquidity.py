"""Liquidity (``maker``/``taker``) on every fill (issue 18), from the paper venue to the order's data.

The order machine accepts a ``liquidity`` key only as ``maker`` or ``taker``, and fill data
without it is applied exactly as before; the protocol's ``Fill`` carries it optionally (a venue
that predates it still decodes); the matching engine says ``maker`` for a resting order a market
trade reached and ``taker`` for an order that filled on entry or on a reprice; the venue store
keeps it (schema 3; a version 2 store's fills read as not known). Expectations are written out by
hand from those rules.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel import paper_protocol as p
from kernel.feed.book import OrderBook
from kernel.order_reports import execution_facts, fill_facts
from kernel.venue import store_rows
from kernel.venue.matching import EngineConfig, MatchingEngine
from machines import ORDER, Entity, InvalidData
from machines.order_reports import FillFacts, execution_command
from storage.venue_store import Counters, VenueStore, VenueStoreCorrupt, read_orders
from tests.storage.test_venue_store import a_fill, an_order

X = "BTCUSDT"
T0 = 1_610_064_000_000
COUNTERS = Counters(2, 3, 2)
LIMIT = {"instrument": X, "side": "buy", "type": "limit", "qty": "10", "price": "10"}


def accepted() -> Entity:
    order, _ = ORDER.create("o-1", **LIMIT)
    ORDER.fire(order, "submit")
    ORDER.fire(order, "accept", venue_order_id="V1")
    return order


def new(coid: str, side: p.Side = "buy", qty: str = "1", price: str | None = "100") -> p.NewOrder:
    return p.NewOrder(
        client_order_id=coid,
        instrument=X,
        side=side,
        qty=D(qty),
        order_type="market" if price is None else "limit",
        tif="gtc",
        price=None if price is None else D(price),
    )


def liquidity(reports: list[p.Execution]) -> list[tuple[str, D, str | None]]:
    """Each fill of ``reports`` as (client order id, qty, liquidity)."""
    return [(r.client_order_id, r.fill.qty, r.fill.liquidity) for r in reports if r.fill is not None]


# -- the order's fill data ----------------------------------------------------------------------


def test_fill_facts_put_liquidity_in_the_fill_data_only_when_the_venue_says() -> None:
    known = FillFacts("T1", D("1"), D("10"), D("0.01"), 1, T0, "maker")
    unknown = FillFacts("T2", D("1"), D("10"), D("0.01"), 2, T0)
    assert known.data() == {
        "qty": D("1"),
        "price": D("10"),
        "trade_id": "T1",
        "fee": D("0.01"),
        "fill_seq": 1,
        "ts_ms": T0,
        "liquidity": "maker",
    }
    assert unknown.data() == {
        "qty": D("1"),
        "price": D("10"),
        "trade_id": "T2",
        "fee": D("0.01"),
        "fill_seq": 2,
        "ts_ms": T0,
    }


@pytest.mark.parametrize("side", ["maker", "taker"])
def test_the_order_machine_journals_a_maker_or_taker_fill(side: str) -> None:
    order = accepted()
    transition = ORDER.fire(order, "fill", qty="4", price="10", trade_id="T1", liquidity=side)
    assert (order.state, order.data["cum_qty"], transition.data["liquidity"]) == ("partially_filled", D("4"), side)


def test_a_fill_without_liquidity_applies_as_before() -> None:
    order = accepted()
    transition = ORDER.fire(order, "fill", qty="10", price="10", trade_id="T1")
    assert (order.state, order.data["cum_qty"]) == ("filled", D("10"))
    assert "liquidity" not in transition.data


@pytest.mark.parametrize("bad", ["Maker", "both", "", 1, True])
def test_any_other_liquidity_is_refused_with_invalid_data_and_changes_nothing(bad: object) -> None:
    order = accepted()
    before = (order.state, dict(order.data))
    with pytest.raises(InvalidData, match="liquidity must be one of maker, taker"):
        ORDER.fire(order, "fill", qty="4", price="10", trade_id="T1", liquidity=bad)
    assert (order.state, dict(order.data)) == before
    ORDER.fire(order, "fill", qty="4", price="10", trade_id="T1", liquidity="taker")  # then a good one applies
    with pytest.raises(InvalidData, match="liquidity"):  # a repeat must be well formed too
        ORDER.fire(order, "fill", qty="4", price="10", trade_id="T1", liquidity="neither")
    assert order.data["duplicate_fills"] == 0


def test_a_reconciled_fill_carries_liquidity_too() -> None:
    order = accepted()
    transition = ORDER.fire(order, "reconcile_fill", qty="10", price="10", trade_id="T1", liquidity="maker")
    assert (order.state, transition.data["liquidity"]) == ("filled", "maker")


# -- the protocol's Fill ------------------------------------------------------------------------

OLD_EXECUTION = (
    b'{"type":"execution","client_order_id":"c1","exec":"trade","status":"filled","venue_order_id":"V1",'
    b'"qty":"1","price":"100","cum_qty":"1","leaves_qty":"0","ts_ms":5,'
    b'"fill":{"trade_id":"F1","qty":"1","price":"100","fee":"0","fill_seq":1,"ts_ms":5,"client_order_id":"c1"}}'
)


def test_a_fill_from_a_venue_that_predates_liquidity_decodes_and_journals_without_it() -> None:
    message = p.decode_venue(OLD_EXECUTION)
    assert isinstance(message, p.Execution)
    assert message.fill is not None
    assert message.fill.liquidity is None
    command = execution_command(execution_facts(message))
    assert command.trigger == "fill"
    assert "liquidity" not in command.data


def test_a_fill_with_liquidity_round_trips_and_reaches_the_fill_data() -> None:
    frame = OLD_EXECUTION.replace(b'"client_order_id":"c1"}}', b'"client_order_id":"c1","liquidity":"taker"}}')
    message = p.decode_venue(frame)
    assert isinstance(message, p.Execution)
    assert message.fill is not None
    assert message.fill.liquidity == "taker"
    assert p.decode_venue(p.encode(message)) == message
    assert fill_facts(message.fill).data()["liquidity"] == "taker"


def test_a_fill_with_another_liquidity_is_a_protocol_error() -> None:
    frame = OLD_EXECUTION.replace(b'"client_order_id":"c1"}}', b'"client_order_id":"c1","liquidity":"both"}}')
    with pytest.raises(p.ProtocolError):
        p.decode_venue(frame)


# -- the matching engine ------------------------------------------------------------------------


def test_a_resting_order_reached_by_a_trade_is_the_maker() -> None:
    engine = MatchingEngine(EngineConfig(instruments=(X,)))
    assert liquidity(engine.new_order(new("b", price="100"), T0)) == []
    assert liquidity(engine.new_order(new("s", side="sell", price="102"), T0)) == []
    assert liquidity(engine.on_trade(X, D("99"), D("0.4"), T0 + 1)) == [("b", D("0.4"), "maker")]
    assert liquidity(engine.on_trade(X, D("103"), D("5"), T0 + 2)) == [("s", D("1"), "maker")]
    assert [(f.trade_id, f.liquidity) for f in engine.fills_since(0)] == [("F1", "maker"), ("F2", "maker")]


def test_an_order_that_fills_on_entry_against_the_quote_is_the_taker() -> None:
    engine = MatchingEngine(EngineConfig(instruments=(X,)))
    engine.on_quote(X, D("99"), D("2"), D("101"), D("0.5"), T0)
    # a marketable limit takes the ask's 0.5 and rests the rest; a market sell takes the bid
    assert liquidity(engine.new_order(new("b", qty="1", price="102"), T0)) == [("b", D("0.5"), "taker")]
    assert liquidity(engine.new_order(new("m", side="sell", qty="1", price=None), T0)) == [("m", D("1"), "taker")]
    # the rest of b, now resting at 102, is reached by a later trade through it: maker
    assert liquidity(engine.on_trade(X, D("101.5"), D("1"), T0 + 1)) == [("b", D("0.5"), "maker")]


def test_a_reprice_that_makes_a_resting_order_marketable_takes() -> None:
    engine = MatchingEngine(EngineConfig(instruments=(X,)))
    engine.on_quote(X, D("99"), D("2"), D("101"), D("2"), T0)
    engine.new_order(new("b", qty="1", price="100"), T0)
    assert liquidity(engine.replace("b", None, D("101"), T0 + 1)) == [("b", D("1"), "taker")]


class _Book:
    def __init__(self, bids: list[tuple[D, D]], asks: list[tuple[D, D]]) -> None:
        self.book = OrderBook(X)
        self.book.load(bids, asks)

    def __call__(self, instrument: str) -> OrderBook | None:
        return self.book if instrument == X else None


def test_on_a_live_book_a_walk_takes_and_a_queued_order_makes() -> None:
    engine = MatchingEngine(EngineConfig(instruments=(X,)))
    engine.depth = _Book([(D("99"), D("4")), (D("98"), D("6"))], [(D("101"), D("1")), (D("102"), D("1"))])
    engine.on_quote(X, D("99"), D("4"), D("101"), D("1"), T0)
    walked = engine.new_order(new("w", qty="1.5", price="102"), T0)
    assert liquidity(walked) == [("w", D("1"), "taker"), ("w", D("0.5"), "taker")]
    engine.new_order(new("q", qty="1", price="99"), T0)  # rests behind the 4 at 99
    # a taker sell of 4.6 at 99 uses up the 4 ahead; 0.6 is left for q
    assert liquidity(engine.on_trade(X, D("99"), D("4.6"), T0 + 1, taker_side="sell")) == [("q", D("0.6"), "maker")]


# -- the venue store ----------------------------------------------------------------------------


def test_the_venue_store_keeps_each_fills_liquidity_across_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "venue.db")
    maker = replace(a_fill(1), liquidity="maker")
    taker = replace(a_fill(2, qty="0.006"), liquidity="taker")
    with VenueStore.open(path) as store:
        store.save_step([an_order()], [maker, taker], COUNTERS)
    with VenueStore.open(path) as store:
        (order,) = store.load().orders
        assert [(f.trade_id, f.liquidity) for f in order.fills] == [("F1", "maker"), ("F2", "taker")]
        assert [(f.trade_id, f.liquidity) for f in store.fills_after(0, 10)] == [("F1", "maker"), ("F2", "taker")]
    conn = sqlite3.connect(path)
    try:  # hand-written SQL on the venue's own file
        assert conn.execute("SELECT trade_id, liquidity FROM fills ORDER BY fill_seq").fetchall() == [
            ("F1", "maker"),
            ("F2", "taker"),
        ]
    finally:
        conn.close()
    assert [(f.trade_id, f.liquidity) for f in read_orders(path)[0].fills] == [("F1", "maker"), ("F2", "taker")]


def test_a_version_2_store_migrates_and_its_old_fills_have_no_liquidity(tmp_path: Path) -> None:
    path = str(tmp_path / "venue.db")
    with VenueStore.open(path) as store:
        store.save_step([an_order()], [a_fill(1)], COUNTERS)
    conn = sqlite3.connect(path, isolation_level=None)  # back to version 2: no liquidity column
    conn.execute("ALTER TABLE fills DROP COLUMN liquidity")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    assert [(f.trade_id, f.liquidity) for f in read_orders(path)[0].fills] == [("F1", None)]  # read as it is
    with VenueStore.open(path) as store:
        store.save_step([], [replace(a_fill(2, qty="0.006"), liquidity="taker")], COUNTERS)
        (order,) = store.load().orders
        assert [(f.trade_id, f.liquidity) for f in order.fills] == [("F1", None), ("F2", "taker")]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    finally:
        conn.close()
    fills = [store_rows.fill_from_store(f, path) for f in order.fills]
    assert [f.liquidity for f in fills] == [None, "taker"]


def test_a_stored_fill_with_another_liquidity_is_corrupt(tmp_path: Path) -> None:
    stored = replace(a_fill(1), liquidity="both")
    with pytest.raises(VenueStoreCorrupt, match="fill 1 has liquidity 'both'"):
        store_rows.fill_from_store(stored, "venue.db")
