"""Typed journal errors. Each says which file and what to do; none leaves a half-written batch."""

from __future__ import annotations

from machines.errors import TradekernelError


class JournalError(TradekernelError):
    """Base class of every journal error."""


class JournalOpenError(JournalError):
    """The journal cannot be opened: missing or read-only directory or file, not a journal, ..."""


class JournalLocked(JournalError):
    """Another process holds the journal for writing (one kernel per database)."""

    def __init__(self, path: str, holder: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"journal {path} is already open for writing by {holder}; "
            "one kernel per database (readers such as `tradekernel audit` may still open it)"
        )


class JournalCorrupt(JournalError):
    """The file fails SQLite's integrity check or the journal's own consistency checks."""


class JournalVersionError(JournalError):
    """The database schema is newer than this code understands (or otherwise unusable)."""

    def __init__(self, path: str, found: int, supported: int, detail: str = "") -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"journal {path} has schema version {found}, but this tradekernel supports up to "
            f"version {supported}{detail}; upgrade tradekernel to open it (it is never downgraded)"
        )


class JournalWriteError(JournalError):
    """A commit failed (disk full, I/O error, locked by a foreign writer).

    The whole batch was rolled back and is still buffered: nothing is lost from memory and nothing
    half-written is on disk. ``Journal.commit()`` may be retried; until it succeeds the journal
    reports itself failed (``Journal.failure``) and the kernel must not trade.
    """


class JournalBusy(JournalWriteError):
    """A commit waited for a lock another connection holds (e.g. an SQLite shell in a transaction)."""


class JournalClosed(JournalError):
    """The journal was closed; nothing more can be appended."""


class JournalEncodeError(JournalError, TypeError):
    """A value has no journal encoding (the codec knows JSON types, ``Decimal`` and read-only mappings).

    Also a ``TypeError``, as msgspec expects from an encoder hook."""
