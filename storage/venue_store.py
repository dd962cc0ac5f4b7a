"""The paper venue's own SQLite file: its orders, fills and counters, so it survives a restart.

Separate from the kernel's journal (the venue is "the other side" in crash tests). One transaction
per engine step (``save_step``): the orders it changed, the fills it made and the counters, all or
nothing; the venue sends its execution reports only after that commit. WAL mode,
``synchronous=NORMAL``. Decimals are stored as TEXT, exactly as written.

Tables:

* ``orders`` — one row per (``account``, ``client_order_id``) (the current state; ``priority`` is
  the time priority among resting orders): two accounts may use the same client order id.
* ``fills`` — append-only, ``fill_seq`` counts fills from 1 across all orders and accounts;
  ``trade_id`` unique; ``account`` is the order's; ``liquidity`` ``maker``/``taker`` (NULL: not known).
* ``balances`` — (``account``, ``asset``) → ``amount``, saved in the step of the fills that moved it.
* ``meta`` — ``next_venue_order``, ``next_fill_seq``, ``next_priority``, ``session``.

The schema version is ``PRAGMA user_version = 3`` (``storage.venue_schema``); a version 1 or 2 store
is migrated when a venue opens it (a version 1 store's orders and fills go to account ``local``) and
read as it is by ``read_orders``; any other version, or a database that is not a venue store, is refused. One venue
per file: an exclusive lock on ``PATH.lock`` (as the journal).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from urllib.parse import quote

from machines.decimals import DecimalError, Sign, parse_decimal
from machines.errors import TradekernelError
from storage.errors import JournalError
from storage.lock import WriterLock
from storage.venue_schema import (
    LOCAL_ACCOUNT,
    ORDER_COLUMNS,
    SCHEMA_VERSION,
    create_schema,
    migrate_from_1,
    migrate_from_2,
)

BUSY_TIMEOUT_S = 2.0
_TABLES = frozenset({"orders", "fills", "meta"})
_TABLES_V2 = _TABLES | {"balances"}


class VenueStoreError(TradekernelError):
    """Base of the venue store's errors; the message names the file."""


class VenueStoreOpenError(VenueStoreError):
    """The store cannot be opened: missing or unwritable directory, a foreign database, in use, ..."""


class VenueStoreCorrupt(VenueStoreError):
    """The file is damaged, is not SQLite, or holds rows that make no sense."""


class VenueStoreVersionError(VenueStoreError):
    """The file's schema version is not the one this code speaks."""


class VenueStoreWriteError(VenueStoreError):
    """A step could not be committed; nothing of it was written (the transaction rolled back)."""


@dataclass(frozen=True, slots=True)
class StoredFill:
    """One fill as stored."""

    fill_seq: int
    trade_id: str
    client_order_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts_ms: int
    account: str = LOCAL_ACCOUNT
    liquidity: str | None = None


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """One order's current state as stored (its fills are in ``fills``)."""

    client_order_id: str
    venue_order_id: str
    instrument: str
    side: str
    order_type: str
    tif: str
    qty: Decimal
    price: Decimal | None
    status: str
    cum_qty: Decimal
    leaves_qty: Decimal
    reason: str | None
    duplicate_submits: int
    created_ts_ms: int
    priority: int
    fills: tuple[StoredFill, ...] = ()
    account: str = LOCAL_ACCOUNT
    """The venue account that placed the order."""


@dataclass(frozen=True, slots=True)
class Counters:
    """The venue's numbering, saved with every step."""

    next_venue_order: int = 1
    next_fill_seq: int = 1
    next_priority: int = 1


@dataclass(frozen=True, slots=True)
class VenueState:
    """Everything the store holds, as loaded at start (orders oldest first, each with its fills)."""

    orders: tuple[StoredOrder, ...]
    counters: Counters
    session: int
    balances: tuple[tuple[str, str, Decimal], ...] = ()
    """Every (account, asset, amount) saved."""


_ORDER_COLUMNS = ORDER_COLUMNS
_UPSERT_ORDER = (
    f"INSERT INTO orders ({', '.join(_ORDER_COLUMNS)}) VALUES ({', '.join('?' for _ in _ORDER_COLUMNS)}) "
    "ON CONFLICT (account, client_order_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ORDER_COLUMNS if c not in ("client_order_id", "account"))
)
_INSERT_FILL = (
    "INSERT INTO fills (fill_seq, trade_id, client_order_id, qty, price, fee, ts_ms, account, liquidity) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SET_BALANCE = (
    "INSERT INTO balances (account, asset, amount) VALUES (?, ?, ?) "
    "ON CONFLICT (account, asset) DO UPDATE SET amount = excluded.amount"
)
DONE_STATUSES = ("filled", "canceled", "rejected", "expired")
"""Statuses of an order that is done (never changes again); any other is open."""
_IN_CHUNK = 500
_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


def _decimal(text: object, path: str, what: str) -> Decimal:
    try:
        return parse_decimal(text, what, sign=Sign.any)
    except DecimalError:
        raise VenueStoreCorrupt(f"{path}: {what} is not a decimal: {text!r}") from None


def _translate(exc: sqlite3.Error, path: str) -> VenueStoreError:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return VenueStoreCorrupt(f"venue store {path}: {exc} (the file is damaged or is not a venue store)")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_AUTH):
        return VenueStoreOpenError(f"venue store {path}: {exc} (check that the file and its directory are writable)")
    return VenueStoreWriteError(f"venue store {path}: {exc}")


class VenueStore:
    """An open venue store. Create with ``VenueStore.open``; close with ``close()`` (or ``with``)."""

    def __init__(self, path: str, conn: sqlite3.Connection, lock: WriterLock | None, session: int) -> None:
        self.path = path
        self.session = session
        """This opening's session number (1 for a new file, +1 each open)."""
        self._conn: sqlite3.Connection | None = conn
        self._lock = lock
        self._account = "account"
        """The SQL of an order's or fill's account (a version 1 store read as it is: ``'local'``)."""
        self._liquidity = "liquidity"
        """The SQL of a fill's liquidity (a version 1 or 2 store read as it is: ``NULL``)."""

    def _order_sql(self) -> str:
        return ", ".join(self._account if c == "account" else c for c in _ORDER_COLUMNS)

    def _fills_sql(self) -> str:
        return (
            f"SELECT fill_seq, trade_id, client_order_id, qty, price, fee, ts_ms, {self._account}, {self._liquidity} "
            "FROM fills"
        )

    @classmethod
    def open(cls, path: str) -> VenueStore:
        """Open (creating if needed) the store at ``path`` and start a new session.

        Raises ``VenueStoreOpenError`` (missing or unwritable directory, another venue holds it, a
        foreign SQLite database), ``VenueStoreCorrupt`` (not SQLite, damaged) and
        ``VenueStoreVersionError`` (another schema version). Nothing is left open on failure.
        """
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise VenueStoreOpenError(f"cannot open venue store {path}: directory {directory} does not exist")
        if os.path.isdir(path):
            raise VenueStoreOpenError(f"cannot open venue store {path}: it is a directory")
        try:
            lock = WriterLock(path)
        except JournalError as exc:
            raise VenueStoreOpenError(f"cannot open venue store {path}: {exc}") from exc
        try:
            conn = cls._connect(path)
        except BaseException:
            lock.release()
            raise
        try:
            session = cls._start_session(conn, path)
        except BaseException:
            conn.close()
            lock.release()
            raise
        return cls(path, conn, lock, session)

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version == 0 and tables:
                raise VenueStoreOpenError(
                    f"{path} is an SQLite database but not a venue store (it has tables "
                    f"{', '.join(sorted(tables)[:5])}); refusing to write to it"
                )
            if version not in (0, 1, 2, SCHEMA_VERSION):
                raise VenueStoreVersionError(
                    f"venue store {path} has schema version {version}; this code speaks version {SCHEMA_VERSION}"
                )
            needed = _TABLES_V2 if version >= 2 else _TABLES
            if version != 0 and not tables >= needed:
                raise VenueStoreCorrupt(f"venue store {path} lacks tables {', '.join(sorted(needed - tables))}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise VenueStoreOpenError(f"{path}: cannot switch to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=NORMAL")
            if version in (0, 1, 2):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    (create_schema, migrate_from_1, migrate_from_2)[version](conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall() if r[0] != "ok"]
            if problems:
                raise VenueStoreCorrupt(f"venue store {path} fails its integrity check: {'; '.join(problems[:3])}")
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(exc, path) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _start_session(conn: sqlite3.Connection, path: str) -> int:
        try:
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'session'")
            row = conn.execute("SELECT value FROM meta WHERE key = 'session'").fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc
        if row is None:
            raise VenueStoreCorrupt(f"venue store {path} has no session counter in meta")
        return int(row[0])

    def __enter__(self) -> VenueStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran."""
        return self._conn is None

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise VenueStoreError(f"venue store {self.path} is closed")
        return self._conn

    def close(self) -> None:
        """Close the file and release the lock (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- writing ----------------------------------------------------------------------------

    def save_step(
        self,
        orders: Iterable[StoredOrder],
        fills: Iterable[StoredFill],
        counters: Counters,
        balances: Iterable[tuple[str, str, Decimal]] = (),
    ) -> None:
        """Save one engine step in ONE transaction: order snapshots (upserted), new fills, the
        balances they moved (account, asset, amount) and the counters.

        Raises ``VenueStoreWriteError`` (or ``VenueStoreCorrupt``) with nothing written: the
        transaction is rolled back, and the caller must not send the step's reports.
        """
        conn = self._require()
        order_rows = [
            (
                o.client_order_id,
                o.venue_order_id,
                o.instrument,
                o.side,
                o.order_type,
                o.tif,
                str(o.qty),
                None if o.price is None else str(o.price),
                o.status,
                str(o.cum_qty),
                str(o.leaves_qty),
                o.reason,
                o.duplicate_submits,
                o.created_ts_ms,
                o.priority,
                o.account,
            )
            for o in orders
        ]
        fill_rows = [
            (
                f.fill_seq,
                f.trade_id,
                f.client_order_id,
                str(f.qty),
                str(f.price),
                str(f.fee),
                f.ts_ms,
                f.account,
                f.liquidity,
            )
            for f in fills
        ]
        balance_rows = [(account, asset, str(amount)) for account, asset, amount in balances]
        meta = [
            ("next_venue_order", counters.next_venue_order),
            ("next_fill_seq", counters.next_fill_seq),
            ("next_priority", counters.next_priority),
        ]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT_ORDER, order_rows)
                conn.executemany(_INSERT_FILL, fill_rows)
                conn.executemany(_SET_BALANCE, balance_rows)
                conn.executemany(_SET_META, meta)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as exc:
            raise VenueStoreWriteError(f"venue store {self.path}: step refused: {exc}") from exc
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    # -- reading ----------------------------------------------------------------------------

    def load(self) -> VenueState:
        """Everything the store holds: orders (oldest first, with fills), balances and counters."""
        conn = self._require()
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            fill_rows = conn.execute(f"{self._fills_sql()} ORDER BY fill_seq").fetchall()
            order_rows = conn.execute(
                f"SELECT {self._order_sql()} FROM orders ORDER BY created_ts_ms, rowid"
            ).fetchall()
            balance_rows = (
                conn.execute("SELECT account, asset, amount FROM balances ORDER BY account, asset").fetchall()
                if self._account == "account"
                else []
            )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        by_order: dict[tuple[str, str], list[StoredFill]] = {}
        for row in fill_rows:
            fill = self._fill(row)
            by_order.setdefault((fill.account, fill.client_order_id), []).append(fill)
        orders = tuple(self._order(row, tuple(by_order.get((str(row[15]), str(row[0])), ()))) for row in order_rows)
        balances = tuple(
            (str(account), str(asset), _decimal(amount, self.path, f"balance of {account} {asset}"))
            for account, asset, amount in balance_rows
        )
        try:
            counters = Counters(
                next_venue_order=int(meta["next_venue_order"]),
                next_fill_seq=int(meta["next_fill_seq"]),
                next_priority=int(meta["next_priority"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VenueStoreCorrupt(f"venue store {self.path}: bad counters in meta: {exc}") from None
        return VenueState(orders=orders, counters=counters, session=self.session, balances=balances)

    def _order(self, row: tuple[object, ...], fills: tuple[StoredFill, ...]) -> StoredOrder:
        coid = str(row[0])

        def dec(index: int, what: str) -> Decimal:
            return _decimal(row[index], self.path, f"order {coid} {what}")

        return StoredOrder(
            client_order_id=coid,
            venue_order_id=str(row[1]),
            instrument=str(row[2]),
            side=str(row[3]),
            order_type=str(row[4]),
            tif=str(row[5]),
            qty=dec(6, "qty"),
            price=None if row[7] is None else dec(7, "price"),
            status=str(row[8]),
            cum_qty=dec(9, "cum_qty"),
            leaves_qty=dec(10, "leaves_qty"),
            reason=None if row[11] is None else str(row[11]),
            duplicate_submits=int(str(row[12])),
            created_ts_ms=int(str(row[13])),
            priority=int(str(row[14])),
            fills=fills,
            account=str(row[15]),
        )

    def orders(self, account: str | None = None) -> list[StoredOrder]:
        """Every order (of ``account``; ``None``: of all), oldest first, with its fills, for
        ``tradekernel venue orders``."""
        return [o for o in self.load().orders if account is None or o.account == account]

    def fills_after(self, after: int, limit: int, account: str = LOCAL_ACCOUNT) -> list[StoredFill]:
        """At most ``limit`` of ``account``'s fills with ``fill_seq > after``, in ``fill_seq`` order (one page)."""
        conn = self._require()
        try:
            rows = conn.execute(
                f"{self._fills_sql()} WHERE account = ? AND fill_seq > ? ORDER BY fill_seq LIMIT ?",
                (account, after, limit),
            )
            return [self._fill(row) for row in rows.fetchall()]
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    def last_fill_seq(self, account: str = LOCAL_ACCOUNT) -> int:
        """The ``fill_seq`` of ``account``'s newest fill (0 when there is none)."""
        try:
            row = self._require().execute("SELECT MAX(fill_seq) FROM fills WHERE account = ?", (account,)).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        return 0 if row is None or row[0] is None else int(row[0])

    def open_orders_after(self, after: str, limit: int, account: str = LOCAL_ACCOUNT) -> list[StoredOrder]:
        """At most ``limit`` of ``account``'s orders not done whose ``client_order_id`` sorts after
        ``after``, in ``client_order_id`` order, each with its fills (one page)."""
        conn = self._require()
        try:
            order_rows = conn.execute(
                f"SELECT {self._order_sql()} FROM orders WHERE account = ? AND client_order_id > ? "
                f"AND status NOT IN ({', '.join('?' for _ in DONE_STATUSES)}) ORDER BY client_order_id LIMIT ?",
                (account, after, *DONE_STATUSES, limit),
            ).fetchall()
            by_order: dict[str, list[StoredFill]] = {}
            ids = [str(row[0]) for row in order_rows]
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                rows = conn.execute(
                    f"{self._fills_sql()} WHERE account = ? AND client_order_id IN ({', '.join('?' for _ in chunk)}) "
                    "ORDER BY fill_seq",
                    (account, *chunk),
                )
                for row in rows.fetchall():
                    fill = self._fill(row)
                    by_order.setdefault(fill.client_order_id, []).append(fill)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        return [self._order(row, tuple(by_order.get(str(row[0]), ()))) for row in order_rows]

    def _fill(self, row: tuple[object, ...]) -> StoredFill:
        seq, trade_id, coid, qty, price, fee, ts_ms, account, liquidity = row
        return StoredFill(
            fill_seq=int(str(seq)),
            trade_id=str(trade_id),
            client_order_id=str(coid),
            qty=_decimal(qty, self.path, f"fill {seq} qty"),
            price=_decimal(price, self.path, f"fill {seq} price"),
            fee=_decimal(fee, self.path, f"fill {seq} fee"),
            ts_ms=int(str(ts_ms)),
            account=str(account),
            liquidity=None if liquidity is None else str(liquidity),
        )


def read_orders(path: str) -> list[StoredOrder]:
    """Every order of the store at ``path``, read-only (works while a venue runs on it).

    An empty SQLite file reads as no orders: it is what a venue's store looks like in the instant
    between the file's creation and its schema's commit. Raises ``VenueStoreOpenError`` (no such
    file, another SQLite database), ``VenueStoreCorrupt``, ``VenueStoreVersionError``.
    """
    if not os.path.isfile(path):
        raise VenueStoreOpenError(f"no venue store at {path}")
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise _translate(exc, path) from exc
    try:
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc
        if version == 0 and not tables:
            return []
        if version == 0:
            raise VenueStoreOpenError(f"{path} is an SQLite database but not a venue store")
        if version not in (1, 2, SCHEMA_VERSION):
            raise VenueStoreVersionError(
                f"venue store {path} has schema version {version}; this code speaks version {SCHEMA_VERSION}"
            )
        needed = _TABLES_V2 if version >= 2 else _TABLES
        if not tables >= needed:
            raise VenueStoreCorrupt(f"venue store {path} lacks tables {', '.join(sorted(needed - tables))}")
        reader = VenueStore(path, conn, None, session=0)
        if version == 1:
            reader._account = f"'{LOCAL_ACCOUNT}'"  # not migrated yet (read-only): every order is local's
        if version < SCHEMA_VERSION:
            reader._liquidity = "NULL"  # not migrated yet (read-only): no fill's liquidity is known
        return reader.orders()
    finally:
        conn.close()
