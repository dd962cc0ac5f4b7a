"""Every market-data source by venue name: ``SOURCES`` and ``make_source``.

* ``paper`` (``paper_source``): the paper venue's ``trades`` and ``quotes`` (``seq`` per channel).
* ``binance`` (``binance_source``): ``<sym>@depth@100ms``, ``@trade``, ``@bookTicker`` as combined
  streams; books from the REST snapshot and ``U``/``u``.
* ``coinbase`` (``coinbase_source``): ``level2_batch``, ``matches``, ``ticker``, ``heartbeat``;
  books from ``snapshot`` + ``l2update``.
* ``kraken`` (``kraken_source``): ``book`` (depth 10, CRC32 checksums), ``trade``, ``ticker``.

Every endpoint is configurable; ``None`` means the venue's public production endpoint (the paper
venue has none: its URL is required). See docs/venues/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from kernel.feed.binance_source import BINANCE_REST, BINANCE_WS, BinanceMarketData, BinanceSync
from kernel.feed.coinbase_source import COINBASE_REST, COINBASE_WS, CoinbaseMarketData, CoinbaseSync
from kernel.feed.errors import FeedError
from kernel.feed.kraken_source import KRAKEN_REST, KRAKEN_WS, KrakenMarketData, KrakenSync
from kernel.feed.live import WholeAtSubscribe
from kernel.feed.paper_source import PaperMarketData
from kernel.feed.source import MarketDataSource

__all__ = [
    "BINANCE_REST",
    "BINANCE_WS",
    "COINBASE_REST",
    "COINBASE_WS",
    "KRAKEN_REST",
    "KRAKEN_WS",
    "SOURCES",
    "BinanceMarketData",
    "BinanceSync",
    "CoinbaseMarketData",
    "CoinbaseSync",
    "KrakenMarketData",
    "KrakenSync",
    "UnknownVenue",
    "WholeAtSubscribe",
    "make_source",
]


class UnknownVenue(FeedError):
    """No market-data source has this venue name."""


SourceFactory = Callable[..., MarketDataSource]
"""``(*, ws_url: str | None, rest_url: str | None, instruments: Sequence[str]) -> MarketDataSource``."""


def _paper(*, ws_url: str | None, rest_url: str | None, instruments: Sequence[str]) -> MarketDataSource:
    del rest_url, instruments
    if ws_url is None:
        raise FeedError("the paper venue has no public endpoint: give its ws_url")
    return PaperMarketData(ws_url)


def _binance(*, ws_url: str | None, rest_url: str | None, instruments: Sequence[str]) -> MarketDataSource:
    return BinanceMarketData(ws_url or BINANCE_WS, rest_url or BINANCE_REST, instruments)


def _coinbase(*, ws_url: str | None, rest_url: str | None, instruments: Sequence[str]) -> MarketDataSource:
    del rest_url, instruments  # the feed sends its snapshots itself; products go in the subscription
    return CoinbaseMarketData(ws_url or COINBASE_WS)


def _kraken(*, ws_url: str | None, rest_url: str | None, instruments: Sequence[str]) -> MarketDataSource:
    del rest_url, instruments  # snapshots come on the socket; symbols go in the subscription
    return KrakenMarketData(ws_url or KRAKEN_WS)


SOURCES: Final[dict[str, SourceFactory]] = {
    "paper": _paper,
    "binance": _binance,
    "coinbase": _coinbase,
    "kraken": _kraken,
}
"""Every market-data source by venue name, each built from keyword arguments ``ws_url``,
``rest_url`` and ``instruments`` (as ``make_source`` passes them)."""


def make_source(
    venue: str,
    *,
    ws_url: str | None = None,
    rest_url: str | None = None,
    instruments: Sequence[str] = (),
) -> MarketDataSource:
    """The market-data source of ``venue``; ``None`` endpoints are the venue's public production ones.

    Binance names its streams in the URL: pass the ``instruments`` the feed will follow (then
    ``FeedClient(source.url, instruments, ..., source=source)``). Raises ``UnknownVenue``.
    """
    factory = SOURCES.get(venue)
    if factory is None:
        raise UnknownVenue(f"unknown venue {venue!r}: one of {', '.join(sorted(SOURCES))}")
    return factory(ws_url=ws_url, rest_url=rest_url, instruments=tuple(instruments))
