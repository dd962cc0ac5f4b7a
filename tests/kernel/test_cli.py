"""The ``tradekernel`` command line (``kernel.cli``, ``kernel.cli.audit``).

Most cases call ``kernel.cli.main([...])`` in-process (fast, and the toy machine is registered here so
``audit verify`` can replay toy rows); the process-level behaviours (``--help``, ``--version``, exit
status of ``python -m kernel``, a closed stdout pipe, other tools reading the file) run in real
subprocesses, each with a timeout.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import importlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

import kernel
from kernel.cli import main
from kernel.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from machines import RUN, TRADING, registry
from machines.diagram import BEGIN, END, markdown, mermaid
from storage import SCHEMA_VERSION, Journal
from storage.schema import MIGRATION_NAMES, MIGRATIONS
from tests.conftest import REPO, FakeClock, run_cli
from tests.toy import TOY

SUBPROCESS_TIMEOUT = 30
PUBLIC_ROW_KEYS = ["seq", "ts", "ts_ns", "run", "machine", "entity", "trigger", "source", "dest", "data", "hash"]
TRANSITION_HEADERS = ["seq", "time (UTC)", "run", "machine", "entity", "trigger", "source -> dest", "data"]

# -- journals ---------------------------------------------------------------------------------


def build_toy_journal(path: str, clock: FakeClock) -> None:
    """One run, three toy entities; 12 rows:

    1 run 1 create | 2-6 t1 create, start, add 2, add 3, finish (done) | 7-9 t2 create, start,
    add 1.5 (active) | 10-11 t3 create, drop (dropped) | 12 run 1 stop.
    """
    with Journal.open(path, clock=clock) as journal:
        t1, created = TOY.create("t1", target=5)
        journal.append(created, t1)
        journal.fire(TOY, t1, "start")
        journal.fire(TOY, t1, "add", qty=2)
        journal.fire(TOY, t1, "add", qty=Decimal("3"))
        journal.fire(TOY, t1, "finish")
        t2, created = TOY.create("t2")
        journal.append(created, t2)
        journal.fire(TOY, t2, "start")
        journal.fire(TOY, t2, "add", qty=Decimal("1.5"))
        t3, created = TOY.create("t3")
        journal.append(created, t3)
        journal.fire(TOY, t3, "drop")


def build_runs_journal(path: str, clock: FakeClock, runs: int = 3) -> None:
    """Only ``run`` rows (a subprocess knows no toy machine): rows 2k-1 create and 2k stop run k."""
    for _ in range(runs):
        Journal.open(path, clock=clock).close()


def build_v1_journal(path: str) -> None:
    """A journal as the first schema version left it (before the audit views and guards)."""
    db = sqlite_utils.Database(path)
    try:
        MIGRATIONS.apply(db, stop_before=MIGRATION_NAMES[1])
        db.execute("PRAGMA user_version=1")
    finally:
        db.close()


def tamper(path: str, sql: str, params: tuple[Any, ...] = (), *, drop_trigger: str | None = None) -> None:
    """Change the file behind the journal's back, as an attacker or a careless shell would."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        if drop_trigger:
            conn.execute(f"DROP TRIGGER {drop_trigger}")
        conn.execute(sql, params)
        conn.commit()


@pytest.fixture
def toy_db(db_path: str, clock: FakeClock) -> str:
    build_toy_journal(db_path, clock)
    return db_path


@pytest.fixture
def runs_db(db_path: str, clock: FakeClock) -> str:
    build_runs_journal(db_path, clock)
    return db_path


@pytest.fixture
def empty_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A journal with the current schema and no rows at all (beside ``db_path``, not at it)."""
    path = str(tmp_path / "empty.db")
    assert main(["migrate", "--db", path]) == 0
    capsys.readouterr()
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``main(args)`` in-process; return (exit status, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> list[list[str]]:
    """Split a ``format_table`` rendering into its header line, separator and rows (on 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.strip("\n").splitlines()]


# -- the process: --help, --version, argument errors -------------------------------------------


def test_help_in_a_subprocess() -> None:
    result = run_cli("--help", timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tradekernel")
    for command in ("audit", "diagram", "migrate"):
        assert command in result.stdout
    # argparse wraps to the terminal width: compare with whitespace normalised.
    assert "Exit status: 0 ok, 1 a check failed, 2 usage or input error." in " ".join(result.stdout.split())
    assert result.stderr == ""


def test_version_in_a_subprocess() -> None:
    result = run_cli("--version", timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tradekernel {kernel.__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["audit"],
        ["audit", "frobnicate"],
        ["audit", "tail", "-n", "0"],
        ["audit", "tail", "-n", "-3"],
        ["audit", "tail", "-n", "many"],
        ["audit", "export", "--since", "-1"],
        ["audit", "export", "--format", "xml"],
        ["audit", "timeline"],
        ["diagram", "--bogus"],
    ],
    ids=lambda argv: " ".join(argv) or "(nothing)",
)
def test_argument_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "error:" in err


def test_positive_and_non_negative_messages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["audit", "tail", "-n", "0"])
    assert "must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "export", "--since", "-1"])
    assert "must be zero or more" in capsys.readouterr().err


# -- journal errors: exit 2 with a message ----------------------------------------------------


def test_missing_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.db")
    code, out, err = cli(capsys, "audit", "tail", "--db", missing)
    assert (code, out) == (2, "")
    assert err == f"tradekernel: error: no journal at {missing}\n"
    assert not os.path.exists(missing), "audit must never create a journal"


def test_default_db_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = cli(capsys, "audit", "stats")
    assert code == 2
    assert "no journal at tradekernel.db" in err
    build_toy_journal(str(tmp_path / "tradekernel.db"), FakeClock())
    code, out, _err = cli(capsys, "audit", "stats", "--json")
    assert code == 0
    assert json.loads(out)["transitions"] == 12


def test_garbage_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database, just some text " * 100)
    code, out, err = cli(capsys, "audit", "tail", "--db", str(garbage))
    assert (code, out) == (2, "")
    assert err.startswith("tradekernel: error: ")
    assert str(garbage) in err
    assert "not a tradekernel journal" in err


def test_foreign_sqlite_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = str(tmp_path / "foreign.db")
    with contextlib.closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
        conn.commit()
    code, out, err = cli(capsys, "audit", "entities", "--db", foreign)
    assert (code, out) == (2, "")
    assert "is not a tradekernel journal (no schema version)" in err
    code, out, err = cli(capsys, "migrate", "--db", foreign)
    assert (code, out) == (2, "")
    assert "not a tradekernel journal" in err
    assert "customers" in err


def test_journal_newer_than_the_code(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.closing(sqlite3.connect(toy_db)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    code, out, err = cli(capsys, "audit", "verify", "--db", toy_db)
    assert (code, out) == (2, "")
    assert f"schema version {SCHEMA_VERSION + 1}" in err
    assert "upgrade tradekernel" in err


# -- audit tail -------------------------------------------------------------------------------


def test_tail_human_table(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "tail", "--db", toy_db)
    assert (code, err) == (0, "")
    header, separator, *rows = table_rows(out)
    assert header == TRANSITION_HEADERS
    assert set(out.splitlines()[1]) == {"-", " "}
    assert len(separator) == len(TRANSITION_HEADERS)
    assert [row[0] for row in rows] == [str(seq) for seq in range(1, 13)]
    assert rows[1] == ["2", "2023-11-14T22:13:20.000Z", "1", "toy", "t1", "create", "(new) -> idle", '{"target":5}']
    assert rows[4][5:] == ["add", "active -> active", '{"qty":"3"}']
    assert rows[-1][3:7] == ["run", "1", "stop", "running -> stopped"]


def test_tail_n_machine_and_entity(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    def seqs(*args: str) -> list[int]:
        code, out, _ = cli(capsys, "audit", "tail", "--db", toy_db, "--json", *args)
        assert code == 0
        return [row["seq"] for row in json.loads(out)]

    assert seqs() == list(range(1, 13))
    assert seqs("-n", "3") == [10, 11, 12]
    assert seqs("-n", "2", "--machine", "toy") == [10, 11]
    assert seqs("--machine", "run") == [1, 12]
    assert seqs("--entity", "t1") == [2, 3, 4, 5, 6]
    assert seqs("--entity", "t1", "--machine", "toy", "-n", "1") == [6]
    assert seqs("--entity", "t1", "--machine", "run") == []


def test_tail_json_shape(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "audit", "tail", "--db", toy_db, "--json", "--entity", "t2")
    assert code == 0
    rows = json.loads(out)
    assert isinstance(rows, list)
    assert [list(row) for row in rows] == [PUBLIC_ROW_KEYS] * 3
    create, start, add = rows
    assert {k: create[k] for k in ("seq", "run", "machine", "entity", "trigger", "source", "dest", "data")} == {
        "seq": 7,
        "run": 1,
        "machine": "toy",
        "entity": "t2",
        "trigger": "create",
        "source": None,
        "dest": "idle",
        "data": {},
    }
    assert (start["trigger"], start["source"], start["dest"]) == ("start", "idle", "active")
    assert add["data"] == {"qty": "1.5"}
    assert add["ts"].endswith("Z")
    assert add["ts"].startswith("2023-11-14T22:13:20.")
    assert isinstance(add["ts_ns"], int)
    assert len(add["hash"]) == 64


def test_tail_with_nothing_to_show(toy_db: str, empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "audit", "tail", "--db", toy_db, "--machine", "order") == (0, "no transitions\n", "")
    code, out, err = cli(capsys, "audit", "tail", "--db", toy_db, "--machine", "nobody")
    assert (code, out) == (2, "")  # an unknown machine is a usage error (issue 14, item 12)
    assert err.startswith("tradekernel audit tail: error: unknown machine 'nobody'; known machines: ")
    assert cli(capsys, "audit", "tail", "--db", empty_db) == (0, "no transitions\n", "")
    assert cli(capsys, "audit", "tail", "--db", empty_db, "--json") == (0, "[]\n", "")


# -- audit timeline ---------------------------------------------------------------------------


def test_timeline_human(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "timeline", "t1", "--db", toy_db)
    assert (code, err) == (0, "")
    header, _separator, *rows = table_rows(out)
    assert header == TRANSITION_HEADERS
    assert [(row[0], row[5], row[6]) for row in rows] == [
        ("2", "create", "(new) -> idle"),
        ("3", "start", "idle -> active"),
        ("4", "add", "active -> active"),
        ("5", "add", "active -> active"),
        ("6", "finish", "active -> done"),
    ]


def test_timeline_json(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "audit", "timeline", "t1", "--db", toy_db, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [row["trigger"] for row in rows] == ["create", "start", "add", "add", "finish"]
    assert [row["data"] for row in rows] == [{"target": 5}, {}, {"qty": 2}, {"qty": "3"}, {}]
    code, out, _ = cli(capsys, "audit", "timeline", "1", "--machine", "run", "--db", toy_db, "--json")
    assert code == 0
    assert [(row["seq"], row["trigger"]) for row in json.loads(out)] == [(1, "create"), (12, "stop")]


def test_timeline_of_an_unknown_entity(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "timeline", "t404", "--db", toy_db)
    assert (code, out) == (2, "")
    assert err == f"tradekernel: error: no transitions for entity 't404' in {toy_db}\n"
    code, out, err = cli(capsys, "audit", "timeline", "t1", "--machine", "run", "--db", toy_db, "--json")
    assert (code, out) == (2, "")
    assert err == f"tradekernel: error: no transitions for entity 't1' of machine 'run' in {toy_db}\n"


# -- audit entities ---------------------------------------------------------------------------


def test_entities_human(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "entities", "--db", toy_db)
    assert (code, err) == (0, "")
    header, _separator, *rows = table_rows(out)
    assert header == ["machine", "entity", "state", "live", "seq", "data"]
    assert [row[:5] for row in rows] == [
        ["run", "1", "stopped", "no", "12"],
        ["toy", "t1", "done", "no", "6"],
        ["toy", "t2", "active", "yes", "9"],
        ["toy", "t3", "dropped", "no", "11"],
    ]
    assert rows[2][5] == '{"starts":1,"target":"10","total":"1.5"}'
    # The run's data is longer than a cell: it is cut with an ellipsis.
    assert rows[0][5].endswith("…")
    assert len(rows[0][5]) == 80


def test_entities_json(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "audit", "entities", "--db", toy_db, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [list(row) for row in rows] == [["machine", "entity", "state", "seq", "live", "data"]] * 4
    by_id = {(row["machine"], row["entity"]): row for row in rows}
    assert by_id[("toy", "t1")] == {
        "machine": "toy",
        "entity": "t1",
        "state": "done",
        "seq": 6,
        "live": False,
        "data": {"starts": 1, "target": "5", "total": "5"},
    }
    assert by_id[("toy", "t2")]["data"]["total"] == "1.5"
    assert Decimal(by_id[("toy", "t2")]["data"]["total"]) == Decimal("1.5")
    run = by_id[("run", "1")]
    assert (run["state"], run["live"], run["data"]["detected_by_run"]) == ("stopped", False, None)
    assert run["data"]["ended_ns"] > run["data"]["started_ns"] > 0


def test_entities_live_and_machine_filters(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    def entities(*args: str) -> list[tuple[str, str, str, bool]]:
        code, out, _ = cli(capsys, "audit", "entities", "--db", toy_db, "--json", *args)
        assert code == 0
        return [(r["machine"], r["entity"], r["state"], r["live"]) for r in json.loads(out)]

    assert entities("--live") == [("toy", "t2", "active", True)]
    assert entities("--machine", "run") == [("run", "1", "stopped", False)]
    assert entities("--machine", "run", "--live") == []
    assert entities("--machine", "toy") == [
        ("toy", "t1", "done", False),
        ("toy", "t2", "active", True),
        ("toy", "t3", "dropped", False),
    ]
    code, out, _ = cli(capsys, "audit", "entities", "--db", toy_db, "--live")
    assert code == 0
    assert [row[:4] for row in table_rows(out)[2:]] == [["toy", "t2", "active", "yes"]]


def test_entities_when_there_are_none(empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "audit", "entities", "--db", empty_db) == (0, "no entities\n", "")
    assert cli(capsys, "audit", "entities", "--db", empty_db, "--json") == (0, "[]\n", "")


def test_crashed_run_is_reported(db_path: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    # A real process opens the journal and dies without closing it.
    child = "import os, sys\nfrom storage import Journal\njournal = Journal.open(sys.argv[1])\nos._exit(0)\n"
    result = subprocess.run(
        [sys.executable, "-c", child, db_path],
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with Journal.open(db_path, clock=clock) as journal:
        assert journal.crashed_runs == [1]
    code, out, _ = cli(capsys, "audit", "entities", "--db", db_path, "--machine", "run", "--json")
    assert code == 0
    runs = {row["entity"]: row for row in json.loads(out)}
    assert (runs["1"]["state"], runs["1"]["data"]["detected_by_run"]) == ("crashed", 2)
    assert runs["2"]["state"] == "stopped"
    code, out, _ = cli(capsys, "audit", "stats", "--db", db_path)
    assert code == 0
    assert "runs           1 crashed, 1 stopped\n" in out
    assert cli(capsys, "audit", "verify", "--db", db_path)[0] == 0


# -- audit verify -----------------------------------------------------------------------------


def test_verify_ok(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "verify", "--db", toy_db)
    assert (code, err) == (0, "")
    assert out.startswith("ok: 12 transitions, 4 entities; checked ")
    assert "hash chain" in out
    code, out, _ = cli(capsys, "audit", "verify", "--db", toy_db, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["ok"] is True
    assert (result["transitions"], result["entities"]) == (12, 4)
    assert "first_bad_seq" not in result
    assert "reason" not in result
    assert len(result["checks"]) == 4


def test_verify_empty_journal(empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "audit", "verify", "--db", empty_db)
    assert code == 0
    assert out.startswith("ok: 0 transitions, 0 entities")


def test_verify_finds_an_edited_row(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    tamper(
        toy_db,
        "UPDATE transitions SET data = ? WHERE seq = 4",
        ('{"qty":200}',),
        drop_trigger="transitions_append_only_update",
    )
    code, out, err = cli(capsys, "audit", "verify", "--db", toy_db)
    assert (code, err) == (1, "")
    assert out.startswith("FAILED at seq 4: hash mismatch")
    code, out, _ = cli(capsys, "audit", "verify", "--db", toy_db, "--json")
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False
    assert result["first_bad_seq"] == 4
    assert "hash mismatch" in result["reason"]


def test_verify_finds_a_deleted_row(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    tamper(toy_db, "DELETE FROM transitions WHERE seq = 8", drop_trigger="transitions_append_only_delete")
    code, out, _ = cli(capsys, "audit", "verify", "--db", toy_db, "--json")
    assert code == 1
    result = json.loads(out)
    assert (result["ok"], result["first_bad_seq"]) == (False, 8)
    assert "row seq 8 is missing" in result["reason"]


# -- audit stats ------------------------------------------------------------------------------


def test_stats_human(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "audit", "stats", "--db", toy_db)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"journal        {toy_db} (schema version {SCHEMA_VERSION})"
    assert lines[1].startswith("size           ")
    assert " bytes (db " in lines[1]
    assert lines[2] == "transitions    12 (seq 1 .. 12)"
    assert lines[3] == "time span      2023-11-14T22:13:20.000Z .. 2023-11-14T22:13:20.000Z"
    assert lines[4] == "runs           1 stopped"
    assert lines[5] == "anomalies      none"
    assert lines[6] == ""
    header, _separator, *rows = table_rows("\n".join(lines[7:]))
    assert header == ["machine", "transitions", "live entities", "ended entities"]
    assert rows == [["run", "2", "0", "1"], ["toy", "10", "1", "2"]]


def test_stats_json(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "audit", "stats", "--db", toy_db, "--json")
    assert code == 0
    stats = json.loads(out)
    assert {k: stats[k] for k in stats if k not in ("file_bytes", "total_bytes", "first_ts", "last_ts")} == {
        "path": toy_db,
        "schema_version": SCHEMA_VERSION,
        "transitions": 12,
        "transitions_per_machine": {"run": 2, "toy": 10},
        "live_entities": {"toy": 1},
        "ended_entities": {"run": 1, "toy": 2},
        "runs": {"stopped": 1},
        "anomalies": {},
        "first_seq": 1,
        "last_seq": 12,
    }
    assert stats["first_ts"] < stats["last_ts"]
    assert stats["first_ts"].startswith("2023-11-14T22:13:20.")
    assert stats["file_bytes"]["db"] == os.path.getsize(toy_db)
    assert stats["total_bytes"] == sum(stats["file_bytes"].values())


def test_stats_of_an_empty_journal(empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "audit", "stats", "--db", empty_db)
    assert code == 0
    assert "transitions    0" in out
    assert "runs           none" in out
    assert "time span" not in out
    assert "machine" not in out
    code, out, _ = cli(capsys, "audit", "stats", "--db", empty_db, "--json")
    stats = json.loads(out)
    assert (stats["transitions"], stats["first_seq"], stats["first_ts"], stats["runs"]) == (0, None, None, {})


# -- audit export -----------------------------------------------------------------------------


def export(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> str:
    code, out, err = cli(capsys, "audit", "export", "--db", db, *args)
    assert (code, err) == (0, "")
    return out


def test_export_formats_agree(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = [json.loads(line) for line in export(capsys, toy_db).splitlines()]
    assert jsonl == [json.loads(line) for line in export(capsys, toy_db, "--format", "jsonl").splitlines()]
    as_json = json.loads(export(capsys, toy_db, "--format", "json"))
    assert as_json == jsonl
    assert [row["seq"] for row in jsonl] == list(range(1, 13))
    assert all(list(row) == PUBLIC_ROW_KEYS for row in jsonl)
    assert jsonl[4]["data"] == {"qty": "3"}

    reader = csv.DictReader(io.StringIO(export(capsys, toy_db, "--format", "csv")))
    assert reader.fieldnames == PUBLIC_ROW_KEYS
    rows = list(reader)
    assert len(rows) == 12
    for row, expected in zip(rows, jsonl, strict=True):
        assert int(row["seq"]) == expected["seq"]
        assert int(row["ts_ns"]) == expected["ts_ns"]
        assert int(row["run"]) == expected["run"]
        assert (row["ts"], row["machine"], row["entity"], row["trigger"], row["dest"], row["hash"]) == (
            expected["ts"],
            expected["machine"],
            expected["entity"],
            expected["trigger"],
            expected["dest"],
            expected["hash"],
        )
        assert row["source"] == (expected["source"] or "")
        assert json.loads(row["data"]) == expected["data"]


def test_export_json_matches_tail(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    exported = json.loads(export(capsys, toy_db, "--format", "json"))
    code, out, _ = cli(capsys, "audit", "tail", "--db", toy_db, "--json", "-n", "100")
    assert code == 0
    assert exported == json.loads(out)


def test_export_since(toy_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert [json.loads(line)["seq"] for line in export(capsys, toy_db, "--since", "9").splitlines()] == [10, 11, 12]
    assert [row["seq"] for row in json.loads(export(capsys, toy_db, "--format", "json", "--since", "11"))] == [12]
    csv_rows = list(csv.DictReader(io.StringIO(export(capsys, toy_db, "--format", "csv", "--since", "10"))))
    assert [row["seq"] for row in csv_rows] == ["11", "12"]
    assert [json.loads(line)["seq"] for line in export(capsys, toy_db, "--since", "0").splitlines()] == list(
        range(1, 13)
    )


def test_export_of_nothing(toy_db: str, empty_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert export(capsys, toy_db, "--format", "json", "--since", "12") == "[]\n"
    assert json.loads(export(capsys, empty_db, "--format", "json")) == []
    assert export(capsys, toy_db, "--since", "99") == ""
    assert export(capsys, toy_db, "--format", "csv", "--since", "12") == ",".join(PUBLIC_ROW_KEYS) + "\n"


def test_export_to_a_file(toy_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("csv", "json", "jsonl"):
        target = tmp_path / f"out.{fmt}"
        code, out, err = cli(
            capsys, "audit", "export", "--db", toy_db, "--format", fmt, "--since", "2", "-o", str(target)
        )
        assert (code, out) == (0, "")
        assert err == f"exported 10 transitions to {target}\n"
        text = target.read_text(encoding="utf-8")
        assert text == export(capsys, toy_db, "--format", fmt, "--since", "2")
    target = tmp_path / "none.json"
    code, _out, err = cli(
        capsys, "audit", "export", "--db", toy_db, "--format", "json", "--since", "50", "--output", str(target)
    )
    assert code == 0
    assert err == f"exported 0 transitions to {target}\n"
    assert json.loads(target.read_text(encoding="utf-8")) == []


# -- diagram ----------------------------------------------------------------------------------


def test_diagram_prints_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "diagram", "run") == (0, mermaid(RUN), "")


def test_diagram_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "diagram", "--markdown", "run") == (0, markdown(RUN), "")


def test_diagram_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "diagram", "--list")
    assert code == 0
    assert out.splitlines() == registry.names()
    assert {"run", "toy"} <= set(out.splitlines())


def test_diagram_without_a_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "diagram")
    assert (code, out) == (2, "")
    assert "name a MACHINE" in err


def test_diagram_of_an_unknown_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "diagram", "nope")
    assert (code, out) == (2, "")
    assert "unknown machine 'nope'" in err
    assert "run" in err


def test_diagram_update_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "diagram", "--update-docs", str(tmp_path))
    assert (code, err) == (0, "")
    expected = [f"updated {tmp_path / name}.md" for name in registry.names()]
    assert out.splitlines() == expected
    page = (tmp_path / "run.md").read_text(encoding="utf-8")
    assert page == "# The `run` machine\n\n" + markdown(RUN)
    code, out, _ = cli(capsys, "diagram", "--update-docs", str(tmp_path))
    assert code == 0
    assert out.splitlines() == [f"unchanged {tmp_path / name}.md" for name in registry.names()]


def test_diagram_update_docs_keeps_prose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "run.md"
    stale = BEGIN.format(name="run") + "\nold\n" + END + "\n"
    page.write_text("# Runs\n\nProse before.\n\n" + stale + "\nProse after.\n", encoding="utf-8")
    code, out, _ = cli(capsys, "diagram", "run", "--update-docs", str(tmp_path))
    assert (code, out) == (0, f"updated {page}\n")
    assert page.read_text(encoding="utf-8") == "# Runs\n\nProse before.\n\n" + markdown(RUN) + "\nProse after.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.md"], "only the named machine is written"
    assert cli(capsys, "diagram", "run", "--update-docs", str(tmp_path)) == (0, f"unchanged {page}\n", "")


def test_diagram_update_docs_refuses_a_non_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "file.md"
    not_a_dir.write_text("x", encoding="utf-8")
    for target in (not_a_dir, tmp_path / "missing"):
        code, out, err = cli(capsys, "diagram", "--update-docs", str(target))
        assert (code, out) == (2, "")
        assert f"{target} is not a directory" in err
    assert not_a_dir.read_text(encoding="utf-8") == "x"


def test_diagram_update_docs_of_an_unknown_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "diagram", "nope", "--update-docs", str(tmp_path))
    assert (code, out) == (2, "")
    assert "unknown machine 'nope'" in err
    assert list(tmp_path.iterdir()) == []


# -- migrate ----------------------------------------------------------------------------------


def test_migrate_creates_then_reports_up_to_date(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "migrate", "--db", db_path) == (
        0,
        f"created journal {db_path} (schema version {SCHEMA_VERSION})\n",
        "",
    )
    assert os.path.exists(db_path)
    assert cli(capsys, "migrate", "--db", db_path) == (
        0,
        f"journal {db_path} is up to date (schema version {SCHEMA_VERSION})\n",
        "",
    )
    # Maintenance starts no run.
    assert cli(capsys, "audit", "tail", "--db", db_path) == (0, "no transitions\n", "")


def test_migrate_an_older_journal(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    build_v1_journal(db_path)
    code, out, err = cli(capsys, "audit", "tail", "--db", db_path)
    assert (code, out) == (2, "")
    assert "has schema version 1" in err
    assert f"run `tradekernel migrate --db {db_path}` first" in err
    assert cli(capsys, "migrate", "--db", db_path) == (
        0,
        f"migrated journal {db_path} from schema version 1 to {SCHEMA_VERSION}\n",
        "",
    )
    assert cli(capsys, "audit", "verify", "--db", db_path)[0] == 0


def test_migrate_into_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no" / "such" / "dir" / "journal.db"
    code, out, err = cli(capsys, "migrate", "--db", str(target))
    assert (code, out) == (2, "")
    assert "does not exist" in err


def test_migrate_is_refused_while_a_writer_holds_the_journal(
    db_path: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    with Journal.open(db_path, clock=clock):
        code, out, err = cli(capsys, "migrate", "--db", db_path)
        assert (code, out) == (2, "")
        assert "already open for writing" in err


# -- python -m kernel in real processes: verify exit status ------------------------------------


def test_verify_subprocess_good_journal(runs_db: str) -> None:
    result = run_cli("audit", "verify", "--db", runs_db, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 6 transitions, 3 entities")


def test_append_only_triggers_refuse_edits(runs_db: str) -> None:
    with contextlib.closing(sqlite3.connect(runs_db)) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="transitions is append-only"):
            conn.execute("UPDATE transitions SET data = '{}' WHERE seq = 3")
        with pytest.raises(sqlite3.IntegrityError, match="transitions is append-only"):
            conn.execute("DELETE FROM transitions WHERE seq = 3")
        conn.rollback()
    result = run_cli("audit", "verify", "--db", runs_db, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_subprocess_edited_row(runs_db: str) -> None:
    tamper(
        runs_db,
        "UPDATE transitions SET data = json_set(data, '$.pid', 1) WHERE seq = 3",
        drop_trigger="transitions_append_only_update",
    )
    result = run_cli("audit", "verify", "--db", runs_db, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("FAILED at seq 3: hash mismatch")
    result = run_cli("audit", "verify", "--db", runs_db, "--json", timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 1
    assert json.loads(result.stdout)["first_bad_seq"] == 3


def test_verify_subprocess_deleted_row(runs_db: str) -> None:
    tamper(runs_db, "DELETE FROM transitions WHERE seq = 4", drop_trigger="transitions_append_only_delete")
    result = run_cli("audit", "verify", "--db", runs_db, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("FAILED at seq 4: row seq 4 is missing")


def test_missing_journal_subprocess(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = run_cli("audit", "tail", "--db", str(missing), timeout=SUBPROCESS_TIMEOUT)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"tradekernel: error: no journal at {missing}\n"


# -- other tools read the journal -------------------------------------------------------------

SQLITE_UTILS = Path(sys.executable).parent / "sqlite-utils"


def sqlite_utils_cli(*args: str) -> Any:
    result = subprocess.run(
        [str(SQLITE_UTILS), *args], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_journal_is_readable_by_the_sqlite_utils_cli(toy_db: str) -> None:
    counts = {row["table"]: row["count"] for row in sqlite_utils_cli("tables", toy_db, "--counts")}
    assert counts["transitions"] == 12
    assert counts["live_entities"] == 1
    assert counts["ended_entities"] == 3
    assert counts["journal_head"] == 1

    rows = sqlite_utils_cli("rows", toy_db, "transitions")
    assert [row["seq"] for row in rows] == list(range(1, 13))
    assert [row["trigger"] for row in rows if row["entity"] == "t1"] == ["create", "start", "add", "add", "finish"]
    assert json.loads(rows[8]["data"]) == {"qty": "1.5"}

    (run,) = sqlite_utils_cli("query", toy_db, "select * from runs")
    assert (run["run"], run["state"], run["crash_detected_by_run"], run["last_seq"]) == (1, "stopped", None, 12)
    assert run["started"].startswith("2023-11-14T22:13:20")
    assert run["pid"] == os.getpid()


# -- a reader that goes away (| head) ---------------------------------------------------------


def cli_into_closed_pipe(args: list[str], *, read_first_line: bool, unbuffered: bool) -> tuple[int, str, str]:
    """Run ``python -m kernel ARGS`` with stdout a pipe whose reader goes away.

    ``read_first_line``: read one line, then close (like ``| head -1``). Otherwise the read end is
    closed before the process starts, so any write the process makes hits a closed pipe.
    Returns (exit status, first line read, stderr).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_fd, write_fd = os.pipe()
    first = ""
    if not read_first_line:
        os.close(read_fd)
    with open(os.devnull, "rb") as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", *args],
            stdin=stdin,
            stdout=write_fd,
            stderr=subprocess.PIPE,
            cwd=str(REPO),
            env=env,
        )
    os.close(write_fd)
    try:
        if read_first_line:
            with os.fdopen(read_fd, "rb") as reader:
                first = reader.readline().decode()
        _, stderr = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, first, stderr.decode()


@pytest.fixture
def big_db(db_path: str, clock: FakeClock) -> str:
    """A journal whose export (~1 MB) is far larger than any pipe or stdio buffer."""
    with Journal.open(db_path, clock=clock) as journal:
        entity, created = TOY.create("big", target=1)
        journal.append(created, entity)
        journal.fire(TOY, entity, "start")
        for i in range(4000):
            journal.fire(TOY, entity, "add", qty=Decimal(i + 1))
    return db_path


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_reader_closing_the_pipe_mid_export_is_quiet(big_db: str, unbuffered: bool) -> None:
    code, first, stderr = cli_into_closed_pipe(
        ["audit", "export", "--db", big_db], read_first_line=True, unbuffered=unbuffered
    )
    assert json.loads(first)["seq"] == 1
    assert (code, stderr) == (0, "")


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_closed_pipe_before_any_output_is_quiet(big_db: str, unbuffered: bool) -> None:
    code, _, stderr = cli_into_closed_pipe(
        ["audit", "export", "--db", big_db], read_first_line=False, unbuffered=unbuffered
    )
    assert (code, stderr) == (0, "")


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_closed_pipe_with_a_short_output_is_quiet(toy_db: str, unbuffered: bool) -> None:
    # The whole output fits in stdout's buffer, so it is only written when the process flushes
    # at exit: the broken pipe must be handled there too (no "Exception ignored", no status 120).
    code, _, stderr = cli_into_closed_pipe(
        ["audit", "tail", "--db", toy_db], read_first_line=False, unbuffered=unbuffered
    )
    assert (code, stderr) == (0, "")


def test_version_when_the_package_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    installed = kernel.__version__
    monkeypatch.setattr(metadata, "version", not_installed)
    try:
        importlib.reload(kernel)
        assert kernel.__version__ == "0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(kernel)
    assert kernel.__version__ == installed


# -- operator commands with no kernel running -------------------------------------------------


def test_operator_commands_with_no_kernel_are_journaled(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    Journal.open(db_path).close()
    assert main(["reduce", "--db", db_path]) == EXIT_OK
    assert capsys.readouterr().out == "trading reducing: operator: tradekernel reduce  (journal (no kernel running))\n"
    assert main(["arm", "--db", db_path, "--reason", "back", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {
        "ok": True,
        "trading": {"state": "active", "reason": "operator: back"},
        "via": "journal (no kernel running)",
    }
    assert main(["halt", "--db", db_path, "--reason", "maintenance", "--flatten"]) == EXIT_OK
    # nothing open, nothing held, no kernel: the halt completes at once (issue 14)
    assert capsys.readouterr().out == "trading halted: operator: maintenance  (journal (no kernel running))\n"
    assert main(["halt", "--db", db_path, "--reason", "twice"]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "tradekernel: halt refused: trading 'kernel' in state 'halted' refused trigger 'halt': "
        "not allowed from this state\n"
    )
    with Journal.open(db_path, start_run=False) as journal:
        (trading,) = journal.live_entities(TRADING)
    assert (str(trading.state), trading.data["reason"]) == ("halted", "operator: maintenance")
    with sqlite_utils.Database(db_path) as db:
        rows = list(db.query("select trigger, data, run from transitions where machine = 'trading' order by seq"))
    assert [r["trigger"] for r in rows] == ["create", "reduce", "arm", "halt", "all_canceled", "flattened"]
    assert json.loads(rows[3]["data"])["flatten"] is True
    assert {r["run"] for r in rows} == {0}  # operator commands, not runs
    assert main(["arm", "--db", db_path, "--reason", "back again"]) == EXIT_OK


def test_operator_commands_with_no_kernel_and_no_journal(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["halt", "--db", db_path, "--reason", "x"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        f"tradekernel: error: no kernel answers on {db_path}.sock and there is no journal at {db_path}\n"
    )
    assert not os.path.exists(db_path)
    assert main(["stop", "--db", db_path]) == EXIT_FAILED
    assert capsys.readouterr().err == f"tradekernel: no kernel is listening on {db_path}.sock\n"


# -- the layout of kernel/cli -----------------------------------------------------------------

CLI_DIR = REPO / "kernel" / "cli"


def _imports(tree: ast.AST) -> list[str]:
    """Every module an AST imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _module_level_imports(tree: ast.Module) -> list[str]:
    """The imports run when the module is imported (not those inside functions or ``if TYPE_CHECKING``)."""
    top = [
        node
        for node in tree.body
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    ]
    return _imports(ast.Module(body=[n for n in top if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[]))


def test_the_cli_modules_import_the_simulator_and_the_kernel_process_only_where_used() -> None:
    modules = sorted(CLI_DIR.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "run.py", "operator.py", "venue.py", "audit.py"}
    for module in modules:
        imported = _module_level_imports(ast.parse(module.read_text(encoding="utf-8")))
        heavy = [n for n in imported if n.startswith(("kernel.venue", "storage.venue_store", "kernel.app"))]
        assert heavy == [], f"{module.name} imports {heavy} at module level"


def test_nothing_in_the_kernel_imports_the_cli() -> None:
    for package in ("kernel", "machines", "storage"):
        for module in sorted((REPO / package).rglob("*.py")):
            if CLI_DIR in module.parents or module == REPO / "kernel" / "__main__.py":
                continue
            imported = _imports(ast.parse(module.read_text(encoding="utf-8")))
            assert not [n for n in imported if n == "kernel.cli" or n.startswith("kernel.cli.")], module


def test_exit_codes_are_defined_once_in_kernel_exits() -> None:
    for module in sorted(CLI_DIR.glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        assigned = [
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            for target in ast.walk(ast.Tuple(elts=node.targets))
            if isinstance(target, ast.Name) and target.id.startswith("EXIT_")
        ]
        assert assigned == [], f"{module.name} defines {assigned}"
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE) == (0, 1, 2)


def test_audit_tail_of_an_unknown_machine_is_a_usage_error_naming_the_known_ones(runs_db: str) -> None:
    result = run_cli("audit", "tail", "--machine", "orders", "--db", runs_db, timeout=SUBPROCESS_TIMEOUT)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "tradekernel audit tail: error: unknown machine 'orders'; known machines: "
        "feed, health, order, position, reconciliation, run, trading\n"
    )
    known = run_cli("audit", "tail", "--machine", "run", "--db", runs_db, timeout=SUBPROCESS_TIMEOUT)
    assert known.returncode == 0, known.stderr
    assert known.stdout.count(" run ") >= 6


# -- stop --force (issue 14 item 12a) ------------------------------------------------------------


def test_stop_force_reports_the_final_state_of_the_cancels_it_sent(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A forced stop still waits (briefly) for the answers to the cancels it sent: the goodbye
    line and the exit status are of the final state, not of orders caught in ``pending_cancel``."""
    from tests.kernel.test_run_cli import Run, assert_nothing_open_at_the_venue, tk, wait_trading

    workdir = Path(tempfile.mkdtemp(prefix="tk"))  # short: the control socket path is limited
    db = str(workdir / "j.db")
    run = Run(db, "--status-view", "off")
    try:
        status = wait_trading(run)
        assert status["open_orders"]
        stop = tk("stop", "--db", db, "--force", "--wait", "15")
        assert stop.returncode == EXIT_OK, stop.stderr
        assert run.wait(timeout=15) == EXIT_OK, run.stderr
        assert "left open" not in run.err[-1], run.err[-1]
        assert "stopped (operator: tradekernel stop)" in run.err[-1]
        assert_nothing_open_at_the_venue(db)
        with Journal.open(db) as journal:
            from machines import ORDER

            assert journal.live_entities(ORDER) == []
    finally:
        run.kill()
        shutil.rmtree(workdir, ignore_errors=True)
