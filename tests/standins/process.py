"""A stand-in in its own process (``python -m tests.standins``), for tests that block on a subprocess.

with standin_process("binance", "binance_nknusdt_paper", pace=4) as venue:
    run_cli("run", ..., venue.ws_url, venue.rest_url)
venue.summary  # what it served (connections, frames, REST requests, faults fired)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class StandInProcess:
    """The URLs a running stand-in printed, and (after it stopped) its summary."""

    ws_url: str
    rest_url: str
    process: subprocess.Popen[str]
    summary: dict[str, Any] = field(default_factory=dict)


@contextmanager
def standin_process(
    venue: str,
    session: str,
    *,
    pace: float | None = None,
    max_gap: float = 1.0,
    faults: dict[str, object] | None = None,
    max_seconds: float = 120.0,
) -> Iterator[StandInProcess]:
    """Start the stand-in, yield its URLs, then SIGTERM it and read its summary (bounded waits)."""
    command = [sys.executable, "-m", "tests.standins", venue, "--session", session, "--port", "0"]
    command += ["--max-seconds", str(max_seconds), "--max-gap", str(max_gap)]
    if pace is not None:
        command += ["--pace", str(pace)]
    for name, value in (faults or {}).items():
        command += ["--fault", f"{name}={'none' if value is None else value}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO), env=env
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if not first.startswith("ws_url="):
            process.kill()
            _, err = process.communicate(timeout=10)
            raise AssertionError(f"the stand-in did not start: {first!r} {err[-2000:]}")
        urls = dict(part.split("=", 1) for part in first.split())
        running = StandInProcess(urls["ws_url"], urls["rest_url"], process)
        yield running
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err[-2000:]
        running.summary = json.loads(out.strip().splitlines()[-1])
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
