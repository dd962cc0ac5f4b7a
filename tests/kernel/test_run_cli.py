"""``tradekernel run``, ``status`` and ``stop`` end to end: real processes, the embedded paper venue
replaying the bundled BTCUSDT data, loopback only. Every wait is bounded; every process is killed
in the end if it is still there."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storage.audit import AuditReader
from tests.conftest import REPO, run_cli

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIMIT_S = 20.0
"""The longest any single wait may take."""
STATUS_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "  # UTC, with the date
    r"health=\S+ feed=\S+ last=\S+ entry=\S+ open=\d+ pos=.+ pnl=\S+ fills=(\d+)$"
)
DONE = {"filled", "canceled", "rejected", "expired"}
"""The venue statuses of an order that is no longer open."""


class Run:
    """A ``tradekernel run`` process; its stdout and stderr lines are collected as they come."""

    def __init__(self, db: str, *args: str) -> None:
        self.db = db
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", "run", "--db", db, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(REPO),
        )  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        self._seen = threading.Condition()
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def _collect(self, stream: Any, lines: list[str]) -> None:
        with stream:
            for line in stream:
                with self._seen:
                    lines.append(line.rstrip("\n"))
                    self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def wait_for_stderr(self, text: str, timeout: float = LIMIT_S) -> None:
        """Block until a stderr line contains ``text`` (fails on timeout or exit)."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while not any(text in line for line in self.err):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {text!r} on stderr within {timeout} s:\n{self.stderr}"
                assert self.proc.poll() is None or self._readers[1].is_alive(), f"exited:\n{self.stderr}"
                self._seen.wait(min(remaining, 0.1))

    def wait(self, timeout: float = LIMIT_S) -> int:
        """The exit status (the process must exit within ``timeout``); output fully collected."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"tradekernel run still running after {timeout} s:\n{self.stderr}")
        for reader in self._readers:
            reader.join(timeout=LIMIT_S)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=LIMIT_S)
        for reader in self._readers:
            reader.join(timeout=LIMIT_S)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short temporary directory: Unix socket paths (DB.sock) are limited to ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tk"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def db(workdir: Path) -> str:
    return str(workdir / "j.db")


@pytest.fixture
def spawn() -> Iterator[Callable[..., Run]]:
    """Start ``tradekernel run --db DB ARGS``; whatever is still running at the end is killed."""
    runs: list[Run] = []

    def start(db: str, *args: str) -> Run:
        run = Run(db, *args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def tk(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=LIMIT_S)


def status_json(db: str) -> dict[str, Any]:
    result = tk("status", "--db", db, "--json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def wait_trading(run: Run, timeout: float = LIMIT_S) -> dict[str, Any]:
    """Poll ``tradekernel status --json`` until the kernel runs with an order open at the venue."""
    deadline = time.monotonic() + timeout
    while True:
        assert run.proc.poll() is None, f"tradekernel run exited {run.proc.returncode}:\n{run.stderr}"
        result = tk("status", "--db", run.db, "--json")
        if result.returncode == 0:
            status: dict[str, Any] = json.loads(result.stdout)
            if status["running"] and status["open_orders"]:
                return status
        assert time.monotonic() < deadline, f"no open order within {timeout} s:\n{run.stderr}"
        time.sleep(0.1)


def venue_orders(db: str) -> list[dict[str, Any]]:
    listing = tk("venue", "orders", "--db", f"{db}.venue.db", "--json")
    assert listing.returncode == 0, listing.stderr
    orders: list[dict[str, Any]] = json.loads(listing.stdout)
    return orders


def assert_verified(db: str) -> None:
    verify = tk("audit", "verify", "--db", db)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ok:"), verify.stdout


def assert_nothing_open_at_the_venue(db: str) -> list[dict[str, Any]]:
    orders = venue_orders(db)
    assert orders, "the venue never saw an order"
    still_open = [(o["client_order_id"], o["status"]) for o in orders if o["status"] not in DONE]
    assert not still_open, f"orders left open at the venue: {still_open}"
    assert all(Decimal(o["leaves_qty"]) == 0 for o in orders)
    return orders


def order_transitions(db: str) -> list[dict[str, Any]]:
    with AuditReader(db) as reader:
        return [t for t in reader.export() if t["machine"] == "order"]


# -- a whole run ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_timed_run_places_fills_and_cancels_orders_and_stops_clean(db: str) -> None:
    # The bundled data fills the market maker's first quotes about 2.3 s in (checked over repeated
    # runs); 6 s leaves room for a slow machine.
    result = run_cli("run", "--duration", "6", "--db", db, "--status-view", "lines", timeout=LIMIT_S + 6)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 4, result.stdout
    for line in lines:
        assert STATUS_LINE.match(line), line
    assert any(" feed=streaming " in line and " entry=open " in line for line in lines), result.stdout
    assert "stopped (--duration 6 s elapsed)" in result.stderr
    assert "stopped cleanly" in result.stderr

    assert_verified(db)
    transitions = order_transitions(db)
    by_order: dict[str, list[str]] = defaultdict(list)
    for t in transitions:
        by_order[t["entity"]].append(t["trigger"])
    submitted = {order for order, triggers in by_order.items() if "submit" in triggers}
    assert submitted, "no order was placed"
    fills = [t for t in transitions if t["trigger"] == "fill"]
    assert fills, "no order was filled"
    with AuditReader(db) as reader:
        (stop,) = [t for t in reader.timeline("kernel-r1", machine="health") if t["trigger"] == "stop"]
        assert reader.entities(machine="order", live_only=True) == []
        journal_fills = reader.fills()
    canceled_at_stop = {
        t["entity"]
        for t in transitions
        if t["trigger"] == "cancel" and t["dest"] == "canceled" and t["seq"] > stop["seq"]
    }
    assert canceled_at_stop, "no order was canceled at stop"
    assert all("request_cancel" in by_order[order] for order in canceled_at_stop)

    at_venue = assert_nothing_open_at_the_venue(db)
    assert {o["client_order_id"] for o in at_venue} == submitted
    assert {o["client_order_id"] for o in at_venue if o["status"] == "canceled"} >= canceled_at_stop
    venue_fills = {(o["client_order_id"], f["trade_id"]) for o in at_venue for f in o["fills"]}
    assert venue_fills == {(f["client_order_id"], f["trade_id"]) for f in journal_fills}

    status = status_json(db)
    assert status["running"] is False
    assert status["last_run"]["run_id"] == 1
    assert status["last_run"]["state"] == "stopped"
    assert status["last_run"]["clean"] is True
    assert status["open_orders"] == []
    assert status["fills"] == len(journal_fills) == len(fills)
    net: dict[str, Decimal] = defaultdict(Decimal)
    for f in journal_fills:
        net[f["instrument"]] += f["qty"] if f["side"] == "buy" else -f["qty"]
    assert {i: Decimal(p["qty"]) for i, p in status["positions"].items()} == dict(net)
    assert sum(p["fills"] for p in status["positions"].values()) == len(journal_fills)
    # the last status line printed agrees with the journal
    last_fills = STATUS_LINE.match(lines[-1])
    assert last_fills is not None
    assert int(last_fills.group(1)) == len(journal_fills)


# -- stopping -------------------------------------------------------------------------------------


def test_sigterm_mid_run_cancels_everything_and_stops_clean(db: str, spawn: Callable[..., Run]) -> None:
    run = spawn(db, "--status-view", "off")
    wait_trading(run)
    run.proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    assert run.wait(timeout=10) == 0, run.stderr
    assert time.monotonic() - began < 5, "stopping took too long"
    assert "stopping: SIGTERM received" in run.stderr
    assert "stopped (SIGTERM received" in run.err[-1]
    assert_nothing_open_at_the_venue(db)
    assert_verified(db)
    status = status_json(db)
    assert (status["running"], status["last_run"]["state"], status["last_run"]["clean"]) == (False, "stopped", True)
    assert status["open_orders"] == []
    assert status["health"]["reason"].startswith("SIGTERM received")


@pytest.mark.slow
def test_status_answers_from_the_running_kernel_and_stop_ends_it(db: str, spawn: Callable[..., Run]) -> None:
    run = spawn(db, "--status-view", "off")
    wait_trading(run)
    status = status_json(db)
    assert status["running"] is True
    assert status["pid"] == run.proc.pid
    assert status["db"] == db
    assert status["health"]["status"] == "healthy"
    assert status["feed"]["state"] == "streaming"
    assert status["trading"]["order_entry"] == "open"
    assert {"open_orders", "positions", "last_run", "pnl", "endpoints"} <= set(status)
    assert status["last_run"] is None  # the first run of this journal: there is no earlier one
    assert status["endpoints"]["control_socket"] == f"{db}.sock"
    live = ("pending_new", "accepted", "partially_filled", "pending_cancel", "pending_replace")
    assert all(o["state"] in live for o in status["open_orders"]), status["open_orders"]

    text = tk("status", "--db", db)
    assert text.returncode == 0, text.stderr
    assert f"running (run 1, pid {run.proc.pid})" in text.stdout
    assert re.search(r"^health\s+healthy", text.stdout, re.M), text.stdout
    assert re.search(r"^orders\s+entry open", text.stdout, re.M), text.stdout
    assert re.search(r"^feed\s+streaming\s+BTCUSDT last \d", text.stdout, re.M), text.stdout
    assert re.search(r"^open\s+\d+ order\(s\)", text.stdout, re.M), text.stdout

    stop = tk("stop", "--db", db, "--wait", "15")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.splitlines() == ["stopping: operator: tradekernel stop", "stopped"]
    assert run.wait(timeout=10) == 0, run.stderr
    assert "stopped (operator: tradekernel stop)" in run.err[-1]
    assert_nothing_open_at_the_venue(db)
    after = status_json(db)
    assert (after["running"], after["last_run"]["clean"], after["health"]["reason"]) == (
        False,
        True,
        "operator: tradekernel stop",
    )


@pytest.mark.slow
@pytest.mark.parametrize("second", ["while-stopping", "after-the-journal-closed"])
def test_two_sigints_still_stop_and_the_journal_records_it(db: str, spawn: Callable[..., Run], second: str) -> None:
    """The second SIGINT skips waiting for cancel acks; wherever it lands in the stop sequence the
    process exits 0 or 1 (1: orders left open) and never by a KeyboardInterrupt."""
    run = spawn(db, "--status-view", "off")
    wait_trading(run)
    run.proc.send_signal(signal.SIGINT)
    run.wait_for_stderr("stopping: SIGINT received" if second == "while-stopping" else "stopped cleanly")
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
    code = run.wait(timeout=10)
    assert code in (0, 1), run.stderr
    assert "Traceback" not in run.stderr
    goodbye = run.err[-1]
    assert goodbye.startswith("tradekernel: run 1 stopped (SIGINT received"), run.stderr
    assert (code == 1) == ("left open" in goodbye), goodbye
    if second == "while-stopping":  # stopping takes tens of ms (acks are polled every 50 ms): it lands in time
        assert "stopping: SIGINT received again (forced: not waiting for acks)" in run.stderr
    assert_verified(db)
    status = status_json(db)
    assert (status["running"], status["last_run"]["state"], status["last_run"]["clean"]) == (False, "stopped", True)
    if code == 0:
        assert status["open_orders"] == []
        assert_nothing_open_at_the_venue(db)


# -- endpoints and start-up refusals --------------------------------------------------------------


def test_http_on_a_free_loopback_port_serves_healthz(db: str, spawn: Callable[..., Run]) -> None:
    run = spawn(db, "--status-view", "off", "--http", "127.0.0.1:0")
    url = wait_trading(run)["endpoints"]["http"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
    assert not url.endswith(":0")
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        assert response.status == 200
        body = json.loads(response.read())
    assert body["status"] == "healthy"
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=10) == 0, run.stderr


def test_http_on_a_remote_address_without_allow_remote_starts_nothing(workdir: Path, db: str) -> None:
    result = tk("run", "--db", db, "--http", "0.0.0.0:8080", "--status-view", "off", "--duration", "1")
    assert result.returncode == 2
    assert "--allow-remote" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(workdir)) == [], "a refused start must not create a journal, venue store or socket"


@pytest.mark.parametrize("case", ["unknown-key", "missing-file"])
def test_config_errors_exit_2_and_start_nothing(workdir: Path, db: str, case: str) -> None:
    config = workdir / "bad.toml"
    if case == "unknown-key":
        config.write_text('[kernel]\ndurability = "normal"\nbogus_key = 1\n')
    result = tk("run", "--db", db, "--config", str(config), "--duration", "1")
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr
    if case == "unknown-key":
        assert "unknown key kernel.bogus_key" in result.stderr
    else:
        assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(workdir)) == (["bad.toml"] if case == "unknown-key" else [])


@pytest.mark.slow
def test_a_second_run_on_a_held_journal_exits_2_and_the_first_carries_on(db: str, spawn: Callable[..., Run]) -> None:
    first = spawn(db, "--status-view", "off")
    before = wait_trading(first)
    second = tk("run", "--db", db, "--status-view", "off", "--duration", "1")
    assert second.returncode == 2, second.stderr
    assert "already open" in second.stderr
    assert "one kernel per database" in second.stderr
    assert first.proc.poll() is None, first.stderr
    after = status_json(db)  # still answered by the first kernel, on its own socket
    assert (after["running"], after["pid"], after["run_id"]) == (True, first.proc.pid, before["run_id"])
    assert after["health"]["status"] == "healthy"
    assert after["trading"]["order_entry"] == "open"
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0, first.stderr
    assert_nothing_open_at_the_venue(db)
    assert_verified(db)
    status = status_json(db)
    assert (status["runs"], status["last_run"]["clean"]) == (1, True)


@pytest.mark.slow
def test_after_kill_9_status_shows_the_crash_and_the_next_run_resumes(db: str, spawn: Callable[..., Run]) -> None:
    killed = spawn(db, "--status-view", "off")
    wait_trading(killed)
    killed.proc.kill()
    assert killed.wait() == -signal.SIGKILL
    crashed = status_json(db)  # the socket file is left behind; nobody answers on it
    assert crashed["running"] is False
    assert crashed["last_run"]["clean"] is False
    assert crashed["last_run"]["state"] == "crashed (not yet detected)"
    assert crashed["last_run"]["pid"] == killed.proc.pid
    left = {o["client_order_id"] for o in crashed["open_orders"]}
    assert left, "the killed kernel had orders open"

    result = run_cli("run", "--duration", "3", "--db", db, "--status-view", "off", timeout=LIMIT_S + 3)
    assert result.returncode == 0, result.stderr
    assert "the last run did not end cleanly (run 1)" in result.stderr
    assert_verified(db)
    assert_nothing_open_at_the_venue(db)  # the killed run's orders were resumed and canceled at stop
    status = status_json(db)
    assert (status["runs"], status["last_run"]["run_id"], status["last_run"]["clean"]) == (2, 2, True)
    assert status["open_orders"] == []


def test_json_logs_are_one_object_per_stderr_line(db: str) -> None:
    result = run_cli(
        "run", "--duration", "1.5", "--db", db, "--status-view", "lines", "--log-format", "json", timeout=LIMIT_S
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) >= 5, result.stderr
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}")
        assert isinstance(entry, dict), line
        assert {"ts", "level", "logger", "message"} <= set(entry), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"]), line
        assert entry["level"] in ("debug", "info", "warning", "error", "critical"), line
    messages = [json.loads(line)["message"] for line in lines]
    assert any("ready: order entry open" in m for m in messages), messages
    # a transition's record carries its fields; every record after the journal opened, the run
    entries = [json.loads(line) for line in lines]
    streaming = next(e for e in entries if e["message"] == "feed feed-r1: syncing -> streaming (snapshot_applied)")
    fields = ("run", "machine", "entity", "trigger", "source", "dest")
    assert [streaming[f] for f in fields] == [1, "feed", "feed-r1", "snapshot_applied", "syncing", "streaming"]
    assert entries[-1]["run"] == 1
    assert any("stopped cleanly" in m for m in messages), messages
    # the status view follows the log format: a JSON object per line on stdout too
    assert result.stdout.strip(), "no status lines"
    for line in result.stdout.splitlines():
        assert json.loads(line)["status"]["running"] is True, line


def test_stop_with_no_kernel_exits_1(db: str) -> None:
    result = tk("stop", "--db", db)
    assert result.returncode == 1
    assert f"no kernel is listening on {db}.sock" in result.stderr
    assert result.stdout == ""
