"""``tradekernel migrate``: create a journal, or bring its schema up to this version.

Exit status: 0 created, migrated or already up to date; 2 (from ``main``) a journal that is locked,
corrupt or newer than this code.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from kernel.cli.common import DEFAULT_DB
from kernel.exits import EXIT_OK
from storage import Journal


def add_parser(commands: Any) -> None:
    """Add ``migrate`` to the ``tradekernel`` sub-commands."""
    parser = commands.add_parser(
        "migrate",
        help="create a journal or bring its schema up to this version",
        description="Create the journal at --db if missing, or apply pending forward-only schema "
        "migrations. Takes the writer lock: refused while a kernel runs on it.",
    )
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"journal file (default: ./{DEFAULT_DB})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Open (and so create or migrate) the journal at ``--db``; say what changed. Journal errors propagate."""
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
