"""``tradekernel audit serve``: browse the journal in Datasette, with the shipped metadata.

    tradekernel audit serve [--db PATH] [--port N] [--host ADDRESS [--allow-remote]]

Datasette (the ``tradekernel[ui]`` extra) is imported only here, when the command runs. It opens
the journal in its default mode, read-only (``?mode=ro``): safe beside a running kernel, which it
never blocks. Not ``--immutable``, which would let SQLite skip the locks and the WAL a live journal
needs, nor ``--nolock``, which reads without the WAL's locks. Exit status: 0 after the server was
stopped (Ctrl-C or SIGTERM), 2 when Datasette is missing, the arguments are refused or the
server cannot listen (the port is taken).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from kernel.cli.common import DEFAULT_DB, usage_error
from kernel.exits import EXIT_OK, EXIT_USAGE
from storage.audit import AuditReader
from storage.datasette import metadata_for

DEFAULT_PORT = 8001
"""Datasette's own default port."""
INSTALL_HINT = "pip install 'tradekernel[ui]'"


def add_parser(audit_commands: Any) -> None:
    """Register ``serve`` on ``tradekernel audit``'s subcommands."""
    serve = audit_commands.add_parser(
        "serve",
        help="browse the journal in Datasette (loopback; needs tradekernel[ui])",
        description="Start Datasette on the journal, read-only, with tradekernel's table descriptions "
        "and canned queries (fills of a day, an order's history, halts, anomalies). Stops on Ctrl-C. "
        f"Needs Datasette: {INSTALL_HINT}. Exit status: 0 stopped, 2 usage error or Datasette missing.",
    )
    serve.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"journal file (default: ./{DEFAULT_DB})")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="N", help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--host", default="127.0.0.1", metavar="ADDRESS", help="address (default 127.0.0.1)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (Datasette runs any read-only SQL a visitor sends)",
    )
    serve.set_defaults(run=serve_journal)


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError("must be a port number, 1 to 65535")
    return value


def datasette_available() -> bool:
    """True when Datasette can be imported (the ``tradekernel[ui]`` extra is installed)."""
    return importlib.util.find_spec("datasette") is not None


def serve_journal(reader: AuditReader, args: argparse.Namespace) -> int:
    """Run Datasette on ``args.db`` until it is stopped; ``reader`` has checked it is a journal."""
    from kernel.net import is_loopback

    if not is_loopback(args.host) and not args.allow_remote:
        return usage_error(
            f"--host {args.host} is not a loopback address; pass --allow-remote to serve the journal "
            "to other hosts (anyone who can reach it can read everything in it)",
            "audit serve",
        )
    if not datasette_available():
        print(f"tradekernel audit serve: Datasette is not installed: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    reader.close()  # checked; Datasette opens its own read-only connections
    import click
    from datasette.cli import cli  # type: ignore[import-untyped]

    with tempfile.TemporaryDirectory(prefix="tradekernel-datasette-") as directory:
        metadata = Path(directory) / "metadata.json"
        metadata.write_text(json.dumps(metadata_for(args.db)), encoding="utf-8")
        argv = [
            "serve",
            os.path.abspath(args.db),
            "--metadata",
            str(metadata),
            "--host",
            args.host,
            "--port",
            str(args.port),
        ]
        # uvicorn shuts down gracefully on SIGTERM, then raises it again: turned into
        # KeyboardInterrupt here, so the metadata's directory is removed on the way out.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            result = cli.main(args=argv, prog_name="datasette", standalone_mode=False)
        except KeyboardInterrupt:
            return EXIT_OK
        except click.ClickException as exc:
            exc.show()
            return EXIT_USAGE
        except SystemExit as exc:  # uvicorn exits 1 when it cannot listen (the port is taken)
            return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
        finally:
            signal.signal(signal.SIGTERM, previous)
    return result if isinstance(result, int) else EXIT_OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
