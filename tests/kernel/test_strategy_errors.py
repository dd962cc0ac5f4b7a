"""Issue 14 item 12d: a strategy that raises does not flood the log or the journal.

The first of each distinct error is logged whole (with its traceback) and journaled; its repeats
are counted and summarised every 10 s. The host runs against the stub ``ExecutionClient`` of
test_orders.py, with a monotonic clock moved by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from kernel.feed.events import TradeEvent
from kernel.metrics import KernelMetrics
from kernel.portfolio import Portfolio
from kernel.strategy import Context, Intent, MarketEvent, Strategy
from kernel.strategy_host import StrategyHost
from storage import Journal
from storage.audit import AuditReader
from tests.kernel.test_execution import TIMEOUT
from tests.kernel.test_orders import open_journal, stub_manager


@pytest.fixture
def journal(db_path: str) -> Iterator[Journal]:
    journal = open_journal(db_path)
    yield journal
    journal.close()


class Broken(Strategy):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def on_timer(self, ctx: Context) -> list[Intent]:
        self.calls += 1
        raise ValueError(f"bad value {self.calls}")  # a new message each time: still one error

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Intent]:
        raise KeyError("BTCUSDT")


class Clock:
    def __init__(self) -> None:
        self.now_ms = 0

    def __call__(self) -> int:
        return self.now_ms


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kernel.strategy_host" and r.exc_info]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kernel.strategy_host"]


@pytest.mark.asyncio
async def test_repeated_errors_are_logged_once_whole_then_summarised(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    metrics = KernelMetrics()
    async with asyncio.timeout(TIMEOUT):
        manager, _ = await stub_manager(journal)
    host = StrategyHost(
        Broken(),
        Portfolio(),
        metrics,
        clock_ms=lambda: 0,
        entry_block=lambda: None,
        stopping=lambda: False,
        wake=lambda: None,
        monotonic=clock,
    )
    host.attach(manager)
    for _ in range(252):  # 252 errors in under a second
        host.timer()
        clock.now_ms += 3
    assert tracebacks(caplog) == ["strategy on_timer failed (1 in a row)"]
    host.on_market(
        TradeEvent("paper", "BTCUSDT", "t1", Decimal(100), Decimal(1), "buy", 1, "trade")
    )  # another error: logged whole too
    assert tracebacks(caplog) == ["strategy on_timer failed (1 in a row)", "strategy on_market failed (253 in a row)"]
    clock.now_ms = 10_000
    host.timer()  # the 253rd on_timer error: the window has passed, the repeats are summarised
    summary = "strategy on_timer raised ValueError 252 more times in the last 10 s"
    assert [line.split(" (first raised at ")[0] for line in lines(caplog)] == [
        "strategy on_timer failed (1 in a row)",
        "strategy on_market failed (253 in a row)",
        summary,
    ]
    assert metrics.strategy_errors == 254
    assert host.errors == 254
    manager.commit()
    with AuditReader(journal.path) as reader:
        anomalies = reader.anomalies(100, source="strategy")
    assert [(a["kind"], a["reason"]) for a in anomalies] == [
        ("callback_error", "on_timer raised ValueError: bad value 1"),
        ("callback_error", "on_market raised KeyError: 'BTCUSDT'"),
        ("callback_error_repeats", "on_timer raised ValueError 252 more times in the last 10 s"),
    ]
    assert "Traceback (most recent call last)" in anomalies[0]["sample"]
    assert 'raise ValueError(f"bad value {self.calls}")' in anomalies[0]["sample"]
