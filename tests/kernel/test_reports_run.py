"""``fills``, ``pnl`` and ``report --html`` on a journal made the way a user makes one: a paper
``tradekernel run`` (the embedded venue replaying the bundled BTCUSDT data), then an operator halt
and arm; the page is opened in headless Chromium and its screenshot checked (issue 18)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image

from tests.conftest import run_cli

CHROMIUM_TIMEOUT_S = 60


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def order_terms(db: str) -> dict[str, tuple[str, str]]:
    """Each order's (instrument, side), from its ``create`` transition (hand-written SQL)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT entity, json_extract(data, '$.instrument'), json_extract(data, '$.side') "
            "FROM transitions WHERE machine = 'order' AND trigger = 'create'"
        ).fetchall()
    finally:
        conn.close()
    return {entity: (instrument, side) for entity, instrument, side in rows}


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 6 s paper run (the bundled data fills the first quotes ~2.3 s in), then a halt and an arm."""
    db = str(tmp_path_factory.mktemp("tk") / "j.db")
    ok("run", "--db", db, "--status-view", "off", "--duration", "6")
    ok("halt", "--db", db, "--reason", "report check")
    ok("arm", "--db", db, "--reason", "report checked")
    return db


@pytest.mark.slow
def test_fills_json_matches_the_fill_transitions_of_audit_export_row_for_row(journal: str) -> None:
    exported = json.loads(ok("audit", "export", "--db", journal, "--format", "json").stdout)
    transitions = [t for t in exported if t["machine"] == "order" and t["trigger"] in ("fill", "reconcile_fill")]
    assert transitions, "the run filled nothing"
    terms = order_terms(journal)
    expected = [
        {
            "seq": t["seq"],
            "time": t["ts"],
            "run": t["run"],
            "client_order_id": t["entity"],
            "instrument": terms[t["entity"]][0],
            "side": terms[t["entity"]][1],
            "qty": t["data"]["qty"],
            "price": t["data"]["price"],
            "fee": t["data"].get("fee", "0"),
            "trade_id": t["data"]["trade_id"],
            "fill_seq": t["data"]["fill_seq"],
            "trigger": t["trigger"],
        }
        for t in transitions
    ]
    fills = json.loads(ok("fills", "--db", journal, "--json").stdout)
    assert [{k: f[k] for k in expected[0]} for f in fills] == expected
    assert json.loads(ok("audit", "fills", "--db", journal, "--json").stdout) == fills
    csv_lines = ok("fills", "--db", journal, "--csv").stdout.splitlines()
    assert len(csv_lines) == len(fills) + 1

    pnl: dict[str, Any] = json.loads(ok("pnl", "--db", journal, "--json").stdout)
    total = pnl["total"]
    assert total["trades"] == len(fills)
    assert Decimal(total["fees"]) == sum(Decimal(f["fee"]) for f in expected)
    net = sum(Decimal(f["qty"]) if f["side"] == "buy" else -Decimal(f["qty"]) for f in expected)
    (instrument,) = {f["instrument"] for f in expected}
    assert Decimal(pnl["instruments"][instrument]["position"]) == net
    assert Decimal(pnl["instruments"][instrument]["mark"]) == Decimal(expected[-1]["price"])
    assert Decimal(total["total"]) == Decimal(total["realized"]) + Decimal(total["unrealized"]) - Decimal(total["fees"])


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(journal: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    ok("report", "--db", journal, "--html", str(page))
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text
    assert "https://" not in text
    assert "<script" not in text
    assert page.read_text(encoding="utf-8").count("<svg") == 3
    assert "operator: report check" in text
    assert "operator: report checked" in text

    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (.ci/system-packages installs it)"
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars", page.as_uri()],
        capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert shot.stat().st_size > 30_000
    pixels = image.imread(str(shot))
    assert pixels.shape[:2] == (1600, 1280)
    colours = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    assert len(colours) > 50  # text, three charts, tables: far from one colour
