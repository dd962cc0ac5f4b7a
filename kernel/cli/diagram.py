"""``tradekernel diagram``: a machine's Mermaid state diagram, generated from its table.

    tradekernel diagram MACHINE [--markdown] | --list | --update-docs DIR [MACHINE]

Exit status: 0 printed (or the docs updated); 2 no such machine or directory, or no MACHINE named.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kernel.cli.common import usage_error
from kernel.exits import EXIT_OK
from machines import diagram, registry


def add_parser(commands: Any) -> None:
    """Add ``diagram`` to the ``tradekernel`` sub-commands."""
    parser = commands.add_parser(
        "diagram",
        help="print a machine's Mermaid state diagram, generated from its table",
        description="Print the Mermaid stateDiagram-v2 of MACHINE, generated from its transition "
        "table, or maintain the generated blocks of docs/machines/*.md.",
    )
    parser.add_argument("machine", nargs="?", metavar="MACHINE", help=f"one of: {', '.join(registry.names())}")
    parser.add_argument("--list", action="store_true", help="list the known machines")
    parser.add_argument(
        "--markdown", action="store_true", help="print the whole generated docs block (diagram and tables)"
    )
    parser.add_argument(
        "--update-docs",
        metavar="DIR",
        help="rewrite the generated block of DIR/NAME.md for every machine (or only MACHINE)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the diagram, list the machines, or update the docs; the exit status."""
    if args.list:
        for name in registry.names():
            print(name)
        return EXIT_OK
    if args.update_docs:
        return update_docs(args.update_docs, args.machine)
    if not args.machine:
        return usage_error("name a MACHINE (or use --list / --update-docs)", "diagram")
    try:
        machine = registry.get(args.machine)
    except LookupError as exc:
        return usage_error(str(exc), "diagram")
    sys.stdout.write(diagram.markdown(machine) if args.markdown else diagram.mermaid(machine))
    return EXIT_OK


def update_docs(directory: str, only: str | None) -> int:
    """Rewrite the generated block of ``directory/NAME.md`` for every machine (or only ``only``)."""
    if not os.path.isdir(directory):
        return usage_error(f"{directory} is not a directory", "diagram")
    names = [only] if only else registry.names()
    for name in names:
        try:
            machine = registry.get(name)
        except LookupError as exc:
            return usage_error(str(exc), "diagram")
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
