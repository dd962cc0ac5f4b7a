"""Binance spot: market streams, the REST depth snapshot and the user-data ``executionReport``.

Accepted shapes: a raw stream event, the combined-stream envelope ``{"stream", "data"}``, the
WebSocket-API subscription envelope ``{"subscriptionId", "event"}``, the REST ``GET /api/v3/depth``
body (``lastUpdateId``, ``bids``, ``asks``: it names no symbol, so pass ``symbol=``), and the
answers to ``SUBSCRIBE`` (``{"result", "id"}``) and to a bad request (``{"error", "id"}``).

| Binance | event |
| --- | --- |
| ``trade``, ``aggTrade`` | ``TradeEvent`` (``m``, buyer is maker, means the taker sold) |
| ``bookTicker`` (no ``e`` on spot) | ``QuoteEvent`` with ``seq`` = ``u`` |
| ``depthUpdate`` | ``BookUpdate`` with ``U``/``u`` |
| REST depth | ``BookSnapshot`` with ``lastUpdateId`` |
| ``executionReport`` | ``ExecutionReportEvent`` |
| ``serverShutdown``, ``eventStreamTerminated``, an error answer | ``VenueNotice`` |
| ``SUBSCRIBE`` answer | ``SubscriptionAck`` |
| any other ``e`` | ``UnhandledMessage`` |
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
    Millis,
    Name,
    Text,
    convert,
    decode_typed,
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
    ExecutionReportEvent,
    FeedEvent,
    QuoteEvent,
    Side,
    SubscriptionAck,
    TradeEvent,
    UnhandledMessage,
    VenueNotice,
)

VENUE: Literal["binance"] = "binance"
PriceLevel = tuple[str, str]
_Handler = Callable[[dict[str, Any]], FeedEvent]


def _f(name: str) -> Any:
    """A required field read from the wire name ``name``."""
    return msgspec.field(name=name)


class _Trade(msgspec.Struct, frozen=True):
    symbol: Name = _f("s")
    trade_id: Id = _f("t")
    price: str = _f("p")
    qty: str = _f("q")
    trade_time: Millis = _f("T")
    buyer_is_maker: bool = _f("m")


class _AggTrade(msgspec.Struct, frozen=True):
    symbol: Name = _f("s")
    agg_id: Id = _f("a")
    price: str = _f("p")
    qty: str = _f("q")
    first_trade_id: Id = _f("f")
    last_trade_id: Id = _f("l")
    trade_time: Millis = _f("T")
    buyer_is_maker: bool = _f("m")


class _BookTicker(msgspec.Struct, frozen=True):
    update_id: Id = _f("u")
    symbol: Name = _f("s")
    bid: str = _f("b")
    bid_qty: str = _f("B")
    ask: str = _f("a")
    ask_qty: str = _f("A")
    trade_time: Millis | None = msgspec.field(name="T", default=None)
    event_time: Millis | None = msgspec.field(name="E", default=None)


class _DepthUpdate(msgspec.Struct, frozen=True):
    event_time: Millis = _f("E")
    symbol: Name = _f("s")
    first_update_id: Id = _f("U")
    last_update_id: Id = _f("u")
    bids: list[PriceLevel] = _f("b")
    asks: list[PriceLevel] = _f("a")


class _DepthSnapshot(msgspec.Struct, frozen=True):
    last_update_id: Id = _f("lastUpdateId")
    bids: list[PriceLevel] = _f("bids")
    asks: list[PriceLevel] = _f("asks")


_ExecType = Literal["NEW", "CANCELED", "REPLACED", "REJECTED", "TRADE", "EXPIRED", "TRADE_PREVENTION", "AMENDMENT"]
_OrderStatus = Literal[
    "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "PENDING_CANCEL", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"
]


class _ExecutionReport(msgspec.Struct, frozen=True):
    event_time: Millis = _f("E")
    symbol: Name = _f("s")
    client_order_id: Text = _f("c")
    side: Literal["BUY", "SELL"] = _f("S")
    order_type: Name = _f("o")
    time_in_force: Name = _f("f")
    order_qty: str = _f("q")
    order_price: str = _f("p")
    exec_type: _ExecType = _f("x")
    status: _OrderStatus = _f("X")
    reject_reason: Text = _f("r")
    order_id: Id = _f("i")
    last_qty: str = _f("l")
    cum_qty: str = _f("z")
    last_price: str = _f("L")
    commission: str = _f("n")
    commission_asset: Text | None = _f("N")
    transaction_time: Millis = _f("T")
    trade_id: int = _f("t")
    is_maker: bool = _f("m")
    cum_quote_qty: str = _f("Z")
    orig_client_order_id: Text = msgspec.field(name="C", default="")


class _Notice(msgspec.Struct, frozen=True):
    event_time: Millis = _f("E")


class _Response(msgspec.Struct, frozen=True):
    id: int | str | None
    result: list[Name] | None = None


class _ErrorBody(msgspec.Struct, frozen=True):
    code: int
    msg: str


class _ErrorResponse(msgspec.Struct, frozen=True):
    error: _ErrorBody
    id: int | str | None = None


# The typed path (``_common.decode_typed``) takes the combined-stream envelope with the frequent
# market data in it (``e`` tags trade, aggTrade, depthUpdate; a bookTicker has no ``e``), decimals as
# ``DecimalText``; any other frame, or one these refuse, goes the general way.


class _Stream(msgspec.Struct, frozen=True):
    stream: str
    data: msgspec.Raw


class _FastTrade(msgspec.Struct, frozen=True, tag_field="e", tag="trade"):
    symbol: Name = _f("s")
    trade_id: Id = _f("t")
    price: DecimalText = _f("p")
    qty: DecimalText = _f("q")
    trade_time: Millis = _f("T")
    buyer_is_maker: bool = _f("m")


class _FastAggTrade(msgspec.Struct, frozen=True, tag_field="e", tag="aggTrade"):
    symbol: Name = _f("s")
    agg_id: Id = _f("a")
    price: DecimalText = _f("p")
    qty: DecimalText = _f("q")
    first_trade_id: Id = _f("f")
    last_trade_id: Id = _f("l")
    trade_time: Millis = _f("T")
    buyer_is_maker: bool = _f("m")


class _FastDepthUpdate(msgspec.Struct, frozen=True, tag_field="e", tag="depthUpdate"):
    event_time: Millis = _f("E")
    symbol: Name = _f("s")
    first_update_id: Id = _f("U")
    last_update_id: Id = _f("u")
    bids: list[tuple[DecimalText, DecimalText]] = _f("b")
    asks: list[tuple[DecimalText, DecimalText]] = _f("a")


class _FastBookTicker(msgspec.Struct, frozen=True):
    update_id: Id = _f("u")
    symbol: Name = _f("s")
    bid: DecimalText = _f("b")
    bid_qty: DecimalText = _f("B")
    ask: DecimalText = _f("a")
    ask_qty: DecimalText = _f("A")
    trade_time: Millis | None = msgspec.field(name="T", default=None)
    event_time: Millis | None = msgspec.field(name="E", default=None)
    # The general path reads a body with these as another message: such a body is not for this path.
    event_type: Any = msgspec.field(name="e", default=msgspec.UNSET)
    snapshot_id: Any = msgspec.field(name="lastUpdateId", default=msgspec.UNSET)


_stream_decoder = msgspec.json.Decoder(_Stream)
_events_decoder = msgspec.json.Decoder(_FastTrade | _FastAggTrade | _FastDepthUpdate)
_ticker_decoder = msgspec.json.Decoder(_FastBookTicker)


def decode_binance(frame: Frame, *, symbol: str = "") -> list[FeedEvent]:
    """Decode one Binance frame into events; ``DecodeError`` for anything invalid.

    ``symbol`` names the instrument of a REST depth snapshot (which does not); a snapshot without
    it is a ``DecodeError``.
    """
    return decode_typed(VENUE, frame, _typed, lambda data: _message(data, symbol))


def _typed(frame: Frame) -> list[FeedEvent] | None:
    envelope = _stream_decoder.decode(frame)
    data = envelope.data
    if envelope.stream.endswith("@bookTicker"):  # the one without an event type
        ticker = _ticker_decoder.decode(data)
        if ticker.event_type is not msgspec.UNSET or ticker.snapshot_id is not msgspec.UNSET:
            return None
        return [
            QuoteEvent(
                VENUE,
                ticker.symbol,
                positive_text(ticker.bid),
                Decimal(ticker.bid_qty),
                positive_text(ticker.ask),
                Decimal(ticker.ask_qty),
                ticker.trade_time if ticker.trade_time is not None else ticker.event_time,
                seq=ticker.update_id,
            )
        ]
    event = _events_decoder.decode(data)
    if type(event) is _FastDepthUpdate:
        if event.first_update_id > event.last_update_id:
            return None
        return [
            BookUpdate(
                VENUE,
                event.symbol,
                tuple((positive_text(p), Decimal(q)) for p, q in event.bids),
                tuple((positive_text(p), Decimal(q)) for p, q in event.asks),
                ts_ms=event.event_time,
                first_update_id=event.first_update_id,
                last_update_id=event.last_update_id,
            )
        ]
    if type(event) is _FastAggTrade:
        if event.first_trade_id > event.last_trade_id:
            return None
        trade_id, channel = event.agg_id, "aggTrade"
    else:
        trade_id, channel = event.trade_id, "trade"
    return [
        TradeEvent(
            VENUE,
            event.symbol,
            str(trade_id),
            positive_text(event.price),
            positive_text(event.qty),
            _taker(event.buyer_is_maker),
            event.trade_time,
            channel,
        )
    ]


def _message(data: Any, symbol: str) -> list[FeedEvent]:
    body = require_object(data)
    if "stream" in body and "data" in body:
        if not isinstance(body["stream"], str):
            raise Invalid("combined stream: 'stream' is not a string")
        body = require_object(body["data"], "combined stream 'data'")
    elif "subscriptionId" in body and "event" in body:
        body = require_object(body["event"], "subscription 'event'")
    if "e" in body:
        kind = body["e"]
        if not isinstance(kind, str):
            raise Invalid("'e' (event type) is not a string")
        handler = _EVENTS.get(kind)
        return [UnhandledMessage(VENUE, kind)] if handler is None else [handler(body)]
    if "lastUpdateId" in body:
        return [_depth_snapshot(body, symbol)]
    if "u" in body and "s" in body:
        return [_book_ticker(body)]
    if "error" in body:
        error = convert(body, _ErrorResponse).error
        return [VenueNotice(VENUE, "error", f"{error.code}: {error.msg}"[:200])]
    if "result" in body and "id" in body:
        response = convert(body, _Response)
        streams = tuple((stream, ()) for stream in response.result or ())
        request_id = None if response.id is None else str(response.id)
        return [SubscriptionAck(VENUE, streams, request_id)]
    raise Invalid("not a Binance message (no 'e', 'lastUpdateId', 'u' or 'result')")


def _taker(buyer_is_maker: bool) -> Side:
    return "sell" if buyer_is_maker else "buy"


def _trade(body: dict[str, Any]) -> FeedEvent:
    trade = convert(body, _Trade)
    return TradeEvent(
        VENUE,
        trade.symbol,
        str(trade.trade_id),
        price(trade.price),
        positive_size(trade.qty),
        _taker(trade.buyer_is_maker),
        trade.trade_time,
        "trade",
    )


def _agg_trade(body: dict[str, Any]) -> FeedEvent:
    trade = convert(body, _AggTrade)
    if trade.first_trade_id > trade.last_trade_id:
        raise Invalid(f"aggTrade: first trade id {trade.first_trade_id} > last {trade.last_trade_id}")
    return TradeEvent(
        VENUE,
        trade.symbol,
        str(trade.agg_id),
        price(trade.price),
        positive_size(trade.qty),
        _taker(trade.buyer_is_maker),
        trade.trade_time,
        "aggTrade",
    )


def _book_ticker(body: dict[str, Any]) -> FeedEvent:
    ticker = convert(body, _BookTicker)
    return QuoteEvent(
        VENUE,
        ticker.symbol,
        price(ticker.bid, "bid"),
        size(ticker.bid_qty, "bid qty"),
        price(ticker.ask, "ask"),
        size(ticker.ask_qty, "ask qty"),
        ticker.trade_time if ticker.trade_time is not None else ticker.event_time,
        seq=ticker.update_id,
    )


def _depth_update(body: dict[str, Any]) -> FeedEvent:
    update = convert(body, _DepthUpdate)
    if update.first_update_id > update.last_update_id:
        raise Invalid(f"depthUpdate: U {update.first_update_id} > u {update.last_update_id}")
    return BookUpdate(
        VENUE,
        update.symbol,
        levels(update.bids, "bid", snapshot=False),
        levels(update.asks, "ask", snapshot=False),
        ts_ms=update.event_time,
        first_update_id=update.first_update_id,
        last_update_id=update.last_update_id,
    )


def _depth_snapshot(body: dict[str, Any], symbol: str) -> BookSnapshot:
    snapshot = convert(body, _DepthSnapshot)
    bids = levels(snapshot.bids, "bid", snapshot=True)
    asks = levels(snapshot.asks, "ask", snapshot=True)
    if not symbol:
        raise Invalid("REST depth snapshot without a symbol: pass symbol=")
    return BookSnapshot(VENUE, symbol.upper(), bids, asks, last_update_id=snapshot.last_update_id)


def _execution_report(body: dict[str, Any]) -> FeedEvent:
    report = convert(body, _ExecutionReport)
    last_qty = size(report.last_qty, "last qty (l)")
    last_price = size(report.last_price, "last price (L)")
    trade_id: str | None = None
    if report.exec_type == "TRADE":
        if report.trade_id < 0 or not last_qty or not last_price:
            raise Invalid("executionReport TRADE without a trade id, last qty or last price")
        trade_id = str(report.trade_id)
    return ExecutionReportEvent(
        venue=VENUE,
        instrument=report.symbol,
        client_order_id=report.client_order_id,
        orig_client_order_id=report.orig_client_order_id or None,
        venue_order_id=str(report.order_id),
        side="buy" if report.side == "BUY" else "sell",
        order_type=report.order_type,
        time_in_force=report.time_in_force,
        exec_type=report.exec_type,
        status=report.status,
        reject_reason=report.reject_reason,
        order_qty=size(report.order_qty, "order qty (q)"),
        order_price=size(report.order_price, "order price (p)"),
        last_qty=last_qty,
        last_price=last_price,
        cum_qty=size(report.cum_qty, "cum qty (z)"),
        cum_quote_qty=size(report.cum_quote_qty, "cum quote qty (Z)"),
        commission=size(report.commission, "commission (n)"),
        commission_asset=report.commission_asset,
        trade_id=trade_id,
        is_maker=report.is_maker,
        ts_ms=report.transaction_time,
        event_ts_ms=report.event_time,
    )


def _notice(kind: str) -> _Handler:
    def notice(body: dict[str, Any]) -> FeedEvent:
        return VenueNotice(VENUE, kind, ts_ms=convert(body, _Notice).event_time)

    return notice


_EVENTS: dict[str, _Handler] = {
    "trade": _trade,
    "aggTrade": _agg_trade,
    "bookTicker": _book_ticker,
    "depthUpdate": _depth_update,
    "executionReport": _execution_report,
    "serverShutdown": _notice("serverShutdown"),
    "eventStreamTerminated": _notice("eventStreamTerminated"),
}
