"""The venue store's schema (``storage.venue_store``): creating it, and migrating older versions.

Version 3 (this code): ``orders`` keyed by (``account``, ``client_order_id``), ``fills`` with the
``account`` of their order and their ``liquidity`` (``maker``/``taker``), ``balances`` (account,
asset, amount as TEXT decimal), ``meta``. Version 2 had no ``liquidity``: its fills keep NULL (not
known). Version 1 had no accounts and no balances either: its migration puts every order and fill
under account ``local`` (``LOCAL_ACCOUNT``) and leaves balances empty (every account starts at the
venue's starting balances). Each step runs inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3
LOCAL_ACCOUNT = "local"
"""The account of every order and fill a version 1 store held (``kernel.venue.settings``)."""

ORDER_COLUMNS = (
    "client_order_id",
    "venue_order_id",
    "instrument",
    "side",
    "order_type",
    "tif",
    "qty",
    "price",
    "status",
    "cum_qty",
    "leaves_qty",
    "reason",
    "duplicate_submits",
    "created_ts_ms",
    "priority",
    "account",
)
_NULLABLE = ("price", "reason")
_INTEGER = ("duplicate_submits", "created_ts_ms", "priority")


def _orders_table(name: str) -> str:
    columns = ", ".join(
        f"{c} {'INTEGER' if c in _INTEGER else 'TEXT'}{'' if c in _NULLABLE else ' NOT NULL'}" for c in ORDER_COLUMNS
    )
    return f"CREATE TABLE {name} ({columns}, PRIMARY KEY (account, client_order_id))"


_FILLS = (
    "CREATE TABLE fills (fill_seq INTEGER PRIMARY KEY, trade_id TEXT NOT NULL, client_order_id TEXT NOT NULL, "
    "qty TEXT NOT NULL, price TEXT NOT NULL, fee TEXT NOT NULL, ts_ms INTEGER NOT NULL, "
    f"account TEXT NOT NULL DEFAULT '{LOCAL_ACCOUNT}', liquidity TEXT)"
)
_BALANCES = (
    "CREATE TABLE balances (account TEXT NOT NULL, asset TEXT NOT NULL, amount TEXT NOT NULL, "
    "PRIMARY KEY (account, asset))"
)
_INDEXES = (
    "CREATE UNIQUE INDEX fills_trade_id ON fills (trade_id)",
    "CREATE INDEX fills_order ON fills (account, client_order_id, fill_seq)",
    "CREATE INDEX fills_account ON fills (account, fill_seq)",
)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create every table of an empty store at ``SCHEMA_VERSION``."""
    conn.execute(_orders_table("orders"))
    conn.execute(_FILLS)
    for index in _INDEXES:
        conn.execute(index)
    conn.execute(_BALANCES)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("next_venue_order", 1), ("next_fill_seq", 1), ("next_priority", 1), ("session", 0)],
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate_from_1(conn: sqlite3.Connection) -> None:
    """Version 1 -> 3: every order and fill goes to account ``local``; an empty ``balances`` table."""
    old = ", ".join(ORDER_COLUMNS[:-1])
    conn.execute(_orders_table("orders_v2"))
    conn.execute(f"INSERT INTO orders_v2 ({old}, account) SELECT {old}, '{LOCAL_ACCOUNT}' FROM orders ORDER BY rowid")
    conn.execute("DROP TABLE orders")
    conn.execute("ALTER TABLE orders_v2 RENAME TO orders")
    conn.execute(f"ALTER TABLE fills ADD COLUMN account TEXT NOT NULL DEFAULT '{LOCAL_ACCOUNT}'")
    conn.execute("DROP INDEX IF EXISTS fills_order")
    conn.execute(_INDEXES[1])
    conn.execute(_INDEXES[2])
    conn.execute(_BALANCES)
    migrate_from_2(conn)


def migrate_from_2(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3: fills get a ``liquidity`` column (NULL for those stored before it)."""
    conn.execute("ALTER TABLE fills ADD COLUMN liquidity TEXT")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
