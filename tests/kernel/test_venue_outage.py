"""Venue outages heal without an operator (issue 14, items 1 and 2): real processes on 127.0.0.1.

A ``tradekernel venue`` subprocess on a fixed free port stands for the venue; a ``tradekernel run
--venue ws://127.0.0.1:PORT`` subprocess trades on it with ``Churn`` (below: one resting buy,
canceled and placed again every other timer tick, so new orders keep reaching the venue).

* The kernel starts 6 s before its venue: it waits (order entry paused, health degraded), then
  connects, learns the instruments from the venue, reconciles and trades.
* The venue is SIGKILLed mid-run and restarted on the same port and store 10 s later: the kernel
  pauses order entry, keeps reconnecting, then reconciles and trades again by itself.

Both end with new orders at the venue after the outage, trading ``active`` and never armed, and
``tradekernel stop`` ending the kernel with exit 0 and no traceback. Every wait has a deadline;
every process still there at the end is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kernel.config import ConfigError, load
from kernel.control import ControlServer
from kernel.feed.client import FeedClient
from kernel.strategies import PENDING_STATES, floor_to_tick
from kernel.strategy import Cancel, Context, Intent, Place, Strategy
from kernel.venue.server import PaperVenue, VenueConfig
from storage import Journal
from storage.audit import AuditReader
from storage.venue_store import read_orders
from tests.conftest import REPO, run_cli

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIMIT_S = 30.0
"""The longest any single wait may take."""
HEAD_START_S = 6.0
"""How long the kernel runs before its venue first appears."""
OUTAGE_S = 10.0
"""How long the venue is gone mid-run."""


class Churn(Strategy):
    """Keeps new orders flowing: places one buy 0.5 % under the mid, cancels it on the next tick."""

    name: ClassVar[str] = "churn"
    timer_interval_ms: ClassVar[int | None] = 250

    def on_timer(self, ctx: Context) -> Iterable[Intent]:
        mid = ctx.mid("BTCUSDT")
        if not ctx.trading_allowed or mid is None:
            return []
        mine = ctx.orders_of("BTCUSDT")
        if any(order.state in PENDING_STATES for order in mine):
            return []
        if mine:
            return [Cancel(order.client_order_id) for order in mine]
        return [Place("BTCUSDT", "buy", Decimal("0.001"), floor_to_tick(mid * Decimal("0.995"), Decimal("0.01")))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(condition: Callable[[], bool], what: str, limit: float = LIMIT_S) -> None:
    """Wait until ``condition()`` holds, at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {limit} s waiting for {what}"
        time.sleep(0.1)


class Processes:
    """The test's subprocesses: a venue on ``port`` with its store, a kernel on ``db``; killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.store = str(tmp / "venue.db")
        self.db = str(tmp / "kernel.db")
        self.venue: subprocess.Popen[str] | None = None
        self.kernel: subprocess.Popen[str] | None = None
        self.started: list[subprocess.Popen[str]] = []

    def start_venue(self) -> None:
        self.venue = subprocess.Popen(
            [sys.executable, "-m", "kernel", "venue", "--open", "--port", str(self.port), "--db", self.store,
             "--seed", "7"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=str(REPO), text=True,
        )  # fmt: skip
        self.started.append(self.venue)

    def kill_venue(self) -> None:
        assert self.venue is not None
        self.venue.send_signal(signal.SIGKILL)
        assert self.venue.wait(LIMIT_S) == -signal.SIGKILL

    def start_kernel(self, *extra: str, venue: tuple[str, ...] = ()) -> None:
        config = self.tmp / "kernel.toml"
        config.write_text(
            "\n".join([
                "[kernel]", f'db = "{self.db}"', 'status_view = "off"', 'durability = "normal"',
                "[venue]", f'url = "{self.url}"', *venue,
                "[strategy]", f'name = "{__name__}:Churn"',
                *extra,
            ]) + "\n"
        )  # fmt: skip
        self.kernel = subprocess.Popen(
            [sys.executable, "-m", "kernel", "run", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=str(REPO), text=True,
        )  # fmt: skip
        self.started.append(self.kernel)

    def kernel_alive(self) -> bool:
        assert self.kernel is not None
        if self.kernel.poll() is None:
            return True
        _, err = self.kernel.communicate(timeout=LIMIT_S)
        raise AssertionError(f"the kernel exited with {self.kernel.returncode}:\n{err[-4000:]}")

    def venue_orders(self) -> set[str]:
        if not Path(self.store).exists():
            return set()
        return {order.client_order_id for order in read_orders(self.store)}

    def status(self) -> dict[str, Any]:
        result = run_cli("status", "--db", self.db, "--json", timeout=LIMIT_S)
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def health(self, component: str) -> tuple[str, str | None] | None:
        if not Path(f"{self.db}.sock").exists():  # the kernel has not finished starting yet
            return None
        with AuditReader(self.db) as reader:
            rows = [r for r in reader.entities(machine="health") if r["entity"].startswith(f"{component}-")]
        return (rows[-1]["state"], rows[-1]["data"].get("reason")) if rows else None

    def trading(self) -> str | None:
        if not Path(f"{self.db}.sock").exists():  # the kernel has not finished starting yet
            return None
        with AuditReader(self.db) as reader:
            rows = reader.entities(machine="trading")
        return str(rows[-1]["state"]) if rows else None

    def stop_and_check(self) -> None:
        """``tradekernel stop``: exit 0, no traceback, trading active and never armed."""
        assert self.kernel is not None
        status = self.status()
        assert status["trading"]["state"] == "active", status["trading"]
        stop = run_cli("stop", "--db", self.db, timeout=LIMIT_S)
        assert stop.returncode == 0, stop.stderr
        _, err = self.kernel.communicate(timeout=LIMIT_S)
        assert "Traceback" not in err, f"a traceback:\n{err[-6000:]}"
        assert self.kernel.returncode == 0, f"exit {self.kernel.returncode}:\n{err[-4000:]}"
        with AuditReader(self.db) as reader:
            trading = reader.entities(machine="trading")
            steps = [
                row["trigger"] for entity in trading for row in reader.timeline(entity["entity"], machine="trading")
            ]
        assert [entity["state"] for entity in trading] == ["active"]
        assert "arm" not in steps, steps
        assert "health_unhealthy" not in steps, steps
        verify = run_cli("audit", "verify", "--db", self.db, timeout=LIMIT_S)
        assert verify.returncode == 0, verify.stdout + verify.stderr

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=LIMIT_S)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.kill_all()


@pytest.mark.parametrize(
    "instruments",
    [
        pytest.param((), id="instruments-from-the-venue"),  # was: a traceback, exit 1
        pytest.param(('instruments = ["BTCUSDT"]',), id="instruments-configured"),  # was: halted for good
    ],
)
def test_a_kernel_started_before_its_venue_waits_then_trades(procs: Processes, instruments: tuple[str, ...]) -> None:
    started = time.monotonic()
    procs.start_kernel(venue=instruments)
    # Waiting, not failing: alive, health says the venue session is down (order entry paused).
    poll(lambda: procs.kernel_alive() and procs.health("venue") == ("degraded", "venue session down"), "venue down")
    poll(lambda: procs.kernel_alive() and time.monotonic() - started >= HEAD_START_S, "the head start")
    assert procs.venue_orders() == set()
    procs.start_venue()
    poll(lambda: procs.kernel_alive() and len(procs.venue_orders()) >= 2, "orders at the venue")
    procs.stop_and_check()


def test_a_venue_killed_for_10_s_mid_run_heals_without_an_operator(procs: Processes) -> None:
    procs.start_venue()
    procs.start_kernel()
    poll(lambda: procs.kernel_alive() and len(procs.venue_orders()) >= 2, "orders at the venue")
    procs.kill_venue()
    killed = time.monotonic()
    before = procs.venue_orders()
    poll(lambda: procs.kernel_alive() and procs.health("venue") == ("degraded", "venue session down"), "venue down")
    poll(lambda: procs.kernel_alive() and time.monotonic() - killed >= OUTAGE_S, "the outage")
    procs.start_venue()
    poll(lambda: procs.kernel_alive() and len(procs.venue_orders() - before) >= 2, "new orders after the outage")
    procs.stop_and_check()


def test_an_opted_in_outage_limit_halts_trading(procs: Processes) -> None:
    procs.start_kernel("[health]", "venue_outage_halt_s = 1")
    poll(lambda: procs.kernel_alive() and procs.trading() == "halted", "the halt")
    stop = run_cli("stop", "--db", procs.db, timeout=LIMIT_S)
    assert stop.returncode == 0, stop.stderr
    assert procs.kernel is not None
    _, err = procs.kernel.communicate(timeout=LIMIT_S)
    assert "venue unhealthy: venue session down for >= 1000 ms" in err, err[-4000:]
    assert "Traceback" not in err, err[-6000:]


def test_halting_on_a_long_venue_outage_is_opt_in() -> None:
    assert load(None, {}, environ={}).health.thresholds().venue_outage_halt_ms == 0  # off by default
    set_to = load(None, {"health.venue_outage_halt_s": 30}, environ={}).health.thresholds()
    assert set_to.venue_outage_halt_ms == 30_000
    assert load(None, {"health.venue_outage_halt_s": 0.0004}, environ={}).health.thresholds().venue_outage_halt_ms == 1
    with pytest.raises(ConfigError, match="venue_outage_halt_s"):
        load(None, {"health.venue_outage_halt_s": -1}, environ={})


def test_a_control_client_still_connected_when_the_kernel_stops_leaves_no_traceback(tmp_path: Path) -> None:
    # ``tradekernel stop`` may still hold its connection while the kernel finishes stopping.
    errors: list[dict[str, Any]] = []

    async def answer(request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        server = ControlServer(str(tmp_path / "k.sock"), answer)
        await server.start()
        reader, writer = await asyncio.open_unix_connection(server.path)
        writer.write(b'{"command": "stop"}\n')
        assert json.loads(await reader.readline()) == {"ok": True}
        await server.stop()
        writer.close()  # the loop ends before the server sees it: its handler is cancelled

    asyncio.run(main())
    assert errors == []


@pytest.mark.asyncio
async def test_a_feed_in_a_long_backoff_reconnects_at_once_when_the_venue_is_back(tmp_path: Path) -> None:
    port = free_port()
    journal = Journal.open(str(tmp_path / "journal.db"), durability="normal")
    policy = {"backoff_initial_ms": 60_000, "backoff_max_ms": 60_000}  # the timer alone: a minute away
    feed = FeedClient(f"ws://127.0.0.1:{port}", ["BTCUSDT"], journal, "feed-1", policy)
    running = asyncio.create_task(feed.run())
    venue = PaperVenue(str(tmp_path / "venue.db"), VenueConfig(heartbeat_s=0.2))
    try:
        async with asyncio.timeout(10):
            await feed.wait_until_state("backoff")  # nothing listens yet
            await venue.start("127.0.0.1", port)
            feed.retry_now()  # what the kernel does when its order session to the venue is up again
            await feed.wait_until_streaming()
        assert feed.feed.data["attempt"] == 1
    finally:
        feed.stop()
        await running
        await venue.stop()
        journal.close()
