"""The ``tradekernel`` command line (also ``python -m kernel``).

Exit codes, for every command: 0 ok, 1 a check failed, 2 usage or input error (bad arguments, a
journal that is missing, locked, corrupt or newer than this code).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from kernel import __version__, resume_cmd, run_cmd
from kernel import audit as audit_cmd
from kernel import config as config_cmd
from kernel import drive as drive_cmd
from kernel.venue import cli as venue_cmd
from machines import diagram, registry
from storage import Journal
from storage.errors import JournalError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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

    run_cmd.add_parsers(commands)
    resume_cmd.add_parser(commands)
    audit_cmd.add_parser(commands)
    config_cmd.add_parser(commands)
    drive_cmd.add_parser(commands)
    venue_cmd.add_parser(commands)

    diagram_parser = commands.add_parser(
        "diagram",
        help="print a machine's Mermaid state diagram, generated from its table",
        description="Print the Mermaid stateDiagram-v2 of MACHINE, generated from its transition "
        "table, or maintain the generated blocks of docs/machines/*.md.",
    )
    diagram_parser.add_argument("machine", nargs="?", metavar="MACHINE", help=f"one of: {', '.join(registry.names())}")
    diagram_parser.add_argument("--list", action="store_true", help="list the known machines")
    diagram_parser.add_argument(
        "--markdown", action="store_true", help="print the whole generated docs block (diagram and tables)"
    )
    diagram_parser.add_argument(
        "--update-docs",
        metavar="DIR",
        help="rewrite the generated block of DIR/NAME.md for every machine (or only MACHINE)",
    )
    diagram_parser.set_defaults(run=_diagram)

    migrate = commands.add_parser(
        "migrate",
        help="create a journal or bring its schema up to this version",
        description="Create the journal at --db if missing, or apply pending forward-only schema "
        "migrations. Takes the writer lock: refused while a kernel runs on it.",
    )
    migrate.add_argument(
        "--db", default=audit_cmd.DEFAULT_DB, metavar="PATH", help=f"journal file (default: ./{audit_cmd.DEFAULT_DB})"
    )
    migrate.set_defaults(run=_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        code: int = audit_cmd.run(args) if args.command == "audit" else args.run(args)
        # Flush inside the try: output still buffered at exit would meet a closed pipe there,
        # where Python can only print a traceback and exit 120.
        sys.stdout.flush()
        return code
    except JournalError as exc:
        print(f"tradekernel: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _diagram(args: argparse.Namespace) -> int:
    if args.list:
        for name in registry.names():
            print(name)
        return EXIT_OK
    if args.update_docs:
        return _update_docs(args.update_docs, args.machine)
    if not args.machine:
        print("tradekernel diagram: error: name a MACHINE (or use --list / --update-docs)", file=sys.stderr)
        return EXIT_USAGE
    try:
        machine = registry.get(args.machine)
    except LookupError as exc:
        print(f"tradekernel diagram: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(diagram.markdown(machine) if args.markdown else diagram.mermaid(machine))
    return EXIT_OK


def _update_docs(directory: str, only: str | None) -> int:
    if not os.path.isdir(directory):
        print(f"tradekernel diagram: error: {directory} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    names = [only] if only else registry.names()
    for name in names:
        try:
            machine = registry.get(name)
        except LookupError as exc:
            print(f"tradekernel diagram: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        path = os.path.join(directory, f"{name}.md")
        page = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                page = f.read()
        else:
            page = f"# The `{name}` machine\n"
        updated = diagram.replace_block(page, machine)
        if updated != page:
            with open(path, "w", encoding="utf-8") as f:
                f.write(updated)
            print(f"updated {path}")
        else:
            print(f"unchanged {path}")
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    existed = os.path.exists(args.db)
    journal = Journal.open(args.db, start_run=False)
    try:
        before, after = journal.schema_before, journal.schema_version
    finally:
        journal.close()
    if not existed:
        print(f"created journal {args.db} (schema version {after})")
    elif before == after:
        print(f"journal {args.db} is up to date (schema version {after})")
    else:
        print(f"migrated journal {args.db} from schema version {before} to {after}")
    return EXIT_OK
