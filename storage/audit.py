"""The read side of the journal: audit queries and ``verify``. Opens the file read-only.

Every query runs on a read-only connection, so auditing a journal while a kernel writes to it is
safe (WAL readers never block the writer) and never modifies the journal (SQLite may create its
``-wal``/``-shm`` side files; see ``storage.schema.connect_reader``).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from storage import codec
from storage.audit_verify import VerifyResult
from storage.audit_verify import verify as verify_journal
from storage.errors import JournalCorrupt
from storage.lock import writer_active
from storage.schema import (
    check_readable_version,
    connect_reader,
    translate,
)

_COLUMNS = "seq, ts, run, machine, entity, trigger, source, dest, data, hash"
RUN_SCOPED = frozenset({"feed", "health", "reconciliation"})
"""Machines whose entities belong to one kernel run, named ``NAME-rRUN`` (a reconciliation
``recon-rRUN-N``). Once their run is over (stopped, crashed, or still ``running`` with no writer
holding the journal: killed) they are not live, whatever state they were left in: a feed stopped
by the operator is ``closed``, which its machine lets ``connect`` again."""
_RUN_OF = re.compile(r"-r(\d+)(?:-\d+)?$")


def iso_time(ts_ns: int) -> str:
    """Nanoseconds since the epoch as an ISO-8601 UTC string with nanosecond precision."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def fill_row(
    client_order_id: str, order: dict[str, Any], fill: dict[str, Any], seq: int, ts: int, run: int, trigger: str
) -> dict[str, Any]:
    """One applied fill as ``fills()`` lists it (a journal's or the fleet store's): the order's
    instrument and side from its terms ``order``, the fill's own data ``fill``, where it is."""
    venue_ms = fill.get("ts_ms")
    return {
        "client_order_id": client_order_id,
        "instrument": order["instrument"],
        "side": order["side"],
        "qty": Decimal(fill["qty"]),
        "price": Decimal(fill["price"]),
        "fee": Decimal(fill.get("fee") or 0),
        "trade_id": fill["trade_id"],
        "seq": seq,
        "ts_ns": ts,
        "time": iso_time(ts),
        "run": run,
        "trigger": trigger,
        "fill_seq": fill.get("fill_seq"),
        "venue_time": iso_time(int(venue_ms) * 1_000_000) if venue_ms else None,
        "liquidity": fill.get("liquidity"),
    }


def _transition(row: tuple[Any, ...]) -> dict[str, Any]:
    seq, ts, run, machine, entity, trigger, source, dest, data, chain_hash = row
    if type(ts) is not int or type(data) is not str:
        raise JournalCorrupt(f"transition seq {seq} is damaged (ts {ts!r}); run `tradekernel audit verify`")
    try:
        decoded = codec.decode(data)
    except ValueError as exc:  # msgspec.DecodeError is a ValueError
        raise JournalCorrupt(f"transition seq {seq} is damaged ({exc}); run `tradekernel audit verify`") from None
    return {
        "seq": seq,
        "ts": iso_time(ts),
        "ts_ns": ts,
        "run": run,
        "machine": machine,
        "entity": entity,
        "trigger": trigger,
        "source": source,
        "dest": dest,
        "data": decoded,
        "hash": chain_hash,
    }


class AuditReader:
    """Read-only access to a journal. Raises ``JournalError`` subclasses on open."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn = connect_reader(path)
        try:
            self.schema_version = check_readable_version(self._conn, path)
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self.path, writing=False) from exc

    # -- listings ---------------------------------------------------------------------------

    def tail(self, n: int = 20, machine: str | None = None, entity: str | None = None) -> list[dict[str, Any]]:
        """The last ``n`` transitions (optionally of one machine / entity), oldest first."""
        where, params = _filters(machine=machine, entity=entity)
        rows = self._query(f"SELECT {_COLUMNS} FROM transitions {where} ORDER BY seq DESC LIMIT ?", (*params, n))
        return [_transition(r) for r in reversed(rows)]

    def timeline(self, entity: str, machine: str | None = None) -> list[dict[str, Any]]:
        """Every transition of one entity, in order (scans the log: entity ids are not indexed)."""
        where, params = _filters(machine=machine, entity=entity)
        rows = self._query(f"SELECT {_COLUMNS} FROM transitions {where} ORDER BY seq", params)
        return [_transition(r) for r in rows]

    def created(self, machine: str, run: int | None = None) -> list[str]:
        """The ids of the entities of ``machine`` created (in run ``run``, when given), oldest first."""
        where, params = _filters(machine=machine, trigger="create", run=run)
        return [entity for (entity,) in self._query(f"SELECT entity FROM transitions {where} ORDER BY seq", params)]

    def entities(
        self, machine: str | None = None, live_only: bool = False, *, live_now: bool = False
    ) -> list[dict[str, Any]]:
        """Current state and data of each entity (``live_only``: only the live ones).

        Live: not in a terminal state (the journal's tables) and, with ``live_now`` (what ``audit
        entities`` shows), for a run-scoped entity (``RUN_SCOPED``), of the run live now
        (``current_run``): what a run that is over left behind is not live."""
        table = "live_entities" if live_only else "entities"
        live_col = "1 AS live" if live_only else "live"
        where, params = _filters(machine=machine)
        rows = self._query(
            f"SELECT machine, entity, state, seq, {live_col}, data FROM {table} {where} ORDER BY machine, seq",
            params,
        )
        current: list[int | None] = []  # the run live now, computed once when needed

        def live(machine: str, entity: str, stored: bool) -> bool:
            if not (stored and live_now) or machine not in RUN_SCOPED or (found := _RUN_OF.search(entity)) is None:
                return stored
            if not current:
                current.append(self.current_run())
            return int(found.group(1)) == current[0]

        listed = [
            {"machine": m, "entity": e, "state": s, "seq": q, "live": live(m, e, bool(lv)), "data": codec.decode(d)}
            for m, e, s, q, lv, d in rows
        ]
        return [row for row in listed if row["live"]] if live_only else listed

    def current_run(self) -> int | None:
        """The run live now: the newest run still ``running``, while a writer holds the journal
        (``None``: no kernel has it open; a ``running`` run without one was killed)."""
        (newest,) = self._query("SELECT max(CAST(entity AS INTEGER)) FROM live_entities WHERE machine = 'run'")[0]
        return None if newest is None or not writer_active(self.path) else int(newest)

    def anomalies(self, n: int = 20, source: str | None = None) -> list[dict[str, Any]]:
        """The last ``n`` anomalies (optionally from one ``source``), oldest first."""
        where, params = _filters(source=source)
        rows = self._query(
            f"SELECT id, ts, run, source, kind, reason, sample FROM anomalies {where} ORDER BY id DESC LIMIT ?",
            (*params, n),
        )
        return [
            {"id": i, "ts": iso_time(ts), "ts_ns": ts, "run": run, "source": src, "kind": kind, "reason": reason,
             "sample": sample}
            for i, ts, run, src, kind, reason, sample in reversed(rows)
        ]  # fmt: skip

    def fills(self, *, since_ns: int | None = None, instrument: str | None = None) -> list[dict[str, Any]]:
        """Every fill applied to an order (``fill``, or ``reconcile_fill`` learned at
        reconciliation), in journal order.

        Each row: ``client_order_id``, ``instrument``, ``side``, ``qty``, ``price``, ``fee``
        (Decimals) and ``trade_id``; where it is in the journal: ``seq``, ``ts_ns``, ``time`` (ISO
        UTC, when the kernel journaled it), ``run``, ``trigger``; and what the venue said of it:
        ``fill_seq`` and ``venue_time`` (ISO UTC from the report's ``ts_ms``; ``None`` when not
        given), ``liquidity`` (``maker``/``taker`` when the report says, else ``None``).
        ``since_ns``: only fills journaled at or after that time; ``instrument``: only its fills.

        A repeated ``trade_id`` on one order (a duplicate report the order machine recorded but
        did not apply) is listed once. Costs O(fills), through a partial index.
        """
        # The partial index transitions_fills (migration 4) finds the fills without reading the rest
        # of the history; each order's terms are then one primary-key lookup.
        rows = self._query(
            "SELECT entity, data, seq, ts, run, trigger FROM transitions "
            "WHERE machine = 'order' AND trigger IN ('fill', 'reconcile_fill') ORDER BY seq"
        )
        terms: dict[str, dict[str, Any]] = {}
        for client_order_id, *_ in rows:
            if client_order_id not in terms:
                found = self._query(
                    "SELECT data FROM live_entities WHERE machine = 'order' AND entity = ? "
                    "UNION ALL SELECT data FROM ended_entities WHERE machine = 'order' AND entity = ?",
                    (client_order_id, client_order_id),
                )
                terms[client_order_id] = codec.decode(found[0][0]) if found else {}
        seen: set[tuple[str, str]] = set()
        out: list[dict[str, Any]] = []
        for client_order_id, fill_text, seq, ts, run, trigger in rows:
            fill, order = codec.decode(fill_text), terms[client_order_id]
            if not order:  # pragma: no cover - a fill is only ever journaled for a journaled order
                continue
            key = (client_order_id, fill.get("trade_id"))
            if key in seen:
                continue
            seen.add(key)
            if (since_ns is not None and ts < since_ns) or (
                instrument is not None and order["instrument"] != instrument
            ):
                continue
            out.append(fill_row(client_order_id, order, fill, seq, ts, run, trigger))
        return out

    def export(self, since: int = 0) -> Iterator[dict[str, Any]]:
        """Every transition with ``seq > since``, in order, streamed."""
        try:
            cursor = self._conn.execute(f"SELECT {_COLUMNS} FROM transitions WHERE seq > ? ORDER BY seq", (since,))
            for row in cursor:
                yield _transition(row)
        except sqlite3.Error as exc:
            raise translate(exc, self.path, writing=False) from exc

    def stats(self) -> dict[str, Any]:
        """Rows per machine, entities per machine, runs by state, file sizes, schema, seq range."""

        def counts(sql: str) -> dict[str, int]:
            return {str(key): int(n) for key, n in self._query(sql)}

        per_machine = counts("SELECT machine, count(*) FROM transitions GROUP BY machine ORDER BY machine")
        live = counts("SELECT machine, count(*) FROM live_entities GROUP BY machine ORDER BY machine")
        ended = counts("SELECT machine, count(*) FROM ended_entities GROUP BY machine ORDER BY machine")
        runs = counts("SELECT state, count(*) FROM runs GROUP BY state ORDER BY state")
        anomalies = counts("SELECT source, count(*) FROM anomalies GROUP BY source ORDER BY source")
        first, last = self._query("SELECT min(seq), max(seq) FROM transitions")[0]
        times = self._query("SELECT min(ts), max(ts) FROM transitions")[0]
        files = {
            suffix or "db": os.path.getsize(self.path + suffix)
            for suffix in ("", "-wal", "-shm")
            if os.path.exists(self.path + suffix)
        }
        return {
            "path": self.path,
            "schema_version": self.schema_version,
            "transitions": sum(per_machine.values()),
            "transitions_per_machine": per_machine,
            "live_entities": live,
            "ended_entities": ended,
            "runs": runs,
            "anomalies": anomalies,
            "first_seq": first,
            "last_seq": last,
            "first_ts": iso_time(times[0]) if times[0] is not None else None,
            "last_ts": iso_time(times[1]) if times[1] is not None else None,
            "file_bytes": files,
            "total_bytes": sum(files.values()),
        }

    # -- verify -----------------------------------------------------------------------------

    def verify(self) -> VerifyResult:
        """Check the file, the hash chain, the head, and that replay reproduces current state.

        Runs in one read transaction, so it sees one consistent snapshot even while a kernel
        writes. Names the first bad ``seq`` it finds. One pass, memory O(live entities)
        (``storage.audit_verify``).
        """
        return verify_journal(self._conn, self.path)


def _filters(**columns: str | int | None) -> tuple[str, tuple[Any, ...]]:
    parts = [f"{name} = ?" for name, value in columns.items() if value is not None]
    params = tuple(value for value in columns.values() if value is not None)
    return ("WHERE " + " AND ".join(parts) if parts else ""), params
