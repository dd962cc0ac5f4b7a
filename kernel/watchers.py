"""The stop and loss watchers: on each trade, the emulated stop-loss and trailing stop, then the
daily loss limit and drawdown from the session's equity peak.

The decisions are the pure trackers of ``machines.stops``; this module carries them out: a stop
that fires sends a market order closing the position (journaled with its reason, tag = the kind);
a loss breach halts trading (``risk_breach``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kernel.order_flow import OrderFlow
from kernel.orders import OrderError
from kernel.portfolio import Portfolio
from machines import Entity, TransitionRefused
from machines.order_terms import OrderTerms, Side
from machines.risk import Limits
from machines.stops import EquityTracker, StopTracker
from machines.trading import is_halted_or_halting
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)


class Watchers:
    """Stops and loss limits over ``portfolio`` under ``limits``. ``flow`` is set once the order
    manager exists; ``trading()`` is the trading entity; ``fire_trading`` fires a trigger on it."""

    def __init__(
        self,
        portfolio: Portfolio,
        limits: Limits,
        *,
        trading: Callable[[], Entity | None],
        fire_trading: Callable[..., Any],
    ) -> None:
        self.portfolio = portfolio
        self.limits = limits
        self.flow: OrderFlow | None = None
        self.stops = StopTracker()
        self.equity: EquityTracker | None = None
        """Started at the first trade of the session (the session's starting P&L and its peak)."""
        self._trading = trading
        self._fire_trading = fire_trading

    def on_trade(self, instrument: str, mark: Decimal) -> None:
        """A trade printed at ``mark``: check the stops of ``instrument``, then the loss limits."""
        self.watch_stops(instrument, mark)
        self.watch_losses()

    def watch_stops(self, instrument: str, mark: Decimal) -> None:
        """Emulated stop-loss and trailing stop: when the mark crosses, send a market order that
        closes the position, journaled with the reason (``create`` data ``reason``, tag = the kind)."""
        position = self.portfolio.positions.get(instrument)
        self.stops, signal = self.stops.update(position, mark, self.limits.for_instrument(instrument))
        if signal is None:
            return
        trading, flow = self._trading(), self.flow
        if flow is None or (trading is not None and is_halted_or_halting(trading)):
            return  # a halt closes positions itself (flatten) or on purpose leaves them
        log.warning("%s", signal.reason)
        side: Side = "sell" if signal.side == "sell" else "buy"
        terms = OrderTerms(instrument, side, signal.qty, None, "market", "ioc", signal.kind, signal.reason)
        try:
            flow.send_new(terms)
        except (OrderError, TransitionRefused, JournalWriteError) as exc:
            log.error("%s: the closing order was not sent: %s", signal.reason, exc)

    def watch_losses(self) -> None:
        """Daily loss limit and drawdown from the session's equity peak: a breach halts trading."""
        if self.limits.daily_loss_limit is None and self.limits.max_drawdown is None:
            return
        portfolio = self.portfolio
        total = sum((portfolio.total_pnl(p) for p in portfolio.positions.snapshot().values()), Decimal(0))
        if self.equity is None:
            self.equity = EquityTracker.start(total)
            return
        self.equity, breach = self.equity.update(total, self.limits)
        if breach is None or self._trading() is None:
            return
        log.error("%s", breach.reason)
        self._fire_trading("risk_breach", limit=breach.limit, value=breach.value, threshold=breach.threshold)


__all__ = ["Watchers"]
