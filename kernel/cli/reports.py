"""``tradekernel fills``, ``pnl`` and ``report``: what the journal says was traded, and how it went.

    tradekernel fills [--db J] [--since ISO-or-date] [--instrument X] [--json | --csv]
    tradekernel pnl [--db J] [--json]
    tradekernel report --html FILE [--db J]

Read-only (safe while a kernel runs). Exit status: 0 ok, 2 usage or input error (no such journal,
a bad ``--since``). docs/reports.md describes each column.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from kernel.cli.common import DEFAULT_DB
from kernel.cli.table import format_table
from kernel.exits import EXIT_OK
from storage.audit import AuditReader

if TYPE_CHECKING:  # psycopg only for the fleet store
    from storage.fleet.reader import FleetReader


def add_parsers(commands: Any) -> None:
    """Register ``fills``, ``pnl`` and ``report`` on the top-level subparsers."""
    fills = commands.add_parser(
        "fills",
        help="list the fills in the journal (time, order, instrument, side, qty, price, fee, liquidity)",
        description="List every fill applied to an order, in journal order. The table rounds to the "
        "instrument's tick, lot and quote currency; --json and --csv keep the journal's exact decimals.",
    )
    _db(fills)
    add_fill_filters(fills)
    fills.set_defaults(run=_fills)

    pnl = commands.add_parser(
        "pnl",
        help="P&L per instrument and in total: realized, unrealized, fees, trades, win rate, max drawdown",
        description="P&L from the journal's fills (average cost). Open positions are marked at the "
        "last fill price of their instrument (the journal holds no market prices).",
    )
    _db(pnl)
    pnl.add_argument("--json", action="store_true", help="print JSON (exact decimal strings)")
    pnl.set_defaults(run=_pnl)

    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report (P&L curve, fills on price, trading states, halts)",
        description="Write one HTML page with inline SVG charts and no network references: the P&L "
        "curve, the fills on the price line, the trading-state timeline and the halt reasons.",
    )
    _db(report)
    report.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    report.set_defaults(run=_report)


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"journal file (default: ./{DEFAULT_DB})")


def _since(text: str) -> int:
    from kernel.reports.fills import parse_since

    try:
        return parse_since(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date or time: {text!r}") from None


def add_fill_filters(parser: argparse.ArgumentParser, *, json_option: bool = True) -> None:
    """The options of ``fills`` (also ``audit fills``; ``json_option``: add ``--json`` too)."""
    parser.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only fills journaled at or after WHEN (ISO-8601 date or time; UTC unless it has a zone)",
    )
    parser.add_argument("--instrument", metavar="X", help="only this instrument's fills")
    formats = parser.add_mutually_exclusive_group()
    if json_option:
        formats.add_argument("--json", action="store_true", help="print JSON (exact decimal strings)")
    formats.add_argument("--csv", action="store_true", help="print CSV (exact decimal strings)")


def print_fills(reader: AuditReader | FleetReader, args: argparse.Namespace) -> int:
    """Print the fills ``args`` ask for (``--since``, ``--instrument``, ``--json``/``--csv``), of
    a journal or (``audit fills --db postgresql://...``) of the fleet store."""
    from kernel.reports import fills

    rows = reader.fills(since_ns=args.since, instrument=args.instrument)
    if args.json and args.csv:
        from kernel.cli.common import usage_error

        return usage_error("--json and --csv are exclusive", "audit fills")
    if args.json:
        sys.stdout.write(json.dumps([fills.public(r) for r in rows], indent=2) + "\n")
    elif args.csv:
        sys.stdout.write(fills.csv_text(rows))
    elif rows:
        print(format_table(fills.table_headers(rows), fills.table_rows(rows)))
    else:
        print("no fills")
    return EXIT_OK


def _fills(args: argparse.Namespace) -> int:
    with AuditReader(args.db) as reader:
        return print_fills(reader, args)


def _pnl(args: argparse.Namespace) -> int:
    from kernel.reports import pnl

    with AuditReader(args.db) as reader:
        report = pnl.compute(reader.fills())
    if args.json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        print(format_table(pnl.HEADERS, pnl.table_rows(report)) if report.instruments else "no fills")
        if report.instruments:
            print(f"unrealized P&L marked at each instrument's last fill price ({pnl.MARK_SOURCE})")
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from kernel.reports import html

    with AuditReader(args.db) as reader:
        page = html.render(html.gather(reader))
    with open(args.html, "w", encoding="utf-8") as out:
        out.write(page)
    print(f"wrote {args.html}", file=sys.stderr)
    return EXIT_OK
