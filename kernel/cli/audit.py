"""``tradekernel audit ...``: read the journal as tables for people or JSON for scripts.

    tradekernel audit tail|timeline|entities|fills|verify|anomalies|stats|export [--db PATH] [--json] ...
    tradekernel audit tail|timeline|entities|fills|stats --db postgresql://... [--kernel ID]   (the fleet store)
    tradekernel audit serve [--db PATH] [--port N]   (Datasette: kernel/cli/audit_serve.py)

With ``--db postgresql://...`` the listings read the fleet store (``storage.fleet.reader``) across
kernels, with the same output plus a ``kernel_id`` column (field); ``--kernel ID`` narrows them.

Exit codes: 0 ok, 1 a check failed (``verify``), 2 usage or input error (no such file, not a
journal, unknown entity, ...).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import IO, Any

from kernel.cli import audit_serve
from kernel.cli.common import DEFAULT_DB, usage_error
from kernel.cli.reports import add_fill_filters, print_fills
from kernel.cli.table import format_table
from kernel.exits import EXIT_FAILED, EXIT_OK
from machines import registry
from storage import codec
from storage.audit import AuditReader


def add_parser(commands: Any) -> None:
    """Register ``audit`` and its subcommands on the top-level subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"journal file (default: ./{DEFAULT_DB})")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    fleet = argparse.ArgumentParser(add_help=False, parents=[common])
    fleet.set_defaults(fleet=True)
    fleet.add_argument(
        "--kernel",
        metavar="ID",
        help="with --db postgresql://... (the fleet store, across kernels): only this kernel's rows",
    )

    audit = commands.add_parser(
        "audit",
        help="inspect the state journal (read-only)",
        description="Inspect the state journal (or, with --db postgresql://..., the fleet store across "
        "kernels: tail, timeline, entities, fills, stats). Opens it read-only: safe while a kernel runs. "
        "Exit status: 0 ok, 1 check failed, 2 usage or input error.",
    )
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    tail = sub.add_parser("tail", parents=[fleet], help="latest transitions, oldest first")
    tail.add_argument("-n", type=_positive, default=20, metavar="N", help="how many (default 20)")
    tail.add_argument("--machine", metavar="M", help="only this machine")
    tail.add_argument("--entity", metavar="E", help="only this entity")
    tail.set_defaults(run=_tail)

    timeline = sub.add_parser("timeline", parents=[fleet], help="every transition of one entity")
    timeline.add_argument("entity", metavar="ENTITY")
    timeline.add_argument("--machine", metavar="M", help="the entity's machine, when ids repeat across machines")
    timeline.set_defaults(run=_timeline)

    entities = sub.add_parser("entities", parents=[fleet], help="current state of each entity")
    entities.add_argument("--machine", metavar="M", help="only this machine")
    entities.add_argument(
        "--live",
        action="store_true",
        help="only live entities: not in a terminal state, and not left behind by a run that is over",
    )
    entities.set_defaults(run=_entities)

    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="check file integrity, the hash chain, and that replay reproduces current state",
    )
    verify.add_argument(
        "--against",
        metavar="URL",
        help="also compare every row's hash with the fleet store (postgresql://...) holding this journal",
    )
    verify.set_defaults(run=_verify)

    anomalies = sub.add_parser("anomalies", parents=[common], help="latest bad inputs recorded, with samples")
    anomalies.add_argument("-n", type=_positive, default=20, metavar="N", help="how many (default 20)")
    anomalies.add_argument("--source", metavar="S", help="only this source (e.g. feed:paper)")
    anomalies.set_defaults(run=_anomalies)

    stats = sub.add_parser("stats", parents=[fleet], help="rows per machine, entities, runs, file size")
    stats.set_defaults(run=_stats)

    fills = sub.add_parser("fills", parents=[fleet], help="every fill, as `tradekernel fills` lists it")
    add_fill_filters(fills, json_option=False)
    fills.set_defaults(run=print_fills)

    export = sub.add_parser("export", parents=[common], help="dump transitions as CSV or JSON")
    export.add_argument(
        "--format",
        choices=("csv", "json", "jsonl"),
        default="jsonl",
        help="csv, json (one array) or jsonl (one object per line; default)",
    )
    export.add_argument(
        "--since",
        type=_non_negative,
        default=0,
        metavar="SEQ",
        help="only rows after SEQ (pass the last seq you exported to continue)",
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    export.set_defaults(run=_export)

    audit_serve.add_parser(sub)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def is_store_url(db: str) -> bool:
    """True when ``--db`` names the fleet store (PostgreSQL) rather than a journal file."""
    return db.startswith(("postgresql://", "postgres://"))


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``audit`` subcommand; journal errors propagate to the caller."""
    if is_store_url(args.db):
        return _run_fleet(args)
    if getattr(args, "kernel", None):
        return usage_error("--kernel narrows the fleet store: pass --db postgresql://...", "audit")
    with AuditReader(args.db) as reader:
        code: int = args.run(reader, args)
        return code


def _run_fleet(args: argparse.Namespace) -> int:
    """The listings on the fleet store; psycopg is imported only here."""
    if not getattr(args, "fleet", False):
        return usage_error(
            f"audit {args.audit_command} reads a journal file; on the fleet store (--db postgresql://...) "
            "use tail, timeline, entities, fills or stats",
            "audit",
        )
    from storage.fleet.errors import ShipError
    from storage.fleet.reader import FleetReader

    try:
        with FleetReader(args.db, kernel=args.kernel) as reader:
            if args.kernel and not reader.kernels():
                return usage_error(f"the fleet store {reader.where} holds no kernel {args.kernel!r}", "audit")
            code: int = args.run(reader, args)
            return code
    except ShipError as exc:
        return usage_error(str(exc), "audit")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def _short_time(iso: str) -> str:
    return iso[:23] + "Z"


def _data_text(data: Any) -> str:
    return codec.encode(data).decode()


PRICE_KEYS = frozenset({"price", "avg_px", "last_px", "mark", "bid", "ask", "last_price", "stop_price"})
QTY_KEYS = frozenset({"qty", "cum_qty", "leaves_qty", "last_qty", "filled_qty", "position"})
MONEY_KEYS = frozenset(
    {"fee", "fees", "cash", "cost", "notional", "filled_notional", "realized_pnl", "unrealized_pnl", "pnl", "total_pnl"}
)


def human_data(data: Any, instrument: str | None) -> Any:
    """``data`` for a table: the decimal strings under price, quantity and money keys quantized with
    ``kernel.display`` (the default rules of ``instrument``, else of ``data["instrument"]``); data
    of no instrument is left as it is. ``--json`` keeps the exact strings."""
    from kernel.display import Precision

    if not isinstance(data, dict):
        return data
    instrument = instrument or data.get("instrument")
    shown = Precision.of(instrument) if isinstance(instrument, str) and instrument else None

    def one(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return human_data(value, instrument)
        if shown is None or not isinstance(value, str):
            return value
        form = shown.price if key in PRICE_KEYS else shown.qty if key in QTY_KEYS else None
        form = shown.money if key in MONEY_KEYS else form
        if form is None:
            return value
        try:
            return form(Decimal(value))
        except InvalidOperation:
            return value

    return {k: one(k, v) for k, v in data.items()}


class Instruments:
    """The instrument of each row's entity, for ``human_data``: from the row's data, a position's
    entity, or an order's first transition (looked up once per order)."""

    def __init__(self, reader: AuditReader) -> None:
        self.reader = reader
        self.known: dict[tuple[str, str], str | None] = {}

    def of(self, row: dict[str, Any]) -> str | None:
        machine, entity, data = row["machine"], row["entity"], row["data"]
        if isinstance(data, dict) and isinstance(data.get("instrument"), str):
            self.known.setdefault((machine, entity), data["instrument"])
            return str(data["instrument"])
        if machine == "position":
            return str(entity)
        if machine != "order":
            return None
        if (machine, entity) not in self.known:
            first = self.reader.timeline(entity, machine=machine)[:1]
            found = first[0]["data"].get("instrument") if first and isinstance(first[0]["data"], dict) else None
            self.known[(machine, entity)] = found if isinstance(found, str) else None
        return self.known[(machine, entity)]


def _kernel_column(rows: list[dict[str, Any]]) -> tuple[list[str], Any]:
    """``(["kernel"], row -> [kernel_id])`` for fleet rows, nothing for a journal's."""
    if rows and "kernel_id" in rows[0]:
        return ["kernel"], lambda row: [row["kernel_id"]]
    return [], lambda row: []


def _transition_table(rows: list[dict[str, Any]], instruments: Instruments) -> str:
    head, kernel = _kernel_column(rows)
    return format_table(
        [*head, "seq", "time (UTC)", "run", "machine", "entity", "trigger", "source -> dest", "data"],
        [
            [
                *kernel(r),
                r["seq"],
                _short_time(r["ts"]),
                r["run"],
                r["machine"],
                r["entity"],
                r["trigger"],
                f"{r['source'] or '(new)'} -> {r['dest']}",
                _data_text(human_data(r["data"], instruments.of(r))),
            ]
            for r in rows
        ],
    )


def _public(row: dict[str, Any]) -> dict[str, Any]:
    kernel = {"kernel_id": row["kernel_id"]} if "kernel_id" in row else {}
    return kernel | {
        k: row[k]
        for k in ("seq", "ts", "ts_ns", "run", "machine", "entity", "trigger", "source", "dest", "data", "hash")
    }


def _tail(reader: AuditReader, args: argparse.Namespace) -> int:
    if args.machine is not None:
        held = reader.machine_names() if hasattr(reader, "machine_names") else reader.stats()["transitions_per_machine"]
        known = sorted(set(registry.names()) | set(held))
        if args.machine not in known:
            return usage_error(f"unknown machine {args.machine!r}; known machines: {', '.join(known)}", "audit tail")
    rows = reader.tail(args.n, machine=args.machine, entity=args.entity)
    if args.json:
        _print_json([_public(r) for r in rows])
    elif rows:
        print(_transition_table(rows, Instruments(reader)))
    else:
        print("no transitions")
    return EXIT_OK


def _timeline(reader: AuditReader, args: argparse.Namespace) -> int:
    rows = reader.timeline(args.entity, machine=args.machine)
    if not rows:
        where = f" of machine {args.machine!r}" if args.machine else ""
        return usage_error(f"no transitions for entity {args.entity!r}{where} in {_where(reader, args)}")
    if args.json:
        _print_json([_public(r) for r in rows])
    else:
        print(_transition_table(rows, Instruments(reader)))
    return EXIT_OK


def _entities(reader: AuditReader, args: argparse.Namespace) -> int:
    rows = reader.entities(machine=args.machine, live_only=args.live, live_now=True)
    instruments = Instruments(reader)
    if args.json:
        _print_json(rows)
    elif rows:
        head, kernel = _kernel_column(rows)
        print(
            format_table(
                [*head, "machine", "entity", "state", "live", "seq", "data"],
                [
                    [
                        *kernel(r),
                        r["machine"],
                        r["entity"],
                        r["state"],
                        "yes" if r["live"] else "no",
                        r["seq"],
                        _data_text(human_data(r["data"], instruments.of(r))),
                    ]
                    for r in rows
                ],
            )
        )
    else:
        print("no entities")
    return EXIT_OK


def _anomalies(reader: AuditReader, args: argparse.Namespace) -> int:
    rows = reader.anomalies(args.n, source=args.source)
    if args.json:
        _print_json(rows)
    elif rows:
        print(format_table(
            ["id", "time (UTC)", "run", "source", "kind", "reason", "sample"],
            [[r["id"], _short_time(r["ts"]), r["run"], r["source"], r["kind"], r["reason"], r["sample"]] for r in rows],
        ))  # fmt: skip
    else:
        print("no anomalies")
    return EXIT_OK


def _verify(reader: AuditReader, args: argparse.Namespace) -> int:
    result = reader.verify()
    against_ok: bool = True
    against: dict[str, Any] | None = None
    lines: list[str] = []
    if args.against:  # psycopg is imported only here
        from kernel.cli.ship import verify_against

        against_ok, against, lines = verify_against(args.db, args.against)
    if args.json:
        _print_json(result.as_json() if against is None else {**result.as_json(), "against": against})
    elif result.ok:
        print(f"ok: {result.transitions} transitions, {result.entities} entities; checked {', '.join(result.checks)}")
    else:
        where = f"at seq {result.first_bad_seq}" if result.first_bad_seq is not None else "in the file"
        print(f"FAILED {where}: {result.reason}")
    for line in [] if args.json else lines:
        print(line)
    return EXIT_OK if result.ok and against_ok else EXIT_FAILED


def _where(reader: Any, args: argparse.Namespace) -> str:
    return str(getattr(reader, "where", args.db))


def _stats(reader: AuditReader, args: argparse.Namespace) -> int:
    stats = reader.stats()
    if args.json:
        _print_json(stats)
        return EXIT_OK
    if "store" in stats:
        _print_store_stats(stats)
        return EXIT_OK
    print(f"journal        {stats['path']} (schema version {stats['schema_version']})")
    print(
        f"size           {stats['total_bytes']:,} bytes "
        f"({', '.join(f'{k} {v:,}' for k, v in stats['file_bytes'].items())})"
    )
    span = f" (seq {stats['first_seq']} .. {stats['last_seq']})" if stats["transitions"] else ""
    print(f"transitions    {stats['transitions']:,}{span}")
    if stats["first_ts"]:
        print(f"time span      {_short_time(stats['first_ts'])} .. {_short_time(stats['last_ts'])}")
    print(f"runs           {', '.join(f'{n} {s}' for s, n in stats['runs'].items()) or 'none'}")
    print(f"anomalies      {', '.join(f'{n} from {s}' for s, n in stats['anomalies'].items()) or 'none'}")
    _print_machine_counts(stats)
    return EXIT_OK


_EXPORT_FIELDS = ("seq", "ts", "ts_ns", "run", "machine", "entity", "trigger", "source", "dest", "data", "hash")


def _export(reader: AuditReader, args: argparse.Namespace) -> int:
    rows = reader.export(since=args.since)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            count = _write_export(rows, args.format, out)
        print(f"exported {count} transitions to {args.output}", file=sys.stderr)
    else:
        _write_export(rows, args.format, sys.stdout)
    return EXIT_OK


def _write_export(rows: Iterable[dict[str, Any]], fmt: str, out: IO[str]) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_EXPORT_FIELDS)
        for row in rows:
            writer.writerow([_data_text(row[f]) if f == "data" else row[f] for f in _EXPORT_FIELDS])
            count += 1
    elif fmt == "json":
        out.write("[")
        for row in rows:
            out.write(("\n" if count == 0 else ",\n") + json.dumps(_public(row)))
            count += 1
        out.write("\n]\n" if count else "]\n")
    else:
        for row in rows:
            out.write(json.dumps(_public(row)) + "\n")
            count += 1
    return count


def _print_store_stats(stats: dict[str, Any]) -> None:
    """``audit stats`` of the fleet store, for people."""
    print(f"fleet store    {stats['store']} (schema version {stats['schema_version']})")
    print(f"size           {stats['total_bytes']:,} bytes (the database)")
    span = f" (seq {stats['first_seq']} .. {stats['last_seq']})" if stats["transitions"] else ""
    print(f"transitions    {stats['transitions']:,}{span}")
    if stats["first_ts"]:
        print(f"time span      {_short_time(stats['first_ts'])} .. {_short_time(stats['last_ts'])}")
    print(f"runs           {', '.join(f'{n} {s}' for s, n in stats['runs'].items()) or 'none'}")
    print(f"anomalies      {', '.join(f'{n} from {s}' for s, n in stats['anomalies'].items()) or 'none'}")
    if stats["kernels"]:
        print()
        print(
            format_table(
                ["kernel", "host", "journal", "shipped seq", "last shipped (UTC)"],
                [
                    [k["kernel_id"], k["host"], k["journal_path"], k["last_seq"], k["last_shipped_at"]]
                    for k in stats["kernels"]
                ],
            )
        )
    _print_machine_counts(stats)


def _print_machine_counts(stats: dict[str, Any]) -> None:
    """The ``stats`` table of transitions and live/ended entities per machine (journal or store)."""
    machines = sorted(set(stats["transitions_per_machine"]) | set(stats["live_entities"]))
    if not machines:
        return
    print()
    print(
        format_table(
            ["machine", "transitions", "live entities", "ended entities"],
            [
                [
                    m,
                    stats["transitions_per_machine"].get(m, 0),
                    stats["live_entities"].get(m, 0),
                    stats["ended_entities"].get(m, 0),
                ]
                for m in machines
            ],
        )
    )
