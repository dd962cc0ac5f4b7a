"""Coinbase Exchange (ex "Pro", ``wss://ws-feed.exchange.coinbase.com``): one JSON object per frame,
keyed by ``type``.

| Coinbase ``type`` | event |
| --- | --- |
| ``match``, ``last_match`` | ``TradeEvent`` (``side`` is the maker's: the taker took the other side) |
| ``ticker`` | ``QuoteEvent`` (best bid/ask, sizes only if sent; last trade price and size) |
| ``snapshot`` / ``l2update`` | ``BookSnapshot`` / ``BookUpdate`` (level2 carries no sequence) |
| ``heartbeat`` | ``HeartbeatEvent`` with ``sequence`` and ``last_trade_id`` |
| ``subscriptions`` | ``SubscriptionAck`` |
| ``error`` | ``VenueNotice`` |
| any other ``type`` (``open``, ``done``, ``status`` ...) | ``UnhandledMessage`` |
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

import msgspec

from kernel.feed._common import (
    DecimalText,
    Frame,
    Id,
    Invalid,
    Name,
    Text,
    convert,
    decode_typed,
    iso_ms,
    levels,
    positive_size,
    positive_text,
    price,
    require_object,
    size,
)
from kernel.feed.events import (
    BookSnapshot,
    BookUpdate,
    FeedEvent,
    HeartbeatEvent,
    Level,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    UnhandledMessage,
    VenueNotice,
)

VENUE: Literal["coinbase"] = "coinbase"
_Handler = Callable[[dict[str, Any]], FeedEvent]


class _Match(msgspec.Struct, frozen=True):
    type: str
    trade_id: Id
    side: Literal["buy", "sell"]
    size: str
    price: str
    product_id: Name
    sequence: Id
    time: Text


class _Ticker(msgspec.Struct, frozen=True):
    sequence: Id
    product_id: Name
    price: str
    best_bid: str
    best_ask: str
    best_bid_size: str | None = None
    best_ask_size: str | None = None
    last_size: str | None = None
    time: Text | None = None


class _Snapshot(msgspec.Struct, frozen=True):
    product_id: Name
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    time: Text | None = None


class _L2Update(msgspec.Struct, frozen=True):
    product_id: Name
    changes: list[tuple[Literal["buy", "sell"], str, str]]
    time: Text


class _Heartbeat(msgspec.Struct, frozen=True):
    sequence: Id
    last_trade_id: Id
    product_id: Name
    time: Text


class _Channel(msgspec.Struct, frozen=True):
    name: Name
    product_ids: list[Name] = msgspec.field(default_factory=list)


class _Subscriptions(msgspec.Struct, frozen=True):
    channels: list[_Channel]


class _Error(msgspec.Struct, frozen=True):
    message: str
    reason: str = ""


# The typed path (``_common.decode_typed``): the frequent types, tagged by ``type``, with their
# decimals as ``DecimalText``; any other frame, or one these refuse, goes the general way.


class _FastMatch(msgspec.Struct, frozen=True, tag_field="type", tag="match"):
    trade_id: Id
    side: Literal["buy", "sell"]
    size: DecimalText
    price: DecimalText
    product_id: Name
    sequence: Id
    time: Text


class _FastLastMatch(_FastMatch, frozen=True, tag="last_match"):
    pass


class _FastTicker(msgspec.Struct, frozen=True, tag_field="type", tag="ticker"):
    sequence: Id
    product_id: Name
    price: DecimalText
    best_bid: DecimalText
    best_ask: DecimalText
    best_bid_size: DecimalText | None = None
    best_ask_size: DecimalText | None = None
    last_size: DecimalText | None = None
    time: Text | None = None


class _FastL2Update(msgspec.Struct, frozen=True, tag_field="type", tag="l2update"):
    product_id: Name
    changes: list[tuple[Literal["buy", "sell"], DecimalText, DecimalText]]
    time: Text


_typed_decoder = msgspec.json.Decoder(_FastMatch | _FastLastMatch | _FastTicker | _FastL2Update)


def decode_coinbase(frame: Frame) -> list[FeedEvent]:
    """Decode one Coinbase Exchange frame into events; ``DecodeError`` for anything invalid."""
    return decode_typed(VENUE, frame, _typed, _message)


def _typed(frame: Frame) -> list[FeedEvent]:
    message = _typed_decoder.decode(frame)
    if isinstance(message, _FastMatch):
        return [
            TradeEvent(
                VENUE,
                message.product_id,
                str(message.trade_id),
                positive_text(message.price),
                positive_text(message.size),
                "buy" if message.side == "sell" else "sell",
                iso_ms(message.time),
                "last_match" if type(message) is _FastLastMatch else "match",
                seq=message.sequence,
            )
        ]
    if isinstance(message, _FastTicker):
        return [
            QuoteEvent(
                VENUE,
                message.product_id,
                positive_text(message.best_bid),
                None if message.best_bid_size is None else Decimal(message.best_bid_size),
                positive_text(message.best_ask),
                None if message.best_ask_size is None else Decimal(message.best_ask_size),
                None if message.time is None else iso_ms(message.time),
                seq=message.sequence,
                last_price=positive_text(message.price),
                last_qty=None if message.last_size is None else Decimal(message.last_size),
            )
        ]
    bids: list[Level] = []
    asks: list[Level] = []
    for side, level_price, level_size in message.changes:
        (bids if side == "buy" else asks).append((positive_text(level_price), Decimal(level_size)))
    return [BookUpdate(VENUE, message.product_id, tuple(bids), tuple(asks), ts_ms=iso_ms(message.time))]


def _message(data: Any) -> list[FeedEvent]:
    body = require_object(data)
    kind = body.get("type")
    if not isinstance(kind, str):
        raise Invalid("no 'type' string")
    handler = _TYPES.get(kind)
    return [UnhandledMessage(VENUE, kind)] if handler is None else [handler(body)]


def _match(body: dict[str, Any]) -> FeedEvent:
    match = convert(body, _Match)
    return TradeEvent(
        VENUE,
        match.product_id,
        str(match.trade_id),
        price(match.price),
        positive_size(match.size, "size"),
        "buy" if match.side == "sell" else "sell",
        iso_ms(match.time),
        match.type,
        seq=match.sequence,
    )


def _ticker(body: dict[str, Any]) -> FeedEvent:
    ticker = convert(body, _Ticker)
    return QuoteEvent(
        VENUE,
        ticker.product_id,
        price(ticker.best_bid, "best_bid"),
        None if ticker.best_bid_size is None else size(ticker.best_bid_size, "best_bid_size"),
        price(ticker.best_ask, "best_ask"),
        None if ticker.best_ask_size is None else size(ticker.best_ask_size, "best_ask_size"),
        None if ticker.time is None else iso_ms(ticker.time),
        seq=ticker.sequence,
        last_price=price(ticker.price),
        last_qty=None if ticker.last_size is None else size(ticker.last_size, "last_size"),
    )


def _snapshot(body: dict[str, Any]) -> FeedEvent:
    snapshot = convert(body, _Snapshot)
    return BookSnapshot(
        VENUE,
        snapshot.product_id,
        levels(snapshot.bids, "bid", snapshot=True),
        levels(snapshot.asks, "ask", snapshot=True),
        ts_ms=None if snapshot.time is None else iso_ms(snapshot.time),
    )


def _l2update(body: dict[str, Any]) -> FeedEvent:
    update = convert(body, _L2Update)
    bids: list[Level] = []
    asks: list[Level] = []
    for side, level_price, level_size in update.changes:
        (bids if side == "buy" else asks).append((price(level_price), size(level_size, "size")))
    return BookUpdate(VENUE, update.product_id, tuple(bids), tuple(asks), ts_ms=iso_ms(update.time))


def _heartbeat(body: dict[str, Any]) -> FeedEvent:
    beat = convert(body, _Heartbeat)
    return HeartbeatEvent(
        VENUE, iso_ms(beat.time), beat.product_id, seq=beat.sequence, last_trade_id=str(beat.last_trade_id)
    )


def _subscriptions(body: dict[str, Any]) -> FeedEvent:
    acked = convert(body, _Subscriptions)
    return SubscriptionAck(VENUE, tuple((channel.name, tuple(channel.product_ids)) for channel in acked.channels))


def _error(body: dict[str, Any]) -> FeedEvent:
    error = convert(body, _Error)
    detail = f"{error.message}: {error.reason}" if error.reason else error.message
    return VenueNotice(VENUE, "error", detail[:200])


_TYPES: dict[str, _Handler] = {
    "match": _match,
    "last_match": _match,
    "ticker": _ticker,
    "snapshot": _snapshot,
    "l2update": _l2update,
    "heartbeat": _heartbeat,
    "subscriptions": _subscriptions,
    "error": _error,
}
