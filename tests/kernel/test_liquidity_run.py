"""Liquidity in a paper run's reports (issue 18): ``tradekernel fills --json`` after two paper runs
on one journal against the embedded venue replaying the bundled BTCUSDT data: ``market_maker``
(resting GTC limits) then ``momentum`` (marketable IOC limits).

Every fill says ``maker`` or ``taker``, and says what the venue's own file says of the same trade
(hand-written SQL on ``KERNEL_DB.venue.db``). Independently of that column: an IOC order never
rests, so each of its fills took liquidity (``taker``); a fill at the venue's trade-through rule
is at the resting order's own limit price, which every ``maker`` fill is.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from decimal import Decimal

import pytest

from tests.conftest import run_cli


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(*args, timeout=90)
    assert result.returncode == 0, result.stderr
    return result


def venue_rows(venue_db: str) -> dict[str, tuple[str | None, str, str, str | None]]:
    """The venue's own record of each fill: trade id -> (liquidity, its order's tif, the fill
    price, the order's limit price)."""
    conn = sqlite3.connect(f"file:{venue_db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT f.trade_id, f.liquidity, o.tif, f.price, o.price "
            "FROM fills f JOIN orders o ON o.account = f.account AND o.client_order_id = f.client_order_id"
        ).fetchall()
    finally:
        conn.close()
    return {trade_id: (liquidity, tif, price, limit) for trade_id, liquidity, tif, price, limit in rows}


@pytest.mark.slow
def test_a_paper_runs_fills_say_maker_or_taker_as_the_venue_recorded_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = str(tmp_path_factory.mktemp("liq") / "j.db")
    ok("run", "--db", db, "--status-view", "off", "--duration", "6")
    ok("run", "--db", db, "--status-view", "off", "--duration", "6", "--strategy", "momentum")
    fills = json.loads(ok("fills", "--db", db, "--json").stdout)
    venue = venue_rows(db + ".venue.db")
    journaled = {f["trade_id"]: f["liquidity"] for f in fills}
    assert journaled == {trade_id: row[0] for trade_id, row in venue.items()}
    assert set(journaled.values()) == {"maker", "taker"}, "both runs filled something"
    for trade_id, (liquidity, tif, price, limit) in venue.items():
        if tif == "ioc":
            assert liquidity == "taker", trade_id
        if liquidity == "maker":
            assert Decimal(price) == Decimal(limit), trade_id
    assert "liquidity" in ok("fills", "--db", db).stdout
