"""Fleet queries on a real PostgreSQL: ``audit tail|timeline|entities|fills|stats --db postgresql://``
and the store's views agree with each local journal (plus ``kernel_id``), two journals shipped."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from storage.fleet.errors import StoreUnavailable, StoreVersionError
from storage.fleet.reader import FleetReader
from tests.conftest import run_cli
from tests.fleet.journals import journal_id, paper_run
from tests.fleet.kernels import audit_json
from tests.fleet.pg import PgCluster, free_port


@pytest.fixture(scope="module")
def fleet(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Path]]:
    """A store holding two paper runs' journals (shipped by ``tradekernel ship``): ``(dsn, {kernel id: journal})``."""
    dsn = pg_cluster.create_database()
    journals: dict[str, Path] = {}
    for name in ("a", "b"):
        db = tmp_path_factory.mktemp(name) / "journal.db"
        paper_run(db)
        shipped = run_cli("ship", "--db", str(db), "--to", dsn, timeout=60)
        assert shipped.returncode == 0, shipped.stderr
        journals[journal_id(db)] = db
    return dsn, journals


def with_kernel(kernel_id: str, rows: object) -> list[dict[str, object]]:
    assert isinstance(rows, list)
    return [{"kernel_id": kernel_id, **row} for row in rows]


def test_tail_timeline_and_entities_of_one_kernel_are_the_journal_s_plus_kernel_id(
    fleet: tuple[str, dict[str, Path]],
) -> None:
    dsn, journals = fleet
    for kernel_id, db in journals.items():
        local, store = ("--db", str(db)), ("--db", dsn, "--kernel", kernel_id)
        assert audit_json("tail", "-n", "7", *store) == with_kernel(kernel_id, audit_json("tail", "-n", "7", *local))
        assert audit_json("tail", "--machine", "order", *store) == with_kernel(
            kernel_id, audit_json("tail", "--machine", "order", *local)
        )
        order = f"o{kernel_id}-1-000001"  # the first order of run 1 (client order ids embed the journal id)
        assert audit_json("timeline", order, *store) == with_kernel(kernel_id, audit_json("timeline", order, *local))
        assert audit_json("entities", *store) == with_kernel(kernel_id, audit_json("entities", *local))
        assert audit_json("entities", "--live", *store) == with_kernel(
            kernel_id, audit_json("entities", "--live", *local)
        )


def test_across_kernels_every_row_is_listed_with_its_kernel(fleet: tuple[str, dict[str, Path]]) -> None:
    dsn, journals = fleet
    rows = audit_json("tail", "-n", "100000", "--db", dsn)
    assert isinstance(rows, list)
    for kernel_id, db in journals.items():
        with sqlite3.connect(db) as conn:
            (count,) = conn.execute("SELECT count(*) FROM transitions").fetchone()
        seqs = [row["seq"] for row in rows if row["kernel_id"] == kernel_id]
        assert seqs == list(range(1, count + 1))  # each kernel's rows in journal order
    trading = audit_json("timeline", "kernel", "--machine", "trading", "--db", dsn)
    assert isinstance(trading, list)
    assert sorted((row["kernel_id"], row["trigger"], row["dest"]) for row in trading) == [
        (kernel_id, "create", "active") for kernel_id in sorted(journals)
    ]


def test_stats_count_what_each_journal_holds(fleet: tuple[str, dict[str, Path]]) -> None:
    dsn, journals = fleet
    for kernel_id, db in journals.items():
        local = audit_json("stats", "--db", str(db))
        store = audit_json("stats", "--db", dsn, "--kernel", kernel_id)
        assert isinstance(local, dict)
        assert isinstance(store, dict)
        for key in ("transitions", "transitions_per_machine", "live_entities", "ended_entities", "runs", "last_seq"):
            assert store[key] == local[key], key
        assert [k["kernel_id"] for k in store["kernels"]] == [kernel_id]
    both = audit_json("stats", "--db", dsn)
    assert isinstance(both, dict)
    assert both["runs"] == {"stopped": 2}
    human = run_cli("audit", "stats", "--db", dsn, timeout=60)
    assert human.returncode == 0
    assert "fleet store    postgresql://postgres@127.0.0.1:" in human.stdout
    assert all(kernel_id in human.stdout for kernel_id in journals)


def test_human_fills_show_the_kernel_and_numbers_to_the_tick_lot_and_currency(
    fleet: tuple[str, dict[str, Path]],
) -> None:
    dsn, journals = fleet
    kernel_id = sorted(journals)[0]
    shown = run_cli("audit", "fills", "--db", dsn, "--kernel", kernel_id, timeout=60)
    assert shown.returncode == 0, shown.stderr
    header, _rule, first = shown.stdout.splitlines()[:3]
    assert header.split() == [
        "kernel",
        "time",
        "(UTC)",
        "order",
        "instrument",
        "side",
        "qty",
        "price",
        "fee",
        "liquidity",
    ]
    kernel, time, order, instrument, side, qty, price, fee, _liquidity = first.split()
    assert (kernel, order, instrument) == (kernel_id, f"o{kernel_id}-1-000001", "BTCUSDT")
    assert time.startswith("20")
    assert time.endswith("Z")
    assert side in ("buy", "sell")
    assert qty == "0.00100"  # the lot (0.00001)
    assert len(price.split(".")[1]) == 2  # the tick (0.01)
    assert fee == "0.00"  # USDT, to the cent


VIEW_COLUMNS = {
    "fills": "seq, time, ts_ns, run, client_order_id, instrument, side, qty, price, fee, liquidity, trade_id, "
    "venue_time, trigger",
    "trading_states": "seq, time, ts_ns, run, source, dest, trigger, reason",
    "orders": "client_order_id, state, live, instrument, side, type, tif, qty, price, cum_qty, leaves_qty, fees, "
    "venue_order_id, tag, origin, created_time, created_ts_ns, last_seq, last_time, last_ts_ns",
    "positions": "instrument, state, qty, fees, cash, fills, last_trade_id, last_seq, last_time, last_ts_ns",
}
ORDER_BY = {"fills": "seq", "trading_states": "seq", "orders": "client_order_id", "positions": "instrument"}


def as_decimal(row: tuple[object, ...]) -> tuple[object, ...]:
    """Numbers compared by value: the store's sums are trimmed (0.001), the journal's keep its zeros (0.001000)."""
    out: list[object] = []
    for value in row:
        try:
            out.append(Decimal(str(value)) if isinstance(value, str) and "." in value else value)
        except ArithmeticError:
            out.append(value)
    return tuple(out)


@pytest.mark.parametrize("view", sorted(VIEW_COLUMNS))
def test_the_store_s_views_agree_with_the_journal_s(fleet: tuple[str, dict[str, Path]], view: str) -> None:
    dsn, journals = fleet
    columns, order = VIEW_COLUMNS[view], ORDER_BY[view]
    for kernel_id, db in journals.items():
        with sqlite3.connect(db) as conn:
            local = conn.execute(f"SELECT {columns} FROM {view} ORDER BY {order}").fetchall()
        with psycopg.connect(dsn) as pg:
            store = pg.execute(
                f"SELECT {columns} FROM {view} WHERE kernel_id = %s ORDER BY {order}".encode(), (kernel_id,)
            ).fetchall()
        assert local, view
        assert [as_decimal(r) for r in store] == [as_decimal(r) for r in local]


def test_fleet_errors_exit_2_with_a_message(fleet: tuple[str, dict[str, Path]], pg_cluster: PgCluster) -> None:
    dsn, journals = fleet
    db = next(iter(journals.values()))
    cases = [
        (("tail", "--db", dsn, "--kernel", "nosuchkernel"), "holds no kernel 'nosuchkernel'"),
        (("tail", "--db", str(db), "--kernel", "x"), "--kernel narrows the fleet store"),
        (("verify", "--db", dsn), "reads a journal file"),
        (("timeline", "nosuchentity", "--db", dsn), "no transitions for entity 'nosuchentity'"),
        (("fills", "--db", f"postgresql://postgres@127.0.0.1:{free_port()}/x"), "unreachable"),
        (("stats", "--db", pg_cluster.create_database()), "is not a fleet store"),
    ]
    for argv, message in cases:
        result = run_cli("audit", *argv, timeout=60)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert message in result.stderr, (argv, result.stderr)


def test_the_reader_refuses_a_store_from_a_newer_tradekernel(pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.create_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT INTO schema_migrations (name) VALUES ('m001_core_tables'), ('m999_future')")
    with pytest.raises(StoreVersionError, match="m999_future"):
        FleetReader(dsn)
    with pytest.raises(StoreUnavailable):
        FleetReader(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout_s=2)
