"""The venue-neutral market-data feed client: one websocket, driven by the ``feed`` machine.

``FeedClient`` owns the socket, the clock and the per-message bookkeeping; ``machines.feed`` owns
every decision; a ``MarketDataSource`` (``kernel.feed.source``; by default the paper venue's,
``kernel.feed.paper_source.PaperMarketData``) owns everything venue-specific: the URL, the
greeting, the subscribe frames and their answer, decoding, and the sync procedure. Each machine transition is
journaled (machine ``feed``) and committed before the client acts on it; market data itself is
never a transition.

One connection attempt::

    connect ─► connected ─► source.greet (paper: hello/welcome) ─► source.subscribe/answer
      ─► subscribed ─► snapshot_applied per instrument the source's sync says is whole
         (the paper venue: all of them, its ``seq`` restarts at 1 per subscription) ─► streaming

* Reconnects: any close (abrupt, any close code, a ping timeout, a frame over ``max_size``), a
  refused handshake (HTTP 429/503 ...) or an open timeout fires ``disconnected {code, reason}``;
  the client then sleeps until the machine's ``retry`` timer and fires ``retry_due``. The delay
  always comes from the machine (whose attempt count survives a connection that opens and drops at
  once); ``websockets``' own reconnect iterator is not used. ``retry_now()`` (the kernel: its order
  session to the same venue is up again) cuts the wait short with ``venue_back``.
* Fatal (``fatal`` → ``failed``, ``run()`` returns): an invalid URL, HTTP 401/403/404, and a
  fatal ``SessionFailed`` from the source (the paper venue answering ``hello`` or ``subscribe``
  with ``unsupported_version`` or ``invalid``); any other ``SessionFailed`` is a drop (1002).
* Staleness: the client keeps each instrument's last data time (a trade, a quote, or a venue
  heartbeat, which freshens every instrument) and arms one timer (``kernel.feed.watchdog``, armed
  once, not per frame) at ``next_timer(...)``; when it fires, ``stale_timeout`` for each of
  ``stale_instruments(...)``; data for a stale instrument fires ``data_resumed``.
* Gaps (the source's ``StreamSync``): a ``Gap`` fires ``gap_detected`` for that instrument only
  and sends the source's ``resync_frames``; ``Resynced`` fires ``snapshot_applied`` (the paper
  venue: the next frame that follows on in sequence, see ``PaperSync``). Until then that
  instrument's events are not passed on; duplicates and late frames (``Stale``) are dropped as
  anomalies.
* Snapshots fetched out of band (a ``SnapshotSource``, Binance's REST depth): after ``subscribed``
  the client asks ``source.snapshot`` for every instrument not whole yet, and again after each
  ``Gap``, in tasks (``snapshots.SnapshotTasks``) while it keeps reading the socket; each answer
  goes through the sync like a frame. A ``SnapshotFailed`` drops the connection (close 1011).
* Events that arrive before the subscription is confirmed (a Kraken book snapshot between two
  answers) are kept and handled right after ``subscribed``; a source that subscribes in its URL
  (Binance combined streams) sends nothing and is subscribed as soon as connected.
* A sync that keeps books (``KeepsBooks``) says what reaches ``on_event`` (``passed_on``: trades,
  a quote each time a book's top changes); ``book(instrument)`` reads the kept book.
* A ``VenueNotice`` in ``RECONNECT_NOTICES`` (Binance ``serverShutdown``) closes and reconnects.
* Bad frames (``DecodeError``) are counted, kept in ``anomalies`` with their sample, logged,
  journaled as anomalies and dropped: never fatal.
* A journal that cannot commit does not stop the feed (see ``_commit``); other journal errors do.

Listeners: ``on_event(event)`` gets each market event of a usable instrument, ``on_state(state)``
each state change, ``on_frame(frame, t_ns)`` each raw frame received with its ``time.time_ns()``,
``on_rest(path, status, body, t_ns)`` each REST answer of a ``SnapshotSource`` that has an
``on_rest`` hook (``market watch --record``). A listener that raises is logged and counted; the feed carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from kernel.clock import monotonic_ms
from kernel.feed.book import Gap, OrderBook, Stale
from kernel.feed.connect import (
    ABNORMAL_CLOSURE,
    FATAL_HTTP_STATUSES,
    PROTOCOL_ERROR,
    Dropped,
    Fatal,
    close_of,
    open_connection,
)
from kernel.feed.errors import FeedMisuse
from kernel.feed.events import (
    BookSnapshot,
    BookUpdate,
    DecodeError,
    FeedEvent,
    HeartbeatEvent,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    VenueNotice,
)
from kernel.feed.paper_source import FATAL_VENUE_ERRORS, PaperMarketData
from kernel.feed.snapshots import SnapshotTasks
from kernel.feed.source import (
    RECONNECT_NOTICES,
    Channel,
    KeepsBooks,
    MarketDataSource,
    RestTap,
    Resynced,
    SessionFailed,
    SnapshotFailed,
    SnapshotSource,
    StreamSync,
    SyncedEvent,
)
from kernel.feed.watchdog import Watchdog
from kernel.log_fields import transition_fields
from kernel.net import redact_url
from kernel.paper_session import SocketOptions
from kernel.tick_probe import PROBE, TickProbe
from machines.base import Entity
from machines.feed import FEED, FeedState, next_timer, stale_instruments, usable_instruments
from storage.errors import JournalWriteError
from storage.journal import Journal

log = logging.getLogger(__name__)

MAX_ANOMALIES: Final = 100
"""How many recent anomalies ``FeedClient.anomalies`` keeps."""
ANOMALY_BATCH: Final = 100
"""Anomalies buffered before the feed commits them (it also commits at least once a second)."""
DEFAULT_MAX_SIZE: Final = 2**20
"""The largest frame accepted unless the source's ``max_frame`` (or ``max_size=``) says more."""
MAX_EARLY_EVENTS: Final = 10_000
"""Events kept from before the subscription is confirmed (handled right after it)."""
SNAPSHOT_FAILED: Final = 1011
"""The close code the client uses when a snapshot could not be fetched."""
GOING_AWAY: Final = 1001
"""The close code the client uses when the venue announced it is going away (``serverShutdown``)."""

__all__ = [
    "ABNORMAL_CLOSURE",
    "FATAL_HTTP_STATUSES",
    "FATAL_VENUE_ERRORS",
    "PROTOCOL_ERROR",
    "Anomaly",
    "Channel",
    "FeedClient",
    "monotonic_ms",
]

_MARKET_DATA: Final = frozenset({TradeEvent, QuoteEvent, BookSnapshot, BookUpdate})
"""The events that carry an instrument's market data (``_on_market``'s common case)."""

AnomalyKind = Literal["decode_error", "duplicate", "unknown_instrument", "venue_notice", "listener_error"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something wrong in the stream that was dropped, not fatal: what, why, and a sample of it."""

    kind: AnomalyKind
    reason: str
    sample: str
    now_ms: int


class FeedClient:
    """Market data from ``source`` (default: the paper venue at ``url``) for ``instruments``, as feed
    entity ``entity_id``.

    The constructor creates the entity in ``journal`` (with ``policy``: the ``FEED.create`` fields
    such as ``stale_after_ms``), fires ``connect`` and commits. ``run()`` then connects, streams and
    reconnects until ``stop()`` (the feed ends ``closed``) or a fatal error (``failed``).
    Raises ``InvalidData`` (bad url scheme, instruments or policy), ``FeedMisuse`` (a ``source``
    whose ``url`` is not ``url``) and journal errors.
    """

    def __init__(
        self,
        url: str,
        instruments: Iterable[str],
        journal: Journal,
        entity_id: str,
        policy: Mapping[str, int] | None = None,
        *,
        now_ms: Callable[[], int] = monotonic_ms,
        on_event: Callable[[FeedEvent], None] | None = None,
        on_state: Callable[[str], None] | None = None,
        channels: Iterable[Channel] = ("trades", "quotes"),
        client_name: str = "tradekernel-feed",
        open_timeout: float = 5.0,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 10.0,
        close_timeout: float = 2.0,
        max_size: int | None = None,
        max_queue: int = 64,
        source: MarketDataSource | None = None,
        on_frame: Callable[[str | bytes, int], None] | None = None,
        on_rest: RestTap | None = None,
    ) -> None:
        if source is not None and source.url != url:
            raise FeedMisuse(f"the source connects to {redact_url(source.url)!r}, not {redact_url(url)!r}")
        self.url = url
        self.source: MarketDataSource = source or PaperMarketData(url, client_name=client_name)
        self.instruments = list(instruments)
        self.channels: list[Channel] = list(channels)
        self.client_name = client_name
        self.open_timeout = open_timeout
        if max_size is None:  # a venue may send larger frames than 1 MiB (a Coinbase level2 snapshot)
            max_size = max(getattr(self.source, "max_frame", 0), DEFAULT_MAX_SIZE)
        self.socket = SocketOptions(open_timeout, ping_interval, ping_timeout, close_timeout, max_size, max_queue)
        self.on_event = on_event
        self.on_state = on_state
        self.on_frame = on_frame
        if on_rest is not None and isinstance(self.source, SnapshotSource) and hasattr(self.source, "on_rest"):
            self.source.on_rest = on_rest
        self._snapshots: SnapshotTasks | None = None
        self.anomalies: deque[Anomaly] = deque(maxlen=MAX_ANOMALIES)
        self._anomalies_committed_ms = -(10**12)
        self.counts: Counter[str] = Counter()
        self._journal = journal
        self._now_ms = now_ms
        self._sync: StreamSync = self.source.new_sync()
        self._books = self._sync if isinstance(self._sync, KeepsBooks) else None
        self._last_data_ms: dict[str, int] = {}
        self._watchdog: Watchdog | None = None  # the stale check's one timer, while streaming
        self._usable: frozenset[str] | None = None  # ``usable_instruments``, until the next transition
        self._subscribed = frozenset(self.instruments)
        self._main: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._changed, self._venue_back = asyncio.Event(), asyncio.Event()
        self._feed, created = FEED.create(
            entity_id, url=redact_url(url), instruments=self.instruments, **dict(policy or {})
        )
        journal.append(created, self._feed)
        self._fire("connect")

    # -- public -------------------------------------------------------------------------------

    @property
    def feed(self) -> Entity:
        """The feed entity (read it; only this client fires triggers on it)."""
        return self._feed

    @property
    def state(self) -> str:
        """The feed's current state name."""
        return self._feed.state

    async def run(self) -> None:
        """Connect and stream, reconnecting as the machine says, until ``stop()`` or ``failed``.

        Returns once the feed is ``closed`` (after ``stop()``) or ``failed``. Cancelling ``run()``
        stops the feed too, then re-raises. Journal errors other than a failed commit propagate.
        """
        if self._main is not None:
            raise FeedMisuse("run() is already running or has run")
        self._main = asyncio.create_task(self._loop(), name=f"feed-{self._feed.entity_id}")
        if self._stop_requested:
            self._main.cancel()
        try:
            await self._main
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._stop_requested or (current is not None and current.cancelling()):
                self._close("cancelled")
                raise
        self._close("stopped")

    def stop(self) -> None:
        """Ask ``run()`` to close the connection and leave the feed ``closed``. Idempotent."""
        self._stop_requested = True
        if self._main is not None and not self._main.done():
            self._main.cancel()

    def retry_now(self) -> None:
        """The venue answers again: a feed waiting out a backoff reconnects now (``venue_back``)."""
        self._venue_back.set()

    async def wait_until_state(self, *states: str) -> str:
        """Wait until the feed is in one of ``states``; return it (bound it with ``asyncio.timeout``)."""
        while self._feed.state not in states:
            await self._changed.wait()
        return self._feed.state

    async def wait_until_streaming(self) -> None:
        """Wait until the feed is ``streaming``."""
        await self.wait_until_state(FeedState.streaming)

    def book(self, instrument: str) -> OrderBook | None:
        """``instrument``'s order book as the source keeps it (``None`` while not whole, or no book kept)."""
        return None if self._books is None else self._books.book(instrument)

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while self._feed.state != FeedState.failed:
            if self._feed.state == FeedState.backoff:
                await self._wait_for_retry()
            try:
                await self._session()
            except Fatal as exc:
                log.error("feed %s failed: %s", self._feed.entity_id, exc.reason)
                self._fire("fatal", reason=exc.reason, **({} if exc.code is None else {"code": exc.code}))
            except Dropped as exc:
                log.warning("feed %s disconnected: %s %s", self._feed.entity_id, exc.code, exc.reason)
                self._fire("disconnected", code=exc.code, reason=exc.reason)

    async def _wait_for_retry(self) -> None:
        due = self._now_ms() if (timer := next_timer(self._feed)) is None else timer[1]
        self._venue_back.clear()  # only news from after this drop counts
        while (now := self._now_ms()) < due:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout((due - now) / 1000):
                    await self._venue_back.wait()
            if self._venue_back.is_set():  # the state change is logged by ``_fire``
                self._fire("venue_back")
                return
        self._fire("retry_due")

    async def _session(self) -> None:
        """One connection: open, handshake, stream. Always ends by raising ``Dropped`` or ``Fatal``."""
        ws = await open_connection(self.source.url, self.socket)
        if isinstance(self.source, SnapshotSource):
            self._snapshots = SnapshotTasks(self.source, _delivery(self, ws), _snapshot_failed(self, ws))
        try:
            self._fire("connected")
            try:
                early = await self._handshake(ws)
            except SessionFailed as exc:
                if exc.fatal:
                    raise Fatal(exc.reason) from None
                raise Dropped(PROTOCOL_ERROR, exc.reason) from None
            await self._handle(ws, early)
            await self._stream(ws)
        except ConnectionClosed as exc:
            code, reason = close_of(exc)
            raise Dropped(code, reason) from None
        except Dropped as exc:
            await ws.close(exc.code, exc.close_reason)  # a close reason is capped at 123 bytes: keep it short
            raise
        finally:
            if self._snapshots is not None:
                await self._snapshots.close()
                self._snapshots = None
            await ws.close()

    async def _handle(self, ws: ClientConnection, events: Iterable[FeedEvent]) -> None:
        for event in events:
            for reply in self._on_market(event):  # almost always none
                await ws.send(reply)

    async def _handshake(self, ws: ClientConnection) -> list[FeedEvent]:
        """The source's greeting, then its subscription; ``SessionFailed`` or ``Dropped`` if refused.

        Returns the events received before the subscription was confirmed (to handle next)."""
        await self.source.greet(ws, timeout=self.open_timeout, on_decode_error=self._decode_error)
        frames = self.source.subscribe(self.instruments, self.channels, self._feed.entity_id)
        for frame in frames:
            await ws.send(frame)
        early: deque[FeedEvent] = deque(maxlen=MAX_EARLY_EVENTS)
        try:
            async with asyncio.timeout(self.open_timeout):
                confirmed = not frames  # subscribed by the URL itself
                while not confirmed:
                    for event in self._decode(await ws.recv()):
                        if confirmed or not self.source.check_subscribed(event):
                            early.append(event)
                        else:
                            confirmed = True
        except TimeoutError:
            raise Dropped(PROTOCOL_ERROR, "no answer to subscribe within open_timeout") from None
        self._sync = self.source.new_sync()
        self._books = self._sync if isinstance(self._sync, KeepsBooks) else None
        self._last_data_ms = {}  # staleness counts from the subscription
        self._fire("subscribed")
        for instrument in self._sync.on_subscribed(self.instruments):
            if instrument in self._feed.data["awaiting_snapshot"]:
                self._fire("snapshot_applied", instrument=instrument)
        if self._snapshots is not None:
            for instrument in self._feed.data["awaiting_snapshot"]:
                self._snapshots.request(instrument)
        return [event for event in early if not isinstance(event, SubscriptionAck)]

    async def _stream(self, ws: ClientConnection) -> None:
        """Read frames forever; one watchdog timer wakes the loop for the stale check when it is due.

        The common frame (no frame listener, no probe) takes the shortest way: decode, then each
        event straight to ``_on_market``; no coroutine per frame but ``recv()``.
        """
        self._watchdog = watchdog = Watchdog(lambda: _due_ms(next_timer(self._feed, self._last_data_ms)), self._now_ms)
        decode, on_market = self.source.decode, self._on_market
        try:
            while True:
                if watchdog.due:
                    watchdog.due = False
                    for instrument in stale_instruments(self._feed, self._last_data_ms, self._now_ms()):
                        self._fire("stale_timeout", instrument=instrument)
                    watchdog.arm()
                    continue
                watchdog.waiting = True
                try:
                    frame = await ws.recv()  # cancelling recv() loses nothing (websockets >= 14)
                except asyncio.CancelledError:
                    if watchdog.took_back():  # its wake-up, and nobody else's: check the deadline
                        continue
                    raise
                finally:
                    watchdog.waiting = False
                if self.on_frame is not None or PROBE is not None:  # stamped for a benchmark (kernel.tick_probe)
                    await (self._handle(ws, self._decode(frame)) if PROBE is None else _probed(PROBE, self, ws, frame))
                    continue
                try:
                    events = decode(frame)
                except DecodeError as exc:
                    self._decode_error(exc)
                    continue
                for event in events:
                    if replies := on_market(event):  # almost always none
                        for reply in replies:
                            await ws.send(reply)
        finally:
            watchdog.close()
            self._watchdog = None

    # -- frames -------------------------------------------------------------------------------

    def _decode(self, frame: str | bytes) -> list[FeedEvent]:
        if self.on_frame is not None:
            try:
                self.on_frame(frame, time.time_ns())
            except Exception as exc:  # a recorder that fails must not take the feed down
                log.exception("feed %s: frame listener failed", self._feed.entity_id)
                self._anomaly("listener_error", repr(exc)[:200], "on_frame")
        try:
            return self.source.decode(frame)
        except DecodeError as exc:
            self._decode_error(exc)
            return []

    def _decode_error(self, error: DecodeError) -> None:
        self._anomaly("decode_error", error.reason, error.sample)

    def _on_market(self, event: FeedEvent) -> Sequence[str]:
        """Handle one decoded event; return the frames to send (a resync request after a gap)."""
        now = self._now_ms()
        if type(event) in _MARKET_DATA:  # the common case first: events are final classes
            market: TradeEvent | QuoteEvent | BookSnapshot | BookUpdate = event  # type: ignore[assignment]
            instrument = market.instrument
            if instrument not in self._subscribed:
                self._anomaly("unknown_instrument", f"data for {instrument!r}, not subscribed", repr(event)[:200])
                return ()
            self._last_data_ms[instrument] = now
            if instrument in self._feed.data["stale_instruments"]:
                self._fire("data_resumed", instrument=instrument)
            return self._synced(instrument, market)
        if isinstance(event, HeartbeatEvent):
            if event.instrument is None:  # the venue is alive: every instrument is fresh
                for instrument in self.instruments:
                    self._fresh(instrument, now)
            elif event.instrument in self._subscribed:
                self._fresh(event.instrument, now)
                return self._synced(event.instrument, event)
        elif isinstance(event, VenueNotice) and event.kind in RECONNECT_NOTICES:
            log.info("feed %s: the venue announced %s: reconnecting", self._feed.entity_id, event.kind)
            raise Dropped(GOING_AWAY, f"venue notice: {event.kind}", "reconnect")
        elif isinstance(event, VenueNotice):
            self._anomaly("venue_notice", event.kind, event.detail)
        # a repeated subscription ack, order-entry answers: nothing to do
        return ()

    def _synced(self, instrument: str, event: SyncedEvent) -> Sequence[str]:
        """Check ``event`` with the sync procedure, pass market data on if usable; return frames to send."""
        result = self._sync.on_event(event)
        if result is not None:
            if isinstance(result, Stale):
                self._anomaly(
                    "duplicate", f"{instrument} {result.channel} seq {result.received} after {result.last}", ""
                )
                return ()
            if isinstance(result, Gap):
                log.warning("feed %s: gap on %s %s: expected %d, got %d", self._feed.entity_id, *_gap_fields(result))
                self._fire("gap_detected", instrument=instrument, expected=result.expected, received=result.received)
                if self._snapshots is not None:
                    self._snapshots.request(instrument)
                return self._sync.resync_frames(instrument)
            if isinstance(result, Resynced) and instrument in self._feed.data["awaiting_snapshot"]:
                before = usable_instruments(self._feed)
                self._fire("snapshot_applied", instrument=instrument)
                if self._books is not None:  # books kept while the feed synced: tell their tops now
                    for usable in usable_instruments(self._feed):
                        if usable not in before:
                            for quote in self._books.top_quote(usable):
                                self._tell(self.on_event, quote)
        if self._usable is None:
            self._usable = frozenset(usable_instruments(self._feed))
        if instrument in self._usable and not isinstance(event, HeartbeatEvent):
            if self._books is not None:
                for passed in self._books.passed_on(event):
                    self._tell(self.on_event, passed)
            elif self.on_event is not None:
                try:  # ``_tell``, inline: once per message
                    self.on_event(event)
                except Exception as exc:  # a strategy bug must not take the feed down
                    log.exception("feed %s: listener failed", self._feed.entity_id)
                    self._anomaly("listener_error", repr(exc)[:200], repr(event)[:200])
        return ()

    def _fresh(self, instrument: str, now: int) -> None:
        self._last_data_ms[instrument] = now
        if instrument in self._feed.data["stale_instruments"]:
            self._fire("data_resumed", instrument=instrument)

    # -- effects ------------------------------------------------------------------------------

    def _fire(self, trigger: str, **data: Any) -> None:
        """Fire ``trigger``, journal and commit it; tell the listener when the state changed."""
        before = self._feed.state
        transition = self._journal.fire(FEED, self._feed, trigger, now_ms=self._now_ms(), **data)
        self._usable = None
        self._commit()
        if self._watchdog is not None:  # the deadlines may have moved earlier (data resumed ...)
            self._watchdog.arm()
        if self._feed.state != before:
            fields = transition_fields(transition, self._journal.run_id)
            log.info("feed %s: %s -> %s (%s)", self._feed.entity_id, before, self._feed.state, trigger, extra=fields)
            self._changed.set()
            self._changed = asyncio.Event()
            self._tell(self.on_state, self._feed.state)

    def _close(self, reason: str) -> None:
        if self._feed.state in (FeedState.closed, FeedState.failed):
            return
        self._fire("stop", reason=reason)

    def _anomaly(self, kind: AnomalyKind, reason: str, sample: str) -> None:
        now = self._now_ms()
        self.counts[kind] += 1
        self.anomalies.append(Anomaly(kind, reason, sample, now))
        log.warning("feed %s: %s dropped: %s (sample %r)", self._feed.entity_id, kind, reason, sample)
        # Journaled as an anomaly with its sample. Committed at most once a second (or every
        # ANOMALY_BATCH), so a flood of bad frames cannot become a flood of fsyncs.
        self._journal.record_anomaly(f"feed:{self._feed.entity_id}", kind, reason, sample)
        if self._journal.pending_anomalies >= ANOMALY_BATCH or now - self._anomalies_committed_ms >= 1000:
            self._commit()
            self._anomalies_committed_ms = now

    def _commit(self) -> None:
        """Commit the journal. A failed commit does not stop the feed: its transitions stay
        buffered in the journal and go out with the next commit that succeeds. Market data moves
        no money; the kernel's health turns unhealthy and no order leaves meanwhile."""
        try:
            self._journal.commit()
        except JournalWriteError as exc:
            self.counts["journal_errors"] += 1
            if (errors := self.counts["journal_errors"]) == 1 or errors % 100 == 0:
                log.error("feed %s: journal commit failed (%d so far): %s", self._feed.entity_id, errors, exc)

    def _tell(self, listener: Callable[[Any], None] | None, value: Any) -> None:
        if listener is None:
            return
        try:
            listener(value)
        except Exception as exc:  # a strategy bug must not take the feed down
            log.exception("feed %s: listener failed", self._feed.entity_id)
            self._anomaly("listener_error", repr(exc)[:200], repr(value)[:200])


async def _probed(probe: TickProbe, client: FeedClient, ws: ClientConnection, frame: str | bytes) -> None:
    """Handle one frame between the probe's ``frame_read`` and ``frame_done`` stamps."""
    probe.frame_read()
    try:
        await client._handle(ws, client._decode(frame))
    finally:
        probe.frame_done()


def _delivery(client: FeedClient, ws: ClientConnection) -> Callable[[list[FeedEvent]], Awaitable[None]]:
    """How the snapshot tasks hand their events to ``client``: as if they came on ``ws``."""

    async def deliver(events: list[FeedEvent]) -> None:
        try:
            await client._handle(ws, events)
        except ConnectionClosed:
            pass  # the stream loop sees the close too
        except Dropped as exc:  # a notice to reconnect: close, the stream loop sees it
            await ws.close(exc.code, exc.close_reason)

    return deliver


def _snapshot_failed(client: FeedClient, ws: ClientConnection) -> Callable[[str, SnapshotFailed], Awaitable[None]]:
    """What a failed snapshot does: count it, log it and close ``ws`` (the feed reconnects)."""

    async def failed(instrument: str, error: SnapshotFailed) -> None:
        client.counts["snapshot_failed"] += 1
        log.warning("feed %s: snapshot of %s failed: %s", client.feed.entity_id, instrument, error)
        await ws.close(SNAPSHOT_FAILED, "snapshot failed")

    return failed


def _due_ms(timer: tuple[str, int] | None) -> int | None:
    return None if timer is None else timer[1]


def _gap_fields(gap: Gap) -> tuple[str, str, int, int]:
    return gap.instrument, gap.channel, gap.expected, gap.received
