"""The paper venue as a market-data source: ``PaperMarketData`` (a ``kernel.feed.source.MarketDataSource``).

``hello`` and ``welcome`` first (``kernel.paper_session``; signed with the account's ``Credentials``
against a venue that authenticates), one ``subscribe`` answered by
``subscribed``, frames decoded by ``decode_paper`` and checked by ``PaperSync``. A venue ``error``
answering ``hello`` or ``subscribe`` fails the feed for the codes in ``FATAL_VENUE_ERRORS`` and is
retried for any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from websockets.asyncio.client import ClientConnection

from kernel.feed._common import Frame, sample
from kernel.feed.book import OrderBook
from kernel.feed.events import DecodeError, FeedEvent, SubscriptionAck, VenueNotice
from kernel.feed.paper import VENUE, PaperSync, decode_paper
from kernel.feed.source import Channel, OnDecodeError, SessionFailed
from kernel.paper_protocol import ProtocolError, Subscribe, encode
from kernel.paper_session import AuthRefused, Credentials, HelloRefused, hello

FATAL_VENUE_ERRORS: Final = frozenset({"unsupported_version", "invalid", "auth_failed", "not_authenticated"})
"""``error`` codes answering ``hello``/``subscribe`` that retrying cannot fix."""


def _refusal(request: str, code: str, detail: str) -> SessionFailed:
    if code in FATAL_VENUE_ERRORS:
        return SessionFailed(f"venue refused {request}: {detail}", fatal=True)
    return SessionFailed(f"venue answered {request} with {detail}", fatal=False)


class PaperMarketData:
    """The paper venue's market data at ``url`` (a ``MarketDataSource``; see the module docstring)."""

    def __init__(
        self, url: str, *, client_name: str = "tradekernel-feed", credentials: Credentials | None = None
    ) -> None:
        self._url = url
        self.client_name = client_name
        self._credentials = credentials

    @property
    def venue(self) -> Literal["paper"]:
        """``paper``."""
        return VENUE

    @property
    def url(self) -> str:
        """The venue's WebSocket URL."""
        return self._url

    async def greet(self, ws: ClientConnection, *, timeout: float, on_decode_error: OnDecodeError) -> None:
        """``hello``/``welcome`` (``kernel.paper_session.hello``); ``SessionFailed`` when refused or unanswered."""

        def malformed(frame: str | bytes, error: ProtocolError) -> None:
            on_decode_error(DecodeError(VENUE, str(error), sample(frame)))

        try:
            await hello(
                ws, client_name=self.client_name, timeout=timeout, on_malformed=malformed, credentials=self._credentials
            )
        except TimeoutError:
            raise SessionFailed("no answer to hello within open_timeout", fatal=False) from None
        except HelloRefused as exc:
            raise _refusal("hello", exc.code, str(exc) if isinstance(exc, AuthRefused) else exc.detail) from None

    def subscribe(self, instruments: Sequence[str], channels: Sequence[Channel], request_id: str) -> list[str]:
        """One ``subscribe`` message."""
        message = Subscribe(instruments=list(instruments), channels=list(channels), id=request_id)
        return [encode(message).decode()]

    def check_subscribed(self, event: FeedEvent) -> bool:
        """``subscribed`` confirms; an ``error`` refuses (``SessionFailed``)."""
        if isinstance(event, SubscriptionAck):
            return True
        if isinstance(event, VenueNotice):
            raise _refusal("subscribe", event.detail.partition(":")[0], event.detail)
        return False

    def decode(self, frame: Frame) -> list[FeedEvent]:
        """``decode_paper``."""
        return decode_paper(frame)

    def new_sync(self) -> PaperSync:
        """A fresh ``PaperSync``."""
        return PaperSync()

    def book(self, instrument: str) -> OrderBook | None:
        """``None``: the paper venue's feed keeps no book (its quotes are the venue's own top of book)."""
        del instrument
        return None
