"""The paper venue's SQLite store: round trip, restart, one transaction per step, typed errors."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal as D
from pathlib import Path

import pytest

from machines.errors import TradekernelError
from storage.errors import JournalError
from storage.venue_store import (
    SCHEMA_VERSION,
    Counters,
    StoredFill,
    StoredOrder,
    VenueStore,
    VenueStoreCorrupt,
    VenueStoreError,
    VenueStoreOpenError,
    VenueStoreVersionError,
    VenueStoreWriteError,
    read_orders,
)


def an_order(coid: str = "c-1", **changes: object) -> StoredOrder:
    fields: dict[str, object] = {
        "client_order_id": coid,
        "venue_order_id": "V1",
        "instrument": "BTCUSDT",
        "side": "buy",
        "order_type": "limit",
        "tif": "gtc",
        "qty": D("0.01"),
        "price": D("39400.00"),
        "status": "new",
        "cum_qty": D("0"),
        "leaves_qty": D("0.01"),
        "reason": None,
        "duplicate_submits": 0,
        "created_ts_ms": 1_610_064_000_000,
        "priority": 1,
    }
    fields.update(changes)
    return StoredOrder(**fields)  # type: ignore[arg-type]


def a_fill(seq: int, coid: str = "c-1", qty: str = "0.004") -> StoredFill:
    return StoredFill(
        fill_seq=seq,
        trade_id=f"F{seq}",
        client_order_id=coid,
        qty=D(qty),
        price=D("39400.00"),
        fee=D("0.0158"),
        ts_ms=1_610_064_003_000 + seq,
    )


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "venue.db")


def test_a_new_store_is_empty_with_counters_at_one(path: str) -> None:
    with VenueStore.open(path) as store:
        state = store.load()
        assert state.orders == ()
        assert state.counters == Counters(1, 1, 1)
        assert state.session == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.closed


def test_orders_and_fills_round_trip_through_a_restart(path: str) -> None:
    with VenueStore.open(path) as store:
        store.save_step([an_order()], [], Counters(2, 1, 2))
        partial = an_order(status="partially_filled", cum_qty=D("0.004"), leaves_qty=D("0.006"))
        store.save_step(
            [partial, an_order("c-2", venue_order_id="V2", price=None, order_type="market")],
            [a_fill(1)],
            Counters(3, 2, 3),
        )
    with VenueStore.open(path) as again:
        state = again.load()
        assert state.session == 2
        assert state.counters == Counters(3, 2, 3)
        first, second = state.orders
        assert first == an_order(
            status="partially_filled", cum_qty=D("0.004"), leaves_qty=D("0.006"), fills=(a_fill(1),)
        )
        assert (second.client_order_id, second.price, second.fills) == ("c-2", None, ())
        assert isinstance(first.qty, D)
        assert str(first.price) == "39400.00"  # decimals come back exactly as written
        assert again.orders() == list(state.orders)


def test_duplicate_submits_are_persisted(path: str) -> None:
    with VenueStore.open(path) as store:
        store.save_step([an_order()], [], Counters(2, 1, 2))
        store.save_step([an_order(duplicate_submits=1)], [], Counters(2, 1, 2))
    assert read_orders(path)[0].duplicate_submits == 1


def test_a_step_is_atomic_a_failed_fill_leaves_nothing_of_it(path: str) -> None:
    with VenueStore.open(path) as store:
        store.save_step([an_order()], [a_fill(1)], Counters(2, 2, 2))
        # a fill that reuses a trade id is refused, and the order change of the same step is not saved
        bad = StoredFill(2, "F1", "c-1", D("1"), D("1"), D("0"), 0)
        with pytest.raises(VenueStoreWriteError, match="step refused"):
            store.save_step([an_order(status="filled")], [bad], Counters(2, 3, 2))
        state = store.load()
        assert state.orders[0].status == "new"
        assert state.counters == Counters(2, 2, 2)
        assert [f.trade_id for f in state.orders[0].fills] == ["F1"]


def test_a_second_venue_on_the_same_file_is_refused(path: str) -> None:
    with VenueStore.open(path), pytest.raises(VenueStoreOpenError, match="already open"):
        VenueStore.open(path)


def test_read_orders_works_while_a_venue_holds_the_file(path: str) -> None:
    with VenueStore.open(path) as store:
        store.save_step([an_order()], [a_fill(1)], Counters(2, 2, 2))
        (order,) = read_orders(path)
        assert order.fills == (a_fill(1),)


def test_read_orders_of_a_store_not_yet_given_its_schema_is_no_orders(path: str) -> None:
    # The instant between a venue creating its file and committing the schema: an empty database.
    sqlite3.connect(path).close()
    Path(path).touch()
    assert read_orders(path) == []


def test_read_orders_of_another_sqlite_database_is_refused(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(VenueStoreOpenError, match="not a venue store"):
        read_orders(path)


def test_a_corrupt_file_is_a_typed_error(path: str) -> None:
    Path(path).write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(VenueStoreCorrupt, match=r"venue\.db"):
        VenueStore.open(path)
    with pytest.raises(VenueStoreCorrupt):
        read_orders(path)


def test_a_foreign_database_is_refused_untouched(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE stuff (x)")
    conn.close()
    with pytest.raises(VenueStoreOpenError, match="not a venue store"):
        VenueStore.open(path)
    with pytest.raises(VenueStoreOpenError, match="not a venue store"):
        read_orders(path)


def test_another_schema_version_is_refused(path: str) -> None:
    VenueStore.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(VenueStoreVersionError, match="version 7"):
        VenueStore.open(path)
    with pytest.raises(VenueStoreVersionError, match="version 7"):
        read_orders(path)


def test_missing_tables_and_bad_rows_are_corrupt(path: str) -> None:
    VenueStore.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE orders SET qty = 'x'")
    conn.execute(
        "INSERT INTO orders VALUES "
        "('c', 'V1', 'X', 'buy', 'limit', 'gtc', 'abc', NULL, 'new', '0', '1', NULL, 0, 0, 1, 'local')"
    )
    conn.close()
    with pytest.raises(VenueStoreCorrupt, match="order c qty is not a decimal"):
        read_orders(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM meta WHERE key = 'next_fill_seq'")
    conn.execute("DELETE FROM orders")
    conn.close()
    with VenueStore.open(path) as store, pytest.raises(VenueStoreCorrupt, match="bad counters"):
        store.load()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE fills")
    conn.close()
    with pytest.raises(VenueStoreCorrupt, match="lacks tables fills"):
        VenueStore.open(path)
    with pytest.raises(VenueStoreCorrupt, match="lacks tables fills"):
        read_orders(path)


def test_missing_session_counter_is_corrupt(path: str) -> None:
    VenueStore.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM meta WHERE key = 'session'")
    conn.close()
    with pytest.raises(VenueStoreCorrupt, match="session"):
        VenueStore.open(path)


def test_unusable_paths_are_open_errors(tmp_path: Path) -> None:
    with pytest.raises(VenueStoreOpenError, match="does not exist"):
        VenueStore.open(str(tmp_path / "nope" / "venue.db"))
    with pytest.raises(VenueStoreOpenError, match="is a directory"):
        VenueStore.open(str(tmp_path))
    with pytest.raises(VenueStoreOpenError, match="no venue store"):
        read_orders(str(tmp_path / "missing.db"))


def test_a_closed_store_refuses_use(path: str) -> None:
    store = VenueStore.open(path)
    store.close()
    store.close()
    with pytest.raises(VenueStoreError, match="closed"):
        store.load()


@pytest.mark.parametrize("text", ["NaN", "Infinity", " 1", "1_0", "\u0661", ""])
def test_a_decimal_column_that_is_no_finite_plain_number_is_corrupt(path: str, text: str) -> None:
    VenueStore.open(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO orders VALUES ('c', 'V1', 'X', 'buy', 'limit', 'gtc', '1', ?, 'new', '0', '1', NULL, 0, 0, 1, "
        "'local')",
        (text,),
    )
    conn.close()
    with pytest.raises(VenueStoreCorrupt, match=f"order c price is not a decimal: {re.escape(repr(text))}$"):
        read_orders(path)


def test_venue_store_errors_are_tradekernel_errors() -> None:
    family = (VenueStoreOpenError, VenueStoreCorrupt, VenueStoreVersionError, VenueStoreWriteError)
    assert all(issubclass(error, VenueStoreError) for error in family)
    assert issubclass(VenueStoreError, TradekernelError)
    assert not issubclass(VenueStoreError, JournalError)


V1_SCHEMA = (
    "CREATE TABLE orders (client_order_id TEXT PRIMARY KEY, venue_order_id TEXT NOT NULL, instrument TEXT NOT NULL, "
    "side TEXT NOT NULL, order_type TEXT NOT NULL, tif TEXT NOT NULL, qty TEXT NOT NULL, price TEXT, "
    "status TEXT NOT NULL, cum_qty TEXT NOT NULL, leaves_qty TEXT NOT NULL, reason TEXT, "
    "duplicate_submits INTEGER NOT NULL, created_ts_ms INTEGER NOT NULL, priority INTEGER NOT NULL)",
    "CREATE TABLE fills (fill_seq INTEGER PRIMARY KEY, trade_id TEXT NOT NULL, client_order_id TEXT NOT NULL, "
    "qty TEXT NOT NULL, price TEXT NOT NULL, fee TEXT NOT NULL, ts_ms INTEGER NOT NULL)",
    "CREATE UNIQUE INDEX fills_trade_id ON fills (trade_id)",
    "CREATE INDEX fills_order ON fills (client_order_id, fill_seq)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta VALUES ('next_venue_order', 3), ('next_fill_seq', 2), ('next_priority', 3), ('session', 4)",
    "INSERT INTO orders VALUES ('c-1', 'V1', 'BTCUSDT', 'buy', 'limit', 'gtc', '0.01', '39400.00', "
    "'partially_filled', '0.004', '0.006', NULL, 0, 1, 1)",
    "INSERT INTO orders VALUES ('c-2', 'V2', 'BTCUSDT', 'sell', 'limit', 'gtc', '1', '40000', 'new', '0', '1', "
    "NULL, 2, 2, 2)",
    "INSERT INTO fills VALUES (1, 'F1', 'c-1', '0.004', '39400.00', '0.0158', 3)",
    "PRAGMA user_version = 1",
)


def test_a_version_1_store_is_read_as_is_and_migrated_with_every_order_under_local(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.close()
    before = read_orders(path)  # read-only: not migrated, read as local's
    assert [(o.account, o.client_order_id, len(o.fills)) for o in before] == [("local", "c-1", 1), ("local", "c-2", 0)]
    with VenueStore.open(path) as store:
        state = store.load()
        assert (state.session, state.counters, state.balances) == (5, Counters(3, 2, 3), ())
        assert [(o.account, o.client_order_id, o.cum_qty, o.duplicate_submits) for o in state.orders] == [
            ("local", "c-1", D("0.004"), 0),
            ("local", "c-2", D("0"), 2),
        ]
        assert [(f.account, f.trade_id, f.fee) for f in state.orders[0].fills] == [("local", "F1", D("0.0158"))]
        assert [o.client_order_id for o in store.open_orders_after("", 10, "local")] == ["c-1", "c-2"]
        assert store.open_orders_after("", 10, "other") == []
        assert store.last_fill_seq("local") == 1
        # Another account may now use the same client order id.
        store.save_step([an_order("c-1", account="other", venue_order_id="V3")], [], Counters(4, 2, 4))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()
    assert sorted((o.account, o.client_order_id) for o in read_orders(path)) == [
        ("local", "c-1"),
        ("local", "c-2"),
        ("other", "c-1"),
    ]


def test_balances_are_saved_with_the_step_and_read_back(path: str) -> None:
    with VenueStore.open(path) as store:
        store.save_step(
            [an_order()],
            [a_fill(1)],
            Counters(2, 2, 2),
            [("local", "USDT", D("99842.3842")), ("local", "BTC", D("1.004"))],
        )
        store.save_step([], [], Counters(2, 2, 2), [("local", "USDT", D("100"))])
    with VenueStore.open(path) as store:
        assert store.load().balances == (("local", "BTC", D("1.004")), ("local", "USDT", D("100")))
