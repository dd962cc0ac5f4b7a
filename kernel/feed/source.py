"""The market-data seam: what one venue's protocol object tells the venue-neutral ``FeedClient``.

``FeedClient`` owns the socket, the clock, the ``feed`` machine and the journal, and knows no venue.
A ``MarketDataSource`` owns everything that differs between venues, without a socket of its own
except for an opening handshake:

1. ``url``: where to connect (every endpoint configurable by whoever builds the source).
2. ``greet(ws, ...)``: what the venue needs before a subscription (the paper venue: ``hello`` and
   ``welcome``; most venues: nothing).
3. ``subscribe(instruments, channels, request_id)``: the frames that subscribe, and
   ``check_subscribed(event)``: whether a decoded event answers them (``True``), refuses them
   (raises ``SessionFailed``) or is something else (``False``).
4. ``decode(frame)``: one frame into typed events, ``DecodeError`` for anything invalid.
5. ``new_sync()``: a fresh ``StreamSync`` for one subscription: the venue's sync procedure, which
   says which instruments are whole from the subscription on, which events are duplicates or
   reveal a gap, when an instrument is whole again, and what to send to resync it.
   ``book(instrument)``: the order book the source keeps (the current subscription's), if any.
6. Heartbeats: a ``HeartbeatEvent`` naming an instrument freshens that instrument, one naming none
   freshens every instrument; WebSocket pings are the socket's (``SocketOptions``).

A failure the source reports is a ``SessionFailed``: ``fatal`` when retrying cannot help (the feed
``failed``), else the feed reconnects after the machine's backoff.

Two optional extensions (checked with ``isinstance``; the paper venue has neither):

* ``SnapshotSource``: a source whose books start from a snapshot fetched out of band (Binance's
  REST ``GET /api/v3/depth``). ``FeedClient`` calls ``await source.snapshot(instrument)`` in a
  task for every instrument not whole at subscription and for every ``Gap``, while it keeps
  reading the socket (the sync buffers updates meanwhile), and hands the events it returns (a
  ``BookSnapshot``) to the sync like any frame's. A ``SnapshotFailed`` (retries spent) drops the
  connection: the feed reconnects after the machine's backoff.
* ``KeepsBooks``: a sync procedure that keeps the order books itself. ``passed_on(event)`` says
  what reaches the listener for one usable event: trades as they are, a ``QuoteEvent`` built from
  the book each time its top changes, nothing for book snapshots/updates (nor for the venue's own
  top-of-book stream, which would contradict the book). ``book(instrument)`` is the book when whole;
  ``top_quote(instrument)`` the quote to tell when an instrument becomes usable (its book may have
  moved while it was synced but the feed still ``syncing``).

A ``VenueNotice`` whose kind is in ``RECONNECT_NOTICES`` (Binance ``serverShutdown``) makes the
client reconnect at once, as a normal close would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol, runtime_checkable

from kernel.feed._common import Frame
from kernel.feed.book import Gap, OrderBook, Stale
from kernel.feed.errors import FeedError
from kernel.feed.events import (
    BookSnapshot,
    BookUpdate,
    DecodeError,
    FeedEvent,
    HeartbeatEvent,
    QuoteEvent,
    TradeEvent,
    Venue,
)

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

Channel = Literal["trades", "quotes"]
"""The kinds of market data a feed asks for."""
MarketEvent = TradeEvent | QuoteEvent | BookSnapshot | BookUpdate
"""Events that carry one instrument's market data (passed on to the listener when usable)."""
SyncedEvent = MarketEvent | HeartbeatEvent
"""What passes through the sync procedure: market data, and heartbeats that name an instrument
(a Coinbase heartbeat's ``last_trade_id`` can reveal a gap)."""
OnDecodeError = Callable[[DecodeError], None]
"""Told of each frame a source could not decode during its handshake (the frame is then skipped)."""
RestTap = Callable[[str, int, str, int], None]
"""Told of each REST answer a source received: ``(path with query, HTTP status, body text, receive
time.time_ns())`` (``market watch --record`` writes them as ``{"kind": "rest", ...}`` lines)."""
RECONNECT_NOTICES: Final = frozenset({"serverShutdown"})
"""``VenueNotice`` kinds that announce the venue is about to close the connection: reconnect now."""


class SnapshotFailed(FeedError):
    """A snapshot could not be fetched (retries spent, or an answer retrying cannot fix)."""


class SessionFailed(FeedError):
    """Opening a session or subscribing failed; ``fatal`` when retrying cannot help."""

    def __init__(self, reason: str, *, fatal: bool) -> None:
        super().__init__(reason)
        self.reason = reason[:200]
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class Resynced:
    """``instrument``'s stream is whole again (after a gap or a snapshot): its events are usable."""

    instrument: str


SyncVerdict = Gap | Stale | Resynced | None
"""Where one event leaves its instrument: ``None`` follows on; ``Stale`` already seen (drop it);
``Gap`` events were missed (resync that instrument only); ``Resynced`` whole again."""


class StreamSync(Protocol):
    """One subscription's sync procedure (a venue's sequence numbers, update ids or checksums)."""

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """The subscription was confirmed: the instruments already whole (needing no snapshot)."""
        ...

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """Check one event of a subscribed instrument against the stream so far."""
        ...

    def resync_frames(self, instrument: str) -> list[str]:
        """What to send after a gap of ``instrument`` (a snapshot request, a resubscription, nothing)."""
        ...


class ResyncInStream:
    """The resync rule of a venue that has no snapshot to load and cannot replay: the event that
    revealed a gap becomes the new baseline, and the next event of that instrument that follows on
    proves its stream whole again (``Resynced``). Sync procedures built on a sequence keeper
    (``PaperSequence``, ``CoinbaseTradeSequence``) pass each result through ``verdict``.
    """

    def __init__(self) -> None:
        self._resyncing: set[str] = set()

    def verdict(self, instrument: str, result: Gap | Stale | None) -> SyncVerdict:
        """``result`` as a verdict: a ``Gap`` starts a resync, the next ``None`` ends it."""
        if isinstance(result, Gap):
            self._resyncing.add(instrument)
            return result
        if result is None and instrument in self._resyncing:
            self._resyncing.discard(instrument)
            return Resynced(instrument)
        return result

    def clear(self) -> None:
        """Forget every resync in progress (a new subscription)."""
        self._resyncing.clear()


class MarketDataSource(Protocol):
    """One venue's market-data protocol, as ``FeedClient`` drives it (see the module docstring)."""

    @property
    def venue(self) -> Venue:
        """The venue's name (``DecodeError.venue``, logs)."""
        ...

    @property
    def url(self) -> str:
        """The WebSocket endpoint to connect to."""
        ...

    async def greet(self, ws: ClientConnection, *, timeout: float, on_decode_error: OnDecodeError) -> None:
        """Whatever the venue needs after connecting and before subscribing; ``SessionFailed`` if refused."""
        ...

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """The frames that subscribe to ``channels`` of ``instruments``."""
        ...

    def check_subscribed(self, event: FeedEvent) -> bool:
        """``True`` if ``event`` confirms the subscription; ``SessionFailed`` if it refuses it."""
        ...

    def decode(self, frame: Frame) -> list[FeedEvent]:
        """One frame as events; ``DecodeError`` for anything invalid."""
        ...

    def new_sync(self) -> StreamSync:
        """A fresh sync procedure for one subscription."""
        ...

    def book(self, instrument: str) -> OrderBook | None:
        """The order book the source keeps of ``instrument`` while it is whole; ``None`` when it
        keeps none (the paper venue) or the book is not whole (before its snapshot, after a gap)."""
        ...


@runtime_checkable
class SnapshotSource(Protocol):
    """A source whose books start from a snapshot fetched out of band (see the module docstring)."""

    async def snapshot(self, instrument: str) -> list[FeedEvent]:
        """The events of a fresh snapshot of ``instrument``; ``SnapshotFailed`` when it cannot be had."""
        ...


@runtime_checkable
class KeepsBooks(Protocol):
    """A sync procedure that keeps the order books itself (see the module docstring)."""

    def passed_on(self, event: MarketEvent) -> list[MarketEvent]:
        """What reaches the listener for one usable event of a subscribed instrument."""
        ...

    def book(self, instrument: str) -> OrderBook | None:
        """``instrument``'s book while it is whole, else ``None``."""
        ...

    def top_quote(self, instrument: str) -> list[QuoteEvent]:
        """A quote of ``instrument``'s top of book if it differs from the last one told (the
        instrument just became usable: its book may have moved while the feed was syncing)."""
        ...
