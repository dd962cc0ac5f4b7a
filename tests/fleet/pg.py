"""A throwaway PostgreSQL cluster on 127.0.0.1: the one helper the fleet tests' fixtures
(``tests/fleet/conftest.py``) and ``benchmarks/fleet.py`` start, stop and restart clusters with.

``initdb`` in a temporary directory, started on a free loopback port with its socket in that
directory (``fsync=off``: nothing here needs to survive a power cut). As root, initdb refuses to
run: the binaries then run as the ``postgres`` system user (``runuser``), which the distribution's
package creates. A missing binary or user raises ``ClusterError`` naming ``.ci/system-packages``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


class ClusterError(RuntimeError):
    """PostgreSQL is not installed, or a cluster command failed (the message says which)."""


def pg_bin(name: str) -> str:
    """The path of PostgreSQL's ``name`` (the newest under /usr/lib/postgresql, else on PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise ClusterError(
            f"PostgreSQL's {name} was found neither in /usr/lib/postgresql/*/bin nor on PATH: the fleet "
            "store's tests need a real PostgreSQL; install it with .ci/system-packages"
        )
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """A throwaway cluster: its data directory, port, and a superuser DSN."""

    root: Path
    port: int
    as_postgres: bool

    @classmethod
    def create(cls) -> PgCluster:
        """``initdb`` a new cluster in a temporary directory (not started)."""
        as_postgres = os.geteuid() == 0
        root = Path(tempfile.mkdtemp(prefix="tk-pg-"))
        (root / "sock").mkdir()
        if as_postgres:
            try:
                shutil.chown(root, user="postgres")
                shutil.chown(root / "sock", user="postgres")
            except LookupError:
                shutil.rmtree(root, ignore_errors=True)
                raise ClusterError(
                    "running as root, initdb must run as the 'postgres' system user, which does not exist: "
                    "install PostgreSQL with .ci/system-packages (its package creates the user)"
                ) from None
        cluster = cls(root=root, port=free_port(), as_postgres=as_postgres)
        cluster.init()
        return cluster

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        return subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=60, check=False, cwd=str(self.root)
        )

    def _checked(self, *argv: str) -> None:
        done = self.run(*argv)
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def init(self) -> None:
        self._checked(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        """Start the cluster and wait until it accepts connections (``pg_ctl -w``)."""
        options = f"-k {self.root / 'sock'} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off"
        self._checked(
            pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )

    def stop(self) -> None:
        """Stop the cluster now (``-m fast``: open connections are cut, as in an outage)."""
        self._checked(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the cluster if it runs and remove its directory."""
        self.run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A fresh, empty database; its DSN."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
