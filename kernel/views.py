"""The kernel seen from outside: one frozen ``KernelSnapshot`` per request, and the ``/metrics`` text.

The kernel builds a snapshot of its public state (``Kernel.snapshot()``); ``/status``, the control
socket's ``status``, the live view (``kernel.status.running_status``), ``/healthz`` (``liveness``),
``/readyz`` (``readiness``) and ``/metrics`` (``metrics_sample``) are computed from it alone, never
from the kernel's internals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kernel.display import quote_currency
from kernel.feed.events import QuoteEvent, TradeEvent
from kernel.metrics import KernelMetrics, MetricsExporter, MetricsSample, PositionSample
from kernel.paper_defaults import TradingRules
from kernel.paper_protocol import Balance
from machines.base import Entity
from machines.entry import RECONCILING
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
    stopping: bool = False
    """A stop was requested (order entry is closed for good)."""
    notifications: Mapping[str, int] = field(default_factory=dict)
    """The notifier's counters (``sent``, ``failed``, ``dropped``, ...); empty when ``[notify]`` is off."""
    ship: Mapping[str, Any] | None = None
    rules: Mapping[str, TradingRules] = field(default_factory=dict)
    """Each instrument's tick and lot size as the kernel knows them (for quantized human output)."""
    """The in-run shipper's state and lag (``kernel.ship.Shipper.lag``; ``None``: not shipping)."""

    def mark(self, instrument: str) -> Decimal | None:
        """The last trade price of ``instrument``."""
        trade = self.last_trade.get(instrument)
        return None if trade is None else trade.price


@dataclass(frozen=True, slots=True)
class Readiness:
    """``/readyz``: ready while order entry is open; else a short ``reason`` code (``halted``,
    ``halting``, ``stopping``, ``starting``, ``venue_down``, ``reconciling``, ``journal_failed``,
    ``feed_stale``, ``feed_not_streaming``, ``unhealthy``, ``degraded``, ``paused``, and from the
    endpoint thread ``loop_stalled``) and the order-entry gate's own words in ``detail``."""

    ready: bool
    reason: str | None
    detail: str | None
    trading: str | None
    health: str | None

    def body(self) -> dict[str, Any]:
        """The JSON body of ``/readyz``."""
        return {
            "ready": self.ready,
            "reason": self.reason,
            "detail": self.detail,
            "trading": self.trading,
            "health": self.health,
        }


def readiness(snapshot: KernelSnapshot) -> Readiness:
    """Whether new orders may go out now and, if not, why: from the trading, health, feed and
    venue-session states in ``snapshot`` (the first that holds, in the order-entry gate's order)."""
    block = snapshot.entry_block
    trading = snapshot.trading.get("state")
    health = snapshot.health.get("status")
    if block is None:
        return Readiness(True, None, None, trading, health)
    return Readiness(False, _block_reason(snapshot, block), block, trading, health)


def _block_reason(snapshot: KernelSnapshot, block: str) -> str:
    trading = snapshot.trading.get("state")
    feed = snapshot.feed
    if snapshot.stopping:
        return "stopping"
    if trading in ("halting", "halted"):
        return str(trading)
    if block in ("not started", "starting") or snapshot.health.get("status") == "starting":
        return "starting"
    if not snapshot.venue_connected:
        return "venue_down"
    if block.startswith("journal"):
        return "journal_failed"
    if block == RECONCILING or not block.startswith("health"):
        return "reconciling"
    if feed is not None and feed.state != "streaming":
        return "feed_stale" if feed.state == "stale" else "feed_not_streaming"
    for name, component in (snapshot.health.get("components") or {}).items():
        if component.get("pauses_entry") and component.get("state") != "healthy":
            return f"{name}_{component.get('state')}"
    return str(snapshot.health.get("status") or "paused")


def liveness(snapshot: KernelSnapshot) -> dict[str, Any]:
    """The ``/healthz`` body: the health verdict and components, the trading state and whether
    order entry is open (``/healthz`` answers 200 while the loop answers; 503 only when stalled)."""
    return {
        **snapshot.health,
        "trading": snapshot.trading.get("state"),
        "trading_reason": snapshot.trading.get("reason"),
        "ready": snapshot.entry_block is None,
    }


def metrics_sample(snapshot: KernelSnapshot, metrics: KernelMetrics) -> MetricsSample:
    """What ``/metrics`` shows: the snapshot's gauges and states and a copy of ``metrics``."""
    positions = []
    for position in snapshot.positions.values():
        mark = snapshot.mark(position.instrument)
        unrealized = ZERO if mark is None or not position.qty else position.unrealized_pnl(mark)
        positions.append(
            PositionSample(
                position.instrument,
                quote_currency(position.instrument),
                position.qty,
                position.realized_pnl,
                unrealized,
                position.fees,
            )
        )
    open_orders: dict[str, int] = {}
    for order in snapshot.open_orders:
        open_orders[order.state] = open_orders.get(order.state, 0) + 1
    ended = {s: n - open_orders.get(s, 0) for s, n in snapshot.orders_by_state.items() if n > open_orders.get(s, 0)}
    feed = snapshot.feed
    health = {"kernel": str(snapshot.health.get("status"))}
    health.update((name, str(c.get("state"))) for name, c in (snapshot.health.get("components") or {}).items())
    return MetricsSample(
        start_time_s=snapshot.started_ms / 1000,
        trading_state=snapshot.trading.get("state"),
        health=health,
        ready=snapshot.entry_block is None,
        open_orders=open_orders,
        ended_orders=ended,
        positions=tuple(positions),
        feed_last_s={i: ms / 1000 for i, ms in metrics.feed_last_ms.items()},
        feed_messages=dict(metrics.feed_messages),
        feed_reconnects=0 if feed is None else feed.reconnects,
        feed_gaps=0 if feed is None else feed.gaps,
        fills=metrics.fills,
        rows_journaled=metrics.rows_journaled,
        commits=metrics.commits,
        commit_buckets=tuple(metrics.commit_latency.cumulative()),
        commit_sum_s=metrics.commit_latency.total,
        intents=dict(metrics.intents),
        denied=metrics.denied,
        strategy_errors=metrics.strategy_errors,
        loop_lag_s=metrics.loop_lag_s,
        notifications=dict(snapshot.notifications),
        ship_lag=_ship_lag(snapshot.ship),
    )


def _ship_lag(ship: Mapping[str, Any] | None) -> tuple[int, float] | None:
    """The shipper's (rows, seconds) behind, once it has looked at the journal (``None`` before, or
    when not shipping)."""
    if ship is None or "lag_rows" not in ship:
        return None
    return int(ship["lag_rows"]), float(ship["lag_s"])


def metrics_text(snapshot: KernelSnapshot, metrics: KernelMetrics) -> str:
    """``/metrics`` rendered at once (a fresh private registry): for callers outside the endpoint
    thread, which renders its published samples with its own ``MetricsExporter``."""
    return MetricsExporter().render(metrics_sample(snapshot, metrics)).decode()


__all__ = [
    "FeedSnapshot",
    "KernelSnapshot",
    "OrderSnapshot",
    "Readiness",
    "liveness",
    "metrics_sample",
    "metrics_text",
    "orders_of",
    "readiness",
]
