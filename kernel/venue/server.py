"""The paper venue's WebSocket server: ``PaperVenue`` speaks ``docs/venue-protocol.md``.

One asyncio shell around the pure ``MatchingEngine``. Every engine step (an order message, a market
event, a test hook) runs synchronously in the event loop: the engine updates its book, the step is
committed to the venue's own SQLite store (``storage.venue_store``), and only then are its messages
queued, in order, for the connections that must see them. Each connection has one writer task that
sends its queue (and a ``heartbeat`` after ``heartbeat_s`` of silence) and assigns market data
``seq`` numbers as it sends them.

Conventions this venue chose where the protocol leaves room:

* ``seq`` counts from 1 per subscriber connection, instrument and channel: each connection sees its
  own gapless 1, 2, 3, ... from its ``subscribe`` on (a new connection starts again at 1).
* The reports of a request go to the connection that sent it, and that connection becomes the
  order's owner (so does a connection that asks for the order's status); reports caused by market
  data or test hooks go to the owner if it is still connected, else to every open connection (the
  venue has one account; a reconnecting kernel must not miss fills).
* ``hello`` is expected first but not enforced.
* An order the engine finds invalid (qty not positive, ...) is answered with an ``execution`` of
  ``exec: rejected`` (so the kernel can tie it to its order); frames that do not decode get ``error``.
* Timestamps: replayed events keep the file's ``ts_ms``; order entry and hooks use the venue clock.

Market data: ``VenueConfig.data_paths`` are replayed (merged by time) at ``speed`` (1.0 real time,
0 as fast as possible), or a seeded random walk when no file is given; ``autoplay=False`` leaves
market data to the test hooks (``push_trade``, ``push_quote``), which match exactly like replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Literal, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kernel.paper_protocol import (
    VERSION,
    CancelOrder,
    ClientMessage,
    Error,
    Execution,
    Fill,
    Fills,
    FillsSinceRequest,
    Heartbeat,
    Hello,
    Message,
    NewOrder,
    OpenOrders,
    OpenOrdersRequest,
    OrderStatus,
    OrderStatusRequest,
    OrderType,
    Ping,
    Pong,
    ProtocolError,
    Quote,
    ReplaceOrder,
    Side,
    Status,
    Subscribe,
    Subscribed,
    TimeInForce,
    Trade,
    Welcome,
    decode_client,
    encode,
)
from kernel.venue import marketdata
from kernel.venue.marketdata import MarketEvent, MarketQuote, MarketTrade
from kernel.venue.matching import EngineConfig, MatchingEngine, Order
from storage.venue_store import (
    Counters,
    StoredFill,
    StoredOrder,
    VenueState,
    VenueStore,
    VenueStoreCorrupt,
    VenueStoreError,
)

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
"""Largest frame the venue accepts (``max_size``): an order message is a few hundred bytes."""
MAX_INCOMING_FRAMES = 32
"""Frames buffered per connection before websockets stops reading the socket (``max_queue``)."""
HIGH_WATER = 1_000
"""A replay waits while a subscriber has this many messages queued (backpressure)."""
MAX_OUTBOUND = 50_000
"""A connection with this many messages queued is a stuck consumer and is dropped."""
SLOW_CONSUMER_S = 10.0
"""How long the replay waits for a subscriber to get below ``HIGH_WATER`` before dropping it."""
CLOSE_TIMEOUT_S = 2.0

Channel = Literal["trades", "quotes"]
Outbound = Message | MarketTrade | MarketQuote


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch, from the system clock."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class VenueConfig:
    """How the paper venue behaves. Rates are probabilities in [0, 1], bps are basis points.

    ``instruments`` empty means: those of ``data_paths``, or ``("BTCUSDT",)`` for the random walk.
    """

    instruments: Sequence[str] = ()
    data_paths: Sequence[str] = ()
    speed: float = 1.0
    seed: int = 0
    fee_bps: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    latency_ms: float = 0.0
    reject_rate: float = 0.0
    unsolicited_cancel_rate: float = 0.0
    heartbeat_s: float = 1.0
    autoplay: bool = True
    loop: bool = False

    def __post_init__(self) -> None:
        # Accept any sequence (a list is the natural thing to pass) but hold tuples: hashable, immutable.
        object.__setattr__(self, "instruments", tuple(self.instruments))
        object.__setattr__(self, "data_paths", tuple(self.data_paths))
        object.__setattr__(self, "fee_bps", Decimal(self.fee_bps))
        object.__setattr__(self, "slippage_bps", Decimal(self.slippage_bps))
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0, got {self.speed}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if self.heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be > 0, got {self.heartbeat_s}")
        self.engine_config()  # validates rates and bps

    def engine_config(self, instruments: tuple[str, ...] = ()) -> EngineConfig:
        """The matching engine's part of this configuration."""
        return EngineConfig(
            instruments=instruments or tuple(self.instruments),
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            reject_rate=self.reject_rate,
            unsolicited_cancel_rate=self.unsolicited_cancel_rate,
            seed=self.seed,
        )


class _Connection:
    """One client connection: its outbound queue, subscriptions and market data counters."""

    def __init__(self, ws: ServerConnection, heartbeat_s: float, clock: Callable[[], int]) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Outbound] = asyncio.Queue()
        self.subscriptions: set[tuple[str, Channel]] = set()
        self.seq: dict[tuple[str, Channel], int] = {}
        self.open = True
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._space = asyncio.Event()
        self._space.set()

    def send(self, message: Outbound) -> None:
        """Queue a message (never blocks); a hopelessly stuck consumer is disconnected."""
        if not self.open:
            return
        self.queue.put_nowait(message)
        if self.queue.qsize() >= HIGH_WATER:
            self._space.clear()
        if self.queue.qsize() >= MAX_OUTBOUND:
            log.warning("dropping connection %s: %d messages queued", self.ws.id, self.queue.qsize())
            self.abort()

    def abort(self) -> None:
        """Close the connection abruptly (no close handshake)."""
        self.open = False
        self._space.set()
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def wait_writable(self) -> None:
        """Wait until fewer than ``HIGH_WATER`` messages are queued (or the connection is gone)."""
        if self._space.is_set():
            return
        try:
            async with asyncio.timeout(SLOW_CONSUMER_S):
                await self._space.wait()
        except TimeoutError:
            log.warning("dropping slow consumer %s", self.ws.id)
            self.abort()

    async def write_loop(self) -> None:
        """Send queued messages in order; a heartbeat after ``heartbeat_s`` without any."""
        while True:
            item: Outbound
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    item = await self.queue.get()
            except TimeoutError:
                item = Heartbeat(ts_ms=self._clock())
            if self.queue.qsize() < HIGH_WATER:
                self._space.set()
            await self.ws.send(encode(self._numbered(item)), text=True)

    def _numbered(self, item: Outbound) -> Message:
        if isinstance(item, MarketTrade):
            return Trade(
                instrument=item.instrument,
                seq=self._next_seq(item.instrument, "trades"),
                trade_id=item.trade_id,
                price=item.price,
                qty=item.qty,
                taker_side=item.taker_side,
                ts_ms=item.ts_ms,
            )
        if isinstance(item, MarketQuote):
            return Quote(
                instrument=item.instrument,
                seq=self._next_seq(item.instrument, "quotes"),
                bid=item.bid,
                bid_qty=item.bid_qty,
                ask=item.ask,
                ask_qty=item.ask_qty,
                ts_ms=item.ts_ms,
            )
        return item

    def _next_seq(self, instrument: str, channel: Channel) -> int:
        seq = self.seq.get((instrument, channel), 0) + 1
        self.seq[(instrument, channel)] = seq
        return seq


class PaperVenue:
    """A simulated exchange on a loopback WebSocket, its state kept in ``store_path``.

    ``start()`` opens the store (rebuilding the order book from it), binds and starts the replay;
    ``stop()`` undoes that in reverse order. Also usable as ``async with PaperVenue(...) as venue``.
    Raises ``VenueStoreError`` (store unusable) and ``MarketDataError`` (bad data file) from
    ``start()``.
    """

    def __init__(
        self, store_path: str, config: VenueConfig | None = None, *, clock: Callable[[], int] = wall_clock_ms
    ) -> None:
        self.store_path = store_path
        self.config = config or VenueConfig()
        self.instruments: tuple[str, ...] = ()
        self.session = ""
        self._clock = clock
        self._store: VenueStore | None = None
        self._engine = MatchingEngine(self.config.engine_config())
        self._server: Server | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()
        self._owners: dict[str, _Connection] = {}
        self._pushed = 0
        self.on_request: Callable[[ClientMessage], None] | None = None
        """Called with each valid client message as it arrives, before it is served (tests, benchmarks)."""
        self.port = 0
        self.host = ""

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` once started (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._server is not None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Open the store, rebuild the book, listen on ``host:port`` (0: any free port), start replay."""
        if self._server is not None:
            raise RuntimeError("the venue is already running")
        cfg = self.config
        if cfg.instruments:
            self.instruments = tuple(cfg.instruments)
        elif cfg.data_paths:
            self.instruments = marketdata.instruments(cfg.data_paths)  # also validates every row
        else:
            self.instruments = (marketdata.BINANCE_INSTRUMENT,)
        store = VenueStore.open(self.store_path)
        try:
            self._store = store
            self._rebuild(store.load())
            self.session = f"s-{store.session}"
            self._server = await serve(
                self._serve,
                host,
                port,
                max_size=MAX_FRAME_BYTES,
                max_queue=MAX_INCOMING_FRAMES,
                close_timeout=CLOSE_TIMEOUT_S,
            )
        except BaseException:
            store.close()
            self._store = None
            raise
        sock = next(iter(self._server.sockets))
        self.host, self.port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
        if cfg.autoplay:
            self._replay_task = asyncio.create_task(self._replay(), name="venue-replay")
        log.info("paper venue listening on %s (session %s)", self.url, self.session)

    async def stop(self) -> None:
        """Stop replay, close every connection (1001), stop listening, close the store. Idempotent."""
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
            self._replay_task = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._store is not None:
            self._store.close()
            self._store = None

    async def __aenter__(self) -> PaperVenue:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _rebuild(self, state: VenueState) -> None:
        self._engine = MatchingEngine(
            self.config.engine_config(self.instruments),
            next_venue_order=state.counters.next_venue_order,
            next_fill_seq=state.counters.next_fill_seq,
            next_priority=state.counters.next_priority,
        )
        self._engine.restore(_order_from_store(stored, self.store_path) for stored in state.orders)

    # -- test hooks -------------------------------------------------------------------------

    async def push_trade(
        self, instrument: str, price: Decimal, qty: Decimal, taker_side: Side, ts_ms: int | None = None
    ) -> list[Execution]:
        """Test hook: a market trade, broadcast and matched exactly like replayed data.

        Returns the execution reports it caused (also sent to the orders' owners).
        """
        self._pushed += 1
        event = MarketTrade(
            instrument=self._known(instrument),
            trade_id=f"P{self._pushed}",
            price=Decimal(price),
            qty=Decimal(qty),
            taker_side=taker_side,
            ts_ms=self._clock() if ts_ms is None else ts_ms,
        )
        reports = self._market(event)
        await self._drain()
        return reports

    async def push_quote(
        self,
        instrument: str,
        bid: Decimal,
        bid_qty: Decimal,
        ask: Decimal,
        ask_qty: Decimal,
        ts_ms: int | None = None,
    ) -> list[Execution]:
        """Test hook: a top-of-book quote, broadcast and applied exactly like replayed data."""
        event = MarketQuote(
            instrument=self._known(instrument),
            bid=Decimal(bid),
            bid_qty=Decimal(bid_qty),
            ask=Decimal(ask),
            ask_qty=Decimal(ask_qty),
            ts_ms=self._clock() if ts_ms is None else ts_ms,
        )
        reports = self._market(event)
        await self._drain()
        return reports

    async def end_of_day(self) -> list[Execution]:
        """Test hook: expire every working ``day`` order."""
        return self._step(None, self._engine.end_of_day(self._clock()))

    async def unsolicited_cancel(self, client_order_id: str, reason: str = "unsolicited") -> list[Execution]:
        """Test hook: cancel a working order on the venue's initiative.

        Raises ``KeyError`` for an unknown order and ``ValueError`` for one that is done.
        """
        order = self._engine.order(client_order_id)
        if order is None:
            raise KeyError(f"no order {client_order_id!r}")
        if order.done:
            raise ValueError(f"order {client_order_id!r} is already {order.status}")
        return self._step(None, self._engine.cancel(client_order_id, self._clock(), reason=reason))

    async def restate(
        self,
        client_order_id: str,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        reason: str = "restated by venue",
    ) -> list[Execution]:
        """Test hook: change a working order on the venue's initiative (exec ``restated``).

        Raises ``KeyError`` for an unknown order, ``ValueError`` when the change is impossible.
        """
        reports = self._engine.restate(client_order_id, self._clock(), qty=qty, price=price, reason=reason)
        return self._step(None, reports)

    async def disconnect_all(self) -> None:
        """Test hook: drop every client connection abruptly (no close handshake)."""
        for conn in list(self._connections):
            conn.abort()

    def _known(self, instrument: str) -> str:
        if self.instruments and instrument not in self.instruments:
            raise ValueError(f"unknown instrument {instrument!r}; the venue trades {', '.join(self.instruments)}")
        return instrument

    # -- engine steps -----------------------------------------------------------------------

    def _commit(self) -> None:
        """Persist what the engine changed; on failure put the engine back to what is on disk."""
        store = self._store
        if store is None:
            raise RuntimeError("the venue is not running")
        changes = self._engine.take_changes()
        if not changes.orders and not changes.fills:
            return
        try:
            store.save_step(
                [_order_to_store(o) for o in changes.orders],
                [_fill_to_store(f) for f in changes.fills],
                Counters(changes.next_venue_order, changes.next_fill_seq, changes.next_priority),
            )
        except VenueStoreError:
            log.exception("venue store write failed; reloading the book from %s", self.store_path)
            self._rebuild(store.load())
            raise

    def _step(self, requester: _Connection | None, reports: list[Execution]) -> list[Execution]:
        """Commit, then route each report to the requester (which becomes owner) or the owner."""
        self._commit()
        self._route(requester, reports)
        return reports

    def _route(self, requester: _Connection | None, reports: list[Execution]) -> None:
        for report in reports:
            if requester is not None:
                if report.venue_order_id:
                    self._owners[report.client_order_id] = requester
                requester.send(report)
            else:
                owner = self._owners.get(report.client_order_id)
                if owner is not None and owner.open:
                    owner.send(report)
                else:
                    # One account: with the owner gone (a kernel reconnecting, a venue restarted),
                    # the account's other sessions get the report, as a user-data stream would.
                    for conn in self._connections:
                        if conn.open:
                            conn.send(report)

    def _market(self, event: MarketEvent) -> list[Execution]:
        """One market event: match, commit, broadcast it, then send the reports it caused."""
        if isinstance(event, MarketTrade):
            reports = self._engine.on_trade(event.instrument, event.price, event.qty, event.ts_ms)
            channel: Channel = "trades"
        else:
            reports = self._engine.on_quote(
                event.instrument, event.bid, event.bid_qty, event.ask, event.ask_qty, event.ts_ms
            )
            channel = "quotes"
        self._commit()
        key = (event.instrument, channel)
        for conn in self._connections:
            if key in conn.subscriptions:
                conn.send(event)
        self._route(None, reports)
        return reports

    async def _drain(self) -> None:
        """Backpressure: wait while a subscriber is behind; always yields to the loop once."""
        for conn in list(self._connections):
            await conn.wait_writable()
        await asyncio.sleep(0)

    async def _replay(self) -> None:
        """Replay the data files (or the random walk), paced by ``speed``; again if ``loop``."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        try:
            while True:
                events: Iterator[MarketEvent] = (
                    marketdata.load(cfg.data_paths)
                    if cfg.data_paths
                    else marketdata.random_walk(cfg.seed, start_ts_ms=self._clock())
                )
                started = loop.time()
                first_ts: int | None = None
                for event in events:
                    if first_ts is None:
                        first_ts = event.ts_ms
                    if cfg.speed > 0:
                        due = started + (event.ts_ms - first_ts) / 1000 / cfg.speed
                        delay = due - loop.time()
                        if delay > 0:
                            await asyncio.sleep(delay)  # replay pacing
                    self._market(event)
                    await self._drain()
                if not cfg.loop:
                    log.info("market data replay finished")
                    return
        except Exception:
            log.exception("market data replay failed; the venue carries on without it")

    # -- connections ------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        conn = _Connection(ws, self.config.heartbeat_s, self._clock)
        self._connections.add(conn)
        try:
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(conn.write_loop(), name=f"venue-writer-{ws.id}")
                try:
                    async for frame in ws:
                        await self._on_frame(conn, frame)
                finally:
                    writer.cancel()
        except* ConnectionClosed:
            pass  # the client went away (or was dropped): its orders stay at the venue
        finally:
            conn.open = False
            self._connections.discard(conn)

    async def _on_frame(self, conn: _Connection, frame: str | bytes) -> None:
        try:
            message = decode_client(frame)
        except ProtocolError as exc:
            conn.send(exc.reply())
            return
        if self.on_request is not None:
            self.on_request(message)
        try:
            await self._dispatch(conn, message)
        except VenueStoreError as exc:
            conn.send(
                Error(code="internal", message=f"the venue could not record the request: {exc}", ref=_ref(message))
            )
        except Exception as exc:  # a venue bug must not end the session: answer and carry on
            log.exception("venue failed to serve %r", message)
            conn.send(
                Error(code="internal", message=f"the venue failed to serve the request: {exc}", ref=_ref(message))
            )

    async def _dispatch(self, conn: _Connection, message: ClientMessage) -> None:
        if isinstance(message, NewOrder | CancelOrder | ReplaceOrder) and self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)  # simulated venue latency
        now = self._clock()
        engine = self._engine
        match message:
            case Hello(version=version):
                if version != VERSION:
                    conn.send(
                        Error(
                            code="unsupported_version",
                            message=f"this venue speaks protocol version {VERSION}, not {version}",
                            ref="hello",
                        )
                    )
                else:
                    conn.send(Welcome(version=VERSION, session=self.session, instruments=list(self.instruments)))
            case Subscribe(instruments=instruments, channels=channels, id=request_id):
                unknown = [i for i in instruments if i not in self.instruments]
                if unknown or not instruments or not channels:
                    why = f"unknown instruments: {', '.join(unknown)}" if unknown else "name instruments and channels"
                    conn.send(Error(code="invalid", message=why, ref=request_id or "subscribe"))
                    return
                conn.subscriptions.update((i, c) for i in instruments for c in channels)
                conn.send(Subscribed(instruments=list(instruments), channels=list(channels), id=request_id))
            case NewOrder(client_order_id=coid):
                if not coid:
                    conn.send(Error(code="invalid", message="client_order_id must not be empty", ref="new_order"))
                elif engine.order(coid) is not None:
                    snapshot = engine.duplicate(coid)
                    self._commit()
                    self._owners[coid] = conn
                    conn.send(OrderStatus(client_order_id=coid, order=snapshot, duplicate=True))
                else:
                    self._step(conn, engine.new_order(message, now))
            case CancelOrder(client_order_id=coid):
                self._step(conn, engine.cancel(coid, now))
            case ReplaceOrder(client_order_id=coid, qty=qty, price=price):
                self._step(conn, engine.replace(coid, qty, price, now))
            case OrderStatusRequest(client_order_id=coid, id=request_id):
                order = engine.order(coid)
                if order is not None:
                    self._owners[coid] = conn
                conn.send(
                    OrderStatus(client_order_id=coid, order=None if order is None else order.snapshot(), id=request_id)
                )
            case OpenOrdersRequest(id=request_id):
                conn.send(OpenOrders(orders=[o.snapshot() for o in engine.open_orders()], id=request_id))
            case FillsSinceRequest(after=after, id=request_id):
                conn.send(Fills(fills=engine.fills_since(after), id=request_id))
            case Ping(id=request_id):
                conn.send(Pong(id=request_id))


def _ref(message: ClientMessage) -> str:
    """What an ``Error`` about ``message`` names: its ``id``, else its ``type``."""
    request_id = getattr(message, "id", "")
    return str(request_id) if request_id else str(type(message).__struct_config__.tag)


# -- engine <-> store ---------------------------------------------------------------------------

_SIDES = ("buy", "sell")
_TYPES = ("limit", "market")
_TIFS = ("gtc", "ioc", "fok", "day")
_STATUSES = ("new", "partially_filled", "filled", "canceled", "rejected", "expired")


def _order_to_store(order: Order) -> StoredOrder:
    return StoredOrder(
        client_order_id=order.client_order_id,
        venue_order_id=order.venue_order_id,
        instrument=order.instrument,
        side=order.side,
        order_type=order.order_type,
        tif=order.tif,
        qty=order.qty,
        price=order.price,
        status=order.status,
        cum_qty=order.cum_qty,
        leaves_qty=order.leaves_qty,
        reason=order.reason,
        duplicate_submits=order.duplicate_submits,
        created_ts_ms=order.created_ts_ms,
        priority=order.priority,
    )


def _fill_to_store(fill: Fill) -> StoredFill:
    return StoredFill(
        fill_seq=fill.fill_seq,
        trade_id=fill.trade_id,
        client_order_id=fill.client_order_id,
        qty=fill.qty,
        price=fill.price,
        fee=fill.fee,
        ts_ms=fill.ts_ms,
    )


def _one_of(value: str, allowed: Sequence[str], what: str, stored: StoredOrder, path: str) -> str:
    if value not in allowed:
        raise VenueStoreCorrupt(f"venue store {path}: order {stored.client_order_id} has {what} {value!r}")
    return value


def _order_from_store(stored: StoredOrder, path: str) -> Order:
    return Order(
        client_order_id=stored.client_order_id,
        venue_order_id=stored.venue_order_id,
        instrument=stored.instrument,
        side=cast(Side, _one_of(stored.side, _SIDES, "side", stored, path)),
        order_type=cast(OrderType, _one_of(stored.order_type, _TYPES, "order_type", stored, path)),
        tif=cast(TimeInForce, _one_of(stored.tif, _TIFS, "tif", stored, path)),
        qty=stored.qty,
        price=stored.price,
        status=cast(
            Status,
            _one_of(stored.status, _STATUSES, "status", stored, path),
        ),
        cum_qty=stored.cum_qty,
        leaves_qty=stored.leaves_qty,
        reason=stored.reason,
        duplicate_submits=stored.duplicate_submits,
        created_ts_ms=stored.created_ts_ms,
        priority=stored.priority,
        fills=[
            Fill(
                trade_id=f.trade_id,
                qty=f.qty,
                price=f.price,
                fee=f.fee,
                fill_seq=f.fill_seq,
                ts_ms=f.ts_ms,
                client_order_id=f.client_order_id,
            )
            for f in stored.fills
        ],
    )
