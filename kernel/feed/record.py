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


class FeedRecorder:
    """Writes one session to ``path`` (truncated); close it (or use ``with``) to flush the file."""

    def __init__(self, path: str | Path, venue: str, instruments: Sequence[str]) -> None:
        self.path = Path(path)
        self._file: IO[str] = self.path.open("w", encoding="utf-8")
        self.lines = 0
        self._write({"kind": "header", "venue": venue, "instruments": list(instruments), "recorded_by": RECORDED_BY})

    def frame(self, frame: str | bytes, t_ns: int) -> None:
        """One WebSocket frame as received (bytes decoded as UTF-8, undecodable bytes replaced)."""
        text = frame if isinstance(frame, str) else bytes(frame).decode("utf-8", "replace")
        self._write({"t_ns": t_ns, "kind": "ws", "frame": text})

    def rest(self, path: str, status: int, body: str, t_ns: int) -> None:
        """One REST answer: the path asked (with its query), the HTTP status and the body text."""
        self._write({"t_ns": t_ns, "kind": "rest", "path": path, "status": status, "body": body})

    def _write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self.lines += 1

    def close(self) -> None:
        """Flush and close the file. Idempotent."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> FeedRecorder:
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
