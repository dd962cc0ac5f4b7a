"""The paper venue's market-data replay: data files (merged by time) or a seeded random walk, paced.

``replay`` hands each event to the venue (``market``: match, commit, broadcast) and then waits for
slow subscribers (``drain``: backpressure). ``speed`` 1.0 is real time, 0 as fast as possible;
``loop`` starts the files again at their end. An event the venue fails to handle (``market``
raises: a store write failed, a venue bug) is logged and skipped, the replay carries on; a failure to
read the data is logged and ends the replay only: the venue carries on without market data.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

from kernel.venue import marketdata
from kernel.venue.marketdata import MarketEvent
from kernel.venue.settings import VenueConfig

log = logging.getLogger(__name__)


async def replay(
    config: VenueConfig,
    clock: Callable[[], int],
    market: Callable[[MarketEvent], object],
    drain: Callable[[], Awaitable[None]],
) -> None:
    """Replay ``config.data_paths`` (or the random walk from ``clock()``), paced by ``config.speed``."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            events: Iterator[MarketEvent] = (
                marketdata.load(config.data_paths)
                if config.data_paths
                else marketdata.random_walk(config.seed, start_ts_ms=clock())
            )
            started = loop.time()
            first_ts: int | None = None
            for event in events:
                if first_ts is None:
                    first_ts = event.ts_ms
                if config.speed > 0:
                    due = started + (event.ts_ms - first_ts) / 1000 / config.speed
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)  # replay pacing
                try:
                    market(event)
                except Exception:  # one event, not the whole replay: market data keeps flowing
                    log.exception("the venue failed to handle market event %r; replay carries on", event)
                await drain()
            if not config.loop:
                log.info("market data replay finished")
                return
    except Exception:
        log.exception("market data replay failed; the venue carries on without it")
