"""The strategy's ``Context``: read on first use inside a callback, yet a snapshot of its instant."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from kernel.feed.events import QuoteEvent, TradeEvent
from kernel.metrics import KernelMetrics
from kernel.portfolio import Portfolio
from kernel.strategy import Context, Intent, MarketEvent, OrderView, Place, Strategy
from kernel.strategy_host import StrategyHost
from machines.positions import Position

TRADE = TradeEvent("paper", "BTCUSDT", "t1", Decimal("50000.00"), Decimal("0.01"), "sell", 1_000, "trade")
VIEW = OrderView("o1", "BTCUSDT", "buy", "limit", "gtc", "accepted", Decimal("1"), Decimal("100"), Decimal("0"),
                 Decimal("1"), None, True)  # fmt: skip


class Source:
    """A ``ContextSource`` that counts what is read."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.allowed = True

    def trading_allowed(self) -> bool:
        self.reads.append("trading_allowed")
        return self.allowed

    def positions(self) -> Mapping[str, Position]:
        self.reads.append("positions")
        return {}

    def open_orders(self) -> Mapping[str, OrderView]:
        self.reads.append("open_orders")
        return {"o1": VIEW}

    def last_trade(self) -> Mapping[str, TradeEvent]:
        self.reads.append("last_trade")
        return {"BTCUSDT": TRADE}

    def last_quote(self) -> Mapping[str, QuoteEvent]:
        self.reads.append("last_quote")
        return {}


def test_a_reading_context_reads_each_field_once_on_first_use_and_seal_reads_the_rest() -> None:
    source = Source()
    ctx = Context.reading(7, source)
    assert source.reads == []
    assert ctx.trading_allowed is True
    assert ctx.trading_allowed is True
    assert ctx.orders_of("BTCUSDT") == [VIEW]
    assert source.reads == ["trading_allowed", "open_orders"]
    ctx.seal()
    assert source.reads == ["trading_allowed", "open_orders", "positions", "last_trade", "last_quote"]
    source.allowed = False
    ctx.seal()
    assert ctx.trading_allowed is True  # sealed: the source is no longer asked
    assert len(source.reads) == 5
    assert ctx == Context(7, True, {}, {"o1": VIEW}, {"BTCUSDT": TRADE}, {})
    assert ctx.position("BTCUSDT") == Position("BTCUSDT")
    assert repr(ctx).startswith("Context(now_ms=7, trading_allowed=True, positions={}, open_orders={'o1': ")


def test_a_context_is_read_only() -> None:
    ctx = Context(now_ms=1, trading_allowed=True, positions={}, open_orders={}, last_trade={}, last_quote={})
    with pytest.raises(AttributeError, match="read-only"):
        ctx.now_ms = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        ctx.trading_allowed = False  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        del ctx.now_ms
    assert ctx.now_ms == 1
    assert ctx != Context(2, True, {}, {}, {}, {})


class Keeper(Strategy):
    """Keeps every context it is given; places one order on the first trade; reads nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[Context] = []

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Intent]:
        self.kept.append(ctx)
        return [Place("BTCUSDT", "buy", Decimal("1"), Decimal("100"))] if len(self.kept) == 1 else []


class Reader(Strategy):
    """Reads only ``trading_allowed``; keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed: list[bool] = []

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Intent]:
        self.allowed.append(ctx.trading_allowed)
        return []


def host_of(strategy: Strategy, portfolio: Portfolio, gate: list[str | None], asked: list[int]) -> StrategyHost:
    def entry_block() -> str | None:
        asked.append(1)
        return gate[0]

    return StrategyHost(strategy, portfolio, KernelMetrics(), clock_ms=lambda: 5, entry_block=entry_block,
                        stopping=lambda: False, wake=lambda: None)  # fmt: skip


def test_a_kept_context_still_shows_the_instant_of_its_callback() -> None:
    portfolio, gate, asked = Portfolio(), [None], []
    keeper = Keeper()
    host = host_of(keeper, portfolio, gate, asked)

    def act(intent: Intent) -> None:  # the order is journaled and order entry closes meanwhile
        portfolio.open_views["o1"] = VIEW
        gate[0] = "stopping"

    host.act = act
    host.on_market(TRADE)
    first = keeper.kept[0]
    assert first.open_orders == {}
    assert first.trading_allowed is True
    assert first.last_trade == {"BTCUSDT": TRADE}
    host.on_market(TRADE)
    assert keeper.kept[1].open_orders == {"o1": VIEW}
    assert keeper.kept[1].trading_allowed is False


def test_a_callback_pays_only_for_what_it_reads() -> None:
    portfolio, gate, asked = Portfolio(), [None], []
    reader = Reader()
    host_of(reader, portfolio, gate, asked).on_market(TRADE)
    assert reader.allowed == [True]
    assert asked == [1]
    host_of(Strategy(), portfolio, gate, asked).on_market(TRADE)  # reads nothing, keeps nothing
    assert asked == [1]
