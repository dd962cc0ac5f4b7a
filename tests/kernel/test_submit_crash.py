"""SIGKILL the kernel right after a submit commits (and right after it is sent), restart it:
the venue never holds a second order for one ``client_order_id``. Real processes throughout."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.audit import AuditReader
from tests.conftest import REPO, run_cli

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ``tradekernel venue`` process on a free loopback port; yields (url, venue db)."""
    db = str(tmp_path / "venue.db")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "venue", "--open", "--port", "0", "--db", db],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(REPO),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the venue did not start"
        line = proc.stdout.readline()
        assert line.startswith("venue listening on "), line
        yield line.split()[-1], db
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            proc.kill()
            proc.communicate(timeout=15)


def kernel(mode: str, journal: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.kernel.crash_kernel", mode, journal, url],
        capture_output=True, text=True, timeout=60, env=ENV, cwd=str(REPO), check=False,
    )  # fmt: skip


def venue_orders(db: str) -> list[dict[str, object]]:
    listing = run_cli("venue", "orders", "--db", db, "--json")
    assert listing.returncode == 0, listing.stderr
    orders: list[dict[str, object]] = json.loads(listing.stdout)
    return orders


@pytest.mark.parametrize("resend", [False, True], ids=["resolve-only", "naive-resend"])
def test_a_kill_after_the_submit_commit_never_makes_a_second_order(
    venue: tuple[str, str], tmp_path: Path, resend: bool
) -> None:
    url, venue_db = venue
    journal = str(tmp_path / "kernel.db")
    rng = random.Random(4)
    killed: dict[str, str] = {}  # client_order_id -> "commit" | "send"
    for round_ in range(6):
        # the last kill is after a send, so the naive resend always hits an order the venue has
        after = "send" if round_ == 5 else rng.choice(["commit", "send"])
        child = kernel(f"kill-after-{after}", journal, url)
        assert child.returncode == -signal.SIGKILL, child.stderr
        word, client_order_id = child.stdout.split()[-2:]
        assert word == ("committed" if after == "commit" else "sent")
        killed[client_order_id] = after
    restarted = kernel("resume-and-resend" if resend else "resume", journal, url)
    last = list(killed)[-1]
    assert restarted.returncode == 0, restarted.stderr
    summary = json.loads(restarted.stdout.splitlines()[-1])
    assert summary["crashed_runs"], "the restart must say the last run did not end cleanly"

    at_venue = venue_orders(venue_db)
    ids = [o["client_order_id"] for o in at_venue]
    assert len(ids) == len(set(ids)), "a client_order_id became two orders at the venue"
    duplicate_submits = {o["client_order_id"]: o["duplicate_submits"] for o in at_venue}
    for client_order_id, after in killed.items():
        state = summary["orders"][client_order_id]
        if resend:
            # every order still pending_new was sent again: one order each at the venue; one that
            # had already reached it was answered with the existing order and counted
            resent = client_order_id in summary["resent"]
            assert duplicate_submits[client_order_id] == (1 if resent and after == "send" else 0)
            assert state == "accepted"
        elif after == "send":
            assert duplicate_submits[client_order_id] == 0
            assert state == "accepted"  # resolved from the venue's status, not resent
        else:
            assert client_order_id not in ids  # never sent, and never resent blindly
            assert client_order_id in summary["unknown_pending"]
            assert state == "pending_new"
    if resend:
        assert last in summary["resent"]
        assert duplicate_submits[last] == 1
    with AuditReader(journal) as reader:
        assert reader.verify().ok
