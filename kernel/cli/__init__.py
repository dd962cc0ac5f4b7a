"""The ``tradekernel`` command line (also ``python -m kernel``): the top-level parser and ``main``.

One module per command family does the work: ``run`` (run), ``operator`` (status, stop, halt,
reduce, arm), ``resume``, ``audit``, ``drive``, ``venue``, ``market`` (watch), ``diagram``,
``migrate``; ``config`` is added by ``kernel.config``.

Exit codes, for every command (``kernel.exits``): 0 ok, 1 a check failed, 2 usage or input error
(bad arguments, a journal that is missing, locked, corrupt or newer than this code).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kernel import __version__
from kernel import config as config_cmd
from kernel.cli import audit, diagram, drive, market, migrate, operator, resume, run, venue
from kernel.cli.common import usage_error
from kernel.exits import EXIT_OK
from storage.errors import JournalError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also what ``--help`` prints)."""
    parser = argparse.ArgumentParser(
        prog="tradekernel",
        description="A state-machine driven trading kernel: every transition is journaled "
        "to SQLite before the kernel acts on it.",
        epilog="Exit status: 0 ok, 1 a check failed, 2 usage or input error.",
    )
    parser.add_argument("--version", action="version", version=f"tradekernel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run.add_parser(commands)
    operator.add_parsers(commands)
    resume.add_parser(commands)
    audit.add_parser(commands)
    config_cmd.add_parser(commands)
    drive.add_parser(commands)
    venue.add_parser(commands)
    market.add_parser(commands)
    diagram.add_parser(commands)
    migrate.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        code: int = audit.run(args) if args.command == "audit" else args.run(args)
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
