"""Journals for the fleet tests: a paper run's journal, more sessions appended, a local rewrite."""

from __future__ import annotations

import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

from storage import Journal
from storage.audit import AuditReader, VerifyResult
from storage.codec import decode, encode_text, row_hash, state_digest
from tests.conftest import run_cli

PAPER_CONFIG = '[strategy.params]\nspread_bps = "0"\nrequote_bps = "0"\n'
"""The market maker quoting at the mid: the bundled replay fills its quotes within a second or two."""

TRANSITIONS = "SELECT seq, ts, run, machine, entity, trigger, source, dest, data, hash FROM transitions ORDER BY seq"


def paper_run(db: Path, seconds: int = 3) -> None:
    """A short paper run of the market maker (embedded venue, bundled replay) journaling into ``db``."""
    config = db.parent / "paper.toml"
    config.write_text(PAPER_CONFIG)
    result = run_cli(
        "run", "--config", str(config), "--db", str(db), "--status-view", "off", "--duration", str(seconds), timeout=90
    )
    assert result.returncode == 0, result.stderr[-2000:]


def copy_journal(source: Path, dest: Path) -> Path:
    """A copy of a closed journal (the file alone: a closed journal has no WAL content left)."""
    shutil.copyfile(source, dest)
    return dest


def append_session(db: Path, anomaly: str = "") -> None:
    """Open ``db`` as a writer once more: a run that starts and stops (two rows), and an anomaly."""
    journal = Journal.open(str(db))
    if anomaly:
        journal.record_anomaly("test", "bad_input", anomaly, sample="x\x00y")
    journal.close()


def local_rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(TRANSITIONS).fetchall()


def journal_id(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT journal_id FROM journal_info").fetchone()[0])


def rewrite_fill_price(db: Path) -> int:
    """What the issue's tester did: improve the first fill's price by 1 (lower for a buy, higher for
    a sell), recompute the chain from there with the journal's own hash function, move the head and
    rebuild the current-state tables from a replay, so that ``audit verify`` finds nothing wrong.
    Returns the seq rewritten."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER transitions_append_only_update")
        seq, entity, data = conn.execute(
            "SELECT seq, entity, data FROM transitions WHERE machine = 'order' AND trigger = 'fill' "
            "ORDER BY seq LIMIT 1"
        ).fetchone()
        (created,) = conn.execute(
            "SELECT data FROM transitions WHERE machine = 'order' AND entity = ? AND trigger = 'create'", (entity,)
        ).fetchone()
        fill = decode(data)
        step = Decimal(-1) if decode(created)["side"] == "buy" else Decimal(1)
        fill["price"] = str(Decimal(fill["price"]) + step)
        conn.execute("BEGIN")
        conn.execute("UPDATE transitions SET data = ? WHERE seq = ?", (encode_text(fill), seq))
        (previous,) = conn.execute("SELECT hash FROM transitions WHERE seq = ?", (seq - 1,)).fetchone()
        rows = conn.execute(
            "SELECT seq, ts, run, machine, entity, trigger, source, dest, data FROM transitions WHERE seq >= ? "
            "ORDER BY seq",
            (seq,),
        ).fetchall()
        for row_seq, ts, run, machine, entity_id, trigger, source, dest, text in rows:
            header = (row_seq, ts, run, machine, entity_id, trigger, source, dest)
            previous = row_hash(previous, header, text.encode())
            conn.execute("UPDATE transitions SET hash = ? WHERE seq = ?", (previous, row_seq))
        conn.execute("UPDATE journal_head SET hash = ? WHERE id = 1", (previous,))
        conn.execute("COMMIT")
    finally:
        conn.close()
    _rebuild_state_tables(db)
    return int(seq)


def _rebuild_state_tables(db: Path) -> None:
    with AuditReader(str(db)) as reader:
        replayed = reader._verify_chain(VerifyResult(ok=True))
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for table in ("live_entities", "ended_entities"):
            conn.execute(f"DELETE FROM {table}")
        for (machine, entity_id), (entity, seq) in replayed.items():
            table = "live_entities" if entity.live else "ended_entities"
            text = encode_text(entity.data)
            conn.execute(
                f"INSERT INTO {table} (machine, entity, state, seq, data, digest) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    machine,
                    entity_id,
                    entity.state,
                    seq,
                    text,
                    state_digest(machine, entity_id, entity.state, seq, text),
                ),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
