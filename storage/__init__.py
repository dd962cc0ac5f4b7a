"""The SQLite transition journal: schema and migrations, append + group commit, audit queries.

The only package that talks SQL.
"""

from storage.errors import (
    JournalClosed,
    JournalCorrupt,
    JournalError,
    JournalLocked,
    JournalOpenError,
    JournalVersionError,
    JournalWriteError,
)
from storage.journal import Journal, JournalDataError
from storage.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "Journal",
    "JournalClosed",
    "JournalCorrupt",
    "JournalDataError",
    "JournalError",
    "JournalLocked",
    "JournalOpenError",
    "JournalVersionError",
    "JournalWriteError",
]
