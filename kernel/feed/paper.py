"""The paper venue's own protocol (``kernel.paper_protocol``, ``docs/venue-protocol.md``).

| paper ``type`` | event |
| --- | --- |
| ``trade`` | ``TradeEvent`` (channel ``trades``, with its ``seq``) |
| ``quote`` | ``QuoteEvent`` (with its ``seq``) |
| ``heartbeat`` | ``HeartbeatEvent`` |
| ``subscribed`` | ``SubscriptionAck`` |
| ``error`` | ``VenueNotice`` |
| order-entry answers (``welcome``, ``execution``, ``pong`` ...) | ``UnhandledMessage`` (the execution client's) |

The protocol is ours, so unlike a foreign venue an unknown ``type`` is a ``DecodeError``.

``PaperSync`` is the paper venue's sync procedure (pure, like the decoder); the source that uses
both is ``kernel.feed.paper_source.PaperMarketData``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from kernel.feed._common import (
    MAX_DEPTH,
    QUICK_CHARS,
    DecimalText,
    Frame,
    Invalid,
    check_bounds,
    convert,
    decode_with,
    positive_size,
    positive_text,
    price,
    require_object,
    sample,
    size,
)
from kernel.feed.book import PaperSequence
from kernel.feed.events import (
    DecodeError,
    FeedEvent,
    HeartbeatEvent,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    UnhandledMessage,
    VenueNotice,
)
from kernel.feed.source import ResyncInStream, SyncedEvent, SyncVerdict
from kernel.paper_protocol import (
    Error,
    Heartbeat,
    Quote,
    Side,
    Subscribed,
    Trade,
    VenueMessage,
)

VENUE: Literal["paper"] = "paper"


# One typed pass straight into the protocol's message types: ~9 µs a message cheaper than parsing
# generically and converting. A frame it refuses goes through the generic path, which says why.
_typed = msgspec.json.Decoder(VenueMessage)

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Seq = Annotated[int, msgspec.Meta(ge=1)]
Millis = Annotated[int, msgspec.Meta(ge=0)]


# Before that, trades and quotes take a narrower typed pass (``_common.decode_typed``'s way): the
# protocol's fields with ``_check``'s bounds as constraints and decimals as ``DecimalText``, read
# with one ``Decimal(text)``. A frame it refuses takes the protocol's pass above, which decides.
class _FastTrade(msgspec.Struct, frozen=True, tag_field="type", tag="trade"):
    instrument: NonEmpty
    seq: Seq
    trade_id: NonEmpty
    price: DecimalText
    qty: DecimalText
    taker_side: Side
    ts_ms: Millis


class _FastQuote(msgspec.Struct, frozen=True, tag_field="type", tag="quote"):
    instrument: NonEmpty
    seq: Seq
    bid: DecimalText
    bid_qty: DecimalText
    ask: DecimalText
    ask_qty: DecimalText
    ts_ms: Millis


_market = msgspec.json.Decoder(_FastTrade | _FastQuote)


def _fast(frame: Frame) -> list[FeedEvent]:
    message = _market.decode(frame)
    if isinstance(message, _FastTrade):
        return [
            TradeEvent(
                VENUE,
                message.instrument,
                message.trade_id,
                positive_text(message.price),
                positive_text(message.qty),
                message.taker_side,
                message.ts_ms,
                "trades",
                seq=message.seq,
            )
        ]
    return [
        QuoteEvent(
            VENUE,
            message.instrument,
            positive_text(message.bid),
            Decimal(message.bid_qty),
            positive_text(message.ask),
            Decimal(message.ask_qty),
            message.ts_ms,
            seq=message.seq,
        )
    ]


def decode_paper(frame: Frame) -> list[FeedEvent]:
    """Decode one frame from the paper venue into events; ``DecodeError`` for anything invalid."""
    if type(frame) is not str or len(frame) > QUICK_CHARS or frame.count("[") + frame.count("{") > MAX_DEPTH:
        check_bounds(VENUE, frame)  # else inside every bound (see ``_common.decode_typed``)
    try:
        return _fast(frame)
    except (msgspec.DecodeError, Invalid):  # not a trade or quote, or one the protocol's pass judges
        pass
    try:
        message = _typed.decode(frame)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return decode_with(VENUE, frame, _message)
    try:
        return _events(message)
    except Invalid as exc:
        raise DecodeError(VENUE, str(exc), sample(frame)) from None


def _check(instrument: str, seq: int, ts_ms: int) -> None:
    if not instrument:
        raise Invalid("empty instrument")
    if seq < 1:
        raise Invalid(f"seq must be >= 1, got {seq}")
    if ts_ms < 0:
        raise Invalid(f"ts_ms must be >= 0, got {ts_ms}")


def _message(data: Any) -> list[FeedEvent]:
    message: VenueMessage = convert(require_object(data), VenueMessage)  # type: ignore[arg-type]
    return _events(message)


def _events(message: VenueMessage) -> list[FeedEvent]:
    if isinstance(message, Trade):
        _check(message.instrument, message.seq, message.ts_ms)
        if not message.trade_id:
            raise Invalid("empty trade_id")
        return [
            TradeEvent(
                VENUE,
                message.instrument,
                message.trade_id,
                price(message.price),
                positive_size(message.qty),
                message.taker_side,
                message.ts_ms,
                "trades",
                seq=message.seq,
            )
        ]
    if isinstance(message, Quote):
        _check(message.instrument, message.seq, message.ts_ms)
        return [
            QuoteEvent(
                VENUE,
                message.instrument,
                price(message.bid, "bid"),
                size(message.bid_qty, "bid_qty"),
                price(message.ask, "ask"),
                size(message.ask_qty, "ask_qty"),
                message.ts_ms,
                seq=message.seq,
            )
        ]
    if isinstance(message, Heartbeat):
        if message.ts_ms < 0:
            raise Invalid(f"ts_ms must be >= 0, got {message.ts_ms}")
        return [HeartbeatEvent(VENUE, message.ts_ms)]
    if isinstance(message, Subscribed):
        instruments = tuple(message.instruments)
        return [SubscriptionAck(VENUE, tuple((c, instruments) for c in message.channels), message.id or None)]
    if isinstance(message, Error):
        return [VenueNotice(VENUE, "error", f"{message.code}: {message.message}"[:200])]
    return [UnhandledMessage(VENUE, str(type(message).__struct_config__.tag))]


# -- the paper venue as a market-data source ----------------------------------------------------


class PaperSync:
    """The paper venue's sync procedure, over ``PaperSequence``.

    The venue has no snapshot: its ``seq`` restarts at 1 with each subscription, so the
    subscription itself is the sync point (every instrument is whole at once). It cannot replay
    either, so a gap resyncs in the stream (``ResyncInStream``).
    """

    def __init__(self) -> None:
        self._sequence = PaperSequence()
        self._resync = ResyncInStream()

    def on_subscribed(self, instruments: Sequence[str]) -> list[str]:
        """Every instrument: the venue counts from 1 again for each subscription."""
        self._sequence.reset()
        self._resync.clear()
        return list(instruments)

    def on_event(self, event: SyncedEvent) -> SyncVerdict:
        """``PaperSequence.observe`` of a trade or quote; ``Resynced`` at the first one in order after a gap."""
        if not isinstance(event, (TradeEvent, QuoteEvent)):
            return None  # the paper venue sends no books, and its heartbeats name no instrument
        return self._resync.verdict(event.instrument, self._sequence.observe(event))

    def resync_frames(self, instrument: str) -> list[str]:
        """Nothing to send: the stream itself resyncs."""
        del instrument
        return []
