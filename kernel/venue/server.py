"""The paper venue's WebSocket server: ``PaperVenue`` speaks ``docs/venue-protocol.md``.

One asyncio shell around the pure ``MatchingEngine``. Every engine step (an order message, a market
event, a test hook) runs synchronously in the event loop: the engine updates its book, the step is
committed to the venue's own SQLite store (``storage.venue_store``), and only then are its messages
queued, in order, for the connections that must see them. Each connection (``connection``) has one
writer task that sends its queue (and a ``heartbeat`` after ``heartbeat_s`` of silence) and assigns
market data ``seq`` numbers as it sends them. The replay loop is ``replay``, the settings
``settings``, the store rows ``store_rows``.

Conventions this venue chose where the protocol leaves room:

* ``seq`` counts from 1 per subscriber connection, instrument and channel: each connection sees its
  own gapless 1, 2, 3, ... from its ``subscribe`` on (a new connection starts again at 1).
* Every connection acts for one account (``Connection.account``): it sees and touches only that
  account's orders, fills and balances; another account's client order id is ``unknown order``, and
  the same id used by two accounts names two orders.
* The reports of a request go to the connection that sent it, and that connection becomes the
  order's owner (so does a connection of the account that asks for the order's status); reports
  caused by market data or test hooks go to the owner if it is still connected, else to every open
  connection of the order's account (a reconnecting kernel must not miss fills), never to another
  account's.
* With ``VenueConfig.authenticate`` a connection must authenticate (``hello`` with its key, a
  ``challenge``, ``hello`` signed: ``kernel.venue.auth``) before anything else; without it (in-process
  tests, ``--open``) ``hello`` is expected first but not enforced and every connection acts for the
  ``local`` account. A WebSocket ``Origin`` not in ``allowed_origins`` is refused (HTTP 403).
* An order the engine finds invalid (off the tick or lot, ...) is answered with an ``execution`` of
  ``exec: rejected`` (so the kernel can tie it to its order); frames that do not decode, or break the
  input rules (``paper_protocol.decode_client``: size, depth, strict decimals), get ``error``.
* No exception of a step escapes the order that caused it (``kernel.venue.bounds``): a failed request
  is answered ``internal`` and the order it left working canceled; a failed market event still goes out.
* Timestamps: replayed events keep the file's ``ts_ms``; order entry and hooks use the venue clock.
* Limits (``limits``, docs/venue-protocol.md "Limits"): connections over ``max_connections`` are
  refused at the handshake (HTTP 503), one over its account's limit is closed (1013); an order
  request over the account's rate gets ``rate_limited``, a new order over its open orders is
  rejected ``too_many_open_orders``; nothing is executed for either.
* ``open_orders`` and ``fills_since`` are answered one page at a time, read from the store
  (``store_rows.open_orders_page``/``fills_page``): at most ``page_max`` items, a frame of at most
  ``page_max_bytes``.

Market data: ``VenueConfig.data_paths`` are replayed (``kernel.venue.replay``), or a seeded random
walk when no file is given; ``autoplay=False`` leaves market data to the test hooks
(``push_trade``, ``push_quote``), which match exactly like replay. With ``VenueConfig.live`` the
venue follows a live venue's stream instead (``kernel.venue.live``; its feed is journaled in the
``journal`` given), and its instruments' tick and lot rules are settled at ``start()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from decimal import Decimal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.typing import Origin

from kernel.clock import wall_ms
from kernel.paper_defaults import TradingRules
from kernel.paper_protocol import (
    PAGE_MAX,
    PAGE_MAX_BYTES,
    VERSION,
    Balance,
    BalancesReport,
    BalancesRequest,
    CancelOrder,
    ClientMessage,
    Error,
    Execution,
    FillsSinceRequest,
    Hello,
    NewOrder,
    OpenOrdersRequest,
    OrderStatus,
    OrderStatusRequest,
    Ping,
    Pong,
    ProtocolError,
    ReplaceOrder,
    Side,
    Subscribe,
    Subscribed,
    Welcome,
    decode_client,
)
from kernel.venue import marketdata
from kernel.venue.auth import Gate
from kernel.venue.connection import LOCAL_ACCOUNT, Channel, Connection
from kernel.venue.errors import OrderChangeRefused, UnknownInstrument, UnknownOrder, VenueStateError
from kernel.venue.limits import VenueLimits
from kernel.venue.live import LiveMarket, venue_rules
from kernel.venue.marketdata import MarketEvent, MarketQuote, MarketTrade
from kernel.venue.matching import MatchingEngine
from kernel.venue.replay import replay
from kernel.venue.routing import Router
from kernel.venue.settings import VenueConfig
from kernel.venue.store_rows import (
    fill_to_store,
    fills_page,
    open_orders_page,
    order_from_store,
    order_to_store,
)
from storage.journal import Journal
from storage.venue_store import Counters, VenueState, VenueStore, VenueStoreError

__all__ = ["PaperVenue", "VenueConfig", "wall_clock_ms"]

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 2**20
"""Largest frame the venue reads (``max_size``; a larger one closes the connection, 1009). Frames over
``paper_protocol.CLIENT_MAX_FRAME_BYTES`` (64 KiB, an order is a few hundred bytes) get an ``error``."""
MAX_INCOMING_FRAMES = 32
"""Frames buffered per connection before websockets stops reading the socket (``max_queue``)."""
CLOSE_TIMEOUT_S = 2.0
UNLIMITED = Decimal("Infinity")
"""The depth the engine takes a live quote without sizes to have at its touch."""

wall_clock_ms = wall_ms
"""The venue's default clock: milliseconds since the Unix epoch (``kernel.clock.wall_ms``)."""


class PaperVenue:
    """A simulated exchange on a loopback WebSocket, its state kept in ``store_path``.

    ``start()`` opens the store (rebuilding the order book from it), binds and starts the replay
    (or, with ``config.live``, the live market's feed, journaled in ``journal`` as ``live_entity``);
    ``stop()`` undoes that in reverse order. Also usable as ``async with PaperVenue(...) as venue``.
    Raises ``VenueStoreError`` (store unusable), ``MarketDataError`` (bad data file),
    ``LiveMarketError`` (rules not fetched) and ``VenueStateError`` (live without a journal) from
    ``start()``.
    """

    def __init__(
        self,
        store_path: str,
        config: VenueConfig | None = None,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        journal: Journal | None = None,
        live_entity: str = "market",
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
        self._journal = journal
        # None: every connection is "local"
        self.gate = Gate(store_path, self.config.hello_timeout_s) if self.config.authenticate else None
        self._live_entity = live_entity
        self.live: LiveMarket | None = None
        """The live market followed (``config.live``), once started."""
        self.rules: dict[str, TradingRules] = dict(self.config.rules)
        """Each instrument's tick and lot size the venue enforces (settled at ``start()``)."""
        self._connections: set[Connection] = set()
        self._router = Router(self._connections)
        self.limits = VenueLimits(self.config)  # connections, open orders, order rate (kernel.venue.limits)
        self._pushed = 0
        self.on_request: Callable[[ClientMessage], None] | None = None
        """Called with each valid client message as it arrives, before it is served (tests, benchmarks)."""
        self.on_connect: Callable[[Connection], None] | None = None  # test hook: given each new connection
        self.port, self.host = 0, ""
        # Items per open_orders/fills_since page (a larger limit is clamped), and its frame's byte bound.
        self.page_max, self.page_max_bytes = PAGE_MAX, PAGE_MAX_BYTES

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
            raise VenueStateError("the venue is already running")
        cfg = self.config
        if cfg.live is not None and self._journal is None:
            raise VenueStateError("a venue following a live market needs a journal for its feed")
        if cfg.live is not None:
            self.instruments = tuple(cfg.instruments) or cfg.live.instruments
            self.rules = {**await venue_rules(cfg.live), **cfg.rules}
        elif cfg.instruments:
            self.instruments = tuple(cfg.instruments)
        elif cfg.data_paths:
            self.instruments = marketdata.instruments(cfg.data_paths)  # also validates every row
        else:
            self.instruments = (marketdata.BINANCE_INSTRUMENT,)
        store = VenueStore.open(self.store_path)
        try:
            self._store = store
            self._rebuild(store.load())
            self._commit()  # orders the engine expired at load (numbers off the bounds: an older version's)
            self.session = f"s-{store.session}"
            self._server = await serve(
                self._serve,
                host,
                port,
                origins=[None, *(Origin(o) for o in cfg.allowed_origins)],  # None: no Origin (not a browser)
                process_request=self.limits.admit,
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
        if cfg.live is not None and cfg.autoplay:
            assert self._journal is not None
            self.live = LiveMarket(cfg.live, self._journal, self._live_entity, self._market, clock=self._clock)
            self._engine.depth = self.live.book
            self._replay_task = asyncio.create_task(self.live.run(), name="venue-live-market")
        elif cfg.autoplay:
            self._replay_task = asyncio.create_task(
                replay(cfg, self._clock, self._market, self._drain), name="venue-replay"
            )
        log.info("paper venue listening on %s (session %s)", self.url, self.session)
        if self.live is not None:
            log.info(
                "paper venue following %s market data at %s for %s",
                cfg.live.source if cfg.live else "",
                self.live.source.url,
                ", ".join(self.instruments),
            )

    async def stop(self) -> None:
        """Stop replay (the live feed ends ``closed``), close every connection (1001), stop listening,
        close the store. Idempotent."""
        if self._replay_task is not None:
            if self.live is not None:
                self.live.stop()  # the feed closes its socket and journals ``closed`` by itself
            else:
                self._replay_task.cancel()
            try:
                await self._replay_task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("the venue's market data ended with an error")
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

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _rebuild(self, state: VenueState) -> None:
        self._engine = MatchingEngine(
            self.config.engine_config(self.instruments, self.rules),
            next_venue_order=state.counters.next_venue_order,
            next_fill_seq=state.counters.next_fill_seq,
            next_priority=state.counters.next_priority,
        )
        self._engine.restore(order_from_store(stored, self.store_path) for stored in state.orders)
        self._engine.ledger.restore(state.balances)
        self.limits.reset(self._engine.orders())
        if self.live is not None:
            self._engine.depth = self.live.book

    # -- test hooks -------------------------------------------------------------------------

    async def push_trade(
        self, instrument: str, price: Decimal, qty: Decimal, taker_side: Side, ts_ms: int | None = None
    ) -> list[Execution]:
        """Test hook: a market trade, broadcast and matched exactly like replayed data.

        Returns the execution reports it caused (also sent to the orders' owners).
        """
        self._pushed += 1
        event = MarketTrade(
            instrument=_known(self.instruments, instrument),
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
            instrument=_known(self.instruments, instrument),
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

    async def unsolicited_cancel(
        self, client_order_id: str, reason: str = "unsolicited", account: str = LOCAL_ACCOUNT
    ) -> list[Execution]:
        """Test hook: cancel ``account``'s working order on the venue's initiative.

        Raises ``UnknownOrder`` (a ``KeyError``) for an unknown order and ``OrderChangeRefused`` (a
        ``ValueError``) for one that is done.
        """
        order = self._engine.order(client_order_id, account)
        if order is None:
            raise UnknownOrder(f"no order {client_order_id!r}")
        if order.done:
            raise OrderChangeRefused(f"order {client_order_id!r} is already {order.status}")
        return self._step(None, self._engine.cancel(client_order_id, self._clock(), reason=reason, account=account))

    async def restate(
        self,
        client_order_id: str,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        reason: str = "restated by venue",
        account: str = LOCAL_ACCOUNT,
    ) -> list[Execution]:
        """Test hook: change ``account``'s working order on the venue's initiative (exec ``restated``).

        Raises ``UnknownOrder`` (a ``KeyError``) for an unknown order, ``OrderChangeRefused`` (a
        ``ValueError``) when the change is impossible.
        """
        return self._step(None, self._engine.restate(client_order_id, self._clock(), qty, price, reason, account))

    async def disconnect_all(self) -> None:
        """Test hook: drop every client connection abruptly (no close handshake)."""
        for conn in list(self._connections):
            conn.abort()

    # -- engine steps -----------------------------------------------------------------------

    def _commit(self) -> None:
        """Persist what the engine changed; on failure put the engine back to what is on disk."""
        store = self._store
        if store is None:
            raise VenueStateError("the venue is not running")
        changes = self._engine.take_changes()
        self.limits.track(changes.orders)
        if not changes.orders and not changes.fills:
            return
        try:
            store.save_step(
                [order_to_store(o) for o in changes.orders],
                [fill_to_store(f, account) for f, account in zip(changes.fills, changes.fill_accounts, strict=True)],
                Counters(changes.next_venue_order, changes.next_fill_seq, changes.next_priority),
                [(account, asset, amount) for (account, asset), amount in changes.balances.items()],
            )
            self._router.moved(account for account, _ in changes.balances)
        except VenueStoreError:
            log.exception("venue store write failed; reloading the book from %s", self.store_path)
            self._rebuild(store.load())
            raise

    def _step(self, requester: Connection | None, reports: list[Execution]) -> list[Execution]:
        """Commit, then route each report to the requester (which becomes owner) or the owner."""
        self._commit()
        self._route(requester, reports)
        return reports

    def _route(self, requester: Connection | None, reports: list[Execution]) -> None:
        self._router.route(requester, reports, self._engine.account_of)
        self._router.push_balances(lambda account: balances(self._engine, account, self.instruments))

    def _market(self, event: MarketEvent) -> list[Execution]:
        """One market event: match, commit, broadcast it, then send the reports it caused."""
        channel: Channel = "trades" if isinstance(event, MarketTrade) else "quotes"
        try:
            reports = _match(self._engine, event)
        except Exception:  # a venue bug outside any one order's fill: the event still goes out
            log.exception("venue failed to match %r; it goes out unmatched", event)
            reports = []
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

    # -- connections ------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        conn = Connection(ws, self.config.heartbeat_s, self._clock)
        if self.on_connect is not None:
            self.on_connect(conn)
        self._connections.add(conn)
        unheard = self.gate.watch(conn) if self.gate is not None else None  # a silent client is closed
        try:
            await conn.run(self._on_frame)
        finally:
            self._connections.discard(conn)
            self.limits.release(conn)
            if unheard is not None:
                unheard.cancel()

    async def _on_frame(self, conn: Connection, frame: str | bytes) -> None:
        try:
            message = decode_client(frame)
        except ProtocolError as exc:
            conn.send(exc.reply())
            return
        if self.gate is not None and not await self.gate.admit(conn, message):
            return  # refused: not authenticated (kernel.venue.auth)
        if self.on_request is not None:
            self.on_request(message)
        try:
            await self._dispatch(conn, message)
            await self.limits.settle(conn)  # counted against its account from its first frame on
        except Exception as exc:  # a venue bug must not end the session: answer, end its order, carry on
            conn.send(_failure(message, exc))
            with contextlib.suppress(VenueStoreError):  # logged by _commit
                self._step(conn, _contained(self._engine, message, exc, self._clock(), conn.account))

    async def _dispatch(self, conn: Connection, message: ClientMessage) -> None:
        if isinstance(message, NewOrder | CancelOrder | ReplaceOrder) and self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)  # simulated venue latency
        now = self._clock()
        engine = self._engine
        account = conn.account
        if (
            refusal := self.limits.refuse(conn.account, message, now, lambda coid: engine.order(coid, account))
        ) is not None:
            conn.send(refusal)  # over the account's order rate or open orders: nothing executed
            return
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
                    conn.send(Welcome(VERSION, self.session, list(self.instruments), account=conn.account))
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
                elif engine.order(coid, account) is not None:
                    snapshot = engine.duplicate(coid, account)
                    self._commit()
                    self._router.own(account, coid, conn)
                    conn.send(OrderStatus(client_order_id=coid, order=snapshot, duplicate=True))
                else:
                    self._step(conn, engine.new_order(message, now, account))
            case CancelOrder(client_order_id=coid):
                self._step(conn, engine.cancel(coid, now, account=account))
            case ReplaceOrder(client_order_id=coid, qty=qty, price=price):
                self._step(conn, engine.replace(coid, qty, price, now, account))
            case OrderStatusRequest(client_order_id=coid, id=request_id):
                order = engine.order(coid, account)
                if order is not None:
                    self._router.own(account, coid, conn)
                conn.send(
                    OrderStatus(client_order_id=coid, order=None if order is None else order.snapshot(), id=request_id)
                )
            case OpenOrdersRequest():
                store = _running(self._store)
                conn.send(open_orders_page(store, message, self.page_max, self.page_max_bytes, account))
            case FillsSinceRequest():
                conn.send(fills_page(_running(self._store), message, self.page_max, self.page_max_bytes, account))
            case BalancesRequest(id=request_id):
                self._router.watch(conn)
                conn.send(BalancesReport(balances=balances(engine, account, self.instruments), id=request_id))
            case Ping(id=request_id):
                conn.send(Pong(id=request_id))


def balances(engine: MatchingEngine, account: str, instruments: tuple[str, ...]) -> list[Balance]:
    """``account``'s balances: every asset of ``instruments`` and any it holds."""
    rows = engine.ledger.report(account, instruments)
    return [Balance(asset=asset, total=total, available=available) for asset, total, available in rows]


def _match(engine: MatchingEngine, event: MarketEvent) -> list[Execution]:
    if isinstance(event, MarketTrade):
        return engine.on_trade(event.instrument, event.price, event.qty, event.ts_ms, event.taker_side)
    bid_qty, ask_qty = (event.bid_qty, event.ask_qty) if event.sizes_known else (UNLIMITED, UNLIMITED)
    return engine.on_quote(event.instrument, event.bid, bid_qty, event.ask, ask_qty, event.ts_ms)


def _failure(message: ClientMessage, exc: Exception) -> Error:
    """The ``internal`` error answering a request the venue failed to serve (a bug: logged with its traceback)."""
    if isinstance(exc, VenueStoreError):
        return Error(code="internal", message=f"the venue could not record the request: {exc}", ref=_ref(message))
    log.error("venue failed to serve %r", message, exc_info=exc)
    return Error(code="internal", message=f"the venue failed to serve the request: {exc}", ref=_ref(message))


def _contained(
    engine: MatchingEngine, message: ClientMessage, exc: Exception, now: int, account: str
) -> list[Execution]:
    """After a failed ``new_order``/``replace_order``: cancel the order it left working (reason ``venue
    error: <exception>``), so a half-done step never rests in the book. Nothing after a store failure
    (the engine is back to what is on disk) or for other requests."""
    if not isinstance(message, NewOrder | ReplaceOrder) or isinstance(exc, VenueStoreError):
        return []
    order = engine.order(message.client_order_id, account)
    if order is None or order.done:
        return []
    return engine.cancel(order.client_order_id, now, reason=f"venue error: {type(exc).__name__}", account=account)


def _known(instruments: tuple[str, ...], instrument: str) -> str:
    if instruments and instrument not in instruments:
        raise UnknownInstrument(f"unknown instrument {instrument!r}; the venue trades {', '.join(instruments)}")
    return instrument


def _running(store: VenueStore | None) -> VenueStore:
    if store is None:
        raise VenueStateError("the venue is not running")
    return store


def _ref(message: ClientMessage) -> str:
    """What an ``Error`` about ``message`` names: its ``id``, else its ``type``."""
    request_id = getattr(message, "id", "")
    return str(request_id) if request_id else str(type(message).__struct_config__.tag)
