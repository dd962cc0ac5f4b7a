"""Journal files are private (0600) and a damaged or edited journal is refused with a typed error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from storage import Journal


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
