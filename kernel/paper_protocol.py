"""The venue protocol, version 1: JSON objects over WebSocket, one message per frame.

Every message is an object with a ``type``. Decimal quantities and prices travel as strings
("0.0015") and decode to ``Decimal``; timestamps are integer milliseconds since the epoch. The full
description, with examples, is ``docs/venue-protocol.md``; this module is its single source for
code: the message types, ``decode`` (bytes → typed message or ``ProtocolError``) and ``encode``.

Both sides answer a malformed or unknown message with an ``Error`` and carry on: a bad frame is
never fatal to the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from decimal import Decimal
from typing import Annotated, Literal, TypeVar

import msgspec

from machines.decimals import DecimalError, Sign, parse_decimal
from machines.errors import TradekernelError

VERSION = 1
"""The protocol version this code speaks (``hello``/``welcome`` carry it)."""

PAGE_DEFAULT = 1_000
"""Items in an ``open_orders``/``fills_since`` page when the request gives no ``limit``."""
PAGE_MAX = 5_000
"""The most items a page holds: a larger ``limit`` is clamped to it."""
PAGE_MAX_BYTES = 2**22
"""The venue ends a page before its frame would pass 4 MiB (far below a client's 32 MiB ``max_size``)."""

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["gtc", "ioc", "fok", "day"]
Liquidity = Literal["maker", "taker"]
"""A fill's side of the match: ``maker`` (the order rested on the book), ``taker`` (it took from it)."""
Status = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]
Exec = Literal[
    "new", "rejected", "trade", "canceled", "replaced", "expired", "restated", "cancel_rejected", "replace_rejected"
]
ErrorCode = Literal[
    "malformed",
    "unknown_type",
    "unsupported_version",
    "invalid",
    "unknown_order",
    "internal",
    "auth_failed",
    "not_authenticated",
    "rate_limited",
    "too_many_connections",
]


MAX_CLIENT_ORDER_ID = 36
"""The longest client order id the kernel makes (Binance's ``newClientOrderId`` limit)."""
CLIENT_ORDER_ID_CHARS = "[.A-Z:/a-z0-9_-]"
"""The characters of a client order id the kernel makes (Binance's ``newClientOrderId`` pattern)."""
_CLIENT_ORDER_ID = re.compile(rf"{CLIENT_ORDER_ID_CHARS}{{1,{MAX_CLIENT_ORDER_ID}}}")


def valid_client_order_id(client_order_id: str) -> bool:
    """True when ``client_order_id`` is 1 to ``MAX_CLIENT_ORDER_ID`` characters of ``CLIENT_ORDER_ID_CHARS``.

    The paper venue itself accepts any non-empty id (compatibility); the kernel keeps to this.
    """
    return _CLIENT_ORDER_ID.fullmatch(client_order_id) is not None


class Message(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=False):
    """Base of every protocol message; ``type`` is the tag."""


# -- client → venue ---------------------------------------------------------------------------


class Hello(Message, tag="hello", frozen=True):
    """First message of a session: the protocol version the client speaks and, for a venue that
    authenticates, the account's ``api_key``; answering the venue's ``challenge``, also its
    ``nonce`` and the ``signature`` over both (``sign``)."""

    version: int
    client: str = ""
    api_key: str = ""
    nonce: str = ""
    signature: str = ""

    def __repr__(self) -> str:
        return f"Hello(version={self.version}, client={self.client!r}, api_key={self.api_key!r})"


class Subscribe(Message, tag="subscribe", frozen=True):
    """Market data for ``instruments`` on ``channels`` (``trades``, ``quotes``)."""

    instruments: list[str]
    channels: list[Literal["trades", "quotes"]] = msgspec.field(default_factory=lambda: ["trades", "quotes"])
    id: str = ""


class NewOrder(Message, tag="new_order", frozen=True):
    """Enter an order. A ``client_order_id`` the venue has seen is never a second order."""

    client_order_id: str
    instrument: str
    side: Side
    qty: Decimal
    order_type: OrderType = "limit"
    tif: TimeInForce = "gtc"
    price: Decimal | None = None


class CancelOrder(Message, tag="cancel_order", frozen=True):
    """Ask to cancel an order."""

    client_order_id: str


class ReplaceOrder(Message, tag="replace_order", frozen=True):
    """Ask to change an order's quantity and/or price."""

    client_order_id: str
    qty: Decimal | None = None
    price: Decimal | None = None


class OrderStatusRequest(Message, tag="order_status", frozen=True):
    """Ask for one order's status (``id`` correlates the answer)."""

    client_order_id: str
    id: str = ""


class OpenOrdersRequest(Message, tag="open_orders", frozen=True):
    """Ask for one page of the orders not yet done: those whose ``client_order_id`` sorts after
    ``after`` ("" from the start), at most ``limit`` (``None``: the venue's default page)."""

    id: str = ""
    after: str = ""
    limit: int | None = None


Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer a client sends that the venue stores or queries (SQLite's range: 2**64 was an ``internal`` error)."""


class FillsSinceRequest(Message, tag="fills_since", frozen=True):
    """Ask for one page of the fills with ``fill_seq`` greater than ``after``, at most ``limit``
    (``None``: the venue's default page)."""

    after: Int64 = 0
    id: str = ""
    limit: int | None = None


class BalancesRequest(Message, tag="balances", frozen=True):
    """Ask for the balances of the connection's account (``id`` correlates the answer)."""

    id: str = ""


class Ping(Message, tag="ping", frozen=True):
    """Liveness check; answered with ``pong``."""

    id: str = ""


# -- venue → client ---------------------------------------------------------------------------


class Challenge(Message, tag="challenge", frozen=True):
    """A venue that authenticates answers a ``hello`` that brings an ``api_key`` but no signature
    with this: the next ``hello`` signs ``nonce`` (``sign``)."""

    nonce: str
    version: int = VERSION


class Welcome(Message, tag="welcome", frozen=True):
    """Answer to ``hello``: the venue's version, session id, instruments and the account the session acts for."""

    version: int
    session: str
    instruments: list[str]
    account: str = "local"


class Subscribed(Message, tag="subscribed", frozen=True):
    """Answer to ``subscribe``."""

    instruments: list[str]
    channels: list[str]
    id: str = ""


class Trade(Message, tag="trade", frozen=True):
    """A market trade. ``seq`` counts per (instrument, channel) from 1, with no gaps."""

    instrument: str
    seq: int
    trade_id: str
    price: Decimal
    qty: Decimal
    taker_side: Side
    ts_ms: int


class Quote(Message, tag="quote", frozen=True):
    """Top of book. ``seq`` counts per (instrument, channel) from 1, with no gaps."""

    instrument: str
    seq: int
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal
    ts_ms: int


class Heartbeat(Message, tag="heartbeat", frozen=True):
    """Sent when no other message went out for a while."""

    ts_ms: int


class Fill(msgspec.Struct, frozen=True):
    """One execution of an order. ``trade_id`` is unique at the venue; ``fill_seq`` counts fills.
    ``liquidity``: ``maker`` or ``taker``; ``None`` (``null``, or left out by a venue that predates
    it) when the venue does not say."""

    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fill_seq: int
    ts_ms: int = 0
    client_order_id: str = ""
    liquidity: Liquidity | None = None


class OrderSnapshot(msgspec.Struct, frozen=True):
    """An order as the venue holds it (status queries, open orders, duplicate submits)."""

    client_order_id: str
    venue_order_id: str
    instrument: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    qty: Decimal
    price: Decimal | None
    status: Status
    cum_qty: Decimal
    leaves_qty: Decimal
    fills: list[Fill]
    duplicate_submits: int = 0
    reason: str | None = None


class Execution(Message, tag="execution", frozen=True):
    """An execution report: what happened to one order, and its state after it."""

    client_order_id: str
    exec: Exec
    status: Status
    venue_order_id: str
    qty: Decimal
    price: Decimal | None
    cum_qty: Decimal
    leaves_qty: Decimal
    ts_ms: int
    fill: Fill | None = None
    reason: str | None = None


class OrderStatus(Message, tag="order_status_report", frozen=True):
    """Answer to ``order_status`` (``order`` is null for an unknown id) or to a duplicate submit."""

    client_order_id: str
    order: OrderSnapshot | None
    duplicate: bool = False
    id: str = ""


class OpenOrders(Message, tag="open_orders_report", frozen=True):
    """Answer to ``open_orders``: one page, in ``client_order_id`` order. ``more``: ask again with
    ``after = next`` (the last id of this page) for the rest."""

    orders: list[OrderSnapshot]
    id: str = ""
    more: bool = False
    next: str = ""


class Fills(Message, tag="fills_report", frozen=True):
    """Answer to ``fills_since``: one page, in ``fill_seq`` order. ``more``: ask again with
    ``after = next`` (the last ``fill_seq`` of this page). ``last_fill_seq``: the venue's newest
    fill when it answered (0: none); lower than a client's cursor means the venue's history restarted."""

    fills: list[Fill]
    id: str = ""
    more: bool = False
    next: int = 0
    last_fill_seq: int = 0


class Balance(msgspec.Struct, frozen=True):
    """One asset of an account: ``total`` held, ``available`` = total less what open orders reserve."""

    asset: str
    total: Decimal
    available: Decimal


class BalancesReport(Message, tag="balances_report", frozen=True):
    """Answer to ``balances``: every asset of the account's instruments (and any it holds), by name."""

    balances: list[Balance]
    id: str = ""


class Pong(Message, tag="pong", frozen=True):
    """Answer to ``ping``."""

    id: str = ""


class Error(Message, tag="error", frozen=True, omit_defaults=True):
    """A request could not be served; ``ref`` names the request (its ``id`` or ``type``).

    ``rate_limited`` names the order request's ``client_order_id`` and ``retry_after_ms`` (when the
    account may send again); both are left out of other errors."""

    code: ErrorCode
    message: str
    ref: str = ""
    client_order_id: str = ""
    retry_after_ms: int | None = None


ClientMessage = (
    Hello
    | Subscribe
    | NewOrder
    | CancelOrder
    | ReplaceOrder
    | OrderStatusRequest
    | OpenOrdersRequest
    | FillsSinceRequest
    | BalancesRequest
    | Ping
)
VenueMessage = (
    Challenge
    | Welcome
    | Subscribed
    | Trade
    | Quote
    | Heartbeat
    | Execution
    | OrderStatus
    | OpenOrders
    | Fills
    | BalancesReport
    | Pong
    | Error
)


def secret_key(secret: str) -> str:
    """The signing key derived from an account's ``secret`` (hex SHA-256): the client computes it,
    the venue stores it (never the secret)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def sign(key: str, nonce: str, api_key: str) -> str:
    """The ``hello`` signature: hex HMAC-SHA256, keyed by ``key`` (``secret_key``), of ``nonce + "\\n" + api_key``."""
    return hmac.new(key.encode(), f"{nonce}\n{api_key}".encode(), hashlib.sha256).hexdigest()


class ProtocolError(TradekernelError, ValueError):
    """A frame that is not a valid message; ``code`` is what the ``Error`` reply carries."""

    def __init__(self, code: ErrorCode, message: str, ref: str = "") -> None:
        self.code = code
        self.ref = ref
        super().__init__(message)

    def reply(self) -> Error:
        """The ``Error`` message to send back."""
        return Error(code=self.code, message=str(self), ref=self.ref)


_encoder = msgspec.json.Encoder()
_client_decoder = msgspec.json.Decoder(ClientMessage)
_venue_decoder = msgspec.json.Decoder(VenueMessage)
_probe = msgspec.json.Decoder(dict[str, object])
_text_probe = msgspec.json.Decoder(dict[str, object], float_hook=str)


def encode(message: Message) -> bytes:
    """A message as JSON bytes (decimals as strings)."""
    return _encoder.encode(message)


def encode_item(item: msgspec.Struct) -> bytes:
    """One item of a message (a fill, an order snapshot) as JSON bytes: what it adds to a frame."""
    return _encoder.encode(item)


_M = TypeVar("_M")

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a frame may have (a valid message has 4 at most)."""
MAX_FRAME_BYTES = 2**25
"""The largest frame decoded (32 MiB, the ``VenueClient`` default ``max_size``)."""
CLIENT_MAX_DEPTH = 8
"""The deepest nesting a client frame may have (a valid one has 2: an object holding a list)."""
CLIENT_MAX_FRAME_BYTES = 64 * 1024
"""The largest client frame the venue decodes (an order is a few hundred bytes)."""
WIRE_MAX_PLACES = 18
"""The most decimal places a client's ``qty``/``price`` may have (``1e-30`` is refused)."""
WIRE_DECIMALS = ("qty", "price")
"""The decimal fields of ``new_order``/``replace_order``, read strictly (``wire_decimal``)."""

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def nesting_exceeds(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when ``data`` (JSON text) nests arrays/objects deeper than ``limit`` (allows at least
    ``limit`` levels, refuses anything past ``2 * limit``).

    Cheap, and run before parsing, every step at C speed: escapes are dropped, then everything but
    brackets and quotes, then strings (with any brackets in them); each pass then removes the
    innermost empty ``[]`` and ``{}`` pairs, at most ``limit`` passes. Unbalanced brackets are left
    for the parser to reject.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = b"".join(unescaped.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    for _ in range(limit):
        shorter = skeleton.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter or len(shorter) == len(skeleton):
            return False
        skeleton = shorter
    return True


def bound_frame(data: bytes, *, max_bytes: int = MAX_FRAME_BYTES, max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``data`` is refused before parsing (too large, nested too deeply), or ``None``."""
    if len(data) > max_bytes:
        return f"frame of {len(data)} bytes is larger than {max_bytes}"
    if nesting_exceeds(data, max_depth):
        return f"nested more than {max_depth} deep"
    return None


def wire_decimal(value: object, name: str) -> Decimal:
    """A decimal field of a client order message as it came off the wire (a string, or the text of
    a JSON number): ASCII digits, at most one point, an optional leading minus, an optional exponent
    of at most two digits (``str(Decimal)`` writes 0.0000001 as ``1E-7``), at most
    ``machines.decimals.MAX_DIGITS`` digits, a magnitude below 10**``MAX_ADJUSTED``, at most
    ``WIRE_MAX_PLACES`` decimal places, positive. Raises ``DecimalError`` naming ``name``."""
    if isinstance(value, bool):
        raise DecimalError(f"{name} must be a decimal string, got {value!r}")
    number = parse_decimal(value, name, sign=Sign.positive, plain_text=True, bounded=True, scientific=True)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -WIRE_MAX_PLACES:
        raise DecimalError(f"{name}: more than {WIRE_MAX_PLACES} decimal places: {str(value)[:40]!r}")
    return number


def _check_wire_decimals(data: bytes, message: NewOrder | ReplaceOrder) -> None:
    """``ProtocolError`` (``invalid``, naming the field and the order) for a ``qty``/``price`` that
    msgspec's ``Decimal`` would take but the wire must not (``1e-30``, ``"١"``, ``" 1_0 "``, NaN,
    huge, not positive): the raw text is read again, JSON numbers as their text."""
    raw = _text_probe.decode(data)
    for name in WIRE_DECIMALS:
        value = raw.get(name)
        if value is None:
            continue
        try:
            wire_decimal(value, name)
        except DecimalError as exc:
            coid = message.client_order_id
            kind = message.__struct_config__.tag
            raise ProtocolError("invalid", f"{kind} {coid!r}: {exc}", str(kind)) from None


def _decode(
    frame: bytes | str,
    decoder: msgspec.json.Decoder[_M],
    side: str,
    max_bytes: int = MAX_FRAME_BYTES,
    max_depth: int = MAX_DEPTH,
) -> _M:
    data = frame.encode() if isinstance(frame, str) else frame
    refused = bound_frame(data, max_bytes=max_bytes, max_depth=max_depth)
    if refused is not None:
        raise ProtocolError("malformed", f"not a {side} message: {refused}")
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        ref = ""
        detail = ""
        try:
            probe = _probe.decode(data)
            ref = str(probe.get("id") or probe.get("type") or "")
            if isinstance(probe.get("client_order_id"), str):
                detail = f" (client_order_id {probe['client_order_id']!r})"
            known = "Invalid value" not in str(exc) or "`$.type`" not in str(exc)
        except msgspec.DecodeError:
            known = True
        code: ErrorCode = "invalid" if known else "unknown_type"
        raise ProtocolError(code, f"invalid {side} message: {exc}{detail}", ref) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("malformed", f"not a JSON message: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed", f"not a {side} message: nested too deeply") from None


def decode_client(frame: bytes | str) -> ClientMessage:
    """Decode a frame the venue received; ``ProtocolError`` for anything but a valid message.

    Client frames are bounded tighter than the venue's (``CLIENT_MAX_FRAME_BYTES``,
    ``CLIENT_MAX_DEPTH``) and the decimals of order messages are read strictly (``wire_decimal``).
    """
    message = _decode(frame, _client_decoder, "client", CLIENT_MAX_FRAME_BYTES, CLIENT_MAX_DEPTH)
    if isinstance(message, NewOrder | ReplaceOrder):
        _check_wire_decimals(frame.encode() if isinstance(frame, str) else frame, message)
    return message


def decode_venue(frame: bytes | str) -> VenueMessage:
    """Decode a frame the client received; ``ProtocolError`` for anything but a valid message."""
    return _decode(frame, _venue_decoder, "venue")
