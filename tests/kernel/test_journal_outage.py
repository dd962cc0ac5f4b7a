"""A journal outage (a read-only file, a full disk) and what the kernel does when the journal takes
writes again: the fills committed on recovery reach positions, risk and the strategy at once, and
the halt the outage caused is on disk before anything else is acted on.

In-process (``KernelHarness``: a real journal file, the real paper venue on 127.0.0.1); the restart
after a SIGKILL during an outage is a real subprocess (``tradekernel run``).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from kernel import control
from kernel.strategy import Context, Intent, OrderUpdate
from kernel.testing import KernelHarness
from storage.audit import AuditReader
from tests import poll
from tests.kernel import test_stall
from tests.kernel.test_kernel import Scripted, bid
from tests.kernel.test_stall import Kernel, trading

QTY = D("0.001")
start, workdir = test_stall.start, test_stall.workdir  # the fixtures: a real `tradekernel run` in a short directory
eventually = functools.partial(poll.eventually, timeout=3.0)


def read_only(kh: KernelHarness, on: bool) -> None:
    """The journal file becomes (or stops being) unwritable, as on a read-only remount: SQLite
    refuses every write of the kernel's connection."""
    journal = kh._kernel().journal
    assert journal is not None
    assert journal._conn is not None
    journal._conn.execute(f"PRAGMA query_only = {int(on)}")


class ToldAfterTheHalt(Scripted):
    """Records the trading state the journal holds (committed) when the strategy is told of a fill."""

    def __init__(self, db: str) -> None:
        super().__init__()
        self.db = db
        self.journal_said: list[str] = []

    def on_order(self, update: OrderUpdate, ctx: Context) -> Iterable[Intent]:
        if update.trigger == "fill":
            self.journal_said.append(trading_state(self.db))
        return super().on_order(update, ctx)


@pytest.mark.asyncio
async def test_fills_committed_on_recovery_reach_the_position_and_risk_at_once(tmp_path: Path) -> None:
    strategy = ToldAfterTheHalt(str(tmp_path / "kernel.db"))
    config = {"risk.max_position": QTY}
    async with KernelHarness(strategy, tmp_path, config=config) as kh:
        kernel = kh._kernel()
        journal = kernel.journal
        assert journal is not None
        await kh.quote(D("100.00"), D("100.10"))
        strategy.on_timer_intents = [bid("100")]
        await kh.timer()
        [order] = kh.open_orders()
        assert order.state == "accepted"

        read_only(kh, True)
        await kh.trade(D("99.00"), D("5"), "sell")  # trades through our bid: the fill cannot be committed
        await eventually(lambda: journal.failure is not None, "the fill's commit to fail")
        assert kh.position().qty == 0  # nothing uncommitted is told to anyone
        await eventually(lambda: kh.health == "unhealthy", "health to fail on the journal")
        assert kernel.trading is not None
        assert kernel.trading.state in ("halting", "halted")

        read_only(kh, False)
        # The health monitor's retry commits the fill (nothing else commits): the position, the risk
        # view and the strategy have it as soon as the journal has it.
        await eventually(lambda: journal.pending == 0 and journal.failure is None, "the journal to recover")
        assert kh.position().qty == QTY
        assert kernel.portfolio.risk_view("active").positions == {"BTCUSDT": QTY}
        assert [(u.trigger, u.fill.qty if u.fill else None) for u in strategy.updates][-1] == ("fill", QTY)
        assert strategy.updates[-1].order.state == "filled"
        # the outage's halt was durable before anything was told of what the journal recovered
        assert strategy.journal_said == ["halted"]  # journal_failed, then all_canceled (the order had filled)

        await eventually(lambda: kh.health == "healthy", "health to recover")
        kernel.fire_trading("arm", reason="operator: disk fixed")
        strategy.on_timer_intents = [bid("99")]  # would take the position to 0.002 > max_position
        await kh.timer()
        denied = kh.orders()[-1]
        assert (denied.price, denied.state) == (D("99"), "denied")
        with AuditReader(kh.journal_path) as reader:
            [deny] = [t for t in reader.timeline(denied.client_order_id, machine="order") if t["trigger"] == "deny"]
        assert "max_position" in str(deny["data"])


# -- killed during an outage: the restart -----------------------------------------------------------


def holding_the_write_lock(db: str) -> subprocess.Popen[str]:
    """Another process holding the journal's SQLite write lock until told (a line on its stdin):
    every commit of the kernel fails (``JournalBusy``), a journal outage like a full disk's."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys\n"
         "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "conn.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.readline()\n"
         "conn.execute('ROLLBACK')\n",
         db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    return holder


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    assert holder.stdout is not None
    holder.stdin.write("\n")
    holder.stdin.close()
    assert holder.wait(timeout=10) == 0
    holder.stdout.close()


def trading_state(db: str) -> str:
    with AuditReader(db) as reader:
        [trading] = reader.entities(machine="trading")
    return str(trading["state"])


@pytest.mark.asyncio
async def test_a_kernel_killed_during_an_outage_restarts_halted_and_reconciles_before_anything(
    start: Any,
) -> None:
    kernel: Kernel = start()
    await trading(kernel)
    holder = holding_the_write_lock(kernel.db)
    try:

        def halted_in_memory() -> bool:
            status = kernel.status()
            return status is not None and status["trading"]["state"] in ("halting", "halted")

        await poll.eventually(halted_in_memory, "the outage to halt trading", timeout=10.0)
        assert os.path.exists(f"{kernel.db}.outage")  # the mark the journal could not hold
        kernel.proc.send_signal(signal.SIGKILL)
        assert kernel.proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        release(holder)
    assert trading_state(kernel.db) == "active"  # the halt never reached the journal

    again: Kernel = start()
    seen: list[dict[str, Any]] = []

    def up() -> bool:
        assert again.proc.poll() is None, again.stderr
        status = again.status()
        if status is not None:
            seen.append(status)
        return status is not None

    await poll.eventually(up, "the restarted kernel to answer", timeout=10.0)
    first = seen[0]
    assert first["trading"]["state"] in ("halting", "halted"), first["trading"]
    assert "journal outage was never recorded" in first["trading"]["reason"]
    assert first["trading"]["order_entry"] == "paused"

    def halted() -> bool:
        status = again.status()
        return status is not None and status["trading"]["state"] == "halted" and not status["open_orders"]

    await poll.eventually(halted, "the halt to complete after reconciliation", timeout=10.0)
    assert not os.path.exists(f"{again.db}.outage")  # recorded in the journal now
    assert trading_state(again.db) == "halted"
    answer = control.request(again.sock, "stop", timeout=2.0, reason="test over")
    assert answer["ok"]
    assert again.proc.wait(timeout=10) == 0, again.stderr
    assert "Traceback" not in again.stderr
    with AuditReader(again.db) as reader:
        assert reader.verify().ok
