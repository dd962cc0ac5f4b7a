"""The kernel process, in-process and end to end: ``Kernel`` with a real journal (SQLite in a temporary
directory), the real paper venue on 127.0.0.1, real HTTP requests and real Unix sockets.

Most tests drive a strategy through ``KernelHarness``; the start-up, signal and duration tests build a
``Kernel`` directly. Every network wait is bounded (``asyncio.timeout``), so a broken kernel fails a test
instead of hanging it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from kernel import control
from kernel.app import Kernel, entity_id
from kernel.config import Config, load
from kernel.control import ControlError, ControlServer, NoKernel
from kernel.exits import EXIT_FAILED, EXIT_OK
from kernel.net import is_loopback
from kernel.status import StatusView, journal_status, render_text
from kernel.strategies.market_maker import MarketMaker
from kernel.strategy import Context, Intent, MarketEvent, OrderUpdate, Place, Strategy
from kernel.testing import KernelHarness
from kernel.venue.server import PaperVenue, VenueConfig
from storage.audit import AuditReader
from storage.errors import JournalLocked
from storage.venue_store import StoredOrder, read_orders
from tests import poll

BTC = "BTCUSDT"
QTY = D("0.001")
NET = 3.0
"""Seconds any single network wait may take before the test fails."""
eventually = functools.partial(poll.eventually, timeout=NET)
VENUE_OPEN = ("new", "partially_filled")


# -- helpers --------------------------------------------------------------------------------------


class Scripted(Strategy):
    """A strategy under the test's exact control: intents queued per callback, failures on demand."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.on_timer_intents: list[Intent] = []
        self.on_market_intents: list[Intent] = []
        self.fail_market = False
        self.market_calls = 0
        self.timer_calls = 0
        self.updates: list[OrderUpdate] = []
        self.allowed: list[bool] = []

    def on_market(self, event: MarketEvent, ctx: Context) -> Iterable[Intent]:
        self.market_calls += 1
        if self.fail_market:
            raise RuntimeError("boom")
        intents, self.on_market_intents = self.on_market_intents, []
        return intents

    def on_timer(self, ctx: Context) -> Iterable[Intent]:
        self.timer_calls += 1
        self.allowed.append(ctx.trading_allowed)
        intents, self.on_timer_intents = self.on_timer_intents, []
        return intents

    def on_order(self, update: OrderUpdate, ctx: Context) -> Iterable[Intent]:
        self.updates.append(update)
        return ()


class RecordingMarketMaker(MarketMaker):
    """The shipped market maker, remembering each order update and the position it saw with it."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[tuple[OrderUpdate, D]] = []

    def on_order(self, update: OrderUpdate, ctx: Context) -> list[Intent]:
        self.updates.append((update, ctx.position(BTC).qty))
        return super().on_order(update, ctx)


def bid(price: str = "90") -> Place:
    return Place(BTC, "buy", QTY, D(price))


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """A real HTTP/1.1 GET on 127.0.0.1: (status, headers with lower-case names, body)."""
    async with asyncio.timeout(NET):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def http_json(port: int, path: str) -> tuple[int, Any]:
    status, headers, body = await http_get(port, path)
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)


async def ask(path: str, command: str, **fields: Any) -> dict[str, Any]:
    """``control.request`` (blocking) in a thread, bounded: the kernel answers on this loop."""
    async with asyncio.timeout(NET):
        return await asyncio.to_thread(control.request, path, command, NET, **fields)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> dict[str, Any]:
    """Send one raw line on an open control connection; the decoded answer line."""
    async with asyncio.timeout(NET):
        writer.write(line)
        await writer.drain()
        answer: dict[str, Any] = json.loads(await reader.readline())
    return answer


def venue_orders(path: str) -> list[StoredOrder]:
    return read_orders(path)


def venue_open(path: str) -> list[StoredOrder]:
    return [o for o in read_orders(path) if o.status in VENUE_OPEN]


@contextmanager
def audit(path: str) -> Iterator[AuditReader]:
    reader = AuditReader(path)
    try:
        yield reader
    finally:
        reader.close()


def triggers(path: str, entity: str, machine: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(trigger, dest, data) of each journaled transition of one entity."""
    with audit(path) as reader:
        return [(t["trigger"], t["dest"], t["data"]) for t in reader.timeline(entity, machine=machine)]


def runs(path: str) -> list[str]:
    """The state of each run of the journal, oldest first."""
    with audit(path) as reader:
        return [r["state"] for r in sorted(reader.entities(machine="run"), key=lambda r: int(r["entity"]))]


def assert_stopped_cleanly(path: str, run_id: int = 1) -> None:
    """verify() is ok, every health entity of the run ended ``stopped`` and the run is recorded stopped."""
    with audit(path) as reader:
        result = reader.verify()
        assert result.ok, result.as_json()
        suffix = f"-r{run_id}"
        health = {r["entity"]: r["state"] for r in reader.entities(machine="health") if r["entity"].endswith(suffix)}
        run = {r["entity"]: r["state"] for r in reader.entities(machine="run")}
    assert set(health) == {f"{n}{suffix}" for n in ("kernel", "feed", "venue", "journal", "loop", "strategy")}
    assert set(health.values()) == {"stopped"}, health
    assert run[str(run_id)] == "stopped"


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short directory for Unix sockets (``sun_path`` is ~104 bytes; pytest's tmp_path can be longer)."""
    path = tempfile.mkdtemp(prefix="tk-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def kernel_config(tmp_path: Path, sock_dir: str, **overrides: Any) -> Config:
    """A config for a ``Kernel`` built directly (not through the harness)."""
    return load(
        None,
        {
            "kernel.db": str(tmp_path / "kernel.db"),
            "kernel.durability": "normal",
            "kernel.status_view": "off",
            "kernel.control_socket": os.path.join(sock_dir, "k.sock"),
            "venue.instruments": [BTC],
            **overrides,
        },
    )


@asynccontextmanager
async def paper_venue(tmp_path: Path, **options: Any) -> AsyncIterator[PaperVenue]:
    venue = PaperVenue(str(tmp_path / "venue.db"), VenueConfig(**{"instruments": (BTC,), "autoplay": False, **options}))
    await venue.start("127.0.0.1", 0)
    try:
        yield venue
    finally:
        await venue.stop()


async def finish(task: asyncio.Task[int], timeout: float = 10.0) -> int:
    async with asyncio.timeout(timeout):
        return await task


# -- 1. trading through the kernel ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_market_maker_quotes_fills_requotes_and_stops_clean(tmp_path: Path) -> None:
    strategy = RecordingMarketMaker()
    async with KernelHarness(strategy, tmp_path, venue={"fee_bps": D(10)}) as kh:
        await kh.quote(D("100.00"), D("100.10"))  # mid 100.05, spread 10 bps
        quotes = {o.tag: o for o in kh.open_orders()}
        assert set(quotes) == {"bid", "ask"}
        assert (quotes["bid"].side, quotes["bid"].price, quotes["bid"].state) == ("buy", D("99.99"), "accepted")
        assert (quotes["ask"].side, quotes["ask"].price, quotes["ask"].state) == ("sell", D("100.11"), "accepted")
        assert sorted((o.side, o.price, o.status) for o in venue_orders(kh.venue_path)) == [
            ("buy", D("99.99"), "new"),
            ("sell", D("100.11"), "new"),
        ]

        await kh.trade(D("99.00"), D("5"), "sell")  # trades through our bid only
        position = kh.position()
        fee = D("99.99") * QTY * D(10) / D(10_000)
        assert (position.qty, position.avg_px, position.realized_pnl, position.fees) == (QTY, D("99.99"), 0, fee)
        status = kh._kernel().status()
        assert status["positions"][BTC]["unrealized_pnl"] == "-0.00099"  # marked at the last trade, 99.00
        assert status["fills"] == 1

        fills = [(u, qty) for u, qty in strategy.updates if u.fill is not None]
        assert len(fills) == 1
        update, seen_position = fills[0]
        assert (update.trigger, update.order.client_order_id, update.order.state) == (
            "fill",
            quotes["bid"].client_order_id,
            "filled",
        )
        assert (update.fill.qty, update.fill.price, update.fill.fee) == (QTY, D("99.99"), fee)
        assert seen_position == QTY  # the fill is folded into the position before on_order runs

        requoted = {o.tag: o for o in kh.open_orders()}  # a fresh bid (skewed by nothing: skew_bps 0)
        assert requoted["bid"].client_order_id != quotes["bid"].client_order_id
        assert (requoted["bid"].price, requoted["bid"].state) == (D("99.99"), "accepted")
        assert requoted["ask"].client_order_id == quotes["ask"].client_order_id
        kernel = kh._kernel()

    assert kh.exit_status == EXIT_OK
    assert kernel.orders_left_open == []
    assert venue_open(kh.venue_path) == []  # cancel_on_stop (default): nothing left working at the venue
    with audit(kh.journal_path) as reader:
        orders = reader.entities(machine="order")
        assert len(orders) == 3
        assert not [o for o in orders if o.get("live")], orders
        assert sorted(o["state"] for o in orders) == ["canceled", "canceled", "filled"]
        assert reader.entities(machine="order", live_only=True) == []
        assert [(f["side"], f["qty"], f["price"], f["fee"]) for f in reader.fills()] == [("buy", QTY, D("99.99"), fee)]
    assert_stopped_cleanly(kh.journal_path)

    # the journal alone tells the same story once the kernel is gone
    offline = journal_status(kh.journal_path)
    assert offline["running"] is False
    assert offline["health"]["status"] == "stopped"
    assert offline["open_orders"] == []
    assert offline["positions"][BTC]["qty"] == "0.001"
    assert offline["last_run"]["clean"] is True
    assert "not running" in render_text(offline)


@pytest.mark.asyncio
async def test_restart_rebuilds_the_position_from_the_journal_and_reports_the_last_run(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path) as kh:
        await kh.quote(D("100.00"), D("100.10"))
        await kh.trade(D("99.00"), D("5"), "sell")
        assert kh.position().qty == QTY

    async with KernelHarness(Scripted(), tmp_path) as again:
        kernel = again._kernel()
        assert kernel.journal is not None
        assert kernel.journal.run_id == 2
        assert again.position().qty == QTY  # folded from run 1's journaled fill, not from the venue
        assert kernel.metrics.fills == 1
        last = kernel.status()["last_run"]
        assert (last["run_id"], last["state"], last["clean"]) == (1, "stopped", True)
    assert runs(kh.journal_path) == ["stopped", "stopped"]
    assert_stopped_cleanly(kh.journal_path, run_id=2)


# -- 2. the order gate ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stale_feed_pauses_order_entry_and_a_place_is_journaled_as_denied(tmp_path: Path) -> None:
    strategy = Scripted()
    # No venue heartbeats: only market data keeps the feed fresh, and it is stale after 300 ms without.
    async with KernelHarness(
        strategy, tmp_path, venue={"heartbeat_s": 3600}, config={"feed.stale_after_ms": 300}
    ) as kh:
        kernel = kh._kernel()
        assert kernel.config.feed.stale_after_ms == 300
        await kh.quote(D("100.00"), D("100.10"))
        await eventually(lambda: kh.health == "degraded", "the stale feed to degrade health")
        finding = kernel.kernel_finding
        assert finding is not None
        assert (finding.reason, finding.pauses_entry) == ("feed: feed stale", True)
        block = kernel.entry_block()
        assert block == "health degraded: feed: feed stale"
        run = kernel.journal.run_id if kernel.journal else 0
        assert ("degrade", "degraded", "feed: feed stale") in [
            (t, d, data.get("reason")) for t, d, data in triggers(kh.journal_path, entity_id("kernel", run), "health")
        ]

        strategy.on_timer_intents = [bid()]
        await kh.timer()
        assert strategy.allowed[-1] is False  # the context said so too
        denied = kh.orders()
        assert [o.state for o in denied] == ["denied"]
        assert venue_orders(kh.venue_path) == []  # nothing reached the venue
        journaled = triggers(kh.journal_path, denied[0].client_order_id, "order")
        assert [(t, d) for t, d, _ in journaled] == [("create", "new"), ("deny", "denied")]
        assert journaled[1][2]["reason"] == f"order entry paused: {block}"
        assert [(u.trigger, u.reason) for u in strategy.updates] == [("deny", f"order entry paused: {block}")]
        assert kernel.metrics.denied == 1

        await kh.quote(D("100.00"), D("100.10"))  # data again: the feed resumes streaming
        await eventually(lambda: kh.health == "healthy", "health to recover when data flows again")
        strategy.on_timer_intents = [bid()]  # at once: the feed goes stale again 300 ms from now
        await kh.timer()
        assert kh.orders()[-1].state == "accepted"
        assert [(o.client_order_id, o.status) for o in venue_orders(kh.venue_path)] == [
            (kh.orders()[-1].client_order_id, "new")
        ]
        path = [(t, data.get("reason")) for t, _, data in triggers(kh.journal_path, entity_id("kernel", run), "health")]
        stale = path.index(("degrade", "feed: feed stale"))
        assert ("ok", None) in path[stale:]  # the recovery is journaled too
    assert kh.exit_status == EXIT_OK
    assert_stopped_cleanly(kh.journal_path)


# -- 3. the journal made unwritable mid-run -------------------------------------------------------


@pytest.mark.asyncio
async def test_unwritable_journal_pauses_trading_and_recovers_with_everything_committed(tmp_path: Path) -> None:
    strategy = Scripted()
    async with KernelHarness(strategy, tmp_path, config={"http.listen": "127.0.0.1:0"}) as kh:
        kernel = kh._kernel()
        journal = kernel.journal
        assert journal is not None
        assert kernel.http is not None
        run = journal.run_id
        await kh.quote(D("100.00"), D("100.10"))

        # Simulates a journal file that can no longer be written (read-only remount, permissions):
        # SQLite refuses every write on this connection from now on.
        journal._conn.execute("PRAGMA query_only = 1")  # type: ignore[union-attr]
        strategy.on_timer_intents = [bid()]  # the next write attempt: a new order must be journaled first
        await kh.timer()
        attempted = kh.orders()[-1]
        assert attempted.state == "rejected"  # journaled (buffered) as never sent
        assert venue_orders(kh.venue_path) == []

        await eventually(lambda: kh.health == "unhealthy", "health to fail on the journal", timeout=1.0)
        component = kernel.health["journal"]
        assert str(component.state) == "unhealthy"
        assert component.data["reason"].startswith("journal cannot commit: ")
        assert "readonly" in component.data["reason"]
        assert (kernel.entry_block() or "").startswith("trading halt")  # journal_failed halts trading
        status, body = await http_json(kernel.http.port, "/healthz")
        assert status == 200  # liveness: the loop answers; readiness says trading cannot go on
        assert body["status"] == "unhealthy"
        assert body["components"]["journal"]["state"] == "unhealthy"
        status, body = await http_json(kernel.http.port, "/readyz")
        assert (status, body["ready"]) == (503, False)
        assert body["reason"] in ("halting", "halted")  # journal_failed halts trading

        strategy.on_timer_intents = [bid("91")]
        await kh.timer()
        assert venue_orders(kh.venue_path) == []  # still nothing sent
        assert kernel.metrics.denied == 1
        assert len(kh.orders()) == 1  # the denial is not journaled while the journal is down

        journal._conn.execute("PRAGMA query_only = 0")  # type: ignore[union-attr]
        await eventually(lambda: kh.health == "healthy", "health to recover with the journal", timeout=2.0)
        assert journal.failure is None
        assert journal.pending == 0
        assert kernel.trading is not None
        assert (kernel.trading.state, kernel.entry_block()) == ("halted", kernel.entry_block())
        assert (kernel.entry_block() or "").startswith("trading halted: journal failed")
        kernel.fire_trading("arm", reason="operator: disk fixed")  # halted until an operator arms
        assert kernel.entry_block() is None

        with audit(kh.journal_path) as reader:
            result = reader.verify()
            assert result.ok, result.as_json()
            committed = reader.timeline(attempted.client_order_id, machine="order")
            journal_health = reader.timeline(entity_id("journal", run), machine="health")
        assert [(t["trigger"], t["dest"]) for t in committed] == [
            ("create", "new"),
            ("submit", "pending_new"),
            ("reject", "rejected"),
        ]
        assert committed[-1]["data"]["reason"] == "not sent: journal commit failed"
        fails = [t for t in journal_health if t["trigger"] == "fail"]
        assert len(fails) == 1
        assert fails[0]["data"]["reason"].startswith("journal cannot commit: ")
        assert journal_health[-1]["trigger"] == "ok"

        strategy.on_timer_intents = [bid("92")]  # trading resumes
        await kh.timer()
        assert kh.orders()[-1].state == "accepted"
        assert [(o.price, o.status) for o in venue_orders(kh.venue_path)] == [(D("92"), "new")]
    assert kh.exit_status == EXIT_OK
    assert_stopped_cleanly(kh.journal_path)


@pytest.mark.asyncio
async def test_an_idle_kernel_notices_an_unwritable_journal_within_seconds(tmp_path: Path) -> None:
    async with KernelHarness(Scripted(), tmp_path) as kh:
        kernel = kh._kernel()
        journal = kernel.journal
        assert journal is not None
        await kh.quote(D("100.00"), D("100.10"))
        committed = journal.committed_seq
        journal._conn.execute("PRAGMA query_only = 1")  # type: ignore[union-attr]  # as in the test above
        # Nothing trades and nothing else writes: the health monitor's probe must find it.
        await eventually(lambda: kh.health == "unhealthy", "the probe to find the journal unwritable", timeout=3.0)
        assert kernel.health["journal"].data["reason"].startswith("journal cannot commit: ")
        assert (kernel.entry_block() or "").startswith("trading halt")  # no audit, no trade: halted
        assert journal.committed_seq == committed  # the probe itself wrote nothing
        journal._conn.execute("PRAGMA query_only = 0")  # type: ignore[union-attr]
        await eventually(lambda: kh.health == "healthy", "health to recover", timeout=3.0)
    assert kh.exit_status == EXIT_OK
    assert_stopped_cleanly(kh.journal_path)


# -- 4. strategy errors ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_strategy_errors_degrade_then_fail_health_and_a_success_resets_them(tmp_path: Path) -> None:
    strategy = Scripted()
    config = {"health.strategy_errors_unhealthy": 2, "http.listen": "127.0.0.1:0"}
    async with KernelHarness(strategy, tmp_path, config=config) as kh:
        kernel = kh._kernel()
        assert kernel.http is not None
        port = kernel.http.port
        strategy.fail_market = True

        await kh.quote(D("100.00"), D("100.10"))
        await eventually(lambda: kh.health == "degraded", "one strategy error to degrade health")
        component = kernel.health["strategy"]
        assert (str(component.state), component.data["pauses_entry"]) == ("degraded", False)
        assert component.data["reason"] == "strategy error: on_market: RuntimeError: boom"
        assert kernel.entry_block() is None  # a degraded strategy does not pause order entry
        assert (await http_json(port, "/healthz"))[0] == 200

        await kh.quote(D("100.00"), D("100.10"))
        await eventually(lambda: kh.health == "unhealthy", "two strategy errors in a row to fail health")
        assert kernel.health["strategy"].data["reason"] == (
            "strategy failed 2 times in a row: on_market: RuntimeError: boom"
        )
        status, body = await http_json(port, "/healthz")
        assert (status, body["status"], body["components"]["strategy"]["state"]) == (200, "unhealthy", "unhealthy")
        # An unhealthy kernel halts trading (issue 8): nothing open, so it ends halted at once.
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halted", "the halt")
        assert kernel.trading is not None
        assert kernel.trading.data["reason"].startswith("strategy unhealthy: strategy failed 2 times")
        assert (kernel.entry_block() or "").startswith("trading halted: strategy unhealthy")

        strategy.fail_market = False
        await kh.quote(D("100.00"), D("100.10"))
        await eventually(lambda: kh.health == "healthy", "a successful callback to reset the errors")
        assert (kernel.entry_block() or "").startswith("trading halted")  # halted stays halted...
        kernel.fire_trading("arm", reason="operator: strategy fixed")  # ...until an operator arms
        assert kernel.entry_block() is None
        assert kh._task is not None
        assert not kh._task.done()  # the kernel kept running throughout
        assert strategy.market_calls == 3
        assert kernel.metrics.strategy_errors == 2
        _, _, metrics = await http_get(port, "/metrics")
        assert "tradekernel_strategy_errors_total 2.0\n" in metrics.decode()
        assert kernel.status()["strategy"]["errors"] == 2

        run = kernel.journal.run_id if kernel.journal else 0
        path = [(t, d) for t, d, _ in triggers(kh.journal_path, entity_id("strategy", run), "health")]
        assert path[-3:] == [("degrade", "degraded"), ("fail", "unhealthy"), ("ok", "healthy")]
    assert kh.exit_status == EXIT_OK


@pytest.mark.asyncio
async def test_a_callback_returning_something_else_than_intents_is_a_strategy_error_and_nothing_is_sent(
    tmp_path: Path,
) -> None:
    strategy = Scripted()
    async with KernelHarness(strategy, tmp_path) as kh:
        kernel = kh._kernel()
        strategy.on_timer_intents = [bid(), "buy 1 BTC"]  # type: ignore[list-item]
        await kh.timer()
        assert kh.orders() == []  # the whole call's intents are dropped, the valid one too
        assert kernel.host.errors == 1
        assert kernel.host.last_error == (
            "on_timer: InvalidIntent: on_timer returned 'buy 1 BTC', not a Place, Cancel or Replace"
        )
        strategy.on_timer_intents = [bid()]
        await kh.timer()
        assert [o.state for o in kh.orders()] == ["accepted"]
        assert kernel.host.errors == 0  # a success resets the count
        assert kernel.metrics.strategy_errors == 1
    assert kh.exit_status == EXIT_OK


# -- 5. HTTP endpoints (their own tests: test_http_endpoints.py, test_metrics.py) -----------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.10.20.30", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- 6. the control socket ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_control_socket_answers_status_survives_bad_requests_and_stops_the_kernel(tmp_path: Path) -> None:
    async with KernelHarness(Scripted(), tmp_path) as kh:
        kernel = kh._kernel()
        assert kernel.control is not None
        path = kernel.control.path
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600

        answer = await ask(path, "status")
        assert answer["ok"] is True
        assert answer["status"]["running"] is True
        assert answer["status"]["health"]["status"] == "healthy"
        assert answer["status"]["endpoints"]["control_socket"] == path

        answer = await ask(path, "dance")
        assert answer["ok"] is False
        assert "unknown command 'dance'" in answer["error"]

        reader, writer = await asyncio.open_unix_connection(path)
        try:
            answer = await exchange(reader, writer, b"this is not json\n")
            assert answer["ok"] is False
            assert answer["error"].startswith("not JSON")
            answer = await exchange(reader, writer, b"[1, 2]\n")
            assert answer == {"ok": False, "error": 'a request is a JSON object with a "command" string'}
            answer = await exchange(reader, writer, b'{"command": 7}\n')
            assert answer["ok"] is False
            answer = await exchange(reader, writer, b'{"command": "status"}\n')  # still usable
            assert answer["ok"] is True
            assert answer["status"]["running"] is True
        finally:
            writer.close()
            await writer.wait_closed()

        answer = await ask(path, "stop", reason="operator says so")
        assert answer == {"ok": True, "stopping": True, "reason": "operator says so"}
        assert kh._task is not None
        assert await finish(kh._task) == EXIT_OK
        assert not os.path.exists(path)  # the socket file is removed at stop
        with pytest.raises(NoKernel):
            await ask(path, "status")
    assert kh.exit_status == EXIT_OK
    assert_stopped_cleanly(kh.journal_path)
    with audit(kh.journal_path) as reader:
        kernel_health = [r for r in reader.entities(machine="health") if r["entity"] == "kernel-r1"]
    assert kernel_health[0]["data"]["reason"] == "operator says so"


async def _echo(request: dict[str, Any]) -> dict[str, Any]:
    if request["command"] == "explode":
        raise ValueError("handler bug")
    return {"ok": True, "echo": request["command"]}


@pytest.mark.asyncio
async def test_control_server_refuses_a_live_socket_replaces_a_stale_one_and_keeps_other_files(
    sock_dir: str,
) -> None:
    path = os.path.join(sock_dir, "c.sock")
    first = ControlServer(path, _echo)
    await first.start()
    try:
        with pytest.raises(ControlError, match="in use"):
            await ControlServer(path, _echo).start()
        assert (await ask(path, "ping"))["echo"] == "ping"  # the first one is untouched
    finally:
        await first.stop()
    await first.stop()  # idempotent
    assert not os.path.exists(path)

    # A socket file nobody answers on (its process died): replaced.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with pytest.raises(NoKernel, match="stale"):
        await ask(path, "ping")
    second = ControlServer(path, _echo)
    await second.start()
    try:
        assert (await ask(path, "ping"))["echo"] == "ping"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        await second.stop()

    # Anything else at that path is not a socket to replace: it is left alone.
    Path(path).write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        await ControlServer(path, _echo).start()
    assert Path(path).read_text() == "precious"

    with pytest.raises(ControlError, match="too long"):
        await ControlServer(os.path.join(sock_dir, "x" * 120), _echo).start()


@pytest.mark.asyncio
async def test_control_server_answers_a_failing_handler_and_an_overlong_line(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "c.sock")
    server = ControlServer(path, _echo)
    await server.start()
    try:
        answer = await ask(path, "explode")
        assert answer == {"ok": False, "error": "ValueError: handler bug"}
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            answer = await exchange(reader, writer, b"x" * (control.MAX_LINE + 10) + b"\n")
            assert answer["ok"] is False
            assert "longer than" in answer["error"]
            async with asyncio.timeout(NET):
                assert await reader.read() == b""  # then the server hangs up
        finally:
            writer.close()
            await writer.wait_closed()
        assert (await ask(path, "ping"))["echo"] == "ping"
    finally:
        await server.stop()


def test_control_request_without_a_kernel_raises_no_kernel(tmp_path: Path) -> None:
    with pytest.raises(NoKernel, match="no kernel is listening"):
        control.request(str(tmp_path / "missing.sock"), "status", timeout=1.0)
    assert control.default_socket_path("/x/k.db") == "/x/k.db.sock"


# -- 7. stopping ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cancel_on_stop_false_leaves_the_quotes_working_and_exits_0(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path, config={"kernel.cancel_on_stop": False}) as kh:
        await kh.quote(D("100.00"), D("100.10"))
        ids = sorted(o.client_order_id for o in kh.open_orders())
        assert len(ids) == 2
        kernel = kh._kernel()
    assert kh.exit_status == EXIT_OK
    assert sorted(kernel.orders_left_open) == ids
    assert sorted((o.client_order_id, o.status) for o in venue_orders(kh.venue_path)) == [(i, "new") for i in ids]
    with audit(kh.journal_path) as reader:
        assert sorted(o["entity"] for o in reader.entities(machine="order", live_only=True)) == ids
    assert_stopped_cleanly(kh.journal_path)


@pytest.mark.asyncio
async def test_cancels_not_acked_within_stop_timeout_exit_1_with_the_order_left_pending(tmp_path: Path) -> None:
    # The paper venue answers each order request only after latency_ms: slower than stop_timeout_s.
    strategy = Scripted()
    async with KernelHarness(
        strategy, tmp_path, venue={"latency_ms": 400.0}, config={"kernel.stop_timeout_s": 0.1}
    ) as kh:
        strategy.on_timer_intents = [bid()]
        await kh.timer()
        order = kh.open_orders()[0]
        assert order.state == "accepted"
        kernel = kh._kernel()
        started = time.monotonic()
        assert await kh.stop() == EXIT_FAILED
        assert time.monotonic() - started < 2.0
    assert kernel.orders_left_open == [order.client_order_id]
    with audit(kh.journal_path) as reader:
        live = reader.entities(machine="order", live_only=True)
    assert [(o["entity"], o["state"]) for o in live] == [(order.client_order_id, "pending_cancel")]
    assert_stopped_cleanly(kh.journal_path)  # needing attention is not a crash


@pytest.mark.asyncio
async def test_forced_stop_skips_waiting_for_acks_and_still_records_the_run_stopped(tmp_path: Path) -> None:
    strategy = Scripted()
    async with KernelHarness(strategy, tmp_path, venue={"latency_ms": 2500.0}) as kh:
        strategy.on_timer_intents = [bid()]
        await kh.timer()
        kernel = kh._kernel()
        assert kernel.config.kernel.stop_timeout_s == 5.0
        started = time.monotonic()
        kernel.request_stop("operator: now", force=True)
        assert kh._task is not None
        assert await finish(kh._task) == EXIT_FAILED  # the cancel went out; its ack (2.5 s away) was not awaited
        assert time.monotonic() - started < 2.5  # the forced grace (1 s), far less than stop_timeout_s
        assert kernel.stop_request is not None
        assert (kernel.stop_request.reason, kernel.stop_request.force) == ("operator: now", True)
    assert len(kernel.orders_left_open) == 1
    assert runs(kh.journal_path) == ["stopped"]
    assert_stopped_cleanly(kh.journal_path)


@pytest.mark.asyncio
async def test_sigterm_stops_and_a_second_sigterm_forces(tmp_path: Path, sock_dir: str) -> None:
    async with paper_venue(tmp_path, latency_ms=2500.0) as venue:
        strategy = Scripted()
        config = kernel_config(tmp_path, sock_dir, **{"venue.url": venue.url})
        kernel = Kernel(config, strategy=strategy, timers=False, install_signals=True)
        task = asyncio.create_task(kernel.run())
        try:
            await eventually(kernel.ready.is_set, "the kernel to be ready")
            strategy.on_timer_intents = [bid()]
            await kernel.fire_timer()
            await eventually(lambda: bool(venue_orders(str(tmp_path / "venue.db"))), "the order at the venue")
            await eventually(lambda: bool(kernel.portfolio.open_views), "the order to be accepted")
            os.kill(os.getpid(), signal.SIGTERM)
            await eventually(lambda: kernel.stopping, "SIGTERM to start the stop")
            assert kernel.stop_request is not None
            assert kernel.stop_request.reason.startswith("SIGTERM received")
            assert not kernel.stop_request.force
            os.kill(os.getpid(), signal.SIGTERM)  # the cancel's ack is 2.5 s away: do not wait for it
            assert await finish(task) == EXIT_FAILED
        finally:
            if not task.done():
                kernel.request_stop("test cleanup", force=True)
                await finish(task)
    assert (kernel.stop_request.reason, kernel.stop_request.force) == ("SIGTERM received again", True)
    assert_stopped_cleanly(str(tmp_path / "kernel.db"))


@pytest.mark.asyncio
async def test_duration_stops_the_kernel_and_runs_timers_and_the_status_view(tmp_path: Path, sock_dir: str) -> None:
    out = io.StringIO()
    strategy = Scripted()
    config = kernel_config(
        tmp_path,
        sock_dir,
        **{
            "venue.url": "embedded",
            "kernel.duration_s": 0.6,
            "kernel.status_interval_s": 0.1,
            "strategy.timer_interval_ms": 50,
        },
    )
    view = StatusView("live", out=out)
    kernel = Kernel(config, strategy=strategy, status_printer=view)
    started = time.monotonic()
    assert await finish(asyncio.create_task(kernel.run())) == EXIT_OK
    assert 0.5 < time.monotonic() - started < 5.0
    assert kernel.venue is not None  # the embedded paper venue ran in-process
    assert kernel.stop_request is not None
    assert kernel.stop_request.reason == "--duration 0.6 s elapsed"
    assert strategy.timer_calls >= 3
    assert strategy.market_calls > 0
    view.close(kernel, kernel.stop_request.reason)  # as the CLI does once the run has ended
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # the frames without their escapes
    assert "kernel   running  run 1" in shown
    assert "kernel   stopped (--duration 0.6 s elapsed)  run 1" in shown
    assert_stopped_cleanly(config.kernel.db)


class Crash(BaseException):
    """An unexpected failure inside a kernel task (not an ``Exception``: nothing on the way catches it)."""


@pytest.mark.asyncio
async def test_an_unexpected_error_leaves_the_run_open_and_the_next_start_resumes_it(
    tmp_path: Path, sock_dir: str
) -> None:
    def crash_once_an_order_rests(kernel: Kernel) -> None:
        if kernel.portfolio.open_views:
            raise Crash("simulated bug in a kernel task")

    async with paper_venue(tmp_path) as venue:
        config = kernel_config(tmp_path, sock_dir, **{"venue.url": venue.url, "kernel.status_interval_s": 0.02})
        strategy = Scripted()
        first = Kernel(config, strategy=strategy, timers=False, status_printer=crash_once_an_order_rests)
        task = asyncio.create_task(first.run())
        await eventually(lambda: first.ready.is_set() or task.done(), "the first kernel to be ready")
        strategy.on_timer_intents = [bid()]
        await first.fire_timer()
        with pytest.raises(Crash, match="simulated"):
            await finish(task)
        order_id = next(iter(first.portfolio.open_views))
        assert runs(config.kernel.db) == ["running"]  # left open: the next start will call it a crash

        second = Kernel(config, strategy=Scripted(), timers=False)
        task = asyncio.create_task(second.run())
        try:
            await eventually(second.ready.is_set, "the second kernel to be ready")
            assert second.journal is not None
            assert second.journal.crashed_runs == [1]
            assert second.previous_run is not None
            assert (second.previous_run["state"], second.previous_run["clean"]) == ("crashed", False)
            assert list(second.portfolio.open_views) == [
                order_id
            ]  # resumed from the journal, still working at the venue
            assert second.portfolio.open_views[order_id].state == "accepted"
        finally:
            second.request_stop("test finished")
            assert await finish(task) == EXIT_OK
        assert [(o.client_order_id, o.status) for o in venue_orders(str(tmp_path / "venue.db"))] == [
            (order_id, "canceled")
        ]
    assert runs(config.kernel.db) == ["crashed", "stopped"]
    assert_stopped_cleanly(config.kernel.db, run_id=2)
    with audit(config.kernel.db) as reader:
        first_health = [r for r in reader.entities(machine="health") if r["entity"].endswith("-r1")]
    assert len(first_health) == 6
    assert {(r["state"], r["data"]["reason"]) for r in first_health} == {
        ("stopped", "its run ended without a clean stop")
    }


# -- 8. start failures ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_second_kernel_on_the_same_journal_is_refused(tmp_path: Path, sock_dir: str) -> None:
    async with KernelHarness(Scripted(), tmp_path) as kh:
        assert kh.venue is not None
        config = kernel_config(
            tmp_path,
            sock_dir,
            **{"kernel.db": kh.journal_path, "venue.url": kh.venue.url, "strategy.name": "idle"},
        )
        second = Kernel(config)
        assert type(second.strategy) is Strategy  # loaded from the config
        with pytest.raises(JournalLocked, match="one kernel per database"):
            async with asyncio.timeout(NET):
                await second.run()
        assert second.started_tasks == 0
        assert kh.health == "healthy"  # the first kernel is undisturbed
        first = kh._kernel().control
        assert first is not None
        assert (await ask(first.path, "status"))["status"]["run_id"] == 1
    assert runs(kh.journal_path) == ["stopped"]
    assert_stopped_cleanly(kh.journal_path)


@pytest.mark.asyncio
async def test_a_control_socket_in_use_fails_the_start_and_the_run_is_recorded_stopped(
    tmp_path: Path, sock_dir: str
) -> None:
    path = os.path.join(sock_dir, "k.sock")
    other = ControlServer(path, _echo)
    await other.start()
    try:
        async with paper_venue(tmp_path) as venue:
            config = kernel_config(tmp_path, sock_dir, **{"venue.url": venue.url})
            kernel = Kernel(config, strategy=Scripted())
            with pytest.raises(ControlError, match="in use"):
                async with asyncio.timeout(NET):
                    await kernel.run()
            assert not kernel.ready.is_set()
        assert (await ask(path, "ping"))["echo"] == "ping"  # the other server still answers
    finally:
        await other.stop()
    assert runs(config.kernel.db) == ["stopped"]  # failing to start is not a crash
    assert_stopped_cleanly(config.kernel.db)


@pytest.mark.asyncio
async def test_a_control_socket_path_naming_the_journal_never_deletes_it(tmp_path: Path, sock_dir: str) -> None:
    db = str(tmp_path / "kernel.db")
    async with paper_venue(tmp_path) as venue:
        config = kernel_config(tmp_path, sock_dir, **{"venue.url": venue.url, "kernel.control_socket": db})
        kernel = Kernel(config, strategy=Scripted())
        with pytest.raises(ControlError, match="not a socket"):
            async with asyncio.timeout(NET):
                await kernel.run()
    assert os.path.isfile(db)
    assert runs(db) == ["stopped"]
    assert_stopped_cleanly(db)
