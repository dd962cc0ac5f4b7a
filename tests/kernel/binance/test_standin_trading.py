"""Issue 16, first Done-when item: a ``kind = "binance"`` kernel against the loopback stand-in.

Place, partial fill, fill, cancel, replace (price: cancelReplace; qty down: amend.keepPriority), IOC
expiry, reject (local denial and venue reject) and a restart with an order in flight: each one's
journaled states, cum_qty, fills (trade ids, qty, price, as the stand-in holds them) and the
position folded from the journal. The stand-in's market walks one tick at a time around 30000
(tick 0.01): orders 50 away never meet it unless the test prints a trade through them.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel.strategy import Cancel, Place, Replace
from storage.audit import AuditReader
from tests.kernel.binance.standin_kernel import (
    API_KEY,
    SECRET,
    SYMBOL,
    StandinKernel,
    journal_fills,
    market_trade,
    record_calls,
    requests,
    timeline,
    venue_fills,
    venue_order,
)
from tests.standins.binance_api import ApiFaults, BinanceApiStandIn

pytestmark = pytest.mark.asyncio


def standin(**options: object) -> BinanceApiStandIn:
    return BinanceApiStandIn(SYMBOL, api_keys={API_KEY: SECRET}, pace_ms=100, max_seconds=120, **options)  # type: ignore[arg-type]


async def test_place_partial_fill_fill(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "accepted", "the ack")
        assert sk.order(coid).data["venue_order_id"] == str(venue_order(venue, coid).order_id)

        await market_trade(venue, D("29950.00"), D("0.0004"), buyer_maker=True)
        await sk.until(lambda: sk.state(coid) == "partially_filled", "the partial fill")
        assert sk.order(coid).data["cum_qty"] == D("0.0004")
        assert venue_order(venue, coid).status == "PARTIALLY_FILLED"

        await market_trade(venue, D("29949.00"), D("0.002"), buyer_maker=True)
        await sk.until(lambda: sk.state(coid) == "filled", "the fill")
        order = sk.order(coid)
        assert order.data["cum_qty"] == D("0.001")
        assert order.data["leaves_qty"] == D("0")
        assert venue_order(venue, coid).status == "FILLED"
        assert timeline(sk.journal_path, coid) == [
            ("create", "new"),
            ("submit", "pending_new"),
            ("accept", "accepted"),
            ("fill", "partially_filled"),
            ("fill", "filled"),
        ]
        fills = journal_fills(sk.journal_path, coid)
        # a resting buy fills at its own price, by the market trade's qty (then what is left)
        assert [(q, p) for _, q, p in fills] == [(D("0.0004"), D("29950.00")), (D("0.0006"), D("29950.00"))]
        assert fills == venue_fills(venue, coid)
        position = sk.position()
        assert (position.qty, position.cost, position.fills) == (D("0.001"), D("29.95"), 2)
        # Binance takes a buyer's commission in BTC (0.1 %): 0.0000004 and 0.0000006 BTC, valued at 29950
        assert position.fees == D("0.02995")
        assert requests(venue, "order.place") == 1


async def test_a_market_order_fills_at_the_book(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "sell", D("0.001"), order_type="market"))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "filled", "the fill")
        at_venue = venue_order(venue, coid)
        assert (at_venue.type, at_venue.status, at_venue.executed) == ("MARKET", "FILLED", D("0.001"))
        assert timeline(sk.journal_path, coid) == [
            ("create", "new"),
            ("submit", "pending_new"),
            ("accept", "accepted"),
            ("fill", "filled"),
        ]
        fills = journal_fills(sk.journal_path, coid)
        assert [q for _, q, _ in fills] == [D("0.001")]  # the best bid holds at least 0.025
        assert fills == venue_fills(venue, coid)
        price = fills[0][2]
        assert D("29000") < price < D("31000")
        position = sk.position()
        assert (position.qty, position.cost, position.fills) == (D("-0.001"), -price * D("0.001"), 1)
        assert position.fees == price * D("0.001") * D("0.001")  # 0.1 % of the USDT received


async def test_cancel_after_a_partial_fill(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "sell", D("0.002"), D("30050.00")))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "accepted", "the ack")
        await market_trade(venue, D("30050.00"), D("0.0005"), buyer_maker=False)
        await sk.until(lambda: sk.state(coid) == "partially_filled", "the partial fill")

        await sk.act(Cancel(coid))
        await sk.until(lambda: sk.state(coid) == "canceled", "the cancel")
        assert venue_order(venue, coid).status == "CANCELED"
        assert requests(venue, "order.cancel") == 1
        order = sk.order(coid)
        assert (order.data["cum_qty"], order.data["leaves_qty"]) == (D("0.0005"), D("0"))
        assert timeline(sk.journal_path, coid) == [
            ("create", "new"),
            ("submit", "pending_new"),
            ("accept", "accepted"),
            ("fill", "partially_filled"),
            ("request_cancel", "pending_cancel"),
            ("cancel", "canceled"),
        ]
        fills = journal_fills(sk.journal_path, coid)
        assert [(q, p) for _, q, p in fills] == [(D("0.0005"), D("30050.00"))]
        assert fills == venue_fills(venue, coid)
        position = sk.position()
        assert (position.qty, position.fills) == (D("-0.0005"), 1)
        # a seller's commission is in USDT: 0.1 % of 15.025
        assert position.fees == D("0.015025")


async def test_replace_the_price_is_a_cancel_replace_keeping_our_id(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "accepted", "the ack")
        first = venue_order(venue, coid).order_id

        await sk.act(Replace(coid, price=D("29940.00")))
        await sk.until(
            lambda: sk.state(coid) == "accepted" and sk.order(coid).data["price"] == D("29940.00"), "the replace"
        )
        second = venue_order(venue, coid)
        assert second.order_id != first
        assert (second.price, second.qty, second.status) == (D("29940.00"), D("0.001"), "NEW")
        assert venue.exchange.orders[first].status == "CANCELED"
        assert requests(venue, "order.cancelReplace") == 1
        assert requests(venue, "order.place") == 1

        await market_trade(venue, D("29940.00"), D("0.001"), buyer_maker=True)
        await sk.until(lambda: sk.state(coid) == "filled", "the fill")
        assert timeline(sk.journal_path, coid) == [
            ("create", "new"),
            ("submit", "pending_new"),
            ("accept", "accepted"),
            ("request_replace", "pending_replace"),
            ("replace", "accepted"),
            ("fill", "filled"),
        ]
        fills = journal_fills(sk.journal_path, coid)
        assert [(q, p) for _, q, p in fills] == [(D("0.001"), D("29940.00"))]
        assert fills == venue_fills(venue, coid)
        assert sk.order(coid).data["cum_qty"] == D("0.001")
        position = sk.position()
        assert (position.qty, position.cost, position.fills) == (D("0.001"), D("29.94"), 1)


async def _replaced_after_a_partial_fill(sk: StandinKernel, venue: BinanceApiStandIn) -> str:
    """A buy of 0.002 at 29950 fills 0.0005, then moves to 29940: the new leg carries 0.0015."""
    await sk.act(Place(SYMBOL, "buy", D("0.002"), D("29950.00")))
    (coid,) = sk.order_ids()
    await sk.until(lambda: sk.state(coid) == "accepted", "the ack")
    await market_trade(venue, D("29950.00"), D("0.0005"), buyer_maker=True)
    await sk.until(lambda: sk.state(coid) == "partially_filled", "the partial fill")
    await sk.act(Replace(coid, price=D("29940.00")))
    await sk.until(
        lambda: sk.state(coid) == "partially_filled" and sk.order(coid).data["price"] == D("29940.00"), "the replace"
    )
    leg = venue_order(venue, coid)
    assert (leg.price, leg.qty, leg.executed) == (D("29940.00"), D("0.0015"), D("0"))
    data = sk.order(coid).data
    assert (data["qty"], data["cum_qty"], data["leaves_qty"]) == (D("0.002"), D("0.0005"), D("0.0015"))
    return coid


async def _fill_the_new_leg(sk: StandinKernel, venue: BinanceApiStandIn, coid: str) -> None:
    """0.001 then the last 0.0005 of the new leg fill at 29940: the order completes at 0.002."""
    await market_trade(venue, D("29940.00"), D("0.001"), buyer_maker=True)
    await sk.until(lambda: sk.order(coid).data["cum_qty"] == D("0.0015"), "a part of the new leg")
    assert sk.state(coid) == "partially_filled"
    await market_trade(venue, D("29940.00"), D("0.001"), buyer_maker=True)
    await sk.until(lambda: sk.state(coid) == "filled", "the rest")
    assert sk.order(coid).data["cum_qty"] == D("0.002")
    assert requests(venue, "order.place") == 1
    assert requests(venue, "order.cancelReplace") == 1
    assert timeline(sk.journal_path, coid) == [
        ("create", "new"),
        ("submit", "pending_new"),
        ("accept", "accepted"),
        ("fill", "partially_filled"),
        ("request_replace", "pending_replace"),
        ("replace", "partially_filled"),
        ("fill", "partially_filled"),
        ("fill", "filled"),
    ]
    fills = journal_fills(sk.journal_path, coid)
    assert [(q, p) for _, q, p in fills] == [
        (D("0.0005"), D("29950.00")),
        (D("0.001"), D("29940.00")),
        (D("0.0005"), D("29940.00")),
    ]
    assert fills == venue_fills(venue, coid)
    position = sk.position()
    # 0.0005 * 29950 + 0.0015 * 29940
    assert (position.qty, position.cost, position.fills) == (D("0.002"), D("59.885"), 3)


async def test_replace_the_price_after_a_partial_fill(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        coid = await _replaced_after_a_partial_fill(sk, venue)
        await _fill_the_new_leg(sk, venue, coid)


async def test_replace_the_price_after_a_partial_fill_then_restart(tmp_path: Path) -> None:
    async with standin() as venue:
        async with StandinKernel(venue, tmp_path) as first:
            coid = await _replaced_after_a_partial_fill(first, venue)
        async with StandinKernel(venue, tmp_path) as second:
            assert second.position().qty == D("0.0005")  # folded again from the journal
            await second.until(lambda: second.k.manager is not None and not second.k.manager.paused, "entry open")
            assert (second.state(coid), second.order(coid).data["qty"]) == ("partially_filled", D("0.002"))
            await _fill_the_new_leg(second, venue, coid)


async def test_after_a_cancel_replace_the_journal_names_the_new_order_id(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "accepted", "the ack")
        await sk.act(Replace(coid, price=D("29940.00")))
        await sk.until(lambda: sk.order(coid).data["price"] == D("29940.00"), "the replace")
        first = sk.order(coid).data["venue_order_id"]  # the id the order was first acknowledged under
        with AuditReader(sk.journal_path) as reader:
            replaces = [row["data"] for row in reader.timeline(coid, "order") if row["trigger"] == "replace"]
        assert [r["venue_order_id"] for r in replaces] == [str(venue_order(venue, coid).order_id)]
        assert replaces[0]["venue_order_id"] != first


async def test_replace_a_smaller_qty_is_an_amend_keeping_the_order(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", D("0.002"), D("29950.00")))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "accepted", "the ack")
        await market_trade(venue, D("29950.00"), D("0.0005"), buyer_maker=True)
        await sk.until(lambda: sk.state(coid) == "partially_filled", "the partial fill")
        order_id = venue_order(venue, coid).order_id

        await sk.act(Replace(coid, qty=D("0.0015")))
        await sk.until(
            lambda: sk.state(coid) == "partially_filled" and sk.order(coid).data["qty"] == D("0.0015"), "the amend"
        )
        at_venue = venue_order(venue, coid)
        assert (at_venue.order_id, at_venue.qty, at_venue.executed) == (order_id, D("0.0015"), D("0.0005"))
        assert requests(venue, "order.amend.keepPriority") == 1
        assert requests(venue, "order.cancelReplace") == 0
        assert sk.order(coid).data["venue_order_id"] == str(order_id)
        assert sk.order(coid).data["leaves_qty"] == D("0.001")

        await market_trade(venue, D("29950.00"), D("0.002"), buyer_maker=True)
        await sk.until(lambda: sk.state(coid) == "filled", "the fill")
        assert timeline(sk.journal_path, coid) == [
            ("create", "new"),
            ("submit", "pending_new"),
            ("accept", "accepted"),
            ("fill", "partially_filled"),
            ("request_replace", "pending_replace"),
            ("replace", "partially_filled"),
            ("fill", "filled"),
        ]
        fills = journal_fills(sk.journal_path, coid)
        assert [(q, p) for _, q, p in fills] == [(D("0.0005"), D("29950.00")), (D("0.001"), D("29950.00"))]
        assert fills == venue_fills(venue, coid)
        assert sk.order(coid).data["cum_qty"] == D("0.0015")
        position = sk.position()
        assert (position.qty, position.cost, position.fills) == (D("0.0015"), D("44.925"), 2)


async def test_an_ioc_away_from_the_market_expires(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00"), tif="ioc"))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "expired", "the expiry")
        assert venue_order(venue, coid).status == "EXPIRED"
        order = sk.order(coid)
        assert (order.data["cum_qty"], order.data["leaves_qty"]) == (D("0"), D("0"))
        assert timeline(sk.journal_path, coid) == [
            ("create", "new"),
            ("submit", "pending_new"),
            ("accept", "accepted"),
            ("expire", "expired"),
        ]
        assert journal_fills(sk.journal_path, coid) == venue_fills(venue, coid) == []
        assert sk.position().qty == D("0")


@pytest.mark.parametrize(
    ("qty", "price", "why"),
    [
        (D("0.001"), D("29950.005"), "tick"),  # PRICE_FILTER tickSize 0.01
        (D("0.000015"), D("29950.00"), "lot"),  # LOT_SIZE stepSize 0.00001
        (D("0.0001"), D("29950.00"), "notional"),  # 2.995 < NOTIONAL minNotional 5
    ],
)
async def test_a_filter_violation_is_denied_here_and_never_sent(tmp_path: Path, qty: D, price: D, why: str) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", qty, price))
        (coid,) = sk.order_ids()
        assert sk.state(coid) == "denied"
        assert timeline(sk.journal_path, coid) == [("create", "new"), ("deny", "denied")]
        assert why in str(sk.order(coid).data["reason"])
        assert requests(venue, "order.place") == 0
        assert venue.exchange.orders == {}
        assert sk.position().qty == D("0")


async def test_a_venue_reject(tmp_path: Path) -> None:
    async with standin(faults=ApiFaults(reject_next_order=-2010)) as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
        (coid,) = sk.order_ids()
        await sk.until(lambda: sk.state(coid) == "rejected", "the reject")
        assert timeline(sk.journal_path, coid) == [("create", "new"), ("submit", "pending_new"), ("reject", "rejected")]
        assert requests(venue, "order.place") == 1
        assert venue.exchange.orders == {}
        assert sk.order(coid).data["reason"] == "Account has insufficient balance for requested action."
        assert sk.position().qty == D("0")


async def _stop_with_orders_in_flight(
    venue: BinanceApiStandIn, directory: Path, *, crash: bool = False
) -> tuple[str, str]:
    """A kernel places a resting buy (acked), then a sell whose ``order.place`` is served but never
    answered while the user data stream has gone quiet (its events lost); the kernel stops (or
    crashes) with the sell ``pending_new``. Returns (the buy's id, the sell's id)."""
    async with StandinKernel(venue, directory) as first:
        await first.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
        (resting,) = first.order_ids()
        await first.until(lambda: first.state(resting) == "accepted", "the ack")
        for conn in venue._api:  # the user data stream goes quiet: its events are lost
            conn.subscriptions.clear()
        venue.faults.drop_answer_to = "order.place"  # the next order.place is served, never answered
        await first.act(Place(SYMBOL, "sell", D("0.002"), D("30050.00")))
        in_flight = first.order_ids()[1]
        await first.until(lambda: venue.exchange.find(None, in_flight) is not None, "the order at the venue")
        assert first.state(in_flight) == "pending_new"
        if crash:
            await first.crash()
    assert timeline(first.journal_path, in_flight) == [("create", "new"), ("submit", "pending_new")]
    assert requests(venue, "order.place") == 2
    return resting, in_flight


@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "crashed"])
async def test_a_restart_with_orders_in_flight(tmp_path: Path, crash: bool) -> None:
    """While no kernel runs, the resting buy fills; the next kernel on the same journal resolves the
    sell in flight by ``order.status`` (never placed again), learns the buy's fill, and the sell goes
    on living: it fills through the event stream."""
    async with standin() as venue:
        calls = record_calls(venue)
        resting, in_flight = await _stop_with_orders_in_flight(venue, tmp_path, crash=crash)
        await market_trade(venue, D("29950.00"), D("0.001"), buyer_maker=True)

        async with StandinKernel(venue, tmp_path) as second:
            assert second.k.previous_run is not None
            assert second.k.previous_run["state"] == ("crashed" if crash else "stopped")
            await second.until(
                lambda: second.state(in_flight) == "accepted" and second.state(resting) == "filled",
                "the restart to learn what happened",
            )
            assert [c for c in calls if c[0] == "order.place"] == [("order.place", resting), ("order.place", in_flight)]
            # the sell is open at Binance: reconciliation's openOrders.status names it by our id
            assert [o.client_order_id for o in venue.exchange.orders.values()] == [resting, in_flight]
            assert second.order(in_flight).data["venue_order_id"] == str(venue_order(venue, in_flight).order_id)
            assert [(q, p) for _, q, p in venue_fills(venue, resting)] == [(D("0.001"), D("29950.00"))]
            assert journal_fills(second.journal_path, resting) == venue_fills(venue, resting)
            assert (second.position().qty, second.position().fills) == (D("0.001"), 1)

            await market_trade(venue, D("30050.00"), D("0.0007"), buyer_maker=False)
            await second.until(lambda: second.state(in_flight) == "partially_filled", "a part of the sell")
            await market_trade(venue, D("30050.00"), D("0.002"), buyer_maker=False)
            await second.until(lambda: second.state(in_flight) == "filled", "the rest of the sell")
            assert timeline(second.journal_path, resting) == [
                ("create", "new"),
                ("submit", "pending_new"),
                ("accept", "accepted"),
                ("reconcile_fill", "filled"),
            ]
            assert timeline(second.journal_path, in_flight) == [
                ("create", "new"),
                ("submit", "pending_new"),
                ("reconcile_accept", "accepted"),
                ("fill", "partially_filled"),
                ("fill", "filled"),
            ]
            assert second.order(in_flight).data["cum_qty"] == D("0.002")
            fills = journal_fills(second.journal_path, in_flight)
            assert [(q, p) for _, q, p in fills] == [(D("0.0007"), D("30050.00")), (D("0.0013"), D("30050.00"))]
            assert fills == venue_fills(venue, in_flight)
            position = second.position()
            assert (position.qty, position.fills) == (D("-0.001"), 3)


async def test_an_order_in_flight_that_filled_meanwhile_is_resolved_by_order_status(tmp_path: Path) -> None:
    async with standin() as venue:
        calls = record_calls(venue)
        resting, in_flight = await _stop_with_orders_in_flight(venue, tmp_path)
        await market_trade(venue, D("30050.00"), D("0.0007"), buyer_maker=False)
        await market_trade(venue, D("30050.00"), D("0.002"), buyer_maker=False)
        assert venue_order(venue, in_flight).status == "FILLED"
        async with StandinKernel(venue, tmp_path) as second:
            await second.until(lambda: second.state(in_flight) == "filled", "the order resolved")
            assert ("order.status", in_flight) in calls  # not open at Binance: asked for by our id
            assert [c for c in calls if c[0] == "order.place"] == [("order.place", resting), ("order.place", in_flight)]
            assert timeline(second.journal_path, in_flight) == [
                ("create", "new"),
                ("submit", "pending_new"),
                ("reconcile_accept", "accepted"),
                ("reconcile_fill", "partially_filled"),
                ("reconcile_fill", "filled"),
            ]
            fills = journal_fills(second.journal_path, in_flight)
            assert [(q, p) for _, q, p in fills] == [(D("0.0007"), D("30050.00")), (D("0.0013"), D("30050.00"))]
            assert fills == venue_fills(venue, in_flight)
            assert second.order(in_flight).data["cum_qty"] == D("0.002")
            assert second.state(resting) == "accepted"
            assert (second.position().qty, second.position().fills) == (D("-0.002"), 2)


async def test_a_fill_missed_on_an_order_still_open_is_learned_at_restart(tmp_path: Path) -> None:
    async with standin() as venue:
        _, in_flight = await _stop_with_orders_in_flight(venue, tmp_path)
        await market_trade(venue, D("30050.00"), D("0.0007"), buyer_maker=False)
        async with StandinKernel(venue, tmp_path) as second:
            await second.until(lambda: second.state(in_flight) != "pending_new", "the order resolved")
            await second.until(lambda: second.state(in_flight) == "partially_filled", "the missed fill", timeout=3)
            assert requests(venue, "order.place") == 2
            assert second.order(in_flight).data["cum_qty"] == D("0.0007")
            assert journal_fills(second.journal_path, in_flight) == venue_fills(venue, in_flight)
            assert second.position().qty == D("-0.0007")
