"""The write side of the transition journal: append, group commit, one writer per database.

Usage (the write-ahead rule of DESIGN.md)::

    journal = Journal.open("tradekernel.db")          # takes the writer lock, migrates, starts a run
    entity, created = ORDER.create("o-1", ...)
    journal.append(created, entity)                    # buffered in memory
    journal.fire(ORDER, entity, "submit")              # fire + append in one call
    journal.commit()                                   # one transaction: durable, or nothing
    ...                                                # only now may commands leave the process
    journal.close()                                    # commits, records the run as stopped

``commit()`` writes every buffered row, the current state of every entity they touched and the
chain head in one transaction. If it fails (disk full, I/O error) the transaction is rolled back,
the batch stays buffered, ``failure`` is set and ``JournalWriteError`` is raised: the caller must
stop trading; a later ``commit()`` may succeed and then loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

from machines import CREATE, RUN, Entity, StateMachine, Transition, registry
from storage import codec, outage
from storage.errors import JournalBusy, JournalClosed, JournalCorrupt, JournalError, JournalLocked, JournalWriteError
from storage.fresh_ids import FreshIds
from storage.journal_batch import Row, state_rows, write_batch
from storage.lock import WriterLock
from storage.schema import (
    SYNCHRONOUS,
    Durability,
    check_directory,
    check_head_row,
    check_live_rows,
    connect_writer,
    create_private,
    integrity_problem,
    migrate,
    read_journal_id,
    refuse_foreign,
    translate,
    user_version,
)

log = logging.getLogger(__name__)
_HAS_ENTITY = (
    "SELECT 1 FROM live_entities WHERE machine = ? AND entity = ? "
    "UNION ALL SELECT 1 FROM ended_entities WHERE machine = ? AND entity = ?"
)

STATE_TABLES = ("live_entities", "journal_head")
"""Tables ``PRAGMA quick_check`` covers on every open: what resuming reads, O(live entities). The
whole file (3 s for a million rows here) is checked by ``tradekernel audit verify``."""

MAX_SAMPLE = 500  # characters of a bad input kept as its sample


class JournalDataError(JournalError):
    """A transition or entity cannot be journaled (its data is not JSON-safe, or they disagree)."""


def _version() -> str:
    from importlib import metadata  # only when a journal records a run: commands that read stay light

    try:
        return metadata.version("tradekernel")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Journal:
    """An open, writable journal. Create with ``Journal.open``; not thread-safe."""

    def __init__(
        self,
        path: str,
        conn: sqlite3.Connection,
        lock: WriterLock,
        durability: Durability,
        clock: Callable[[], int],
    ) -> None:
        self.path = path
        self.durability = durability
        self._conn: sqlite3.Connection | None = conn
        self._lock = lock
        self._clock = clock
        seq, chain_hash = conn.execute("SELECT seq, hash FROM journal_head WHERE id = 1").fetchone()
        self._seq: int = seq
        self._hash: str = chain_hash
        self._committed_seq: int = seq
        self._unsynced = False  # a ``normal`` commit since the last ``full`` one: rows maybe not fsynced
        self.journal_id: str = read_journal_id(conn, path)
        """This journal's id: random, made once per journal file (``m006_journal_id``), never
        changed. Client order ids carry it (unique across journals on one venue account); the
        fleet's ``kernel_id`` is this id."""
        self._rows: list[Row] = []
        self._dirty: dict[tuple[str, str], tuple[Entity, int]] = {}
        self._created: set[tuple[str, str]] = set()  # created in this batch: not in live_entities yet
        self._fresh = FreshIds()  # namespaces of ids known new without a lookup (claim_fresh)
        self._anomalies: list[tuple[int, int, str, str, str, str]] = []
        self._failure: JournalError | None = None
        self.run_id = 0
        self.crashed_runs: list[int] = []
        self.schema_before = 0
        self.schema_version = 0
        self._run_entity: Entity | None = None
        self.commit_observer: Callable[[int, int], None] | None = None
        """Called after each successful commit with (rows written, nanoseconds it took): metrics."""
        self.last_batch: tuple[list[Row], dict[tuple[str, str], tuple[Entity, int]]] = ([], {})
        """The rows of the last successful commit and the entities they left (with their seq), for
        ``after_commit`` hooks (notifications, ``kernel/notify``)."""
        self._outage_marked = False
        self.in_commit: Callable[[], None] | None = None
        """Called inside each commit's transaction, write lock held (fault injection: a stalled write)."""
        self.after_commit: list[Callable[[], None]] = []
        """Called after each successful commit, whoever committed: an owner that held changes back
        while commits failed (the order manager) tells them as soon as any commit made them durable."""

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str,
        *,
        durability: Durability = "full",
        clock: Callable[[], int] = time.time_ns,
        start_run: bool = True,
    ) -> Journal:
        """Open (creating if needed) the journal at ``path`` for writing and start a run.

        Takes the writer lock, checks the state tables with ``PRAGMA quick_check``, applies pending
        migrations, checks the chain head against the last row, records runs that never stopped
        as ``crash_detected`` and starts a new run (``start_run=False`` skips the run bookkeeping,
        for maintenance such as ``tradekernel migrate`` and for offline operator commands: what
        such a journal appends carries run 0 and no run entity is created).

        Raises ``JournalOpenError`` (missing/read-only directory or file, foreign database),
        ``JournalLocked`` (another writer), ``JournalCorrupt``, ``JournalVersionError``.
        """
        check_directory(path)
        refuse_foreign(path)
        lock = WriterLock(path)
        try:
            create_private(path)
        except BaseException:
            lock.release()
            raise
        try:
            conn = connect_writer(path, durability)
            try:
                schema_before, schema_after = _check_and_migrate(conn, path)
                journal = cls(path, conn, lock, durability, clock)
                journal.schema_before, journal.schema_version = schema_before, schema_after
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.release()
            raise
        if start_run:
            try:
                journal._start_run()
            except JournalBusy as exc:
                journal._release()
                raise JournalLocked(path, "another connection holding a write transaction") from exc
            except BaseException:
                journal._release()
                raise
        return journal

    def _start_run(self) -> None:
        conn = self._require_open()
        now = self._clock()
        (last_run,) = conn.execute(
            "SELECT COALESCE(MAX(CAST(entity AS INTEGER)), 0) FROM entities WHERE machine = 'run'"
        ).fetchone()
        self.run_id = int(last_run) + 1
        self._run_entity, created = RUN.create(
            str(self.run_id), started_ns=now, pid=os.getpid(), host=socket.gethostname(), version=_version()
        )
        self.append(created, self._run_entity)
        for run in self.live_entities(RUN):
            self.fire(RUN, run, "crash_detected", detected_by_run=self.run_id, detected_ns=now)
            self.crashed_runs.append(int(run.entity_id))
        self.commit()

    # -- state ------------------------------------------------------------------------------

    @property
    def failure(self) -> JournalError | None:
        """The error of the last failed commit, or ``None`` when the last commit succeeded."""
        return self._failure

    @property
    def unsynced(self) -> bool:
        """True after a ``normal`` commit until a ``full`` one: rows SQLite may not have fsynced."""
        return self._unsynced

    @property
    def closed(self) -> bool:
        """True once ``close()`` has released the database."""
        return self._conn is None

    @property
    def pending(self) -> int:
        """Rows appended but not yet committed."""
        return len(self._rows)

    @property
    def last_seq(self) -> int:
        """Seq of the last appended row (committed or not)."""
        return self._seq

    @property
    def committed_seq(self) -> int:
        """Seq of the last committed row."""
        return self._committed_seq

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalClosed(f"journal {self.path} is closed")
        return self._conn

    # -- writing ----------------------------------------------------------------------------

    def append(self, transition: Transition, entity: Entity) -> int:
        """Buffer ``transition`` (whose result ``entity`` now holds); return its seq.

        Nothing is durable until ``commit()``. Raises ``JournalClosed`` or ``JournalDataError``
        (nothing buffered).
        """
        if self._conn is None:
            raise JournalClosed(f"journal {self.path} is closed")
        if entity.entity_id != transition.entity_id or entity.machine.name != transition.machine:
            raise JournalDataError(
                f"transition for {transition.machine}:{transition.entity_id} appended with entity "
                f"{entity.machine.name}:{entity.entity_id}"
            )
        try:
            # Transition.data is a read-only proxy; its C-level copy encodes ~3x faster than the hook
            data = codec.encode(
                transition.data.copy() if type(transition.data) is MappingProxyType else transition.data
            )
        except (TypeError, ValueError) as exc:
            raise JournalDataError(f"cannot journal data of {transition}: {exc}") from exc
        if transition.trigger == CREATE:
            if self.has_entity(transition.machine, transition.entity_id):
                raise _second_create(transition, self.path)
            self._created.add((transition.machine, transition.entity_id))
            self._fresh.created(transition.machine, transition.entity_id)
        seq = self._seq + 1
        ts = self._clock()
        if type(ts) is not int or not 0 <= ts < 2**63:
            raise JournalDataError(f"the clock gave {ts!r}; it must give int nanoseconds since the epoch")
        header: codec.Header = (
            seq, ts, self.run_id, transition.machine, transition.entity_id,
            transition.trigger, transition.source, transition.dest,
        )  # fmt: skip
        chain_hash = codec.row_hash(self._hash, header, data)
        self._rows.append((*header, data.decode(), chain_hash))
        self._dirty[(transition.machine, transition.entity_id)] = (entity, seq)
        self._seq = seq
        self._hash = chain_hash
        return seq

    def record_anomaly(self, source: str, kind: str, reason: str, sample: str = "") -> None:
        """Buffer an anomaly (bad input, never state); it is written with the next ``commit()``.

        ``source`` names where it came from (e.g. ``feed:paper``), ``kind`` what it is (e.g.
        ``decode_error``); ``sample`` is cut to ``MAX_SAMPLE`` characters.
        """
        self._require_open()
        self._anomalies.append((self._clock(), self.run_id, source, kind, reason[:2000], sample[:MAX_SAMPLE]))

    @property
    def pending_anomalies(self) -> int:
        """Anomalies recorded but not yet committed."""
        return len(self._anomalies)

    def has_entity(self, machine: str, entity_id: str) -> bool:
        """True when ``machine`` has an entity ``entity_id`` (appended or committed, live or ended)."""
        key = (machine, entity_id)
        if key in self._dirty:
            return True
        if self._fresh.is_new(machine, entity_id):
            return False
        return self._require_open().execute(_HAS_ENTITY, key + key).fetchone() is not None

    def claim_fresh(self, machine: str, prefix: str) -> bool:
        """Claim ``machine``'s ids starting with ``prefix`` as new ids, if none exists (``storage/fresh_ids.py``)."""
        return self._fresh.claim(self._require_open(), self._dirty, machine, prefix)

    def fire(self, machine: StateMachine, entity: Entity, trigger: str, /, **data: Any) -> Transition:
        """``machine.fire(entity, trigger, **data)`` and append the result; return the record.

        A refused trigger raises the machine's typed error and appends nothing; on a closed journal
        ``JournalClosed`` is raised before the entity is touched.
        """
        self._require_open()
        transition = machine.fire(entity, trigger, **data)
        self.append(transition, entity)
        return transition

    def commit(self, durability: Durability | None = None) -> int:
        """Make every appended row durable in one transaction; return how many rows it wrote.

        ``durability`` is SQLite's ``synchronous`` for this transaction only (``None``: the journal's
        own). ``full`` has fsynced the log, and every row of earlier ``normal`` commits, when it
        returns (even with nothing buffered); ``normal`` survives a killed process, not a power loss
        (docs/architecture.md, Durability before effect). Raises ``JournalWriteError`` after rolling
        back: the batch stays buffered for a retry and ``failure`` is set until a commit succeeds.
        """
        conn = self._require_open()
        level = durability or self.durability
        if not self._rows and not self._anomalies:
            if level == "full" and self._unsynced:
                self._unsynced = _fsync_wal(self.path)
            return 0
        try:
            live, ended = state_rows(self._dirty)
        except (TypeError, ValueError) as exc:
            self._failure = JournalDataError(f"cannot journal an entity's data: {exc}")
            raise self._failure from exc
        started_ns = time.perf_counter_ns()
        try:
            with _synchronous(conn, level, self.durability):
                conn.execute("BEGIN IMMEDIATE")
                write_batch(conn, self._rows, live, ended, self._created, (self._seq, self._hash), self._anomalies)
                if self.in_commit is not None:
                    self.in_commit()
                conn.execute("COMMIT")
        except Exception as exc:  # rolled back (_synchronous), the batch kept
            self._failure = error = _write_error(exc, self.path)
            if not self._outage_marked:  # once per outage (storage/outage.py); the next good commit clears it
                self._outage_marked = True
                outage.mark(self.path, f"run {self.run_id}: {error}")
            raise error from exc  # KeyboardInterrupt, SystemExit: rolled back by _synchronous
        self._unsynced = level == "normal"
        written = len(self._rows)
        self.last_batch = (self._rows, self._dirty)
        self._rows = []
        self._dirty = {}
        self._created = set()
        self._anomalies = []
        self._committed_seq = self._seq
        self._failure = None
        if self._outage_marked:  # everything buffered during the outage (its halt too) is on disk now
            self._outage_marked = False
            outage.clear(self.path)
        if self.commit_observer is not None:
            try:
                self.commit_observer(written, time.perf_counter_ns() - started_ns)
            except Exception:  # metrics must never turn a durable commit into a reported failure
                log.exception("journal commit observer failed")
        for hook in list(self.after_commit):
            try:
                hook()
            except Exception:  # nor may an owner's hook: the rows are on disk
                log.exception("journal after-commit hook %r failed", hook)
        return written

    def bound_busy_wait(self, seconds: float) -> None:
        """Wait at most ``seconds`` per statement for a foreign lock (then ``JournalBusy``); the
        kernel, whose commits run on its event loop, sets ``LOOP_BUSY_TIMEOUT_S``."""
        self._require_open().execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")

    def probe(self) -> None:
        """Check that the journal can still take a write, without writing anything.

        Opens a write transaction, rewrites the chain head with itself and rolls back: a
        read-only file or directory, a lost lock or a database that became read-only fails here
        (a full disk shows only at the next real commit). On failure ``failure`` is set and
        ``JournalWriteError`` raised; on success ``failure`` is cleared unless rows wait to be
        committed (only a commit that writes them clears it then).
        """
        conn = self._require_open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE journal_head SET seq = seq WHERE id = 1")
        except sqlite3.Error as exc:
            _rollback(conn)
            error = translate(exc, self.path, writing=True)
            self._failure = error if isinstance(error, JournalWriteError) else JournalWriteError(str(error))
            raise self._failure from exc
        _rollback(conn)
        if not self._rows and not self._anomalies:
            self._failure = None

    # -- reading ----------------------------------------------------------------------------

    def live_entities(self, machine: StateMachine | str) -> list[Entity]:
        """Every committed entity of ``machine`` not in a terminal state, rebuilt from its row.

        Costs O(live entities of that machine), whatever the length of the history.
        """
        conn = self._require_open()
        kind = registry.get(machine) if isinstance(machine, str) else machine
        rows = conn.execute("SELECT entity, state, data FROM live_entities WHERE machine = ?", (kind.name,)).fetchall()
        return [kind.restore(entity_id, state, codec.decode(data)) for entity_id, state, data in rows]

    def entity(self, machine: StateMachine | str, entity_id: str) -> Entity | None:
        """One committed entity of ``machine``, live or ended, rebuilt from its row; ``None`` if
        the journal never had it. (A late report for an order that ended in an earlier run needs
        the ended order, which ``live_entities`` does not hold.)"""
        conn = self._require_open()
        kind = registry.get(machine) if isinstance(machine, str) else machine
        row = conn.execute(
            "SELECT state, data FROM live_entities WHERE machine = ? AND entity = ? "
            "UNION ALL SELECT state, data FROM ended_entities WHERE machine = ? AND entity = ?",
            (kind.name, entity_id, kind.name, entity_id),
        ).fetchone()
        return None if row is None else kind.restore(entity_id, row[0], codec.decode(row[1]))

    def last_ended(self, machine: StateMachine | str, state: str) -> Entity | None:
        """The most recently ended committed entity of ``machine`` in ``state`` (e.g. the last
        ``done`` reconciliation), or ``None``. Costs O(ended entities of that machine)."""
        conn = self._require_open()
        kind = registry.get(machine) if isinstance(machine, str) else machine
        row = conn.execute(
            "SELECT entity, data FROM ended_entities WHERE machine = ? AND state = ? ORDER BY seq DESC LIMIT 1",
            (kind.name, state),
        ).fetchone()
        return None if row is None else kind.restore(row[0], state, codec.decode(row[1]))

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is buffered, record this run as stopped, release the database and lock.

        Idempotent. If the final commit fails, ``JournalWriteError`` is raised and the journal
        stays open so that ``close()`` can be retried; a run that never closes is recorded as
        crashed by the next writer.
        """
        if self._conn is None:
            return
        if self._run_entity is not None and self._run_entity.live:
            self.fire(RUN, self._run_entity, "stop", ended_ns=self._clock())
        self.commit()
        # Fold the WAL into the file so a copied .db is complete; a busy reader just defers it.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._release()

    def abandon(self) -> None:
        """Release the database without recording the run as stopped (the process is failing).

        Commits what is buffered if it can (every transition already acted on belongs on disk),
        then closes like a crash would: the next writer records this run ``crash_detected``.
        """
        if self._conn is None:
            return
        try:
            self.commit()
        except JournalError as exc:
            log.error("journal %s abandoned with %d uncommitted rows: %s", self.path, self.pending, exc)
        self._release()

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._lock.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _write_error(exc: Exception, path: str) -> JournalWriteError:
    """The typed error of a failed commit: SQLite's translated, anything else wrapped."""
    if isinstance(exc, sqlite3.Error):
        error = translate(exc, path, writing=True)
        return error if isinstance(error, JournalWriteError) else JournalWriteError(str(error))
    return JournalWriteError(f"{path}: commit failed: {exc!r}")


def _second_create(transition: Transition, path: str) -> JournalDataError:
    return JournalDataError(
        f"{transition.machine} {transition.entity_id!r} already exists in {path}; "
        "entity ids are unique per machine for the life of the journal"
    )


@contextlib.contextmanager
def _synchronous(conn: sqlite3.Connection, level: Durability, own: Durability) -> Iterator[None]:
    """``synchronous`` at ``level`` for one transaction (set before ``BEGIN``), then ``own`` again."""
    if level not in SYNCHRONOUS:
        raise JournalError(f"unknown durability {level!r}; use 'full' or 'normal'")
    if level != own:
        conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[level]}")
    try:
        yield
    except BaseException:
        _rollback(conn)  # before the pragma below, which a transaction would hold back
        raise
    finally:
        if level != own:
            with contextlib.suppress(sqlite3.Error):  # a flag on the connection, no I/O
                conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[own]}")


def _fsync_wal(path: str) -> bool:
    """fsync the log ``normal`` commits wrote (a ``full`` commit with nothing to write syncs
    nothing); False (nothing is left unsynced), or raises ``JournalWriteError``."""
    try:
        fd = os.open(path + "-wal", os.O_RDONLY)  # gone: checkpointed, and the checkpoint synced
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise JournalWriteError(f"{path}: fsync of the write-ahead log failed: {exc}") from exc
    return False


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back (e.g. after SQLITE_FULL): nothing is half-written either way.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _check_and_migrate(conn: sqlite3.Connection, path: str) -> tuple[int, int]:
    """Integrity-check the state tables, migrate, and check the head; return (version before, after)."""
    try:
        if user_version(conn) > 0:
            problem = integrity_problem(conn, STATE_TABLES)
            if problem:
                raise JournalCorrupt(f"{path} failed PRAGMA quick_check: {problem}")
        versions = migrate(conn, path)
        head = check_head_row(conn, path)
        check_live_rows(conn, path)
        last = conn.execute("SELECT seq, hash FROM transitions ORDER BY seq DESC LIMIT 1").fetchone()
        last = last or (0, codec.GENESIS_HASH)
        if tuple(head) != tuple(last):
            raise JournalCorrupt(
                f"{path}: the chain head records seq {head[0]} but the last row is seq {last[0]} "
                "(rows were removed or edited); run `tradekernel audit verify` and restore from backup"
            )
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    return versions
