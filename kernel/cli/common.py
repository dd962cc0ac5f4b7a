"""What every ``tradekernel`` command shares: the default journal path and how a usage error is told."""

from __future__ import annotations

import sys

from kernel.exits import EXIT_USAGE

DEFAULT_DB = "tradekernel.db"
"""The journal every command uses when ``--db`` is not given (in the current directory)."""


def usage_error(message: str, command: str | None = None) -> int:
    """Print ``tradekernel[ COMMAND]: error: MESSAGE`` to stderr; return ``EXIT_USAGE``."""
    prog = f"tradekernel {command}" if command else "tradekernel"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE
