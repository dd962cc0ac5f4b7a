"""What the benchmarks share: the raw SQLite baseline, fresh files, medians and JSON lines."""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from storage.schema import SYNCHRONOUS

BATCH = 100
"""Rows per commit, in the journaled figures and in their raw baselines."""


def fresh(path: str) -> str:
    """Remove a journal and its side files; return ``path``."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def raw_insert(path: str, durability: str, rows: Sequence[tuple[Any, ...]]) -> float:
    """Seconds for plain ``executemany`` of ``rows`` into a table shaped like ``transitions``.

    ``BATCH`` rows per commit, WAL mode, the given durability: the raw baseline every journaled
    figure stands next to.
    """
    conn = sqlite3.connect(fresh(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
    conn.execute(
        "CREATE TABLE transitions (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, run INTEGER NOT NULL, "
        "machine TEXT NOT NULL, entity TEXT NOT NULL, trigger TEXT NOT NULL, source TEXT, "
        "dest TEXT NOT NULL, data TEXT NOT NULL, hash TEXT NOT NULL)"
    )
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[i : i + BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def journal_rows(path: str, machine: str) -> list[tuple[Any, ...]]:
    """Every ``transitions`` row of ``machine`` in a journal, in order."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT * FROM transitions WHERE machine = ? ORDER BY seq", (machine,)).fetchall()
    conn.close()
    return rows


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    """The median of ``repeats`` calls of ``measure``."""
    return statistics.median(measure() for _ in range(repeats))


def emit(record: dict[str, Any]) -> None:
    """Print one figure as a JSON line."""
    print(json.dumps(record), flush=True)
