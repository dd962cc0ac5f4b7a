"""Entity ids a journal knows to be new without asking SQLite (``Journal.claim_fresh``).

The order manager makes its client order ids from the journal's id, the run's id (never reused by
a journal) and a counter, so an id of this run's namespace can only exist if this run created it.
``FreshIds`` keeps, for each claimed namespace (a machine and an id prefix no entity had when it
was claimed), the greatest id created in it since, in one total order (length, then text: for a
counter's digits, numeric order). An id above that mark cannot have been created: no lookup is
needed. Anything else (an id below the mark, outside every namespace) is looked up as before, so
the guarantee that no entity is created twice never rests on the caller's counter.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

Rank = tuple[int, str]
Key = tuple[str, str]
"""An entity: (machine, entity id)."""


def rank(entity_id: str) -> Rank:
    """The total order of ids within a namespace: by length, then by text."""
    return (len(entity_id), entity_id)


def upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (``None``: there is none
    short of the last code point). SQLite compares TEXT as UTF-8 bytes, which keeps code point order."""
    if not prefix or ord(prefix[-1]) >= 0x10FFFF:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class FreshIds:
    """Claimed namespaces by machine: prefix -> the rank of the greatest id created in it (or ``None``)."""

    def __init__(self) -> None:
        self._claimed: dict[str, dict[str, Rank | None]] = {}

    def claimed(self, machine: str, prefix: str) -> bool:
        """True when ``prefix`` of ``machine`` is already claimed."""
        return prefix in self._claimed.get(machine, {})

    def claim(
        self, conn: sqlite3.Connection, dirty: Mapping[tuple[str, str], object], machine: str, prefix: str
    ) -> bool:
        """Claim the ids of ``machine`` that start with ``prefix`` as a namespace of new ids, if no
        entity has one yet, appended (``dirty``) or committed (one range lookup now); from then on
        ``is_new`` answers ids above the greatest created in it from memory. True when claimed
        (now or before)."""
        if self.claimed(machine, prefix):
            return True
        upper = upper_bound(prefix)
        if upper is None or any(m == machine and entity_id.startswith(prefix) for m, entity_id in dirty):
            return False
        bounds = (machine, prefix, upper)
        row = conn.execute(
            "SELECT 1 FROM live_entities WHERE machine = ? AND entity >= ? AND entity < ? "
            "UNION ALL SELECT 1 FROM ended_entities WHERE machine = ? AND entity >= ? AND entity < ? LIMIT 1",
            bounds + bounds,
        ).fetchone()
        if row is not None:
            return False
        self._claimed.setdefault(machine, {})[prefix] = None
        return True

    def is_new(self, machine: str, entity_id: str) -> bool:
        """True when ``entity_id`` lies in a claimed namespace above everything created in it."""
        prefixes = self._claimed.get(machine)
        if prefixes:
            for prefix, highest in prefixes.items():
                if entity_id.startswith(prefix):
                    return highest is None or rank(entity_id) > highest
        return False

    def created(self, machine: str, entity_id: str) -> None:
        """A create of ``entity_id`` was appended: raise its namespace's mark."""
        prefixes = self._claimed.get(machine)
        if prefixes:
            for prefix, highest in prefixes.items():
                if entity_id.startswith(prefix):
                    new = rank(entity_id)
                    if highest is None or new > highest:
                        prefixes[prefix] = new
                    return
