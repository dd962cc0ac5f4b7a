"""The deployment files: the Dockerfile's structure (no image can be built here), its health check
run against a real loopback server, and the systemd unit (``systemd-analyze verify`` where systemd
is installed, its keys in any case)."""

from __future__ import annotations

import configparser
import http.server
import inspect
import json
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kernel.config import load
from kernel.config.sections import KernelSection, NotifySection
from kernel.stop_sequence import close_in_reverse

REPO = Path(__file__).resolve().parent.parent
CLOSING_STEPS = 3
"""What the kernel closes last, each bounded by close_in_reverse: endpoints, venue session, paper venue."""


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments left out."""
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, rest = (pending + line).partition(" ")
        lines.append((instruction.upper(), rest.strip()))
        pending = ""
    return lines


def last(name: str) -> str:
    found = [rest for instruction, rest in instructions() if instruction == name]
    assert found, f"no {name} in the Dockerfile"
    return found[-1]


def environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, rest in instructions():
        if instruction == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def test_dockerfile_runs_as_a_user_from_a_slim_python() -> None:
    stages = [rest for instruction, rest in instructions() if instruction == "FROM"]
    assert stages[-1] in ("python:3.11-slim", "python:3.12-slim")
    user = last("USER").split(":")[0]
    assert user not in ("root", "0")
    assert "useradd --system --uid 10001 --user-group --home-dir /data" in last("RUN").replace("\\", "")


def test_dockerfile_keeps_the_journal_on_the_volume_and_runs_the_kernel() -> None:
    assert json.loads(last("VOLUME")) == ["/data"]
    assert json.loads(last("ENTRYPOINT")) == ["tradekernel", "run"]
    assert last("WORKDIR") == "/data"
    env = environment()
    config = load(None, environ=env)  # what the kernel in the image runs with, unless told otherwise
    assert config.kernel.db == "/data/tradekernel.db"
    assert config.kernel.control_socket_path == "/data/tradekernel.db.sock"
    assert config.kernel.status_view == "off"
    assert config.http.address == ("0.0.0.0", 8080)
    assert last("EXPOSE") == "8080"


def test_dockerfile_healthcheck_asks_healthz_without_curl() -> None:
    check = last("HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8080/healthz" in argv[2]
    assert "curl" not in check
    assert "wget" not in check


@contextmanager
def healthz_server(status: int) -> Iterator[str]:
    """A loopback server answering ``GET /healthz`` with ``status``; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(("status", "exit_status"), [(200, 0), (503, 1)])
def test_the_healthcheck_command_passes_on_200_only(status: int, exit_status: int) -> None:
    code = json.loads(last("HEALTHCHECK").partition(" CMD ")[2])[2]
    with healthz_server(status) as url:
        result = subprocess.run(
            [sys.executable, "-c", code.replace("http://127.0.0.1:8080", url)], capture_output=True, timeout=30
        )
    assert result.returncode == exit_status, result.stderr


def test_dockerignore_sends_only_the_packages() -> None:
    lines = [
        line for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines() if line and line[0] != "#"
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!kernel/", "!machines/", "!storage/"} <= set(lines)
    assert "**/*.db" in lines


# -- the systemd unit -----------------------------------------------------------------------------

UNIT = REPO / "deploy" / "tradekernel.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_unit_restarts_on_failure_as_a_user_with_a_state_directory() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["User"] not in ("root", "0")
    assert service["StateDirectory"] == "tradekernel"
    argv = shlex.split(service["ExecStart"])
    assert argv[1] == "run"
    assert argv[argv.index("--db") + 1] == "%S/tradekernel/tradekernel.db"  # in the state directory
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_unit_stop_timeout_covers_the_kernels_stop_sequence() -> None:
    service = unit()["Service"]
    assert service["KillSignal"] in ("SIGTERM", "SIGINT")  # both ask the kernel for its clean stop
    step_bound = inspect.signature(close_in_reverse).parameters["timeout_s"].default
    bound = 2 * KernelSection().stop_timeout_s + NotifySection().drain_s + CLOSING_STEPS * step_bound
    assert bound == 27  # the figure the unit's comment and docs/deployment.md explain
    assert int(service["TimeoutStopSec"]) == 30


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed (keys checked above)")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify wants ExecStart's program to exist: point it at this environment's tradekernel
    program = Path(sys.executable).parent / "tradekernel"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/tradekernel/bin/tradekernel", str(program))
    copy = tmp_path / "tradekernel.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(copy) not in result.stderr, result.stderr  # unknown keys or bad values only warn
