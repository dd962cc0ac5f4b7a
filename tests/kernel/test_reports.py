"""``tradekernel fills``, ``pnl`` and ``report --html`` on a journal written by hand (issue 18).

The journal: BTCUSDT buy 1 @ 100 (fee 0.1), buy 1 @ 90 (fee 0.1), ETHUSDT buy 2 @ 50 (fee 0.05),
BTCUSDT sell 1 @ 98 (fee 0.1), ETHUSDT sell 2 @ 45 (fee 0.05), one hour apart; then an operator
halt and arm. Every expected figure below was worked out by hand (average cost):

BTCUSDT: after the buys 2 @ cost 190; the sell takes 95 of cost off and realizes 98 - 95 = 3; 1 left
at cost 95, marked at 98: unrealized 3; fees 0.3; total 5.7. Equity after each of its fills: -0.1,
(180 - 190) - 0.2 = -10.2, 5.7: max drawdown 10.2. One closing trade, a win.
ETHUSDT: 2 @ cost 100, sold at 90: realized -10, fees 0.1, total -10.1; equity -0.05, -10.1:
drawdown 10.1. One closing trade, a loss.
Total equity after each fill: -0.1, -10.2, -10.25, 5.65, -4.4: max drawdown 10.25 (0 -> -10.25);
realized -7, unrealized 3, fees 0.4, total -4.4, 5 trades, win rate 1/2.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal as D
from typing import Any

import pytest

from kernel.reports.fills import parse_since
from machines import ORDER, TRADING
from storage import Journal
from tests.conftest import FakeClock, run_cli

HOUR_NS = 3_600 * 1_000_000_000
START_NS = 1_700_000_000_000_000_000
"""2023-11-14T22:13:20Z."""
FILLS = (
    ("b1", "BTCUSDT", "buy", "1", "100", "0.1"),
    ("b2", "BTCUSDT", "buy", "1", "90", "0.1"),
    ("e1", "ETHUSDT", "buy", "2", "50", "0.05"),
    ("s1", "BTCUSDT", "sell", "1", "98", "0.1"),
    ("e2", "ETHUSDT", "sell", "2", "45", "0.05"),
)


@pytest.fixture
def journal(db_path: str) -> str:
    clock = FakeClock(START_NS)
    journal = Journal.open(db_path, clock=clock)
    try:
        trading, created = TRADING.create("kernel", now_ms=1)
        journal.append(created, trading)
        for n, (order_id, instrument, side, qty, price, fee) in enumerate(FILLS, start=1):
            clock.advance(HOUR_NS)
            order, created = ORDER.create(order_id, instrument=instrument, side=side, qty=D(qty), price=D(price))
            journal.append(created, order)
            journal.fire(ORDER, order, "submit")
            journal.fire(ORDER, order, "accept", venue_order_id=f"V{n}")
            journal.fire(ORDER, order, "fill", qty=D(qty), price=D(price), trade_id=f"T{n}", fee=D(fee), fill_seq=n)
        clock.advance(HOUR_NS)
        journal.fire(TRADING, trading, "risk_breach", now_ms=2, limit="max_loss", value="4.4", threshold="4",
                     reason="loss limit")  # fmt: skip
        journal.fire(TRADING, trading, "all_canceled", now_ms=3)
        clock.advance(HOUR_NS)
        journal.fire(TRADING, trading, "arm", now_ms=4, reason="operator: reviewed")
        journal.commit()
    finally:
        journal.close()
    return db_path


def cli_json(*args: str) -> Any:
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_pnl_json_per_instrument_and_total(journal: str) -> None:
    report = cli_json("pnl", "--db", journal, "--json")
    assert report["mark_source"] == "last_fill"
    btc, eth, total = report["instruments"]["BTCUSDT"], report["instruments"]["ETHUSDT"], report["total"]
    decimals = ("realized", "unrealized", "fees", "total", "max_drawdown")
    assert {k: D(btc[k]) for k in decimals} == {
        "realized": D(3), "unrealized": D(3), "fees": D("0.3"), "total": D("5.7"), "max_drawdown": D("10.2"),
    }  # fmt: skip
    assert (D(btc["position"]), D(btc["avg_px"]), D(btc["mark"])) == (D(1), D(95), D(98))
    assert (btc["trades"], btc["closing_trades"], btc["wins"], D(btc["win_rate"])) == (3, 1, 1, D(1))
    assert {k: D(eth[k]) for k in decimals} == {
        "realized": D(-10), "unrealized": D(0), "fees": D("0.1"), "total": D("-10.1"), "max_drawdown": D("10.1"),
    }  # fmt: skip
    assert (D(eth["position"]), eth["avg_px"], D(eth["mark"])) == (D(0), None, D(45))
    assert (eth["trades"], eth["closing_trades"], eth["wins"], D(eth["win_rate"])) == (2, 1, 0, D(0))
    assert {k: D(total[k]) for k in decimals} == {
        "realized": D(-7), "unrealized": D(3), "fees": D("0.4"), "total": D("-4.4"), "max_drawdown": D("10.25"),
    }  # fmt: skip
    assert (total["trades"], total["closing_trades"], total["wins"], D(total["win_rate"])) == (5, 2, 1, D("0.5"))


def test_pnl_table_rounds_money_to_cents(journal: str) -> None:
    result = run_cli("pnl", "--db", journal)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[2].split() == ["BTCUSDT", "1.00000", "98.00", "3.00", "3.00", "0.30", "5.70", "3", "100.0", "%",
                                "(1/1)", "10.20"]  # fmt: skip
    assert lines[3].split() == ["ETHUSDT", "0.00000", "45.00", "-10.00", "0.00", "0.10", "-10.10", "2", "0.0", "%",
                                "(0/1)", "10.10"]  # fmt: skip
    assert lines[4].split() == ["total", "-7.00", "3.00", "0.40", "-4.40", "5", "50.0", "%", "(1/2)", "10.25"]
    assert "last fill price" in lines[5]


def test_fills_json_csv_and_filters(journal: str) -> None:
    rows = cli_json("fills", "--db", journal, "--json")
    assert [(r["client_order_id"], r["instrument"], r["side"], r["qty"], r["price"], r["fee"]) for r in rows] == [
        ("b1", "BTCUSDT", "buy", "1", "100", "0.1"),
        ("b2", "BTCUSDT", "buy", "1", "90", "0.1"),
        ("e1", "ETHUSDT", "buy", "2", "50", "0.05"),
        ("s1", "BTCUSDT", "sell", "1", "98", "0.1"),
        ("e2", "ETHUSDT", "sell", "2", "45", "0.05"),
    ]
    assert [r["time"][:19] for r in rows] == [
        "2023-11-14T23:13:20", "2023-11-15T00:13:20", "2023-11-15T01:13:20", "2023-11-15T02:13:20",
        "2023-11-15T03:13:20",
    ]  # fmt: skip
    first = rows[0]
    assert (first["trade_id"], first["fill_seq"], first["liquidity"], first["trigger"]) == ("T1", 1, None, "fill")
    since = cli_json("fills", "--db", journal, "--json", "--since", "2023-11-15T01:00:00Z", "--instrument", "BTCUSDT")
    assert [r["client_order_id"] for r in since] == ["s1"]
    assert cli_json("fills", "--db", journal, "--json", "--since", "2023-11-16") == []
    audit = cli_json("audit", "fills", "--db", journal, "--json")
    assert audit == rows
    text = run_cli("fills", "--db", journal, "--csv").stdout
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [(r["client_order_id"], r["qty"], r["price"], r["fee"], r["liquidity"]) for r in parsed][2] == (
        "e1", "2", "50", "0.05", "",
    )  # fmt: skip
    table = run_cli("fills", "--db", journal, "--instrument", "ETHUSDT").stdout.splitlines()
    assert table[2].split() == ["2023-11-15T01:13:20.000Z", "e1", "ETHUSDT", "buy", "2.00000", "50.00", "0.05", "-"]


def test_fills_usage_errors(journal: str, tmp_path: Any) -> None:
    bad = run_cli("fills", "--db", journal, "--since", "yesterday")
    assert bad.returncode == 2
    assert "not an ISO-8601 date or time" in bad.stderr
    both = run_cli("audit", "fills", "--db", journal, "--json", "--csv")
    assert both.returncode == 2
    assert "exclusive" in both.stderr
    missing = run_cli("pnl", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2


def test_parse_since_reads_dates_times_and_zones() -> None:
    assert parse_since("2023-11-14") == 1_699_920_000_000_000_000
    assert parse_since("2023-11-14T22:13:20Z") == START_NS
    assert parse_since("2023-11-14T23:13:20+01:00") == START_NS
    assert parse_since("2023-11-14T22:13:20.5") == START_NS + 500_000_000
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_since("14/11/2023")


def test_report_html_is_self_contained_with_charts_and_the_halt_table(journal: str, tmp_path: Any) -> None:
    page_path = tmp_path / "report.html"
    result = run_cli("report", "--db", journal, "--html", str(page_path))
    assert result.returncode == 0, result.stderr
    page = page_path.read_text(encoding="utf-8")
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page
    assert "<link" not in page
    assert page.count("<svg") == 3
    assert "max_loss 4.4 beyond 4: loss limit" in page
    assert "operator: reviewed" in page
    assert "<tr class=halt>" in page
    assert "<td>-4.40</td>" in page  # the total P&L, to the cent


def test_report_of_a_journal_without_fills_or_trading(db_path: str, tmp_path: Any) -> None:
    Journal.open(db_path).close()
    page_path = tmp_path / "empty.html"
    result = run_cli("report", "--db", db_path, "--html", str(page_path))
    assert result.returncode == 0, result.stderr
    page = page_path.read_text(encoding="utf-8")
    assert "No fills in this journal." in page
    assert "The trading state never changed" in page
    assert page.count("<svg") == 3
    assert run_cli("fills", "--db", db_path).stdout == "no fills\n"
    assert run_cli("pnl", "--db", db_path).stdout == "no fills\n"
