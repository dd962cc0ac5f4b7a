"""Crash points (kernel.faults): parsed strictly, and a named point kills at its N-th hit only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kernel import faults
from tests.conftest import REPO


def test_parse() -> None:
    assert faults._parse("") is None
    assert faults._parse("after_commit:3") == ("after_commit", 3)
    for bad in ("nowhere:1", "after_send", "after_send:0", "after_send:x"):
        with pytest.raises(faults.CrashPointError, match="TRADEKERNEL_CRASH_AT must be NAME:N"):
            faults._parse(bad)


def test_unset_points_do_nothing() -> None:
    faults.crash_point("after_commit")  # the test process is still here


def test_the_nth_hit_of_the_named_point_kills_the_process_with_sigkill() -> None:
    script = (
        "from kernel.faults import crash_point\n"
        "for i in range(5):\n"
        "    crash_point('after_send')\n"
        "    print(i, flush=True)\n"
        "    crash_point('reconciling')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADEKERNEL_CRASH_AT": "after_send:3"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == -9
    assert proc.stdout.split() == ["0", "1"]


def test_parse_stall() -> None:
    assert faults._parse_stall("") is None
    assert faults._parse_stall("15:2.5") == (15, 2.5)
    for bad in ("15", "0:1", "x:1", "3:0", "3:-1", "3:x", "3:7200"):
        with pytest.raises(faults.StallSpecError, match="TRADEKERNEL_STALL_COMMIT must be N:SECONDS"):
            faults._parse_stall(bad)


def test_the_nth_commit_stalls_inside_its_transaction() -> None:
    script = (
        "import time\n"
        "from kernel.faults import stall_commit\n"
        "for i in range(4):\n"
        "    began = time.monotonic()\n"
        "    stall_commit()\n"
        "    print(i, time.monotonic() - began >= 0.3, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADEKERNEL_STALL_COMMIT": "3:0.3"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["0 False", "1 False", "2 True", "3 False"]
