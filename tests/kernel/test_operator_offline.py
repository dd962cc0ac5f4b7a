"""Operator commands with no kernel running (issue 14 item 3): journaled directly, as operator
commands and not as kernel runs, and an offline halt completes (nothing to cancel) unless the
journal still holds live orders (a journal left by a killed kernel)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

from machines import ORDER
from machines.order_terms import OrderTerms
from storage import Journal
from storage.audit import AuditReader
from tests.conftest import run_cli


def trading(db: str) -> dict[str, object]:
    answer = run_cli("status", "--db", db, "--json")
    assert answer.returncode == 0, answer.stderr
    state: dict[str, object] = json.loads(answer.stdout)["trading"]
    return state


def run_entities(db: str) -> list[str]:
    with AuditReader(db) as reader:
        return [row["entity"] for row in reader.entities(machine="run")]


def test_offline_halt_is_halted_and_offline_arm_then_trades_again(tmp_path: Path) -> None:
    db = str(tmp_path / "j.db")
    first = run_cli("run", "--db", db, "--status-view", "off", "--duration", "2")
    assert first.returncode == 0, first.stderr
    halted = run_cli("halt", "--db", db, "--reason", "offline check", "--json")
    assert halted.returncode == 0, halted.stderr
    answer = json.loads(halted.stdout)
    assert (answer["via"], answer["trading"]["state"]) == ("journal (no kernel running)", "halted")
    assert trading(db)["state"] == "halted"
    armed = run_cli("arm", "--db", db, "--reason", "checked")
    assert armed.returncode == 0, armed.stderr
    assert "trading active: operator: checked" in armed.stdout
    with AuditReader(db) as reader:
        assert reader.verify().ok
        steps = [(t["trigger"], t["dest"]) for t in reader.timeline("kernel", machine="trading")]
    assert steps[-3:] == [("halt", "halting"), ("all_canceled", "halted"), ("arm", "active")]
    assert run_entities(db) == ["1"]  # the operator commands are not runs


def test_operator_commands_are_not_runs_and_status_names_the_last_kernel_run(tmp_path: Path) -> None:
    db = str(tmp_path / "j.db")
    assert run_cli("run", "--db", db, "--status-view", "off", "--duration", "2").returncode == 0
    codes = []
    for command in ("halt", "halt", "arm", "arm", "reduce", "arm", "reduce", "halt"):  # refused ones too
        codes.append(run_cli(command, "--db", db, "--reason", f"{command} offline").returncode)
    assert codes == [0, 1, 0, 1, 0, 0, 0, 0]
    again = run_cli("arm", "--db", db, "--reason", "go")
    assert again.returncode == 0, again.stderr
    second = run_cli("run", "--db", db, "--status-view", "off", "--duration", "2")
    assert second.returncode == 0, second.stderr
    assert run_entities(db) == ["1", "2"]
    status = run_cli("status", "--db", db, "--json")
    last = json.loads(status.stdout)["last_run"]
    assert (last["run_id"], last["state"]) == (2, "stopped")
    text = run_cli("status", "--db", db).stdout
    assert "arm" not in text.split("last run", 1)[-1].splitlines()[0]
    with AuditReader(db) as reader:
        assert reader.verify().ok
        operator = [t for t in reader.timeline("kernel", machine="trading") if t["run"] == 0]
    # every accepted offline command is in the journal, outside any run
    assert [t["trigger"] for t in operator] == [
        "halt", "all_canceled", "arm", "reduce", "arm", "reduce", "halt", "all_canceled", "arm",
    ]  # fmt: skip
    verify = run_cli("audit", "verify", "--db", db)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_offline_halt_with_live_orders_stays_halting_until_a_kernel_cancels_them(tmp_path: Path) -> None:
    """A killed kernel left an accepted order in the journal: an offline halt cannot cancel it at
    the venue, so the trading machine stays ``halting`` (the next kernel reconciles, cancels and
    completes the halt) and the command says so; ``arm`` is refused until then."""
    db = str(tmp_path / "j.db")
    journal = Journal.open(db)
    order, created = ORDER.create("o-1", **OrderTerms("BTCUSDT", "buy", D(1), D("100.5")).create_data())
    journal.append(created, order)
    journal.fire(ORDER, order, "submit")
    journal.commit()
    journal.abandon()  # the kernel was killed: its run never stopped
    halted = run_cli("halt", "--db", db, "--reason", "killed kernel")
    assert halted.returncode == 0, halted.stderr
    assert "trading halting: operator: killed kernel" in halted.stdout
    assert "1 order(s) still open in the journal: a kernel must run to cancel them" in halted.stdout
    assert trading(db)["state"] == "halting"
    again = run_cli("halt", "--db", db, "--reason", "again", "--json")
    assert again.returncode == 1  # a second halt is refused, as by a running kernel
    assert json.loads(again.stdout)["trading"]["state"] == "halting"
    refused = run_cli("arm", "--db", db, "--reason", "too soon")
    assert refused.returncode == 1
    with AuditReader(db) as reader:
        assert reader.verify().ok
        steps = [t["trigger"] for t in reader.timeline("kernel", machine="trading")]
    assert steps == ["create", "halt"]
    assert run_entities(db) == ["1"]


def test_offline_halt_with_flatten_and_nothing_open_or_held_is_halted(tmp_path: Path) -> None:
    db = str(tmp_path / "j.db")
    assert run_cli("run", "--db", db, "--status-view", "off", "--duration", "2").returncode == 0
    halted = run_cli("halt", "--db", db, "--reason", "flat", "--flatten", "--json")
    assert halted.returncode == 0, halted.stderr
    assert json.loads(halted.stdout)["trading"]["state"] == "halted"
    with AuditReader(db) as reader:
        steps = [t["trigger"] for t in reader.timeline("kernel", machine="trading") if t["run"] == 0]
    assert steps == ["halt", "all_canceled", "flattened"]
