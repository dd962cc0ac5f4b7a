"""The fleet store's schema (PostgreSQL): forward-only migrations, applied in order, recorded.

Tables (``kernel_id`` is the journal's ``journal_info.journal_id``, ``storage/schema.py`` m006):

* ``kernels`` — one row per shipping journal: when it first and last shipped, from which host,
  and the chain head the store holds for it (``last_seq``, ``last_hash``; ``last_anomaly_id``).
* ``transitions`` — the journal's rows, ``PRIMARY KEY (kernel_id, seq)``; ``data`` is the exact
  text of the journal (the hash covers those bytes), ``data_json`` a ``jsonb`` copy for queries
  (NULL when the text holds a ``\\u0000`` escape, which ``jsonb`` refuses). Append-only.
* ``anomalies`` — the journal's anomalies, ``PRIMARY KEY (kernel_id, id)``. Append-only.
* ``runs`` — one row per kernel run, upserted from the ``run`` entity's transitions.
* ``incidents`` — chain breaks found while shipping (a journal rewritten after shipping, an old
  backup restored, two journals claiming one id): never merged, recorded here.

The migrations run in one transaction under an advisory lock (several shippers may start at
once) and is recorded in ``schema_migrations``; a store with a migration this code does not know
is refused (``StoreVersionError``), never downgraded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.codec import GENESIS_HASH
from storage.fleet.errors import StoreVersionError
from storage.fleet.views import MIGRATION_SQL as READER_VIEWS

if TYPE_CHECKING:
    import psycopg

MIGRATION_LOCK = 0x7472_6B66_6C74
"""The advisory lock key held while migrating ("trkflt")."""

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "m001_core_tables",
        f"""
        CREATE TABLE kernels (
            kernel_id        TEXT PRIMARY KEY,
            first_shipped_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_shipped_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            host             TEXT NOT NULL DEFAULT '',
            journal_path     TEXT NOT NULL DEFAULT '',
            last_seq         BIGINT NOT NULL DEFAULT 0,
            last_hash        TEXT NOT NULL DEFAULT '{GENESIS_HASH}',
            last_anomaly_id  BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE transitions (
            kernel_id TEXT NOT NULL REFERENCES kernels (kernel_id),
            seq       BIGINT NOT NULL,
            ts        BIGINT NOT NULL,
            run       BIGINT NOT NULL,
            machine   TEXT NOT NULL,
            entity    TEXT NOT NULL,
            trigger   TEXT NOT NULL,
            source    TEXT,
            dest      TEXT NOT NULL,
            data      TEXT NOT NULL,
            data_json JSONB,
            hash      TEXT NOT NULL,
            PRIMARY KEY (kernel_id, seq)
        );
        CREATE INDEX transitions_fills ON transitions (kernel_id, seq)
            WHERE machine = 'order' AND trigger IN ('fill', 'reconcile_fill');
        CREATE INDEX transitions_entity ON transitions (machine, entity, kernel_id, seq);
        CREATE INDEX transitions_ts ON transitions (ts);
        CREATE TABLE anomalies (
            kernel_id TEXT NOT NULL REFERENCES kernels (kernel_id),
            id        BIGINT NOT NULL,
            ts        BIGINT NOT NULL,
            run       BIGINT NOT NULL,
            source    TEXT NOT NULL,
            kind      TEXT NOT NULL,
            reason    TEXT NOT NULL,
            sample    TEXT NOT NULL,
            PRIMARY KEY (kernel_id, id)
        );
        CREATE INDEX anomalies_ts ON anomalies (ts);
        CREATE TABLE runs (
            kernel_id  TEXT NOT NULL REFERENCES kernels (kernel_id),
            run        BIGINT NOT NULL,
            state      TEXT NOT NULL,
            started_ns BIGINT,
            ended_ns   BIGINT,
            pid        BIGINT,
            host       TEXT,
            version    TEXT,
            crash_detected_by_run BIGINT,
            last_seq   BIGINT NOT NULL,
            PRIMARY KEY (kernel_id, run)
        );
        CREATE TABLE incidents (
            id            BIGSERIAL PRIMARY KEY,
            kernel_id     TEXT NOT NULL,
            detected_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
            kind          TEXT NOT NULL,
            seq           BIGINT NOT NULL,
            expected_hash TEXT NOT NULL,
            got_hash      TEXT NOT NULL,
            detail        TEXT NOT NULL,
            host          TEXT NOT NULL DEFAULT '',
            journal_path  TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX incidents_kernel ON incidents (kernel_id, detected_at);
        """,
    ),
    (
        "m002_append_only",
        """
        CREATE FUNCTION tradekernel_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: rows are never edited or deleted', TG_TABLE_NAME;
        END
        $$;
        CREATE TRIGGER transitions_append_only BEFORE UPDATE OR DELETE ON transitions
            FOR EACH ROW EXECUTE FUNCTION tradekernel_append_only();
        CREATE TRIGGER anomalies_append_only BEFORE UPDATE OR DELETE ON anomalies
            FOR EACH ROW EXECUTE FUNCTION tradekernel_append_only();
        CREATE TRIGGER incidents_append_only BEFORE UPDATE OR DELETE ON incidents
            FOR EACH ROW EXECUTE FUNCTION tradekernel_append_only();
        """,
    ),
    ("m003_reader_views", READER_VIEWS),  # fills, orders, positions, trading_states: storage/fleet/views.py
)
"""``(name, SQL)`` in the order they apply; a name is a migration's identity in ``schema_migrations``."""

SCHEMA_VERSION = len(MIGRATIONS)


def applied(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """The names of the migrations the store has, in the order they were applied (empty for a new store)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [str(row[0]) for row in conn.execute("SELECT name FROM schema_migrations ORDER BY id")]


def migrate(conn: psycopg.Connection[tuple[object, ...]], where: str) -> tuple[int, int]:
    """Bring the store's schema up to ``SCHEMA_VERSION``; return (version before, after).

    ``conn`` must be idle (no transaction open); it is left idle. Raises ``StoreVersionError`` when
    the store has migrations this code does not know (``where`` names the store in the message)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = applied(conn)
        known = [name for name, _ in MIGRATIONS]
        foreign = [name for name in done if name not in known]
        if foreign or done != known[: len(done)]:
            raise StoreVersionError(
                f"the fleet store {where} has schema migrations this tradekernel does not know or in "
                f"another order ({', '.join(foreign or done)}); upgrade tradekernel (the store is never "
                "downgraded)"
            )
        for name, sql in MIGRATIONS[len(done) :]:
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
    return len(done), SCHEMA_VERSION
