"""``tradekernel resume --dry-run`` in real subprocesses: it previews, it changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.audit import AuditReader
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
LIMIT_S = 30.0


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tk"))  # short: the control socket path must fit
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tk(*args: str, env: dict[str, str] | None = None, timeout: float = LIMIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args], capture_output=True, text=True, env=env or ENV, cwd=str(REPO),
        timeout=timeout,
    )  # fmt: skip


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def killed_at(db: str, point: str) -> None:
    """A kernel that SIGKILLs itself at crash point ``point`` (kernel.faults)."""
    proc = tk("run", "--db", db, "--status-view", "off", env={**ENV, "TRADEKERNEL_CRASH_AT": point})
    assert proc.returncode == -9, proc.stderr


@pytest.mark.slow
def test_dry_run_after_a_crash_between_commit_and_send_shows_the_lost_order_and_changes_nothing(
    workdir: Path,
) -> None:
    db = str(workdir / "j.db")
    killed_at(db, "after_commit:1")  # the first order is journaled, never sent
    before = (digest(db), digest(db + ".venue.db"))
    proc = tk("resume", "--dry-run", "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    preview = json.loads(proc.stdout)
    assert preview["rebuild"]["crashed"] is True
    # The strategy's quotes (bid and ask) were both journaled; the kill came before the first send.
    pending = preview["rebuild"]["orders_by_state"]["pending_new"]
    assert preview["rebuild"]["orders_by_state"] == {"pending_new": pending}
    recon = preview["reconciliation"]
    assert recon["counts"]["lost"] == pending
    lost_orders = [d for d in recon["differences"] if d["kind"] == "lost"]
    assert sorted(d["client_order_id"] for d in lost_orders) == sorted(preview["rebuild"]["orders"])
    lost = lost_orders[0]
    assert (digest(db), digest(db + ".venue.db")) == before  # nothing changed
    text = tk("resume", "--dry-run", "--db", db)
    assert text.returncode == 0
    assert "did not end cleanly" in text.stdout
    assert "lost" in text.stdout
    assert "(dry run: nothing was changed)" in text.stdout
    # The real resume does what the preview said, and never sends the lost order.
    run = tk("run", "--db", db, "--status-view", "off", "--duration", "2")
    assert run.returncode == 0, run.stderr
    assert "the last run did not end cleanly" in run.stderr
    with AuditReader(db) as reader:
        assert reader.verify().ok
        steps = [t["trigger"] for t in reader.timeline(lost["client_order_id"], machine="order")]
    assert steps == ["create", "submit", "reconcile_lost"]
    venue = tk("venue", "orders", "--db", db + ".venue.db", "--json")
    assert lost["client_order_id"] not in venue.stdout


def test_resume_without_dry_run_says_how_resuming_happens(workdir: Path) -> None:
    proc = tk("resume", "--db", str(workdir / "j.db"))
    assert proc.returncode == 2
    assert "resuming happens on every `tradekernel run`; use --dry-run" in proc.stderr


def test_dry_run_without_a_journal_exits_2(workdir: Path) -> None:
    proc = tk("resume", "--dry-run", "--db", str(workdir / "none.db"))
    assert proc.returncode == 2
    assert "no journal at" in proc.stderr


def test_dry_run_with_an_unreachable_venue_exits_1(workdir: Path) -> None:
    db = str(workdir / "j.db")
    assert tk("migrate", "--db", db).returncode == 0
    proc = tk("resume", "--dry-run", "--db", db, "--venue", "ws://127.0.0.1:9")
    assert proc.returncode == 1, proc.stderr
    assert "NOT POSSIBLE: the venue could not be reached" in proc.stdout


def test_dry_run_config_errors_exit_2(workdir: Path) -> None:
    proc = tk("resume", "--dry-run", "--db", str(workdir / "j.db"), "--log-format", "xml")
    assert proc.returncode == 2
    assert "kernel.log_format" in proc.stderr
