"""Start-up stays lazy (issue 17): ``tradekernel status`` and ``audit tail`` import only what they use.

Not timed (``benchmarks/startup.py`` prints the times): each case runs the command in a real
subprocess and lists what it left in ``sys.modules``, so a top-level import of the paper venue
simulator, the configuration framework, ``sqlite_utils`` (with click, dateutil and pluggy) or the
network clients cannot creep back unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel.cli import COMMAND_NAMES, build_parser, command_of
from storage import Journal
from tests.conftest import REPO

HEAVY = (
    "sqlite_utils",
    "click",
    "dateutil",
    "pluggy",
    "pydantic",
    "httpx",
    "websockets",
    "kernel.config",
    "kernel.venue",
    "kernel.binance",
    "kernel.feed",
    "kernel.views",
    "asyncio",
    "rich",
    "matplotlib",
    "prometheus_client",
    "psycopg",
    "datasette",
)
"""Packages no read-only command needs: none of them, nor any of their submodules, may be imported."""

CHILD = """
import contextlib, io, json, sys
import kernel.cli
if len(sys.argv) > 1:
    with contextlib.redirect_stdout(io.StringIO()):
        code = kernel.cli.main(sys.argv[1:])
    assert code == 0, code
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds after ``import kernel.cli`` and ``main(argv)``."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.fixture
def idle_db(tmp_path: Path) -> str:
    path = str(tmp_path / "idle.db")
    Journal.open(path, start_run=False).close()
    return path


def test_importing_the_command_line_imports_nothing_heavy() -> None:
    modules = imported_by()
    assert heavy(modules) == []
    assert "kernel.cli.run" not in modules
    assert "kernel.cli.market" not in modules


@pytest.mark.parametrize("command", [["status"], ["audit", "tail"]], ids=["status", "audit-tail"])
def test_a_read_only_command_on_an_idle_journal_imports_nothing_heavy(idle_db: str, command: list[str]) -> None:
    modules = imported_by(*command, "--db", idle_db)
    assert heavy(modules) == []
    assert "storage.audit" in modules  # it did read the journal


def test_the_command_table_names_every_registered_command() -> None:
    full = build_parser()
    (commands,) = [a for a in full._actions if a.dest == "command"]
    assert set(commands.choices) == COMMAND_NAMES  # type: ignore[arg-type]
    for name in sorted(COMMAND_NAMES):
        (only,) = [a for a in build_parser(name)._actions if a.dest == "command"]
        assert name in only.choices  # type: ignore[operator]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status", "--db", "x.db"], "status"),
        (["audit", "tail"], "audit"),
        (["--version"], None),
        (["-h", "halt"], None),
        (["audit", "--help"], "audit"),
        (["nonsense", "status"], None),
        ([], None),
    ],
)
def test_the_command_is_the_first_word(argv: list[str], expected: str | None) -> None:
    assert command_of(argv) == expected
