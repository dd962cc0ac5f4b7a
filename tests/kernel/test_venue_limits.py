"""The paper venue's limits over a real loopback WebSocket (issue 15, "Unbounded"): connections in
total and per account, open orders per account, order rate per account on the venue's own clock.

Small limits, a fake venue clock; every test bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kernel import paper_protocol as p
from kernel.config import ConfigError, load
from kernel.strategy import Context, Intent, Place, Strategy
from kernel.testing import KernelHarness
from kernel.venue.server import PaperVenue, VenueConfig
from kernel.venue.settings import SimulatorSettingError
from storage.audit import AuditReader
from storage.venue_store import read_orders
from tests.kernel.test_venue_server import LIMIT_S, Client, X
from tests.poll import eventually


class FakeClock:
    """The venue's clock in ms, moved by hand."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def settings(**kw: Any) -> VenueConfig:
    return VenueConfig(instruments=(X,), autoplay=False, **kw)


async def running(tmp_path: Path, stack: AsyncExitStack, clock: FakeClock | None = None, **kw: Any) -> PaperVenue:
    venue = PaperVenue(str(tmp_path / "venue.db"), settings(**kw), clock=clock or FakeClock())
    await stack.enter_async_context(venue)
    return venue


async def client(venue: PaperVenue, stack: AsyncExitStack) -> Client:
    return Client(await stack.enter_async_context(connect(venue.url)))


async def ping(c: Client, request_id: str) -> None:
    await c.send(p.Ping(id=request_id))
    assert (await c.expect(p.Pong)).id == request_id


async def drain(c: Client) -> None:
    """Read until the venue closes the connection (raises ``ConnectionClosed``)."""
    while True:
        await c.recv()


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with asyncio.timeout(LIMIT_S), AsyncExitStack() as exits:
        yield exits


@pytest.mark.asyncio
async def test_connections_beyond_the_total_are_refused_at_the_handshake(tmp_path: Path, stack: AsyncExitStack) -> None:
    venue = await running(tmp_path, stack, max_connections=3, max_connections_per_account=0)
    first = [await client(venue, stack) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        await client(venue, stack)
    assert refused.value.response.status_code == 503
    assert b"the venue has 3 connections open (limit 3)" in refused.value.response.body
    assert len(venue._connections) == 3  # nothing was allocated for the refused one
    for n, c in enumerate(first):  # the connections already open carry on
        await ping(c, f"p{n}")
    assert venue.limits.refused["connections"] == 1
    await first[0].ws.close()
    await eventually(lambda: len(venue._connections) == 2, what="the closed connection to be gone")
    await ping(await client(venue, stack), "again")  # a place freed is taken again


@pytest.mark.asyncio
async def test_connections_beyond_the_account_limit_are_closed_with_the_reason(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    venue = await running(tmp_path, stack, max_connections_per_account=2)
    first = [await client(venue, stack) for _ in range(2)]
    for c in first:
        await c.hello()
    third = await client(venue, stack)
    await third.send(p.Hello(version=p.VERSION, client="test"))
    with pytest.raises(ConnectionClosed) as closed:
        await drain(third)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert closed.value.rcvd.reason == "account 'local' has 2 connections open (limit 2); try again later"
    for n, c in enumerate(first):
        await ping(c, f"p{n}")
    assert venue.limits.connections("local") == 2
    await first[1].ws.close()
    await eventually(lambda: venue.limits.connections("local") == 1, what="the account's connection released")
    fourth = await client(venue, stack)
    await fourth.hello()
    await ping(fourth, "fourth")


@pytest.mark.asyncio
async def test_open_orders_per_account_are_limited(tmp_path: Path, stack: AsyncExitStack) -> None:
    venue = await running(tmp_path, stack, max_open_orders=2)
    c = await client(venue, stack)
    await c.hello()
    for coid in ("a1", "a2"):
        await c.order(coid)
        assert (await c.expect(p.Execution)).exec == "new"
    await c.order("a3")
    rejected = await c.expect(p.Execution)
    assert (rejected.client_order_id, rejected.exec, rejected.status) == ("a3", "rejected", "rejected")
    assert rejected.reason == "too_many_open_orders: account 'local' has 2 open orders (limit 2)"
    assert await c.status("a3") is None  # nothing was entered
    await c.order("a1")  # a duplicate is still answered with the order, never refused
    assert (await c.expect(p.OrderStatus)).duplicate
    await c.send(p.CancelOrder(client_order_id="a1"))
    assert (await c.expect(p.Execution)).exec == "canceled"
    await c.order("a4")  # one order done: room for one more
    assert (await c.expect(p.Execution)).exec == "new"


@pytest.mark.asyncio
async def test_open_orders_are_counted_from_the_store_after_a_restart(tmp_path: Path) -> None:
    async with asyncio.timeout(LIMIT_S):
        async with AsyncExitStack() as stack:
            venue = await running(tmp_path, stack, max_open_orders=1)
            c = await client(venue, stack)
            await c.order("b1")
            assert (await c.expect(p.Execution)).exec == "new"
        async with AsyncExitStack() as stack:
            venue = await running(tmp_path, stack, max_open_orders=1)
            c = await client(venue, stack)
            await c.order("b2")
            assert (await c.expect(p.Execution)).reason == (
                "too_many_open_orders: account 'local' has 1 open orders (limit 1)"
            )


@pytest.mark.asyncio
async def test_order_rate_is_limited_on_the_venue_clock(tmp_path: Path, stack: AsyncExitStack) -> None:
    clock = FakeClock()
    venue = await running(tmp_path, stack, clock, order_rate=4, order_burst=3)
    c = await client(venue, stack)
    await c.hello()
    for coid in ("r1", "r2"):
        await c.order(coid)
        assert (await c.expect(p.Execution)).exec == "new"
    await c.send(p.CancelOrder(client_order_id="r1"))  # cancels count too: the third of the burst
    assert (await c.expect(p.Execution)).exec == "canceled"
    await c.send(p.ReplaceOrder(client_order_id="r2", qty=D(2)))
    error = await c.expect(p.Error)
    assert (error.code, error.ref, error.client_order_id, error.retry_after_ms) == (
        "rate_limited",
        "replace_order",
        "r2",
        250,
    )
    assert error.message == "order rate limit: 4 requests per second per account (burst 3); retry after 250 ms"
    await c.order("r3")
    assert (await c.expect(p.Error)).retry_after_ms == 250
    clock.now_ms += 249
    await c.order("r3")
    assert (await c.expect(p.Error)).retry_after_ms == 1
    snapshot = await c.status("r2")  # queries are not order requests: never rate limited
    assert snapshot is not None
    assert snapshot.qty == D(1)  # the replace was not executed
    assert await c.status("r3") is None
    clock.now_ms += 1
    await c.order("r3")
    assert (await c.expect(p.Execution)).exec == "new"
    await c.order("r4")
    assert (await c.expect(p.Error)).retry_after_ms == 250
    clock.now_ms += 10_000  # a long pause refills the bucket to the burst, never beyond
    for coid in ("r5", "r6", "r7"):
        await c.order(coid)
        assert (await c.expect(p.Execution)).exec == "new"
    await c.order("r8")
    assert (await c.expect(p.Error)).code == "rate_limited"
    assert venue.limits.refused["rate"] == 5


@pytest.mark.asyncio
async def test_the_rate_is_per_account_and_zero_turns_limits_off(tmp_path: Path, stack: AsyncExitStack) -> None:
    venue = await running(tmp_path, stack, order_rate=0, max_open_orders=0)
    c = await client(venue, stack)
    for n in range(250):  # more than the default burst, at one instant of the fake clock
        await c.order(f"u{n}")
    executions = [await c.expect(p.Execution) for _ in range(250)]
    assert {e.exec for e in executions} == {"new"}
    assert venue.limits.refused == {"connections": 0, "account_connections": 0, "open_orders": 0, "rate": 0}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_connections", -1, "max_connections must be a whole number >= 0 (0: no limit), got -1"),
        ("order_rate", 1.5, "order_rate must be a whole number >= 0 (0: no limit), got 1.5"),
        ("order_burst", 0, "order_burst must be >= 1 while order_rate is on"),
    ],
)
def test_limit_settings_are_checked(field: str, value: Any, message: str) -> None:
    with pytest.raises(SimulatorSettingError) as error:
        VenueConfig(**{field: value})
    assert str(error.value) == message


def test_the_defaults_bound_what_the_issue_found() -> None:
    cfg = VenueConfig()
    assert (cfg.max_connections, cfg.max_connections_per_account, cfg.max_open_orders) == (256, 16, 10_000)
    assert (cfg.order_rate, cfg.order_burst) == (100, 200)


REPO = Path(__file__).resolve().parents[2]


def venue_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kernel", "venue", *args]


@pytest.mark.asyncio
async def test_the_venue_command_takes_the_limits_as_flags(tmp_path: Path) -> None:
    flags = ["--max-connections", "1", "--order-rate", "1", "--order-burst", "1", "--max-open-orders", "5"]
    proc = await asyncio.create_subprocess_exec(
        *venue_cli("--open", "--port", "0", "--db", str(tmp_path / "venue.db"), *flags),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30.0):
            line = (await proc.stdout.readline()).decode()
            assert line.startswith("venue listening on ws://127.0.0.1:"), line
            url = line.split()[-1]
            async with connect(url) as ws:
                c = Client(ws)
                await c.hello()
                with pytest.raises(InvalidStatus) as refused:
                    await connect(url)
                assert refused.value.response.status_code == 503
                await c.order("cli-1", price="1")  # far below the market: it rests
                assert (await c.expect(p.Execution, skip=(p.Trade, p.Quote))).exec == "new"
                await c.order("cli-2", price="1")
                error = await c.expect(p.Error)
                assert (error.code, error.client_order_id) == ("rate_limited", "cli-2")
                assert error.retry_after_ms is not None
                assert 0 < error.retry_after_ms <= 1000
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_a_bad_limit_flag_is_a_usage_error() -> None:
    result = subprocess.run(
        venue_cli("--port", "0", "--db", "unused.db", "--order-rate", "-3"),
        capture_output=True,
        text=True,
        timeout=30.0,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 2
    assert "order_rate must be a whole number >= 0 (0: no limit), got -3" in result.stderr


class Batches(Strategy):
    """Places ``batch`` buy limits on each timer, tagged ``t1``, ``t2``, ... (far below the market)."""

    def __init__(self) -> None:
        self.batch = 0
        self.placed = 0

    def on_timer(self, ctx: Context) -> Iterable[Intent]:
        intents: list[Intent] = []
        for _ in range(self.batch):
            self.placed += 1
            intents.append(Place(X, "buy", D("0.001"), D("90"), tag=f"t{self.placed}"))
        return intents


@pytest.mark.asyncio
async def test_a_kernel_facing_rate_limited_rejects_the_order_pauses_and_resumes_by_itself(tmp_path: Path) -> None:
    strategy = Batches()
    venue_limits = {"order_rate": 2, "order_burst": 2}  # a third order at one instant waits 500 ms
    options = {"kernel.cancel_on_stop": False}
    async with KernelHarness(strategy, tmp_path, venue=venue_limits, config=options, timeout=10.0) as kh:
        assert kh.venue is not None
        kernel = kh.kernel
        assert kernel is not None
        await kh.quote(D("100.00"), D("100.10"))
        strategy.batch = 3
        await kh.timer()
        by_tag = {o.tag: o for o in kh.orders()}
        assert [by_tag[t].state for t in ("t1", "t2", "t3")] == ["accepted", "accepted", "rejected"]
        assert kh.venue.limits.refused["rate"] == 1
        assert kernel.flow.backoff.paused(kernel.monotonic_ms())
        await eventually(lambda: kh.health == "degraded", what="health to show the pause")
        assert kernel.health["venue"].data["reason"] == "venue rate limited: new orders wait for its retry-after"
        strategy.batch = 1
        await kh.timer()  # while paused: denied in the kernel, never sent
        assert {o.tag: o.state for o in kh.orders()}["t4"] == "denied"
        assert kh.venue.limits.refused["rate"] == 1
        kh.clock.advance(500)  # the venue's bucket has a token again
        await eventually(lambda: not kernel.flow.backoff.paused(kernel.monotonic_ms()), what="the back-off to end")
        await kh.timer()
        assert {o.tag: o.state for o in kh.orders()}["t5"] == "accepted"
        await eventually(lambda: kh.health == "healthy", what="health to recover by itself")
        rejected = by_tag["t3"].client_order_id
        denied_id = {o.tag: o for o in kh.orders()}["t4"].client_order_id
    at_venue = {o.client_order_id for o in read_orders(kh.venue_path)}
    assert len(at_venue) == 3
    assert rejected not in at_venue
    assert denied_id not in at_venue
    with AuditReader(kh.journal_path) as reader:
        timeline = reader.timeline(rejected, machine="order")
        denied = reader.timeline(denied_id, machine="order")
        anomalies = reader.anomalies(source="risk")
    assert [t["trigger"] for t in timeline] == ["create", "submit", "reject"]  # never resent
    assert timeline[-1]["data"]["reason"] == (
        "rate_limited: order rate limit: 2 requests per second per account (burst 2); retry after 500 ms"
    )
    assert denied[-1]["trigger"] == "deny"
    assert denied[-1]["data"]["reason"].startswith("venue rate limited: new orders paused for ")
    assert denied[-1]["data"]["check"] == "venue_rate_limit"
    assert [a["kind"] for a in anomalies] == ["venue_rate_limited"]
    assert anomalies[0]["reason"].startswith(f"{rejected}: new_order refused; new orders paused until ")


def test_the_embedded_venue_takes_its_limits_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "kernel.toml"
    path.write_text("[venue.embedded]\nmax_connections = 8\nmax_open_orders = 50\norder_rate = 5\norder_burst = 7\n")
    venue = load(str(path), environ={}).venue.embedded.venue_config(("BTCUSDT",))
    assert (venue.max_connections, venue.max_connections_per_account, venue.max_open_orders) == (8, 16, 50)
    assert (venue.order_rate, venue.order_burst) == (5, 7)
    path.write_text("[venue.embedded]\norder_rate = -1\norder_burst = 0\n")
    with pytest.raises(ConfigError) as caught:
        load(str(path), environ={})
    assert "venue.embedded.order_rate: must be at least 0, got -1" in str(caught.value)
    assert "venue.embedded.order_burst: must be at least 1, got 0" in str(caught.value)


@pytest.mark.asyncio
async def test_a_halt_whose_cancels_are_rate_limited_asks_again_at_its_pace_and_ends_halted(tmp_path: Path) -> None:
    strategy = Batches()
    venue_limits = {"order_rate": 2, "order_burst": 3}
    async with KernelHarness(strategy, tmp_path, venue=venue_limits, timeout=10.0) as kh:
        assert kh.venue is not None
        kernel = kh.kernel
        assert kernel is not None
        assert kernel.driver is not None
        await kh.quote(D("100.00"), D("100.10"))
        strategy.batch = 3
        await kh.timer()  # the venue's bucket is empty now (its clock stands still)
        assert [o.state for o in kh.open_orders()] == ["accepted"] * 3
        assert kernel.driver.operator("halt", {"reason": "test"})["ok"]
        limits, loop = kh.venue.limits, asyncio.get_running_loop()
        await eventually(lambda: limits.refused["rate"] >= 6, what="the cancels refused twice")
        first, started = limits.refused["rate"], loop.time()
        await eventually(lambda: limits.refused["rate"] >= first + 3, what="the cancels asked again")
        # Asked again once per health pass (0.25 s): about 12 refusals a second, never a tight loop.
        assert (limits.refused["rate"] - first) / (loop.time() - started) < 100
        kh.clock.advance(2_000)  # the bucket is full again: the next pass cancels them all
        await eventually(lambda: kernel.driver is not None and kernel.driver.state == "halted", what="halted")
        assert kh.open_orders() == []
