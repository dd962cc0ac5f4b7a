"""The kill -9 torture test (issue 7): SIGKILL a trading kernel over and over, then check that the
journal and the venue agree on every order, every fill and every position.

One ``tradekernel venue`` process (the seeded random walk, real time) lives through the whole test.
Against it, ``tradekernel run --strategy tests.kernel.torture_strategy:Churn`` is started again and
again on the same journal and SIGKILLed each time:

* at a random moment once it trades (``tradekernel status --json`` shows it running with an order
  open; then a seeded random 0-0.5 s sleep);
* at a crash point (``TRADEKERNEL_CRASH_AT``, see ``kernel/faults.py``): ``after_commit:N`` (a new
  order journaled, not sent), ``after_send:N`` (sent, no ack yet), ``after_report_commit:N`` (a
  venue report with a fill committed at ``normal``, the durability of the venue's facts, nobody
  told yet: docs/architecture.md, Durability before effect; reports are pumped while the start-up
  reconciliation runs, so this kill may come before order entry opened) and ``reconciling:1`` (in
  the middle of the start-up reconciliation);
* in the middle of the reconciliation after a venue restart (the venue is SIGKILLed while the kernel
  trades and started again on the same port and store; the kernel reconnects by itself and is
  killed at ``reconciling:2``);
* during a journal outage (another process holds the journal's write lock, so the kernel's commits
  fail; it is killed while they do, and the lock is released after). The next start must come up
  halted (the outage mark, docs/recovery.md), reconcile, and trade again only after ``arm``; that
  run is then killed at a random moment too.

Every start after a kill must say it found the crash and, unless it was killed while reconciling,
must have reconciled before it traded. A last ``tradekernel run --duration 3`` must stop cleanly
(cancel_on_stop); then ``audit verify`` passes, and the journal and the venue hold the same orders
(same state, same cum_qty), the same fills (each trade id once), no order twice, the same
positions, and no order is left waiting for the venue. One JSON line with the counts is printed.

The default run is sized for CI (30 turns, 33 kills: each journal outage adds a kill of the armed
run after it; well under 90 s). Locally, for the full torture (500 turns, about 11 minutes)::

    .venv/bin/python -m pytest tests/kernel/test_torture.py -s --long

(``TRADEKERNEL_TORTURE_KILLS=N`` sets any other number of kills.)
(``TRADEKERNEL_TORTURE_SEED`` changes the seeded schedule of kill modes, crash counts and sleeps.)
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from random import Random
from typing import Any, Protocol

import pytest

from kernel.strategy import StrategyError
from machines.positions import Fill, Positions
from storage.audit import AuditReader
from storage.lock import writer_active
from tests.conftest import REPO, run_cli
from tests.kernel.torture_strategy import Churn

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
ENV.pop("TRADEKERNEL_CRASH_AT", None)
LIMIT_S = 20.0
"""The longest any single wait may take."""
CI_KILLS, LONG_KILLS = 30, 500
FILLS_BEFORE_KILL = 4
"""``after_report_commit:N`` takes N from 1 to this: fills come slower than orders."""
SEED = int(os.environ.get("TRADEKERNEL_TORTURE_SEED", "7"))
STRATEGY = "tests.kernel.torture_strategy:Churn"
SCHEDULE = (
    "random", "after_commit", "random", "after_send", "after_report_commit", "random", "reconciling", "venue_restart",
    "journal_outage",
)  # fmt: skip
"""The kill modes, in turn: random moments, each crash point, a venue restart, a journal outage."""
VENUE_TO_ORDER_STATE = {
    "new": "accepted",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "canceled": "canceled",
    "rejected": "rejected",
    "expired": "expired",
}
"""The venue's status names (``venue orders --json``) and the order machine's state for each."""
WAITING = {"new", "pending_new", "pending_cancel", "pending_replace"}
"""Order states in which the kernel still waits for the venue."""
CONFIG = """\
[kernel]
durability = "full"
cancel_on_stop = true
stop_timeout_s = 5.0
"""


class Kernel:
    """A ``tradekernel run`` process against ``venue``; stdout and stderr go to files."""

    def __init__(self, workdir: Path, number: int, venue: Venue, *args: str, crash_at: str | None = None) -> None:
        self.db = str(workdir / "K.db")
        self.err_path = workdir / f"run{number}.err"
        env = dict(ENV)
        if crash_at is not None:
            env["TRADEKERNEL_CRASH_AT"] = crash_at
        with open(workdir / f"run{number}.out", "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kernel", "run", *venue.kernel_args, "--db", self.db,
                 "--config", str(workdir / "kernel.toml"), "--strategy", STRATEGY, "--status-view", "off", *args],
                stdout=out, stderr=err, text=True, env=env, cwd=str(REPO),
            )  # fmt: skip

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_for_stderr(self, text: str, timeout: float = LIMIT_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {text!r}:\n{self.stderr}"
            assert time.monotonic() < deadline, f"no {text!r} on stderr within {timeout} s:\n{self.stderr}"
            time.sleep(0.05)

    def wait(self, timeout: float = LIMIT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"tradekernel run still running after {timeout} s:\n{self.stderr}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=LIMIT_S)


def tk(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=LIMIT_S)


def wait_trading(kernel: Kernel, timeout: float = LIMIT_S) -> None:
    """Poll ``tradekernel status --json`` until the kernel runs with an order open at the venue."""
    deadline = time.monotonic() + timeout
    while True:
        assert kernel.proc.poll() is None, f"tradekernel run exited {kernel.proc.returncode}:\n{kernel.stderr}"
        result = tk("status", "--db", kernel.db, "--json")
        if result.returncode == 0:
            status: dict[str, Any] = json.loads(result.stdout)
            if status["running"] and status["open_orders"]:
                return
        assert time.monotonic() < deadline, f"no open order within {timeout} s:\n{kernel.stderr}"
        time.sleep(0.05)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short temporary directory: Unix socket paths (K.db.sock) are limited to ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tk"))
    (path / "kernel.toml").write_text(CONFIG)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Venue(Protocol):
    """The venue process of a torture test: its URL, what ``tradekernel run`` needs to reach it, a
    restart on the same port and store, and, in the end, every order it holds."""

    url: str

    @property
    def kernel_args(self) -> list[str]:
        """The ``tradekernel run`` arguments that point the kernel at this venue."""

    def restart(self) -> None:
        """Kill the venue and start it again on the same port and store."""

    def kill(self) -> None:
        """Kill the venue now (idempotent)."""

    def stop(self) -> None:
        """Stop the venue cleanly (it must exit 0)."""

    def orders(self) -> list[dict[str, Any]]:
        """Every order the venue holds, as ``tradekernel venue orders --json`` lists them."""


class PaperVenue:
    """A ``tradekernel venue`` process (seeded random walk, real time) on a loopback port, which the
    test can SIGKILL and start again on the same port and store."""

    def __init__(self, workdir: Path) -> None:
        self.db = str(workdir / "V.db")
        self.url = ""
        self.port = 0
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", "venue", "--open", "--port", str(self.port), "--db", self.db,
             "--seed", str(SEED)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(REPO),
        )  # fmt: skip
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], LIMIT_S)
        if not ready:
            proc.kill()
            pytest.fail("the venue did not start")
        line = proc.stdout.readline()
        assert line.startswith("venue listening on "), line
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        return proc

    @property
    def kernel_args(self) -> list[str]:
        return ["--venue", self.url]

    def restart(self) -> None:
        """SIGKILL the venue and start it again on the same port and store."""
        self.kill()
        self.proc = self._start()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=LIMIT_S)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=LIMIT_S) == 0

    def orders(self) -> list[dict[str, Any]]:
        listing = tk("venue", "orders", "--db", self.db, "--json")
        assert listing.returncode == 0, listing.stderr
        orders: list[dict[str, Any]] = json.loads(listing.stdout)
        return orders


@pytest.fixture
def venue(workdir: Path) -> Iterator[PaperVenue]:
    """The venue of the test; killed in the end if the test did not stop it."""
    handle = PaperVenue(workdir)
    try:
        yield handle
    finally:
        handle.kill()


@contextmanager
def journal_write_lock(db: str) -> Iterator[None]:
    """Hold ``db``'s SQLite write lock from this (another) process: the kernel's commits fail meanwhile."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=LIMIT_S)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def arm_when_halted(kernel: Kernel, timeout: float = LIMIT_S) -> None:
    """``tradekernel arm`` once the halt has completed: while the kernel is still ``halting`` (its
    cancels at the venue not all answered yet) the trading machine refuses ``arm``, so ask again."""
    deadline = time.monotonic() + timeout
    while True:
        armed = tk("arm", "--db", kernel.db, "--reason", "torture: after the journal outage")
        if armed.returncode == 0:
            return
        assert "in state 'halting'" in armed.stderr, armed.stdout + armed.stderr
        assert time.monotonic() < deadline, f"still halting after {timeout} s:\n{kernel.stderr}"
        time.sleep(0.1)


def killed_during_outage_then_armed(workdir: Path, number: int, venue: Venue, rng: Random) -> list[str]:
    """Runs ``number`` (killed in a journal outage) and ``number + 1`` (which must come up halted,
    is armed, trades, and is killed at a random moment); the kill modes of the two."""
    kernel = Kernel(workdir, number, venue)
    try:
        kernel.wait_for_stderr("ready: order entry open")
        wait_trading(kernel)
        with journal_write_lock(kernel.db):
            kernel.wait_for_stderr("journal cannot commit")
            time.sleep(rng.uniform(0, 0.5))
            kernel.kill()
    finally:
        kernel.kill()
    assert kernel.proc.returncode == -signal.SIGKILL, kernel.stderr
    after = Kernel(workdir, number + 1, venue)
    try:
        after.wait_for_stderr(f"reconciliation recon-r{number + 1}-1 done")
        assert "journal outage was never recorded" in after.stderr, after.stderr
        assert "ready: order entry open" not in after.stderr  # halted until armed
        arm_when_halted(after)
        after.wait_for_stderr("ready: order entry open")
        wait_trading(after)
        time.sleep(rng.uniform(0, 0.5))
    finally:
        after.kill()
    assert "the last run did not end cleanly" in after.stderr, after.stderr
    return ["journal_outage", "random"]


def kill_once(workdir: Path, number: int, venue: Venue, mode: str, rng: Random) -> tuple[str, Kernel]:
    """Start run ``number`` and see it SIGKILLed in ``mode``; the crash point it was given."""
    url = venue.url
    if mode == "random":
        kernel = Kernel(workdir, number, venue)
        try:
            kernel.wait_for_stderr("ready: order entry open")
            wait_trading(kernel)
            time.sleep(rng.uniform(0, 0.5))
        finally:
            kernel.kill()
        point = mode
    elif mode == "venue_restart":
        # the start-up reconciliation is the first; the one after the venue's restart the second
        point = "reconciling:2"
        kernel = Kernel(workdir, number, venue, crash_at=point)
        try:
            kernel.wait_for_stderr("ready: order entry open")
            wait_trading(kernel)
            venue.restart()
            assert venue.url == url, f"the venue came back on {venue.url}, not {url}"
            code = kernel.wait()
        finally:
            kernel.kill()
        assert code == -signal.SIGKILL, f"{point}: exited {code}, not killed while reconciling:\n{kernel.stderr}"
        point = mode
    else:
        most = {"reconciling": 1, "after_report_commit": FILLS_BEFORE_KILL}.get(mode, 12)
        point = f"{mode}:{rng.randint(1, most)}"
        kernel = Kernel(workdir, number, venue, crash_at=point)
        try:
            code = kernel.wait()
        finally:
            kernel.kill()
        assert code == -signal.SIGKILL, f"{point}: exited {code}, not killed at the crash point:\n{kernel.stderr}"
    assert kernel.proc.returncode == -signal.SIGKILL, kernel.stderr
    # flock dies with the process: the next run must find the journal free
    assert not writer_active(kernel.db), "the killed kernel's journal lock is still held"
    stderr = kernel.stderr
    if number > 1:
        assert "the last run did not end cleanly" in stderr, f"run {number} did not see the crash:\n{stderr}"
    reconciled = re.findall(rf"reconciliation recon-r{number}-\d+ done", stderr)
    if mode == "reconciling":
        assert not reconciled, f"run {number} was to be killed while reconciling:\n{stderr}"
    elif mode == "venue_restart":  # reconciled at start, killed in the reconciliation after the restart
        assert len(reconciled) == 1, f"run {number}: reconciliations done {reconciled}:\n{stderr}"
    elif mode == "after_report_commit" and "ready: order entry open" not in stderr:
        pass  # a fill report of an open order, pumped while the start-up reconciliation ran: killed there
    else:  # it traded, so it had reconciled first
        assert reconciled, f"run {number} traded without reconciling:\n{stderr}"
    return point.partition(":")[0], kernel


def left_open_timelines(kernel: Kernel) -> str:
    """The journaled timeline of each order a stop left open (to tell why, when the stop failed)."""
    with AuditReader(kernel.db) as reader:
        left = [o["entity"] for o in reader.entities(machine="order", live_only=True)]
        steps = {entity: reader.timeline(entity, "order") for entity in left}
    lines = [
        f"{entity}: " + " ".join(f"{t['trigger']}->{t['dest']} {t['data']}" for t in rows)
        for entity, rows in steps.items()
    ]
    return "\nleft open:\n" + "\n".join(lines)


@pytest.mark.slow
def test_kill_9_over_and_over_leaves_journal_and_venue_in_agreement(
    workdir: Path, venue: PaperVenue, request: pytest.FixtureRequest
) -> None:
    default = LONG_KILLS if request.config.getoption("--long") else CI_KILLS
    torture(workdir, venue, int(os.environ.get("TRADEKERNEL_TORTURE_KILLS", default)))


def torture(workdir: Path, venue: Venue, kills_wanted: int) -> dict[str, Any]:
    """Kill ``kills_wanted`` kernels (the schedule's modes in turn), stop a last one cleanly, stop the
    venue, then check journal and venue agree (see the module docstring); the counts."""
    rng = Random(SEED)
    began = time.monotonic()
    crash_points: Counter[str] = Counter()
    number = 1  # the run id of the next start (a journal outage takes two runs)
    for turn in range(kills_wanted):
        mode = SCHEDULE[turn % len(SCHEDULE)]
        if mode == "journal_outage":
            points = killed_during_outage_then_armed(workdir, number, venue, rng)
        else:
            points = [kill_once(workdir, number, venue, mode, rng)[0]]
        crash_points.update(points)
        number += len(points)
    kills = sum(crash_points.values())

    last = Kernel(workdir, number, venue, "--duration", "3")
    try:
        code = last.wait(timeout=LIMIT_S + 3)
    finally:
        last.kill()
    assert code == 0, last.stderr + left_open_timelines(last)
    assert "the last run did not end cleanly" in last.stderr
    assert re.search(rf"reconciliation recon-r{number}-\d+ done", last.stderr), last.stderr
    assert "stopped cleanly" in last.stderr, last.stderr
    venue.stop()
    db = last.db

    # 1. the journal's hash chain and current-state table hold up
    verify = tk("audit", "verify", "--db", db)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with AuditReader(db) as reader:
        assert reader.verify().ok
        orders = {o["entity"]: o for o in reader.entities(machine="order")}
        journal_fills = reader.fills()
        recons = reader.entities(machine="reconciliation")
    at_venue = venue.orders()

    # 3. one order per client_order_id at the venue (resubmits answered with the existing order)
    ids = Counter(o["client_order_id"] for o in at_venue)
    assert not [i for i, n in ids.items() if n > 1], "a client_order_id became two orders at the venue"
    duplicates_answered = sum(int(o.get("duplicate_submits") or 0) for o in at_venue)

    # 2. every venue order is in the journal, in the same state, with the same cum_qty
    mismatched = []
    for o in at_venue:
        mine = orders.get(o["client_order_id"])
        if mine is None:
            mismatched.append((o["client_order_id"], "missing from the journal", o["status"], o["cum_qty"]))
            continue
        want = VENUE_TO_ORDER_STATE[o["status"]]
        if mine["state"] != want or Decimal(mine["data"]["cum_qty"]) != Decimal(o["cum_qty"]):
            mismatched.append(
                (o["client_order_id"], f"journal {mine['state']} {mine['data']['cum_qty']}", o["status"], o["cum_qty"])
            )
    assert not mismatched, f"{len(mismatched)} order(s) differ (id, journal, venue status, venue cum_qty): {mismatched}"
    # ... and every journal order the venue does not hold never reached it
    unknown_to_venue = {i: o["state"] for i, o in orders.items() if i not in ids}
    assert all(s in ("rejected", "denied") for s in unknown_to_venue.values()), unknown_to_venue
    # ... and each trade id is applied exactly once, on both sides
    venue_trades = Counter(f["trade_id"] for o in at_venue for f in o["fills"])
    journal_trades = Counter(f["trade_id"] for f in journal_fills)
    assert [t for t, n in venue_trades.items() if n > 1] == []
    assert [t for t, n in journal_trades.items() if n > 1] == [], "a fill was applied twice in the journal"
    assert set(venue_trades) == set(journal_trades), (
        f"only at the venue: {sorted(set(venue_trades) - set(journal_trades))}; "
        f"only in the journal: {sorted(set(journal_trades) - set(venue_trades))}"
    )
    assert {(f["client_order_id"], f["trade_id"]) for f in journal_fills} == {
        (o["client_order_id"], f["trade_id"]) for o in at_venue for f in o["fills"]
    }
    filled_per_order: dict[str, Decimal] = defaultdict(Decimal)
    for f in journal_fills:
        filled_per_order[f["client_order_id"]] += f["qty"]
    for i, o in orders.items():
        assert filled_per_order[i] == Decimal(o["data"]["cum_qty"]), (i, o)

    # 4. positions folded from the journal's fills equal those folded from the venue's
    journal_positions = Positions.rebuild(
        Fill(f["instrument"], f["side"], f["qty"], f["price"], f["fee"], f["trade_id"]) for f in journal_fills
    )
    venue_positions = Positions.rebuild(
        Fill(o["instrument"], o["side"], Decimal(f["qty"]), Decimal(f["price"]), Decimal(f["fee"]), f["trade_id"])
        for o in sorted(at_venue, key=lambda o: o["created_ts_ms"])
        for f in o["fills"]
    )
    instruments = set(journal_positions.snapshot()) | set(venue_positions.snapshot())
    assert {i: journal_positions.get(i).qty for i in instruments} == {
        i: venue_positions.get(i).qty for i in instruments
    }

    # 5. nothing waits for the venue any more, and nothing is left open there
    waiting = {i: o["state"] for i, o in orders.items() if o["state"] in WAITING}
    assert not waiting, f"orders left waiting for the venue: {waiting}"
    assert not [(o["client_order_id"], o["status"]) for o in at_venue if o["status"] in ("new", "partially_filled")]

    def total(count: str) -> int:
        return sum(int((r["data"].get("counts") or {}).get(count, 0)) for r in recons)

    adopted = sum(1 for o in orders.values() if o["data"].get("origin") == "external")
    summary: dict[str, Any] = {
        "kills": kills,
        "crash_points": dict(sorted(crash_points.items())),
        "orders": len(at_venue),
        "journal_orders": len(orders),
        "fills": len(journal_fills),
        "duplicates_answered": duplicates_answered,
        "reconciliations": dict(sorted(Counter(r["state"] for r in recons).items())),
        "reconciliation_corrections": total("transitions"),
        "lost": total("lost"),
        "adopted": total("adopted"),
        "adopted_orders": adopted,
        "seconds": round(time.monotonic() - began, 1),
    }
    print(json.dumps(summary), flush=True)
    assert kills == kills_wanted + crash_points["journal_outage"]  # each outage kill adds a random one
    assert summary["orders"] > 0
    assert summary["fills"] > 0
    return summary


def test_churn_refuses_fewer_than_two_open_orders() -> None:
    assert Churn.Params(max_open=2).max_open == 2
    with pytest.raises(StrategyError, match=r"^max_open must be at least 2, got 1$"):
        Churn.Params(max_open=1)
