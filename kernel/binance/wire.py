"""The Binance spot WebSocket API messages the client reads, as msgspec structs.

A frame is either a **response** (``id``, ``status``, ``result`` or ``error``, ``rateLimits``) or
an **event** (``{"subscriptionId": n, "event": {"e": ..., ...}}``; ``serverShutdown`` comes without
``subscriptionId``). ``decode_frame`` tells them apart; ``decode_result`` reads a response's
``result`` into the struct the request expects; ``decode_event`` reads an event by its ``e``.

Decimal fields stay text here (``str``): ``kernel.binance.reports`` reads them with
``parse_decimal``, so money never passes through a float. Unknown fields are ignored (Binance adds
fields over time); the single-letter user-data names are given full names through ``name=``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from kernel.binance.errors import BinanceWireError

# -- responses ----------------------------------------------------------------------------------


class RateLimit(msgspec.Struct, frozen=True, rename="camel"):
    """One entry of ``rateLimits``: usage ``count`` of ``limit`` per ``interval_num`` ``interval``s."""

    rate_limit_type: str
    interval: str
    interval_num: int
    limit: int
    count: int | None = None


class ErrorObject(msgspec.Struct, frozen=True):
    """A response's ``error``: Binance's ``code`` and ``msg``, and ``data`` when it has some
    (``retryAfter``/``serverTime`` on 429/418, the two halves of a failed ``order.cancelReplace``)."""

    code: int
    msg: str
    data: dict[str, Any] | None = None


class Response(msgspec.Struct, frozen=True, rename={"rate_limits": "rateLimits"}):
    """An answer to request ``id``. ``status`` is HTTP-like (200 ok, 4xx ours, 5xx outcome unknown)."""

    id: str | int | None
    status: int
    result: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    """The raw ``result`` (empty when absent): read it with ``decode_result``."""
    error: ErrorObject | None = None
    rate_limits: list[RateLimit] = msgspec.field(default_factory=list)


class EventFrame(msgspec.Struct, frozen=True, rename={"subscription_id": "subscriptionId"}):
    """A pushed event: ``event`` still raw (``decode_event`` reads it)."""

    event: msgspec.Raw
    subscription_id: int | None = None


# -- results ------------------------------------------------------------------------------------


class ServerTime(msgspec.Struct, frozen=True, rename="camel"):
    """Result of ``time``."""

    server_time: int


class FillRow(msgspec.Struct, frozen=True, rename="camel"):
    """One fill in an ``order.place`` FULL answer (``tradeId`` is the trade's id)."""

    price: str
    qty: str
    commission: str
    commission_asset: str
    trade_id: int


class OrderJson(msgspec.Struct, frozen=True, rename="camel"):
    """An order as ``order.status``, ``openOrders.status``, ``order.place`` (RESULT/FULL),
    ``order.cancel`` and the halves of ``order.cancelReplace`` give it. ``orig_client_order_id`` is
    set on cancel answers (the canceled order's id; ``client_order_id`` is then the cancel's)."""

    symbol: str
    order_id: int
    client_order_id: str
    price: str
    orig_qty: str
    executed_qty: str
    status: str
    time_in_force: str
    type: str
    side: str
    cummulative_quote_qty: str = "0"
    orig_client_order_id: str = ""
    time: int | None = None
    update_time: int | None = None
    transact_time: int | None = None
    working_time: int | None = None
    fills: list[FillRow] = msgspec.field(default_factory=list)


class TradeRow(msgspec.Struct, frozen=True, rename="camel"):
    """One row of ``myTrades``: ``id`` is the trade id (our ``fill_seq``); no client order id."""

    symbol: str
    id: int
    order_id: int
    price: str
    qty: str
    commission: str
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool
    quote_qty: str = "0"


class AssetBalance(msgspec.Struct, frozen=True):
    """One asset of ``account.status``: ``free`` and ``locked`` (in open orders)."""

    asset: str
    free: str
    locked: str


class AccountStatus(msgspec.Struct, frozen=True, rename="camel"):
    """Result of ``account.status`` (the fields the client and ``venue check`` read)."""

    can_trade: bool
    balances: list[AssetBalance]
    can_withdraw: bool | None = None
    can_deposit: bool | None = None
    account_type: str = ""
    permissions: list[str] = msgspec.field(default_factory=list)
    update_time: int | None = None


class SubscribeResult(msgspec.Struct, frozen=True, rename="camel"):
    """Result of ``userDataStream.subscribe.signature``."""

    subscription_id: int


# -- user data events ---------------------------------------------------------------------------


class ExecutionReportEvent(msgspec.Struct, frozen=True):
    """``executionReport``: one change to one order (fields by their single-letter wire names)."""

    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    client_order_id: str = msgspec.field(name="c")
    side: str = msgspec.field(name="S")
    order_type: str = msgspec.field(name="o")
    time_in_force: str = msgspec.field(name="f")
    qty: str = msgspec.field(name="q")
    price: str = msgspec.field(name="p")
    execution_type: str = msgspec.field(name="x")
    status: str = msgspec.field(name="X")
    reject_reason: str = msgspec.field(name="r")
    order_id: int = msgspec.field(name="i")
    last_qty: str = msgspec.field(name="l")
    cum_qty: str = msgspec.field(name="z")
    last_price: str = msgspec.field(name="L")
    commission: str = msgspec.field(name="n")
    transaction_time: int = msgspec.field(name="T")
    trade_id: int = msgspec.field(name="t")
    orig_client_order_id: str = msgspec.field(default="", name="C")
    commission_asset: str | None = msgspec.field(default=None, name="N")
    order_time: int | None = msgspec.field(default=None, name="O")
    cum_quote_qty: str = msgspec.field(default="0", name="Z")
    is_maker: bool | None = msgspec.field(default=None, name="m")
    """Is this trade the maker side? (a ``TRADE``'s liquidity; ``None`` when the report leaves it out)."""
    expiry_reason: str = msgspec.field(default="", name="eR")


class PositionBalance(msgspec.Struct, frozen=True):
    """One asset in ``outboundAccountPosition``: free ``f`` and locked ``l``."""

    asset: str = msgspec.field(name="a")
    free: str = msgspec.field(name="f")
    locked: str = msgspec.field(name="l")


class AccountPositionEvent(msgspec.Struct, frozen=True):
    """``outboundAccountPosition``: the new balances of the assets that changed."""

    event_time: int = msgspec.field(name="E")
    update_time: int = msgspec.field(name="u")
    balances: list[PositionBalance] = msgspec.field(name="B")


class BalanceUpdateEvent(msgspec.Struct, frozen=True):
    """``balanceUpdate``: a deposit, withdrawal or transfer changed ``asset`` by ``delta``."""

    event_time: int = msgspec.field(name="E")
    asset: str = msgspec.field(name="a")
    delta: str = msgspec.field(name="d")
    clear_time: int = msgspec.field(default=0, name="T")


class StreamTerminatedEvent(msgspec.Struct, frozen=True):
    """``eventStreamTerminated``: the user data subscription ended; subscribe again."""

    event_time: int = msgspec.field(name="E")


class ServerShutdownEvent(msgspec.Struct, frozen=True):
    """``serverShutdown``: the server is about to close this connection; reconnect."""

    event_time: int = msgspec.field(name="E")


class OtherEvent(msgspec.Struct, frozen=True):
    """An event type the client does not act on (``listStatus``, ``externalLockUpdate``, ...)."""

    event_type: str


UserEvent = (
    ExecutionReportEvent
    | AccountPositionEvent
    | BalanceUpdateEvent
    | StreamTerminatedEvent
    | ServerShutdownEvent
    | OtherEvent
)
"""What ``decode_event`` returns."""

_EVENT_TYPES: dict[str, type[msgspec.Struct]] = {
    "executionReport": ExecutionReportEvent,
    "outboundAccountPosition": AccountPositionEvent,
    "balanceUpdate": BalanceUpdateEvent,
    "eventStreamTerminated": StreamTerminatedEvent,
    "serverShutdown": ServerShutdownEvent,
}

# -- decoding -----------------------------------------------------------------------------------

_T = TypeVar("_T")


class _Probe(msgspec.Struct, frozen=True):
    id: str | int | None = None
    status: int | None = None
    event: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _EventType(msgspec.Struct, frozen=True):
    e: str


_probe = msgspec.json.Decoder(_Probe)
_response = msgspec.json.Decoder(Response)
_event_frame = msgspec.json.Decoder(EventFrame)
_event_type = msgspec.json.Decoder(_EventType)


def decode_frame(data: bytes | str) -> Response | EventFrame:
    """A text frame as a ``Response`` (it has ``status``) or an ``EventFrame`` (it has ``event``).
    Raises ``BinanceWireError`` for anything else."""
    try:
        probe = _probe.decode(data)
        if probe.event:
            return _event_frame.decode(data)
        if probe.status is not None:
            return _response.decode(data)
    except msgspec.DecodeError as exc:
        raise BinanceWireError(f"undecodable frame: {exc}") from None
    raise BinanceWireError("frame is neither a response nor an event")


def decode_result(response: Response, kind: type[_T]) -> _T:
    """``response.result`` as ``kind`` (e.g. ``OrderJson``, ``list[TradeRow]``). Raises
    ``BinanceWireError`` when there is no result or it does not fit."""
    if not response.result or bytes(response.result) == b"null":
        raise BinanceWireError(f"response {response.id!r} has no result")
    try:
        return msgspec.json.decode(response.result, type=kind)
    except msgspec.DecodeError as exc:
        raise BinanceWireError(f"response {response.id!r}: unexpected result: {exc}") from None


def decode_event(raw: msgspec.Raw | bytes) -> UserEvent:
    """An event object by its ``e``; an unknown ``e`` gives ``OtherEvent``. Raises ``BinanceWireError``
    when it does not decode."""
    try:
        name = _event_type.decode(raw).e
        kind = _EVENT_TYPES.get(name)
        if kind is None:
            return OtherEvent(event_type=name)
        event: UserEvent = msgspec.json.decode(raw, type=kind)  # type: ignore[assignment]
    except msgspec.DecodeError as exc:
        raise BinanceWireError(f"undecodable event: {exc}") from None
    return event
