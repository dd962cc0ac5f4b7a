"""Market data: venue frames decoded into typed events, order books kept whole, one feed client.

``source`` is the seam a venue plugs into: a ``MarketDataSource`` (URL, greeting, subscribe
frames, decode, sync procedure, kept books) that the venue-neutral ``client.FeedClient`` drives;
``paper_source`` holds the paper venue's (``PaperMarketData``), ``binance_source``,
``coinbase_source`` and ``kraken_source`` the live venues' (``live`` what they share), and
``venues`` names them all (``SOURCES``, ``make_source``). ``rest`` fetches REST answers (Binance's
depth snapshots, ``rules``' exchange info) with timeouts, retries and the venue's rate limits;
``snapshots`` runs a source's snapshots beside the socket; ``record`` writes a session to replay.
``decoders`` turns a frame of the paper venue, Binance spot, Coinbase Exchange or Kraken v2 into a
list of ``events`` (or a ``DecodeError`` to journal as an anomaly); ``book`` builds order books
from snapshots and updates and reports a ``Gap`` when a venue's sequence or checksum says the book
(or stream) of one instrument is broken. Decoders, books and sync procedures are pure code: no
I/O, no clock, no asyncio.
"""

from kernel.feed.book import (
    BinanceDepthSync,
    CoinbaseTradeSequence,
    Gap,
    KrakenBook,
    OrderBook,
    PaperSequence,
    Stale,
    TopOfBook,
    kraken_checksum,
)
from kernel.feed.decoders import DECODERS, decode_binance, decode_coinbase, decode_kraken, decode_paper
from kernel.feed.events import (
    BookSnapshot,
    BookUpdate,
    DecodeError,
    ExecutionReportEvent,
    FeedEvent,
    HeartbeatEvent,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    UnhandledMessage,
    VenueNotice,
)

__all__ = [
    "DECODERS",
    "BinanceDepthSync",
    "BookSnapshot",
    "BookUpdate",
    "CoinbaseTradeSequence",
    "DecodeError",
    "ExecutionReportEvent",
    "FeedEvent",
    "Gap",
    "HeartbeatEvent",
    "KrakenBook",
    "OrderBook",
    "PaperSequence",
    "QuoteEvent",
    "Stale",
    "SubscriptionAck",
    "TopOfBook",
    "TradeEvent",
    "UnhandledMessage",
    "VenueNotice",
    "decode_binance",
    "decode_coinbase",
    "decode_kraken",
    "decode_paper",
    "kraken_checksum",
]
