"""Per-account balances at the paper venue (issue 15), over a real loopback WebSocket: fills and fees
debit and credit exactly, an order the balance cannot cover is rejected ``insufficient balance``,
``balances`` answers them, and a restart keeps them. Expected amounts are computed by hand.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from kernel import paper_protocol as p
from kernel.strategies.market_maker import MarketMaker
from kernel.testing import KernelHarness
from kernel.venue.server import PaperVenue
from tests import poll
from tests.kernel.test_venue_cli import REPO, run_cli
from tests.kernel.test_venue_isolation import open_as
from tests.kernel.test_venue_server import LIMIT_S, Client, X, config

START = {"USDT": D("1000"), "BTC": D("1")}
FEE_BPS = D("10")  # 0.1 %


def a_venue(path: str) -> PaperVenue:
    return PaperVenue(path, config(balances=START, fee_bps=FEE_BPS))


async def balances(client: Client) -> dict[str, tuple[D, D]]:
    await client.send(p.BalancesRequest(id="b"))
    report = await client.expect(p.BalancesReport, skip=(p.Execution,))
    while report.id != "b":  # one the venue pushed as they moved
        report = await client.expect(p.BalancesReport, skip=(p.Execution,))
    return {b.asset: (b.total, b.available) for b in report.balances}


@pytest.mark.asyncio
async def test_fills_and_fees_debit_and_credit_the_account_exactly(tmp_path: object) -> None:
    path = f"{tmp_path}/venue.db"
    async with asyncio.timeout(LIMIT_S):
        async with a_venue(path) as venue:
            alice, bob = await open_as(venue, "alice"), await open_as(venue, "bob")
            assert await balances(alice) == {"BTC": (D("1"), D("1")), "USDT": (D("1000"), D("1000"))}
            await alice.order("b1", qty="2", price="100")
            await alice.executions(1)
            # 2 * 100 = 200 plus 0.2 fee headroom reserved
            assert await balances(alice) == {"BTC": (D("1"), D("1")), "USDT": (D("1000"), D("799.8"))}
            await venue.push_trade(X, D("99"), D("2"), "sell")
            (bought,) = await alice.executions(1)
            assert bought.fill is not None
            assert (bought.fill.qty, bought.fill.price, bought.fill.fee) == (D("2"), D("100"), D("0.2"))
            # USDT 1000 - 200 - 0.2 = 799.8; BTC 1 + 2 = 3
            assert await balances(alice) == {"BTC": (D("3"), D("3")), "USDT": (D("799.8"), D("799.8"))}
            await alice.order("s1", qty="3", price="110", side="sell")
            await alice.executions(1)
            assert await balances(alice) == {"BTC": (D("3"), D("0")), "USDT": (D("799.8"), D("799.8"))}
            await venue.push_trade(X, D("111"), D("3"), "buy")
            (sold,) = await alice.executions(1)
            assert sold.fill is not None
            assert sold.fill.fee == D("0.33")
            # USDT 799.8 + 330 - 0.33 = 1129.47; BTC 3 - 3 = 0
            assert await balances(alice) == {"BTC": (D("0"), D("0")), "USDT": (D("1129.47"), D("1129.47"))}
            assert await balances(bob) == {"BTC": (D("1"), D("1")), "USDT": (D("1000"), D("1000"))}
            await alice.ws.close()
            await bob.ws.close()
        async with a_venue(path) as venue:  # a restart keeps them
            alice = await open_as(venue, "alice")
            assert await balances(alice) == {"BTC": (D("0"), D("0")), "USDT": (D("1129.47"), D("1129.47"))}
            await alice.ws.close()


@pytest.mark.asyncio
async def test_an_order_the_balance_cannot_cover_is_rejected(tmp_path: object) -> None:
    async with asyncio.timeout(LIMIT_S), a_venue(f"{tmp_path}/venue.db") as venue:
        alice = await open_as(venue, "alice")
        await alice.order("too-big", qty="10", price="100")  # 1000 + 1 fee > 1000
        (rejected,) = await alice.executions(1)
        assert (rejected.exec, rejected.reason) == ("rejected", "insufficient balance")
        await alice.order("b9", qty="9", price="100")  # 900 + 0.9 fee
        (new,) = await alice.executions(1)
        assert new.exec == "new"
        await alice.order("b1", qty="1", price="100")  # 100.1 more: 1001 > 1000
        (rejected,) = await alice.executions(1)
        assert (rejected.exec, rejected.reason) == ("rejected", "insufficient balance")
        await alice.order("b-small", qty="0.9", price="100")  # 90.09 more: 990.99 <= 1000
        assert (await alice.executions(1))[0].exec == "new"
        await alice.send(p.ReplaceOrder(client_order_id="b-small", qty=D("1")))  # 100.1 more: 1001 > 1000
        (refused,) = await alice.executions(1)
        assert (refused.exec, refused.reason) == ("replace_rejected", "insufficient balance")
        # Sells: 1 BTC, less what open sells reserve.
        await alice.order("s2", qty="2", price="200", side="sell")
        assert (await alice.executions(1))[0].reason == "insufficient balance"
        await alice.order("s1", qty="0.6", price="200", side="sell")
        assert (await alice.executions(1))[0].exec == "new"
        await alice.order("s-more", qty="0.5", price="200", side="sell")  # 0.6 + 0.5 > 1
        assert (await alice.executions(1))[0].reason == "insufficient balance"
        # A market buy is priced against the book: ask 100 (no slippage) plus the fee.
        await alice.send(p.CancelOrder(client_order_id="b9"))
        await alice.send(p.CancelOrder(client_order_id="b-small"))
        await alice.executions(2)
        await venue.push_quote(X, D("99"), D("50"), D("100"), D("50"))
        await alice.order("m10", qty="10", price=None, order_type="market")  # 1000 + 1 > 1000
        assert (await alice.executions(1))[0].reason == "insufficient balance"
        await alice.order("m9", qty="9", price=None, order_type="market")  # 900 + 0.9
        new, filled = await alice.executions(2)
        assert (new.exec, filled.status) == ("new", "filled")
        # USDT 1000 - 900 - 0.9 = 99.1; BTC 1 + 9 = 10, of which 0.6 are reserved by s1
        assert await balances(alice) == {"BTC": (D("10"), D("9.4")), "USDT": (D("99.1"), D("99.1"))}
        await alice.ws.close()


@pytest.mark.asyncio
async def test_the_venue_command_takes_starting_balances_and_lists_orders_per_account(tmp_path: object) -> None:
    db = f"{tmp_path}/venue.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "kernel", "venue", "--port", "0", "--db", db, "--open", "--balance", "USDT=50", "--balance", "BTC=0.5"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(LIMIT_S):
            line = (await proc.stdout.readline()).decode()
            assert line.startswith("venue listening on "), line
            async with connect(line.split()[-1]) as ws:
                client = Client(ws)
                await client.hello()
                await client.order("big", qty="1", price="100")  # 100 > 50 USDT
                (rejected,) = await client.executions(1)
                assert (rejected.exec, rejected.reason) == ("rejected", "insufficient balance")
                await client.order("small", qty="0.4", price="100")  # 40 USDT
                assert (await client.executions(1))[0].exec in ("new", "trade")
                report = await balances(client)
                assert (report["USDT"][0], report["BTC"][0]) in ((D("50"), D("0.5")), (D("10"), D("0.9")))
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    listing = json.loads(run_cli("orders", "--db", db, "--json").stdout)
    assert [(o["account"], o["client_order_id"]) for o in listing] == [("local", "big"), ("local", "small")]
    assert json.loads(run_cli("orders", "--db", db, "--json", "--account", "other").stdout) == []
    table = run_cli("orders", "--db", db, "--account", "local").stdout
    assert table.split("\n")[0].split()[:2] == ["account", "client_order_id"]
    assert "2 order(s)" in table


@pytest.mark.asyncio
async def test_the_kernel_status_shows_its_venue_balances_as_fills_move_them(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path, venue={"fee_bps": FEE_BPS, "balances": START}) as kh:

        def balances_shown() -> dict[str, Any] | None:
            shown: dict[str, Any] | None = kh._kernel().status()["venue"]["balances"]
            return shown

        await poll.eventually(lambda: balances_shown() is not None, timeout=LIMIT_S)
        assert balances_shown() == {
            "BTC": {"total": "1", "available": "1"},
            "USDT": {"total": "1000", "available": "1000"},
        }
        await kh.quote(D("100.00"), D("100.10"))  # the market maker bids 0.001 at 99.99, asks 0.001 at 100.11
        await kh.trade(D("99.00"), D("5"), "sell")  # through the bid
        # USDT 1000 - 0.001 * 99.99 - 0.10 % fee (0.00009999) = 999.89991001; BTC 1 + 0.001
        await poll.eventually(lambda: (balances_shown() or {})["BTC"]["total"] == "1.001", timeout=LIMIT_S)
        assert (balances_shown() or {})["USDT"]["total"] == "999.89991001"


@pytest.mark.asyncio
async def test_a_connection_that_asked_for_its_balances_is_sent_them_as_they_move(tmp_path: object) -> None:
    async with asyncio.timeout(LIMIT_S), a_venue(f"{tmp_path}/venue.db") as venue:
        alice, bob = await open_as(venue, "alice"), await open_as(venue, "bob")
        await balances(alice)
        await balances(bob)
        await alice.order("b1", qty="1", price="100")
        await alice.executions(1)
        await venue.push_trade(X, D("99"), D("1"), "sell")
        await alice.executions(1)
        pushed = await alice.expect(p.BalancesReport)
        # USDT 1000 - 100 - 0.1 = 899.9; BTC 1 + 1 = 2
        assert (pushed.id, [(b.asset, b.total) for b in pushed.balances]) == (
            "",
            [("BTC", D("2")), ("USDT", D("899.9"))],
        )
        await bob.send(p.Ping(id="quiet"))
        assert (await bob.expect(p.Pong)).id == "quiet"  # bob's balances did not move: nothing pushed to him
        await alice.ws.close()
        await bob.ws.close()
