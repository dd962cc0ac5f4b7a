"""``tradekernel market watch``: watch a venue's live market data without trading.

    tradekernel market watch binance:BTCUSDT,ETHUSDT [--duration 60] [--json] [--record FILE]
    tradekernel market watch paper:BTCUSDT --ws-url ws://127.0.0.1:8765

By default a compact view for humans: on a terminal, one line per instrument (best bid and ask
with sizes, the last trade) and a status line, redrawn in place; otherwise one plain line per
change. Prices and sizes are shown without trailing zeros and to at most 8 decimals. ``--json``
prints one JSON object per line instead (``book``/``trade``/``state``, decimals as the venue's
exact strings; see ``kernel.market_watch``), flushed per line.

Exit status: 0 after ``--duration`` or SIGINT/SIGTERM (the connection closed cleanly); 1 when the
feed failed (a refused subscription, HTTP 401/403/404), when the watch ended without any market
data after connection errors (refused, DNS, TLS: retried with backoff until then, each one a
``backoff`` state line), or when the recording cannot be written (one line on stderr, no
traceback); 2 for bad arguments.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, Any, Final

from kernel.cli.common import usage_error
from kernel.exits import EXIT_FAILED, EXIT_OK
from kernel.feed.errors import FeedError
from kernel.feed.record import FeedRecorder, RecordingWriteError
from kernel.feed.venues import SOURCES
from kernel.market_watch import BadTarget, Record, Target, parse_target, watch
from machines.decimals import DecimalError, Sign, parse_decimal
from machines.errors import InvalidData

COMMAND: Final = "market watch"
DISPLAY_PLACES: Final = Decimal("1e-8")
"""The finest decimal the human view shows (``--json`` keeps the venue's exact text)."""
REDRAW_EVERY_S: Final = 0.1
"""A terminal view redraws at most this often (and on each tick)."""


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 10**9:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_parser(commands: Any) -> None:
    """Register ``market`` (with ``watch``) on the top-level subparsers."""
    market = commands.add_parser(
        "market",
        help="live market data without trading (watch)",
        description="Market data from a venue, without trading.",
    )
    sub = market.add_subparsers(dest="market_command", metavar="watch", required=True)
    venues = ", ".join(SOURCES)
    cmd = sub.add_parser(
        "watch",
        help="watch live top of book, trades and feed states",
        description=f"Watch a venue's live market data: top of book, trades and the feed's state. Venues: {venues}. "
        "Connection errors are retried with backoff; Ctrl-C or SIGTERM closes cleanly.",
        epilog="Exit status: 0 after --duration or Ctrl-C/SIGTERM; 1 the feed failed, no market data came "
        "(connection refused, DNS, TLS ...) or the recording cannot be written; 2 bad arguments.",
    )
    cmd.add_argument(
        "target",
        metavar="VENUE:SYMBOL[,SYMBOL...]",
        help="e.g. binance:BTCUSDT,ETHUSDT, coinbase:BTC-USD, kraken:BTC/USD, paper:BTCUSDT",
    )
    cmd.add_argument("--ws-url", metavar="URL", help="WebSocket endpoint (default: the venue's public one)")
    cmd.add_argument("--rest-url", metavar="URL", help="REST endpoint for snapshots and rules (default: the venue's)")
    cmd.add_argument("--duration", type=_duration, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line: book, trade and state records")
    cmd.add_argument("--record", metavar="FILE", help="also write every raw frame with its receive time (JSON lines)")
    market.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Watch until the duration, a signal or a failure; the exit status."""
    try:
        target = parse_target(args.target, SOURCES)
    except BadTarget as exc:
        return usage_error(str(exc), COMMAND)
    if args.ws_url is not None and not args.ws_url.startswith(("ws://", "wss://")):
        return usage_error(f"--ws-url must start with ws:// or wss://, got {args.ws_url!r}", COMMAND)
    if args.rest_url is not None and not args.rest_url.startswith(("http://", "https://")):
        return usage_error(f"--rest-url must start with http:// or https://, got {args.rest_url!r}", COMMAND)
    recorder = None
    if args.record:
        recorder = FeedRecorder(args.record, target.venue, target.instruments)
        try:
            recorder.open()
        except RecordingWriteError as exc:
            return _failed(str(exc))
    # The feed logs each drop; here the state records say it, and stderr keeps one line for the end
    # (a handler on the root keeps Python's last-resort handler from printing warnings).
    logging.getLogger().addHandler(logging.NullHandler())
    view = _view(as_json=args.json)
    try:
        code = asyncio.run(_watch(args, target, view, recorder))
    finally:
        if recorder is not None:
            recorder.close()
    if view.broken:
        raise BrokenPipeError  # main() stops quietly, as for any command whose reader went away
    return code


async def _watch(args: argparse.Namespace, target: Target, view: View, recorder: FeedRecorder | None) -> int:
    stop = asyncio.Event()
    view.stop = stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        result = await watch(
            target,
            view,
            ws_url=args.ws_url,
            rest_url=args.rest_url,
            duration=args.duration,
            stop=stop,
            recorder=recorder,
            tick=view.tick,
        )
    except (InvalidData, FeedError) as exc:
        return usage_error(str(exc), COMMAND)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        view.close()
    if result.error is not None and not view.broken:
        return _failed(result.error)
    return EXIT_OK


def _view(*, as_json: bool) -> View:
    if as_json:
        return JsonView(sys.stdout)
    return TerminalView(sys.stdout) if sys.stdout.isatty() else LineView(sys.stdout)


def _failed(message: str) -> int:
    print(f"tradekernel {COMMAND}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED


# -- views ----------------------------------------------------------------------------------------


class View(abc.ABC):
    """Where records go. A write error (the reader went away) sets ``broken`` and ends the watch."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.broken = False
        self.stop: asyncio.Event | None = None

    def __call__(self, record: Record) -> None:
        if self.broken:
            return
        try:
            self.show(record)
        except OSError:  # BrokenPipeError and friends: nobody reads any more
            self.broken = True
            if self.stop is not None:
                self.stop.set()

    @abc.abstractmethod
    def show(self, record: Record) -> None:
        """Show one record."""

    def tick(self) -> None:  # noqa: B027 (an optional hook)
        """Called a few times a second: a chance to redraw."""

    def close(self) -> None:  # noqa: B027 (an optional hook)
        """The watch is over."""


class JsonView(View):
    """One JSON object per line, flushed per line."""

    def show(self, record: Record) -> None:
        self.out.write(json.dumps(record, separators=(", ", ": ")) + "\n")
        self.out.flush()


class LineView(View):
    """One plain line per record (for a pipe or a file)."""

    def show(self, record: Record) -> None:
        self.out.write(f"{_clock(record['ts'])} {describe(record)}\n")
        self.out.flush()


class TerminalView(View):
    """A status line and one line per instrument, redrawn in place (ANSI cursor movement)."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__(out)
        self.status = "starting"
        self.books: dict[str, str] = {}
        self.trades: dict[str, str] = {}
        self.instruments: list[str] = []
        self.counts = {"book": 0, "trade": 0}
        self._drawn = 0
        self._dirty = False
        self._last_draw = 0.0

    def show(self, record: Record) -> None:
        kind = record["type"]
        if kind == "state":
            reason = f" ({record['reason']})" if record["reason"] else ""
            self.status = f"{record['venue']} {record['state']}{reason}"
        else:
            instrument = record["instrument"]
            if instrument not in self.instruments:
                self.instruments.append(instrument)
            self.counts[kind] += 1
            target = self.books if kind == "book" else self.trades
            target[instrument] = describe(record).split(" ", 3)[3]
        self._dirty = True
        now = asyncio.get_running_loop().time()
        if now - self._last_draw >= REDRAW_EVERY_S:
            self._draw(now)

    def tick(self) -> None:
        if self._dirty and not self.broken:
            try:
                self._draw(asyncio.get_running_loop().time())
            except OSError:
                self.broken = True

    def close(self) -> None:
        self.tick()

    def _draw(self, now: float) -> None:
        width = max((len(i) for i in self.instruments), default=0)
        lines = [f"{self.status}  ({self.counts['book']} book changes, {self.counts['trade']} trades)"]
        for instrument in self.instruments:
            book = self.books.get(instrument, "no quote yet")
            trade = self.trades.get(instrument, "no trade yet")
            lines.append(f"{instrument:<{width}}  {book}  |  last {trade}")
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)
        self._dirty = False
        self._last_draw = now


def describe(record: Record) -> str:
    """A record as one short line for humans (``VENUE INSTRUMENT book|trade ...`` or ``VENUE state``)."""
    kind = record["type"]
    if kind == "book":
        bid, ask = _level(record["bid"], record["bid_qty"]), _level(record["ask"], record["ask_qty"])
        return f"{record['venue']} {record['instrument']} book {bid} / {ask}"
    if kind == "trade":
        trade = f"{display(record['price'])} x {display(record['qty'])} {record['side']} #{record['trade_id']}"
        return f"{record['venue']} {record['instrument']} trade {trade}"
    reason = f" ({record['reason']})" if record["reason"] else ""
    return f"{record['venue']} state {record['state']}{reason}"


def _level(price: str, qty: str | None) -> str:
    return display(price) if qty is None else f"{display(price)} x {display(qty)}"


def display(text: str) -> str:
    """A decimal for humans: no trailing zeros, at most 8 decimals (text that is no number as it is)."""
    try:
        value = parse_decimal(text, "a displayed value", sign=Sign.non_negative)
    except DecimalError:
        return text
    if value.as_tuple().exponent < -8:  # type: ignore[operator]
        value = value.quantize(DISPLAY_PLACES)
    return f"{value.normalize():f}"


def _clock(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
