"""The kernel's read model of its book: positions, open orders and the last prices seen.

Kept up to date by the strategy host (market events, order changes); read by the strategy's
``Context``, the risk view, the stop and loss watchers, the halt driver and the status snapshot.
It decides nothing and does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from kernel.feed.events import FeedEvent, QuoteEvent, TradeEvent
from kernel.strategy import OrderView
from machines.base import Entity
from machines.positions import Position, Positions, position_of
from machines.risk import RiskView

ZERO = Decimal(0)


class Portfolio:
    """Positions (folded from the journaled fills), live order views, last trade and quote per instrument."""

    def __init__(self) -> None:
        self.positions = Positions()
        self.open_views: dict[str, OrderView] = {}
        self.last_trade: dict[str, TradeEvent] = {}
        self.last_quote: dict[str, QuoteEvent] = {}

    # -- updating ---------------------------------------------------------------------------------

    def record_market(self, event: FeedEvent) -> str | None:
        """Remember a trade or quote; its kind (``trade``/``quote``), or ``None`` for other events."""
        if isinstance(event, TradeEvent):
            self.last_trade[event.instrument] = event
            return "trade"
        if isinstance(event, QuoteEvent):
            self.last_quote[event.instrument] = event
            return "quote"
        return None

    def record_order(self, order: Entity) -> OrderView | None:
        """Track one order's view while it is live (and return it); forget it once it is done."""
        if order.live:
            self.open_views[order.entity_id] = view = OrderView.of(order)
            return view
        self.open_views.pop(order.entity_id, None)
        return None

    def refold(self, position_entities: Iterable[Entity]) -> int:
        """Rebuild the positions from the ``position`` entities; the number of fills they hold."""
        self.positions = Positions.of(position_of(entity) for entity in position_entities)
        return sum(p.fills for p in self.positions.snapshot().values())

    # -- reading ----------------------------------------------------------------------------------

    def mark(self, instrument: str) -> Decimal | None:
        """The last trade price of ``instrument`` (``None`` before its first trade)."""
        trade = self.last_trade.get(instrument)
        return None if trade is None else trade.price

    def unrealized(self, position: Position) -> Decimal:
        """Unrealized P&L at the mark (zero while flat or unmarked)."""
        mark = self.mark(position.instrument)
        return ZERO if mark is None or not position.qty else position.unrealized_pnl(mark)

    def total_pnl(self, position: Position) -> Decimal:
        """Realized minus fees plus unrealized at the mark."""
        mark = self.mark(position.instrument)
        return position.realized_pnl - position.fees + (position.unrealized_pnl(mark) if mark is not None else 0)

    def quantities(self) -> Mapping[str, Decimal]:
        """Signed quantity per instrument."""
        return {i: p.qty for i, p in self.positions.snapshot().items()}

    def risk_view(self, trading_state: str) -> RiskView:
        """What the pre-trade checks see: positions, open orders, reference prices, trading state."""
        reference: dict[str, Decimal] = {i: t.price for i, t in self.last_trade.items()}
        for instrument, quote in self.last_quote.items():
            reference[instrument] = (quote.bid + quote.ask) / 2
        return RiskView(
            positions=dict(self.quantities()),
            open_orders=list(self.open_views.values()),
            reference_price=reference,
            trading_state=trading_state,
        )
