"""A journal outage (a read-only file, a full disk) and what the kernel does when the journal takes
writes again: the fills committed on recovery reach positions, risk and the strategy at once, and
the halt the outage caused is on disk before anything else is acted on.

In-process (``KernelHarness``: a real journal file, the real paper venue on 127.0.0.1); the restart
after a SIGKILL during an outage is a real subprocess (``tradekernel run``).
"""

from __future__ import annotations

import functools
from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel.testing import KernelHarness
from storage.audit import AuditReader
from tests import poll
from tests.kernel.test_kernel import Scripted, bid

QTY = D("0.001")
eventually = functools.partial(poll.eventually, timeout=3.0)


def read_only(kh: KernelHarness, on: bool) -> None:
    """The journal file becomes (or stops being) unwritable, as on a read-only remount: SQLite
    refuses every write of the kernel's connection."""
    journal = kh._kernel().journal
    assert journal is not None
    assert journal._conn is not None
    journal._conn.execute(f"PRAGMA query_only = {int(on)}")


@pytest.mark.asyncio
async def test_fills_committed_on_recovery_reach_the_position_and_risk_at_once(tmp_path: Path) -> None:
    strategy = Scripted()
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

        await eventually(lambda: kh.health == "healthy", "health to recover")
        kernel.fire_trading("arm", reason="operator: disk fixed")
        strategy.on_timer_intents = [bid("99")]  # would take the position to 0.002 > max_position
        await kh.timer()
        denied = kh.orders()[-1]
        assert (denied.price, denied.state) == (D("99"), "denied")
        with AuditReader(kh.journal_path) as reader:
            [deny] = [t for t in reader.timeline(denied.client_order_id, machine="order") if t["trigger"] == "deny"]
        assert "max_position" in str(deny["data"])
