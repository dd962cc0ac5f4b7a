"""``tradekernel status``, ``stop``, ``halt``, ``reduce`` and ``arm``: talk to a kernel through its control socket.

    tradekernel status [--db PATH | --control-socket PATH] [--json]
    tradekernel stop   [--db PATH | --control-socket PATH] [--force] [--wait S]
    tradekernel halt   [--db PATH | --control-socket PATH] --reason R [--flatten] [--json]
    tradekernel reduce [--db PATH | --control-socket PATH] [--reason R] [--json]
    tradekernel arm    [--db PATH | --control-socket PATH] --reason R [--json]

With no kernel answering, ``status`` reads the journal, and ``halt``/``reduce``/``arm`` are journaled
directly (the next start acts on them): as operator commands, outside any run (their transitions
carry run 0; no ``run`` entity is created, so the run numbers and ``status``'s last run stay the
kernel's). An offline ``halt`` completes at once when there is nothing to cancel (``halt`` then
``all_canceled``, and ``flattened`` for ``--flatten`` with every position flat, in one commit):
``halted``. With orders still live in the journal (a journal left by a killed kernel) it stays
``halting`` and says so: only a kernel can cancel them at the venue (it reconciles on start, cancels
them and completes the halt); ``arm`` is refused until then, as by a running kernel.

Exit status of ``status``: 0 (running or not). ``stop``: 0
the kernel stopped (or was asked to, without ``--wait``); 1 no kernel answered; 2 usage errors.
``halt``/``reduce``/``arm``: 0 done; 1 refused in the current trading state; 2 usage or journal errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from kernel import control
from kernel.cli.common import DEFAULT_DB, usage_error
from kernel.exits import EXIT_FAILED, EXIT_OK
from storage.errors import JournalError

if TYPE_CHECKING:  # the journal's writer and the machines are imported where used (start-up, issue 17)
    from decimal import Decimal

    from machines import Entity
    from storage import Journal

_TRADING_COMMANDS = (
    ("halt", "stop trading: cancel every open order (and with --flatten close positions), then halted"),
    ("reduce", "only orders that reduce exposure may go out"),
    ("arm", "trade again after a halt or reduce (the reason is journaled)"),
)


def add_parsers(commands: Any) -> None:
    """Add ``status``, ``stop``, ``halt``, ``reduce`` and ``arm`` to the ``tradekernel`` sub-commands."""
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
    stop.add_argument(
        "--force", action="store_true", help="wait at most 1 s, for the answers to the cancels sent (a 2nd Ctrl-C)"
    )
    stop.add_argument("--reason", default="operator: tradekernel stop", help="recorded in the journal")
    stop.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds until it is gone")
    stop.set_defaults(run=_stop)

    for command, help_text in _TRADING_COMMANDS:
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
            return usage_error(f"no kernel answers on {path} and there is no journal at {args.db}")
        try:
            answer = operator_offline(args.db, command, fields)
        except JournalError as exc:
            return usage_error(str(exc))
        where = "journal (no kernel running)"
    except control.ControlError as exc:
        return usage_error(str(exc))
    trading = answer.get("trading") or {}
    if args.json:
        print(json.dumps({**answer, "via": where}, default=str))
    elif answer.get("ok"):
        print(f"trading {trading.get('state')}: {trading.get('reason')}  ({where})")
        if answer.get("note"):
            print(answer["note"])
    else:
        print(f"tradekernel: {command} refused: {answer.get('error')}", file=sys.stderr)
    return EXIT_OK if answer.get("ok") else EXIT_FAILED


def operator_offline(db: str, command: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Journal an operator command with no kernel running (the next start acts on it).

    The command is journaled as an operator command, not as a kernel run (the journal is opened
    with ``start_run=False``: its transitions carry run 0). An offline ``halt`` is completed in the
    same commit when nothing is left to cancel (see the module doc). Returns the answer a running
    kernel would give (``ok``, ``trading``, ``note`` when a halt is left ``halting``, or ``error``
    when the trading machine refused the command). Raises ``JournalError`` when the journal cannot
    be opened.
    """
    from kernel.clock import monotonic_ms
    from machines import TRADING, TransitionRefused
    from machines.trading import ENTITY_ID
    from storage import Journal

    positions = _journal_positions(db) if fields.get("flatten") else {}
    journal = Journal.open(db, start_run=False)
    try:
        found = journal.live_entities(TRADING)
        now_ms = monotonic_ms()
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
        note = _complete_halt(journal, trading, positions, now_ms) if command == "halt" else None
        journal.commit()
        answer = {"ok": True, "trading": {"state": str(trading.state), "reason": trading.data["reason"]}}
        return {**answer, "note": note} if note else answer
    finally:
        journal.close()


def _journal_positions(db: str) -> dict[str, Decimal]:
    """Instrument -> signed quantity, folded from the journaled fills (read-only)."""
    from kernel.status import journal_status
    from machines.decimals import Sign, parse_decimal

    positions = journal_status(db).get("positions") or {}
    return {instrument: parse_decimal(p["qty"], "qty", sign=Sign.any) for instrument, p in positions.items()}


def _complete_halt(journal: Journal, trading: Entity, positions: dict[str, Decimal], now_ms: int) -> str | None:
    """Take the halt driver's steps that need no kernel (``all_canceled``, ``flattened``).

    Returns why the halt stays ``halting`` (live orders or positions only a kernel can act on),
    or ``None`` once it is ``halted``.
    """
    from machines import ORDER, TRADING
    from machines.halt import FireTrading, halt_step

    open_orders = {order.entity_id: str(order.state) for order in journal.live_entities(ORDER)}
    while True:
        commands = halt_step(trading, open_orders, positions, now_ms)
        fires = [c for c in commands if isinstance(c, FireTrading)]
        if not commands or len(fires) != len(commands):
            break
        for fire in fires:
            journal.fire(TRADING, trading, fire.trigger, now_ms=now_ms, **fire.data)
    if str(trading.state) != "halting":
        return None
    if open_orders:
        return (
            f"{len(open_orders)} order(s) still open in the journal: a kernel must run to cancel them "
            "(it reconciles with the venue, cancels them and completes the halt)"
        )
    flat = sum(1 for qty in positions.values() if qty)
    return f"{flat} position(s) to flatten: a kernel must run to close them and complete the halt"


def _status(args: argparse.Namespace) -> int:
    from kernel.status import journal_status, render_text

    path = _socket_of(args)
    try:
        answer = control.request(path, "status")
        status = answer["status"]
    except control.NoKernel:
        if not os.path.exists(args.db):
            return usage_error(f"no kernel answers on {path} and there is no journal at {args.db}")
        try:
            status = journal_status(args.db)
        except JournalError as exc:
            return usage_error(str(exc))
    except control.ControlError as exc:
        return usage_error(str(exc))
    if args.json:
        print(json.dumps(status, default=str, indent=2))
    else:
        print(render_text(status))
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    from storage.lock import writer_active

    path = _socket_of(args)
    try:
        answer = control.request(path, "stop", reason=args.reason, force=args.force)
    except control.NoKernel as exc:
        print(f"tradekernel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except control.ControlError as exc:
        return usage_error(str(exc))
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
