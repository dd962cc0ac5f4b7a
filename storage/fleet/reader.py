"""Fleet queries: the audit reader's listings on the fleet store (PostgreSQL), across kernels.

``FleetReader(url, kernel=None)`` answers ``tail``, ``timeline``, ``entities``, ``fills`` and
``stats`` with the dict shapes of ``storage.audit.AuditReader``, each row carrying ``kernel_id``
(``kernel``: only that kernel's rows). It reads in one read-only transaction per call and never
migrates or writes the store.

The store holds the journals' transitions, not their current-state tables, so an entity's current
state is the ``dest`` of its last transition per ``(kernel_id, machine, entity)`` (``DISTINCT ON``)
and its data is rebuilt by replaying its transitions through its machine, as ``audit verify``
does (the same data the local journal's state tables hold). Large results (the fills, the
replay) are read through server-side cursors: memory is bounded by one batch plus the result.

Across kernels, rows are ordered by time (``ts``), then ``kernel_id``, then ``seq``: each kernel's
rows keep their journal order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from machines import CREATE, StateMachineError, registry
from storage import codec
from storage.audit import _RUN_OF, RUN_SCOPED, _transition, fill_row, iso_time
from storage.fleet import schema
from storage.fleet.errors import ShipError, StoreUnavailable, StoreVersionError
from storage.fleet.store import redact

_COLUMNS = "kernel_id, seq, ts, run, machine, entity, trigger, source, dest, data, hash"
_BATCH = 5_000


class FleetReader:
    """Read-only access to the fleet store at ``url`` (``kernel``: narrow every query to one kernel).

    Raises ``StoreUnavailable`` when PostgreSQL cannot be reached and ``StoreVersionError`` when
    the database is not a fleet store or has migrations this code does not know."""

    def __init__(self, url: str, kernel: str | None = None, *, connect_timeout_s: int = 5) -> None:
        self.url = url
        self.where = redact(url)
        self.kernel = kernel
        try:
            self._conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(url, connect_timeout=connect_timeout_s)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"fleet store {self.where} unreachable: {exc}".strip()) from exc
        try:
            self._conn.read_only = True
            self.schema_version = self._check_schema()
        except BaseException:
            self._conn.close()
            raise

    def _check_schema(self) -> int:
        with self._conn.transaction():
            done = schema.applied(self._conn)
        known = [name for name, _ in schema.MIGRATIONS]
        if not done:
            raise StoreVersionError(f"{self.where} is not a fleet store (no schema_migrations): ship to it first")
        if done != known[: len(done)]:
            raise StoreVersionError(
                f"the fleet store {self.where} has schema migrations this tradekernel does not know "
                f"({', '.join(name for name in done if name not in known) or 'another order'}); upgrade tradekernel"
            )
        return len(done)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> FleetReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _where(self, **columns: str | None) -> tuple[str, tuple[Any, ...]]:
        values = {"kernel_id": self.kernel, **columns}
        parts = [f"{name} = %s" for name, value in values.items() if value is not None]
        params = tuple(value for value in values.values() if value is not None)
        return ("WHERE " + " AND ".join(parts) if parts else ""), params

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._conn.transaction():
                return self._conn.execute(sql.encode(), params).fetchall()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"fleet store {self.where}: {exc}") from exc

    def _stream(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of ``sql`` through a server-side cursor, ``_BATCH`` at a time."""
        try:
            with self._conn.transaction(), self._conn.cursor(name="tk_fleet_reader") as cursor:
                cursor.itersize = _BATCH
                cursor.execute(sql.encode(), params)
                yield from cursor
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"fleet store {self.where}: {exc}") from exc

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        return {"kernel_id": row[0], **_transition(row[1:])}

    # -- listings ---------------------------------------------------------------------------------

    def kernels(self) -> list[str]:
        """The kernel ids the store holds (only ``kernel`` when narrowed and known), sorted."""
        where, params = self._where()
        return [str(k) for (k,) in self._query(f"SELECT kernel_id FROM kernels {where} ORDER BY kernel_id", params)]

    def machine_names(self) -> list[str]:
        """The machines the store holds transitions of (for ``kernel`` when narrowed), sorted."""
        where, params = self._where()
        return [str(m) for (m,) in self._query(f"SELECT DISTINCT machine FROM transitions {where} ORDER BY 1", params)]

    def tail(self, n: int = 20, machine: str | None = None, entity: str | None = None) -> list[dict[str, Any]]:
        """The last ``n`` transitions across kernels (optionally of one machine / entity), oldest first."""
        where, params = self._where(machine=machine, entity=entity)
        rows = self._query(
            f"SELECT {_COLUMNS} FROM transitions {where} ORDER BY ts DESC, kernel_id DESC, seq DESC LIMIT %s",
            (*params, n),
        )
        return [self._row(r) for r in reversed(rows)]

    def timeline(self, entity: str, machine: str | None = None) -> list[dict[str, Any]]:
        """Every transition of ``entity`` (in each kernel that has one), by time."""
        where, params = self._where(machine=machine, entity=entity)
        return [
            self._row(r)
            for r in self._stream(f"SELECT {_COLUMNS} FROM transitions {where} ORDER BY ts, kernel_id, seq", params)
        ]

    def entities(
        self, machine: str | None = None, live_only: bool = False, *, live_now: bool = False
    ) -> list[dict[str, Any]]:
        """Current state and data of each entity of each kernel, ordered by kernel, machine, seq.

        ``live_only``: not in a terminal state; with ``live_now``, a run-scoped entity is live only
        when its run is the kernel's newest run still ``running`` in the store (a kernel killed
        without a later run looks running to the store until its next run detects the crash)."""
        where, params = self._where(machine=machine)
        current = self._running_runs() if live_now else {}
        listed: list[dict[str, Any]] = []
        for key, rows in _grouped(
            self._stream(
                f"SELECT kernel_id, machine, entity, seq, trigger, source, dest, data FROM transitions {where}"
                " ORDER BY kernel_id, machine, entity, seq",
                params,
            )
        ):
            kernel_id, machine_name, entity_id = key
            state, seq, live, data = _replay(kernel_id, machine_name, entity_id, rows)
            if live and live_now and machine_name in RUN_SCOPED and (found := _RUN_OF.search(entity_id)) is not None:
                live = int(found.group(1)) == current.get(kernel_id)
            if live_only and not live:
                continue
            listed.append(
                {
                    "kernel_id": kernel_id,
                    "machine": machine_name,
                    "entity": entity_id,
                    "state": state,
                    "seq": seq,
                    "live": live,
                    "data": data,
                }
            )
        listed.sort(key=lambda row: (row["kernel_id"], row["machine"], row["seq"]))
        return listed

    def _running_runs(self) -> dict[str, int]:
        where, params = self._where()
        extra = "AND" if where else "WHERE"
        rows = self._query(f"SELECT kernel_id, max(run) FROM runs {where} {extra} state = 'running' GROUP BY 1", params)
        return {str(k): int(r) for k, r in rows}

    def iter_fills(self, *, since_ns: int | None = None, instrument: str | None = None) -> Iterator[dict[str, Any]]:
        """Every fill applied to an order, kernel by kernel in journal order (streamed), as
        ``AuditReader.fills`` lists them (``storage.audit.fill_row``) plus ``kernel_id``: a repeated
        ``trade_id`` on one order is listed once; the order's instrument and side come from its
        ``create`` row. ``since_ns`` and ``instrument`` filter as there."""
        where, params = self._where()
        condition = where.replace("kernel_id", "f.kernel_id") + (" AND" if where else "WHERE")
        rows = self._stream(
            "SELECT f.kernel_id, f.entity, f.data, c.data, f.seq, f.ts, f.run, f.trigger FROM transitions AS f"
            " LEFT JOIN transitions AS c ON c.kernel_id = f.kernel_id AND c.machine = 'order'"
            "  AND c.entity = f.entity AND c.trigger = 'create'"
            f" {condition} f.machine = 'order' AND f.trigger IN ('fill', 'reconcile_fill')"
            " ORDER BY f.kernel_id, f.seq",
            params,
        )
        seen: set[tuple[str, str, Any]] = set()
        last_kernel = None
        for kernel_id, client_order_id, fill_text, create_text, seq, ts, run, trigger in rows:
            if kernel_id != last_kernel:
                seen.clear()  # duplicates are per order, and an order belongs to one kernel
                last_kernel = kernel_id
            fill = codec.decode(fill_text)
            key = (kernel_id, client_order_id, fill.get("trade_id"))
            if key in seen or create_text is None:
                continue
            seen.add(key)
            order = codec.decode(create_text)
            if (since_ns is not None and ts < since_ns) or (
                instrument is not None and order["instrument"] != instrument
            ):
                continue
            yield {"kernel_id": kernel_id} | fill_row(client_order_id, order, fill, seq, ts, run, trigger)

    def fills(self, *, since_ns: int | None = None, instrument: str | None = None) -> list[dict[str, Any]]:
        """``iter_fills`` as a list."""
        return list(self.iter_fills(since_ns=since_ns, instrument=instrument))

    def stats(self) -> dict[str, Any]:
        """``AuditReader.stats`` for the store (all kernels or ``kernel``), with ``kernels``:
        per kernel its seq range, rows, shipping head and when it last shipped."""
        where, params = self._where()

        def counts(sql: str, table: str = "transitions") -> dict[str, int]:
            return {str(key): int(n) for key, n in self._query(sql.format(table=table, where=where), params)}

        per_machine = counts("SELECT machine, count(*) FROM {table} {where} GROUP BY machine ORDER BY machine")
        runs = counts("SELECT state, count(*) FROM {table} {where} GROUP BY state ORDER BY state", "runs")
        anomalies = counts("SELECT source, count(*) FROM {table} {where} GROUP BY source ORDER BY source", "anomalies")
        live: dict[str, int] = {}
        ended: dict[str, int] = {}
        for row in self.entities():
            into = live if row["live"] else ended
            into[row["machine"]] = into.get(row["machine"], 0) + 1
        first, last, first_ts, last_ts = self._query(
            f"SELECT min(seq), max(seq), min(ts), max(ts) FROM transitions {where}", params
        )[0]
        kernels = [
            {
                "kernel_id": k,
                "host": host,
                "journal_path": path,
                "last_seq": int(seq),
                "last_anomaly_id": int(anomaly),
                "last_shipped_at": shipped.isoformat(),
            }
            for k, host, path, seq, anomaly, shipped in self._query(
                "SELECT kernel_id, host, journal_path, last_seq, last_anomaly_id, last_shipped_at FROM kernels"
                f" {where} ORDER BY kernel_id",
                params,
            )
        ]
        (size,) = self._query("SELECT pg_database_size(current_database())")[0]
        return {
            "store": self.where,
            "schema_version": self.schema_version,
            "kernels": kernels,
            "transitions": sum(per_machine.values()),
            "transitions_per_machine": per_machine,
            "live_entities": dict(sorted(live.items())),
            "ended_entities": dict(sorted(ended.items())),
            "runs": runs,
            "anomalies": anomalies,
            "first_seq": first,
            "last_seq": last,
            "first_ts": iso_time(first_ts) if first_ts is not None else None,
            "last_ts": iso_time(last_ts) if last_ts is not None else None,
            "total_bytes": int(size),
        }


def _grouped(
    rows: Iterator[tuple[Any, ...]],
) -> Iterator[tuple[tuple[str, str, str], list[tuple[Any, ...]]]]:
    """Consecutive rows with one ``(kernel_id, machine, entity)`` as one group (rows sorted by it)."""
    key: tuple[str, str, str] | None = None
    group: list[tuple[Any, ...]] = []
    for row in rows:
        here = (str(row[0]), str(row[1]), str(row[2]))
        if here != key:
            if key is not None:
                yield key, group
            key, group = here, []
        group.append(row)
    if key is not None:
        yield key, group


def _replay(
    kernel_id: str, machine_name: str, entity_id: str, rows: list[tuple[Any, ...]]
) -> tuple[str, int, bool, Any]:
    """``(state, seq, live, data)`` of one entity after its transitions ``rows`` (seq order).

    The state is the ``dest`` of the last row; the data is the machine's after replaying them.
    Raises ``ShipError`` when the rows do not replay (a machine this code does not know, or a
    history the machine refuses)."""
    last = rows[-1]
    state, seq = str(last[6]), int(last[3])
    try:
        machine = registry.get(machine_name)
        entity = None
        for _k, _m, _e, _seq, trigger, _source, _dest, data_text in rows:
            data = codec.decode(data_text)
            if trigger == CREATE:
                entity, _ = machine.create(entity_id, **data)
            elif entity is None:
                raise StateMachineError(f"its first row (seq {_seq}) is {trigger!r}, not {CREATE!r}")
            else:
                machine.fire(entity, trigger, **data)
    except StateMachineError as exc:
        raise ShipError(
            f"kernel {kernel_id}: {machine_name} {entity_id!r} does not replay from the store's rows: {exc}"
        ) from None
    assert entity is not None
    if entity.state != state:
        raise ShipError(
            f"kernel {kernel_id}: {machine_name} {entity_id!r}: replay reached {entity.state!r}, "
            f"the last row says {state!r}"
        )
    return state, seq, state not in machine.terminal_names, codec.decode(codec.encode_text(entity.data))
