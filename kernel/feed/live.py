"""What the live venues' sources share: a URL and no greeting, counting subscription answers, the
sync of a stream without sequence numbers, and the quotes derived from a kept book.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kernel.feed.book import OrderBook
from kernel.feed.events import QuoteEvent, Venue
from kernel.feed.source import OnDecodeError, SyncedEvent, SyncVerdict

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection


class WholeAtSubscribe:
    """The sync procedure of a stream without sequence numbers: every instrument is whole from its
    subscription on, and no event can reveal a gap."""

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """Every instrument."""
        return list(instruments)

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """Always ``None`` (follows on)."""
        del event
        return None

    def resync_frames(self, instrument: str) -> list[str]:
        """Nothing (no gap is ever reported)."""
        del instrument
        return []


class LiveSource:
    """A URL, no greeting, and the count of the answers a subscription still awaits."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._awaiting = 0

    @property
    def url(self) -> str:
        """The WebSocket endpoint."""
        return self._url

    async def greet(self, ws: ClientConnection, *, timeout: float, on_decode_error: OnDecodeError) -> None:
        """Nothing: the venue takes a subscription as the first message."""
        del ws, timeout, on_decode_error

    def _answered(self) -> bool:
        self._awaiting -= 1
        return self._awaiting <= 0


class BookQuotes:
    """Quotes derived from kept books: one ``QuoteEvent`` each time an instrument's top of book
    (best bid and ask, price and size) differs from the last one told. A book with an empty side
    gives no quote."""

    def __init__(self, venue: Venue) -> None:
        self.venue: Venue = venue
        self._last: dict[str, tuple[object, object]] = {}

    def changed(self, book: OrderBook, ts_ms: int | None, seq: int | None = None) -> list[QuoteEvent]:
        """``[QuoteEvent]`` if ``book``'s top changed since the last quote of its instrument, else ``[]``."""
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None or self._last.get(book.instrument) == (bid, ask):
            return []
        self._last[book.instrument] = (bid, ask)
        return [QuoteEvent(self.venue, book.instrument, bid[0], bid[1], ask[0], ask[1], ts_ms, seq=seq)]
