"""Bounded input at the paper venue (issue 15): strict decimals on the wire, bounded frames, and no
exception in matching escaping the order that caused it, over a real loopback WebSocket.

Each finding of the issue has its test here: nonsense decimals accepted (``1e-30``, ``"١"``,
``" 1_0 "``), NaN/Infinity/negatives reaching the engine, ``qty 1e1000000`` just under the ask
stopping market data for everyone (also after a restart, the order being stored), and a frame
nested 1,000 deep closing the connection with a logged traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from kernel import paper_protocol as p
from kernel.paper_defaults import TradingRules
from kernel.venue.server import PaperVenue, VenueConfig
from storage.venue_store import Counters, StoredOrder, VenueStore
from tests.kernel.test_venue_server import LIMIT_S, Client, X

RULES = {X: TradingRules(tick_size=D("0.01"), lot_size=D("0.00001"))}


def config(**kw: Any) -> VenueConfig:
    kw.setdefault("instruments", (X,))
    kw.setdefault("autoplay", False)
    return VenueConfig(**kw)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "venue.db")


@pytest_asyncio.fixture
async def venue(store: str) -> AsyncIterator[PaperVenue]:
    async with PaperVenue(store, config(rules=RULES)) as running:
        yield running


async def open_client(venue: PaperVenue) -> Client:
    return Client(await connect(venue.url, open_timeout=LIMIT_S, close_timeout=1, max_size=2**22))


@pytest_asyncio.fixture
async def client(venue: PaperVenue) -> AsyncIterator[Client]:
    c = await open_client(venue)
    try:
        yield c
    finally:
        await c.ws.close()


def order_frame(coid: str, **fields: object) -> str:
    frame: dict[str, object] = {
        "type": "new_order",
        "client_order_id": coid,
        "instrument": X,
        "side": "buy",
        "qty": "0.001",
        "price": "100.00",
    }
    frame.update(fields)
    return json.dumps(frame)


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


async def still_up(client: Client, ping_id: str = "up") -> None:
    await client.send(p.Ping(id=ping_id))
    assert await client.expect(p.Pong) == p.Pong(id=ping_id)


NONSENSE = [
    ("qty", "1e-30"),  # exponent notation
    ("qty", "\u0661"),  # Arabic-Indic one: Decimal() reads it as 1
    ("qty", " 1_0 "),  # Decimal() reads it as 10
    ("qty", "NaN"),
    ("qty", "Infinity"),
    ("qty", "-1"),
    ("qty", "0"),
    ("qty", "1e1000000"),
    ("qty", "0." + "0" * 40 + "1"),  # beyond the digit bound
    ("qty", "1" * 45),
    ("qty", 1e400),  # a JSON number with an exponent (json.dumps writes Infinity: not JSON at all)
    ("qty", True),
    ("price", "1E+200"),
    ("qty", "1e-19"),
    ("price", "-100.00"),
    ("price", "sNaN"),
    ("price", "+100"),
    ("price", "100."),
]


@pytest.mark.parametrize(("field", "value"), NONSENSE)
@pytest.mark.asyncio
async def test_a_nonsense_decimal_is_an_error_naming_the_field_and_the_order(
    venue: PaperVenue, client: Client, caplog: pytest.LogCaptureFixture, field: str, value: object
) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(order_frame("bad-1", **{field: value}))
        error = await client.expect(p.Error)
        assert error.code in ("invalid", "malformed")
        if error.code == "invalid":
            assert field in error.message, error.message
            assert "bad-1" in error.message, error.message
            assert error.ref == "new_order"  # the type: an order message has no id
        await still_up(client)
        assert await client.status("bad-1") is None  # never entered
        no_traceback(caplog)


@pytest.mark.parametrize(("field", "value"), [("qty", "1e-30"), ("qty", "\u0661"), ("price", " 1_0 "), ("qty", "-2")])
@pytest.mark.asyncio
async def test_a_nonsense_decimal_in_a_replace_is_an_error_and_the_order_unchanged(
    venue: PaperVenue, client: Client, field: str, value: str
) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(order_frame("r1"))
        assert (await client.expect(p.Execution)).exec == "new"
        await client.send(json.dumps({"type": "replace_order", "client_order_id": "r1", field: value}))
        error = await client.expect(p.Error)
        assert (error.code, error.ref) == ("invalid", "replace_order")
        assert "r1" in error.message
        assert field in error.message
        snapshot = await client.status("r1")
        assert snapshot is not None
        assert (snapshot.qty, snapshot.price) == (D("0.001"), D("100.00"))


@pytest.mark.asyncio
async def test_plain_decimals_and_json_numbers_without_exponent_still_pass(venue: PaperVenue, client: Client) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(order_frame("ok-1", qty="0.00100", price="99.99"))
        assert (await client.expect(p.Execution)).exec == "new"
        await client.send(order_frame("ok-2", qty=2, price=100.5))
        new = await client.expect(p.Execution)
        assert (new.exec, new.qty, new.price) == ("new", D(2), D("100.5"))


@pytest.mark.asyncio
async def test_a_large_qty_is_checked_against_the_lot_without_an_internal_error(
    venue: PaperVenue, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """1e30 is within the bounds, but 1e30 / 0.00001 has more digits than Decimal's default
    precision: the lot check raised ``InvalidOperation`` (an ``internal`` error, a traceback)."""
    async with asyncio.timeout(LIMIT_S):
        await client.send(order_frame("big", qty="1" + "0" * 30))
        big = await client.expect(p.Execution)  # past the lot check; then no balance covers it
        assert (big.exec, big.qty, big.reason) == ("rejected", D("1e30"), "insufficient balance")
        await client.send(order_frame("bigger", qty="1" + "0" * 31))
        assert "bigger" in (await client.expect(p.Error)).message
        await client.send(order_frame("big-off-lot", qty="1" + "0" * 29 + ".000001"))
        assert (await client.expect(p.Execution)).exec == "rejected"
        await client.send(order_frame("off-lot", qty="0.000001"))
        off = await client.expect(p.Execution)
        assert (off.exec, off.reason) == ("rejected", "qty 0.000001 is not a multiple of the lot size 0.00001")
        await client.send(order_frame("off-tick", price="100.001"))
        assert (await client.expect(p.Execution)).exec == "rejected"
        await client.send(p.OpenOrdersRequest(id="o"))
        assert [o.client_order_id for o in (await client.expect(p.OpenOrders)).orders] == []
        no_traceback(caplog)


async def market_flows(venue: PaperVenue, watcher: Client, n: int) -> None:
    """A trade and a quote pushed ``n`` times reach the watcher."""
    for i in range(n):
        await venue.push_quote(X, D("99.00"), D("1"), D("100.00"), D("1"))
        await venue.push_trade(X, D("98.00") - i, D("5"), "sell")
        assert (await watcher.expect(p.Quote, skip=(p.Trade,))).ask == D("100.00")
        assert (await watcher.expect(p.Trade, skip=(p.Quote,))).price == D("98.00") - i


@pytest.mark.asyncio
async def test_a_huge_qty_just_under_the_ask_is_refused_and_market_data_keeps_flowing(
    venue: PaperVenue, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    async with asyncio.timeout(LIMIT_S):
        watcher = await open_client(venue)
        await watcher.send(p.Subscribe(instruments=[X], id="s"))
        await watcher.expect(p.Subscribed)
        await venue.push_quote(X, D("99.00"), D("1"), D("100.00"), D("1"))
        await client.send(order_frame("poison", qty="1e1000000", price="99.99"))
        assert "poison" in (await client.expect(p.Error)).message
        await market_flows(venue, watcher, 3)
        await watcher.send(order_frame("w1", price="99.99"))
        assert (await watcher.expect(p.Execution, skip=(p.Quote, p.Trade))).exec == "new"
        await watcher.ws.close()
        no_traceback(caplog)


def store_poison(store: str, side: str, price: str) -> None:
    """An order as an older venue stored it: qty 1e1000000, resting (any arithmetic on it overflows)."""
    with VenueStore.open(store) as old:
        old.save_step(
            [
                StoredOrder(
                    client_order_id="poison",
                    venue_order_id="V1",
                    instrument=X,
                    side=side,
                    order_type="limit",
                    tif="gtc",
                    qty=D("1e1000000"),
                    price=D(price),
                    status="new",
                    cum_qty=D(0),
                    leaves_qty=D("1e1000000"),
                    reason=None,
                    duplicate_submits=0,
                    created_ts_ms=1,
                    priority=1,
                )
            ],
            [],
            Counters(next_venue_order=2, next_fill_seq=1, next_priority=2),
        )


@pytest.mark.asyncio
async def test_a_poison_order_stored_by_an_older_venue_does_not_stop_the_replay(
    store: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A sell at 1.00 that every replayed trade goes through: the replay died at its first trade,
    and stayed dead at every restart."""
    store_poison(store, "sell", "1.00")
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, config(autoplay=True, speed=50.0)) as venue:
        watcher = await open_client(venue)
        await watcher.send(p.Subscribe(instruments=[X], channels=["trades"], id="s"))
        await watcher.expect(p.Subscribed)
        trades = [await watcher.expect(p.Trade, skip=(p.Execution,)) for _ in range(20)]
        assert [t.seq for t in trades] == list(range(1, 21))
        await watcher.ws.close()
    no_traceback(caplog)


@pytest.mark.asyncio
async def test_a_poison_order_stored_by_an_older_venue_is_expired_at_load_and_market_data_flows(
    store: str, caplog: pytest.LogCaptureFixture
) -> None:
    store_poison(store, "buy", "99.99")
    caplog.set_level(logging.WARNING)
    async with asyncio.timeout(LIMIT_S), PaperVenue(store, config()) as venue:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("poison" in w and "qty" in w for w in warnings), warnings
        watcher = await open_client(venue)
        await watcher.send(p.Subscribe(instruments=[X], id="s"))
        await watcher.expect(p.Subscribed)
        await market_flows(venue, watcher, 3)  # each trade goes through the poison's price
        snapshot = await watcher.status("poison")
        assert snapshot is not None
        assert snapshot.status == "expired"
        assert snapshot.reason is not None
        assert "qty" in snapshot.reason
        await watcher.send(order_frame("w1", price="99.99"))
        assert (await watcher.expect(p.Execution, skip=(p.Quote, p.Trade))).exec == "new"
        await watcher.send(p.CancelOrder(client_order_id="w1"))
        assert (await watcher.expect(p.Execution, skip=(p.Quote, p.Trade))).exec == "canceled"
        await watcher.ws.close()
    no_traceback(caplog)


@pytest.mark.asyncio
async def test_an_overflow_in_a_fill_cancels_only_the_order_that_caused_it(
    venue: PaperVenue, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """An order whose numbers escaped the bounds (put there behind the wire's back, as an older
    version stored them) overflows in its fill: it alone is canceled with a typed reason, the
    traceback is logged once, the other order fills and market data flows."""
    async with asyncio.timeout(LIMIT_S):
        await client.send(p.Subscribe(instruments=[X], id="s"))
        await client.expect(p.Subscribed)
        await client.send(order_frame("fine", price="99.00"))  # first in the queue: fills first
        await client.send(order_frame("buggy", price="99.00"))
        assert [e.exec for e in await client.executions(2)] == ["new", "new"]
        buggy = venue._engine.order("buggy")
        assert buggy is not None
        buggy.qty = buggy.leaves_qty = D("1e1000000")
        await venue.push_trade(X, D("98.00"), D("1"), "sell")
        assert (await client.expect(p.Trade)).price == D("98.00")
        filled, canceled = await client.executions(2)
        assert (canceled.client_order_id, canceled.reason) == ("buggy", "venue error: Overflow")
        assert canceled.exec == "canceled"
        assert (filled.client_order_id, filled.exec, filled.status) == ("fine", "trade", "filled")
        await venue.push_trade(X, D("97.00"), D("1"), "sell")
        assert (await client.expect(p.Trade)).price == D("97.00")
        snapshot = await client.status("buggy")
        assert snapshot is not None
        assert (snapshot.status, snapshot.leaves_qty) == ("canceled", D(0))
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1
    assert "buggy" in tracebacks[0].getMessage()


@pytest.mark.asyncio
async def test_a_bug_in_a_new_order_step_ends_that_order_and_the_session_carries_on(
    venue: PaperVenue, client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venue bug (injected: taking liquidity raises for one order) after the order entered the
    book: an ``internal`` error, the order canceled (never left resting), one traceback logged."""
    engine = venue._engine
    real = engine._take_liquidity

    def take(order: Any, ts_ms: int) -> list[p.Execution]:
        if order.client_order_id == "buggy":
            raise RuntimeError("injected venue bug")
        return real(order, ts_ms)

    monkeypatch.setattr(engine, "_take_liquidity", take)
    async with asyncio.timeout(LIMIT_S):
        await client.send(order_frame("buggy"))
        error = await client.expect(p.Error)
        assert (error.code, error.ref) == ("internal", "new_order")
        canceled = await client.expect(p.Execution)
        assert (canceled.client_order_id, canceled.exec, canceled.reason) == (
            "buggy",
            "canceled",
            "venue error: RuntimeError",
        )
        await client.send(order_frame("fine"))
        assert (await client.expect(p.Execution)).exec == "new"
        await client.send(p.OpenOrdersRequest(id="o"))
        assert [o.client_order_id for o in (await client.expect(p.OpenOrders)).orders] == ["fine"]
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1
    assert "buggy" in tracebacks[0].getMessage()


@pytest.mark.parametrize("depth", [9, 1_000, 100_000])
@pytest.mark.asyncio
async def test_a_deeply_nested_frame_is_an_error_and_the_connection_stays(
    client: Client, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    async with asyncio.timeout(LIMIT_S):
        inner = "[" * depth + "]" * depth
        await client.send('{"type": "ping", "id": "deep", "x": ' + inner + "}")
        error = await client.expect(p.Error)
        assert error.code == "malformed"
        assert "nested" in error.message or "larger than" in error.message
        await still_up(client)
        no_traceback(caplog)


@pytest.mark.asyncio
async def test_a_frame_over_the_client_limit_is_an_error_and_the_connection_stays(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    async with asyncio.timeout(LIMIT_S):
        await client.send(json.dumps({"type": "ping", "id": "big", "pad": "x" * 100_000}))
        error = await client.expect(p.Error)
        assert error.code == "malformed"
        assert "larger than 65536" in error.message
        await client.send(b'{"type": "ping", "id": "bin"}')  # a binary frame is read like text
        assert await client.expect(p.Pong) == p.Pong(id="bin")
        no_traceback(caplog)


@pytest.mark.asyncio
async def test_a_fills_since_cursor_beyond_64_bits_is_an_invalid_error(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the fuzz: ``after`` 2**64 reached SQLite (``OverflowError``: an internal error, a traceback)."""
    async with asyncio.timeout(LIMIT_S):
        await client.send(json.dumps({"type": "fills_since", "after": 2**64, "id": "f"}))
        assert (await client.expect(p.Error)).code == "invalid"
        await still_up(client)
        no_traceback(caplog)
