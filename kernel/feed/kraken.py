"""Kraken Spot WebSocket v2 (``wss://ws.kraken.com/v2``): objects keyed by ``channel`` (market data,
``data`` is a list, one entry per symbol or trade) or by ``method`` (answers to requests).

Prices and sizes travel as JSON numbers; they are read as ``Decimal`` straight from the number's
text, as Kraken's checksum guide asks (a float would lose digits).

| Kraken | event |
| --- | --- |
| ``book`` snapshot / update | ``BookSnapshot`` / ``BookUpdate``, each with its ``checksum`` |
| ``trade`` (snapshot or update) | one ``TradeEvent`` per trade (``side`` is the taker's) |
| ``ticker`` | ``QuoteEvent`` with the last trade price |
| ``heartbeat`` | ``HeartbeatEvent`` |
| ``status`` | ``VenueNotice`` (``system``: online, maintenance ...) |
| ``subscribe`` answer | ``SubscriptionAck`` (``success`` false and ``error`` when refused) |
| any other channel or method (``ohlc``, ``pong`` ...) | ``UnhandledMessage`` |
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from kernel.feed._common import (
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
    price,
    require_object,
    size,
)
from kernel.feed.events import (
    BookSnapshot,
    BookUpdate,
    FeedEvent,
    HeartbeatEvent,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    UnhandledMessage,
    VenueNotice,
)

VENUE: Literal["kraken"] = "kraken"
Checksum = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
Kind = Literal["snapshot", "update"]


class _Level(msgspec.Struct, frozen=True):
    price: Decimal
    qty: Decimal


class _BookData(msgspec.Struct, frozen=True):
    symbol: Name
    bids: list[_Level]
    asks: list[_Level]
    checksum: Checksum
    timestamp: Text | None = None


class _Book(msgspec.Struct, frozen=True):
    type: Kind
    data: list[_BookData]


class _TradeData(msgspec.Struct, frozen=True):
    symbol: Name
    side: Literal["buy", "sell"]
    price: Decimal
    qty: Decimal
    trade_id: Id
    timestamp: Text


class _Trade(msgspec.Struct, frozen=True):
    type: Kind
    data: list[_TradeData]


class _TickerData(msgspec.Struct, frozen=True):
    symbol: Name
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    last: Decimal
    timestamp: Text | None = None


class _Ticker(msgspec.Struct, frozen=True):
    type: Kind
    data: list[_TickerData]


class _StatusData(msgspec.Struct, frozen=True):
    system: Text


class _Status(msgspec.Struct, frozen=True):
    data: list[_StatusData]


class _AckResult(msgspec.Struct, frozen=True):
    channel: Name
    symbol: Name | None = None


class _Ack(msgspec.Struct, frozen=True):
    success: bool
    result: _AckResult | None = None
    error: str | None = None
    req_id: int | None = None


class _BookFrame(_Book, frozen=True, tag_field="channel", tag="book"):
    pass


class _TradeFrame(_Trade, frozen=True, tag_field="channel", tag="trade"):
    pass


class _TickerFrame(_Ticker, frozen=True, tag_field="channel", tag="ticker"):
    pass


# The market-data channels in one typed decode, tagged by ``channel``: the same Structs, checks and
# events as the general path, without the dict in between. Any other frame goes the general way.
_market = msgspec.json.Decoder(_BookFrame | _TradeFrame | _TickerFrame)


def decode_kraken(frame: Frame) -> list[FeedEvent]:
    """Decode one Kraken v2 frame into events; ``DecodeError`` for anything invalid."""
    return decode_typed(VENUE, frame, _typed, _message)


def _typed(frame: Frame) -> list[FeedEvent]:
    message = _market.decode(frame)
    if type(message) is _TradeFrame:
        return _trade_events(message)
    if type(message) is _TickerFrame:
        return _ticker_events(message)
    assert type(message) is _BookFrame
    return _book_events(message)


def _message(data: Any) -> list[FeedEvent]:
    body = require_object(data)
    if "channel" in body:
        channel = body["channel"]
        if not isinstance(channel, str):
            raise Invalid("'channel' is not a string")
        return _channel(channel, body)
    if "method" in body:
        method = body["method"]
        if not isinstance(method, str):
            raise Invalid("'method' is not a string")
        return [_ack(body)] if method == "subscribe" else [UnhandledMessage(VENUE, method)]
    raise Invalid("neither 'channel' nor 'method'")


def _channel(channel: str, body: dict[str, Any]) -> list[FeedEvent]:
    if channel == "book":
        return _book(body)
    if channel == "trade":
        return _trades(body)
    if channel == "ticker":
        return _tickers(body)
    if channel == "heartbeat":
        return [HeartbeatEvent(VENUE)]
    if channel == "status":
        return [VenueNotice(VENUE, "status", status.system) for status in convert(body, _Status).data]
    return [UnhandledMessage(VENUE, channel)]


def _time(text: str | None) -> int | None:
    return None if text is None else iso_ms(text, "timestamp")


def _book(body: dict[str, Any]) -> list[FeedEvent]:
    return _book_events(convert(body, _Book))


def _book_events(book: _Book) -> list[FeedEvent]:
    snapshot = book.type == "snapshot"
    events: list[FeedEvent] = []
    for item in book.data:
        bids = levels([(level.price, level.qty) for level in item.bids], "bid", snapshot=snapshot)
        asks = levels([(level.price, level.qty) for level in item.asks], "ask", snapshot=snapshot)
        ts_ms = _time(item.timestamp)
        if snapshot:
            events.append(BookSnapshot(VENUE, item.symbol, bids, asks, ts_ms=ts_ms, checksum=item.checksum))
        else:
            events.append(BookUpdate(VENUE, item.symbol, bids, asks, ts_ms=ts_ms, checksum=item.checksum))
    return events


def _trades(body: dict[str, Any]) -> list[FeedEvent]:
    return _trade_events(convert(body, _Trade))


def _trade_events(trades: _Trade) -> list[FeedEvent]:
    return [
        TradeEvent(
            VENUE,
            trade.symbol,
            str(trade.trade_id),
            price(trade.price),
            positive_size(trade.qty),
            trade.side,
            iso_ms(trade.timestamp, "timestamp"),
            "trade",
        )
        for trade in trades.data
    ]


def _tickers(body: dict[str, Any]) -> list[FeedEvent]:
    return _ticker_events(convert(body, _Ticker))


def _ticker_events(tickers: _Ticker) -> list[FeedEvent]:
    return [
        QuoteEvent(
            VENUE,
            ticker.symbol,
            price(ticker.bid, "bid"),
            size(ticker.bid_qty, "bid_qty"),
            price(ticker.ask, "ask"),
            size(ticker.ask_qty, "ask_qty"),
            _time(ticker.timestamp),
            last_price=price(ticker.last, "last"),
        )
        for ticker in tickers.data
    ]


def _ack(body: dict[str, Any]) -> FeedEvent:
    ack = convert(body, _Ack)
    request_id = None if ack.req_id is None else str(ack.req_id)
    if not ack.success:
        return SubscriptionAck(VENUE, (), request_id, success=False, error=(ack.error or "refused")[:200])
    if ack.result is None:
        raise Invalid("subscribe answer: success without a 'result'")
    symbol = ack.result.symbol
    return SubscriptionAck(VENUE, ((ack.result.channel, () if symbol is None else (symbol,)),), request_id)
