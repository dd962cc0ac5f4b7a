"""The kernel-internal tick-to-send probe (issue 17): off unless a benchmark turns it on.

With the environment variable ``TRADEKERNEL_TICK_PROBE`` set to a file path when the process
starts, ``PROBE`` is a ``TickProbe``; otherwise it is ``None`` and each stamping site costs one
``is not None`` test. Three stamps on ``time.perf_counter_ns()``:

* ``frame_read()``: the feed client has a market-data frame in hand (``FeedClient._stream``, right
  after ``recv()``); ``frame_done()`` once that frame's events were handled (the strategy, the gate
  and the journal run synchronously inside that call);
* ``order_queued(client_order_id)``: a new order was committed to the journal and queued on the
  outbox while a frame was being handled: the order is that frame's, and remembers its read stamp;
* ``order_written(client_order_id)``: ``VenueClient`` has handed that order's bytes to the socket
  (``await ws.send`` returned: the frame is in the transport's buffer or written).

A sample is ``(written - read, queued - read)`` in ns, one per order a frame caused. ``dump()``
writes every sample as JSON (``{"samples": [[send_ns, queued_ns], ...]}``) to the path; it runs
at exit too. Orders not caused by a frame (timers, the kernel's own) are not sampled.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from typing import Final

ENV: Final = "TRADEKERNEL_TICK_PROBE"
"""The environment variable that turns the probe on: the path its samples are written to."""


class TickProbe:
    """Stamps from a market-data frame's read to the write of the order it caused (see the module)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reading: int | None = None
        """``perf_counter_ns`` of the frame being handled, or ``None`` between frames."""
        self._caused: dict[str, tuple[int, int]] = {}
        self.samples: list[tuple[int, int]] = []
        """``(written - read, queued - read)`` in ns, one per order caused by a frame."""

    def frame_read(self) -> None:
        """A market-data frame was just read."""
        self.reading = time.perf_counter_ns()

    def frame_done(self) -> None:
        """The frame read last has been handled."""
        self.reading = None

    def order_queued(self, client_order_id: str) -> None:
        """A new order was journaled and queued; it belongs to the frame being handled, if any."""
        if self.reading is not None:
            self._caused[client_order_id] = (self.reading, time.perf_counter_ns())

    def order_written(self, client_order_id: str) -> None:
        """The order's bytes were handed to the socket: one sample if a frame caused it."""
        stamps = self._caused.pop(client_order_id, None)
        if stamps is not None:
            read, queued = stamps
            self.samples.append((time.perf_counter_ns() - read, queued - read))

    def dump(self) -> None:
        """Write the samples to ``path`` (replacing it) as JSON."""
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"samples": self.samples}, f)
        os.replace(tmp, self.path)


def _from_env() -> TickProbe | None:
    path = os.environ.get(ENV)
    if not path:
        return None
    probe = TickProbe(path)
    atexit.register(probe.dump)
    return probe


PROBE: Final[TickProbe | None] = _from_env()
"""The process's probe, or ``None`` (the default: no stamps are taken)."""
