"""``market_maker``: one bid and one ask around the mid of the last quote, within inventory limits.

Every decision is a function of the ``Context`` alone (the strategy keeps no state of its own), so
the same context always gives the same intents, and a restarted kernel picks up the quotes it left
resting: they are found again by their tag, ``bid`` or ``ask``.

For each side, on each quote of the instrument, each timer tick and each fill:

* while the side's order waits for the venue (``new``, ``pending_new``, ``pending_cancel``,
  ``pending_replace``), nothing is done for that side;
* if quoting it could take the position beyond ``max_position`` (counting the leaves of every
  other open order on that side), the side is not quoted and its live order is canceled;
* otherwise a missing quote is placed, and a resting one is replaced only when its price is more
  than ``requote_bps`` away from the desired price (so quotes do not churn on every tick).

A second live order with the same tag (which this strategy never creates itself) is canceled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from kernel.feed.events import QuoteEvent
from kernel.strategies import (
    BPS,
    PENDING_STATES,
    ceil_to_tick,
    check_decimal,
    check_instrument,
    floor_to_tick,
)
from kernel.strategy import (
    Cancel,
    Context,
    Intent,
    InvalidParams,
    MarketEvent,
    OrderUpdate,
    OrderView,
    Place,
    Replace,
    Side,
    Strategy,
)

ZERO = Decimal(0)


class MarketMaker(Strategy):
    """Quotes one bid and one ask around the mid, leaning against inventory, within limits."""

    name: ClassVar[str] = "market_maker"
    timer_interval_ms: ClassVar[int | None] = 1000

    @dataclass(frozen=True)
    class Params:
        """Parameters of ``market_maker``; ``InvalidParams`` naming the field when one is out of range."""

        instrument: str = "BTCUSDT"
        qty: Decimal = Decimal("0.001")
        """Quantity of each quote."""
        spread_bps: Decimal = Decimal("10")
        """Full spread: the bid at ``mid * (1 - spread_bps/2/10000)``, the ask at ``mid * (1 + ...)``."""
        tick_size: Decimal = Decimal("0.01")
        """The bid is rounded down to it, the ask up."""
        max_position: Decimal = Decimal("0.005")
        """Absolute inventory limit: a side whose fill could take the position beyond it is not quoted."""
        requote_bps: Decimal = Decimal("2")
        """A resting quote is replaced only when it is more than this away from the desired price."""
        skew_bps: Decimal = Decimal("0")
        """Both quotes move by ``-skew_bps * position / max_position``: lower when long, higher when short."""

        def __post_init__(self) -> None:
            check_instrument(self.instrument)
            check_decimal("qty", self.qty, positive=True)
            check_decimal("tick_size", self.tick_size, positive=True)
            check_decimal("max_position", self.max_position, positive=True)
            if self.max_position < self.qty:
                raise InvalidParams(f"max_position must be at least qty ({self.qty}), got {self.max_position}")
            for name in ("spread_bps", "requote_bps", "skew_bps"):
                check_decimal(name, getattr(self, name))

    params: Params

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)

    def on_start(self, ctx: Context) -> list[Intent]:
        """Quote at once if a mid is already known."""
        return self.quote(ctx, ctx.mid(self.params.instrument))

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Intent]:
        """Requote on each quote of the instrument (trades are ignored)."""
        if not isinstance(event, QuoteEvent) or event.instrument != self.params.instrument:
            return []
        return self.quote(ctx, (event.bid + event.ask) / 2)

    def on_order(self, update: OrderUpdate, ctx: Context) -> list[Intent]:
        """Requote after a fill in the instrument: the position, hence limits and skew, changed."""
        if update.fill is None or update.order.instrument != self.params.instrument:
            return []
        return self.quote(ctx, ctx.mid(self.params.instrument))

    def on_timer(self, ctx: Context) -> list[Intent]:
        """Requote every ``timer_interval_ms`` (catches up after a pending request was answered)."""
        return self.quote(ctx, ctx.mid(self.params.instrument))

    def prices(self, mid: Decimal, position: Decimal) -> tuple[Decimal | None, Decimal | None]:
        """The desired ``(bid, ask)`` for ``mid`` and ``position``, on the tick; ``None`` for a side
        whose price would not be positive. The two never cross (a zero spread on a mid on the tick
        puts the ask one tick above the bid)."""
        p = self.params
        offset = -p.skew_bps * position / p.max_position
        half = p.spread_bps / 2
        bid = floor_to_tick(mid * (BPS + offset - half) / BPS, p.tick_size)
        ask = ceil_to_tick(mid * (BPS + offset + half) / BPS, p.tick_size)
        if ask <= bid:
            ask = bid + p.tick_size
        return (bid if bid > 0 else None), (ask if ask > 0 else None)

    def quote(self, ctx: Context, mid: Decimal | None) -> list[Intent]:
        """The intents that bring both sides to the quotes desired for ``mid``; none while trading
        is not allowed or without a (positive) mid."""
        if not ctx.trading_allowed or mid is None or mid <= 0:
            return []
        instrument = self.params.instrument
        position = ctx.position(instrument).qty
        bid, ask = self.prices(mid, position)
        orders = ctx.orders_of(instrument)
        return [
            *self._side(orders, "bid", "buy", bid, position),
            *self._side(orders, "ask", "sell", ask, position),
        ]

    def _side(
        self, orders: Sequence[OrderView], tag: str, side: Side, price: Decimal | None, position: Decimal
    ) -> list[Intent]:
        p = self.params
        mine = [order for order in orders if order.tag == tag]
        if any(order.state in PENDING_STATES for order in mine):
            return []  # the venue has yet to answer: one request at a time per side
        current = mine[0] if mine else None
        intents: list[Intent] = [Cancel(extra.client_order_id) for extra in mine[1:]]
        # What this side could reach if every other same-side order and our quote filled.
        others = sum((order.leaves_qty for order in orders if order.side == side and order is not current), ZERO)
        if side == "buy":
            within = position + others + p.qty <= p.max_position
        else:
            within = position - others - p.qty >= -p.max_position
        if price is None or not within:
            if current is not None:
                intents.append(Cancel(current.client_order_id))
        elif current is None:
            intents.append(Place(p.instrument, side, p.qty, price, tag=tag))
        elif current.price is None or abs(current.price - price) * BPS > price * p.requote_bps:
            intents.append(Replace(current.client_order_id, price=price))
        return intents


__all__ = ["MarketMaker"]
