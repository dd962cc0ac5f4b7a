"""``tradekernel run --market paper:BTCUSDT`` in a real subprocess, paper-trading on a "live" market.

A second paper venue, on 127.0.0.1 in a thread of the test, replays a market of its own (prices
near 1234.50, far from the bundled data's near 40000) and stands for the live venue; the kernel's
embedded venue follows it through a ``FeedClient`` on the ``paper`` source. Every wait is bounded;
the processes stop by themselves (``--duration``) or are killed at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from kernel.venue.server import PaperVenue, VenueConfig
from storage.audit import AuditReader
from storage.venue_store import read_orders
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIMIT_S = 40.0
START_TS = 1_700_000_000_000
MID = D("1234.50")


def write_market(directory: Path, *, through: D) -> tuple[str, str]:
    """A minute of quotes (every 100 ms, mid 1234.50 +- 0.05) and trades (every 300 ms, alternately
    ``through`` below and above the mid, 0.0004 each): Binance CSV formats of ``marketdata``."""
    quotes = ["ts_ms,symbol,bid,bid_qty,ask,ask_qty"]
    trades = ["ts_ms,trade_id,price,qty,buyer_is_maker"]
    for step in range(600):
        mid = MID + D("0.05") * (step % 3 - 1)
        quotes.append(f"{START_TS + step * 100},BTCUSDT,{mid - D('0.05')},1.5,{mid + D('0.05')},2.5")
        if step % 3 == 0:
            below = (step // 3) % 2 == 0
            price = mid - through if below else mid + through
            trades.append(f"{START_TS + step * 100},{step},{price},0.0004,{'true' if below else 'false'}")
    (directory / "quotes.csv").write_text("\n".join(quotes) + "\n")
    (directory / "trades.csv").write_text("\n".join(trades) + "\n")
    return str(directory / "trades.csv"), str(directory / "quotes.csv")


class MarketThread:
    """A ``PaperVenue`` replaying ``data`` in a loop, served from its own event loop in a thread."""

    def __init__(self, store: str, data: tuple[str, str]) -> None:
        self.config = VenueConfig(data_paths=data, speed=1.0, loop=True)
        self.store = store
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with PaperVenue(self.store, self.config) as venue:
            self.url = venue.url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> MarketThread:
        self._thread.start()
        assert self._ready.wait(LIMIT_S), "the market venue did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(LIMIT_S)


def write_config(path: Path, db: str, ws_url: str, **kernel: Any) -> str:
    lines = ["[kernel]", f'db = "{db}"', 'status_view = "off"', 'durability = "normal"']
    lines += [f"{key} = {str(value).lower() if isinstance(value, bool) else value}" for key, value in kernel.items()]
    lines += ["", "[market]", f'ws_url = "{ws_url}"']
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def entities(db: str, machine: str) -> list[dict[str, Any]]:
    with AuditReader(db) as reader:
        return reader.entities(machine=machine)


def poll(condition: Callable[[], bool], what: str, limit: float = LIMIT_S) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def killer() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(LIMIT_S)


def test_run_paper_trades_on_the_live_market_and_stops_cleanly(tmp_path: Path) -> None:
    db = str(tmp_path / "kernel.db")
    with MarketThread(str(tmp_path / "market.db"), write_market(tmp_path, through=D("1.50"))) as market:
        config = write_config(tmp_path / "kernel.toml", db, market.url)
        result = run_cli("run", "--config", config, "--market", "paper:BTCUSDT", "--duration", "6", timeout=LIMIT_S)
    assert result.returncode == 0, result.stderr
    assert run_cli("audit", "verify", "--db", db, timeout=LIMIT_S).returncode == 0

    with AuditReader(db) as reader:
        live_feed = [row["dest"] for row in reader.timeline("market-r1", machine="feed")]
        kernel_feed = [row["dest"] for row in reader.timeline("feed-r1", machine="feed")]
        orders = reader.entities(machine="order")
        fills = reader.fills()
    assert "streaming" in live_feed
    assert live_feed[-1] == "closed"
    assert "streaming" in kernel_feed
    prices = [D(order["data"]["price"]) for order in orders]
    assert prices, "the strategy placed no order"
    # Quoted around the live mid (1234.45 to 1234.55, 10 bps wide): nowhere near the bundled ~40000.
    assert all(D("1232") < price < D("1237") for price in prices), prices
    assert fills, "nothing filled on the live trades"
    # Resting quotes fill at their own limit, on trades 1.50 through the mid, 0.0004 at a time at most.
    assert all(D("1232") < D(fill["price"]) < D("1237") for fill in fills), fills
    assert all(D(fill["qty"]) <= D("0.0004") for fill in fills), fills


def test_a_killed_kernel_finds_the_paper_venues_orders_again_on_restart(
    tmp_path: Path, killer: list[subprocess.Popen[str]]
) -> None:
    db = str(tmp_path / "kernel.db")
    # Trades print 0.10 from the mid: the market maker's quotes (0.6 away) rest and never fill.
    with MarketThread(str(tmp_path / "market.db"), write_market(tmp_path, through=D("0.10"))) as market:
        config = write_config(tmp_path / "kernel.toml", db, market.url, cancel_on_stop=False)
        first = subprocess.Popen(
            [sys.executable, "-m", "kernel", "run", "--config", config, "--market", "paper:BTCUSDT"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, env=ENV, cwd=str(REPO),
        )  # fmt: skip
        killer.append(first)

        def resting() -> set[str]:
            if not Path(f"{db}.venue.db").exists():
                return set()
            return {o.client_order_id for o in read_orders(f"{db}.venue.db") if o.status == "new"}

        poll(lambda: len(resting()) == 2, "a bid and an ask resting at the venue")
        first.send_signal(signal.SIGKILL)
        assert first.wait(LIMIT_S) == -signal.SIGKILL
        left = resting()

        second = run_cli(
            "run", "--config", config, "--market", "paper:BTCUSDT", "--strategy", "idle", "--duration", "3",
            timeout=LIMIT_S,
        )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "the last run did not end cleanly (run 1)" in second.stderr
    assert resting() == left  # the venue kept them across the kill and the restart
    with AuditReader(db) as reader:
        live = {row["entity"] for row in reader.entities(machine="order", live_only=True)}
        recons = [row for row in reader.entities(machine="reconciliation") if row["state"] == "done"]
    assert left <= live  # the journal still holds them live
    report = recons[-1]["data"]["counts"]
    assert report["venue_open"] == 2
    assert report["lost"] == 0
    assert run_cli("audit", "verify", "--db", db, timeout=LIMIT_S).returncode == 0
