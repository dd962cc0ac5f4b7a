"""The kernel's counters, and ``/metrics`` through ``prometheus_client``.

The kernel's loop counts (``KernelMetrics``) and, with each published snapshot, freezes what
``/metrics`` shows into a ``MetricsSample`` (``kernel.views.metrics_sample``). The endpoint thread
renders the sample with a ``MetricsExporter``: a private ``CollectorRegistry`` (never the library's
global one, no threads) holding a ``KernelCollector`` that yields metric families built from the
sample, plus the library's ``ProcessCollector`` and ``PlatformCollector``. Every series is listed,
with its type and meaning, in ``docs/monitoring.md``.

State is exported as StateSets: one 0/1 series per state, e.g.
``tradekernel_trading_state{tradekernel_trading_state="halted"} 1``, so an alert is a plain equality
and no ordering of states is implied.
"""

from __future__ import annotations

import bisect
import platform
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus_client is imported where metrics are rendered, not at start-up
    from prometheus_client.metrics_core import Metric

COMMIT_BUCKETS_S: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds of the journal commit latency histogram, in seconds."""

TRADING_STATES = ("active", "reducing", "halting", "halted")
"""Every state of the trading machine, each one series of ``tradekernel_trading_state``."""
HEALTH_STATES = ("starting", "healthy", "degraded", "unhealthy", "stopping", "stopped")
"""Every state of a health entity, each one series of ``tradekernel_health_state``."""
LIVE_ORDER_STATES = ("new", "pending_new", "accepted", "partially_filled", "pending_cancel", "pending_replace")
"""Order states counted by ``tradekernel_open_orders`` (always exported, 0 when none)."""


@dataclass(slots=True)
class Histogram:
    """A cumulative histogram in the Prometheus sense: counts per upper bound, a sum and a count."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        """Count one observation."""
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(``le`` label, cumulative count) per bound, then ``+Inf``."""
        running, out = 0, []
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append((repr(float(bound)), running))
        out.append(("+Inf", self.count))
        return out


NOTIFICATION_OUTCOMES: tuple[tuple[str, str], ...] = (
    ("sent", "Notifications delivered (one per target)."),
    ("failed", "Notifications a target never took (after the retries)."),
    ("dropped", "Notifications dropped: the queue was full, or left at stop."),
)
"""The notifier's counters exported as ``tradekernel_notifications_<outcome>_total``."""


@dataclass(slots=True)
class KernelMetrics:
    """What the kernel counts while it runs (on the kernel's loop only)."""

    commit_latency: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS_S))
    rows_journaled: int = 0
    commits: int = 0
    fills: int = 0
    feed_messages: Counter[str] = field(default_factory=Counter)
    feed_last_ms: dict[str, int] = field(default_factory=dict)
    """Per instrument: when (wall clock, ms) the kernel last received a market data message."""
    intents: Counter[str] = field(default_factory=Counter)
    denied: int = 0
    strategy_errors: int = 0
    loop_lag_s: float = 0.0

    def on_commit(self, rows: int, elapsed_ns: int) -> None:
        """The journal's commit observer."""
        self.commits += 1
        self.rows_journaled += rows
        self.commit_latency.observe(elapsed_ns / 1e9)

    def on_feed_message(self, kind: str, instrument: str | None, now_ms: int) -> None:
        """One market data event of ``kind`` received at ``now_ms`` (wall clock)."""
        self.feed_messages[kind] += 1
        if instrument:
            self.feed_last_ms[instrument] = now_ms


@dataclass(frozen=True, slots=True)
class PositionSample:
    """One instrument's position figures, as exposed (``currency``: the quote currency)."""

    instrument: str
    currency: str
    qty: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """Everything ``/metrics`` shows of the kernel, frozen at one instant (built on the kernel's
    loop, rendered in the endpoint thread). Times are wall-clock seconds since the epoch."""

    start_time_s: float
    trading_state: str | None
    health: Mapping[str, str]
    """Health entity name (``kernel``, ``feed``, ...) -> state."""
    ready: bool
    open_orders: Mapping[str, int]
    """Live orders by state."""
    ended_orders: Mapping[str, int]
    """Orders that reached a final state (filled, canceled, ...), by state."""
    positions: tuple[PositionSample, ...]
    feed_last_s: Mapping[str, float]
    feed_messages: Mapping[str, int]
    feed_reconnects: int
    feed_gaps: int
    fills: int
    rows_journaled: int
    commits: int
    commit_buckets: tuple[tuple[str, int], ...]
    commit_sum_s: float
    intents: Mapping[str, int]
    denied: int
    strategy_errors: int
    loop_lag_s: float
    notifications: Mapping[str, int] = field(default_factory=dict)
    """The notifier's counters by outcome (empty: ``[notify]`` is off, no series)."""
    ship_lag: tuple[int, float] | None = None
    """The in-run shipper's lag: rows not shipped yet, and the age in seconds of the oldest
    (``None``: not shipping, no series)."""


def build_info() -> dict[str, str]:
    """``tradekernel_build_info``'s labels: the installed version and the Python version."""
    try:
        version = metadata.version("tradekernel")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    return {"version": version, "python": platform.python_version()}


class KernelCollector:
    """A ``prometheus_client`` collector of the kernel's series, built from ``sample()`` on each
    scrape (``None``: the kernel has published nothing yet, so only ``build_info`` is shown)."""

    def __init__(self, sample: Callable[[], MetricsSample | None]) -> None:
        self._sample = sample
        self._build = build_info()

    def collect(self) -> Iterator[Metric]:
        """The metric families of the current sample."""
        from prometheus_client.core import InfoMetricFamily

        yield InfoMetricFamily("tradekernel_build", "The running tradekernel and Python versions.", value=self._build)
        sample = self._sample()
        if sample is not None:
            yield from _states(sample)
            yield from _counters(sample)
            yield from _gauges(sample)


def _states(s: MetricsSample) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily, StateSetMetricFamily

    trading = StateSetMetricFamily(
        "tradekernel_trading_state",
        "The trading machine's state: 1 for the current one (none before the kernel has one).",
        value={state: state == s.trading_state for state in TRADING_STATES},
    )
    yield trading
    health = StateSetMetricFamily(
        "tradekernel_health_state",
        "Each health entity's state (component kernel: the overall verdict): 1 for the current one.",
        labels=["component"],
    )
    for component, current in sorted(s.health.items()):
        health.add_metric([component], {state: state == current for state in HEALTH_STATES})
    yield health
    yield GaugeMetricFamily("tradekernel_ready", "1 while order entry is open (/readyz 200), else 0.", value=s.ready)
    yield GaugeMetricFamily("tradekernel_start_time_seconds", "When this kernel started.", value=s.start_time_s)


def _counters(s: MetricsSample) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, value=value)

    def by(name: str, doc: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=[label])
        for key, value in sorted(values.items()):
            family.add_metric([key], value)
        return family

    yield counter("tradekernel_fills_total", "Fills applied to orders.", s.fills)
    yield by("tradekernel_orders_ended_total", "Orders that reached a final state, by state.", "state", s.ended_orders)
    yield counter(
        "tradekernel_transitions_journaled_total", "Journal rows committed by this process.", s.rows_journaled
    )
    yield counter("tradekernel_journal_commits_total", "Journal commits.", s.commits)
    yield HistogramMetricFamily(
        "tradekernel_journal_commit_seconds",
        "Journal commit latency (fsync included at full).",
        buckets=list(s.commit_buckets),
        sum_value=s.commit_sum_s,
    )
    yield by("tradekernel_feed_messages_total", "Market data events received, by kind.", "kind", s.feed_messages)
    yield counter("tradekernel_feed_reconnects_total", "Feed reconnections.", s.feed_reconnects)
    yield counter("tradekernel_feed_gaps_total", "Sequence gaps detected by the feed.", s.feed_gaps)
    yield by("tradekernel_strategy_intents_total", "Intents returned by the strategy, by kind.", "kind", s.intents)
    yield counter("tradekernel_orders_denied_total", "Order intents denied.", s.denied)
    yield counter("tradekernel_strategy_errors_total", "Strategy callback errors.", s.strategy_errors)
    for outcome, doc in NOTIFICATION_OUTCOMES:
        if outcome in s.notifications:
            yield counter(f"tradekernel_notifications_{outcome}_total", doc, s.notifications[outcome])


def _gauges(s: MetricsSample) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    open_orders = GaugeMetricFamily("tradekernel_open_orders", "Open (live) orders, by state.", labels=["state"])
    for state in sorted({*LIVE_ORDER_STATES, *s.open_orders}):
        open_orders.add_metric([state], s.open_orders.get(state, 0))
    yield open_orders
    last = GaugeMetricFamily(
        "tradekernel_feed_last_message_timestamp_seconds",
        "When the kernel last received a market data message for the instrument.",
        labels=["instrument"],
    )
    for instrument, seconds in sorted(s.feed_last_s.items()):
        last.add_metric([instrument], seconds)
    yield last
    yield GaugeMetricFamily("tradekernel_loop_lag_seconds", "Event loop lag in the last window.", value=s.loop_lag_s)
    if s.ship_lag is not None:
        rows, seconds = s.ship_lag
        yield GaugeMetricFamily("tradekernel_ship_lag_rows", "Journal rows not yet in the fleet store.", value=rows)
        yield GaugeMetricFamily(
            "tradekernel_ship_lag_seconds", "Age of the oldest journal row not yet in the fleet store.", value=seconds
        )
    position = GaugeMetricFamily(
        "tradekernel_position_base",
        "Position per instrument in its base currency (negative: short).",
        labels=["instrument"],
    )
    money = {
        "realized_pnl": GaugeMetricFamily(
            "tradekernel_realized_pnl_quote",
            "Realized P&L per instrument before fees, in the quote currency.",
            labels=["instrument", "currency"],
        ),
        "unrealized_pnl": GaugeMetricFamily(
            "tradekernel_unrealized_pnl_quote",
            "Unrealized P&L per instrument at the last trade price, in the quote currency.",
            labels=["instrument", "currency"],
        ),
        "fees": GaugeMetricFamily(
            "tradekernel_fees_quote",
            "Fees paid per instrument, in the quote currency.",
            labels=["instrument", "currency"],
        ),
    }
    for p in s.positions:
        position.add_metric([p.instrument], float(p.qty))
        for attr, family in money.items():
            family.add_metric([p.instrument, p.currency], float(getattr(p, attr)))
    yield position
    yield from money.values()


class MetricsExporter:
    """The ``/metrics`` text of published samples: one private registry per endpoint server."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

        self._current: MetricsSample | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(KernelCollector(lambda: self._current))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def render(self, sample: MetricsSample | None) -> bytes:
        """The Prometheus text (format 0.0.4) of ``sample`` and the process."""
        from prometheus_client import generate_latest

        self._current = sample
        try:
            return generate_latest(self.registry)
        finally:
            self._current = None


__all__ = [
    "COMMIT_BUCKETS_S",
    "HEALTH_STATES",
    "LIVE_ORDER_STATES",
    "TRADING_STATES",
    "Histogram",
    "KernelCollector",
    "KernelMetrics",
    "MetricsExporter",
    "MetricsSample",
    "PositionSample",
    "build_info",
]
