"""``/metrics`` through ``prometheus_client`` (issue 18): every series parsed with the library's own
parser, StateSets for trading and health, units in names, and the Grafana dashboard referencing only
series a real scrape shows."""

from __future__ import annotations

import asyncio
import json
import platform
import re
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernel.http import PROMETHEUS_TYPE
from kernel.metrics import KernelMetrics, MetricsExporter, MetricsSample, PositionSample, build_info
from kernel.strategies.market_maker import MarketMaker
from kernel.testing import START_MS, KernelHarness
from kernel.views import metrics_text
from tests.conftest import REPO

BTC = "BTCUSDT"
NET = 3.0
DASHBOARD = REPO / "docs" / "grafana" / "tradekernel-dashboard.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def python_labels() -> dict[str, str]:
    version = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": version[0],
        "minor": version[1],
        "patchlevel": version[2],
        "version": platform.python_version(),
    }


def parsed(text: str) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, sorted labels) -> value), by the library's parser."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, key  # no duplicate series
            samples[key] = s.value
    return types, samples


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def scrape(port: int) -> tuple[dict[str, str], bytes]:
    async with asyncio.timeout(NET):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /metrics HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert head.startswith(b"HTTP/1.1 200 ")
    return headers, body


async def market_maker_scrape(tmp_path: Path) -> str:
    """A market maker with two quotes working and one bid filled by a trade: its ``/metrics``."""
    async with KernelHarness(MarketMaker(), tmp_path, config={"http.listen": "127.0.0.1:0"}) as kh:
        kernel = kh._kernel()
        assert kernel.http is not None
        await kh.quote(D("100.00"), D("100.10"))
        await kh.trade(D("99.00"), D("5"), "sell")
        headers, body = await scrape(kernel.http.port)
        assert headers["content-type"] == PROMETHEUS_TYPE
        assert int(headers["content-length"]) == len(body)
        return body.decode()


@pytest.mark.asyncio
async def test_a_real_scrape_parses_and_shows_every_series(tmp_path: Path) -> None:
    text = await market_maker_scrape(tmp_path)
    types, s = parsed(text)
    assert one(s, "tradekernel_build_info", **build_info()) == 1
    assert build_info()["version"] == "0.1.0"
    assert one(s, "tradekernel_start_time_seconds") == START_MS / 1000  # the harness's clock
    for state, value in (("active", 1), ("reducing", 0), ("halting", 0), ("halted", 0)):
        assert one(s, "tradekernel_trading_state", tradekernel_trading_state=state) == value
    for component in ("kernel", "feed", "venue", "journal", "loop", "strategy"):
        states = {
            dict(labels)["tradekernel_health_state"]: value
            for (name, labels), value in s.items()
            if name == "tradekernel_health_state" and dict(labels)["component"] == component
        }
        assert states == {
            "starting": 0,
            "healthy": 1,
            "degraded": 0,
            "unhealthy": 0,
            "stopping": 0,
            "stopped": 0,
        }, component
    assert one(s, "tradekernel_ready") == 1
    # the filled bid was requoted: two quotes open; the fill ended one order
    open_orders = {dict(labels)["state"]: v for (name, labels), v in s.items() if name == "tradekernel_open_orders"}
    assert open_orders == {
        "new": 0,
        "pending_new": 0,
        "accepted": 2,
        "partially_filled": 0,
        "pending_cancel": 0,
        "pending_replace": 0,
    }
    assert one(s, "tradekernel_orders_ended_total", state="filled") == 1
    assert one(s, "tradekernel_fills_total") == 1
    assert one(s, "tradekernel_transitions_journaled_total") > 0
    commits = one(s, "tradekernel_journal_commits_total")
    assert commits > 0
    assert one(s, "tradekernel_journal_commit_seconds_count") == commits
    assert one(s, "tradekernel_journal_commit_seconds_bucket", le="+Inf") == commits
    buckets = [v for (name, _), v in s.items() if name == "tradekernel_journal_commit_seconds_bucket"]
    assert buckets == sorted(buckets)
    assert one(s, "tradekernel_journal_commit_seconds_sum") > 0
    assert one(s, "tradekernel_feed_messages_total", kind="quote") == 1
    assert one(s, "tradekernel_feed_messages_total", kind="trade") == 1
    assert one(s, "tradekernel_feed_last_message_timestamp_seconds", instrument=BTC) == START_MS / 1000
    assert one(s, "tradekernel_feed_reconnects_total") == 0
    assert one(s, "tradekernel_feed_gaps_total") == 0
    assert one(s, "tradekernel_loop_lag_seconds") >= 0
    assert one(s, "tradekernel_strategy_intents_total", kind="place") == 3
    assert one(s, "tradekernel_orders_denied_total") == 0
    assert one(s, "tradekernel_strategy_errors_total") == 0
    assert one(s, "tradekernel_position_base", instrument=BTC) == 0.001
    assert one(s, "tradekernel_realized_pnl_quote", instrument=BTC, currency="USDT") == 0
    # bought 0.001 at 99.99 (the bid), last trade 99.00: (99.00 - 99.99) * 0.001
    assert one(s, "tradekernel_unrealized_pnl_quote", instrument=BTC, currency="USDT") == -0.00099
    assert one(s, "tradekernel_fees_quote", instrument=BTC, currency="USDT") == 0
    assert one(s, "process_resident_memory_bytes") > 0
    assert one(s, "process_cpu_seconds_total") > 0
    assert one(s, "python_info", **python_labels()) == 1
    assert types["tradekernel_fills"] == "counter"
    assert types["tradekernel_journal_commit_seconds"] == "histogram"
    assert types["tradekernel_open_orders"] == "gauge"
    # every counter's samples end with _total; nothing is left of the old unitless names
    for (name, _), _value in s.items():
        if types.get(name.removesuffix("_total")) == "counter":
            assert name.endswith("_total"), name
    for old in ("tradekernel_health", "tradekernel_orders", "tradekernel_position", "tradekernel_fees"):
        assert not any(name == old for name, _ in s), old


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: identifiers once strings, label matchers,
    ranges, grouping clauses, function calls and keywords are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def test_metric_names_of_an_expression() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{instance=~"$x", le!="1"}[5m]))) - b_total > bool 1'
    assert metric_names(expr) == {"a_bucket", "b_total"}
    assert metric_names('time() - c{x="y(z)"} == 1') == {"c"}


@pytest.mark.asyncio
async def test_the_grafana_dashboard_uses_only_exported_series(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    exprs = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ()) if panel["type"] != "row"
    ]
    assert len(exprs) >= 20
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    used = set().union(*(metric_names(expr) for expr in exprs))
    _, samples = parsed(await market_maker_scrape(tmp_path))
    exported = {name for name, _ in samples}
    assert used <= exported, sorted(used - exported)
    for name in ("tradekernel_trading_state", "tradekernel_health_state", "tradekernel_ready"):
        assert name in used, name
    assert variables["instance"]["definition"] == "label_values(tradekernel_build_info, instance)"


def sample(**changes: Any) -> MetricsSample:
    fields: dict[str, Any] = {
        "start_time_s": 1700000000.5,
        "trading_state": "halted",
        "health": {"kernel": "unhealthy", "journal": "unhealthy", "feed": "healthy"},
        "ready": False,
        "open_orders": {"pending_cancel": 1},
        "ended_orders": {"canceled": 3, "filled": 2},
        "positions": (PositionSample('X"Y\\Z', "USD", D("-0.500"), D("1E+1"), D("NaN"), D("0.25")),),
        "feed_last_s": {"X": 1700000001.25},
        "feed_messages": {"trade": 4},
        "feed_reconnects": 1,
        "feed_gaps": 2,
        "fills": 2,
        "rows_journaled": 5,
        "commits": 2,
        "commit_buckets": (("0.001", 1), ("1.0", 1), ("+Inf", 2)),
        "commit_sum_s": 2.001,
        "intents": {"place": 3, "cancel": 1},
        "denied": 7,
        "strategy_errors": 0,
        "loop_lag_s": 0.003,
    }
    fields.update(changes)
    return MetricsSample(**fields)


def test_the_exporter_renders_a_sample_with_escaped_labels_and_a_halted_kernel() -> None:
    text = MetricsExporter().render(sample()).decode()
    lines = set(text.splitlines())
    assert 'tradekernel_trading_state{tradekernel_trading_state="halted"} 1.0' in lines
    assert 'tradekernel_trading_state{tradekernel_trading_state="active"} 0.0' in lines
    assert 'tradekernel_health_state{component="journal",tradekernel_health_state="unhealthy"} 1.0' in lines
    assert 'tradekernel_position_base{instrument="X\\"Y\\\\Z"} -0.5' in lines
    assert 'tradekernel_realized_pnl_quote{currency="USD",instrument="X\\"Y\\\\Z"} 10.0' in lines
    assert 'tradekernel_unrealized_pnl_quote{currency="USD",instrument="X\\"Y\\\\Z"} NaN' in lines
    assert 'tradekernel_fees_quote{currency="USD",instrument="X\\"Y\\\\Z"} 0.25' in lines
    assert 'tradekernel_journal_commit_seconds_bucket{le="0.001"} 1.0' in lines
    assert 'tradekernel_journal_commit_seconds_bucket{le="+Inf"} 2.0' in lines
    assert "tradekernel_journal_commit_seconds_sum 2.001" in lines
    assert "tradekernel_start_time_seconds 1.7000000005e+09" in lines
    assert 'tradekernel_feed_last_message_timestamp_seconds{instrument="X"} 1.70000000125e+09' in lines
    assert 'tradekernel_open_orders{state="pending_cancel"} 1.0' in lines
    assert 'tradekernel_open_orders{state="accepted"} 0.0' in lines
    assert 'tradekernel_orders_ended_total{state="canceled"} 3.0' in lines
    assert "tradekernel_orders_denied_total 7.0" in lines
    assert "tradekernel_ready 0.0" in lines
    assert "# TYPE tradekernel_strategy_intents_total counter" in lines
    types, samples = parsed(text)  # the library parses it back
    assert one(samples, "tradekernel_strategy_intents_total", kind="cancel") == 1
    assert types["tradekernel_trading_state"] == "gauge"  # a StateSet in the 0.0.4 text format


def test_notifier_counters_and_ship_lag_show_only_when_configured() -> None:
    off = {name for name, _ in parsed(MetricsExporter().render(sample()).decode())[1]}
    assert not {name for name in off if name.startswith(("tradekernel_notifications", "tradekernel_ship"))}
    text = (
        MetricsExporter()
        .render(sample(notifications={"sent": 4, "failed": 1, "dropped": 2, "queued": 7}, ship_lag=(120, 1.5)))
        .decode()
    )
    types, samples = parsed(text)
    assert one(samples, "tradekernel_notifications_sent_total") == 4
    assert one(samples, "tradekernel_notifications_failed_total") == 1
    assert one(samples, "tradekernel_notifications_dropped_total") == 2
    assert types["tradekernel_notifications_dropped"] == "counter"
    assert one(samples, "tradekernel_ship_lag_rows") == 120
    assert one(samples, "tradekernel_ship_lag_seconds") == 1.5


def test_before_anything_is_published_only_build_and_process_metrics_show() -> None:
    _, samples = parsed(MetricsExporter().render(None).decode())
    names = {name for name, _ in samples}
    assert {name for name in names if name.startswith("tradekernel_")} == {"tradekernel_build_info"}
    assert "process_resident_memory_bytes" in names


def test_two_exporters_have_private_registries() -> None:
    from prometheus_client import REGISTRY

    first, second = MetricsExporter(), MetricsExporter()  # registering twice would raise on one registry
    assert first.registry is not second.registry is not REGISTRY
    assert b"tradekernel_" not in __import__("prometheus_client").generate_latest(REGISTRY)


def test_kernel_metrics_count_feed_messages_per_kind_and_instrument() -> None:
    metrics = KernelMetrics()
    metrics.on_feed_message("trade", "A", 1000)
    metrics.on_feed_message("quote", "A", 2500)
    metrics.on_feed_message("status", None, 3000)
    assert dict(metrics.feed_messages) == {"trade": 1, "quote": 1, "status": 1}
    assert metrics.feed_last_ms == {"A": 2500}
    metrics.on_commit(3, 1_000_000)  # 1 ms: on a bound, which is inclusive (le)
    metrics.on_commit(2, 2_000_000_000)  # 2 s: beyond the last bound
    cumulative = dict(metrics.commit_latency.cumulative())
    assert (cumulative["0.0005"], cumulative["0.001"], cumulative["1.0"], cumulative["+Inf"]) == (0, 1, 1, 2)
    assert (metrics.rows_journaled, metrics.commits) == (5, 2)


def test_metrics_text_renders_a_snapshot_at_once(tmp_path: Path) -> None:
    async def run() -> str:
        async with KernelHarness(MarketMaker(), tmp_path) as kh:
            kernel = kh._kernel()
            return metrics_text(kernel.snapshot(), kernel.metrics)

    _, samples = parsed(asyncio.run(run()))
    assert one(samples, "tradekernel_trading_state", tradekernel_trading_state="active") == 1
