"""Watching a venue's market data without trading: what ``tradekernel market watch`` runs.

``parse_target("binance:BTCUSDT,ETHUSDT")`` reads the command's target. ``watch(...)`` builds the
venue's source (``kernel.feed.venues.make_source``) and one ``FeedClient`` on it, with a
throwaway journal in a temporary directory (the feed machine journals its transitions; nothing
of it is kept), and turns what the feed reports into records, handed to a ``view`` callable:

* ``{"type": "book", "venue", "instrument", "bid", "bid_qty", "ask", "ask_qty", "ts"}`` each time
  an instrument's top of book changes (a quote that repeats the last one is not a record);
* ``{"type": "trade", "venue", "instrument", "price", "qty", "side", "trade_id", "ts"}`` per trade
  (``side`` is the taker's);
* ``{"type": "state", "venue", "state", "reason", "ts"}`` per feed state change (``reason``: why
  the connection closed or failed, else ``null``).

Decimals are the venue's exact text as strings (``bid_qty``/``ask_qty`` are ``null`` where the
venue sends no sizes: Coinbase ``ticker``). ``ts`` is milliseconds since the epoch: the venue's
own time when the message carries one, else when it arrived.

The watch ends after ``duration`` seconds, when ``stop`` is set (SIGINT/SIGTERM), when the feed
fails (a refused subscription, an invalid URL, HTTP 401/403/404), or when a recording cannot be
written. Connection errors (refused, DNS, TLS, a drop) are retried with the feed machine's backoff
meanwhile, each one a ``backoff`` state record. ``WatchResult`` says how it ended.

``--record`` writes the raw frames and REST answers with their receive times through
``kernel.feed.record.FeedRecorder`` (the recording format is documented there). It never raises
from a frame: the first write error is kept in its ``error`` and ends the watch.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from kernel.clock import wall_ms
from kernel.errors import KernelError
from kernel.feed.client import FeedClient
from kernel.feed.events import FeedEvent, QuoteEvent, TradeEvent
from kernel.feed.record import FeedRecorder
from kernel.feed.venues import make_source
from machines.feed import FeedState
from storage.journal import Journal

MAX_INSTRUMENTS: Final = 100
"""The most symbols one watch takes."""
PAPER_URL: Final = "ws://127.0.0.1:8765"
"""Where the paper venue listens by default (``tradekernel venue``'s default port)."""
LIVE_VENUES: Final = frozenset({"binance", "coinbase", "kraken"})
"""Venues whose symbols are upper case (``btcusdt`` is read as ``BTCUSDT``)."""
POLICY: Final = {"backoff_max_ms": 5000, "stale_after_ms": 10_000}
"""The watch's feed policy: retry at least every 5 s, call an instrument stale after 10 s of silence."""
FLUSH_EVERY_S: Final = 0.25
"""How often the recording is flushed to its file (and the view refreshed)."""

_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,39}")
Record = dict[str, Any]


class WatchError(KernelError):
    """The root of ``market watch``'s own errors."""


class BadTarget(WatchError, ValueError):
    """A ``VENUE:SYMBOL[,SYMBOL...]`` that cannot be watched (the message says why)."""


@dataclass(frozen=True, slots=True)
class Target:
    """What to watch: a venue name and its symbols (in the venue's own spelling)."""

    venue: str
    instruments: tuple[str, ...]


def parse_target(text: str, venues: Iterable[str]) -> Target:
    """``VENUE:SYMBOL[,SYMBOL...]`` as a ``Target``; ``BadTarget`` if anything is off.

    The venue must be one of ``venues`` (lower case); symbols are 1-40 characters of letters,
    digits and ``. _ / -`` (``BTCUSDT``, ``BAND-GBP``, ``BTC/USD``), distinct, at most
    ``MAX_INSTRUMENTS``; for the live venues they are read in upper case.
    """
    known = sorted(venues)
    venue, colon, symbols = text.partition(":")
    if not colon:
        raise BadTarget(f"expected VENUE:SYMBOL[,SYMBOL...], got {text!r}")
    if venue not in known:
        raise BadTarget(f"unknown venue {venue!r}: one of {', '.join(known)}")
    names = symbols.split(",")
    for name in names:
        if not _SYMBOL.fullmatch(name):
            raise BadTarget(f"bad symbol {name!r} in {text!r}: 1-40 letters, digits or . _ / -")
    if venue in LIVE_VENUES:
        names = [name.upper() for name in names]
    if len(set(names)) != len(names):
        raise BadTarget(f"a symbol is listed twice in {text!r}")
    if len(names) > MAX_INSTRUMENTS:
        raise BadTarget(f"at most {MAX_INSTRUMENTS} symbols per watch, got {len(names)}")
    return Target(venue, tuple(names))


class Watch:
    """Turns one feed's events and states into records for ``view`` (see the module docstring)."""

    def __init__(self, venue: str, view: Callable[[Record], None], now_ms: Callable[[], int] = wall_ms) -> None:
        self.venue = venue
        self.view = view
        self.streamed = False
        self.last_error: str | None = None
        self.client: FeedClient | None = None
        self._now_ms = now_ms
        self._tops: dict[str, tuple[str, str | None, str, str | None]] = {}

    def on_event(self, event: FeedEvent) -> None:
        """A market event from the feed: a book record if the top changed, a trade record per trade."""
        if isinstance(event, QuoteEvent):
            top = (str(event.bid), _text(event.bid_qty), str(event.ask), _text(event.ask_qty))
            if self._tops.get(event.instrument) == top:
                return
            self._tops[event.instrument] = top
            bid, bid_qty, ask, ask_qty = top
            self.view(
                {
                    "type": "book",
                    "venue": self.venue,
                    "instrument": event.instrument,
                    "bid": bid,
                    "bid_qty": bid_qty,
                    "ask": ask,
                    "ask_qty": ask_qty,
                    "ts": self._ts(event.ts_ms),
                }
            )
        elif isinstance(event, TradeEvent):
            self.view(
                {
                    "type": "trade",
                    "venue": self.venue,
                    "instrument": event.instrument,
                    "price": str(event.price),
                    "qty": str(event.qty),
                    "side": event.taker_side,
                    "trade_id": event.trade_id,
                    "ts": self._ts(event.ts_ms),
                }
            )
        # book snapshots/updates stay with the source that keeps the book; heartbeats change nothing

    def on_state(self, state: str) -> None:
        """A feed state change: a state record (with the close or failure reason where there is one)."""
        self.streamed = self.streamed or state == FeedState.streaming
        reason = None
        if self.client is not None and state in (FeedState.backoff, FeedState.failed):
            reason = self.client.feed.data.get("reason")
            self.last_error = reason
        self.view({"type": "state", "venue": self.venue, "state": state, "reason": reason, "ts": self._now_ms()})

    def _ts(self, ts_ms: int | None) -> int:
        return self._now_ms() if ts_ms is None else ts_ms


@dataclass(frozen=True, slots=True)
class WatchResult:
    """How a watch ended: ``error`` is ``None`` when it ran as asked, else one line saying why not."""

    error: str | None
    streamed: bool


async def watch(
    target: Target,
    view: Callable[[Record], None],
    *,
    ws_url: str | None = None,
    rest_url: str | None = None,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    recorder: FeedRecorder | None = None,
    tick: Callable[[], None] | None = None,
    policy: dict[str, int] | None = None,
) -> WatchResult:
    """Watch ``target`` until ``duration`` (seconds) passes, ``stop`` is set, the feed fails or the
    recording fails; return how it ended.

    ``error`` is set when the feed failed, when the recording failed, or when the watch ended
    without the feed ever streaming after a connection error (the last one is named). ``tick`` is
    called about every ``FLUSH_EVERY_S`` (a live view's redraw). Raises ``FeedError`` when the
    source cannot be built and ``InvalidData`` for a bad URL (usage errors).
    """
    if target.venue == "paper" and ws_url is None:
        ws_url = PAPER_URL
    source = make_source(target.venue, ws_url=ws_url, rest_url=rest_url, instruments=target.instruments)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    watcher = Watch(target.venue, view)
    with tempfile.TemporaryDirectory(prefix="tradekernel-watch-") as directory:
        journal = Journal.open(str(Path(directory) / "watch.db"), durability="normal")
        try:
            client = FeedClient(
                source.url,
                target.instruments,
                journal,
                "watch",
                {**POLICY, **(policy or {})},
                source=source,
                on_event=watcher.on_event,
                on_state=watcher.on_state,
                on_frame=None if recorder is None else recorder.frame,
                on_rest=None if recorder is None else recorder.rest,
            )
            watcher.client = client
            task = asyncio.create_task(client.run(), name="market-watch-feed")
            stopping = asyncio.create_task(stop.wait(), name="market-watch-stop")
            try:
                while not task.done() and not stop.is_set() and (recorder is None or recorder.error is None):
                    wait = FLUSH_EVERY_S if deadline is None else min(FLUSH_EVERY_S, deadline - loop.time())
                    if wait <= 0:
                        break
                    await asyncio.wait([task, stopping], timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                    if recorder is not None:
                        recorder.flush()
                    if tick is not None:
                        tick()
            finally:
                stopping.cancel()
                client.stop()
                await asyncio.wait([task, stopping])
            task.result()  # a journal error that stopped the feed propagates
        finally:
            journal.close()
    if recorder is not None:
        recorder.close()
    return WatchResult(_ending(client, watcher, recorder, ws_url or source.url), watcher.streamed)


def _ending(client: FeedClient, watcher: Watch, recorder: FeedRecorder | None, endpoint: str) -> str | None:
    """One line on why the watch did not run as asked (``endpoint``: the URL as given), else ``None``."""
    if recorder is not None and recorder.error is not None:
        return recorder.error
    if client.state == FeedState.failed:
        return f"the {watcher.venue} feed at {endpoint} failed: {client.feed.data.get('reason')}"
    if not watcher.streamed and watcher.last_error is not None:
        return f"no market data from {endpoint}: {watcher.last_error}"
    return None


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
