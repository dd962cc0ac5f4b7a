"""``momentum``: buy after the last trades rose by a threshold, sell after they fell by it.

The strategy keeps the last ``lookback`` trade prices of its instrument. Once the window is full,
a rise of at least ``threshold_bps`` from its first to its last price buys ``qty``, a fall of at
least as much sells it, with a marketable IOC limit order ``slippage_bps`` through the last trade
(a buy rounded up to the tick, a sell down). There is at most one signal per ``cooldown_ms`` (by
``ctx.now_ms``), none while one of its own orders (tag ``momentum``) is open or trading is not
allowed, and none that could take the position beyond ``max_position`` either way.

Its only state is the price window and the time of the last signal, both fed by the callbacks,
so the same events give the same intents.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from kernel.feed.events import TradeEvent
from kernel.strategies import BPS, ceil_to_tick, check_decimal, check_instrument, check_int, floor_to_tick
from kernel.strategy import Context, Intent, InvalidParams, MarketEvent, Place, Side, Strategy


class Momentum(Strategy):
    """Trades in the direction of the last ``lookback`` trades' move, with a cooldown and limits."""

    name: ClassVar[str] = "momentum"
    tag: ClassVar[str] = "momentum"
    """The tag of every order it places; an open order with it blocks new signals."""

    @dataclass(frozen=True)
    class Params:
        """Parameters of ``momentum``; ``InvalidParams`` naming the field when one is out of range."""

        instrument: str = "BTCUSDT"
        qty: Decimal = Decimal("0.001")
        lookback: int = 20
        """Trades in the window (at least 2)."""
        threshold_bps: Decimal = Decimal("5")
        """The move (last / first - 1, in bps) that triggers a signal, at or beyond it; positive."""
        max_position: Decimal = Decimal("0.003")
        """Absolute position limit."""
        cooldown_ms: int = 2000
        """At most one signal per this many milliseconds of ``ctx.now_ms``."""
        slippage_bps: Decimal = Decimal("5")
        """The limit price: last trade * (1 ± slippage_bps / 10000); below 10000."""
        tick_size: Decimal = Decimal("0.01")

        def __post_init__(self) -> None:
            check_instrument(self.instrument)
            check_decimal("qty", self.qty, positive=True)
            check_int("lookback", self.lookback, minimum=2)
            check_decimal("threshold_bps", self.threshold_bps, positive=True)
            check_decimal("max_position", self.max_position, positive=True)
            if self.max_position < self.qty:
                raise InvalidParams(f"max_position must be at least qty ({self.qty}), got {self.max_position}")
            check_int("cooldown_ms", self.cooldown_ms, minimum=0)
            if check_decimal("slippage_bps", self.slippage_bps) >= BPS:
                raise InvalidParams(f"slippage_bps must be below 10000, got {self.slippage_bps}")
            check_decimal("tick_size", self.tick_size, positive=True)

    params: Params

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._window: deque[Decimal] = deque(maxlen=self.params.lookback)
        self._last_signal_ms: int | None = None

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Intent]:
        """Record a trade of the instrument; place an IOC order when it completes a signal."""
        p = self.params
        if not isinstance(event, TradeEvent) or event.instrument != p.instrument:
            return []
        self._window.append(event.price)  # even while trading is paused: the market still moves
        if not ctx.trading_allowed or len(self._window) < p.lookback:
            return []
        if self._last_signal_ms is not None and ctx.now_ms - self._last_signal_ms < p.cooldown_ms:
            return []
        if any(order.tag == self.tag for order in ctx.orders_of(p.instrument)):
            return []
        first, last = self._window[0], self._window[-1]
        move, bar = (last - first) * BPS, first * p.threshold_bps  # exact: no division
        position = ctx.position(p.instrument).qty
        side: Side
        if move >= bar and position + p.qty <= p.max_position:
            side, price = "buy", ceil_to_tick(last * (BPS + p.slippage_bps) / BPS, p.tick_size)
        elif move <= -bar and position - p.qty >= -p.max_position:
            side, price = "sell", floor_to_tick(last * (BPS - p.slippage_bps) / BPS, p.tick_size)
        else:
            return []
        if price <= 0:
            return []  # a sell below one tick: nothing sensible to send
        self._last_signal_ms = ctx.now_ms
        return [Place(p.instrument, side, p.qty, price, tif="ioc", tag=self.tag)]


__all__ = ["Momentum"]
