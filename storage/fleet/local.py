"""The shipper's read-only view of a local journal (SQLite): its id, head, rows and anomalies.

It opens the journal with ``storage.schema.connect_reader`` (WAL lets it read while a kernel
writes) and never writes it; each read is one statement, so one consistent snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from storage.fleet.store import ANOMALY_COLUMNS, TRANSITION_COLUMNS, AnomalyRow, TransitionRow
from storage.schema import check_head_row, check_readable_version, connect_reader, read_journal_id, translate

_SELECT_ROWS = f"SELECT {', '.join(TRANSITION_COLUMNS)} FROM transitions"
_SELECT_ANOMALIES = f"SELECT {', '.join(ANOMALY_COLUMNS)} FROM anomalies"


class LocalJournal:
    """A journal opened read-only for shipping. Raises ``JournalError`` subclasses (typed, naming the file)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn = connect_reader(path)
        try:
            check_readable_version(self.conn, path)
            self.kernel_id = read_journal_id(self.conn, path)
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LocalJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def head_seq(self) -> int:
        """The last committed seq (``journal_head``)."""
        return check_head_row(self.conn, self.path)[0]

    def rows(self, first_seq: int, limit: int) -> list[TransitionRow]:
        """At most ``limit`` rows from ``first_seq`` on, in seq order."""
        try:
            found = self.conn.execute(f"{_SELECT_ROWS} WHERE seq >= ? ORDER BY seq LIMIT ?", (first_seq, limit))
            return [TransitionRow(*row) for row in found]
        except sqlite3.Error as exc:
            raise translate(exc, self.path, writing=False) from exc

    def anomalies(self, after_id: int, limit: int) -> list[AnomalyRow]:
        """At most ``limit`` anomalies after id ``after_id``, in id order."""
        try:
            found = self.conn.execute(f"{_SELECT_ANOMALIES} WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
            return [AnomalyRow(*row) for row in found]
        except sqlite3.Error as exc:
            raise translate(exc, self.path, writing=False) from exc

    def ts_of(self, seq: int) -> int | None:
        """The time (ns) of the row at ``seq``, if there is one."""
        row = self.conn.execute("SELECT ts FROM transitions WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else int(row[0])

    def hashes(self) -> Iterator[tuple[int, str]]:
        """``(seq, hash)`` of every row, in seq order (streamed)."""
        try:
            for seq, digest in self.conn.execute("SELECT seq, hash FROM transitions ORDER BY seq"):
                yield int(seq), str(digest)
        except sqlite3.Error as exc:
            raise translate(exc, self.path, writing=False) from exc
