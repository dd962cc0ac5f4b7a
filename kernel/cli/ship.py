"""``tradekernel ship``: ship a journal to the fleet store (PostgreSQL) — once, or following it.

Exit status: 0 shipped (or nothing to ship); 1 a chain break (recorded as an incident in the store,
nothing merged) or, with ``--once``, a store still unreachable after the retries; 2 usage or input
error (no journal, a bad URL).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from kernel.cli.common import DEFAULT_DB, usage_error
from kernel.exits import EXIT_FAILED, EXIT_OK

URL_ENV = "TRADEKERNEL_SHIP__URL"


def add_parser(commands: Any) -> None:
    """Add ``ship`` to the ``tradekernel`` sub-commands."""
    parser = commands.add_parser(
        "ship",
        help="ship the journal to the fleet store (PostgreSQL)",
        description="Ship the journal's transitions, anomalies and runs to a PostgreSQL fleet store, "
        "keyed by (kernel_id, seq): resumes from the store's last seq for this journal, in batches, "
        "idempotent; checks that the journal continues the hash chain the store holds (a mismatch is "
        "recorded as an incident and exits 1). Reads the journal read-only: safe while a kernel runs. "
        "Exit status: 0 ok, 1 chain break or store unreachable (--once), 2 usage or input error.",
    )
    parser.add_argument("--db", default=DEFAULT_DB, metavar="PATH", help=f"journal file (default: ./{DEFAULT_DB})")
    parser.add_argument(
        "--to",
        metavar="URL",
        default=os.environ.get(URL_ENV, ""),
        help=f"the store, postgresql://USER@HOST:PORT/DATABASE (default: ${URL_ENV}); "
        "the password from PGPASSWORD or ~/.pgpass",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="ship what there is and exit (the default)")
    mode.add_argument("--follow", action="store_true", help="keep following the journal until interrupted")
    parser.add_argument("--batch-rows", type=_positive_int, default=2000, metavar="N", help="rows per batch (2000)")
    parser.add_argument(
        "--interval", type=_positive_float, default=1.0, metavar="S", help="--follow: seconds between looks (1)"
    )
    parser.add_argument(
        "--max-backoff", type=_positive_float, default=30.0, metavar="S", help="longest wait while the store is down"
    )
    parser.add_argument(
        "--attempts",
        type=_positive_int,
        default=5,
        metavar="N",
        help="--once: attempts while the store is down before giving up (5); --follow retries forever",
    )
    parser.set_defaults(run=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def run(args: argparse.Namespace) -> int:
    """Ship ``--db`` to ``--to``; journal errors propagate (``main`` makes them exit 2)."""
    from kernel.config.sections import check_postgresql_url
    from kernel.ship import ShipOptions, Shipper
    from storage.fleet.errors import ChainBroken, ShipError, StoreUnavailable

    if not args.to:
        return usage_error(f"no store: pass --to postgresql://... or set {URL_ENV}", "ship")
    try:
        check_postgresql_url(args.to)
    except ValueError as exc:  # pydantic's custom error, a ValueError
        return usage_error(f"--to {exc}", "ship")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    options = ShipOptions(batch_rows=args.batch_rows, interval_s=args.interval, max_backoff_s=args.max_backoff)
    shipper = Shipper(args.db, args.to, options)
    stop = threading.Event()
    try:
        kernel_id = shipper.kernel_id  # opens the journal: JournalError -> exit 2
        if args.follow:
            _stop_on_signals(stop)
            shipper.follow(stop)
        else:
            shipper.ship_with_retries(stop, attempts=args.attempts)
    except ChainBroken as exc:
        print(f"tradekernel ship: INCIDENT: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StoreUnavailable as exc:
        print(f"tradekernel ship: {exc} (gave up after {args.attempts} attempts)", file=sys.stderr)
        return EXIT_FAILED
    except ShipError as exc:
        print(f"tradekernel ship: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shipper.close()
    head = shipper.shipped
    print(
        f"shipped {shipper.shipped_rows} rows of {args.db} (kernel {kernel_id}) to {shipper.store.where}; "
        f"the store holds seq 1..{head.last_seq} and {head.last_anomaly_id} anomalies"
    )
    return EXIT_OK


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def verify_against(db: str, url: str) -> tuple[bool, dict[str, Any], list[str]]:
    """``audit verify --against URL``: compare the journal at ``db`` with what the store holds for it.

    Returns (ok, a JSON-ready report, the lines to print). Journal errors propagate; a store error
    is a failed check."""
    from storage.fleet.errors import ShipError
    from storage.fleet.local import LocalJournal
    from storage.fleet.store import FleetStore
    from storage.fleet.verify import compare

    with LocalJournal(db) as local, FleetStore(url) as store:
        kernel_id = local.kernel_id
        report: dict[str, Any] = {"store": store.where, "kernel_id": kernel_id}
        try:
            result = compare(local.hashes(), store.hashes(kernel_id))
        except ShipError as exc:
            report["error"] = str(exc)
            return False, report, [f"FAILED against {store.where}: {exc}"]
    report.update(
        ok=result.ok,
        compared=result.compared,
        mismatches=result.mismatches,
        first_mismatch=None
        if result.first_mismatch is None
        else dict(zip(("seq", "local_hash", "store_hash"), result.first_mismatch, strict=True)),
        missing_in_store=result.missing_in_store,
        first_missing_in_store=result.first_missing_in_store,
        missing_locally=result.missing_locally,
        first_missing_locally=result.first_missing_locally,
    )
    lines = []
    where = f"the store {store.where} (kernel {kernel_id})"
    if result.first_mismatch is not None:
        seq, mine, theirs = result.first_mismatch
        lines.append(
            f"FAILED against {where}: seq {seq} differs (local hash {mine}, store hash {theirs}); "
            f"{result.mismatches} rows differ"
        )
    if result.missing_locally:
        lines.append(
            f"FAILED against {where}: {result.missing_locally} rows in the store are missing locally "
            f"(from seq {result.first_missing_locally})"
        )
    if result.ok:
        lines.append(f"ok against {where}: {result.compared} rows identical")
    if result.missing_in_store:
        lines.append(
            f"note: {result.missing_in_store} local rows not shipped yet (from seq {result.first_missing_in_store})"
        )
    return result.ok, report, lines
