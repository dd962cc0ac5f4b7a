"""The ``tradekernel`` command line (also ``python -m kernel``): the top-level parser and ``main``.

One module per command family does the work: ``run`` (run), ``operator`` (status, stop, halt,
reduce, arm), ``resume``, ``audit``, ``drive``, ``venue``, ``market`` (watch), ``diagram``,
``migrate``, ``ship``; ``config`` is added by ``kernel.config``.

Start-up is lazy: ``main`` imports only the module of the command given (``_COMMANDS``), so
``tradekernel status`` or ``audit tail`` pays for neither the paper venue simulator, the
configuration framework, ``sqlite_utils`` nor the network clients. Only ``--help``, ``--version``
and an unknown command build the parser of every command.

Exit codes, for every command (``kernel.exits``): 0 ok, 1 a check failed, 2 usage or input error
(bad arguments, a journal that is missing, locked, corrupt or newer than this code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from kernel.cli.common import usage_error
from kernel.exits import EXIT_OK
from storage.errors import JournalError

_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kernel.cli.run", ("run",)),
    ("kernel.cli.operator", ("status", "stop", "halt", "reduce", "arm")),
    ("kernel.cli.resume", ("resume",)),
    ("kernel.cli.audit", ("audit",)),
    ("kernel.config", ("config",)),
    ("kernel.cli.drive", ("drive",)),
    ("kernel.cli.venue", ("venue",)),
    ("kernel.cli.market", ("market",)),
    ("kernel.cli.diagram", ("diagram",)),
    ("kernel.cli.migrate", ("migrate",)),
    ("kernel.cli.ship", ("ship",)),
)
"""Each module that registers commands (its ``add_parsers`` or ``add_parser``), with their names, in
``--help`` order."""

COMMAND_NAMES: frozenset[str] = frozenset(name for _, names in _COMMANDS for name in names)


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (``importlib.metadata`` is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        help_text = "show program's version number and exit"
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help_text)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from kernel import __version__

        print(f"tradekernel {__version__}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (also what ``--help`` prints): of every command, or only of ``command``."""
    parser = argparse.ArgumentParser(
        prog="tradekernel",
        description="A state-machine driven trading kernel: every transition is journaled "
        "to SQLite before the kernel acts on it.",
        epilog="Exit status: 0 ok, 1 a check failed, 2 usage or input error.",
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name, names in _COMMANDS:
        if command is None or command in names:
            module = importlib.import_module(module_name)
            register = getattr(module, "add_parsers", None) or module.add_parser
            register(commands)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` starts with, when it is a known one.

    ``None`` when it starts with an option: the top-level ones (``--help``, ``--version``) print
    what needs the parser of every command."""
    if argv and argv[0] in COMMAND_NAMES:
        return argv[0]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command_of(words)).parse_args(words)
    try:
        if args.command == "audit":
            from kernel.cli import audit

            code: int = audit.run(args)
        else:
            code = args.run(args)
        # Flush inside the try: output still buffered at exit would meet a closed pipe there,
        # where Python can only print a traceback and exit 120.
        sys.stdout.flush()
        return code
    except JournalError as exc:
        return usage_error(str(exc))
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
