"""The kernel's counters and the Prometheus text exposition of them (``GET /metrics``).

Hand-written rather than a client library: a dozen series, no registry, no threads. The text
format is Prometheus' 0.0.4 exposition format: ``# HELP``/``# TYPE`` lines, then samples.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

COMMIT_BUCKETS_S: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Upper bounds of the journal commit latency histogram, in seconds."""


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
            out.append((_number(bound), running))
        out.append(("+Inf", self.count))
        return out


@dataclass(slots=True)
class KernelMetrics:
    """What the kernel counts while it runs; rendered by ``render``."""

    commit_latency: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS_S))
    rows_journaled: int = 0
    commits: int = 0
    fills: int = 0
    feed_messages: Counter[str] = field(default_factory=Counter)
    intents: Counter[str] = field(default_factory=Counter)
    denied: int = 0
    strategy_errors: int = 0
    loop_lag_s: float = 0.0

    def on_commit(self, rows: int, elapsed_ns: int) -> None:
        """The journal's commit observer."""
        self.commits += 1
        self.rows_journaled += rows
        self.commit_latency.observe(elapsed_ns / 1e9)


@dataclass(frozen=True, slots=True)
class PositionSample:
    """One instrument's position figures, as exposed."""

    instrument: str
    qty: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal


def render(
    metrics: KernelMetrics,
    *,
    orders_by_state: Mapping[str, int],
    feed_reconnects: int,
    feed_gaps: int,
    positions: Iterable[PositionSample],
    health_level: Mapping[str, int],
) -> str:
    """The Prometheus text of every series."""
    out: list[str] = []

    def series(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float | int | Decimal]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{labels} {_number(value)}")

    series(
        "tradekernel_orders",
        "gauge",
        "Orders this kernel holds, by order-machine state.",
        ((_labels(state=state), n) for state, n in sorted(orders_by_state.items())),
    )
    series("tradekernel_fills_total", "counter", "Fills applied to orders.", [("", metrics.fills)])
    series(
        "tradekernel_transitions_journaled_total",
        "counter",
        "Journal rows committed by this process.",
        [("", metrics.rows_journaled)],
    )
    series("tradekernel_journal_commits_total", "counter", "Journal commits.", [("", metrics.commits)])
    hist = metrics.commit_latency
    out.append("# HELP tradekernel_journal_commit_seconds Journal commit latency (fsync included at full).")
    out.append("# TYPE tradekernel_journal_commit_seconds histogram")
    for le, n in hist.cumulative():
        out.append(f'tradekernel_journal_commit_seconds_bucket{{le="{le}"}} {n}')
    out.append(f"tradekernel_journal_commit_seconds_sum {_number(hist.total)}")
    out.append(f"tradekernel_journal_commit_seconds_count {hist.count}")
    series(
        "tradekernel_feed_messages_total",
        "counter",
        "Market data events received, by kind.",
        ((_labels(kind=kind), n) for kind, n in sorted(metrics.feed_messages.items())),
    )
    series("tradekernel_feed_reconnects_total", "counter", "Feed reconnections.", [("", feed_reconnects)])
    series("tradekernel_feed_gaps_total", "counter", "Sequence gaps detected by the feed.", [("", feed_gaps)])
    series("tradekernel_loop_lag_seconds", "gauge", "Event loop lag in the last window.", [("", metrics.loop_lag_s)])
    series(
        "tradekernel_strategy_intents_total",
        "counter",
        "Intents returned by the strategy, by kind.",
        ((_labels(kind=kind), n) for kind, n in sorted(metrics.intents.items())),
    )
    series("tradekernel_orders_denied_total", "counter", "Order intents denied.", [("", metrics.denied)])
    series("tradekernel_strategy_errors_total", "counter", "Strategy callback errors.", [("", metrics.strategy_errors)])
    series(
        "tradekernel_health",
        "gauge",
        "Health per component: 0 healthy, 1 degraded, 2 unhealthy, 3 starting/stopping.",
        ((_labels(component=name), level) for name, level in health_level.items()),
    )
    samples = list(positions)
    for name, attr, help_text in (
        ("tradekernel_position", "qty", "Position quantity per instrument (negative: short)."),
        ("tradekernel_realized_pnl", "realized_pnl", "Realized P&L per instrument, before fees."),
        ("tradekernel_unrealized_pnl", "unrealized_pnl", "Unrealized P&L per instrument at the last price."),
        ("tradekernel_fees", "fees", "Fees paid per instrument."),
    ):
        series(name, "gauge", help_text, ((_labels(instrument=p.instrument), getattr(p, attr)) for p in samples))
    return "\n".join(out) + "\n"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | Decimal) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value.is_finite() else "NaN"
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(value)
