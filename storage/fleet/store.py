"""The fleet store's connection (psycopg 3) and the ingest of one batch, with its chain check.

``FleetStore.ingest`` is the whole contract of shipping: in one transaction, under a row lock on
the kernel's ``kernels`` row, it

1. compares every row the store already holds (``seq <= last_seq``) with the batch's: a re-sent
   batch changes nothing; a different hash under an existing ``(kernel_id, seq)`` is an incident;
2. requires the new rows to start at ``last_seq + 1`` and to continue the chain: each row's hash
   is recomputed (``storage.codec.row_hash``) from the previous one, starting at the store's
   ``last_hash``;
3. copies the new rows in (``COPY``), the anomalies after ``last_anomaly_id``, upserts ``runs``
   from the ``run`` entity's transitions, and advances the kernel's head.

A refused batch leaves nothing behind but its incident (committed on its own) and raises
``ChainBroken``. Connection failures and transient server errors become ``StoreUnavailable``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from storage.codec import GENESIS_HASH, decode, row_hash
from storage.fleet import schema
from storage.fleet.errors import ChainBroken, ShipError, StoreUnavailable

TRANSITION_COLUMNS = ("seq", "ts", "run", "machine", "entity", "trigger", "source", "dest", "data", "hash")
ANOMALY_COLUMNS = ("id", "ts", "run", "source", "kind", "reason", "sample")
_TRANSIENT = (psycopg.OperationalError, psycopg.errors.AdminShutdown, psycopg.errors.SerializationFailure)


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """One ``transitions`` row of a journal, exactly as stored there."""

    seq: int
    ts: int
    run: int
    machine: str
    entity: str
    trigger: str
    source: str | None
    dest: str
    data: str
    hash: str

    def recomputed_hash(self, previous: str) -> str:
        """The hash this row must carry after a row hashed ``previous`` (``storage.codec``)."""
        header = (self.seq, self.ts, self.run, self.machine, self.entity, self.trigger, self.source, self.dest)
        return row_hash(previous, header, self.data.encode())


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    """One ``anomalies`` row of a journal."""

    id: int
    ts: int
    run: int
    source: str
    kind: str
    reason: str
    sample: str


@dataclass(frozen=True, slots=True)
class KernelHead:
    """What the store holds for one kernel: its last seq and hash, its last anomaly id."""

    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    last_anomaly_id: int = 0


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an invalid PostgreSQL URL)"
    host, port, dbname = info.get("host", ""), info.get("port", ""), info.get("dbname", "")
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}{':' + str(port) if port else ''}/{dbname}"


def _json_copy(data: str) -> str | None:
    # jsonb refuses the NUL escape that JSON text may hold; the exact text stays in ``data``.
    return None if "\\u0000" in data else data


class FleetStore:
    """One connection to the fleet store (PostgreSQL, psycopg 3), its schema migrated on connect.

    Not thread-safe: each shipper has its own. ``connect_timeout_s`` bounds a connection attempt.
    """

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0, host: str | None = None) -> None:
        self.url = url
        self.where = redact(url)
        self.connect_timeout_s = connect_timeout_s
        self.host = host if host is not None else socket.gethostname()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    # -- connection -------------------------------------------------------------------------------

    def connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The open connection, (re)connecting and migrating when needed; ``StoreUnavailable`` if down."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.close()
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s)))
        except psycopg.Error as exc:
            raise StoreUnavailable(f"fleet store {self.where} unreachable: {exc}".strip()) from exc
        try:
            schema.migrate(conn, self.where)
        except _TRANSIENT as exc:
            conn.close()
            raise StoreUnavailable(f"fleet store {self.where}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> FleetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------------

    def head(self, kernel_id: str) -> KernelHead:
        """The store's head for ``kernel_id`` (zeros and the genesis hash when it never shipped)."""
        try:
            row = (
                self.connection()
                .execute("SELECT last_seq, last_hash, last_anomaly_id FROM kernels WHERE kernel_id = %s", (kernel_id,))
                .fetchone()
            )
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"fleet store {self.where}: {exc}") from exc
        return KernelHead() if row is None else KernelHead(int(row[0]), str(row[1]), int(row[2]))

    def hashes(self, kernel_id: str, batch: int = 10_000) -> Iterator[tuple[int, str]]:
        """``(seq, hash)`` of every row the store holds for ``kernel_id``, in seq order (streamed)."""
        conn = self.connection()
        try:
            with conn.transaction(), conn.cursor(name="tk_hashes") as cursor:
                cursor.itersize = batch
                cursor.execute("SELECT seq, hash FROM transitions WHERE kernel_id = %s ORDER BY seq", (kernel_id,))
                for seq, digest in cursor:
                    yield int(seq), str(digest)
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"fleet store {self.where}: {exc}") from exc

    # -- writing ----------------------------------------------------------------------------------

    def ingest(
        self,
        kernel_id: str,
        rows: Sequence[TransitionRow],
        anomalies: Sequence[AnomalyRow] = (),
        *,
        journal_path: str = "",
    ) -> KernelHead:
        """Store one batch for ``kernel_id`` (rows in seq order); return the store's new head.

        Raises ``ChainBroken`` (the incident committed, the batch refused) or ``StoreUnavailable``."""
        conn = self.connection()
        try:
            with conn.transaction():
                head = self._lock_kernel(conn, kernel_id, journal_path)
                problem = self._check(conn, kernel_id, head, rows)
                if problem is None:
                    return self._append(conn, kernel_id, head, rows, anomalies)
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"fleet store {self.where}: {exc}") from exc
        raise self.record_incident(kernel_id, *problem, journal_path=journal_path)

    def record_incident(
        self, kernel_id: str, kind: str, seq: int, expected: str, got: str, detail: str, *, journal_path: str = ""
    ) -> ChainBroken:
        """Commit an ``incidents`` row; return the ``ChainBroken`` that reports it (for the caller to raise)."""
        try:
            self.connection().execute(
                "INSERT INTO incidents (kernel_id, kind, seq, expected_hash, got_hash, detail, host, journal_path)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (kernel_id, kind, seq, expected, got, detail, self.host, journal_path),
            )
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"fleet store {self.where}: {exc} (while recording a {kind} incident)") from exc
        return ChainBroken(kernel_id, kind, seq, expected, got, detail)

    def _lock_kernel(self, conn: psycopg.Connection[tuple[Any, ...]], kernel_id: str, path: str) -> KernelHead:
        conn.execute(
            "INSERT INTO kernels (kernel_id, host, journal_path) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (kernel_id, self.host, path),
        )
        row = conn.execute(
            "SELECT last_seq, last_hash, last_anomaly_id FROM kernels WHERE kernel_id = %s FOR UPDATE", (kernel_id,)
        ).fetchone()
        assert row is not None
        return KernelHead(int(row[0]), str(row[1]), int(row[2]))

    def _check(
        self, conn: psycopg.Connection[tuple[Any, ...]], kernel_id: str, head: KernelHead, rows: Sequence[TransitionRow]
    ) -> tuple[str, int, str, str, str] | None:
        """The first disagreement of ``rows`` with the store: ``(kind, seq, expected, got, detail)``."""
        held = [row for row in rows if row.seq <= head.last_seq]
        if held:
            stored = dict(
                conn.execute(
                    "SELECT seq, hash FROM transitions WHERE kernel_id = %s AND seq BETWEEN %s AND %s",
                    (kernel_id, held[0].seq, held[-1].seq),
                ).fetchall()
            )
            for row in held:
                if stored.get(row.seq) != row.hash:
                    return (
                        "rewritten",
                        row.seq,
                        str(stored.get(row.seq, "")),
                        row.hash,
                        "a row the store already holds differs from the local journal's (a journal rewritten "
                        "after shipping, an old backup restored, or two journals claiming one kernel id)",
                    )
        previous, expected_seq = head.last_hash, head.last_seq + 1
        for row in rows:
            if row.seq <= head.last_seq:
                continue
            if row.seq != expected_seq:
                return ("gap", expected_seq, previous, "", f"the batch jumps from seq {expected_seq - 1} to {row.seq}")
            recomputed = row.recomputed_hash(previous)
            if recomputed != row.hash:
                return (
                    "chain_broken",
                    row.seq,
                    recomputed,
                    row.hash,
                    "the row does not continue the chain the store holds (its hash is not "
                    "sha256(previous hash + header + data))",
                )
            previous, expected_seq = row.hash, row.seq + 1
        return None

    def _append(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        kernel_id: str,
        head: KernelHead,
        rows: Sequence[TransitionRow],
        anomalies: Sequence[AnomalyRow],
    ) -> KernelHead:
        new = [row for row in rows if row.seq > head.last_seq]
        with conn.cursor() as cursor:
            if new:
                columns = ", ".join(("kernel_id", *TRANSITION_COLUMNS, "data_json"))
                with cursor.copy(f"COPY transitions ({columns}) FROM STDIN") as copy:
                    for r in new:
                        values = (r.seq, r.ts, r.run, r.machine, r.entity, r.trigger, r.source, r.dest, r.data, r.hash)
                        copy.write_row((kernel_id, *values, _json_copy(r.data)))
                runs = [r for r in new if r.machine == "run"]
                if runs:
                    cursor.executemany(_UPSERT_RUN, [_run_values(kernel_id, r) for r in runs])
            fresh = [a for a in anomalies if a.id > head.last_anomaly_id]
            if fresh:
                cursor.executemany(
                    "INSERT INTO anomalies (kernel_id, id, ts, run, source, kind, reason, sample)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [
                        (kernel_id, a.id, a.ts, a.run, a.source, a.kind, a.reason, a.sample.replace("\x00", "\\u0000"))
                        for a in fresh
                    ],
                )
        after = KernelHead(
            new[-1].seq if new else head.last_seq,
            new[-1].hash if new else head.last_hash,
            fresh[-1].id if fresh else head.last_anomaly_id,
        )
        conn.execute(
            "UPDATE kernels SET last_seq = %s, last_hash = %s, last_anomaly_id = %s, last_shipped_at = now(),"
            " host = %s WHERE kernel_id = %s",
            (after.last_seq, after.last_hash, after.last_anomaly_id, self.host, kernel_id),
        )
        return after


_UPSERT_RUN = """
    INSERT INTO runs (kernel_id, run, state, started_ns, ended_ns, pid, host, version, crash_detected_by_run, last_seq)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (kernel_id, run) DO UPDATE SET
        state = EXCLUDED.state,
        started_ns = COALESCE(EXCLUDED.started_ns, runs.started_ns),
        ended_ns = COALESCE(EXCLUDED.ended_ns, runs.ended_ns),
        pid = COALESCE(EXCLUDED.pid, runs.pid),
        host = COALESCE(EXCLUDED.host, runs.host),
        version = COALESCE(EXCLUDED.version, runs.version),
        crash_detected_by_run = COALESCE(EXCLUDED.crash_detected_by_run, runs.crash_detected_by_run),
        last_seq = EXCLUDED.last_seq
"""


def _run_values(kernel_id: str, row: TransitionRow) -> tuple[Any, ...]:
    data = decode(row.data)
    if not isinstance(data, dict):
        data = {}

    def integer(name: str) -> int | None:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def text(name: str) -> str | None:
        value = data.get(name)
        return None if value is None else str(value)

    try:
        run = int(row.entity)
    except ValueError as exc:
        raise ShipError(f"kernel {kernel_id}: seq {row.seq}: a run entity id {row.entity!r} is not a number") from exc
    return (
        kernel_id,
        run,
        row.dest,
        integer("started_ns"),
        integer("ended_ns"),
        integer("pid"),
        text("host"),
        text("version"),
        integer("detected_by_run"),
        row.seq,
    )
