"""Compare a local journal with what the fleet store holds for it (``audit verify --against``).

Both sides are streamed in seq order and merged: memory stays flat however long the journal.
Rows the store lacks are lag (a note); rows only the store has, or a different hash under one
seq, are failures: the local journal is not what was shipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of comparing a journal's ``(seq, hash)`` stream with the store's."""

    compared: int
    """Rows present on both sides."""
    mismatches: int
    first_mismatch: tuple[int, str, str] | None
    """``(seq, local hash, store hash)`` of the first row that differs."""
    missing_in_store: int
    first_missing_in_store: int | None
    missing_locally: int
    first_missing_locally: int | None

    @property
    def ok(self) -> bool:
        """True when every row the store holds is, identical, in the local journal (lag allowed)."""
        return self.first_mismatch is None and self.missing_locally == 0


_END = (1 << 63, "")


def _advance(rows: Iterator[tuple[int, str]]) -> tuple[int, str]:
    return next(rows, _END)


def compare(local: Iterable[tuple[int, str]], store: Iterable[tuple[int, str]]) -> Comparison:
    """Merge two ``(seq, hash)`` streams, each in increasing seq order."""
    left, right = iter(local), iter(store)
    a, b = _advance(left), _advance(right)
    compared = mismatches = only_local = only_store = 0
    first_mismatch: tuple[int, str, str] | None = None
    first_only_local: int | None = None
    first_only_store: int | None = None
    while a is not _END or b is not _END:
        if a[0] == b[0]:
            compared += 1
            if a[1] != b[1]:
                mismatches += 1
                first_mismatch = first_mismatch or (a[0], a[1], b[1])
            a, b = _advance(left), _advance(right)
        elif a[0] < b[0]:
            only_local += 1
            first_only_local = a[0] if first_only_local is None else first_only_local
            a = _advance(left)
        else:
            only_store += 1
            first_only_store = b[0] if first_only_store is None else first_only_store
            b = _advance(right)
    return Comparison(compared, mismatches, first_mismatch, only_local, first_only_local, only_store, first_only_store)
