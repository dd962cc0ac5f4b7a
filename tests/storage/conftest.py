"""Helpers for the storage tests: journals on real files, raw SQLite access, writer subprocesses."""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from storage import Journal
from tests.conftest import FakeClock
from tests.toy import TOY

REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 30.0
"""Upper bound for anything a child process is expected to do (start, open, answer)."""

COLUMNS = ("seq", "ts", "run", "machine", "entity", "trigger", "source", "dest", "data", "hash")


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


# -- raw SQLite access ------------------------------------------------------------------------


@contextlib.contextmanager
def raw(path: str, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection (autocommit) that is always closed."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def query(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with raw(path, readonly=True) as conn:
        return conn.execute(sql, params).fetchall()


def count_rows(path: str, machine: str | None = None) -> int:
    if machine is None:
        return int(query(path, "SELECT count(*) FROM transitions")[0][0])
    return int(query(path, "SELECT count(*) FROM transitions WHERE machine = ?", (machine,))[0][0])


def drop_append_only_triggers(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER transitions_append_only_update")
    conn.execute("DROP TRIGGER transitions_append_only_delete")


def copy_db(src: str, dst: str) -> str:
    """Copy a cleanly closed journal (its WAL folded into the file) to ``dst``."""
    assert not os.path.exists(src + "-wal") or os.path.getsize(src + "-wal") == 0
    shutil.copyfile(src, dst)
    return dst


# -- journals ---------------------------------------------------------------------------------


@pytest.fixture
def open_journal(clock: FakeClock) -> Iterator[Callable[..., Journal]]:
    """``open_journal(path, **kw)``: Journal.open with the fake clock; whatever is left open is closed."""
    opened: list[Journal] = []

    def _open(path: str, **kwargs: Any) -> Journal:
        kwargs.setdefault("clock", clock)
        journal = Journal.open(path, **kwargs)
        opened.append(journal)
        return journal

    yield _open
    for journal in opened:
        if not journal.closed:
            try:
                journal.close()
            except Exception:
                journal._release()


@pytest.fixture
def journal(open_journal: Callable[..., Journal], db_path: str) -> Journal:
    """A freshly created journal at ``db_path`` (run 1 started), closed after the test."""
    return open_journal(db_path)


@dataclass
class SmallJournal:
    """A cleanly closed journal of ~30 rows with toy entities in every state."""

    path: str
    states: dict[str, str] = field(default_factory=dict)
    rows: int = 0


def build_small_journal(path: str, clock: FakeClock) -> SmallJournal:
    """31 rows: toy entities idle, active (with adds), done, dropped from idle and from active; run 1."""
    with Journal.open(path, clock=clock) as j:
        idle, created = TOY.create("idle-1", target="5")
        j.append(created, idle)
        active, created = TOY.create("active-1", target="100")
        j.append(created, active)
        j.fire(TOY, active, "start")
        for qty in ("1.5", "2", "3.25"):
            j.fire(TOY, active, "add", qty=qty)
        j.commit()
        done, created = TOY.create("done-1", target="4")
        j.append(created, done)
        j.fire(TOY, done, "start")
        j.fire(TOY, done, "add", qty="1")
        j.fire(TOY, done, "add", qty="3")
        j.fire(TOY, done, "finish")
        dropped_idle, created = TOY.create("dropped-idle", target="1")
        j.append(created, dropped_idle)
        j.fire(TOY, dropped_idle, "drop")
        j.commit()
        dropped_active, created = TOY.create("dropped-active", target="7")
        j.append(created, dropped_active)
        j.fire(TOY, dropped_active, "start")
        j.fire(TOY, dropped_active, "add", qty="2")
        j.fire(TOY, dropped_active, "drop")
        again, created = TOY.create("active-2", target="9")
        j.append(created, again)
        j.fire(TOY, again, "start")
        for qty in ("1", "1", "1", "1", "1", "1"):
            j.fire(TOY, again, "add", qty=qty)
        j.commit()
        idle2, created = TOY.create("idle-2")
        j.append(created, idle2)
        third, created = TOY.create("active-3", target="2")
        j.append(created, third)
        j.fire(TOY, third, "start")
        j.fire(TOY, third, "add", qty="0.001")
        entities = (idle, active, done, dropped_idle, dropped_active, again, idle2, third)
        states = {e.entity_id: e.state for e in entities}
    return SmallJournal(path=path, states=states, rows=count_rows(path))


@pytest.fixture
def small_journal(db_path: str, clock: FakeClock) -> SmallJournal:
    return build_small_journal(db_path, clock)


# -- page-level damage ------------------------------------------------------------------------


def page_info(path: str, name: str) -> tuple[int, int]:
    """(root page number, page size) of table ``name``."""
    with raw(path, readonly=True) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    return int(root), int(page_size)


def leftmost_leaf(path: str, root: int, page_size: int) -> int:
    """Follow the first child pointer of b-tree interior pages from ``root`` down to a leaf."""
    page = root
    with open(path, "rb") as f:
        for _ in range(64):
            f.seek((page - 1) * page_size)
            data = f.read(page_size)
            kind = data[0]
            if kind in (0x0A, 0x0D):  # index / table leaf
                return page
            assert kind in (0x02, 0x05), f"page {page} has unexpected b-tree type {kind:#x}"
            first_cell = int.from_bytes(data[12:14], "big")
            page = int.from_bytes(data[first_cell : first_cell + 4], "big")
    raise AssertionError("b-tree too deep")


def overwrite(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


# -- writer subprocesses ----------------------------------------------------------------------


class Child:
    """A ``tests.storage.child_writer`` subprocess whose stdout lines are read with deadlines."""

    def __init__(self, mode: str, path: str, err_path: Path) -> None:
        self._err_path = err_path
        self._err: IO[str] = open(err_path, "w")  # noqa: SIM115  (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.storage.child_writer", mode, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=child_env(),
            cwd=str(REPO),
        )
        self.lines: list[str] = []
        self.partial = ""
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):
                self._queue.put(line[:-1])
            else:  # cut short by a kill: not a line the child finished saying
                self.partial = line
        self._queue.put(None)

    def stderr(self) -> str:
        self._err.flush()
        return self._err_path.read_text()

    def expect(self, prefix: str, timeout: float = CHILD_TIMEOUT_S) -> list[str]:
        """Wait (at most ``timeout`` s) for a stdout line starting with ``prefix``; return its words."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {prefix!r} line within {timeout}s; stdout {self.lines}; {self.stderr()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=CHILD_TIMEOUT_S)
                raise AssertionError(
                    f"child exited ({self.proc.returncode}) before {prefix!r}; stdout {self.lines}; {self.stderr()}"
                )
            self.lines.append(line)
            if line.startswith(prefix):
                return line.split()

    def last(self, prefix: str) -> list[str] | None:
        """The words of the last line read so far that starts with ``prefix`` (drains what is queued)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                break
            self.lines.append(line)
        found = [line for line in self.lines if line.startswith(prefix)]
        return found[-1].split() if found else None

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=CHILD_TIMEOUT_S) == -signal.SIGKILL
        self._reader.join(timeout=CHILD_TIMEOUT_S)  # everything it printed is now queued
        assert not self._reader.is_alive()

    def wait(self, timeout: float = CHILD_TIMEOUT_S) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=CHILD_TIMEOUT_S)
        self._reader.join(timeout=CHILD_TIMEOUT_S)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._err.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[str, str], Child]]:
    """``spawn(mode, path)`` starts a child writer; every child is killed and reaped at teardown."""
    children: list[Child] = []

    def _spawn(mode: str, path: str) -> Child:
        child = Child(mode, path, tmp_path / f"child-{len(children)}.stderr")
        children.append(child)
        return child

    yield _spawn
    for child in children:
        child.close()


# -- unprivileged subprocesses (permission bits do not stop root) -----------------------------

_PROBE = "import storage, tests.toy, tests.storage.child_writer"
_DROP_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search,-fowner",
    "--inh-caps=-all",
    "--ambient-caps=-all",
]


@dataclass(frozen=True)
class Unprivileged:
    """How to run a child so that file permission bits apply to it."""

    how: str
    prefix: tuple[str, ...] = ()
    user: str | None = None

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            env=child_env(),
            cwd=str(REPO),
            user=self.user,
            check=False,
        )


@functools.cache
def unprivileged() -> Unprivileged | str:
    """An ``Unprivileged`` runner, or the reason none is available.

    Not root: a plain subprocess. Root: the user ``nobody`` if it can run this interpreter and import
    the repo; otherwise root with CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH dropped by ``setpriv`` (then
    the owner's permission bits bind root as they bind anyone).
    """
    if os.geteuid() != 0:
        return Unprivileged("current user")
    reasons = []
    candidates = [Unprivileged("user nobody", user="nobody")]
    if shutil.which("setpriv"):
        candidates.append(Unprivileged("root without DAC capabilities (setpriv)", prefix=tuple(_DROP_DAC)))
    else:
        reasons.append("setpriv is not installed")
    for candidate in candidates:
        try:
            probe = candidate.run("-c", _PROBE)
        except (OSError, subprocess.SubprocessError) as exc:
            reasons.append(f"{candidate.how}: {exc}")
            continue
        if probe.returncode == 0:
            return candidate
        reasons.append(f"{candidate.how} cannot import the repo: {probe.stderr.strip()[-300:]}")
    return "; ".join(reasons)


@pytest.fixture
def unprivileged_runner() -> Unprivileged:
    runner = unprivileged()
    if isinstance(runner, str):
        pytest.skip(f"tests run as root and no unprivileged way to run {sys.executable} exists: {runner}")
    return runner


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's private (0700) tmp tree, traversable by an unprivileged user."""
    path = Path(tempfile.mkdtemp(prefix="tradekernel-storage-"))
    path.chmod(0o777)
    yield path
    path.chmod(0o755)
    for child in path.iterdir():
        child.chmod(0o644)
    shutil.rmtree(path)
