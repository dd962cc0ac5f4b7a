"""``tradekernel resume --dry-run``: what the next ``tradekernel run`` would rebuild and reconcile.

    tradekernel resume --dry-run [--db PATH] [--venue embedded|ws://HOST:PORT] [--config F] [--json]

Resuming happens on every ``tradekernel run``; this command only previews it, changing nothing:
the journal (and, for the embedded venue, the venue's store) is copied to a temporary directory
with SQLite's online backup, and the real resume and reconciliation run against the copy and the
venue, which is only asked questions (open orders, order status, fills). It prints what would be
rebuilt (live orders by state, positions, the entities a killed run left) and the reconciliation
report (every ``reconcile_*`` transition it would journal, lost and adopted orders, position
differences).

Exit status: 0 the preview ran (whatever it found); 1 the venue could not be reached; 2 usage
errors, or a journal that is missing, corrupt or newer than this code.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from typing import TYPE_CHECKING, Any

from kernel import wiring
from kernel.cli.common import usage_error
from kernel.config import ConfigError, add_override_arguments, load, overrides_from_args
from kernel.execution import VenueClient, VenueError, VenueUnavailable
from kernel.exits import EXIT_FAILED, EXIT_OK
from kernel.net import redact_url
from kernel.orders import checkpoint_positions
from kernel.reconcile import Reconciler
from machines import FEED, HEALTH, ORDER, POSITION, RECONCILIATION
from machines.positions import Fill, Positions
from storage import Journal
from storage.audit import AuditReader
from storage.errors import JournalError
from storage.lock import writer_active
from storage.schema import copy_database

if TYPE_CHECKING:
    from kernel.venue.server import PaperVenue
    from kernel.wiring import KernelClient

CONNECT_TIMEOUT_S = 15.0
"""How long the dry run waits for a session with the venue."""


def add_parser(commands: Any) -> None:
    """Add ``resume`` to the ``tradekernel`` sub-commands."""
    parser = commands.add_parser(
        "resume",
        help="preview what resuming from the journal would rebuild and reconcile (--dry-run)",
        description="Resuming happens on every `tradekernel run`. With --dry-run this shows what it would "
        "rebuild from the journal and what reconciling with the venue would change, without changing "
        "the journal or the venue (it works on a copy of the journal).",
        epilog="Exit status: 0 previewed; 1 the venue could not be reached; 2 usage or journal errors.",
    )
    add_override_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="required: preview only, change nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=_resume)


def _resume(args: argparse.Namespace) -> int:
    if not args.dry_run:
        return usage_error("resuming happens on every `tradekernel run`; use --dry-run to preview it")
    try:
        config = load(args.config, overrides_from_args(args))
    except ConfigError as exc:
        return usage_error(str(exc))
    db = config.kernel.db
    if not os.path.exists(db):
        return usage_error(f"no journal at {db}")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")  # the report says it all
    workdir = tempfile.mkdtemp(prefix="tk-resume-")
    try:
        return asyncio.run(_preview(config, db, workdir, as_json=args.json))
    except JournalError as exc:
        return usage_error(str(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _preview(config: Any, db: str, workdir: str, *, as_json: bool) -> int:
    running = writer_active(db)
    copy = os.path.join(workdir, "journal.db")
    copy_database(db, copy)
    rebuild = _rebuild_summary(copy)
    venue: PaperVenue | None = None
    url = config.venue.url
    if config.venue.url == "embedded":
        from kernel.venue.server import PaperVenue  # the simulator, only when the embedded venue is used

        store = config.venue.embedded.store_path
        store_copy = os.path.join(workdir, "venue.db")
        if os.path.exists(store):
            copy_database(store, store_copy)
        venue_config = config.venue.embedded.venue_config(tuple(config.venue.instruments))
        venue = PaperVenue(store_copy, dataclasses.replace(venue_config, autoplay=False))  # answers only
        await venue.start("127.0.0.1", 0)
        url = venue.url
    client: KernelClient
    if config.venue.kind == "binance":
        try:
            client, url = wiring.binance_client(config), config.venue.binance_ws_api_url
        except (VenueError, OSError) as exc:
            return usage_error(f"venue.private_key_file: {exc}")
    else:
        client = VenueClient(url, attempts=3, backoff=0.2)
    journal = Journal.open(copy, durability="normal")
    result: dict[str, Any] = {
        "db": db,
        "kernel_running": running,
        "rebuild": rebuild,
        "venue": redact_url(config.venue.binance_ws_api_url if config.venue.kind == "binance" else config.venue.url),
    }
    status = EXIT_OK
    try:
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):  # a Binance session retries forever
                    await client.connect()
            except TimeoutError:
                raise VenueUnavailable(f"no session with {redact_url(url)} within {CONNECT_TIMEOUT_S:g} s") from None
            manager = wiring.order_manager(journal, client, config)
            checkpoint_positions(manager)
            report = await Reconciler(manager, timeout=config.venue.status_timeout_s).run("dry run")
            result["reconciliation"] = report.as_json()
        except VenueError as exc:
            result["reconciliation"] = {"error": f"the venue could not be reached: {exc}"}
            status = EXIT_FAILED
    finally:
        await client.close()
        journal.close()
        if venue is not None:
            await venue.stop()
    if as_json:
        print(json.dumps(result, default=str, indent=2))
    else:
        print(_text(result))
    return status


def _rebuild_summary(path: str) -> dict[str, Any]:
    with AuditReader(path) as reader:
        orders = reader.entities(machine=ORDER.name, live_only=True)
        runs = reader.entities(machine="run")
        left = [
            f"{machine}:{e['entity']}"
            for machine in (HEALTH.name, RECONCILIATION.name, FEED.name)
            for e in reader.entities(machine=machine, live_only=True)
            if e["state"] != "closed"  # a feed closed by a clean stop has nothing to retire
        ]
        checkpointed = {
            p["entity"]: str(p["data"]["qty"]) for p in reader.entities(machine=POSITION.name, live_only=True)
        }
        fills = [] if checkpointed else reader.fills()  # a journal from before positions were checkpointed
    last = max(runs, key=lambda r: int(r["entity"])) if runs else None
    folded = Positions.rebuild(
        Fill(f["instrument"], f["side"], f["qty"], f["price"], f["fee"], f["trade_id"]) for f in fills
    )
    positions = checkpointed or {i: format(p.qty, "f") for i, p in folded.snapshot().items()}
    return {
        "last_run": None if last is None else {"run_id": int(last["entity"]), "state": last["state"]},
        "crashed": last is not None and last["state"] == "running",
        "live_orders": len(orders),
        "orders_by_state": dict(Counter(o["state"] for o in orders)),
        "orders": [o["entity"] for o in orders],
        "positions": dict(sorted(positions.items())),
        "entities_to_retire": left,
    }


def _text(result: dict[str, Any]) -> str:
    rebuild = result["rebuild"]
    lines = [f"journal {result['db']}" + ("  (a kernel is running on it now)" if result["kernel_running"] else "")]
    last = rebuild["last_run"]
    if last is None:
        lines.append("last run   none")
    else:
        ended = "did not end cleanly" if rebuild["crashed"] else "ended cleanly"
        lines.append(f"last run   {last['run_id']} ({last['state']}): {ended}")
    states = ", ".join(f"{n} {s}" for s, n in sorted(rebuild["orders_by_state"].items())) or "none"
    lines.append(f"rebuild    {rebuild['live_orders']} live order(s): {states}")
    positions = ", ".join(f"{i} {q}" for i, q in rebuild["positions"].items()) or "flat"
    lines.append(f"positions  {positions}")
    if rebuild["entities_to_retire"]:
        lines.append(f"retire     {', '.join(rebuild['entities_to_retire'])}")
    recon = result.get("reconciliation") or {}
    if "error" in recon:
        lines.append(f"reconcile  NOT POSSIBLE: {recon['error']}")
        return "\n".join(lines)
    counts = recon.get("counts", {})
    lines.append("reconcile  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for difference in recon.get("differences", []):
        lines.append(f"           {difference['kind']:<18} {difference['client_order_id']}: {difference['detail']}")
    if not recon.get("differences"):
        lines.append("           the journal agrees with the venue: nothing to change")
    lines.append("(dry run: nothing was changed)")
    return "\n".join(lines)
