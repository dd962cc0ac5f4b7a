"""The paper venue's accounts, in the venue's own SQLite file (``accounts`` table).

One row per account: ``name`` (unique), ``api_key`` (unique, random), ``secret_hash`` (what the
client derives from its secret and signs with: ``kernel.paper_protocol.secret_key``; the secret
itself is never stored), ``created_ms`` and ``revoked_ms`` (NULL while the key is valid).

The table is created if missing (``CREATE TABLE IF NOT EXISTS``) on a connection of its own, beside
the venue store's tables (``storage.venue_store``): accounts can be added, listed and revoked while
the venue runs. A file that does not exist yet is first made a venue store, so the venue opens it.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from dataclasses import dataclass
from types import TracebackType

from storage.venue_store import BUSY_TIMEOUT_S, VenueStore, VenueStoreError, VenueStoreOpenError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY NOT NULL,
    api_key TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
)
"""
_COLUMNS = "name, api_key, secret_hash, created_ms, revoked_ms"


class AccountError(VenueStoreError):
    """An account operation was refused (the message names the account and why)."""


class AccountExists(AccountError):
    """An account of that name (or, unlikely, with that key) already exists."""


class UnknownAccount(AccountError, KeyError):
    """No account of that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class Account:
    """One account as stored (``secret_hash``: the derived signing key, never the secret)."""

    name: str
    api_key: str
    secret_hash: str
    created_ms: int
    revoked_ms: int | None = None

    @property
    def revoked(self) -> bool:
        """True once the key is revoked."""
        return self.revoked_ms is not None

    def __repr__(self) -> str:
        return f"Account(name={self.name!r}, api_key={self.api_key!r}, revoked={self.revoked})"


class VenueAccounts:
    """The accounts of the venue store at ``path``. Create with ``open``; ``close()`` (or ``with``)."""

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def open(cls, path: str) -> VenueAccounts:
        """Open the accounts of ``path`` (a new file becomes an empty venue store first).

        Raises ``VenueStoreOpenError`` (missing directory, a foreign database) and the other
        ``VenueStoreError``s of ``VenueStore.open``.
        """
        if not os.path.exists(path):
            VenueStore.open(path).close()
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise VenueStoreOpenError(f"cannot open the accounts of {path}: {exc}") from exc
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                conn.close()
                raise VenueStoreOpenError(f"{path} is not a venue store; refusing to add accounts to it")
            conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            conn.close()
            raise VenueStoreOpenError(f"cannot open the accounts of {path}: {exc}") from exc
        return cls(path, conn)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> VenueAccounts:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _one(self, where: str, value: str) -> Account | None:
        try:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM accounts WHERE {where} = ?", (value,)).fetchone()
        except sqlite3.Error as exc:
            raise AccountError(f"cannot read the accounts of {self.path}: {exc}") from exc
        return None if row is None else Account(*row)

    def by_key(self, api_key: str) -> Account | None:
        """The account holding ``api_key`` (revoked or not), or ``None``."""
        return self._one("api_key", api_key)

    def by_name(self, name: str) -> Account | None:
        """The account called ``name``, or ``None``."""
        return self._one("name", name)

    def all(self) -> list[Account]:
        """Every account, by name."""
        try:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY name").fetchall()
        except sqlite3.Error as exc:
            raise AccountError(f"cannot read the accounts of {self.path}: {exc}") from exc
        return [Account(*row) for row in rows]

    def add(self, name: str, api_key: str, secret_hash: str, created_ms: int) -> Account:
        """A new account; ``AccountExists`` when the name (or key) is taken."""
        try:
            self._conn.execute(
                "INSERT INTO accounts (name, api_key, secret_hash, created_ms) VALUES (?, ?, ?, ?)",
                (name, api_key, secret_hash, created_ms),
            )
        except sqlite3.IntegrityError:
            raise AccountExists(f"account {name!r} already exists in {self.path}") from None
        except sqlite3.Error as exc:
            raise AccountError(f"cannot add account {name!r} to {self.path}: {exc}") from exc
        return Account(name, api_key, secret_hash, created_ms)

    def rekey(self, name: str, api_key: str, secret_hash: str, now_ms: int) -> Account:
        """Give ``name`` a new key (creating the account if needed; a revoked one is valid again)."""
        try:
            self._conn.execute(
                "INSERT INTO accounts (name, api_key, secret_hash, created_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET api_key = excluded.api_key, "
                "secret_hash = excluded.secret_hash, revoked_ms = NULL",
                (name, api_key, secret_hash, now_ms),
            )
        except sqlite3.Error as exc:
            raise AccountError(f"cannot set the key of account {name!r} in {self.path}: {exc}") from exc
        account = self.by_name(name)
        assert account is not None
        return account

    def revoke(self, name: str, now_ms: int) -> Account:
        """Revoke ``name``'s key (a revoked key stays revoked); ``UnknownAccount`` for no such account."""
        try:
            self._conn.execute(
                "UPDATE accounts SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL", (now_ms, name)
            )
        except sqlite3.Error as exc:
            raise AccountError(f"cannot revoke account {name!r} in {self.path}: {exc}") from exc
        account = self.by_name(name)
        if account is None:
            raise UnknownAccount(f"no account {name!r} in {self.path}")
        return account


API_KEY_BYTES = 24
"""Random bytes of an API key (URL-safe base64: 32 characters)."""
SECRET_BYTES = 32
"""Random bytes of a secret (URL-safe base64: 43 characters)."""


def new_credentials() -> tuple[str, str]:
    """A fresh random ``(api_key, secret)`` from ``secrets``."""
    return secrets.token_urlsafe(API_KEY_BYTES), secrets.token_urlsafe(SECRET_BYTES)
