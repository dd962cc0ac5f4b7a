"""Recording a live session as JSON lines, so it can be replayed later (``market watch --record``).

One JSON object per line: first a header ``{"kind": "header", "venue", "instruments",
"recorded_by"}``, then each WebSocket frame as received ``{"t_ns", "kind": "ws", "frame"}`` and
each REST answer ``{"t_ns", "kind": "rest", "path", "status", "body"}``; ``t_ns`` is the receive
time (``time.time_ns()``). ``FeedRecorder.frame`` is a ``FeedClient`` ``on_frame`` listener,
``FeedRecorder.rest`` an ``on_rest`` one; ``read_recording`` reads a file back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from kernel.feed.errors import FeedError

RECORDED_BY = "tradekernel market watch"


class RecordingError(FeedError):
    """A recording file that is not one (no header, a line that is not a JSON object)."""


class RecordingWriteError(FeedError, OSError):
    """The recording file cannot be created or written (the message names the file and why)."""


class FeedRecorder:
    """Writes one session to ``path`` (truncated) as JSON lines (see the module docstring).

    ``open()`` (or ``with``) creates the file and writes the header, ``RecordingWriteError`` if it
    cannot. A later write error is kept in ``error`` (the first one) and every later entry is dropped,
    so the caller can end the session instead of losing data silently; ``frames`` counts the entries
    written after the header. ``close()`` flushes and closes; idempotent.
    """

    def __init__(self, path: str | Path, venue: str, instruments: Sequence[str]) -> None:
        self.path = Path(path)
        self.venue = venue
        self.instruments = list(instruments)
        self.error: str | None = None
        self.frames = 0
        self._file: IO[str] | None = None

    def open(self) -> None:
        """Create (or truncate) the file and write the header."""
        header = {"kind": "header", "venue": self.venue, "instruments": self.instruments, "recorded_by": RECORDED_BY}
        try:
            self._file = self.path.open("w", encoding="utf-8")
            self._file.write(json.dumps(header) + "\n")
            self._file.flush()
        except OSError as exc:
            self._fail(exc)
            raise RecordingWriteError(self.error) from None

    def frame(self, frame: str | bytes, t_ns: int) -> None:
        """One WebSocket frame received at ``t_ns`` (bytes decoded as UTF-8, undecodable bytes replaced)."""
        text = frame if isinstance(frame, str) else bytes(frame).decode("utf-8", "replace")
        self._write({"t_ns": t_ns, "kind": "ws", "frame": text})

    def rest(self, path: str, status: int, body: str, t_ns: int) -> None:
        """One REST answer: the path asked (with its query), the HTTP status and the body text."""
        self._write({"t_ns": t_ns, "kind": "rest", "path": path, "status": status, "body": body})

    def flush(self) -> None:
        """Push what is buffered to the file (a failure is kept in ``error``)."""
        if self._file is None or self.error is not None:
            return
        try:
            self._file.flush()
        except OSError as exc:
            self._fail(exc)

    def close(self) -> None:
        """Flush and close the file. Idempotent."""
        self.flush()
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                if self.error is None:
                    self._fail(exc)

    def _write(self, entry: dict[str, Any]) -> None:
        if self._file is None or self.error is not None:
            return
        try:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        except OSError as exc:
            self._fail(exc)
            return
        self.frames += 1

    def _fail(self, exc: OSError) -> None:
        self.error = f"cannot write the recording {self.path}: {exc.strerror or exc}"

    def __enter__(self) -> FeedRecorder:
        self.open()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def read_recording(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(header, entries)`` of a recording file; ``RecordingError`` if it is not one."""
    header: dict[str, Any] | None = None
    entries: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise RecordingError(f"{path}:{number}: not JSON") from None
            if not isinstance(entry, dict):
                raise RecordingError(f"{path}:{number}: not a JSON object")
            if header is None:
                if entry.get("kind") != "header":
                    raise RecordingError(f"{path}:1: no header line")
                header = entry
            else:
                entries.append(entry)
    if header is None:
        raise RecordingError(f"{path}: empty")
    return header, entries
