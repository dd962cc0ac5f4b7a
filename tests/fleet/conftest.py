"""A real, throwaway PostgreSQL cluster for the fleet store's tests (no mocks).

``pg_cluster`` (session): ``tests/fleet/pg.py``'s cluster (initdb in a temporary directory, on
127.0.0.1 on a free port, ``fsync=off``), stopped in teardown. Missing binaries FAIL the tests
naming ``.ci/system-packages``, which installs them; they are never skipped.

``pg_dsn`` (function): a fresh database per test, on that cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet.pg import ClusterError, PgCluster

__all__ = ["PgCluster", "pg_cluster", "pg_dsn"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster for the session, on 127.0.0.1."""
    try:
        cluster = PgCluster.create()
    except ClusterError as exc:
        pytest.fail(str(exc))
    try:
        try:
            cluster.start()
        except ClusterError as exc:
            pytest.fail(str(exc))
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> str:
    """The DSN of a fresh database on the session's cluster (one per test)."""
    return pg_cluster.create_database()
