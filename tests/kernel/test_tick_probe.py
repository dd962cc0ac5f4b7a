"""The tick-to-send probe (kernel.tick_probe): off by default, and stamps the right pairs when on."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel import execution, order_flow, tick_probe
from kernel.feed import client
from kernel.feed.events import TradeEvent
from kernel.strategy import Context, MarketEvent, Place, Strategy
from kernel.testing import KernelHarness
from kernel.tick_probe import TickProbe


def test_it_is_off_unless_the_environment_names_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    registered: list[object] = []
    monkeypatch.setattr(tick_probe.atexit, "register", registered.append)
    monkeypatch.delenv(tick_probe.ENV, raising=False)
    assert tick_probe._from_env() is None
    monkeypatch.setenv(tick_probe.ENV, "")
    assert tick_probe._from_env() is None
    monkeypatch.setenv(tick_probe.ENV, str(tmp_path / "probe.json"))
    probe = tick_probe._from_env()
    assert probe is not None
    assert probe.path == str(tmp_path / "probe.json")
    assert registered == [probe.dump]  # written at exit
    assert tick_probe.PROBE is None  # the test process was started without it


def test_an_order_is_sampled_only_when_a_frame_caused_it(tmp_path: Path) -> None:
    probe = TickProbe(str(tmp_path / "probe.json"))
    probe.order_queued("timer-order")  # no frame in hand: not the frame's
    probe.frame_read()
    probe.order_queued("o-1")
    probe.frame_done()
    probe.order_queued("after-the-frame")
    probe.order_written("timer-order")
    probe.order_written("never-queued")
    probe.order_written("o-1")
    probe.order_written("o-1")  # a second write of the same order is not a second sample
    probe.order_written("after-the-frame")
    assert len(probe.samples) == 1
    (send_ns, queued_ns) = probe.samples[0]
    assert 0 <= queued_ns <= send_ns
    probe.dump()
    assert json.loads((tmp_path / "probe.json").read_text()) == {"samples": [[send_ns, queued_ns]]}
    assert not (tmp_path / "probe.json.tmp").exists()


class BuyOnTrade(Strategy):
    name = "buy_on_trade"

    def on_market(self, event: MarketEvent, ctx: Context) -> list[Place]:
        if isinstance(event, TradeEvent) and ctx.trading_allowed:
            return [Place(event.instrument, "buy", D("0.001"), D("1.00"), tif="ioc")]
        return []


@pytest.mark.asyncio
async def test_a_running_kernel_stamps_each_trade_to_the_order_it_caused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    probe = TickProbe(str(tmp_path / "probe.json"))
    for module in (client, order_flow, execution):
        monkeypatch.setattr(module, "PROBE", probe)
    async with KernelHarness(BuyOnTrade(), tmp_path) as kh:
        await kh.quote(D("100.00"), D("100.10"))  # a frame that causes no order
        assert probe.samples == []
        await kh.trade(D("100.05"), D("1"))
        await kh.trade(D("100.06"), D("1"))
    assert len(probe.samples) == 2
    assert all(0 < queued < send for send, queued in probe.samples)
    assert probe.reading is None
