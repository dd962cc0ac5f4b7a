"""``tradekernel run``: start the kernel and run it to its end; the process's logging set-up.

    tradekernel run [--config kernel.toml] [--db PATH] [--venue embedded|ws://HOST:PORT]
                    [--strategy NAME|module:Class] [--duration S] [--log-format text|json]
                    [--control-socket PATH] [--http HOST:PORT [--allow-remote]] [--live]

``--live`` confirms trading real money (``venue.kind = "binance"``, ``venue.testnet = false``): such
a configuration is refused without it, with exit status 2, before anything connects. The first
line on stderr of a Binance run says where orders go (``LIVE`` or ``TESTNET``).

Exit status: 0 stopped cleanly; 1 stopped, but orders were left open at the venue or the journal
could not record the stop; 2 could not start (bad config, journal missing, locked, corrupt or newer
than this code, address in use).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from kernel.cli.common import usage_error
from kernel.config import ConfigError, add_override_arguments, load, overrides_from_args
from kernel.config.live import banner, check_live
from storage.errors import JournalError

LOG_FIELDS = ("run", "machine", "entity", "trigger", "source", "dest")
"""Structured fields a record may carry (``log.info(..., extra={"machine": ...})``); the JSON
format copies those present into its object."""
TEXT_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
"""Log times: UTC, with the date (``2026-12-03T02:51:07.123Z``)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: ts (UTC), level, logger, message, the ``LOG_FIELDS`` the
    record carries (``run``, ``machine``, ``entity``, ``trigger``, ``source``, ``dest``), and exc
    when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, DATE_FORMAT) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in LOG_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RunField(logging.Filter):
    """Gives each record without one the ``run`` field: the run id ``run_id()`` answers (``None``
    until the kernel has opened its journal)."""

    def __init__(self, run_id: Callable[[], int | None]) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run", None) is None:
            record.run = self.run_id()
        return True


def configure_logging(fmt: str, level: str) -> None:
    """Logs to stderr, as text or JSON lines, in UTC."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def add_parser(commands: Any) -> None:
    """Add ``run`` to the ``tradekernel`` sub-commands."""
    run = commands.add_parser(
        "run",
        help="start the kernel (paper trading against the embedded venue by default)",
        description="Start the kernel: journal, venue session, feed, strategy, health, control socket. "
        "With no options it paper-trades the bundled BTCUSDT data against the embedded venue, journals "
        "to ./tradekernel.db and shows a live status until Ctrl-C (a second Ctrl-C stops without waiting "
        "for cancel acks) or --duration.",
        epilog="Exit status: 0 stopped cleanly; 1 stopped but orders were left open or the stop could not be "
        "journaled; 2 could not start (config, journal, address).",
    )
    add_override_arguments(run)
    run.add_argument(
        "--status-view",
        choices=("auto", "live", "lines", "off"),
        help="live: redraw in place; lines: one line per interval; auto: live on a terminal (default)",
    )
    run.add_argument(
        "--live",
        action="store_true",
        help="confirm trading real money on Binance production (venue.testnet = false); refused otherwise",
    )
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from kernel.app import Kernel
    from kernel.status import StatusView
    from kernel.strategy import StrategyError

    overrides = overrides_from_args(args)
    if args.status_view:
        overrides["kernel.status_view"] = args.status_view
    try:
        config = load(args.config, overrides)
        check_live(config, bool(getattr(args, "live", False)))
    except ConfigError as exc:
        return usage_error(str(exc))
    configure_logging(config.kernel.log_format, config.kernel.log_level)
    if config.venue.kind == "binance":  # say where orders go before anything connects
        if config.kernel.log_format == "json":
            logging.getLogger(__name__).warning("%s", banner(config))
        else:
            print(banner(config), file=sys.stderr)
    view = config.kernel.status_view
    printer = None if view == "off" else StatusView(view, json_lines=config.kernel.log_format == "json")
    root = logging.getLogger()
    stderr_handler = root.handlers[0]
    if printer is not None and printer.live and sys.stderr.isatty():
        root.handlers[:] = [printer.capture(stderr_handler)]  # logs printed above the view, once
    try:
        kernel = Kernel(config, install_signals=True, status_printer=printer)
    except StrategyError as exc:
        return usage_error(str(exc))
    run_field = RunField(lambda: None if kernel.journal is None else kernel.journal.run_id)
    for handler in (*root.handlers, stderr_handler):
        handler.addFilter(run_field)

    from kernel.control import ControlError
    from kernel.execution import VenueUnreachable
    from kernel.http import RemoteBindRefused

    try:
        status = _run_to_the_end(kernel)
    except (JournalError, ControlError, RemoteBindRefused) as exc:
        return usage_error(str(exc))
    except (OSError, VenueUnreachable) as exc:
        return usage_error(f"cannot start: {exc}")
    finally:
        if printer is not None:  # the live view's last frame says stopped
            printer.close(kernel, kernel.stop_request.reason if kernel.stop_request else "stopped")
        root.handlers[:] = [stderr_handler]
    # The kernel has stopped and closed its journal: a late Ctrl-C or SIGTERM must not turn the
    # clean stop into a KeyboardInterrupt traceback and exit 130 while the process exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if config.kernel.log_format == "json":  # then every stderr line is a JSON object
        level = logging.WARNING if kernel.orders_left_open else logging.INFO
        logging.getLogger(__name__).log(level, "%s", _goodbye(kernel))
    else:
        print(_goodbye(kernel), file=sys.stderr)
    return status


def _run_to_the_end(kernel: Any) -> int:
    """``asyncio.run(kernel.run())``; a Ctrl-C that lands after the kernel has stopped (while
    asyncio tears the loop down and its signal handlers are already gone) changes nothing."""
    import asyncio

    try:
        status: int = asyncio.run(kernel.run())
    except KeyboardInterrupt:
        if not kernel.stopped.is_set() or kernel.exit_status is None:
            raise
        status = kernel.exit_status
    return status


def _goodbye(kernel: Any) -> str:
    journal = kernel.journal
    left = kernel.orders_left_open
    tail = f"; {len(left)} order(s) left open (tradekernel status shows them)" if left else ""
    return (
        f"tradekernel: run {journal.run_id} stopped ({kernel.stop_request.reason if kernel.stop_request else '-'})"
        + tail
    )
