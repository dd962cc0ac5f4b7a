"""VenueClient against a scripted fake venue: a real websockets server on 127.0.0.1.

``FakeVenue`` (also used by test_orders.py) speaks the venue protocol just enough: ``welcome``,
``exec: new`` acks, ``order_status`` answers from a dict, and on command: any message, garbage,
a dropped connection, refused hellos, held answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from kernel import paper_protocol as protocol
from kernel.execution import (
    ExecutionClient,
    HandshakeFailed,
    ReconnectFailed,
    VenueClient,
    VenueError,
    VenueRequestError,
    VenueTimeout,
    VenueUnavailable,
    VenueVersionMismatch,
)
from kernel.paper_protocol import (
    ClientMessage,
    Execution,
    Fill,
    Fills,
    FillsSinceRequest,
    Hello,
    NewOrder,
    OpenOrders,
    OpenOrdersRequest,
    OrderSnapshot,
    OrderStatus,
    OrderStatusRequest,
)
from tests.poll import eventually

TIMEOUT = 5.0


class FakeVenue:
    """A scripted venue: one real WebSocket server; its behaviour is set by attributes."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.version = protocol.VERSION
        self.hello_error: str | None = None  # answer hello with this error code instead of welcome
        self.hello_errors_left = 0  # ... for this many hellos (then welcome)
        self.pre_welcome: list[protocol.Message] = []  # sent before the welcome
        self.auto_ack = True
        self.hold_requests = False  # do not answer order_status/open_orders/fills_since
        self.statuses: dict[str, OrderSnapshot | None] = {}
        self.fills: list[Fill] = []
        self.on_new_order: Callable[[NewOrder], None] | None = None
        self.received: list[ClientMessage] = []
        self.inbox: asyncio.Queue[ClientMessage] = asyncio.Queue()
        self.sessions = 0
        self.ws: ServerConnection | None = None
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> FakeVenue:
        self._server = await serve(self._handle, "127.0.0.1", self.port)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                await self._serve(ws, protocol.decode_client(frame))

    async def _serve(self, ws: ServerConnection, message: ClientMessage) -> None:
        self.received.append(message)
        if isinstance(message, Hello):
            if self.hello_error is not None and self.hello_errors_left > 0:
                self.hello_errors_left -= 1
                await self.reply(ws, protocol.Error(code=self.hello_error, message="no"))  # type: ignore[arg-type]
                return
            self.ws = ws
            self.sessions += 1
            for early in self.pre_welcome:
                await self.reply(ws, early)
            await self.reply(
                ws, protocol.Welcome(version=self.version, session=f"s-{self.sessions}", instruments=["BTCUSDT"])
            )
        elif isinstance(message, NewOrder):
            if self.on_new_order is not None:
                self.on_new_order(message)
            if self.auto_ack:
                await self.reply(ws, execution(message.client_order_id, "new", "new", qty=message.qty))
        elif not self.hold_requests:
            if isinstance(message, OrderStatusRequest):
                order = self.statuses.get(message.client_order_id)
                answer: protocol.Message = OrderStatus(
                    client_order_id=message.client_order_id, order=order, id=message.id
                )
                await self.reply(ws, answer)
            elif isinstance(message, OpenOrdersRequest):
                open_ = [o for o in self.statuses.values() if o is not None and o.status in ("new", "partially_filled")]
                await self.reply(ws, OpenOrders(orders=open_, id=message.id))
            elif isinstance(message, FillsSinceRequest):
                await self.reply(ws, Fills(fills=[f for f in self.fills if f.fill_seq > message.after], id=message.id))
        await self.inbox.put(message)

    @staticmethod
    async def reply(ws: ServerConnection, message: protocol.Message) -> None:
        await ws.send(protocol.encode(message).decode())

    async def send(self, message: protocol.Message) -> None:
        """Send to the current session."""
        assert self.ws is not None
        await self.reply(self.ws, message)

    async def send_raw(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send(text)

    def drop(self) -> None:
        """Drop the current session without a closing handshake."""
        assert self.ws is not None
        self.ws.transport.abort()

    async def expect(self, kind: type[Any], timeout: float = TIMEOUT) -> Any:
        """The next received message of type ``kind`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if isinstance(message, kind):
                    return message

    def count(self, kind: type[Any]) -> int:
        return sum(isinstance(m, kind) for m in self.received)


def execution(
    client_order_id: str,
    exec_: str,
    status: str,
    *,
    qty: Decimal | str = "1",
    price: Decimal | str | None = "100",
    cum_qty: str = "0",
    leaves_qty: str | None = None,
    fill: Fill | None = None,
    reason: str | None = None,
    venue_order_id: str = "",
) -> Execution:
    """An execution report with defaults (venue order id ``V-<client order id>``)."""
    qty = Decimal(qty)
    return Execution(
        client_order_id=client_order_id,
        exec=exec_,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        venue_order_id=venue_order_id or f"V-{client_order_id}",
        qty=qty,
        price=None if price is None else Decimal(price),
        cum_qty=Decimal(cum_qty),
        leaves_qty=qty - Decimal(cum_qty) if leaves_qty is None else Decimal(leaves_qty),
        ts_ms=1_700_000_000_000,
        fill=fill,
        reason=reason,
    )


def fill(trade_id: str, qty: str, price: str = "100", seq: int = 1, client_order_id: str = "") -> Fill:
    return Fill(
        trade_id=trade_id,
        qty=Decimal(qty),
        price=Decimal(price),
        fee=Decimal("0.01"),
        fill_seq=seq,
        ts_ms=1_700_000_000_000,
        client_order_id=client_order_id,
    )


def snapshot(
    client_order_id: str, status: str, *, qty: str = "1", price: str | None = "100", **kw: Any
) -> OrderSnapshot:
    fills: list[Fill] = kw.pop("fills", [])
    cum = sum((f.qty for f in fills), Decimal(0))
    return OrderSnapshot(
        client_order_id=client_order_id,
        venue_order_id=kw.pop("venue_order_id", f"V-{client_order_id}"),
        instrument="BTCUSDT",
        side="buy",
        order_type="limit" if price is not None else "market",
        tif="gtc",
        qty=Decimal(qty),
        price=None if price is None else Decimal(price),
        status=status,  # type: ignore[arg-type]
        cum_qty=cum,
        leaves_qty=Decimal(qty) - cum if status in ("new", "partially_filled") else Decimal(0),
        fills=fills,
        reason=kw.pop("reason", None),
    )


class RecordingSleep:
    """tenacity's ``sleep``: records each delay; waits on ``gate`` when closed (open by default)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self.gate.wait()


def is_up(client: ExecutionClient) -> bool:
    """``client.connected``, read through a call (mypy keeps no narrowing across it)."""
    return client.connected


@contextlib.asynccontextmanager
async def venue_and_client(**options: Any) -> AsyncIterator[tuple[FakeVenue, VenueClient]]:
    """A running fake venue and a (not yet connected) client for it; both closed on exit."""
    async with FakeVenue() as venue:
        options.setdefault("sleep", RecordingSleep())
        options.setdefault("attempts", 3)
        client = VenueClient(venue.url, ping_interval=None, **options)
        try:
            yield venue, client
        finally:
            await client.close()


# -- session ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_hello_first_then_welcome_opens_the_session() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        assert isinstance(client, ExecutionClient)
        assert not client.connected
        assert client.generation == 0
        await client.connect()
        await client.connect()  # already connected: nothing happens
        assert is_up(client)
        assert client.generation == 1
        assert await client.wait_connected() == 1
        assert client.session == "s-1"
        assert client.instruments == ["BTCUSDT"]
        first = venue.received[0]
        assert isinstance(first, Hello)
        assert first.version == protocol.VERSION
        assert venue.sessions == 1


@pytest.mark.asyncio
async def test_a_venue_of_another_version_is_refused_without_retrying() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        venue.version = protocol.VERSION + 1
        with pytest.raises(VenueVersionMismatch, match="version 2"):
            await client.connect()
        assert client.connect_attempts == 1
        assert not client.connected


@pytest.mark.asyncio
async def test_unsupported_version_error_is_a_version_mismatch() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        venue.hello_error, venue.hello_errors_left = "unsupported_version", 1
        with pytest.raises(VenueVersionMismatch, match="refused"):
            await client.connect()
        assert client.connect_attempts == 1


@pytest.mark.asyncio
async def test_a_refused_hello_is_retried_with_exponential_backoff() -> None:
    sleep = RecordingSleep()
    async with asyncio.timeout(TIMEOUT), venue_and_client(sleep=sleep, attempts=4, jitter=0) as (venue, client):
        venue.hello_error, venue.hello_errors_left = "internal", 2
        await client.connect()
        assert client.connect_attempts == 3
        assert sleep.delays == [pytest.approx(0.1), pytest.approx(0.2)]


@pytest.mark.asyncio
async def test_bounded_attempts_end_in_reconnect_failed() -> None:
    sleep = RecordingSleep()
    async with asyncio.timeout(TIMEOUT), venue_and_client(sleep=sleep, attempts=3) as (venue, client):
        venue.hello_error, venue.hello_errors_left = "internal", 99
        with pytest.raises(ReconnectFailed, match="3 attempts") as failed:
            await client.connect()
        assert isinstance(failed.value.__cause__, HandshakeFailed)
        assert len(sleep.delays) == 2
        assert all(0 < d <= 0.1 * 2**i + 0.1 for i, d in enumerate(sleep.delays))


@pytest.mark.asyncio
async def test_a_bad_url_is_not_retried() -> None:
    client = VenueClient("http://127.0.0.1:1/", attempts=3, sleep=RecordingSleep())
    with pytest.raises(VenueError, match="bad venue url"):
        await client.connect()
    await client.close()
    with pytest.raises(ValueError, match="attempts"):
        VenueClient("ws://127.0.0.1:1/", attempts=0)


@pytest.mark.asyncio
async def test_sending_while_disconnected_raises_venue_unavailable() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        with pytest.raises(VenueUnavailable, match="not connected"):
            await client.send_cancel("o1-000001")
        with pytest.raises(VenueUnavailable):
            await client.order_status("o1-000001", timeout=1)
        await client.close()
        with pytest.raises(VenueUnavailable, match="closed"):
            await client.wait_connected()
        with pytest.raises(VenueUnavailable, match="closed"):
            await client.connect()
        assert venue.received == []


# -- requests -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_answers_are_matched_to_requests_by_id() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        venue.hold_requests = True
        first = asyncio.create_task(client.order_status("a", timeout=TIMEOUT))
        second = asyncio.create_task(client.order_status("b", timeout=TIMEOUT))
        req_a = await venue.expect(OrderStatusRequest)
        req_b = await venue.expect(OrderStatusRequest)
        assert req_a.id != req_b.id
        # answer in reverse order
        await venue.send(OrderStatus(client_order_id="b", order=snapshot("b", "new"), id=req_b.id))
        await venue.send(OrderStatus(client_order_id="a", order=None, id=req_a.id))
        assert await first is None
        got = await second
        assert got is not None
        assert got.client_order_id == "b"


@pytest.mark.asyncio
async def test_open_orders_and_fills_since() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        venue.statuses = {"a": snapshot("a", "new"), "b": snapshot("b", "filled"), "c": None}
        venue.fills = [fill("F1", "1", seq=1), fill("F2", "1", seq=2)]
        assert [o.client_order_id for o in await client.open_orders(timeout=TIMEOUT)] == ["a"]
        assert [f.trade_id for f in await client.fills_since(1, timeout=TIMEOUT)] == ["F2"]


@pytest.mark.asyncio
async def test_a_request_times_out_and_its_late_answer_is_ignored() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        venue.hold_requests = True
        with pytest.raises(VenueTimeout):
            await client.order_status("a", timeout=0.05)
        request = await venue.expect(OrderStatusRequest)
        await venue.send(OrderStatus(client_order_id="a", order=None, id=request.id))
        await eventually(lambda: client.unexpected_messages == 1)


@pytest.mark.asyncio
async def test_an_error_answer_raises_venue_request_error() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        venue.hold_requests = True
        task = asyncio.create_task(client.open_orders(timeout=TIMEOUT))
        request = await venue.expect(OpenOrdersRequest)
        await venue.send(protocol.Error(code="internal", message="boom", ref=request.id))
        with pytest.raises(VenueRequestError, match="internal: boom"):
            await task
        # an answer of the wrong type for the id
        task2 = asyncio.create_task(client.fills_since(0, timeout=TIMEOUT))
        request2 = await venue.expect(FillsSinceRequest)
        await venue.send(OpenOrders(orders=[], id=request2.id))
        with pytest.raises(VenueRequestError, match="expected Fills"):
            await task2


@pytest.mark.asyncio
async def test_a_pending_request_fails_when_the_connection_drops() -> None:
    sleep = RecordingSleep()
    async with asyncio.timeout(TIMEOUT), venue_and_client(sleep=sleep) as (venue, client):
        await client.connect()
        venue.hold_requests = True
        task = asyncio.create_task(client.order_status("a", timeout=TIMEOUT))
        await venue.expect(OrderStatusRequest)
        venue.drop()
        with pytest.raises(VenueUnavailable, match="lost"):
            await task


# -- frames -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_malformed_frames_are_counted_and_not_fatal() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        await venue.send_raw("not json at all")
        await venue.send_raw('{"type": "no_such_type"}')
        await venue.send_raw('{"type": "execution", "client_order_id": "a"}')
        await venue.send_raw("[1, 2, 3]")
        await venue.send(protocol.Heartbeat(ts_ms=1))
        await venue.send(protocol.Pong(id=""))  # valid, but nobody asked
        await venue.send(protocol.Error(code="invalid", message="qty must be positive", ref="new_order"))
        await venue.send(OrderStatus(client_order_id="z", order=None))  # not a duplicate, no id
        await venue.send(execution("a", "new", "new"))
        reports = await client.next_reports()
        assert [r.client_order_id for r in reports] == ["a"]
        assert client.malformed_frames == 4
        assert client.unexpected_messages == 2
        assert [e.message for e in client.venue_errors] == ["qty must be positive"]
        assert client.connected


@pytest.mark.asyncio
async def test_reports_keep_their_order_and_include_duplicate_status() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        await client.send_new(
            NewOrder(client_order_id="a", instrument="BTCUSDT", side="buy", qty=Decimal(1), price=Decimal(100))
        )
        await venue.expect(NewOrder)  # acked by then
        await venue.send(OrderStatus(client_order_id="a", order=snapshot("a", "new"), duplicate=True))
        await venue.send(execution("a", "canceled", "canceled"))
        batch = await client.next_reports(max_batch=1)
        assert isinstance(batch[0], Execution)
        assert batch[0].exec == "new"
        stream = client.reports()
        duplicate = await anext(stream)
        assert isinstance(duplicate, OrderStatus)
        assert duplicate.duplicate
        canceled = await anext(stream)
        assert isinstance(canceled, Execution)
        assert canceled.exec == "canceled"
        await stream.aclose()


# -- reconnecting -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reconnects_after_the_venue_drops_the_connection() -> None:
    sleep = RecordingSleep()
    async with asyncio.timeout(TIMEOUT), venue_and_client(sleep=sleep, attempts=5, jitter=0) as (venue, client):
        await client.connect()
        sleep.gate.clear()  # hold the client between attempts
        venue.hello_error, venue.hello_errors_left = "internal", 1
        venue.drop()
        await eventually(lambda: len(sleep.delays) == 1)
        assert not client.connected
        with pytest.raises(VenueUnavailable, match="not connected"):
            await client.send_cancel("a")
        waiter = asyncio.create_task(client.wait_connected(after=1))
        sleep.gate.set()
        assert await waiter == 2
        assert is_up(client)
        assert venue.sessions == 2
        assert sleep.delays == [pytest.approx(0.1)]
        await client.send_cancel("a")
        assert (await venue.expect(protocol.CancelOrder)).client_order_id == "a"


@pytest.mark.asyncio
async def test_reconnecting_forever_backs_off_capped_and_jittered() -> None:
    sleep = RecordingSleep()
    options = {"sleep": sleep, "attempts": None, "backoff": 0.1, "backoff_max": 0.4, "jitter": 0.05}
    async with asyncio.timeout(TIMEOUT), venue_and_client(**options) as (venue, client):
        venue.hello_error, venue.hello_errors_left = "internal", 40  # far past any bounded budget
        await client.connect()
        assert client.connect_attempts == 41
        assert client.failure is None
        # Doubling from 0.1 s to the 0.4 s cap, each wait plus up to 0.05 s of jitter.
        bases = [0.1, 0.2, 0.4] + [0.4] * 37
        assert len(sleep.delays) == len(bases)
        assert all(base <= delay <= base + 0.05 for base, delay in zip(bases, sleep.delays, strict=True))
        assert len(set(sleep.delays[2:])) > 30  # jittered at the cap too: clients do not retry in lockstep


@pytest.mark.asyncio
async def test_a_dropped_session_is_reconnected_forever() -> None:
    sleep = RecordingSleep()
    async with asyncio.timeout(TIMEOUT), venue_and_client(sleep=sleep, attempts=None, jitter=0) as (venue, client):
        await client.connect()
        venue.hello_error, venue.hello_errors_left = "internal", 60
        venue.drop()
        assert await client.wait_connected(after=1) == 2  # never ReconnectFailed
        assert client.connect_attempts == 62
        assert client.failure is None
        assert max(sleep.delays) == pytest.approx(5.0)  # the default cap


@pytest.mark.asyncio
async def test_started_before_its_venue_the_client_waits_for_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = RecordingSleep()
    client = VenueClient(f"ws://127.0.0.1:{port}", ping_interval=None, attempts=None, sleep=sleep)
    async with asyncio.timeout(TIMEOUT):
        client.start()  # returns at once: nothing listens yet
        assert not client.connected
        await eventually(lambda: client.connect_attempts >= 20)  # refused, refused, ... never given up
        assert client.failure is None
        async with FakeVenue(port) as venue:
            await client.connect()  # started: waits for that session rather than opening another
            assert client.connected
            assert venue.sessions == 1
            assert client.instruments == ["BTCUSDT"]
            await client.close()


@pytest.mark.asyncio
async def test_a_venue_that_stays_down_ends_in_reconnect_failed() -> None:
    # Only with a bounded budget (``attempts``): the kernel's client never gives up.
    sleep = RecordingSleep()
    async with asyncio.timeout(TIMEOUT), venue_and_client(sleep=sleep, attempts=3) as (venue, client):
        await client.connect()
        await venue.stop()
        with pytest.raises(ReconnectFailed, match="3 attempts"):
            await client.wait_connected(after=1)
        assert client.failure is not None
        assert len(sleep.delays) == 2
        with pytest.raises(VenueUnavailable):
            await client.send_cancel("a")


@pytest.mark.asyncio
async def test_messages_before_the_welcome_are_skipped() -> None:
    async with FakeVenue() as venue:
        venue.pre_welcome = [protocol.Heartbeat(ts_ms=1)]
        async with asyncio.timeout(TIMEOUT), VenueClient(venue.url, sleep=RecordingSleep()) as client:
            assert client.connected
            assert client.session == "s-1"
        assert not client.connected


@pytest.mark.asyncio
async def test_a_reconnect_into_another_version_gives_up() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        venue.version = protocol.VERSION + 1
        venue.drop()
        with pytest.raises(ReconnectFailed, match="version") as failed:
            await client.wait_connected(after=1)
        assert isinstance(failed.value.__cause__, ReconnectFailed)
        assert client.connect_attempts == 2


@pytest.mark.asyncio
async def test_a_send_on_a_closing_connection_raises_venue_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (_venue, client):
        await client.connect()
        ws = client._ws
        assert ws is not None

        async def closed(message: str) -> None:
            raise ConnectionClosedError(None, None)

        monkeypatch.setattr(ws, "send", closed)
        with pytest.raises(VenueUnavailable, match="while sending CancelOrder"):
            await client.send_cancel("a")


# -- a bad frame or a failing reader (issue 14, item 4) ------------------------------------------


@pytest.mark.asyncio
async def test_a_frame_nested_1000_deep_is_skipped_and_later_reports_still_arrive() -> None:
    async with asyncio.timeout(TIMEOUT), venue_and_client() as (venue, client):
        await client.connect()
        await venue.send_raw('{"type": "execution", "x": ' + "[" * 1_000 + "]" * 1_000 + "}")  # ~2 KB
        await venue.send_raw("[" * 3_000 + "]" * 3_000)  # ~6 KB
        await venue.send(execution("a", "trade", "filled", fill=fill("t1", "1")))
        reports = await client.next_reports()
        assert [(r.client_order_id, r.fill) for r in reports] == [("a", fill("t1", "1"))]  # type: ignore[union-attr]
        assert client.malformed_frames == 2
        assert client.generation == 1
        assert client.connected


@pytest.mark.asyncio
async def test_an_exception_in_the_reader_is_a_dead_connection_journaled_and_recycled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    anomalies: list[tuple[str, str, str]] = []
    connected_then: list[bool] = []
    clients: list[VenueClient] = []

    def record(*anomaly: str) -> None:
        anomalies.append(anomaly)  # type: ignore[arg-type]
        connected_then.append(clients[0].connected)

    decode = protocol.decode_venue

    def buggy(frame: str | bytes) -> protocol.VenueMessage:
        if "boom" in str(frame):
            raise KeyError("a decoder bug")
        return decode(frame)

    monkeypatch.setattr(protocol, "decode_venue", buggy)
    async with (
        asyncio.timeout(TIMEOUT),
        venue_and_client(on_anomaly=record) as (venue, client),
    ):
        clients.append(client)
        await client.connect()
        first = venue.ws
        await venue.send_raw('{"type": "heartbeat", "ts_ms": 1, "boom": 1}')
        await client.wait_connected(after=1)  # the session was recycled: a new connection
        assert venue.sessions == 2
        assert venue.ws is not first
        assert anomalies == [
            ("reader_failed", "venue report reader failed: KeyError('a decoder bug'); session recycled", "")
        ]
        assert connected_then == [False]  # order entry was paused before the anomaly was reported
        assert client.reader_failures == 1
        await venue.send(execution("a", "trade", "filled", fill=fill("t1", "1")))
        reports = await client.next_reports()
        assert [(r.client_order_id, r.fill) for r in reports] == [("a", fill("t1", "1"))]  # type: ignore[union-attr]
