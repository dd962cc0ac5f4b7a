"""``tradekernel audit serve``: Datasette on loopback with the shipped metadata (a real server in a
subprocess, on a free loopback port, stopped within the test's bounds)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import kernel.cli
from kernel.cli import audit_serve
from tests.conftest import REPO
from tests.storage.scripted_journal import build_scripted

START_TIMEOUT_S = 30.0
"""The bound for Datasette to answer after the command starts (imports included)."""
STOP_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("serve") / "kernel-a.db")
    build_scripted(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for(url: str, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"audit serve exited {proc.returncode}: {proc.communicate()}")
        try:
            return get_json(url)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise AssertionError(f"Datasette did not answer {url} within {START_TIMEOUT_S} s") from None
            time.sleep(0.1)


def test_serve_shows_the_metadata_and_answers_a_canned_query(journal: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "audit", "serve", "--db", journal, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(REPO),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        metadata = wait_for(f"{base}/-/metadata.json", proc)
        assert metadata["title"] == "tradekernel journal"
        database = metadata["databases"]["kernel-a"]
        assert sorted(database["queries"]) == ["anomalies", "fills_of_a_day", "halts", "order_history"]
        assert "fills" in database["tables"]
        halts = get_json(f"{base}/kernel-a/halts.json?_shape=array")
        assert [(h["seq"], h["trigger"], h["reason"]) for h in halts] == [
            (28, "journal_failed", "journal failed: disk full"),
            (27, "health_unhealthy", "feed-r1 unhealthy: stale"),
            (25, "risk_breach", "risk breach: max_position 5 > 3"),
            (23, "halt", "operator: test"),
        ]
        fills = get_json(f"{base}/kernel-a/fills_of_a_day.json?day=2027-01-16&_shape=array")
        assert [(f["seq"], f["client_order_id"], f["qty"], f["price"], f["fee"]) for f in fills] == [
            (19, "b1", "3", "10", "0.02"),
            (21, "c1", "1", "9", "0.009"),
        ]
        # nothing but a read gets through its SQL endpoint
        with pytest.raises(urllib.error.HTTPError):
            get_json(f"{base}/kernel-a.json?sql=delete+from+journal_head")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=STOP_TIMEOUT_S)
    assert proc.returncode == 0, (out, err)
    assert list(tmp_path.glob("tradekernel-datasette-*")) == []  # its metadata file was removed


def test_without_datasette_it_says_what_to_install(
    journal: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(audit_serve, "datasette_available", lambda: False)
    assert kernel.cli.main(["audit", "serve", "--db", journal]) == 2
    assert "pip install 'tradekernel[ui]'" in capsys.readouterr().err


def test_a_remote_host_needs_allow_remote(
    journal: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(audit_serve, "datasette_available", lambda: False)  # never reaches a server
    assert kernel.cli.main(["audit", "serve", "--db", journal, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address" in err
    assert "--allow-remote" in err
    # with the flag it gets past the check (and stops at the missing Datasette here)
    assert kernel.cli.main(["audit", "serve", "--db", journal, "--host", "0.0.0.0", "--allow-remote"]) == 2
    assert "pip install" in capsys.readouterr().err


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kernel.cli.main(["audit", "serve", "--db", str(tmp_path / "missing.db")]) == 2
    assert "no journal at" in capsys.readouterr().err


def test_help_names_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        kernel.cli.main(["audit", "serve", "--help"])
    out = capsys.readouterr().out
    assert "tradekernel[ui]" in out
    assert "--allow-remote" in out


def test_a_taken_port_exits_2(journal: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "kernel", "audit", "serve", "--db", journal, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=str(REPO),
            check=False,
        )
    assert done.returncode == 2, done
    assert "address already in use" in done.stderr
