"""The strategy-testing harness (kernel.testing) and its documented example in docs/strategies.md."""

from __future__ import annotations

import re
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from kernel.errors import UsageError
from kernel.strategies.market_maker import MarketMaker
from kernel.strategy import Context, Place, Strategy
from kernel.testing import FakeClock, HarnessNotRunning, HarnessTimeout, KernelHarness
from storage.audit import AuditReader
from storage.venue_store import read_orders

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"


@pytest.mark.asyncio
async def test_the_documented_example_runs(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Testing your strategy against the paper venue")[1]
    (block,) = re.findall(r"^```python\n(.*?)^```", section.split("\n## ")[0], flags=re.S | re.M)
    namespace: dict[str, Any] = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    await namespace["test_market_maker_quotes_and_is_filled"](tmp_path)


class Clocked(Strategy):
    """Records ctx.now_ms at each timer; places one order per timer when asked."""

    name = "clocked"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.place = False

    def on_timer(self, ctx: Context) -> list[Place]:
        self.seen.append(ctx.now_ms)
        return [Place("BTCUSDT", "buy", D("1"), D("50"))] if self.place else []


@pytest.mark.asyncio
async def test_the_strategy_clock_moves_only_when_told(tmp_path: Path) -> None:
    strategy = Clocked()
    async with KernelHarness(strategy, tmp_path) as kh:
        start = kh.clock.now_ms
        await kh.timer()
        await kh.timer(advance_ms=1500)
        assert strategy.seen == [start, start + 1500]
        strategy.place = True
        await kh.timer()
        (order,) = kh.open_orders()
        assert (order.side, order.price, order.state) == ("buy", D("50"), "accepted")
    assert kh.exit_status == 0
    with AuditReader(kh.journal_path) as reader:
        assert reader.verify().ok
        assert [t["trigger"] for t in reader.timeline(order.client_order_id, machine="order")] == [
            "create",
            "submit",
            "accept",
            "request_cancel",
            "cancel",
        ]
    assert [o.status for o in read_orders(kh.venue_path)] == ["canceled"]


@pytest.mark.asyncio
async def test_the_fixture_is_a_factory(tradekernel_harness: Any) -> None:
    async with tradekernel_harness(MarketMaker(), config={"kernel.cancel_on_stop": False}) as kh:
        await kh.quote(D("100.00"), D("100.10"))
        assert len(kh.open_orders()) == 2
        assert kh.health == "healthy"
    assert kh.exit_status == 0
    assert sorted(o.status for o in read_orders(kh.venue_path)) == ["new", "new"]  # left open, as configured


def test_fake_clock() -> None:
    clock = FakeClock(10)
    assert clock() == 10
    clock.advance(5)
    assert clock() == 15
    with pytest.raises(UsageError, match="never goes back"):
        clock.advance(-1)


@pytest.mark.asyncio
async def test_using_a_harness_before_it_starts_is_an_error(tmp_path: Path) -> None:
    kh = KernelHarness(MarketMaker(), tmp_path)
    with pytest.raises(HarnessNotRunning, match="not running"):
        kh.open_orders()


@pytest.mark.asyncio
async def test_a_wait_that_never_ends_says_what_it_waited_for(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path, timeout=0.3) as kh:
        with pytest.raises(HarnessTimeout, match=r"timed out after 0\.3 s waiting for never"):
            await kh._until(lambda: False, "never")
