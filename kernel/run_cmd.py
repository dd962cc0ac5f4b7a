"""``tradekernel run``, ``tradekernel status`` and ``tradekernel stop``.

    tradekernel run [--config kernel.toml] [--db PATH] [--venue embedded|ws://HOST:PORT]
                    [--strategy NAME|module:Class] [--duration S] [--log-format text|json]
                    [--control-socket PATH] [--http HOST:PORT [--allow-remote]]
    tradekernel status [--db PATH | --control-socket PATH] [--json]
    tradekernel stop   [--db PATH | --control-socket PATH] [--force] [--wait S]

Exit status of ``run``: 0 stopped cleanly; 1 stopped, but orders were left open at the venue or
the journal could not record the stop; 2 could not start (bad config, journal missing, locked,
corrupt or newer than this code, address in use). ``status``: 0 (running or not). ``stop``: 0 the
kernel stopped (or was asked to, without ``--wait``); 1 no kernel answered; 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from typing import Any

from kernel import control
from kernel.config import ConfigError, add_override_arguments, load, overrides_from_args
from kernel.status import journal_status, render_text
from storage.errors import JournalError
from storage.lock import writer_active

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_DB = "tradekernel.db"


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: ts, level, logger, message (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(fmt: str, level: str) -> None:
    """Logs to stderr, as text or JSON lines, in UTC."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "transitions", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def add_parsers(commands: Any) -> None:
    """Add ``run``, ``status`` and ``stop`` to the ``tradekernel`` sub-commands."""
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
    run.set_defaults(run=_run)

    status = commands.add_parser(
        "status",
        help="show a kernel's state: from the running kernel, or from its journal when none runs",
        description="Ask the kernel running on --db (through its control socket, --db plus .sock) for its "
        "status; when none answers, read the journal instead (last run, health, feed, open orders, positions).",
    )
    _target_arguments(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=_status)

    stop = commands.add_parser(
        "stop",
        help="ask the running kernel to stop (cancel open orders, commit the journal, exit)",
        description="Send stop to the kernel running on --db through its control socket.",
        epilog="Exit status: 0 stopping/stopped; 1 no kernel answered or it did not stop within --wait.",
    )
    _target_arguments(stop)
    stop.add_argument("--force", action="store_true", help="do not wait for cancel acks (like a second Ctrl-C)")
    stop.add_argument("--reason", default="operator: tradekernel stop", help="recorded in the journal")
    stop.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds until it is gone")
    stop.set_defaults(run=_stop)

    for command, help_text in (
        ("halt", "stop trading: cancel every open order (and with --flatten close positions), then halted"),
        ("reduce", "only orders that reduce exposure may go out"),
        ("arm", "trade again after a halt or reduce (the reason is journaled)"),
    ):
        operator = commands.add_parser(
            command,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}. Sent to the kernel running on --db through "
            "its control socket; with no kernel running, journaled directly in --db (a halted kernel stays "
            "halted across restarts until `tradekernel arm`).",
            epilog="Exit status: 0 done (prints the trading state); 1 refused in the current trading state; "
            "2 usage or journal errors.",
        )
        _target_arguments(operator)
        operator.add_argument("--reason", required=command != "reduce", default=None, help="why (journaled)")
        if command == "halt":
            operator.add_argument("--flatten", action="store_true", help="also close every position at market")
        operator.add_argument("--json", action="store_true", help="print the trading state as JSON")
        operator.set_defaults(run=_operator, operator=command)


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"the kernel's journal (default: {DEFAULT_DB})")
    parser.add_argument("--control-socket", metavar="PATH", help="the control socket (default: DB.sock)")


def _socket_of(args: argparse.Namespace) -> str:
    return args.control_socket or control.default_socket_path(args.db)


def _error(message: str) -> int:
    print(f"tradekernel: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    from kernel.app import Kernel
    from kernel.status import StatusView
    from kernel.strategy import StrategyError

    overrides = overrides_from_args(args)
    if args.status_view:
        overrides["kernel.status_view"] = args.status_view
    try:
        config = load(args.config, overrides)
    except ConfigError as exc:
        return _error(str(exc))
    configure_logging(config.kernel.log_format, config.kernel.log_level)
    view = config.kernel.status_view
    printer = None if view == "off" else StatusView(view, json_lines=config.kernel.log_format == "json")
    root = logging.getLogger()
    stderr_handler = root.handlers[0]
    if printer is not None and printer.live and sys.stderr.isatty():
        root.handlers[:] = [printer.capture(stderr_handler)]  # logs inside the view, not under it
    try:
        kernel = Kernel(config, install_signals=True, status_printer=printer)
    except StrategyError as exc:
        return _error(str(exc))

    from kernel.control import ControlError
    from kernel.http import RemoteBindRefused

    try:
        status = _run_to_the_end(kernel)
    except (JournalError, ControlError, RemoteBindRefused) as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"cannot start: {exc}")
    finally:
        if root.handlers and root.handlers[0] is not stderr_handler:
            tail = getattr(printer, "log_tail", None)
            root.handlers[:] = [stderr_handler]
            for line in tail.lines if tail is not None else ():
                print(line, file=sys.stderr)
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


def _operator(args: argparse.Namespace) -> int:
    command = args.operator
    reason = args.reason or f"tradekernel {command}"
    fields: dict[str, Any] = {"reason": reason}
    if getattr(args, "flatten", False):
        fields["flatten"] = True
    path = _socket_of(args)
    try:
        answer = control.request(path, command, **fields)
        where = "running kernel"
    except control.NoKernel:
        if not os.path.exists(args.db):
            return _error(f"no kernel answers on {path} and there is no journal at {args.db}")
        try:
            answer = _operator_offline(args.db, command, fields)
        except JournalError as exc:
            return _error(str(exc))
        where = "journal (no kernel running)"
    except control.ControlError as exc:
        return _error(str(exc))
    trading = answer.get("trading") or {}
    if args.json:
        print(json.dumps({**answer, "via": where}, default=str))
    elif answer.get("ok"):
        print(f"trading {trading.get('state')}: {trading.get('reason')}  ({where})")
    else:
        print(f"tradekernel: {command} refused: {answer.get('error')}", file=sys.stderr)
    return EXIT_OK if answer.get("ok") else EXIT_FAILED


def _operator_offline(db: str, command: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Journal an operator command with no kernel running (the next start acts on it)."""
    from machines import TRADING, TransitionRefused
    from machines.trading import ENTITY_ID
    from storage import Journal

    journal = Journal.open(db)
    try:
        found = journal.live_entities(TRADING)
        now_ms = time.monotonic_ns() // 1_000_000
        if found:
            trading = found[0]
        else:
            trading, created = TRADING.create(ENTITY_ID, now_ms=now_ms)
            journal.append(created, trading)
        data = {**fields, "reason": f"operator: {fields['reason']}"}
        try:
            journal.fire(TRADING, trading, command, now_ms=now_ms, **data)
        except TransitionRefused as exc:
            journal.commit()
            return {"ok": False, "error": str(exc), "trading": {"state": str(trading.state)}}
        journal.commit()
        return {"ok": True, "trading": {"state": str(trading.state), "reason": trading.data["reason"]}}
    finally:
        journal.close()


def _status(args: argparse.Namespace) -> int:
    path = _socket_of(args)
    try:
        answer = control.request(path, "status")
        status = answer["status"]
    except control.NoKernel:
        if not os.path.exists(args.db):
            return _error(f"no kernel answers on {path} and there is no journal at {args.db}")
        try:
            status = journal_status(args.db)
        except JournalError as exc:
            return _error(str(exc))
    except control.ControlError as exc:
        return _error(str(exc))
    if args.json:
        print(json.dumps(status, default=str, indent=2))
    else:
        print(render_text(status))
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    path = _socket_of(args)
    try:
        answer = control.request(path, "stop", reason=args.reason, force=args.force)
    except control.NoKernel as exc:
        print(f"tradekernel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except control.ControlError as exc:
        return _error(str(exc))
    print(f"stopping: {answer.get('reason')}")
    deadline = time.monotonic() + args.wait
    while args.wait and time.monotonic() < deadline:
        # Gone means: the journal's writer lock is free (the socket closes before the journal).
        if not writer_active(args.db):
            print("stopped")
            return EXIT_OK
        time.sleep(0.1)
    if args.wait:
        print(f"tradekernel: the kernel on {path} is still running after {args.wait:g} s", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
