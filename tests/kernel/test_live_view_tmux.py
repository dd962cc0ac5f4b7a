"""``tradekernel run`` in a real 80x24 pseudo-terminal (tmux): the live view shows the kernel,
health, trading, feed and P&L lines on one screen for the whole run, never scrolls a frame into
the scrollback, and after Ctrl-C the screen says ``stopped``.

Bounded (30 s at most) and self-cleaning: a private tmux server (``-L``) killed in the end. tmux
is installed here and in CI (``.ci/system-packages``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

LIMIT_S = 30.0
CORE = ("kernel   ", "health   ", "trading  ", "feed     ", "P&L      ")
"""How each of the five lines every frame shows begins."""


def tmux(server: str, *args: str) -> str:
    done = subprocess.run(
        ["tmux", "-L", server, "-f", "/dev/null", *args], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def core_lines(screen: list[str]) -> list[str]:
    return [line for line in screen if line.startswith(CORE)]


@pytest.mark.slow
def test_the_live_view_fits_80x24_never_scrolls_and_ends_stopped(tmp_path: Path) -> None:
    server = f"test-liveview-{os.getpid()}"
    config = tmp_path / "kernel.toml"
    config.write_text("[kernel]\nstatus_interval_s = 0.2\n")
    run = " ".join(
        shlex.quote(part)
        for part in (sys.executable, "-m", "kernel", "run", "--config", str(config), "--db", str(tmp_path / "k.db"))
    )
    command = f"cd {shlex.quote(str(REPO))} && env PYTHONPATH={shlex.quote(str(REPO))} {run}; echo EXITED $?; sleep 60"
    tmux(server, "new-session", "-d", "-x", "80", "-y", "24", "-s", "view", command)
    try:
        deadline = time.monotonic() + LIMIT_S
        frames: list[list[str]] = []
        while len(frames) < 6:  # about 3 s of a running kernel: fills and order changes redraw it
            assert time.monotonic() < deadline, "\n".join(tmux(server, "capture-pane", "-p", "-t", "view"))
            screen = tmux(server, "capture-pane", "-p", "-t", "view").splitlines()
            assert len(screen) <= 24
            if frames or any(line.startswith("kernel   running") for line in screen):
                assert [line[:9] for line in core_lines(screen)] == list(CORE), "\n".join(screen)
                frames.append(screen)
            time.sleep(0.5)
        tmux(server, "send-keys", "-t", "view", "C-c")
        while True:
            assert time.monotonic() < deadline, "the kernel did not stop"
            screen = tmux(server, "capture-pane", "-p", "-t", "view").splitlines()
            assert len(screen) <= 24
            if any(line.startswith("EXITED") for line in screen):
                break
            assert [line[:9] for line in core_lines(screen)] == list(CORE), "\n".join(screen)
            time.sleep(0.2)
        assert "EXITED 0" in screen
        kernel = [line for line in screen if line.startswith("kernel   ")]
        assert len(kernel) == 1, "\n".join(screen)
        assert kernel[0].startswith("kernel   stopped (SIGINT"), "\n".join(screen)
        assert not any("running" in line for line in core_lines(screen))

        history = tmux(server, "capture-pane", "-p", "-J", "-t", "view", "-S", "-").splitlines()  # lines unwrapped
        for begins in CORE:  # one frame in all: the last, never a pile of earlier ones
            assert len([line for line in history if line.startswith(begins)]) == 1, "\n".join(history)
        logged = [line for line in history if re.match(r"\d{4}-", line)]
        assert logged
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]", line) for line in logged)
        assert len([line for line in history if "ready: order entry open" in line]) == 1  # logged once
    finally:
        subprocess.run(["tmux", "-L", server, "kill-server"], capture_output=True, timeout=10, check=False)
