"""The fleet store's schema: created by its migrations on a real PostgreSQL, recorded, forward-only."""

from __future__ import annotations

import psycopg
import pytest

from storage.fleet import schema
from storage.fleet.errors import StoreVersionError
from tests.fleet.conftest import PgCluster


def test_migrate_creates_the_tables_once_and_records_each_migration(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert schema.migrate(conn, "test") == (0, 3)
        assert schema.migrate(conn, "test") == (3, 3)
        names = [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY id")]
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert names == ["m001_core_tables", "m002_append_only", "m003_reader_views"]
    assert tables == {"schema_migrations", "kernels", "transitions", "anomalies", "runs", "incidents"}


def test_a_store_with_an_unknown_migration_is_refused(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        schema.migrate(conn, "test")
        conn.execute("INSERT INTO schema_migrations (name) VALUES ('m999_from_the_future')")
        with pytest.raises(StoreVersionError, match="m999_from_the_future"):
            schema.migrate(conn, "test")


def test_shipped_rows_are_append_only(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        schema.migrate(conn, "test")
        conn.execute("INSERT INTO kernels (kernel_id) VALUES ('k1')")
        conn.execute(
            "INSERT INTO transitions (kernel_id, seq, ts, run, machine, entity, trigger, source, dest, data, hash)"
            " VALUES ('k1', 1, 5, 1, 'run', '1', 'create', NULL, 'running', '{}', 'h')"
        )
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE transitions SET data = '{\"x\":1}'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM transitions")


def test_the_cluster_restarts(pg_cluster: PgCluster, pg_dsn: str) -> None:
    pg_cluster.restart()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
