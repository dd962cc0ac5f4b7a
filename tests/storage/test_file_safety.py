"""Journal files are private (0600) and a damaged or edited journal is refused with a typed error."""

from __future__ import annotations

import os
import sqlite3
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from machines import POSITION
from storage import Journal, JournalCorrupt
from tests.conftest import run_cli


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_journal_and_its_side_files_are_0600(tmp_path: Path) -> None:
    path = str(tmp_path / "new.db")
    journal = Journal.open(path)
    try:
        for name in (path, path + "-wal", path + "-shm", path + ".lock"):
            assert os.path.exists(name), name
            assert _mode(name) == 0o600, (name, oct(_mode(name)))
    finally:
        journal.close()


def test_an_existing_journal_keeps_the_mode_its_user_set(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Journal.open(path).close()
    os.chmod(path, 0o640)
    journal = Journal.open(path)
    try:
        assert _mode(path) == 0o640
    finally:
        journal.close()
    assert _mode(path) == 0o640


def _without_head(tmp_path: Path) -> str:
    path = str(tmp_path / "headless.db")
    Journal.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM journal_head")
    return path


def test_a_deleted_journal_head_row_is_a_typed_corruption(tmp_path: Path) -> None:
    path = _without_head(tmp_path)
    with pytest.raises(JournalCorrupt) as caught:
        Journal.open(path)
    assert path in str(caught.value)
    assert "journal_head" in str(caught.value)


@pytest.mark.parametrize("command", ["status", "run"])
def test_the_cli_on_a_headless_journal_exits_2_with_one_line(tmp_path: Path, command: str) -> None:
    path = _without_head(tmp_path)
    extra = ("--duration", "1", "--status-view", "off") if command == "run" else ()
    result = run_cli(command, "--db", path, *extra)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "journal_head" in result.stderr
    lines = [line for line in result.stderr.splitlines() if "journal_head" in line]
    assert len(lines) == 1, result.stderr


def _journal_with_a_position(tmp_path: Path) -> str:
    path = str(tmp_path / "book.db")
    journal = Journal.open(path)
    entity, created = POSITION.create("BTCUSDT")
    journal.append(created, entity)
    journal.fire(POSITION, entity, "fill", side="buy", qty=Decimal("0.005"), price=Decimal("50000"),
                 trade_id="t1", client_order_id="c1")  # fmt: skip
    journal.commit()
    journal.close()
    return path


def _edit_qty(path: str) -> None:
    with sqlite3.connect(path) as conn:
        (data,) = conn.execute("SELECT data FROM live_entities WHERE machine = 'position'").fetchone()
        assert '"qty":"0.005"' in data, data
        conn.execute(
            "UPDATE live_entities SET data = ? WHERE machine = 'position'",
            (data.replace('"qty":"0.005"', '"qty":"5"'),),
        )


def test_an_untouched_journal_with_live_entities_opens(tmp_path: Path) -> None:
    path = _journal_with_a_position(tmp_path)
    journal = Journal.open(path)
    try:
        (position,) = journal.live_entities(POSITION)
        assert position.data["qty"] == Decimal("0.005")
    finally:
        journal.close()


def test_an_edited_current_state_row_is_refused(tmp_path: Path) -> None:
    path = _journal_with_a_position(tmp_path)
    _edit_qty(path)
    with pytest.raises(JournalCorrupt) as caught:
        Journal.open(path)
    message = str(caught.value)
    assert path in message
    assert "position 'BTCUSDT'" in message
    assert "data" in message


def test_an_edited_state_is_named(tmp_path: Path) -> None:
    path = _journal_with_a_position(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE live_entities SET state = 'short' WHERE machine = 'position'")
    with pytest.raises(JournalCorrupt, match=r"position 'BTCUSDT'.*state 'short'.*'long'"):
        Journal.open(path)


def test_run_on_an_edited_journal_exits_2_with_the_message(tmp_path: Path) -> None:
    path = _journal_with_a_position(tmp_path)
    _edit_qty(path)
    result = run_cli("run", "--db", path, "--duration", "1", "--status-view", "off")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "position 'BTCUSDT'" in result.stderr
