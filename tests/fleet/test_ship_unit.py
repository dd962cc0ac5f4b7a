"""The ``[ship]`` section, the shipper's retry policy and lag, and how status shows it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kernel.config.sections import ShipSection
from kernel.ship import ShipOptions, Shipper
from kernel.status import render_text
from storage.fleet.errors import StoreUnavailable
from storage.fleet.store import redact
from tests.conftest import run_cli
from tests.fleet.journals import append_session, journal_id


def test_ship_section_defaults_and_url_rules() -> None:
    section = ShipSection()
    assert (section.url, section.batch_rows, section.interval_s, section.max_backoff_s) == ("", 2000, 1.0, 30.0)
    assert ShipSection(url="postgresql://tk@db.example.net:5432/fleet").url.endswith("/fleet")
    with pytest.raises(ValueError, match="must not contain a password"):
        ShipSection(url="postgresql://tk:hunter2@db.example.net/fleet")
    with pytest.raises(ValueError, match="postgresql:// URL"):
        ShipSection(url="mysql://db.example.net/fleet")
    with pytest.raises(ValueError, match="must name a host"):
        ShipSection(url="postgresql:///fleet")
    with pytest.raises(ValueError, match="batch_rows"):
        ShipSection(batch_rows=0)


def test_redact_drops_the_password() -> None:
    assert redact("postgresql://tk:secret@db.example.net:6432/fleet") == "postgresql://tk@db.example.net:6432/fleet"
    assert redact("postgresql://db.example.net/fleet") == "postgresql://db.example.net/fleet"


def test_an_unreachable_store_is_retried_then_reported_in_the_lag(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    append_session(db)
    shipper = Shipper(str(db), "postgresql://postgres@127.0.0.1:1/none", ShipOptions(first_backoff_s=0.001))
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            shipper.ship_with_retries(threading.Event(), attempts=3)
        lag = shipper.lag()
    finally:
        shipper.close()
    assert lag["state"] == "store_down"
    assert (lag["kernel_id"], lag["head_seq"], lag["shipped_seq"], lag["lag_rows"]) == (journal_id(db), 2, 0, 2)
    assert lag["lag_s"] > 0
    assert "unreachable" in lag["error"]


def test_a_set_stop_event_ends_the_retries_at_once(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    append_session(db)
    stop = threading.Event()
    stop.set()
    shipper = Shipper(str(db), "postgresql://postgres@127.0.0.1:1/none")
    try:
        shipper.follow(stop)  # returns: stopping, nothing shipped
    finally:
        shipper.close()
    assert shipper.shipped_rows == 0


def test_status_text_shows_the_ship_lag() -> None:
    status = {
        "running": True,
        "ship": {"state": "store_down", "lag_rows": 12, "lag_s": 3.5, "error": "fleet store down"},
    }
    assert "ship       store_down, lag 12 rows / 3.5 s  (fleet store down)" in render_text(status).splitlines()


def test_ship_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = run_cli("ship", "--db", str(tmp_path / "none.db"), "--to", "postgresql://postgres@127.0.0.1/x")
    assert missing.returncode == 2
    assert "no journal at" in missing.stderr
    no_store = run_cli("ship", "--db", str(tmp_path / "none.db"), env={"TRADEKERNEL_SHIP__URL": ""})
    assert no_store.returncode == 2
    assert "no store: pass --to" in no_store.stderr
    password = run_cli("ship", "--to", "postgresql://u:secret@h/db")
    assert password.returncode == 2
    assert "secret" not in password.stderr
