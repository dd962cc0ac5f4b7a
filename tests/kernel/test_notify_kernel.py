"""End to end: a real kernel and paper venue (``kernel.testing``) with ``[notify]`` pointing at a
loopback HTTP server receives a fill, a halt, an arm and the stop, with their texts quantized."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernel.strategy import Context, Place, Strategy
from kernel.testing import KernelHarness
from tests.kernel.notify_server import loopback_server


class BuysOnce(Strategy):
    """Places one buy of 0.5 at 50 on its first timer."""

    name = "buys_once"

    def __init__(self) -> None:
        super().__init__()
        self.placed = False

    def on_timer(self, ctx: Context) -> list[Place]:
        if self.placed:
            return []
        self.placed = True
        return [Place("BTCUSDT", "buy", D("0.5"), D("50"))]


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_a_paper_kernel_notifies_a_fill_halt_arm_and_its_stop(tmp_path: Path) -> None:
    with loopback_server() as server:
        config = {"notify.webhook_urls": [f"{server.url}/hook"], "notify.events": ["fill", "halt", "arm", "stop"]}
        async with KernelHarness(BuysOnce(), tmp_path, config=config, venue={"fee_bps": D("10")}) as kh:
            kernel = kh.kernel
            assert kernel is not None
            await kh.timer()
            await kh.trade(D("49.00"), D("2"), "sell")  # trades through our bid: filled at 50
            assert kh.position().qty == D("0.5")
            await until(lambda: len(server.bodies()) >= 1)
            answer = await kernel.handle_control({"command": "halt", "reason": "checking notifications"})
            assert answer["ok"], answer
            await until(lambda: kernel.trading is not None and kernel.trading.state == "halted")
            answer = await kernel.handle_control({"command": "arm", "reason": "all good"})
            assert answer["ok"], answer
            await until(lambda: len(server.bodies()) >= 4)
            status = kernel.status()["notify"]
            assert status["targets"] == [f"webhook {server.url}"]
            scraped = {
                sample.name: sample.value
                for family in text_string_to_metric_families(kernel.metrics_text())
                for sample in family.samples
            }
            assert scraped["tradekernel_notifications_dropped_total"] == 0
            assert scraped["tradekernel_notifications_failed_total"] == 0
        assert kh.exit_status == 0
        bodies = server.bodies("/hook")
    # 0.5 x 50 x 10 bp = 0.025 USDT, shown to the cent half-even: 0.02
    assert [(b["kind"], b["text"]) for b in bodies] == [
        (
            "fill",
            f"Filled buy 0.50000 BTCUSDT at 50.00, fee 0.02 USDT (order {bodies[0]['data']['order']}: "
            "0.50000 of 0.50000, filled)",
        ),
        ("halt", "Trading halting (from active, halt): operator: checking notifications"),
        ("halt", "Trading halted (from halting, all_canceled): operator: checking notifications"),
        ("arm", "Trading armed: halted -> active: operator: all good"),
        ("stop", "Kernel run 1 stopping: test finished"),
    ]
    fill = bodies[0]["data"]
    assert (fill["qty"], fill["price"], fill["fee"], fill["side"]) == ("0.5", "50", "0.025", "buy")
    assert all(b["time"].endswith("Z") and b["time"][:2] == "20" for b in bodies)
    assert kh.kernel is not None
    assert kh.kernel.notifier is not None
    assert kh.kernel.notifier.counts == {"queued": 5, "sent": 5, "failed": 0, "dropped": 0}
