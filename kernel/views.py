"""The kernel seen from outside: one frozen ``KernelSnapshot`` per request, and the ``/metrics`` text.

The kernel builds a snapshot of its public state (``Kernel.snapshot()``); ``/status``, the control
socket's ``status``, the live view (``kernel.status.running_status``) and ``/metrics``
(``metrics_text``) are computed from it alone, never from the kernel's internals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kernel.feed.events import QuoteEvent, TradeEvent
from kernel.metrics import KernelMetrics, PositionSample, render
from kernel.paper_protocol import Balance
from machines.base import Entity
from machines.positions import Position

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """The market-data feed: its entity, state, endpoint, instruments, gaps and reconnections."""

    entity: str
    state: str
    url: str | None
    instruments: tuple[str, ...]
    gaps: int
    reconnects: int

    @classmethod
    def of(cls, feed: Entity, reconnects: int) -> FeedSnapshot:
        """The snapshot of a ``feed`` entity, with the reconnections the kernel counted."""
        data = feed.data
        return cls(
            feed.entity_id,
            str(feed.state),
            data.get("url"),
            tuple(data.get("instruments", ())),
            int(data.get("gaps", 0)),
            reconnects,
        )


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """One live order: its id, state and (a copy of) its journaled data."""

    client_order_id: str
    state: str
    data: Mapping[str, Any]


def orders_of(orders: Iterable[Entity]) -> tuple[tuple[OrderSnapshot, ...], dict[str, int]]:
    """The live orders (oldest first) and how many orders are in each state."""
    live: list[OrderSnapshot] = []
    by_state: dict[str, int] = {}
    for order in orders:
        state = str(order.state)
        by_state[state] = by_state.get(state, 0) + 1
        if order.live:
            live.append(OrderSnapshot(order.entity_id, state, dict(order.data)))
    return tuple(live), by_state


@dataclass(frozen=True, slots=True)
class KernelSnapshot:
    """Everything status, metrics, ``/healthz`` and the live view show, at one instant.

    ``health`` is the ``/healthz`` body (``healthy``: its verdict); ``trading`` the trading
    entity's state, reason, flatten and halts (``{"state": None}`` before it exists);
    ``entry_block`` why order entry is paused (``None``: open).
    """

    pid: int
    db: str | None
    run_id: int | None
    started_ms: int
    healthy: bool
    health: Mapping[str, Any]
    health_levels: Mapping[str, int]
    trading: Mapping[str, Any]
    entry_block: str | None
    feed: FeedSnapshot | None
    last_trade: Mapping[str, TradeEvent]
    last_quote: Mapping[str, QuoteEvent]
    venue_url: str
    venue_embedded: bool
    venue_connected: bool
    venue_session: Any
    strategy_name: str
    strategy_errors: int
    intents: Mapping[str, int]
    denied: int
    fills: int
    open_orders: tuple[OrderSnapshot, ...]
    """The live orders, oldest first."""
    orders_by_state: Mapping[str, int]
    """How many orders (live or done) are in each order-machine state."""
    positions: Mapping[str, Position]
    control_socket: str | None
    http_url: str | None
    last_run: Mapping[str, Any] | None
    reconciliation: Mapping[str, Any] | None
    venue_balances: tuple[Balance, ...] | None = None
    """The account's balances at the venue as it last sent them (``None``: not yet)."""
    ship: Mapping[str, Any] | None = None
    """The in-run shipper's state and lag (``kernel.ship.Shipper.lag``; ``None``: not shipping)."""

    def mark(self, instrument: str) -> Decimal | None:
        """The last trade price of ``instrument``."""
        trade = self.last_trade.get(instrument)
        return None if trade is None else trade.price


def metrics_text(snapshot: KernelSnapshot, metrics: KernelMetrics) -> str:
    """``/metrics``: the Prometheus text of ``metrics`` and the snapshot's gauges."""
    samples = []
    for position in snapshot.positions.values():
        mark = snapshot.mark(position.instrument)
        unrealized = ZERO if mark is None or not position.qty else position.unrealized_pnl(mark)
        samples.append(
            PositionSample(position.instrument, position.qty, position.realized_pnl, unrealized, position.fees)
        )
    feed = snapshot.feed
    return render(
        metrics,
        orders_by_state=snapshot.orders_by_state,
        feed_reconnects=0 if feed is None else feed.reconnects,
        feed_gaps=0 if feed is None else feed.gaps,
        positions=samples,
        health_level=snapshot.health_levels,
    )


__all__ = ["FeedSnapshot", "KernelSnapshot", "OrderSnapshot", "metrics_text", "orders_of"]
