"""``tradekernel drive`` (``kernel.cli.drive``): scenario files through the real machines.

In process through ``kernel.cli.main`` (output captured), plus real subprocesses for the command
as users run it and for ``audit verify`` on a journal that ``drive --journal`` wrote. Exit status:
0 every expectation held, 1 some failed (the step, trigger and why are named), 2 a malformed file
(file and location named) or a journal that cannot be opened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel.cli import main
from kernel.cli.drive import load
from machines.scenario import ScenarioError
from storage import Journal
from storage.audit import AuditReader
from tests.conftest import REPO, run_cli

SCENARIO_DIR = REPO / "docs" / "scenarios"
DOC_FILES = sorted(str(p) for p in SCENARIO_DIR.glob("*.json"))
STEP_KEYS = {"trigger", "ok", "state", "cum_qty", "leaves_qty", "avg_px", "error", "failures"}
CREATE = {"instrument": "XYZ", "side": "buy", "type": "limit", "qty": "10", "price": "10.00"}


def doc_scenario_count() -> int:
    total = 0
    for path in DOC_FILES:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        total += len(document) if isinstance(document, list) else 1
    return total


def write(path: Path, document: Any) -> str:
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def scenario(entity: str = "o-1", *steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"machine": "order", "entity": entity, "create": dict(CREATE), "steps": list(steps), **extra}


SUBMIT = {"trigger": "submit", "expect": {"state": "pending_new"}}
ACCEPT = {"trigger": "accept", "data": {"venue_order_id": "V1"}, "expect": {"state": "accepted"}}


def drive(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["drive", *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- the documented scenarios -----------------------------------------------------------------


def test_drive_documented_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = drive(capsys, *DOC_FILES)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[-1] == f"{doc_scenario_count()} passed, 0 failed"
    assert "PASS  order A.1.a — FIX 4.4 App. D A.1.a: filled order" in lines
    assert not [line for line in lines if line.startswith("FAIL") or " BAD " in line]
    # every step is listed with its state and the reported fields
    assert any(
        line.split() == ["ok", "5", "fill", "->", "filled", "cum_qty=10000", "leaves_qty=0", "avg_px=10.03"]
        for line in lines
    )
    assert any(line.rstrip().endswith("error=InvalidTransition") for line in lines)


def test_drive_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = drive(capsys, "--json", *DOC_FILES)
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"passed", "failed", "scenarios"}
    assert (report["passed"], report["failed"]) == (doc_scenario_count(), 0)
    assert len(report["scenarios"]) == doc_scenario_count()
    for result in report["scenarios"]:
        assert set(result) == {"entity", "machine", "passed", "steps"}
        assert result["passed"] is True
        assert result["steps"]
        for step in result["steps"]:
            assert set(step) == STEP_KEYS
            assert step["ok"] is True
            assert step["failures"] == []
    first = report["scenarios"][0]
    assert first["machine"] == "order"


def test_drive_subprocess_documented_scenarios() -> None:
    result = run_cli("drive", *DOC_FILES, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"{doc_scenario_count()} passed, 0 failed"
    assert result.stderr == ""


# -- failing expectations ---------------------------------------------------------------------


def test_drive_broken_scenario_names_step_trigger_and_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path / "broken.json",
        [
            scenario("good", SUBMIT, name="fine"),
            scenario(
                "o-bad",
                SUBMIT,
                {"trigger": "accept", "data": {"venue_order_id": "V1"}, "expect": {"state": "filled"}},
                {"trigger": "cancel_reject", "expect": {"state": "accepted"}},
            ),
        ],
    )
    code, out, err = drive(capsys, path)
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert "PASS  order good — fine" in lines
    assert "FAIL  order o-bad" in lines
    assert lines[lines.index("FAIL  order o-bad") + 2].split() == [
        "BAD",
        "2",
        "accept",
        "->",
        "accepted",
        "cum_qty=0",
        "leaves_qty=10",
    ]
    assert "         expected state filled, got accepted" in lines
    assert any(
        line.split()[:3] == ["BAD", "3", "cancel_reject"] and "error=InvalidTransition" in line for line in lines
    )
    assert any(line.strip().startswith("unexpected InvalidTransition: order 'o-bad'") for line in lines)
    assert lines[-1] == "1 passed, 1 failed"


def test_drive_broken_scenario_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "broken.json", scenario("o-bad", SUBMIT, {**ACCEPT, "expect": {"cum_qty": "1"}}))
    code, out, _ = drive(capsys, "--json", path)
    assert code == 1
    report = json.loads(out)
    assert (report["passed"], report["failed"]) == (0, 1)
    (result,) = report["scenarios"]
    assert result["passed"] is False
    assert [s["ok"] for s in result["steps"]] == [True, False]
    assert result["steps"][1]["failures"] == ["expected cum_qty = 1, got 0"]
    assert result["steps"][1]["state"] == "accepted"


def test_drive_create_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = scenario("o-bad", SUBMIT)
    bad["create"] = {**CREATE, "price": None}
    path = write(tmp_path / "create.json", bad)
    code, out, _ = drive(capsys, path)
    assert code == 1
    assert "FAIL  order o-bad" in out
    assert "      create: InvalidData: order 'o-bad' in state None refused trigger 'create'" in out
    assert "a limit order needs a price" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"

    code, out, _ = drive(capsys, "--json", path)
    assert code == 1
    (result,) = json.loads(out)["scenarios"]
    assert result["steps"] == []
    assert result["create_error"].startswith("InvalidData: ")


# -- malformed input --------------------------------------------------------------------------


def test_drive_invalid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"machine": "order",\n  "entity": }', encoding="utf-8")
    code, out, err = drive(capsys, str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"tradekernel drive: error: {path}: not valid JSON: ")
    assert "at line 2 column" in err


def test_drive_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.json"
    code, out, err = drive(capsys, DOC_FILES[0], str(path))
    assert (code, out) == (2, "")
    assert err == f"tradekernel drive: error: {path}: cannot read: No such file or directory\n"


def test_drive_duplicate_entity_across_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write(tmp_path / "one.json", scenario("o-1", SUBMIT))
    second = write(tmp_path / "two.json", [scenario("o-2", SUBMIT), scenario("o-1", SUBMIT)])
    code, out, err = drive(capsys, first, second)
    assert (code, out) == (2, "")
    assert err.startswith(f"tradekernel drive: error: {second}: entity 'o-1' of machine 'order' ")
    assert f"already used by a scenario in {first}" in err


def test_same_entity_id_on_different_machines_is_allowed(tmp_path: Path) -> None:
    run_scenario = {"machine": "run", "entity": "o-1", "create": {"started_ns": 1}, "steps": []}
    path = write(tmp_path / "mixed.json", [scenario("o-1", SUBMIT), run_scenario])
    assert [(s.machine, s.entity) for s in load([path])] == [("order", "o-1"), ("run", "o-1")]


@pytest.mark.parametrize(
    ("document", "where", "problem"),
    [
        pytest.param([scenario(), {**scenario("o-2"), "machine": "rocket"}], "[1].machine", "unknown machine 'rocket'"),
        pytest.param(scenario("o-1", SUBMIT, {"data": {}}), "steps[1].trigger", "a trigger name"),
        pytest.param([], "", "holds no scenario"),
        pytest.param("just text", "", "a scenario must be an object"),
    ],
    ids=["unknown-machine", "missing-trigger", "empty-list", "not-an-object"],
)
def test_drive_malformed_scenario_names_file_and_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: Any, where: str, problem: str
) -> None:
    path = write(tmp_path / "bad.json", document)
    code, out, err = drive(capsys, path)
    assert (code, out) == (2, "")
    location = f"{path}: {where}" if where else path
    assert err.startswith(f"tradekernel drive: error: {location}: ")
    assert problem in err
    with pytest.raises(ScenarioError) as info:
        load([path])
    assert info.value.where == location


def test_drive_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["drive"])
    assert info.value.code == 2
    assert "SCENARIO.json" in capsys.readouterr().err


# -- the journal ------------------------------------------------------------------------------


def timeline(capsys: pytest.CaptureFixture[str], db: str, entity: str) -> list[dict[str, Any]]:
    code = main(["audit", "timeline", entity, "--db", db, "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_drive_journal_is_verifiable_and_has_the_transitions(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = drive(capsys, "--journal", db_path, *DOC_FILES)
    assert code == 0
    assert out.splitlines()[-1] == f"{doc_scenario_count()} passed, 0 failed"

    verify = run_cli("audit", "verify", "--db", db_path, timeout=30)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ok: ")

    rows = timeline(capsys, db_path, "A.1.a")
    assert [(r["trigger"], r["source"], r["dest"]) for r in rows] == [
        ("create", None, "new"),
        ("submit", "new", "pending_new"),
        ("accept", "pending_new", "accepted"),
        ("fill", "accepted", "partially_filled"),
        ("fill", "partially_filled", "partially_filled"),
        ("fill", "partially_filled", "filled"),
    ]
    assert rows[3]["data"] == {"price": "10.00", "qty": "2000", "trade_id": "T1"}

    assert main(["audit", "timeline", "B.1.e", "--db", db_path]) == 0
    table = capsys.readouterr().out
    assert "pending_cancel -> pending_cancel" in table  # the ack that crossed the cancel request
    assert "pending_cancel -> accepted" in table

    with AuditReader(db_path) as reader:
        entities = {(e["machine"], e["entity"]): e["state"] for e in reader.entities()}
    assert entities[("order", "A.1.a")] == "filled"
    assert entities[("run", "1")] == "stopped"
    assert len([key for key in entities if key[0] != "run"]) == doc_scenario_count()  # every scenario, any machine


def test_drive_journal_records_only_accepted_triggers(
    tmp_path: Path, db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "refused.json",
        [
            scenario(
                "o-1",
                SUBMIT,
                {"trigger": "fill", "data": {"qty": "0", "price": "1", "trade_id": "T1"}, "expect": {"state": "x"}},
                ACCEPT,
            ),
            {**scenario("o-2"), "create": {"instrument": "XYZ"}},
        ],
    )
    code, _, _ = drive(capsys, "--journal", db_path, path)
    assert code == 1
    rows = timeline(capsys, db_path, "o-1")
    assert [r["trigger"] for r in rows] == ["create", "submit", "accept"]
    assert main(["audit", "timeline", "o-2", "--db", db_path]) == 2  # never created: nothing journaled
    assert "no transitions for entity 'o-2'" in capsys.readouterr().err
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


def test_drive_locked_journal_exits_2(tmp_path: Path, db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "one.json", scenario("o-1", SUBMIT))
    with Journal.open(db_path) as holder:
        code, out, err = drive(capsys, "--journal", db_path, path)
        assert (code, out) == (2, "")
        assert err.startswith("tradekernel: error: ")
        assert f"journal {db_path} is already open for writing by pid " in err
        assert holder.pending == 0
    with AuditReader(db_path) as reader:
        assert [r["machine"] for r in reader.tail(50)] == ["run", "run"]  # the holder's run only


def test_drive_journal_in_missing_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "one.json", scenario("o-1", SUBMIT))
    code, out, err = drive(capsys, "--journal", str(tmp_path / "nowhere" / "j.db"), path)
    assert (code, out) == (2, "")
    assert err.startswith("tradekernel: error: ")


def test_drive_malformed_file_does_not_touch_the_journal(
    tmp_path: Path, db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[", encoding="utf-8")
    code, _, _ = drive(capsys, "--journal", db_path, str(path))
    assert code == 2
    assert not Path(db_path).exists()


def test_drive_twice_into_one_journal_keeps_it_verifiable(
    tmp_path: Path, db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-running the same scenarios into an existing journal must not corrupt its audit trail.

    Whether ``drive`` refuses (exit 2) or records the second run some other way, the journal must
    still pass ``audit verify``: an entity created a second time does not replay.
    """
    path = write(tmp_path / "one.json", scenario("o-1", SUBMIT, ACCEPT))
    assert drive(capsys, "--journal", db_path, path)[0] == 0
    second, out, err = drive(capsys, "--journal", db_path, path)
    assert second == 2
    assert "already has entities o-1" in err
    assert out == ""
    with AuditReader(db_path) as reader:
        result = reader.verify()
    assert result.ok, result.reason


def test_drive_into_a_kernels_journal_is_refused_and_leaves_it_untouched(tmp_path: Path, db_path: str) -> None:
    """A kernel's journal (runs, orders, positions) is not a place for scenario entities: their
    orders and fills would be read back as the kernel's book. Refused, exit 2, nothing written."""
    from kernel.bootstrap import prepare

    with Journal.open(db_path) as journal:  # what a kernel's first run leaves: its run, trading, health
        prepare(journal, now_ms=1_700_000_000_000)
    with AuditReader(db_path) as reader:
        before = reader.tail(1000)
    path = write(tmp_path / "one.json", scenario("o-1", SUBMIT, ACCEPT))
    result = run_cli("drive", "--journal", db_path, path, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("tradekernel drive: error: ")
    assert f"{db_path} is the journal of a kernel (run 1)" in result.stderr
    assert "use a journal of its own" in result.stderr
    with AuditReader(db_path) as reader:
        assert reader.tail(1000) == before  # not even a run of drive's own
