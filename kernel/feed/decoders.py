"""One decoder per venue, each ``frame -> list of events`` or ``DecodeError``.

Policy, the same for every venue: a frame that is not JSON, not an object, lacks a required field,
has a field of the wrong type, or carries a price or size that is not a finite, non-negative decimal
(prices and traded sizes strictly positive) is a ``DecodeError``. A well-formed message of a type the
decoder does not turn into market data comes back as ``UnhandledMessage`` (counted by the caller, not
an anomaly), except on the paper venue, whose protocol is ours: an unknown ``type`` there is an error.
Frames are never partially decoded: one bad item fails the whole frame.
"""

from __future__ import annotations

from collections.abc import Callable

from kernel.feed._common import Frame
from kernel.feed.binance import decode_binance
from kernel.feed.coinbase import decode_coinbase
from kernel.feed.events import FeedEvent, Venue
from kernel.feed.kraken import decode_kraken
from kernel.feed.paper import decode_paper

Decoder = Callable[[Frame], list[FeedEvent]]

DECODERS: dict[Venue, Decoder] = {
    "paper": decode_paper,
    "binance": decode_binance,
    "coinbase": decode_coinbase,
    "kraken": decode_kraken,
}
"""Every decoder by venue name."""

__all__ = ["DECODERS", "Decoder", "Frame", "decode_binance", "decode_coinbase", "decode_kraken", "decode_paper"]
