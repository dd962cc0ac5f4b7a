"""A token in a venue URL's query string never shows: not in the log, the journal, status or errors."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.execution import VenueClient, VenueError
from kernel.net import redact_url
from tests.conftest import REPO, run_cli

SECRET = "s3cr3tTOKEN42"


def test_redact_url_hides_secret_query_values_and_passwords() -> None:
    assert redact_url("ws://host:9/ws?token=abc") == "ws://host:9/ws?token=***"
    assert redact_url("wss://h/ws?streams=btcusdt@trade&apiKey=k&signature=s") == (
        "wss://h/ws?streams=btcusdt@trade&apiKey=***&signature=***"
    )
    assert redact_url("ws://user:pw@h:1/") == "ws://user:***@h:1/"
    assert redact_url("ws://127.0.0.1:8765") == "ws://127.0.0.1:8765"


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[str]:
    """A ``tradekernel venue`` process on a free loopback port; yields its url."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "venue", "--open", "--port", "0", "--db", str(tmp_path / "venue.db")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the venue did not start"
        line = proc.stdout.readline()
        assert line.startswith("venue listening on "), line
        yield line.split()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            proc.kill()
            proc.communicate(timeout=15)


def test_a_real_run_never_shows_the_token(tmp_path: Path, venue: str) -> None:
    db = str(tmp_path / "k.db")
    url = f"{venue.rstrip('/')}/ws?token={SECRET}"
    result = run_cli("run", "--db", db, "--venue", url, "--duration", "2", "--status-view", "lines", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "token=***" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM transitions").fetchall()
        rows += conn.execute("SELECT data FROM live_entities UNION ALL SELECT data FROM ended_entities").fetchall()
    assert rows
    assert not [row for row in rows if SECRET in row[0]]
    status = run_cli("status", "--db", db, "--json")
    assert status.returncode == 0, status.stderr
    assert SECRET not in status.stdout


@pytest.mark.asyncio
async def test_a_bad_venue_url_error_does_not_show_the_token() -> None:
    client = VenueClient(f"http://127.0.0.1:1/ws?token={SECRET}", attempts=1)
    with pytest.raises(VenueError) as caught:
        await client.connect()
    await client.close()
    assert "token=***" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_status_of_a_running_kernel_does_not_show_the_token(tmp_path: Path, venue: str) -> None:
    db = str(tmp_path / "k.db")
    url = f"{venue.rstrip('/')}/ws?token={SECRET}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "run", "--db", db, "--venue", url, "--duration", "30", "--status-view", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        snapshot: dict[str, object] = {}
        while not snapshot.get("running"):
            assert time.monotonic() < deadline, "the kernel never answered status"
            status = run_cli("status", "--db", db, "--json")
            snapshot = json.loads(status.stdout) if status.returncode == 0 else {}
        shown = json.dumps(snapshot)
        assert "token=***" in shown
        assert SECRET not in shown
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert SECRET not in err
