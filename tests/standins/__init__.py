"""Loopback stand-ins of Binance, Coinbase and Kraken replaying recorded sessions (tests only).

``async with BinanceStandIn(binance_nknusdt()) as venue:`` serves on 127.0.0.1 (a free port) and
exposes ``venue.ws_url`` and ``venue.rest_url``; ``Faults`` switches on a gap, a corrupt checksum,
a 1001 close, ``serverShutdown``, a stall or a slow REST snapshot. ``python -m tests.standins`` runs
one in its own process. ``reference`` holds the documented book procedures computed independently
of ``kernel.feed``.
"""

from tests.standins.base import Faults, StandIn
from tests.standins.binance import BinanceStandIn
from tests.standins.coinbase import CoinbaseStandIn
from tests.standins.kraken import KrakenStandIn
from tests.standins.sessions import RecordedSession, session

STANDINS: dict[str, type[StandIn]] = {
    "binance": BinanceStandIn,
    "coinbase": CoinbaseStandIn,
    "kraken": KrakenStandIn,
}
"""Each stand-in by venue name."""

__all__ = [
    "STANDINS",
    "BinanceStandIn",
    "CoinbaseStandIn",
    "Faults",
    "KrakenStandIn",
    "RecordedSession",
    "StandIn",
    "session",
]
