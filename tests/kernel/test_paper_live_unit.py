"""The paper venue on live market data, over real loopback sockets.

A first ``PaperVenue`` (autoplay off: its test hooks decide every trade and quote) stands for the
live market; a second one follows it through a ``FeedClient`` on the ``paper`` source
(``kernel.venue.live``) and matches orders on what it relays. A protocol client talks to the
second venue as the kernel would. Expected fills are written out by hand from the rules of
docs/paper-venue.md, never computed by the engine under test. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from kernel import paper_protocol as p
from kernel.feed.book import OrderBook
from kernel.feed.events import HeartbeatEvent, QuoteEvent, TradeEvent
from kernel.paper_defaults import TradingRules
from kernel.venue import live as live_module
from kernel.venue.depth import walk
from kernel.venue.errors import SimulatorSettingError, VenueStateError
from kernel.venue.live import LiveMarketError, to_market_event, venue_rules
from kernel.venue.marketdata import MarketQuote, MarketTrade
from kernel.venue.matching import EngineConfig, MatchingEngine
from kernel.venue.server import PaperVenue, VenueConfig
from kernel.venue.settings import LiveMarketSettings
from storage import Journal
from storage.audit import AuditReader
from tests import poll
from tests.kernel.test_venue_server import Client

X = "BTCUSDT"
LIMIT_S = 10.0
until = functools.partial(poll.eventually, timeout=LIMIT_S)


@dataclass
class Pair:
    market: PaperVenue
    venue: PaperVenue
    journal: Journal


@pytest_asyncio.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    journal = Journal.open(str(tmp_path / "kernel.db"), durability="normal")
    market = PaperVenue(str(tmp_path / "market.db"), VenueConfig(instruments=(X,), autoplay=False))
    await market.start("127.0.0.1", 0)
    settings = LiveMarketSettings("paper", (X,), ws_url=market.url)
    venue = PaperVenue(
        str(tmp_path / "venue.db"),
        VenueConfig(live=settings, slippage_bps=D(50), heartbeat_s=0.5),
        journal=journal,
        live_entity="market-test",
    )
    try:
        await venue.start("127.0.0.1", 0)
        assert venue.live is not None
        async with asyncio.timeout(LIMIT_S):
            await venue.live.client.wait_until_streaming()
        yield Pair(market, venue, journal)
    finally:
        await venue.stop()
        await market.stop()
        journal.close()


@pytest_asyncio.fixture
async def client(pair: Pair) -> AsyncIterator[Client]:
    ws = await connect(pair.venue.url, open_timeout=LIMIT_S, close_timeout=1)
    c = Client(ws)
    try:
        assert (await c.hello()).instruments == [X]
        yield c
    finally:
        await ws.close()


async def relayed(pair: Pair, count: int) -> None:
    assert pair.venue.live is not None
    live = pair.venue.live
    await until(lambda: live.events >= count, f"{count} live events")


# -- relaying ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_live_trades_and_quotes_are_relayed_to_the_venues_subscribers(pair: Pair, client: Client) -> None:
    await client.send(p.Subscribe(instruments=[X], channels=["trades", "quotes"], id="sub"))
    await client.expect(p.Subscribed)
    await pair.market.push_quote(X, D("1234.50"), D("2"), D("1234.60"), D("3"), ts_ms=1_700_000_000_000)
    await pair.market.push_trade(X, D("1234.55"), D("0.25"), "buy", ts_ms=1_700_000_000_100)
    async with asyncio.timeout(LIMIT_S):
        quote = await client.expect(p.Quote)
        trade = await client.expect(p.Trade)
    assert (quote.bid, quote.bid_qty, quote.ask, quote.ask_qty) == (D("1234.50"), D("2"), D("1234.60"), D("3"))
    assert (quote.seq, quote.ts_ms) == (1, 1_700_000_000_000)
    assert (trade.price, trade.qty, trade.taker_side, trade.seq) == (D("1234.55"), D("0.25"), "buy", 1)
    assert trade.ts_ms == 1_700_000_000_100


@pytest.mark.asyncio
async def test_the_live_feed_is_journaled_and_ends_closed(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "kernel.db"), durability="normal")
    try:
        async with PaperVenue(str(tmp_path / "m.db"), VenueConfig(instruments=(X,), autoplay=False)) as market:
            settings = LiveMarketSettings("paper", (X,), ws_url=market.url)
            venue = PaperVenue(str(tmp_path / "v.db"), VenueConfig(live=settings), journal=journal, live_entity="mk")
            await venue.start()
            assert venue.live is not None
            async with asyncio.timeout(LIMIT_S):
                await venue.live.client.wait_until_streaming()
            await venue.stop()
            assert venue.live.state == "closed"
    finally:
        journal.close()
    with AuditReader(str(tmp_path / "kernel.db")) as reader:
        states = [row["dest"] for row in reader.timeline("mk", machine="feed")]
    assert "streaming" in states
    assert states[-1] == "closed"


# -- matching on live data -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_resting_buy_fills_only_on_trades_through_it_by_their_volume(pair: Pair, client: Client) -> None:
    await pair.market.push_quote(X, D("100.00"), D("5"), D("100.10"), D("5"))
    await relayed(pair, 1)
    await client.order("b1", qty="1", price="99.00")
    assert [e.exec for e in await client.executions(1)] == ["new"]
    # Above the limit, then at it: not through, no fill.
    await pair.market.push_trade(X, D("99.50"), D("3"), "sell")
    await pair.market.push_trade(X, D("99.00"), D("3"), "sell")
    await relayed(pair, 3)
    status = await client.status("b1")
    assert status is not None
    assert status.cum_qty == 0
    # Through it: 0.4 of the trade's volume, then 0.6 of a larger one (the rest of the order).
    await pair.market.push_trade(X, D("98.90"), D("0.4"), "sell")
    (fill,) = await client.executions(1)
    assert fill.fill is not None
    assert (fill.fill.qty, fill.fill.price, fill.status) == (D("0.4"), D("99.00"), "partially_filled")
    await pair.market.push_trade(X, D("98.50"), D("2"), "sell")
    (fill,) = await client.executions(1)
    assert fill.fill is not None
    assert (fill.fill.qty, fill.fill.price, fill.status) == (D("0.6"), D("99.00"), "filled")


@pytest.mark.asyncio
async def test_a_market_order_fills_at_the_live_top_without_slippage(pair: Pair, client: Client) -> None:
    await pair.market.push_quote(X, D("100.00"), D("5"), D("100.10"), D("0.3"))
    await relayed(pair, 1)
    await client.order("m1", qty="0.5", price=None, order_type="market", tif="ioc")
    new, fill, rest = await client.executions(3)
    assert new.exec == "new"
    # Configured slippage_bps = 50 does not apply on live data: the fill is at the ask itself.
    assert fill.fill is not None
    assert (fill.fill.qty, fill.fill.price) == (D("0.3"), D("100.10"))
    assert (rest.exec, rest.reason) == ("canceled", "market remainder canceled")


@pytest.mark.asyncio
async def test_a_market_order_walks_the_live_book_when_the_source_keeps_one(pair: Pair, client: Client) -> None:
    book = OrderBook(X)
    book.load([(D("99.90"), D("1"))], [(D("100.10"), D("0.2")), (D("100.20"), D("0.5")), (D("100.40"), D("9"))])
    assert pair.venue.live is not None
    pair.venue.live.source.book = lambda instrument: book if instrument == X else None  # type: ignore[attr-defined]
    await pair.market.push_quote(X, D("99.90"), D("1"), D("100.10"), D("0.2"))
    await relayed(pair, 1)
    await client.order("m2", qty="1", price=None, order_type="market", tif="ioc")
    new, *fills = await client.executions(4)
    assert new.exec == "new"
    got = [(e.fill.qty, e.fill.price) for e in fills if e.fill is not None]
    assert got == [(D("0.2"), D("100.10")), (D("0.5"), D("100.20")), (D("0.3"), D("100.40"))]
    assert fills[-1].status == "filled"
    # What the venue's own orders took stays taken until the book moves: the next buy starts at 100.40.
    await client.order("m3", qty="0.1", price=None, order_type="market", tif="ioc")
    new, fill = await client.executions(2)
    assert fill.fill is not None
    assert (fill.fill.qty, fill.fill.price) == (D("0.1"), D("100.40"))


@pytest.mark.asyncio
async def test_an_order_off_the_instruments_tick_or_lot_is_rejected(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "kernel.db"), durability="normal")
    rules = {X: TradingRules(D("0.05"), D("0.001"), D("10"))}
    try:
        async with PaperVenue(str(tmp_path / "m.db"), VenueConfig(instruments=(X,), autoplay=False)) as market:
            settings = LiveMarketSettings("paper", (X,), ws_url=market.url, rules=rules)
            async with PaperVenue(str(tmp_path / "v.db"), VenueConfig(live=settings), journal=journal) as venue:
                assert venue.rules == rules
                async with connect(venue.url, open_timeout=LIMIT_S) as ws:
                    c = Client(ws)
                    await c.hello()
                    await c.order("t", qty="1", price="100.02")
                    await c.order("l", qty="0.0015", price="100.05")
                    await c.order("n", qty="0.001", price="100.05")
                    await c.order("ok", qty="0.2", price="100.05")
                    reports = await c.executions(4)
    finally:
        journal.close()
    assert [(r.client_order_id, r.exec) for r in reports] == [
        ("t", "rejected"),
        ("l", "rejected"),
        ("n", "rejected"),
        ("ok", "new"),
    ]
    assert reports[0].reason == "price 100.02 is not a multiple of the tick size 0.05"
    assert reports[1].reason == "qty 0.0015 is not a multiple of the lot size 0.001"
    assert reports[2].reason is not None
    assert "below the minimum 10" in reports[2].reason


@pytest.mark.asyncio
async def test_a_venue_following_a_live_market_needs_a_journal(tmp_path: Path) -> None:
    settings = LiveMarketSettings("paper", (X,), ws_url="ws://127.0.0.1:9")
    venue = PaperVenue(str(tmp_path / "v.db"), VenueConfig(live=settings))
    with pytest.raises(VenueStateError, match="needs a journal"):
        await venue.start()
    assert not venue.running


# -- pure parts ----------------------------------------------------------------------------------


def test_walk_takes_levels_best_first_within_the_limit_less_what_was_taken() -> None:
    asks = [(D("10"), D("1")), (D("11"), D("2")), (D("12"), D("5"))]
    assert walk(asks, "buy", D("2.5"), None, {}) == [(D("10"), D("1")), (D("11"), D("1.5"))]
    assert walk(asks, "buy", D("9"), D("11"), {}) == [(D("10"), D("1")), (D("11"), D("2"))]
    assert walk(asks, "buy", D("2"), None, {D("10"): D("1"), D("11"): D("0.5")}) == [
        (D("11"), D("1.5")),
        (D("12"), D("0.5")),
    ]
    bids = [(D("9"), D("1")), (D("8"), D("1"))]
    assert walk(bids, "sell", D("5"), D("8.5"), {}) == [(D("9"), D("1"))]
    assert walk(bids, "sell", D("1"), D("9.5"), {}) == []


def test_a_quote_without_sizes_fills_a_market_order_whole_at_the_touch() -> None:
    engine = MatchingEngine(EngineConfig(instruments=(X,)))
    engine.on_quote(X, D("99"), D("Infinity"), D("101"), D("Infinity"), 1)
    new = p.NewOrder(client_order_id="m", instrument=X, side="sell", order_type="market", tif="ioc", qty=D("7"))
    reports = engine.new_order(new, 2)
    assert [(r.exec, r.status) for r in reports] == [("new", "new"), ("trade", "filled")]
    assert reports[1].fill is not None
    assert (reports[1].fill.price, reports[1].fill.qty) == (D("99"), D("7"))


def test_live_events_become_the_venues_market_events() -> None:
    trade = TradeEvent("binance", X, "77", D("1.5"), D("0.2"), "sell", 1000, "trade")
    assert to_market_event(trade, lambda: 5) == MarketTrade(X, "77", D("1.5"), D("0.2"), "sell", 1000)
    quote = QuoteEvent("coinbase", "BTC-USD", D("1"), None, D("2"), None, None)
    assert to_market_event(quote, lambda: 5) == MarketQuote("BTC-USD", D("1"), D(0), D("2"), D(0), 5, sizes_known=False)
    sized = QuoteEvent("kraken", "BTC/USD", D("1"), D("3"), D("2"), D("4"), 9)
    assert to_market_event(sized, lambda: 5) == MarketQuote("BTC/USD", D("1"), D("3"), D("2"), D("4"), 9)


def test_live_settings_are_checked() -> None:
    with pytest.raises(SimulatorSettingError, match="source must be one of"):
        LiveMarketSettings("nyse", (X,))
    with pytest.raises(SimulatorSettingError, match="distinct and not empty"):
        LiveMarketSettings("binance", ())
    with pytest.raises(SimulatorSettingError, match="distinct and not empty"):
        LiveMarketSettings("binance", (X, X))


@pytest.mark.asyncio
async def test_rules_default_where_neither_fetched_nor_configured() -> None:
    configured = TradingRules(D("0.5"), D("1"))
    settings = LiveMarketSettings("kraken", ("BTC/USD", "ETH/USD"), rules={"ETH/USD": configured})
    assert await venue_rules(settings) == {
        "BTC/USD": TradingRules(D("0.01"), D("0.00001")),
        "ETH/USD": configured,
    }


@dataclass(frozen=True)
class _FetchedRules:
    instrument: str
    tick_size: D
    lot_size: D
    min_notional: D | None


@pytest.mark.asyncio
async def test_binance_rules_are_fetched_and_win_over_the_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, list[str]]] = []

    class FakeRulesModule:
        @staticmethod
        async def fetch_binance_rules(rest_url: str, instruments: list[str]) -> dict[str, _FetchedRules]:
            asked.append((rest_url, instruments))
            other = _FetchedRules("OTHER", D(1), D(1), None)
            return {X: _FetchedRules(X, D("0.01"), D("0.00001"), D("5")), "OTHER": other}

    monkeypatch.setattr(live_module, "fetch_binance_rules", FakeRulesModule.fetch_binance_rules)
    settings = LiveMarketSettings("binance", (X,), rest_url="http://127.0.0.1:9", rules={X: TradingRules(D(1), D(1))})
    assert await venue_rules(settings) == {X: TradingRules(D("0.01"), D("0.00001"), D("5"))}
    assert asked == [("http://127.0.0.1:9", [X])]

    class Failing:
        @staticmethod
        async def fetch_binance_rules(rest_url: str, instruments: list[str]) -> dict[str, _FetchedRules]:
            raise OSError("connection refused")

    monkeypatch.setattr(live_module, "fetch_binance_rules", Failing.fetch_binance_rules)
    with pytest.raises(LiveMarketError, match=r"cannot fetch binance instrument rules from http://127\.0\.0\.1:9"):
        await venue_rules(settings)
    monkeypatch.setattr(live_module, "fetch_binance_rules", FakeRulesModule.fetch_binance_rules)
    with pytest.raises(LiveMarketError, match="no instrument rules for ETHUSDT"):
        await venue_rules(LiveMarketSettings("binance", (X, "ETHUSDT"), rest_url="http://127.0.0.1:9"))


def test_risk_limits_take_the_rules_where_risk_sets_none() -> None:
    from kernel.wiring import limits_with_rules
    from machines.risk_limits import InstrumentLimits, Limits

    rules = {X: TradingRules(D("0.01"), D("0.00001"), D("5")), "ETHUSDT": TradingRules(D("0.05"), D("0.001"))}
    given = Limits(
        defaults=InstrumentLimits(lot_size=D("0.1")),
        per_instrument={"ETHUSDT": InstrumentLimits(tick_size=D("1"), max_order_qty=D("3"))},
    )
    limits = limits_with_rules(given, rules)
    assert limits.for_instrument(X) == InstrumentLimits(tick_size=D("0.01"), lot_size=D("0.1"), min_notional=D("5"))
    assert limits.for_instrument("ETHUSDT") == InstrumentLimits(
        tick_size=D("1"), lot_size=D("0.1"), max_order_qty=D("3")
    )
    assert limits.for_instrument("OTHER") == InstrumentLimits(lot_size=D("0.1"))
    assert limits_with_rules(given, {}) is given


@pytest.mark.asyncio
async def test_a_resting_bid_on_a_live_book_fills_at_its_price_once_the_queue_ahead_is_used_up(
    pair: Pair, client: Client
) -> None:
    book = OrderBook(X)
    book.load([(D("100.00"), D("2")), (D("99.90"), D("4"))], [(D("100.10"), D("1"))])
    assert pair.venue.live is not None
    pair.venue.live.source.book = lambda instrument: book if instrument == X else None  # type: ignore[attr-defined]
    await pair.market.push_quote(X, D("100.00"), D("2"), D("100.10"), D("1"))
    await relayed(pair, 1)
    await client.order("q", qty="1", price="100.00")
    assert [e.exec for e in await client.executions(1)] == ["new"]
    # 2 ahead of it at 100.00. A taker buy at 100.00 is not against the bids: nothing changes.
    await pair.market.push_trade(X, D("100.00"), D("5"), "buy")
    # Taker sells at 100.00: 1.5 leaves 0.5 ahead; the next 1.0 uses that up and fills 0.5 of the order.
    await pair.market.push_trade(X, D("100.00"), D("1.5"), "sell")
    await relayed(pair, 3)
    status = await client.status("q")
    assert status is not None
    assert status.cum_qty == 0
    await pair.market.push_trade(X, D("100.00"), D("1.0"), "sell")
    (fill,) = await client.executions(1)
    assert fill.fill is not None
    assert (fill.fill.qty, fill.fill.price, fill.status) == (D("0.5"), D("100.00"), "partially_filled")
    # Now first in line: the next 0.2 at its price is all its own.
    await pair.market.push_trade(X, D("100.00"), D("0.2"), "sell")
    (fill,) = await client.executions(1)
    assert fill.fill is not None
    assert (fill.fill.qty, fill.fill.price, fill.status) == (D("0.2"), D("100.00"), "partially_filled")


def test_without_a_book_touching_the_price_is_not_enough() -> None:
    engine = MatchingEngine(EngineConfig(instruments=(X,)))
    new = p.NewOrder(client_order_id="b", instrument=X, side="buy", qty=D("1"), price=D("100"))
    engine.new_order(new, 1)
    assert engine.on_trade(X, D("100"), D("50"), 2, "sell") == []
    (fill,) = engine.on_trade(X, D("99.99"), D("0.3"), 3, "sell")
    assert fill.fill is not None
    assert (fill.fill.qty, fill.fill.price) == (D("0.3"), D("100"))


class _Book:
    def __init__(self, bids: list[tuple[D, D]], asks: list[tuple[D, D]]) -> None:
        self.book = OrderBook(X)
        self.book.load(bids, asks)

    def __call__(self, instrument: str) -> OrderBook | None:
        return self.book if instrument == X else None


def _engine(bids: list[tuple[D, D]], asks: list[tuple[D, D]]) -> MatchingEngine:
    engine = MatchingEngine(EngineConfig(instruments=(X,)))
    engine.depth = _Book(bids, asks)
    engine.on_quote(X, bids[0][0], bids[0][1], asks[0][0], asks[0][1], 1)
    return engine


def _new(coid: str, side: str, qty: str, price: str | None, tif: str = "gtc") -> p.NewOrder:
    return p.NewOrder(
        client_order_id=coid,
        instrument=X,
        side=side,  # type: ignore[arg-type]
        order_type="market" if price is None else "limit",
        tif=tif,  # type: ignore[arg-type]
        qty=D(qty),
        price=None if price is None else D(price),
    )


def test_a_fok_walking_a_book_too_thin_is_killed_and_an_ioc_keeps_what_it_got() -> None:
    engine = _engine([(D("99"), D("1"))], [(D("101"), D("1")), (D("102"), D("1"))])
    reports = engine.new_order(_new("f", "buy", "3", "102", "fok"), 2)
    assert [(r.exec, r.reason) for r in reports] == [("new", None), ("canceled", "fok not filled: killed")]
    reports = engine.new_order(_new("i", "buy", "3", "101", "ioc"), 3)
    assert [(r.exec, r.fill.qty if r.fill else None) for r in reports] == [
        ("new", None),
        ("trade", D("1")),
        ("canceled", None),
    ]
    assert reports[2].reason == "ioc remainder canceled"


def test_a_marketable_limit_walks_then_rests_at_the_back_of_its_level_and_a_reprice_requeues() -> None:
    engine = _engine([(D("99"), D("4")), (D("98"), D("6"))], [(D("101"), D("1"))])
    reports = engine.new_order(_new("s", "sell", "2", "99"), 2)
    assert [(r.exec, r.fill.qty if r.fill else None) for r in reports] == [("new", None), ("trade", D("2"))]
    resting = engine.new_order(_new("b", "buy", "1", "98"), 3)
    assert [r.exec for r in resting] == ["new"]
    order = engine.order("b")
    assert order is not None
    assert order.queue_ahead == D("6")
    engine.replace("b", None, D("99"), 4)
    assert order.queue_ahead == D("4")  # the back of the 99 level now
    engine.replace("b", D("0.5"), None, 5)  # smaller: keeps its place
    assert order.queue_ahead == D("4")


def test_the_live_market_passes_on_only_its_instruments_trades_and_quotes(tmp_path: Path) -> None:
    journal = Journal.open(str(tmp_path / "kernel.db"), durability="normal")
    got: list[object] = []
    try:
        market = live_module.LiveMarket(
            LiveMarketSettings("paper", (X,), ws_url="ws://127.0.0.1:9"), journal, "m", got.append
        )
        assert market.book(X) is None  # the paper source keeps no book
        market._on_event(TradeEvent("paper", "OTHER", "1", D(1), D(1), "buy", 1, "trades"))
        market._on_event(HeartbeatEvent("paper", 1))
        market._on_event(TradeEvent("paper", X, "2", D(1), D(1), "buy", 1, "trades"))
        assert got == [MarketTrade(X, "2", D(1), D(1), "buy", 1)]
        assert market.events == 1
        market.stop()
    finally:
        journal.close()
