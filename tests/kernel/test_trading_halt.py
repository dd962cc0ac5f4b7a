"""The trading machine in the kernel (issue 8): operator halt/reduce/arm, the halt sequence against
the real paper venue, health that fails halts trading, and halted surviving a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from kernel import control
from kernel.strategies.market_maker import MarketMaker
from kernel.strategy import Cancel, Context, Intent, Place, Replace
from kernel.testing import KernelHarness
from storage.audit import AuditReader
from storage.venue_store import read_orders
from tests.conftest import REPO
from tests.poll import eventually

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIMIT_S = 20.0


def trading_steps(path: str) -> list[tuple[str, str]]:
    with AuditReader(path) as reader:
        return [(t["trigger"], t["dest"]) for t in reader.timeline("kernel", machine="trading")]


@pytest.mark.asyncio
async def test_halt_cancels_every_open_order_denies_new_ones_and_arm_resumes(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path) as kh:
        kernel = kh._kernel()
        await kh.quote(D("100.00"), D("100.10"))
        assert len(kh.open_orders()) == 2
        answer = await kernel.handle_control({"command": "halt", "reason": "test halt"})
        assert answer["ok"], answer
        assert answer["trading"]["state"] in ("halting", "halted")
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halted", "halted")
        await kh.settle()
        assert kh.open_orders() == []
        assert sorted(o.status for o in read_orders(kh.venue_path)) == ["canceled", "canceled"]
        # New intents are denied with a reason naming the trading state; the venue sees nothing new.
        await kh.quote(D("100.00"), D("100.20"))
        assert len(read_orders(kh.venue_path)) == 2
        assert (kernel.entry_block() or "").startswith("trading halted: operator: test halt")
        refused = await kernel.handle_control({"command": "halt", "reason": "again"})
        assert not refused["ok"]  # already halted: refused, state unchanged
        assert (await kernel.handle_control({"command": "arm"}))["ok"] is False  # a reason is required
        armed = await kernel.handle_control({"command": "arm", "reason": "all clear"})
        assert armed["trading"]["state"] == "active"
        await kh.quote(D("100.00"), D("100.10"))
        assert len(kh.open_orders()) == 2
    steps = trading_steps(kh.journal_path)
    assert steps == [
        ("create", "active"),
        ("halt", "halting"),
        ("all_canceled", "halted"),
        ("arm", "active"),
    ]
    with AuditReader(kh.journal_path) as reader:
        assert reader.verify().ok


@pytest.mark.asyncio
async def test_reduce_then_arm_through_the_control_socket(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path) as kh:
        kernel = kh._kernel()
        assert kernel.control is not None
        path = kernel.control.path
        answer = await asyncio.to_thread(control.request, path, "reduce", reason="cut risk")
        assert answer["trading"] == {"state": "reducing", "reason": "operator: cut risk", "flatten": False, "halts": 0}
        answer = await asyncio.to_thread(control.request, path, "arm", reason="ok")
        assert answer["trading"]["state"] == "active"
        status = await asyncio.to_thread(control.request, path, "status")
        assert status["status"]["trading"]["state"] == "active"


@pytest.mark.asyncio
async def test_halt_with_flatten_closes_the_position_at_market(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path) as kh:
        kernel = kh._kernel()
        await kh.quote(D("100.00"), D("100.10"))
        await kh.trade(D("99.00"), D("1"), "sell")  # our bid fills: long 0.001
        assert kh.position().qty == D("0.001")
        await kernel.handle_control({"command": "halt", "reason": "flatten test", "flatten": True})
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halted", "flattened")
        assert kh.position().qty == 0
    assert trading_steps(kh.journal_path)[-3:] == [
        ("halt", "halting"),
        ("all_canceled", "halting"),
        ("flattened", "halted"),
    ]


# -- across a SIGKILL, in real processes -----------------------------------------------------------


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tk"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args], capture_output=True, text=True, env=ENV, cwd=str(REPO), timeout=LIMIT_S
    )


def status(db: str) -> dict[str, object]:
    proc = tk("status", "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_halted_survives_a_sigkill_and_a_restart_until_armed(workdir: Path) -> None:
    db = str(workdir / "j.db")
    run = subprocess.Popen(
        [sys.executable, "-m", "kernel", "run", "--db", db, "--status-view", "off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=str(REPO),
    )  # fmt: skip
    try:
        wait_for(lambda: os.path.exists(db + ".sock") and status(db).get("running") is True, "the kernel")
        halted = tk("halt", "--db", db, "--reason", "before the kill", "--json")
        assert halted.returncode == 0, halted.stderr
        assert json.loads(halted.stdout)["via"] == "running kernel"
        wait_for(lambda: status(db)["trading"]["state"] == "halted", "halted")  # type: ignore[index]
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=LIMIT_S)
    finally:
        if run.poll() is None:
            run.kill()
    restarted = tk("run", "--db", db, "--status-view", "off", "--duration", "3")
    assert restarted.returncode == 0, restarted.stderr
    assert "trading is halted since the last run: operator: before the kill" in restarted.stderr
    assert "ready: order entry open" not in restarted.stderr  # it never traded
    offline = tk("arm", "--db", db, "--reason", "checked", "--json")
    assert offline.returncode == 0, offline.stderr
    answer = json.loads(offline.stdout)
    assert (answer["via"], answer["trading"]["state"]) == ("journal (no kernel running)", "active")
    assert tk("arm", "--db", db, "--reason", "twice").returncode == 1  # already active: refused
    with AuditReader(db) as reader:
        assert reader.verify().ok
        triggers = [t["trigger"] for t in reader.timeline("kernel", machine="trading")]
    assert triggers[:3] == ["create", "halt", "all_canceled"]
    assert triggers[-1] == "arm"


# -- pre-trade risk in the kernel -------------------------------------------------------------------


class OneShot(MarketMaker):
    """Places exactly the orders a test queues, on the next timer."""

    name = "one_shot"

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[Place] = []

    def on_market(self, event: Any, ctx: Context) -> list[Intent]:
        return []

    def on_timer(self, ctx: Context) -> list[Intent]:
        queued, self.queued = self.queued, []
        return list(queued)

    def on_order(self, update: Any, ctx: Context) -> list[Intent]:
        return []


def deny_of(path: str, client_order_id: str) -> dict[str, Any]:
    with AuditReader(path) as reader:
        steps = reader.timeline(client_order_id, machine="order")
    assert [t["trigger"] for t in steps] == ["create", "deny"]
    data: dict[str, Any] = steps[-1]["data"]
    return data


@pytest.mark.asyncio
async def test_risk_limits_deny_orders_in_the_journal_and_reducing_lets_only_reductions_out(tmp_path: Path) -> None:
    strategy = OneShot()
    config = {"risk.max_order_qty": D("2"), "risk.instruments.BTCUSDT.tick_size": D("0.5")}
    async with KernelHarness(strategy, tmp_path, config=config) as kh:
        kernel = kh._kernel()
        await kh.quote(D("100.00"), D("100.10"))
        strategy.queued = [
            Place("BTCUSDT", "buy", D("3"), D("99.5")),  # over max_order_qty
            Place("BTCUSDT", "buy", D("1"), D("99.3")),  # off the tick
            Place("BTCUSDT", "buy", D("2"), D("99.5")),  # at the limit: passes
        ]
        await kh.timer()
        too_big, off_tick, ok = kh.orders()
        assert (too_big.state, off_tick.state, ok.state) == ("denied", "denied", "accepted")
        assert deny_of(kh.journal_path, too_big.client_order_id)["check"] == "max_order_qty"
        assert "exceeds max_order_qty 2" in deny_of(kh.journal_path, too_big.client_order_id)["reason"]
        assert deny_of(kh.journal_path, off_tick.client_order_id)["check"] == "tick_size"
        assert [o.client_order_id for o in read_orders(kh.venue_path)] == [ok.client_order_id]

        await kh.trade(D("99"), D("5"), "sell")  # our bid fills: long 2
        assert kh.position().qty == D("2")
        await kernel.handle_control({"command": "reduce", "reason": "cut"})
        strategy.queued = [
            Place("BTCUSDT", "buy", D("1"), D("99.5")),  # adds: denied in reducing
            Place("BTCUSDT", "sell", D("1"), D("100.5")),  # reduces: goes out
        ]
        await kh.timer()
        adds, reduces = kh.orders()[-2:]
        assert adds.state == "denied"
        assert "reducing" in deny_of(kh.journal_path, adds.client_order_id)["reason"]
        assert reduces.state == "accepted"


@pytest.mark.asyncio
async def test_replaces_and_cancels_pass_risk_and_a_cancel_over_the_rate_limit_is_refused_as_an_anomaly(
    tmp_path: Path,
) -> None:
    strategy = OneShot()
    async with KernelHarness(strategy, tmp_path, config={"risk.cancels_per_second": 1}) as kh:
        kernel = kh._kernel()
        await kh.quote(D("100.00"), D("100.10"))
        strategy.queued = [Place("BTCUSDT", "buy", D("1"), D("99")), Place("BTCUSDT", "buy", D("1"), D("98"))]
        await kh.timer()
        first, second = kh.open_orders()
        strategy.queued = [Replace(first.client_order_id, price=D("99.5"))]
        await kh.timer()
        assert [(o.client_order_id, o.price, o.state) for o in kh.open_orders()] == [
            (first.client_order_id, D("99.5"), "accepted"),
            (second.client_order_id, D("98"), "accepted"),
        ]
        assert {o.client_order_id: o.price for o in read_orders(kh.venue_path)}[first.client_order_id] == D("99.5")

        strategy.queued = [Cancel(first.client_order_id), Cancel(second.client_order_id)]  # 2 in one second
        await kh.timer()
        assert [o.client_order_id for o in kh.open_orders()] == [second.client_order_id]  # the 2nd was refused
        assert kernel.metrics.intents["cancel"] == 2
        assert kernel.metrics.intents["refused"] == 1
        assert kernel.metrics.denied == 0  # a refused cancel is no denied order
        assert len(kh.orders()) == 2
    with AuditReader(kh.journal_path) as reader:
        refused = reader.anomalies(source="risk")
        canceled = [t["trigger"] for t in reader.timeline(first.client_order_id, machine="order")]
    assert [(a["kind"], a["reason"]) for a in refused] == [
        ("cancels_per_second", "cancel rate limit reached: 1 cancels in the last second (cancels_per_second)")
    ]
    assert refused[0]["sample"] == repr(Cancel(second.client_order_id))
    assert "request_cancel" in canceled


class Burst(MarketMaker):
    """Places many orders from one callback: each order's updates reach on_order afterwards."""

    name = "burst"

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.updates = 0

    def on_market(self, event: Any, ctx: Context) -> list[Intent]:
        return []

    def on_timer(self, ctx: Context) -> list[Intent]:
        return [Place("BTCUSDT", "buy", D("0.001"), D("1.00") + D(i) / 100) for i in range(self.count)]

    def on_order(self, update: Any, ctx: Context) -> list[Intent]:
        self.updates += 1
        return []


@pytest.mark.asyncio
async def test_a_burst_of_orders_from_one_callback_is_told_to_on_order_without_recursion(tmp_path: Path) -> None:
    strategy = Burst(1500)  # deeper than Python's recursion limit if updates were told recursively
    async with KernelHarness(strategy, tmp_path, timeout=30.0) as kh:
        await kh.timer()
        assert len(kh.open_orders()) == 1500
        assert strategy.updates >= 1500  # every submit (and the acks) reached on_order
        assert kh._task is not None
        assert not kh._task.done()


# -- stops and loss limits, on replayed prices --------------------------------------------------------


@pytest.mark.asyncio
async def test_a_stop_loss_sends_a_closing_market_order_journaled_with_its_reason(tmp_path: Path) -> None:
    strategy = OneShot()
    async with KernelHarness(strategy, tmp_path, config={"risk.stop_loss_bps": D("100")}) as kh:
        await kh.quote(D("99.90"), D("100.10"))
        strategy.queued = [Place("BTCUSDT", "buy", D("1"), D("100.00"))]
        await kh.timer()
        await kh.trade(D("99.95"), D("1"), "sell")  # fills our bid: long 1 @ 100
        assert kh.position().qty == D("1")
        await kh.quote(D("98.90"), D("99.00"))
        for price in ("99.50", "99.10", "99.01"):  # above the stop (avg 100 - 100 bps = 99.00): nothing
            await kh.trade(D(price), D("0.001"), "sell")
        assert [o.tag for o in kh.orders()] == [""]
        await kh.trade(D("98.95"), D("0.001"), "sell")  # crosses: the stop fires once
        await kh.settle()
        stop = kh.orders()[-1]
        assert (stop.tag, stop.side, stop.order_type, stop.qty, stop.state) == (
            "stop_loss",
            "sell",
            "market",
            D("1"),
            "filled",
        )
        assert kh.position().qty == 0
        await kh.trade(D("98.00"), D("0.001"), "sell")
        assert len(kh.orders()) == 2  # fired once
    with AuditReader(kh.journal_path) as reader:
        (create,) = [t for t in reader.timeline(stop.client_order_id, machine="order") if t["trigger"] == "create"]
    assert create["data"]["reason"].startswith("stop-loss: mark 98.95 <= 99")


@pytest.mark.asyncio
async def test_a_daily_loss_over_the_limit_halts_trading_and_cancels_what_is_open(tmp_path: Path) -> None:
    strategy = OneShot()
    async with KernelHarness(strategy, tmp_path, config={"risk.daily_loss_limit": D("1")}) as kh:
        kernel = kh._kernel()
        await kh.quote(D("99.90"), D("100.10"))
        strategy.queued = [Place("BTCUSDT", "buy", D("1"), D("100.00")), Place("BTCUSDT", "sell", D("1"), D("105"))]
        await kh.timer()
        await kh.trade(D("99.95"), D("1"), "sell")  # the session's first trade; our bid fills: long 1
        await kh.trade(D("99.50"), D("0.001"), "sell")  # -0.5: within the limit
        assert kernel.trading is not None
        assert kernel.trading.state == "active"
        await kh.trade(D("98.90"), D("0.001"), "sell")  # -1.1: over
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halted", "the halt")
        assert kernel.trading.data["reason"].startswith("risk breach: daily_loss_limit")
        await kh.settle()
        assert kh.open_orders() == []  # the resting ask was canceled
    steps = trading_steps(kh.journal_path)
    assert steps[-2:] == [("risk_breach", "halting"), ("all_canceled", "halted")]


class Failing(MarketMaker):
    """Quotes like the market maker until told to fail."""

    name = "failing"
    fail = False

    def on_market(self, event: Any, ctx: Context) -> list[Intent]:
        if self.fail:
            raise RuntimeError("boom")
        return list(super().on_market(event, ctx))


@pytest.mark.asyncio
async def test_unhealthy_health_halts_and_cancels_the_open_quotes_at_the_venue(tmp_path: Path) -> None:
    strategy = Failing()
    async with KernelHarness(strategy, tmp_path, config={"health.strategy_errors_unhealthy": 2}) as kh:
        kernel = kh._kernel()
        await kh.quote(D("100.00"), D("100.10"))
        assert len(kh.open_orders()) == 2
        strategy.fail = True
        await kh.quote(D("100.00"), D("100.12"))
        await kh.quote(D("100.00"), D("100.14"))
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halted", "the halt")
        await kh.settle()
        assert kh.open_orders() == []
        assert sorted(o.status for o in read_orders(kh.venue_path)) == ["canceled", "canceled"]
        assert kernel.trading is not None
        assert kernel.trading.data["reason"].startswith("strategy unhealthy")
    assert trading_steps(kh.journal_path)[-2:] == [("health_unhealthy", "halting"), ("all_canceled", "halted")]


@pytest.mark.asyncio
async def test_a_journal_that_fails_with_quotes_open_halts_and_cancels_them_once_it_can(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path, config={"kernel.stop_timeout_s": 5}) as kh:
        kernel = kh._kernel()
        journal = kernel.journal
        assert journal is not None
        await kh.quote(D("100.00"), D("100.10"))
        assert len(kh.open_orders()) == 2
        journal._conn.execute("PRAGMA query_only = 1")  # type: ignore[union-attr]  # the file becomes unwritable
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halting", "halting")
        assert sorted(o.status for o in read_orders(kh.venue_path)) == ["new", "new"]  # no audit, no cancel either
        journal._conn.execute("PRAGMA query_only = 0")  # type: ignore[union-attr]
        await eventually(lambda: not [o for o in read_orders(kh.venue_path) if o.status == "new"], "the cancels")
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halted", "halted")
    with AuditReader(kh.journal_path) as reader:
        assert reader.verify().ok
    assert ("journal_failed", "halting") in trading_steps(kh.journal_path)
