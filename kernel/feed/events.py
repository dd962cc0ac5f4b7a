"""Typed market-data events: what every venue decoder returns, whatever the wire format.

Events are frozen ``msgspec`` Structs (built in a fifth of a frozen dataclass's time, once per
message: issue 17). Prices and sizes are ``Decimal`` read exactly from the
frame's text (never through a float); ``ts_ms`` is the venue's own time in integer milliseconds
since the epoch, or ``None`` when the message carries none (time is never read from a clock here).
``instrument`` is the venue's own symbol as sent (``NKNUSDT``, ``BAND-GBP``, ``BTC/USD``): mapping
symbols onto the kernel's instruments is the caller's business.

A frame that cannot be decoded raises ``DecodeError``: it names the venue and the reason and keeps
a short ``sample`` of the frame, so the caller can count it, journal it as an anomaly and carry on.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from kernel.feed.errors import FeedError

Venue = Literal["paper", "binance", "coinbase", "kraken"]
Side = Literal["buy", "sell"]
Level = tuple[Decimal, Decimal]
"""One price level: ``(price, qty)``; in an update a ``qty`` of 0 deletes the level."""

SAMPLE_CHARS = 200
"""The most characters of a bad frame a ``DecodeError`` keeps."""


class DecodeError(FeedError, ValueError):
    """A frame that is not a valid message of ``venue``: ``reason`` says why, ``sample`` shows it.

    Never fatal: the caller counts it, journals it as an anomaly (reason + sample) and drops the frame.
    """

    def __init__(self, venue: Venue, reason: str, sample: str) -> None:
        self.venue: Venue = venue
        self.reason = reason
        self.sample = sample[:SAMPLE_CHARS]
        super().__init__(f"{venue}: {reason}")


class TradeEvent(msgspec.Struct, frozen=True):
    """A trade printed on the market. ``taker_side`` is the aggressor's side.

    ``channel`` names the venue's stream (``trade``, ``aggTrade``, ``match``, ``last_match``,
    ``trades``); ``seq`` is the venue's message sequence number when it sends one (paper ``seq``,
    Coinbase ``sequence``).
    """

    venue: Venue
    instrument: str
    trade_id: str
    price: Decimal
    qty: Decimal
    taker_side: Side
    ts_ms: int
    channel: str
    seq: int | None = None


class QuoteEvent(msgspec.Struct, frozen=True):
    """Top of book: best bid and ask. Sizes are ``None`` where the venue does not send them
    (Coinbase ``ticker``); ``last_price``/``last_qty`` are the last trade when the message has it.

    ``seq`` is the venue's sequence or update id (paper ``seq``, Binance ``u``, Coinbase ``sequence``).
    """

    venue: Venue
    instrument: str
    bid: Decimal
    bid_qty: Decimal | None
    ask: Decimal
    ask_qty: Decimal | None
    ts_ms: int | None
    seq: int | None = None
    last_price: Decimal | None = None
    last_qty: Decimal | None = None


class BookSnapshot(msgspec.Struct, frozen=True):
    """A full (or depth-limited) book: bids best first, asks best first.

    ``last_update_id`` is Binance's ``lastUpdateId``; ``checksum`` is Kraken's CRC32 of the top 10.
    """

    venue: Venue
    instrument: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts_ms: int | None = None
    last_update_id: int | None = None
    checksum: int | None = None


class BookUpdate(msgspec.Struct, frozen=True):
    """Changes to a book, in the order the venue sent them: a ``qty`` of 0 deletes the level.

    ``first_update_id``/``last_update_id`` are Binance's ``U``/``u``; ``checksum`` is Kraken's
    CRC32 of the top 10 after the changes. Coinbase ``l2update`` carries no sequence at all.
    """

    venue: Venue
    instrument: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts_ms: int | None = None
    first_update_id: int | None = None
    last_update_id: int | None = None
    checksum: int | None = None


class HeartbeatEvent(msgspec.Struct, frozen=True):
    """The venue is alive. Coinbase heartbeats name a product and carry its ``sequence`` and
    ``last_trade_id``; Kraken's carry nothing."""

    venue: Venue
    ts_ms: int | None = None
    instrument: str | None = None
    seq: int | None = None
    last_trade_id: str | None = None


class SubscriptionAck(msgspec.Struct, frozen=True):
    """A subscription answered: ``channels`` pairs each channel with its instruments.

    ``success`` is false (and ``error`` says why) when the venue refused it (Kraken).
    """

    venue: Venue
    channels: tuple[tuple[str, tuple[str, ...]], ...]
    request_id: str | None = None
    success: bool = True
    error: str | None = None


class ExecutionReportEvent(msgspec.Struct, frozen=True):
    """A Binance ``executionReport``: what happened to one order (``exec_type``) and its state
    after it (``status``), with Binance's own names (``NEW``, ``TRADE``, ``PARTIALLY_FILLED`` ...).

    ``trade_id`` is ``None`` unless ``exec_type`` is ``TRADE``; ``orig_client_order_id`` is the
    order a cancel refers to (Binance ``C``), ``None`` when empty.
    """

    venue: Venue
    instrument: str
    client_order_id: str
    orig_client_order_id: str | None
    venue_order_id: str
    side: Side
    order_type: str
    time_in_force: str
    exec_type: str
    status: str
    reject_reason: str
    order_qty: Decimal
    order_price: Decimal
    last_qty: Decimal
    last_price: Decimal
    cum_qty: Decimal
    cum_quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None
    trade_id: str | None
    is_maker: bool
    ts_ms: int
    event_ts_ms: int


class VenueNotice(msgspec.Struct, frozen=True):
    """Something the venue says about the connection or stream rather than the market:
    Binance ``serverShutdown``/``eventStreamTerminated``, Coinbase ``error``, Kraken ``status``."""

    venue: Venue
    kind: str
    detail: str = ""
    ts_ms: int | None = None


class UnhandledMessage(msgspec.Struct, frozen=True):
    """A well-formed message of a type this decoder does not turn into market data (Coinbase
    ``open``, Kraken ``ohlc``, a paper ``execution``): not an anomaly, but the caller may count it."""

    venue: Venue
    kind: str


FeedEvent = (
    TradeEvent
    | QuoteEvent
    | BookSnapshot
    | BookUpdate
    | HeartbeatEvent
    | SubscriptionAck
    | ExecutionReportEvent
    | VenueNotice
    | UnhandledMessage
)
