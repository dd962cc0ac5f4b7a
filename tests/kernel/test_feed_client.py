"""FeedClient against a real websockets server on 127.0.0.1 that misbehaves on command, and the paper venue.

Each test runs the client as a task, drives one misbehaviour, waits (polling with a deadline) for
the feed to be ``streaming`` again (or ``failed``), checks the client task is still alive, stops it
and compares the journaled ``feed`` transitions with what the machine must have done. Timers are
kept far apart (backoff 20-110 ms, stale 300 ms or 60 s, pings 50/100 ms only where tested) so no
assertion depends on the scheduler being quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kernel.feed.client import FeedClient
from kernel.feed.errors import FeedMisuse
from kernel.feed.events import FeedEvent, TradeEvent
from kernel.feed.venues import CoinbaseMarketData
from kernel.venue.server import PaperVenue, VenueConfig
from storage.audit import AuditReader
from storage.journal import Journal
from tests.poll import eventually as until

TIMEOUT = 10
ENTITY = "feed-1"
FAST: dict[str, int] = {
    "backoff_initial_ms": 20,
    "backoff_max_ms": 100,
    "jitter_ms": 10,
    "stale_after_ms": 60_000,  # staleness only where a test is about it
    "healthy_after_ms": 100,
}
MAX_SIZE = 4096

START = [
    ("create", "idle"),
    ("connect", "connecting"),
    ("connected", "subscribing"),
    ("subscribed", "syncing"),
    ("snapshot_applied", "streaming"),
]
RECONNECTED = [
    ("retry_due", "connecting"),
    ("connected", "subscribing"),
    ("subscribed", "syncing"),
    ("snapshot_applied", "streaming"),
]
DROPPED = [("disconnected", "backoff"), *RECONNECTED]
STOPPED = [("stop", "closed")]


# -- the misbehaving server ---------------------------------------------------------------------


class Misbehaving:
    """A paper-protocol server; ``plan(...)`` says what each next connection does (then ``normal``).

    Plans: ``normal``; ``accept_close`` (open, then close at once); ``bad_version`` (hello answered
    with ``unsupported_version``); ``subscribe_internal`` (subscribe answered with ``internal``);
    ``refuse:STATUS`` (HTTP refusal); ``hang`` (never finish the handshake); ``mute`` (never answer
    hello); ``chatty`` (a heartbeat and a bad frame before the welcome).
    """

    def __init__(self) -> None:
        self.plans: deque[str] = deque()
        self.current: ServerConnection | None = None
        self.seq: dict[str, int] = {}
        self.subscriptions = 0
        self.release = asyncio.Event()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> Misbehaving:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, process_request=self._process_request, close_timeout=0.2
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def plan(self, *plans: str) -> None:
        self.plans.extend(plans)

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.plans and self.plans[0].startswith("refuse:"):
            status = int(self.plans.popleft().partition(":")[2])
            return connection.respond(HTTPStatus(status), "not now\n")
        if self.plans and self.plans[0] == "hang":
            self.plans.popleft()
            await self.release.wait()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too late\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        plan = self.plans.popleft() if self.plans else "normal"
        if plan == "accept_close":
            await ws.close(1000, "bye")
            return
        try:
            async for frame in ws:
                message = json.loads(frame)
                if message["type"] == "hello" and plan == "mute":
                    continue
                if message["type"] == "hello" and plan == "chatty":
                    await self._send(ws, type="heartbeat", ts_ms=1)
                    await ws.send("{not json")
                if message["type"] == "hello" and plan == "bad_version":
                    await self._send(ws, type="error", code="unsupported_version", message="v2 only", ref="hello")
                elif message["type"] == "hello":
                    await self._send(ws, type="welcome", version=1, session="s-1", instruments=["BTC", "ETH"])
                elif message["type"] == "subscribe" and plan == "subscribe_internal":
                    await self._send(ws, type="error", code="internal", message="try later", ref="subscribe")
                elif message["type"] == "subscribe":
                    self.current, self.seq = ws, {}
                    self.subscriptions += 1
                    await self._send(ws, type="subscribed", instruments=message["instruments"], channels=["trades"])
        except ConnectionClosed:
            pass

    @staticmethod
    async def _send(ws: ServerConnection, **message: Any) -> None:
        await ws.send(json.dumps(message))

    @property
    def ws(self) -> ServerConnection:
        assert self.current is not None
        return self.current

    async def trade(self, instrument: str = "BTC", seq: int | None = None) -> None:
        """A trade on the current connection, numbered on from the last one unless ``seq`` is given."""
        seq = self.seq.get(instrument, 0) + 1 if seq is None else seq
        self.seq[instrument] = seq
        await self._send(
            self.ws,
            type="trade",
            instrument=instrument,
            seq=seq,
            trade_id=f"T{seq}",
            price="100.5",
            qty="0.25",
            taker_side="buy",
            ts_ms=1,
        )

    async def raw(self, frame: str) -> None:
        await self.ws.send(frame)


# -- the client under test ----------------------------------------------------------------------


@dataclass
class Run:
    client: FeedClient
    task: asyncio.Task[None]
    events: list[FeedEvent] = field(default_factory=list)
    backoffs: list[tuple[int, int]] = field(default_factory=list)  # (attempt, delay) on each backoff


@contextlib.asynccontextmanager
async def feed(
    url: str,
    db_path: str,
    instruments: tuple[str, ...] = ("BTC",),
    policy: dict[str, int] | None = None,
    **options: Any,
) -> AsyncIterator[Run]:
    """Run a FeedClient as a task; on exit stop it, close the journal and check the audit chain."""
    journal = Journal.open(db_path, durability="normal")
    options = {"open_timeout": 2.0, "ping_interval": None, "close_timeout": 0.2, "max_size": MAX_SIZE, **options}
    client = FeedClient(url, instruments, journal, ENTITY, {**FAST, **(policy or {})}, **options)
    run = Run(client, asyncio.create_task(client.run()))
    client.on_event = run.events.append

    def on_state(state: str) -> None:
        if state == "backoff":
            run.backoffs.append((client.feed.data["attempt"], client.feed.data["retry_delay_ms"]))

    client.on_state = on_state
    try:
        yield run
    finally:
        client.stop()
        await run.task
        journal.close()
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


async def streaming(run: Run, subscriptions: int | None = None, server: Misbehaving | None = None) -> None:
    """Wait until the feed streams (on the ``subscriptions``-th connection) and the task is alive."""
    if server is not None and subscriptions is not None:
        await until(lambda: server.subscriptions >= subscriptions, f"subscription {subscriptions}")
    await until(lambda: run.client.state == "streaming", "streaming")
    assert not run.task.done(), "the client task ended"


def timeline(db_path: str) -> list[dict[str, Any]]:
    with AuditReader(db_path) as reader:
        return reader.timeline(ENTITY, machine="feed")


def steps(db_path: str) -> list[tuple[str, str]]:
    return [(row["trigger"], row["dest"]) for row in timeline(db_path)]


def disconnects(db_path: str) -> list[dict[str, Any]]:
    return [row["data"] for row in timeline(db_path) if row["trigger"] == "disconnected"]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Misbehaving]:
    async with Misbehaving() as running:
        yield running


# -- the happy path -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_streams_trades_with_decimal_prices(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
            await server.trade()
            await server.trade()
            await until(lambda: len(run.events) == 2, "two trades")
        trades = [e for e in run.events if isinstance(e, TradeEvent)]
        assert [(t.seq, t.price, t.qty) for t in trades] == [
            (1, Decimal("100.5"), Decimal("0.25")),
            (2, Decimal("100.5"), Decimal("0.25")),
        ]
        assert steps(db_path) == START + STOPPED
        assert all(isinstance(row["data"]["now_ms"], int) for row in timeline(db_path)[1:])


# -- connections that drop ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_abrupt_close_reconnects(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
            server.ws.transport.abort()
            await streaming(run, 2, server)
            await server.trade()
            await until(lambda: len(run.events) == 1, "a trade on the new connection")
        assert steps(db_path) == START + DROPPED + STOPPED
        assert disconnects(db_path)[0]["code"] == 1006


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [1001, 1011, 1013])
async def test_close_codes_reconnect(server: Misbehaving, db_path: str, code: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
            await server.ws.close(code, "server says")
            await streaming(run, 2, server)
        assert steps(db_path) == START + DROPPED + STOPPED
        assert disconnects(db_path) == [
            {"code": code, "reason": "server says", "now_ms": disconnects(db_path)[0]["now_ms"]}
        ]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [429, 503])
async def test_http_refusal_retries(server: Misbehaving, db_path: str, status: int) -> None:
    server.plan(f"refuse:{status}", f"refuse:{status}")
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
        refused = [("disconnected", "backoff"), ("retry_due", "connecting")]
        assert steps(db_path) == START[:2] + refused * 2 + START[2:] + STOPPED
        assert [d["reason"] for d in disconnects(db_path)] == [f"handshake refused: HTTP {status}"] * 2
        assert [attempt for attempt, _ in run.backoffs] == [1, 2]


@pytest.mark.asyncio
async def test_accept_then_close_backs_off_longer_each_time(server: Misbehaving, db_path: str) -> None:
    server.plan("accept_close", "accept_close", "accept_close", "accept_close")
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
        dropped = [("connected", "subscribing"), ("disconnected", "backoff"), ("retry_due", "connecting")]
        assert steps(db_path) == START[:2] + dropped * 4 + START[2:] + STOPPED
        # the machine's attempt count survives each successful open: 20, 40, 80, 100 ms (+ jitter <= 10)
        assert [attempt for attempt, _ in run.backoffs] == [1, 2, 3, 4]
        delays = [delay for _, delay in run.backoffs]
        assert all(base <= delay <= base + 10 for base, delay in zip([20, 40, 80, 100], delays, strict=True))
        assert {d["code"] for d in disconnects(db_path)} == {1000}


@pytest.mark.asyncio
async def test_open_timeout_retries(server: Misbehaving, db_path: str) -> None:
    server.plan("hang")
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path, open_timeout=0.2) as run:
            await streaming(run, 1, server)
        assert steps(db_path) == [
            *START[:2],
            ("disconnected", "backoff"),
            ("retry_due", "connecting"),
            *START[2:],
            *STOPPED,
        ]
        assert "open_timeout" in disconnects(db_path)[0]["reason"]


@pytest.mark.asyncio
async def test_unanswered_hello_retries(server: Misbehaving, db_path: str) -> None:
    server.plan("mute", "chatty")
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path, open_timeout=0.2) as run:
            await streaming(run, 1, server)
        assert steps(db_path) == [*START[:3], *DROPPED, *STOPPED]
        assert disconnects(db_path)[0] == {
            "code": 1002,
            "reason": "no answer to hello within open_timeout",
            "now_ms": disconnects(db_path)[0]["now_ms"],
        }
        assert run.client.counts["decode_error"] == 1  # the chatty server's bad frame, before its welcome


@pytest.mark.asyncio
async def test_subscribe_error_retries(server: Misbehaving, db_path: str) -> None:
    server.plan("subscribe_internal")
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
        assert steps(db_path) == START[:3] + DROPPED + STOPPED
        assert disconnects(db_path)[0]["code"] == 1002


@pytest.mark.asyncio
async def test_oversized_frame_closes_1009_and_reconnects(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
            await server.raw("x" * (MAX_SIZE + 1))
            await streaming(run, 2, server)
        assert steps(db_path) == START + DROPPED + STOPPED
        assert disconnects(db_path)[0]["code"] == 1009


# -- connections that stall ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_silence_makes_the_feed_stale_then_data_resumes(server: Misbehaving, db_path: str) -> None:
    states: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path, ("BTC", "ETH"), {"stale_after_ms": 300}) as run:
            run.client.on_state = states.append
            await streaming(run, 1, server)
            await until(lambda: run.client.state == "stale", "stale")  # nothing sent: stale from subscription
            assert not run.task.done()
            await server._send(server.ws, type="heartbeat", ts_ms=1)  # freshens every instrument
            await streaming(run)
        syncing = [("snapshot_applied", "syncing"), ("snapshot_applied", "streaming")]
        stale = [("stale_timeout", "stale")] * 2 + [("data_resumed", "stale"), ("data_resumed", "streaming")]
        assert steps(db_path) == START[:4] + syncing + stale + STOPPED
        instruments = [row["data"].get("instrument") for row in timeline(db_path)[6:10]]
        assert instruments == ["BTC", "ETH", "BTC", "ETH"]
        assert states[-3:] == ["stale", "streaming", "closed"]  # the strategy is told


@pytest.mark.asyncio
async def test_unanswered_pings_reconnect(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path, ping_interval=0.05, ping_timeout=0.1, close_timeout=0.1) as run:
            await streaming(run, 1, server)
            server.ws.transport.pause_reading()  # stalls: sends nothing, answers no ping, never closes
            await streaming(run, 2, server)
        assert steps(db_path) == START + DROPPED + STOPPED
        assert disconnects(db_path)[0]["code"] == 1011
        assert "ping" in disconnects(db_path)[0]["reason"]


# -- bad frames and sequence breaks -------------------------------------------------------------


@pytest.mark.asyncio
async def test_bad_frames_are_counted_and_dropped(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
            await server.raw("garbage \x00 not json")
            await server.raw('{"type": "trade", "instrument": "BTC", "seq": 1, "pri')
            await server.raw('{"type": "surprise"}')
            await server.raw('{"type": "pong"}')
            await server.raw(json.dumps({"type": "error", "code": "internal", "message": "oops"}))
            await server.trade("DOGE")
            await server.trade()
            await until(lambda: len(run.events) == 1, "the good trade")
            assert run.client.state == "streaming"
        assert steps(db_path) == START + STOPPED  # a bad frame is not a transition
        counts = run.client.counts
        assert (counts["decode_error"], counts["venue_notice"], counts["unknown_instrument"]) == (3, 1, 1)
        samples = [a.sample for a in run.client.anomalies if a.kind == "decode_error"]
        assert samples[0].startswith("garbage")
        assert samples[1].endswith('"pri')
        with AuditReader(db_path) as reader:  # journaled as anomalies with their samples
            journaled = reader.anomalies(n=50)
        kinds = [a["kind"] for a in journaled]
        assert kinds.count("decode_error") == 3
        assert kinds.count("unknown_instrument") == 1
        assert {a["source"] for a in journaled} == {f"feed:{run.client.feed.entity_id}"}
        assert journaled[0]["sample"].startswith("garbage")


@pytest.mark.asyncio
async def test_out_of_order_seq_resyncs_then_recovers(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await streaming(run, 1, server)
            for seq in (1, 2, 4, 3, 5):
                await server.trade(seq=seq)
            await until(lambda: len(run.events) == 3, "trades 1, 2 and 5")
            await streaming(run)
        assert [e.seq for e in run.events if isinstance(e, TradeEvent)] == [1, 2, 5]
        assert steps(db_path) == [*START, ("gap_detected", "resyncing"), ("snapshot_applied", "streaming"), *STOPPED]
        gap = timeline(db_path)[5]["data"]
        assert (gap["instrument"], gap["expected"], gap["received"]) == ("BTC", 3, 4)
        assert run.client.counts["duplicate"] == 1


@pytest.mark.asyncio
async def test_missing_seq_resyncs_that_instrument_only(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path, ("BTC", "ETH")) as run:
            await streaming(run, 1, server)
            await server.trade("BTC")
            await server.trade("ETH")
            await server.trade("BTC", seq=4)  # 2 and 3 are lost
            await until(lambda: run.client.state == "resyncing", "resyncing")
            await server.trade("ETH")  # the other instrument streams on
            await until(lambda: len(run.events) == 3, "ETH during the resync")
            await server.trade("BTC")  # 5: follows on, BTC is whole again
            await streaming(run)
            await until(lambda: len(run.events) == 4, "BTC 5")
        assert [(e.instrument, e.seq) for e in run.events if isinstance(e, TradeEvent)] == [
            ("BTC", 1),
            ("ETH", 1),
            ("ETH", 2),
            ("BTC", 5),
        ]
        resync = [("gap_detected", "resyncing"), ("snapshot_applied", "streaming")]
        assert steps(db_path) == [*START[:4], ("snapshot_applied", "syncing"), START[4], *resync, *STOPPED]
        assert run.client.feed.data["gaps"] == 1


@pytest.mark.asyncio
async def test_a_failing_listener_does_not_stop_the_feed(server: Misbehaving, db_path: str) -> None:
    def explode(event: FeedEvent) -> None:
        raise RuntimeError("strategy bug")

    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            run.client.on_event = explode
            await streaming(run, 1, server)
            await server.trade()
            await server.trade()
            await until(lambda: run.client.counts["listener_error"] == 2, "two listener errors")
            assert run.client.state == "streaming"


# -- fatal cases and lifecycle ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unsupported_version_fails_the_feed(server: Misbehaving, db_path: str) -> None:
    server.plan("bad_version")
    async with asyncio.timeout(TIMEOUT):
        async with feed(server.url, db_path) as run:
            await run.task  # run() returns by itself
            assert run.client.state == "failed"
        assert steps(db_path) == [*START[:3], ("fatal", "failed")]
        assert "unsupported_version" in timeline(db_path)[-1]["data"]["reason"]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 403])
async def test_auth_refusal_fails_the_feed(server: Misbehaving, db_path: str, status: int) -> None:
    server.plan(f"refuse:{status}")
    async with asyncio.timeout(TIMEOUT), feed(server.url, db_path) as run:
        await run.task
    assert steps(db_path) == [*START[:2], ("fatal", "failed")]


@pytest.mark.asyncio
async def test_invalid_url_fails_the_feed(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), feed("ws://127.0.0.1:1/#fragment", db_path) as run:
        await run.task
    assert steps(db_path) == [*START[:2], ("fatal", "failed")]
    assert timeline(db_path)[-1]["data"]["reason"].startswith("invalid url")


@pytest.mark.asyncio
async def test_stop_during_backoff_and_refused_connections(db_path: str) -> None:
    async with Misbehaving() as gone:
        url = gone.url  # nothing listens there once it is closed: connection refused
    async with asyncio.timeout(TIMEOUT):
        async with feed(url, db_path, policy={"backoff_initial_ms": 50_000, "backoff_max_ms": 50_000}) as run:
            await until(lambda: run.client.state == "backoff", "backoff")
        assert steps(db_path) == [*START[:2], ("disconnected", "backoff"), ("stop", "closed")]
        assert disconnects(db_path)[0]["reason"].startswith("connect failed")


@pytest.mark.asyncio
async def test_run_lifecycle(server: Misbehaving, db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        journal = Journal.open(db_path, durability="normal")
        early = FeedClient(server.url, ["BTC"], journal, "early", FAST)
        early.stop()  # before run(): run() closes at once
        await early.run()
        assert early.state == "closed"
        with pytest.raises(RuntimeError):
            await early.run()
        client = FeedClient(server.url, ["BTC"], journal, ENTITY, FAST, ping_interval=None)
        task = asyncio.create_task(client.run())
        await client.wait_until_streaming()
        task.cancel()  # cancelling run() stops the feed and re-raises
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.state == "closed"
        journal.close()
        assert steps(db_path) == [*START, ("stop", "closed")]


# -- the real paper venue -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_paper_venue_stream_and_disconnect_all(tmp_path: Path, db_path: str) -> None:
    config = VenueConfig(instruments=["BTCUSDT"], autoplay=False, heartbeat_s=0.05)
    async with asyncio.timeout(TIMEOUT), PaperVenue(str(tmp_path / "venue.db"), config) as venue:
        async with feed(venue.url, db_path, ("BTCUSDT",)) as run:
            await streaming(run)
            await venue.push_trade("BTCUSDT", Decimal("101.25"), Decimal("0.5"), "sell")
            await until(lambda: len(run.events) == 1, "the pushed trade")
            await venue.disconnect_all()
            await until(lambda: run.client.state != "streaming", "the drop")
            await streaming(run)
            await venue.push_trade("BTCUSDT", Decimal("101.5"), Decimal("1"), "buy")
            await until(lambda: len(run.events) == 2, "a trade after the reconnect")
        trades = [e for e in run.events if isinstance(e, TradeEvent)]
        assert [(t.seq, t.price, t.taker_side) for t in trades] == [
            (1, Decimal("101.25"), "sell"),
            (1, Decimal("101.5"), "buy"),
        ]
        assert steps(db_path) == START + DROPPED + STOPPED
        assert disconnects(db_path)[0]["code"] == 1006


# -- another venue through its source -----------------------------------------------------------


class CoinbaseLike:
    """A local server speaking Coinbase's feed: answers ``subscribe``, then sends what the test pushes."""

    def __init__(self) -> None:
        self.subscribe: dict[str, Any] = {}
        self.ws: ServerConnection | None = None
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> CoinbaseLike:
        self._server = await serve(self._handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{next(iter(self._server.sockets)).getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handler(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                self.subscribe = json.loads(frame)
                self.ws = ws
                channels = [{"name": "matches", "product_ids": self.subscribe["product_ids"]}]
                await ws.send(json.dumps({"type": "subscriptions", "channels": channels}))

    async def send(self, **message: Any) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def match(self, trade_id: int) -> None:
        await self.send(
            type="match",
            trade_id=trade_id,
            side="sell",
            size="0.5",
            price="100.25",
            product_id="BTC-USD",
            sequence=trade_id * 10,
            time="2021-04-17T16:43:37.056Z",
        )


@pytest.mark.asyncio
async def test_the_client_drives_another_venue_through_its_source(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), CoinbaseLike() as venue:
        source = CoinbaseMarketData(venue.url, books=False)  # trades only: no level2 snapshot to wait for
        async with feed(venue.url, db_path, ("BTC-USD",), source=source) as run:
            await streaming(run)
            for trade_id in (10, 11, 13, 14):
                await venue.match(trade_id)
            await venue.send(
                type="heartbeat", sequence=1, last_trade_id=14, product_id="BTC-USD", time="2021-04-17T16:43:38Z"
            )
            await venue.send(
                type="heartbeat", sequence=2, last_trade_id=9, product_id="ETH-USD", time="2021-04-17T16:43:38Z"
            )
            await until(lambda: len(run.events) == 3, "three trades passed on")
            await venue.match(15)
            await until(lambda: len(run.events) == 4, "the fourth trade")
        assert venue.subscribe == {
            "type": "subscribe",
            "product_ids": ["BTC-USD"],
            "channels": ["matches", "ticker", "heartbeat"],
        }
        assert [(e.venue, e.trade_id, e.taker_side) for e in run.events if isinstance(e, TradeEvent)] == [
            ("coinbase", "10", "buy"),
            ("coinbase", "11", "buy"),
            ("coinbase", "14", "buy"),  # 13 revealed the gap (12 missing): not passed on; 14 follows on
            ("coinbase", "15", "buy"),
        ]
        assert steps(db_path) == [*START, ("gap_detected", "resyncing"), ("snapshot_applied", "streaming"), *STOPPED]
        assert run.client.counts == {}  # the heartbeat of a product not subscribed is no anomaly


def test_a_source_must_connect_where_the_feed_says(db_path: str) -> None:
    journal = Journal.open(db_path)
    try:
        with pytest.raises(
            FeedMisuse, match=re.escape("connects to 'wss://ws-feed.exchange.coinbase.com', not 'ws://x'")
        ):
            FeedClient("ws://x", ["BTC-USD"], journal, ENTITY, source=CoinbaseMarketData())
    finally:
        journal.close()
