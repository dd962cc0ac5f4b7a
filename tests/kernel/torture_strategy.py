"""``Churn``: an order-heavy strategy for the kill -9 torture test (``tests/kernel/test_torture.py``).

On every quote of its instrument it keeps a handful of orders working near the market on both
sides, so fills happen regularly and every kind of request (place, cancel, replace) is in flight
most of the time:

* the oldest working orders are canceled once ``max_open - 2`` orders are open;
* one working order whose price drifted more than ``drift_ticks`` from where it would be placed now
  is replaced at the current price;
* a bid ``offset_ticks`` below and an ask ``offset_ticks`` above the mid are placed while there is
  room under ``max_open``, and while a fill of every open order on that side could not take the
  position beyond ``max_position``.

Orders waiting for the venue (``new``, ``pending_*``) are never touched again until answered.
Decimal only; nothing is done while ``ctx.trading_allowed`` is false. The strategy keeps no state:
a restarted kernel picks up the orders it left, whatever they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from kernel.feed.events import QuoteEvent
from kernel.strategies import PENDING_STATES, ceil_to_tick, check_decimal, check_instrument, floor_to_tick
from kernel.strategy import Cancel, Context, Intent, MarketEvent, Place, Replace, Strategy, StrategyError

ZERO = Decimal(0)


class Churn(Strategy):
    """Places, replaces and cancels orders near the market on every quote, keeping at most ``max_open``."""

    name: ClassVar[str] = "churn"
    timer_interval_ms: ClassVar[int | None] = None

    @dataclass(frozen=True)
    class Params:
        instrument: str = "BTCUSDT"
        qty: Decimal = Decimal("0.001")
        tick_size: Decimal = Decimal("0.01")
        offset_ticks: Decimal = Decimal("1")
        drift_ticks: Decimal = Decimal("3")
        max_open: int = 6
        max_position: Decimal = Decimal("0.01")

        def __post_init__(self) -> None:
            check_instrument(self.instrument)
            check_decimal("qty", self.qty, positive=True)
            check_decimal("tick_size", self.tick_size, positive=True)
            check_decimal("offset_ticks", self.offset_ticks)
            check_decimal("drift_ticks", self.drift_ticks)
            check_decimal("max_position", self.max_position, positive=True)
            if self.max_open < 2:
                raise StrategyError(f"max_open must be at least 2, got {self.max_open}")

    params: Params

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)

    def on_start(self, ctx: Context) -> list[Intent]:
        return self.churn(ctx, ctx.mid(self.params.instrument))

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Intent]:
        if not isinstance(event, QuoteEvent) or event.instrument != self.params.instrument:
            return []
        return self.churn(ctx, (event.bid + event.ask) / 2)

    def churn(self, ctx: Context, mid: Decimal | None) -> list[Intent]:
        """The intents for one quote: cancel the oldest, replace one that drifted, place both sides."""
        p = self.params
        if not ctx.trading_allowed or mid is None or mid <= 0:
            return []
        bid = floor_to_tick(mid - p.offset_ticks * p.tick_size, p.tick_size)
        ask = ceil_to_tick(mid + p.offset_ticks * p.tick_size, p.tick_size)
        if bid <= 0:
            return []
        orders = ctx.orders_of(p.instrument)  # oldest first
        working = [o for o in orders if o.state not in PENDING_STATES]
        intents: list[Intent] = []
        open_count = len(orders)
        touched: set[str] = set()
        for order in working:
            if open_count <= p.max_open - 2:
                break
            intents.append(Cancel(order.client_order_id))
            touched.add(order.client_order_id)
            open_count -= 1
        for order in reversed(working):
            if order.client_order_id in touched or order.price is None:
                continue
            target = bid if order.side == "buy" else ask
            if abs(order.price - target) > p.drift_ticks * p.tick_size:
                intents.append(Replace(order.client_order_id, price=target))
                break
        position = ctx.position(p.instrument).qty
        buys = sum((o.leaves_qty for o in orders if o.side == "buy"), ZERO)
        sells = sum((o.leaves_qty for o in orders if o.side == "sell"), ZERO)
        if len(orders) < p.max_open and position + buys + p.qty <= p.max_position:
            intents.append(Place(p.instrument, "buy", p.qty, bid, tag="churn-bid"))
        if len(orders) + 1 < p.max_open and position - sells - p.qty >= -p.max_position:
            intents.append(Place(p.instrument, "sell", p.qty, ask, tag="churn-ask"))
        return intents


__all__ = ["Churn"]
