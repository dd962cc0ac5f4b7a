"""Fixtures shared by every test package: a fake clock, journal paths, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tests.toy  # noqa: F401  (registers the toy machine)

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["kernel.testing"]  # the tradekernel_harness fixture, as users get it


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", help="long runs: the kill -9 torture test with 500 kills")


class FakeClock:
    """A wall clock in ns that only moves when told to: ``clock()`` returns ``now``."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000, step_ns: int = 1_000) -> None:
        self.now = start_ns
        self.step_ns = step_ns

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """Path of a journal file that does not exist yet, in a fresh directory."""
    return str(tmp_path / "journal.db")


def run_cli(
    *args: str, timeout: float = 60, cwd: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m kernel ARGS`` in a real subprocess (``env``: variables added to ours);
    return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or str(REPO),
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
        check=False,
    )


@pytest.fixture
def cli() -> object:
    return run_cli


def add_venue_account(db: str, name: str) -> tuple[str, str]:
    """Create account ``name`` in the venue database ``db`` with ``tradekernel venue account add``
    (a real subprocess); its ``(api_key, secret)``, read from what the command prints once."""
    added = run_cli("venue", "account", "add", name, "--db", db, timeout=30)
    assert added.returncode == 0, added.stderr
    fields = dict(line.split(":", 1) for line in added.stdout.splitlines() if line.startswith(("api_key:", "secret:")))
    return fields["api_key"].strip(), fields["secret"].strip()
