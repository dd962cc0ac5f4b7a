"""Paper kernels shipping to a fleet store, as real ``tradekernel run`` processes (fleet tests, benchmark)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO, run_cli
from tests.fleet.journals import PAPER_CONFIG


def start_kernel(directory: Path, url: str, seconds: float, *, max_backoff_s: float = 1.0) -> subprocess.Popen[str]:
    """``tradekernel run`` of the market maker on the embedded paper venue for ``seconds``, its
    journal ``directory/journal.db``, shipping to ``url`` (``[ship]``) every 0.2 s."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "kernel.toml"
    config.write_text(
        PAPER_CONFIG + f'\n[ship]\nurl = "{url}"\ninterval_s = 0.2\nmax_backoff_s = {max_backoff_s}\n'
        "stop_timeout_s = 30\n"
    )
    argv = ["run", "--config", str(config), "--db", str(directory / "journal.db"), "--status-view", "off"]
    return subprocess.Popen(
        [sys.executable, "-m", "kernel", *argv, "--duration", str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    """Wait for a kernel started by ``start_kernel``; its stderr. Fails on a non-zero exit."""
    _out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return err


def orders_created(db: Path) -> int:
    """How many orders the journal holds (read-only: safe while the kernel runs)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(
            conn.execute("SELECT count(*) FROM transitions WHERE machine = 'order' AND trigger = 'create'").fetchone()[
                0
            ]
        )


def audit_json(*argv: str) -> object:
    """``tradekernel audit ARGV --json`` in a subprocess; its parsed output (the exit status must be 0)."""
    result = run_cli("audit", *argv, "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``condition`` (errors count as false) until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (sqlite3.Error, psycopg.Error):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
