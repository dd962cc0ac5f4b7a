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
6. Heartbeats: a ``HeartbeatEvent`` naming an instrument freshens that instrument, one naming none
   freshens every instrument; WebSocket pings are the socket's (``SocketOptions``).

A failure the source reports is a ``SessionFailed``: ``fatal`` when retrying cannot help (the feed
``failed``), else the feed reconnects after the machine's backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from kernel.feed._common import Frame
from kernel.feed.book import Gap, Stale
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
