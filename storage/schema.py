"""Journal schema, forward-only migrations and connection set-up. The only SQL DDL lives here.

Tables (see docs/audit.md for the reader's view):

* ``transitions`` — append-only, one row per fired trigger, hash-chained (``storage.codec``).
  ``ts`` is nanoseconds since the Unix epoch (UTC); ``data`` is canonical JSON.
* ``live_entities`` / ``ended_entities`` — current state and data of every entity, with the ``seq``
  of its last transition, written in the same transaction as the rows they reflect; an entity moves
  to ``ended_entities`` when it reaches a terminal state.
* ``journal_head`` — the last committed ``seq`` and ``hash`` (one row): catches a deleted tail.
* ``anomalies`` — bad input recorded with a sample (not state, not chained), written with the
  next group commit.
* ``journal_info`` — one row: the journal's id (``journal_id``), random, made once per journal.
* views ``entities`` (both tables, with ``live``), ``runs`` (one row per writer session, in
  numeric order), ``transition_log`` and ``anomaly_log`` (ISO times beside the raw ``ts_ns``), and
  the reader views ``fills``, ``orders``, ``positions``, ``trading_states`` (``storage/views.py``).

The schema version is ``PRAGMA user_version``; migrations are applied with sqlite-utils'
``Migrations`` (recorded in ``_sqlite_migrations``) and never run backwards: a database newer than
this code is refused with both versions named.
"""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from storage.codec import GENESIS_HASH, state_digest
from storage.errors import (
    JournalBusy,
    JournalCorrupt,
    JournalError,
    JournalLocked,
    JournalOpenError,
    JournalVersionError,
    JournalWriteError,
)
from storage.views import create_views_v7

if TYPE_CHECKING:
    import sqlite_utils
    from sqlite_utils import Migrations

Durability = Literal["full", "normal"]
SYNCHRONOUS: dict[str, str] = {"full": "FULL", "normal": "NORMAL"}

BUSY_TIMEOUT_S = 2.0
"""How long a statement waits for a foreign SQLite lock (e.g. a shell holding BEGIN EXCLUSIVE)."""
LOOP_BUSY_TIMEOUT_S = 0.05
"""The bound a running kernel sets (``Journal.bound_busy_wait``): its commits run on the event loop,
so a foreign lock may block it this long per attempt; a commit still locked out fails with
``JournalBusy`` (the journal-outage path: entry paused, retried by the health monitor)."""

MIGRATION_SET = "tradekernel"
"""The name of this journal's migrations in ``_sqlite_migrations``."""
_Migration = Callable[["sqlite_utils.Database"], None]
_STEPS: list[_Migration] = []
MIGRATION_NAMES: list[str] = []
_MIGRATIONS: list[Migrations] = []


def _migration(fn: _Migration) -> _Migration:
    """Register ``fn`` as the next migration (its name is its identity in ``_sqlite_migrations``)."""
    MIGRATION_NAMES.append(fn.__name__)
    _STEPS.append(fn)
    return fn


def migrations() -> Migrations:
    """sqlite-utils' ``Migrations("tradekernel")`` holding every migration, in order (also ``MIGRATIONS``).

    Built on first use: ``sqlite_utils`` (with click, dateutil and pluggy) is imported only where a
    journal is migrated, not by the readers (``tradekernel status``, ``audit``)."""
    if not _MIGRATIONS:
        from sqlite_utils import Migrations

        built = Migrations(MIGRATION_SET)
        for step in _STEPS:
            built()(step)
        _MIGRATIONS.append(built)
    return _MIGRATIONS[0]


def __getattr__(name: str) -> Any:
    """``MIGRATIONS``: ``migrations()``, built on first access (PEP 562)."""
    if name == "MIGRATIONS":
        return migrations()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@_migration
def m001_core_tables(db: sqlite_utils.Database) -> None:
    """The transition log, the current-state tables and the chain head."""
    db.execute(
        """
        CREATE TABLE transitions (
            seq     INTEGER PRIMARY KEY,
            ts      INTEGER NOT NULL,
            run     INTEGER NOT NULL,
            machine TEXT NOT NULL,
            entity  TEXT NOT NULL,
            trigger TEXT NOT NULL,
            source  TEXT,
            dest    TEXT NOT NULL,
            data    TEXT NOT NULL,
            hash    TEXT NOT NULL
        )
        """
    )
    # Live and ended entities live apart so that resuming (and the integrity check on open) reads
    # only live ones: O(live), however many entities the history has finished. WITHOUT ROWID: the
    # upsert on (machine, entity) touches one b-tree, not a rowid table and an index.
    for table in ("live_entities", "ended_entities"):
        db.execute(
            f"""
            CREATE TABLE {table} (
                machine TEXT NOT NULL,
                entity  TEXT NOT NULL,
                state   TEXT NOT NULL,
                seq     INTEGER NOT NULL,
                data    TEXT NOT NULL,
                PRIMARY KEY (machine, entity)
            ) WITHOUT ROWID
            """
        )
    head = db.table("journal_head")
    head.create({"id": int, "seq": int, "hash": str}, pk="id", not_null={"seq", "hash"})
    head.insert({"id": 1, "seq": 0, "hash": GENESIS_HASH})


@_migration
def m002_audit_views_and_guards(db: sqlite_utils.Database) -> None:
    """Readable views for audit tools, and triggers that refuse edits of the append-only log."""
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"""
            CREATE TRIGGER transitions_append_only_{action.lower()} BEFORE {action} ON transitions
            BEGIN
                SELECT RAISE(ABORT, 'transitions is append-only: rows are never edited or deleted');
            END
            """
        )
    db.create_view(
        "entities",
        """
        SELECT machine, entity, state, seq, 1 AS live, data FROM live_entities
        UNION ALL
        SELECT machine, entity, state, seq, 0 AS live, data FROM ended_entities
        """,
    )
    db.create_view(
        "transition_log",
        """
        SELECT seq,
               strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1000000000.0, 'unixepoch') AS time,
               run, machine, entity, trigger, source, dest, data
        FROM transitions
        """,
    )
    db.create_view(
        "runs",
        """
        SELECT CAST(entity AS INTEGER) AS run,
               state,
               strftime('%Y-%m-%dT%H:%M:%fZ',
                        json_extract(data, '$.started_ns') / 1000000000.0, 'unixepoch') AS started,
               strftime('%Y-%m-%dT%H:%M:%fZ',
                        json_extract(data, '$.ended_ns') / 1000000000.0, 'unixepoch') AS ended,
               json_extract(data, '$.pid') AS pid,
               json_extract(data, '$.host') AS host,
               json_extract(data, '$.version') AS version,
               json_extract(data, '$.detected_by_run') AS crash_detected_by_run,
               seq AS last_seq
        FROM entities WHERE machine = 'run'
        """,
    )


@_migration
def m003_anomalies(db: sqlite_utils.Database) -> None:
    """Anomalies: bad input (a malformed frame, an impossible report) recorded with a sample.

    Not state: no machine, no replay, outside the hash chain; append-only like ``transitions``.
    """
    db.execute(
        """
        CREATE TABLE anomalies (
            id      INTEGER PRIMARY KEY,
            ts      INTEGER NOT NULL,
            run     INTEGER NOT NULL,
            source  TEXT NOT NULL,
            kind    TEXT NOT NULL,
            reason  TEXT NOT NULL,
            sample  TEXT NOT NULL
        )
        """
    )
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"""
            CREATE TRIGGER anomalies_append_only_{action.lower()} BEFORE {action} ON anomalies
            BEGIN
                SELECT RAISE(ABORT, 'anomalies is append-only: rows are never edited or deleted');
            END
            """
        )
    db.create_view(
        "anomaly_log",
        """
        SELECT id, strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1000000000.0, 'unixepoch') AS time,
               run, source, kind, reason, sample
        FROM anomalies
        """,
    )


@_migration
def m004_fill_index(db: sqlite_utils.Database) -> None:
    """A partial index of the order fills: listing them (positions rebuilt once for a journal from
    before positions were checkpointed) costs O(fills), not O(history). Only fill rows pay for it."""
    db.execute(
        "CREATE INDEX transitions_fills ON transitions (seq) "
        "WHERE machine = 'order' AND trigger IN ('fill', 'reconcile_fill')"
    )


@_migration
def m005_state_digests(db: sqlite_utils.Database) -> None:
    """A digest of each current-state row (``codec.state_digest``), checked on open: an edited
    row is refused before anything trades on it. Rows already there are trusted once, here."""
    for table in ("live_entities", "ended_entities"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN digest TEXT NOT NULL DEFAULT ''")
        rows = db.execute(f"SELECT machine, entity, state, seq, data FROM {table}").fetchall()
        db.conn.executemany(
            f"UPDATE {table} SET digest = ? WHERE machine = ? AND entity = ?",
            [(state_digest(*row), row[0], row[1]) for row in rows],
        )


def new_journal_id() -> str:
    """A fresh journal id: 8 characters of lowercase base32 (``[a-z2-7]``, 40 random bits)."""
    return base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()


@_migration
def m006_journal_id(db: sqlite_utils.Database) -> None:
    """The journal's own id (``journal_info``, one row): random, made once per journal file, here.

    It names this journal to the outside: client order ids carry it, so two journals trading on
    one venue account never produce the same id (``kernel/orders.py``); the fleet's ``kernel_id``
    is this id too. A journal from before this migration gets its id when it is migrated.
    """
    db.execute(
        """
        CREATE TABLE journal_info (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            journal_id TEXT NOT NULL
        )
        """
    )
    db.execute("INSERT INTO journal_info (id, journal_id) VALUES (1, ?)", (new_journal_id(),))


@_migration
def m007_reader_views(db: sqlite_utils.Database) -> None:
    """The reader views (``storage/views.py``): ``fills``, ``orders``, ``positions`` and
    ``trading_states``; ``transition_log``, ``runs`` and ``anomaly_log`` again with raw ``ts_ns``
    beside ISO times, runs in numeric order and no monotonic-clock values."""
    create_views_v7(db)


SCHEMA_VERSION = len(MIGRATION_NAMES)
"""The schema version this code writes: the number of migrations it knows."""


def translate(exc: sqlite3.Error, path: str, *, writing: bool) -> JournalError:
    """Map an sqlite3 error to the journal's typed errors, naming the file."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    message = f"{path}: {exc}"
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return JournalCorrupt(f"{message} (the file is damaged or is not a tradekernel journal)")
    if code == sqlite3.SQLITE_FULL:
        return JournalWriteError(f"{message} (disk or database size limit reached)")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        if writing:
            return JournalBusy(f"{message} (another connection holds a write lock)")
        return JournalLocked(path, "another connection holding a write transaction")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_AUTH):
        return JournalOpenError(f"{message} (check that the file and its directory are writable)")
    if code == sqlite3.SQLITE_IOERR:
        return JournalWriteError(f"{message} (I/O error)")
    return JournalError(message)


def check_directory(path: str) -> None:
    """Refuse a journal path whose directory is missing or unwritable, before SQLite tries."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise JournalOpenError(f"cannot open journal {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise JournalOpenError(f"cannot open journal {path}: it is a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise JournalOpenError(
            f"cannot open journal {path} for writing: directory {directory} is not writable "
            "(SQLite needs to create the -wal and -shm files beside the database)"
        )
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise JournalOpenError(f"cannot open journal {path} for writing: the file is read-only")


def create_private(path: str) -> None:
    """Create a missing journal file with mode 0600; SQLite gives its -wal/-shm files the same mode.

    An existing file is left as it is (its owner may have chosen another mode).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise JournalOpenError(f"cannot create journal {path}: {exc.strerror}") from exc
    os.fchmod(fd, 0o600)  # regardless of the umask
    os.close(fd)


def refuse_foreign(path: str) -> None:
    """Refuse an existing SQLite file that is not a tradekernel journal, without touching it.

    Runs before the writer lock is taken or WAL mode is set, on a read-only connection, so someone
    else's database given by mistake is left exactly as it was.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return
        ours = (
            "_sqlite_migrations" in tables
            and conn.execute(
                "SELECT count(*) FROM _sqlite_migrations WHERE migration_set = ?", (MIGRATION_SET,)
            ).fetchone()[0]
        )
        if not ours:
            names = ", ".join(sorted(tables)[:5])
            raise JournalOpenError(
                f"{path} is an SQLite database but not a tradekernel journal (it has tables {names}); "
                "refusing to write to it"
            )
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    finally:
        conn.close()


def connect_writer(path: str, durability: Durability) -> sqlite3.Connection:
    """Open ``path`` for writing in WAL mode with the given durability; typed errors on failure."""
    if durability not in SYNCHRONOUS:
        raise JournalOpenError(f"unknown durability {durability!r}; use 'full' or 'normal'")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalOpenError(f"{path}: cannot switch the journal to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, path, writing=False) from exc
    except JournalError:
        conn.close()
        raise
    return conn


def connect_reader(path: str) -> sqlite3.Connection:
    """Open an existing journal read-only; typed errors on failure.

    Never writes the journal. In WAL mode SQLite may create the ``-wal``/``-shm`` side files; on
    read-only media, where it cannot, the journal is opened as immutable (no writer can be running
    there) provided no uncommitted WAL content is left beside it.
    """
    if not os.path.exists(path):
        raise JournalOpenError(f"no journal at {path}")
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    try:
        return _probe(sqlite3.connect(uri, uri=True, isolation_level=None))
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        wal = path + "-wal"
        read_only_media = code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN) and not os.access(
            os.path.dirname(os.path.abspath(path)), os.W_OK
        )
        if read_only_media and (not os.path.exists(wal) or os.path.getsize(wal) == 0):
            try:
                return _probe(sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None))
            except sqlite3.Error as retry_exc:
                raise translate(retry_exc, path, writing=False) from retry_exc
        raise translate(exc, path, writing=False) from exc


def copy_database(path: str, dest: str) -> None:
    """Copy the SQLite database at ``path`` (a journal or a venue store) to ``dest``, consistently,
    while a writer may be using it (SQLite's online backup from a read-only connection)."""
    source = connect_reader(path)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    finally:
        source.close()


def _probe(conn: sqlite3.Connection) -> sqlite3.Connection:
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database header."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_readable_version(conn: sqlite3.Connection, path: str) -> int:
    """Refuse a database that is not a journal of a version this code reads; return the version."""
    version = user_version(conn)
    if version > SCHEMA_VERSION:
        raise JournalVersionError(path, version, SCHEMA_VERSION)
    if version < SCHEMA_VERSION:
        if version == 0:
            raise JournalOpenError(f"{path} is not a tradekernel journal (no schema version)")
        raise JournalOpenError(
            f"journal {path} has schema version {version}; this tradekernel reads version "
            f"{SCHEMA_VERSION}: run `tradekernel migrate --db {path}` first"
        )
    check_head_row(conn, path)
    return version


def check_head_row(conn: sqlite3.Connection, path: str) -> tuple[int, str]:
    """Return the journal's chain head (seq, hash); ``JournalCorrupt`` when its row is missing."""
    try:
        head = conn.execute("SELECT seq, hash FROM journal_head WHERE id = 1").fetchone()
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    if head is None:
        raise JournalCorrupt(
            f"journal {path} is corrupt: the journal_head row (the chain head) is missing; "
            "run `tradekernel audit verify` and restore from backup"
        )
    return int(head[0]), str(head[1])


def read_journal_id(conn: sqlite3.Connection, path: str) -> str:
    """The journal's id (``m006_journal_id``); ``JournalCorrupt`` when its row is missing."""
    try:
        row = conn.execute("SELECT journal_id FROM journal_info WHERE id = 1").fetchone()
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    if row is None or not row[0]:
        raise JournalCorrupt(
            f"journal {path} is corrupt: the journal_info row (the journal's id) is missing; "
            "run `tradekernel audit verify` and restore from backup"
        )
    return str(row[0])


def check_live_rows(conn: sqlite3.Connection, path: str) -> None:
    """Refuse live current-state rows that do not match their last transition or their digest.

    One primary-key lookup of ``transitions`` per live entity: O(live), not O(history)."""
    try:
        rows = conn.execute(
            "SELECT l.machine, l.entity, l.state, l.seq, l.data, l.digest, t.machine, t.entity, t.dest "
            "FROM live_entities AS l LEFT JOIN transitions AS t ON t.seq = l.seq"
        ).fetchall()
    except sqlite3.DatabaseError:
        # A damaged page of the transition log (``audit verify`` reports it) must not keep the
        # writer from opening: check the rows against their digests alone (which bind state and seq).
        rows = [
            (*row, row[0], row[1], row[2])
            for row in conn.execute("SELECT machine, entity, state, seq, data, digest FROM live_entities")
        ]
    for machine, entity, state, seq, data, digest, t_machine, t_entity, t_dest in rows:
        if t_machine is None:
            what = f"its last transition (seq {seq}) does not exist"
        elif (t_machine, t_entity) != (machine, entity):
            what = f"its last transition (seq {seq}) belongs to {t_machine} {t_entity!r}"
        elif t_dest != state:
            what = f"it is in state {state!r} but its last transition (seq {seq}) reached {t_dest!r}"
        elif digest != state_digest(machine, entity, state, seq, data):
            what = f"its data was edited after seq {seq} committed it (now {data})"
        else:
            continue
        raise JournalCorrupt(
            f"journal {path} is corrupt: the current state of {machine} {entity!r} does not match "
            f"its last transition: {what}; refusing to trade on it — run `tradekernel audit verify` "
            "and restore from backup"
        )


def migrate(conn: sqlite3.Connection, path: str) -> tuple[int, int]:
    """Bring the journal's schema up to ``SCHEMA_VERSION``; return (version before, after).

    Raises ``JournalVersionError`` for a newer database (``refuse_foreign`` has already turned away
    files that are not journals). Each migration runs in its own transaction.
    """
    before = user_version(conn)
    if before > SCHEMA_VERSION:
        raise JournalVersionError(path, before, SCHEMA_VERSION)
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    steps = migrations()
    try:
        known = set(MIGRATION_NAMES)
        applied = steps.applied(db)
        foreign = [m.name for m in applied if m.name not in known]
        if foreign:
            raise JournalVersionError(
                path, before, SCHEMA_VERSION, f" (it has migrations this version does not know: {', '.join(foreign)})"
            )
        steps.apply(db)
        after = len(steps.applied(db))
        if after != before:
            conn.execute(f"PRAGMA user_version = {after}")
    except sqlite3.Error as exc:
        raise translate(exc, path, writing=False) from exc
    return before, after


def integrity_problem(conn: sqlite3.Connection, tables: tuple[str, ...] | None = None) -> str | None:
    """Run ``PRAGMA quick_check`` (whole file, or only ``tables``); return the first problem."""
    targets: tuple[str | None, ...] = tables if tables else (None,)
    for table in targets:
        pragma = "PRAGMA quick_check" if table is None else f"PRAGMA quick_check('{table}')"
        rows = conn.execute(pragma).fetchall()
        problems = [str(r[0]) for r in rows if r[0] != "ok"]
        if problems:
            return "; ".join(problems[:3])
    return None
