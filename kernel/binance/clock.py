"""``ServerClock``: Binance's clock as seen from ours, from round-trip samples. Pure: it never reads a clock.

Each sample is a ``time`` request: our clock when it was sent (``sent_ms``), the ``serverTime`` in
the answer, our clock when the answer came (``received_ms``). Assuming the server read its clock
halfway through the round trip, the offset is ``server_ms - (sent_ms + received_ms) / 2``; the
median of the last ``window`` samples ignores the odd slow round trip. ``now(local_ms)`` is the
``timestamp`` to sign a request with.
"""

from __future__ import annotations

from collections import deque
from statistics import median_low

from kernel.binance.errors import BinanceParamError

DEFAULT_WINDOW = 5
"""Samples the offset is the median of."""


class ServerClock:
    """Tracks the offset of Binance's clock from ours (``offset_ms``, 0 until a sample arrives)."""

    __slots__ = ("_offsets", "_round_trips")

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        """Keep the last ``window`` samples (at least 1). Raises ``BinanceParamError`` otherwise."""
        if window < 1:
            raise BinanceParamError(f"ServerClock window must be at least 1, got {window}")
        self._offsets: deque[int] = deque(maxlen=window)
        self._round_trips: deque[int] = deque(maxlen=window)

    def sample(self, sent_ms: int, server_ms: int, received_ms: int) -> int:
        """Add one round trip; returns that sample's offset. Raises ``BinanceParamError`` when the
        answer came before the request was sent (the local clock jumped back: the sample is dropped)."""
        if received_ms < sent_ms:
            raise BinanceParamError(f"clock sample received before sent ({received_ms} < {sent_ms})")
        offset = round(server_ms - (sent_ms + received_ms) / 2)
        self._offsets.append(offset)
        self._round_trips.append(received_ms - sent_ms)
        return offset

    def reset(self) -> None:
        """Forget every sample (after a -1021: the old offset is known to be wrong)."""
        self._offsets.clear()
        self._round_trips.clear()

    @property
    def samples(self) -> int:
        """How many samples the offset is computed from."""
        return len(self._offsets)

    @property
    def synced(self) -> bool:
        """True once at least one sample was taken."""
        return bool(self._offsets)

    @property
    def offset_ms(self) -> int:
        """Median offset (server minus local) of the kept samples; 0 with none (the lower middle of an even count)."""
        return median_low(self._offsets) if self._offsets else 0

    @property
    def round_trip_ms(self) -> int | None:
        """Median round trip of the kept samples (None with none)."""
        return median_low(self._round_trips) if self._round_trips else None

    def now(self, local_ms: int) -> int:
        """Binance's time when ours is ``local_ms``."""
        return local_ms + self.offset_ms
