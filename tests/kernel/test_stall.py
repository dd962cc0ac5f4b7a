"""A 15 s stall of the kernel's journal (a commit hung in ``fsync``; another process holding the
journal's write lock): the control socket and ``/healthz`` keep answering within 200 ms throughout,
and afterwards the kernel trades on and stops with exit 0.

Real processes: ``tradekernel run`` with the embedded paper venue, HTTP on 127.0.0.1 and its
control socket; the stall is ``TRADEKERNEL_STALL_COMMIT`` (kernel/faults.py) or a second process
holding ``BEGIN EXCLUSIVE`` on the journal. Answer times are measured with a monotonic clock by the
test: a responsiveness requirement, checked on every answer of the stall.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kernel import control
from storage.audit import AuditReader
from storage.venue_store import read_orders
from tests import poll
from tests.conftest import REPO

STALL_S = 15.0
ANSWER_S = 0.2
"""Every answer of the control socket and /healthz arrives within this, stall or not."""
SAMPLE_S = 0.5
LIMIT_S = 20.0


@dataclass
class Kernel:
    """A ``tradekernel run`` process with HTTP on; its stderr goes to a file the test reads."""

    db: str
    proc: subprocess.Popen[bytes]
    log: Path
    answers: list[tuple[str, float, Any]] = field(default_factory=list)

    @property
    def sock(self) -> str:
        return f"{self.db}.sock"

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> dict[str, Any] | None:
        try:
            answer = control.request(self.sock, "status", timeout=1.0)
        except control.ControlError:
            return None
        status: dict[str, Any] = answer["status"]
        return status

    def timed_status(self) -> dict[str, Any]:
        began = time.monotonic()
        answer = control.request(self.sock, "status", timeout=2.0)
        self.answers.append(("status", time.monotonic() - began, answer))
        return answer

    def timed_healthz(self, url: str, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
        began = time.monotonic()
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2.0) as response:
                code, body = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            code, body = error.code, json.loads(error.read())
        self.answers.append((path.strip("/"), time.monotonic() - began, (code, body)))
        return code, body


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tks"))  # short: a Unix socket path is limited to ~100 bytes
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(workdir: Path) -> Iterator[Any]:
    started: list[Kernel] = []

    def run(**env: str) -> Kernel:
        db, log = str(workdir / "j.db"), workdir / f"kernel{len(started) + 1}.err"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kernel", "run", "--db", db, "--http", "127.0.0.1:0", "--status-view", "off"],
                stdout=subprocess.DEVNULL, stderr=err, cwd=str(REPO),
                env={**os.environ, "PYTHONPATH": str(REPO), **env},
            )  # fmt: skip
        kernel = Kernel(db, proc, log)
        started.append(kernel)
        return kernel

    yield run
    for kernel in started:
        if kernel.proc.poll() is None:
            kernel.proc.kill()
        kernel.proc.wait(timeout=LIMIT_S)


def http_get(url: str) -> tuple[bytes, float]:
    began = time.monotonic()
    with urllib.request.urlopen(url, timeout=2.0) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body, time.monotonic() - began


async def trading(kernel: Kernel) -> str:
    """Wait until the kernel trades (entry open, an order open at the venue); its HTTP URL."""
    found: dict[str, Any] = {}

    def ready() -> bool:
        assert kernel.proc.poll() is None, kernel.stderr
        status = kernel.status()
        if status is None or status["trading"]["state"] != "active" or not status["open_orders"]:
            return False
        found.update(status)
        return True

    await poll.eventually(ready, "the kernel to trade", timeout=LIMIT_S)
    url: str = found["endpoints"]["http"]
    return url


async def sample_until(kernel: Kernel, url: str, over: Any) -> None:
    """Ask /healthz and the control socket's status every ``SAMPLE_S`` until ``over()``."""
    deadline = time.monotonic() + STALL_S + 5
    while not over():
        assert time.monotonic() < deadline, f"the stall never ended:\n{kernel.stderr}"
        kernel.timed_healthz(url)
        kernel.timed_status()
        await asyncio.sleep(SAMPLE_S)  # the sampling period, not a wait for a condition


def assert_answered_in_time(kernel: Kernel, stall_s: float) -> None:
    slow = [(what, round(took, 3)) for what, took, _ in kernel.answers if took >= ANSWER_S]
    assert not slow, f"answers slower than {ANSWER_S} s during the stall: {slow}"
    assert len(kernel.answers) >= 2 * int(stall_s / (SAMPLE_S + 2 * ANSWER_S)), kernel.answers


async def trades_on_and_stops(kernel: Kernel) -> None:
    """After the stall: arm (the stall halted trading), trade again, stop with exit 0."""

    def armed() -> bool:
        answer = control.request(kernel.sock, "arm", timeout=2.0, reason="stall over")
        return bool(answer["ok"])

    await poll.eventually(armed, "arm to be accepted after the stall", timeout=LIMIT_S)
    await trading(kernel)
    answer = control.request(kernel.sock, "stop", timeout=2.0, reason="test over")
    assert answer["ok"]
    code = await asyncio.to_thread(kernel.proc.wait, LIMIT_S)
    assert code == 0, kernel.stderr
    assert "Traceback" not in kernel.stderr
    with AuditReader(kernel.db) as reader:
        assert reader.verify().ok
        submitted = {t["entity"] for t in reader.export() if t["machine"] == "order" and t["trigger"] == "submit"}
    at_venue = {order.client_order_id for order in read_orders(f"{kernel.db}.venue.db")}
    assert at_venue
    assert at_venue <= submitted  # the write-ahead rule held: nothing reached the venue unjournaled


@pytest.mark.asyncio
async def test_a_15_s_commit_stall_keeps_the_control_socket_and_healthz_answering(start: Any) -> None:
    # the kernel trades from about its 10th commit after start-up (market maker, bundled data)
    kernel: Kernel = start(TRADEKERNEL_STALL_COMMIT=f"20:{STALL_S:g}")
    url = await trading(kernel)
    await poll.eventually(lambda: "stalling journal commit 20" in kernel.stderr, "the stall", timeout=LIMIT_S)
    halted = control.request(kernel.sock, "halt", timeout=2.0, reason="during the stall")
    began = time.monotonic()
    await poll.eventually(lambda: kernel.timed_healthz(url)[0] == 503, "/healthz to name the stall", timeout=3.0)
    status, took_status = http_get(f"{url}/status")
    metrics, took_metrics = http_get(f"{url}/metrics")
    assert (took_status < ANSWER_S, took_metrics < ANSWER_S) == (True, True), (took_status, took_metrics)
    assert json.loads(status)["loop_stalled"].startswith("event loop stalled ")  # the last snapshot, marked
    assert "tradekernel_journal_commits_total" in metrics.decode()  # the last published metrics
    code, ready = kernel.timed_healthz(url, "/readyz")
    assert (code, ready["ready"], ready["reason"]) == (503, False, "loop_stalled"), ready
    assert ready["detail"].startswith("event loop stalled ")
    sampled = len(kernel.answers)
    await sample_until(kernel, url, lambda: "resumes after its stall" in kernel.stderr)
    assert time.monotonic() - began >= STALL_S - 2  # sampled through (nearly) all of it
    assert_answered_in_time(kernel, STALL_S)

    assert halted["ok"] is True
    assert halted["queued"] is True
    assert halted["note"].startswith("queued: the kernel's event loop stalled ")
    healthz = [answer for what, _, answer in kernel.answers[sampled:] if what == "healthz"]
    stalled = [body for code, body in healthz if code == 503 and body["status"] == "stalled"]
    assert len(stalled) >= len(healthz) - 1, healthz  # all but an answer as the stall ends
    assert stalled[-1]["reason"].startswith("event loop stalled ")
    assert float(stalled[-1]["reason"].split()[3]) >= 5.0
    statuses = [answer["status"] for what, _, answer in kernel.answers if what == "status"]
    assert any(s.get("loop_stalled", "").startswith("event loop stalled ") for s in statuses)

    # The queued halt is carried out when the loop resumes: applied, or refused because the health
    # monitor's own halt for the stall (loop lag) ran first. Either way its outcome is logged and
    # trading ends halted; which came first depends on the scheduling of the loop's next turn.
    await poll.eventually(lambda: "queued halt after the loop stall: " in kernel.stderr, "the queued halt's outcome")
    outcome = kernel.stderr.split("queued halt after the loop stall: ", 1)[1].splitlines()[0]
    status = kernel.status()
    assert status is not None
    assert status["trading"]["state"] in ("halting", "halted"), status["trading"]
    if outcome == "applied":
        assert status["trading"]["reason"] == "operator: during the stall", status["trading"]
    else:
        assert outcome.startswith("refused: "), outcome
        assert status["trading"]["reason"] != "operator: during the stall", status["trading"]
    await trades_on_and_stops(kernel)


@pytest.mark.asyncio
async def test_another_process_holding_the_journal_lock_for_15_s_never_freezes_the_endpoints(
    start: Any, workdir: Path
) -> None:
    kernel: Kernel = start()
    url = await trading(kernel)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "conn.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "time.sleep(float(sys.argv[2]))  # holding the write lock: the fault itself\n"
         "conn.execute('ROLLBACK')\n",
         kernel.db, f"{STALL_S:g}"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
        began = time.monotonic()
        await sample_until(kernel, url, lambda: holder.poll() is not None)
        assert holder.returncode == 0
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=LIMIT_S)
        assert holder.stdout is not None
        holder.stdout.close()
    assert time.monotonic() - began >= STALL_S - 1
    assert_answered_in_time(kernel, STALL_S)
    # the journal could not commit: an outage (entry paused, health unhealthy), never a frozen loop
    healthz = [answer for what, _, answer in kernel.answers if what == "healthz"]
    # /healthz is liveness: 200 with the journal named unhealthy (readiness is what closes)
    assert any(code == 200 and body["components"]["journal"]["state"] == "unhealthy" for code, body in healthz)
    # each commit attempt gives the loop back within LOOP_BUSY_TIMEOUT_S: it never stalls (> 1 s)
    assert all(body["status"] != "stalled" for _, body in healthz), healthz
    await trades_on_and_stops(kernel)
