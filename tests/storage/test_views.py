"""The reader views of migration 7 (``storage/views.py``), the shipped Datasette metadata and its
canned queries, on a small scripted journal whose every row is written out by hand
(``tests/storage/scripted_journal.py``)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storage import Journal
from storage.audit import AuditReader
from storage.datasette import METADATA_PATH, canned_queries, load_metadata, metadata_for
from storage.schema import SCHEMA_VERSION
from storage.views import VIEWS_V7
from tests.conftest import REPO, FakeClock, run_cli
from tests.storage.conftest import query, raw
from tests.storage.scripted_journal import DAY_NS, MS, T0, build_scripted


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("views") / "scripted.db")
    build_scripted(path)
    return path


def rows(path: str, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with raw(path, readonly=True) as conn:
        return conn.execute(sql, params).fetchall()


def columns(path: str, view: str) -> list[str]:
    return [row[1] for row in query(path, f"PRAGMA table_info({view})")]


DAY1 = "2027-01-15T08:00:00"
DAY2 = "2027-01-16T08:00:00"


def test_the_journal_is_as_scripted(scripted: str) -> None:
    assert query(scripted, "SELECT max(seq) FROM transitions") == [(29,)]
    assert query(scripted, "SELECT trigger FROM transitions WHERE seq IN (18, 21, 28) ORDER BY seq") == [
        ("fill",),
        ("reconcile_fill",),
        ("journal_failed",),
    ]


def test_fills_lists_each_applied_fill_once(scripted: str) -> None:
    assert columns(scripted, "fills") == [
        "seq", "time", "ts_ns", "run", "client_order_id", "instrument", "side", "qty", "price", "fee",
        "liquidity", "trade_id", "venue_time", "trigger",
    ]  # fmt: skip
    assert rows(scripted, "SELECT * FROM fills") == [
        (12, f"{DAY1}.010Z", T0 + 10_999_999, 1, "b1", "BTCUSDT", "buy", "1", "9.5", "0.01", "maker", "T1",
         f"{DAY1}.008Z", "fill"),
        (15, f"{DAY1}.020Z", T0 + 20 * MS, 1, "s1", "ETHUSDT", "sell", "1", "21", "0", None, "T2", None, "fill"),
        (19, f"{DAY2}.005Z", T0 + DAY_NS + 5 * MS, 1, "b1", "BTCUSDT", "buy", "3", "10", "0.02", None, "T3", None,
         "fill"),
        (21, f"{DAY2}.005Z", T0 + DAY_NS + 5 * MS, 1, "c1", "BTCUSDT", "buy", "1", "9", "0.009", None, "T4", None,
         "reconcile_fill"),
    ]  # fmt: skip


def test_decimals_stay_exact_text(scripted: str) -> None:
    assert rows(scripted, "SELECT DISTINCT typeof(qty), typeof(price), typeof(fee) FROM fills") == [
        ("text", "text", "text")
    ]
    assert rows(scripted, "SELECT DISTINCT typeof(cum_qty), typeof(avg_px) FROM orders WHERE cum_qty != '0'") == [
        ("text", "text")
    ]


def test_orders_shows_current_state_terms_and_times(scripted: str) -> None:
    assert columns(scripted, "orders") == [
        "client_order_id", "state", "live", "instrument", "side", "type", "tif", "qty", "price", "cum_qty",
        "leaves_qty", "avg_px", "fees", "venue_order_id", "tag", "origin", "reason", "created_time",
        "created_ts_ns", "last_seq", "last_time", "last_ts_ns",
    ]  # fmt: skip
    assert rows(scripted, "SELECT * FROM orders ORDER BY client_order_id") == [
        ("b1", "filled", 0, "BTCUSDT", "buy", "limit", "gtc", "4", "10", "4", "0", "9.875", "0.03", "VB1", "",
         "kernel", None, f"{DAY1}.002Z", T0 + 2 * MS, 19, f"{DAY2}.005Z", T0 + DAY_NS + 5 * MS),
        ("c1", "partially_filled", 1, "BTCUSDT", "buy", "limit", "gtc", "2", "9", "1", "1", "9", "0.009", "VC1", "",
         "kernel", None, f"{DAY1}.002Z", T0 + 2 * MS, 21, f"{DAY2}.005Z", T0 + DAY_NS + 5 * MS),
        ("s1", "filled", 0, "ETHUSDT", "sell", "limit", "gtc", "1", "20", "1", "0", "21", "0", "VS1", "",
         "kernel", None, f"{DAY1}.002Z", T0 + 2 * MS, 15, f"{DAY1}.020Z", T0 + 20 * MS),
    ]  # fmt: skip


def test_positions_per_instrument(scripted: str) -> None:
    assert columns(scripted, "positions") == [
        "instrument", "state", "qty", "cost", "realized_pnl", "fees", "cash", "fills", "last_trade_id",
        "last_seq", "last_time", "last_ts_ns",
    ]  # fmt: skip
    assert rows(scripted, "SELECT * FROM positions ORDER BY instrument") == [
        ("BTCUSDT", "long", "5", "48.5", "0", "0.039", "-48.539", 3, "T4", 22, f"{DAY2}.005Z", T0 + DAY_NS + 5 * MS),
        ("ETHUSDT", "short", "-1", "-21", "0", "0", "21", 1, "T2", 17, f"{DAY1}.020Z", T0 + 20 * MS),
    ]


def test_trading_states_with_reasons_as_the_machine_words_them(scripted: str) -> None:
    assert columns(scripted, "trading_states") == [
        "seq",
        "time",
        "ts_ns",
        "run",
        "source",
        "dest",
        "trigger",
        "reason",
        "flatten",
    ]
    assert rows(scripted, "SELECT seq, time, run, source, dest, trigger, reason, flatten FROM trading_states") == [
        (2, f"{DAY1}.001Z", 1, None, "active", "create", None, None),
        (23, f"{DAY2}.100Z", 1, "active", "halting", "halt", "operator: test", None),
        (24, f"{DAY2}.101Z", 1, "halting", "halted", "all_canceled", None, None),
        (25, f"{DAY2}.102Z", 1, "halted", "halted", "risk_breach", "risk breach: max_position 5 > 3", None),
        (26, f"{DAY2}.103Z", 1, "halted", "active", "arm", "operator: resume", None),
        (27, f"{DAY2}.104Z", 1, "active", "halting", "health_unhealthy", "feed-r1 unhealthy: stale", 1),
        (28, f"{DAY2}.105Z", 1, "halting", "halting", "journal_failed", "journal failed: disk full", None),
    ]
    # the machine's own record of the halt under way says the same
    assert rows(scripted, "SELECT json_extract(data, '$.reason') FROM entities WHERE machine = 'trading'") == [
        ("feed-r1 unhealthy: stale",)
    ]


def test_no_monotonic_values_in_views(scripted: str) -> None:
    texts = [row[0] for row in rows(scripted, "SELECT data FROM transition_log")]
    assert len(texts) == 29
    assert [t for t in texts if "now_ms" in t or "since_ms" in t or "deadline_ms" in t] == []
    assert rows(scripted, "SELECT data FROM transition_log WHERE seq = 27") == [
        ('{"component":"feed-r1","flatten":true,"reason":"stale"}',)
    ]
    # the raw table keeps them, and so does entities: the audit reader's API reads data through it
    assert "now_ms" in rows(scripted, "SELECT data FROM transitions WHERE seq = 27")[0][0]
    assert "since_ms" in rows(scripted, "SELECT data FROM entities WHERE machine = 'trading'")[0][0]


def test_transition_log_and_anomaly_log_have_raw_ns_beside_the_time(scripted: str) -> None:
    assert columns(scripted, "transition_log") == [
        "seq",
        "time",
        "ts_ns",
        "run",
        "machine",
        "entity",
        "trigger",
        "source",
        "dest",
        "data",
    ]
    assert rows(scripted, "SELECT seq, time, ts_ns FROM transition_log WHERE seq IN (1, 12)") == [
        (1, f"{DAY1}.000Z", T0),
        (12, f"{DAY1}.010Z", T0 + 10_999_999),
    ]
    assert rows(scripted, "SELECT * FROM anomaly_log") == [
        (1, f"{DAY2}.200Z", T0 + DAY_NS + 200 * MS, 1, "feed:paper", "decode_error", "not JSON", "{x"),
        (2, f"{DAY2}.201Z", T0 + DAY_NS + 201 * MS, 1, "orders", "unknown_order", "no such order", "V9"),
    ]


def test_runs_are_listed_in_numeric_order(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    clock = FakeClock(start_ns=T0, step_ns=MS)
    for _ in range(11):
        Journal.open(path, clock=clock).close()
    assert [r[0] for r in rows(path, "SELECT run FROM runs")] == list(range(1, 12))
    assert columns(path, "runs") == [
        "run", "state", "started", "started_ns", "ended", "ended_ns", "pid", "host", "version",
        "crash_detected_by_run", "last_seq",
    ]  # fmt: skip
    first = rows(path, "SELECT run, state, started, started_ns FROM runs WHERE run = 1")
    assert first == [(1, "stopped", f"{DAY1}.001Z", T0 + MS)]


# -- the canned queries, on the scripted journal --------------------------------------------------


def canned(path: str, name: str, **params: str) -> list[tuple[Any, ...]]:
    return rows(path, canned_queries()[name]["sql"], params)


def test_the_canned_queries_shipped() -> None:
    assert sorted(canned_queries()) == ["anomalies", "fills_of_a_day", "halts", "order_history"]
    for spec in canned_queries().values():
        assert spec["title"]
        assert spec["description"]


def test_fills_of_a_day(scripted: str) -> None:
    assert canned(scripted, "fills_of_a_day", day="2027-01-16") == [
        (19, f"{DAY2}.005Z", 1, "b1", "BTCUSDT", "buy", "3", "10", "0.02", None, "T3"),
        (21, f"{DAY2}.005Z", 1, "c1", "BTCUSDT", "buy", "1", "9", "0.009", None, "T4"),
    ]
    assert [r[0] for r in canned(scripted, "fills_of_a_day", day="2027-01-15")] == [12, 15]
    assert canned(scripted, "fills_of_a_day", day="2027-01-17") == []


def test_order_history(scripted: str) -> None:
    assert canned(scripted, "order_history", client_order_id="c1") == [
        (5, f"{DAY1}.002Z", 1, "create", None, "new", '{"instrument":"BTCUSDT","price":"9","qty":"2","side":"buy"}'),
        (10, f"{DAY1}.003Z", 1, "submit", "new", "pending_new", "{}"),
        (11, f"{DAY1}.003Z", 1, "accept", "pending_new", "accepted", '{"venue_order_id":"VC1"}'),
        (21, f"{DAY2}.005Z", 1, "reconcile_fill", "accepted", "partially_filled",
         '{"fee":"0.009","price":"9","qty":"1","trade_id":"T4"}'),
    ]  # fmt: skip
    assert canned(scripted, "order_history", client_order_id="nope") == []


def test_halts_latest_first(scripted: str) -> None:
    assert canned(scripted, "halts") == [
        (28, f"{DAY2}.105Z", 1, "journal_failed", "halting", "halting", "journal failed: disk full", None),
        (27, f"{DAY2}.104Z", 1, "health_unhealthy", "active", "halting", "feed-r1 unhealthy: stale", 1),
        (25, f"{DAY2}.102Z", 1, "risk_breach", "halted", "halted", "risk breach: max_position 5 > 3", None),
        (23, f"{DAY2}.100Z", 1, "halt", "active", "halting", "operator: test", None),
    ]


def test_anomalies_latest_first_with_an_optional_source(scripted: str) -> None:
    everything = canned(scripted, "anomalies", source="")
    assert everything == [
        (2, f"{DAY2}.201Z", 1, "orders", "unknown_order", "no such order", "V9"),
        (1, f"{DAY2}.200Z", 1, "feed:paper", "decode_error", "not JSON", "{x"),
    ]
    assert canned(scripted, "anomalies", source="feed:paper") == everything[1:]


# -- migration of an existing journal ------------------------------------------------------------


def test_an_existing_v6_journal_gets_the_views_from_migrate(scripted: str, tmp_path: Path) -> None:
    path = str(tmp_path / "v6.db")
    target = sqlite3.connect(path)
    try:
        with raw(scripted, readonly=True) as source:
            source.backup(target)
    finally:
        target.close()
    with raw(path) as conn:
        for view in ("fills", "orders", "positions", "trading_states"):
            conn.execute(f"DROP VIEW {view}")
        conn.execute("DROP INDEX transitions_creates")
        conn.execute("DROP INDEX transitions_trading")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm007_reader_views'")
        conn.execute("PRAGMA user_version = 6")
    done = run_cli("migrate", "--db", path)
    assert done.returncode == 0, done
    assert f"from schema version 6 to {SCHEMA_VERSION}" in done.stdout
    assert [r[0] for r in rows(path, "SELECT seq FROM fills")] == [12, 15, 19, 21]
    assert rows(path, "SELECT instrument, qty FROM positions ORDER BY instrument") == [
        ("BTCUSDT", "5"),
        ("ETHUSDT", "-1"),
    ]


def test_the_views_use_indexes_not_a_scan_of_the_history(scripted: str) -> None:
    def plan(sql: str) -> str:
        return " / ".join(str(r[3]) for r in rows(scripted, f"EXPLAIN QUERY PLAN {sql}"))

    assert "USING INDEX transitions_fills" in plan("SELECT * FROM fills")
    assert "USING INDEX transitions_creates" in plan("SELECT * FROM orders")
    assert "USING INDEX transitions_trading" in plan("SELECT * FROM trading_states")
    for sql in ("SELECT * FROM fills", "SELECT * FROM orders", "SELECT * FROM trading_states"):
        assert not re.search(r"SCAN (t|c|transitions)\b(?! USING)", plan(sql)), plan(sql)


# -- the metadata and the docs agree with the schema ------------------------------------------------


def test_metadata_columns_are_the_schema_columns(scripted: str) -> None:
    tables = load_metadata()["databases"]["tradekernel"]["tables"]
    for name in (*VIEWS_V7, "entities", "transitions"):
        assert list(tables[name]["columns"]) == columns(scripted, name), name


def test_metadata_is_filed_under_the_journal_name() -> None:
    metadata = metadata_for("/somewhere/kernel-a.db")
    assert list(metadata["databases"]) == ["kernel-a"]
    assert "fills_of_a_day" in metadata["databases"]["kernel-a"]["queries"]


def test_metadata_ships_as_package_data() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"storage.datasette" = ["*.yml"]' in pyproject
    assert METADATA_PATH.parent == REPO / "storage" / "datasette"


def doc_columns() -> dict[str, list[str]]:
    """``docs/audit.md``: each ``#### `VIEW` `` heading, then a table whose first cells are columns."""
    text = (REPO / "docs" / "audit.md").read_text()
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"^#### `(\w+)`\n(.*?)(?=^#|\Z)", text, re.M | re.S):
        cells = re.findall(r"^\| `(\w+)` \|", match.group(2), re.M)
        found[match.group(1)] = cells
    return found


def test_docs_name_the_columns_of_every_view(scripted: str) -> None:
    documented = doc_columns()
    views = {r[0] for r in rows(scripted, "SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert set(documented) == views
    for name in views:
        assert documented[name] == columns(scripted, name), name


def sqlite_utils(*args: str) -> Any:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("sqlite-utils")), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_sqlite_utils_examples_of_the_docs(scripted: str) -> None:
    fills = sqlite_utils("query", scripted, "select * from fills where time >= '2027-01-16' order by seq")
    assert [(f["seq"], f["trade_id"], f["qty"]) for f in fills] == [(19, "T3", "3"), (21, "T4", "1")]
    live = sqlite_utils("query", scripted, "select client_order_id, state, cum_qty, avg_px from orders where live")
    assert live == [{"client_order_id": "c1", "state": "partially_filled", "cum_qty": "1", "avg_px": "9"}]
    latest = sqlite_utils(
        "query", scripted, "select time, trigger, reason from trading_states order by seq desc limit 5"
    )
    assert [r["trigger"] for r in latest] == [
        "journal_failed",
        "health_unhealthy",
        "arm",
        "risk_breach",
        "all_canceled",
    ]


# -- a journal of the paper kernel ----------------------------------------------------------------


def test_the_views_agree_with_the_audit_reader_on_a_paper_run(tmp_path: Path) -> None:
    """``tradekernel run`` (the bundled replay against the embedded venue) for a few seconds; what
    the views say must be what ``AuditReader`` (its own code, in Python) says of the same journal."""
    path = str(tmp_path / "paper.db")
    done = run_cli("run", "--db", path, "--duration", "4", "--status-view", "off", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    with AuditReader(path) as reader:
        expected_fills = [
            (f["client_order_id"], f["instrument"], f["side"], f["qty"], f["price"], f["fee"], f["trade_id"])
            for f in reader.fills()
        ]
        expected_orders = {
            e["entity"]: (e["state"], Decimal(e["data"]["cum_qty"]), Decimal(e["data"]["leaves_qty"]))
            for e in reader.entities("order")
        }
        expected_positions = {e["entity"]: Decimal(e["data"]["qty"]) for e in reader.entities("position")}
    fills = rows(path, "SELECT client_order_id, instrument, side, qty, price, fee, trade_id FROM fills")
    assert [(*f[:3], Decimal(f[3]), Decimal(f[4]), Decimal(f[5]), f[6]) for f in fills] == expected_fills
    orders = rows(path, "SELECT client_order_id, state, cum_qty, leaves_qty FROM orders")
    assert {o[0]: (o[1], Decimal(o[2]), Decimal(o[3])) for o in orders} == expected_orders
    positions = rows(path, "SELECT instrument, qty FROM positions")
    assert {p[0]: Decimal(p[1]) for p in positions} == expected_positions
    assert rows(path, "SELECT run, state FROM runs") == [(1, "stopped")]
    # every canned query runs on it; those with a parameter are asked about what the run did
    journaled = rows(path, "SELECT seq, time FROM fills")
    for day in {time[:10] for _, time in journaled}:
        by_day = [r[0] for r in canned(path, "fills_of_a_day", day=day)]
        assert by_day == [seq for seq, time in journaled if time.startswith(day)]
    for client_order_id, last_seq in rows(path, "SELECT client_order_id, last_seq FROM orders"):
        history = canned(path, "order_history", client_order_id=client_order_id)
        assert history[0][3] == "create"
        assert history[-1][0] == last_seq
    assert {r[3] for r in canned(path, "halts")} <= {"halt", "risk_breach", "health_unhealthy", "journal_failed"}
    assert isinstance(canned(path, "anomalies", source=""), list)
