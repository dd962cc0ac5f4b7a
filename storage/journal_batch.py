"""The rows and statements of one journal commit (``Journal.commit``), apart from the journal's
bookkeeping: the transitions, the current state of every entity the batch touched, the head."""

from __future__ import annotations

import sqlite3
from typing import Any

from machines import Entity
from storage import codec

_INSERT = (
    "INSERT INTO transitions (seq, ts, run, machine, entity, trigger, source, dest, data, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_LIVE = (
    "INSERT INTO live_entities (machine, entity, state, seq, data, digest) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (machine, entity) DO UPDATE SET "
    "state = excluded.state, seq = excluded.seq, data = excluded.data, digest = excluded.digest"
)
_UPSERT_ENDED = (
    "INSERT INTO ended_entities (machine, entity, state, seq, data, digest) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (machine, entity) DO UPDATE SET "
    "state = excluded.state, seq = excluded.seq, data = excluded.data, digest = excluded.digest"
)
_DELETE_LIVE = "DELETE FROM live_entities WHERE machine = ? AND entity = ?"
_HEAD = "UPDATE journal_head SET seq = ?, hash = ? WHERE id = 1"
_ANOMALY = "INSERT INTO anomalies (ts, run, source, kind, reason, sample) VALUES (?, ?, ?, ?, ?, ?)"
Row = tuple[int, int, int, str, str, str, "str | None", str, str, str]
StateRow = tuple[str, str, str, int, str, str]


def state_rows(dirty: dict[tuple[str, str], tuple[Entity, int]]) -> tuple[list[StateRow], list[StateRow]]:
    """The current-state rows (live, ended) of the entities a batch touched, with their digests."""
    live: list[StateRow] = []
    ended: list[StateRow] = []
    encode, digest_of = codec.encode, codec.state_digest
    for (machine, entity_id), (entity, seq) in dirty.items():
        text, state = encode(entity.data).decode(), entity.state  # codec.encode_text, once per entity
        row = (machine, entity_id, state, seq, text, digest_of(machine, entity_id, state, seq, text))
        (ended if state in entity.machine.terminal_names else live).append(row)  # not entity.live
    return live, ended


def write_batch(conn: sqlite3.Connection, rows: list[Row], live: list[StateRow], ended: list[StateRow],
                created: set[tuple[str, str]], head: tuple[int, str], anomalies: list[Any]) -> None:  # fmt: skip
    """The statements of one commit, inside its transaction."""
    conn.executemany(_INSERT, rows)
    if live:
        conn.executemany(_UPSERT_LIVE, live)
    if ended:
        # An entity created and ended in this batch never reached live_entities.
        leaving = [row[:2] for row in ended if row[:2] not in created]
        if leaving:
            conn.executemany(_DELETE_LIVE, leaving)
        conn.executemany(_UPSERT_ENDED, ended)
    conn.execute(_HEAD, head)
    if anomalies:
        conn.executemany(_ANOMALY, anomalies)
