"""Decimals in human output: quantized to the tick, the lot and the currency (``kernel/display.py``)
in ``status``'s text, the lines view and the audit tables; the JSON forms keep the exact strings.
Every expected string is written by hand."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

from rich.console import Console

from kernel.cli.audit import human_data
from kernel.live_view import frame
from kernel.paper_defaults import TradingRules
from kernel.status import render_text, rules_of, status_line
from machines.risk_limits import InstrumentLimits, Limits

# the numbers of the issue: an unquantized P&L, average price and quantities
STATUS: dict[str, Any] = {
    "running": True,
    "pid": 4242,
    "db": "./k.db",
    "run_id": 3,
    "health": {"status": "healthy", "reason": None},
    "trading": {"state": "active", "reason": None, "order_entry": "open", "entry_reason": None},
    "feed": {
        "state": "streaming",
        "instruments": ["BTCUSDT"],
        "last_trade": {"BTCUSDT": {"price": "39472.879614", "ts_ms": 1}},
    },
    "open_orders": [
        {
            "client_order_id": "o-1",
            "instrument": "BTCUSDT",
            "side": "buy",
            "type": "limit",
            "state": "accepted",
            "qty": "0.001",
            "price": "39413.5800",
            "cum_qty": "0",
            "leaves_qty": "0.000000",
            "tag": "bid",
        }
    ],
    "positions": {
        "BTCUSDT": {
            "qty": "-0.003",
            "avg_px": "39472.87961448048895157894737",
            "mark": "39480",
            "realized_pnl": "0",
            "unrealized_pnl": "-0.02136115346",
            "fees": "0.011837039",
            "total_pnl": "-0.28307565598800000000",
            "fills": 3,
        }
    },
    "pnl": {
        "realized_pnl": "0",
        "unrealized_pnl": "-0.02136115346",
        "fees": "0.011837039",
        "total_pnl": "-0.28307565598800000000",
    },
    "fills": 3,
}


def test_status_text_quantizes_with_the_default_rules() -> None:
    assert render_text(STATUS).splitlines() == [
        "kernel     running (run 3, pid 4242)  journal ./k.db",
        "health     healthy",
        "trading    active",
        "orders     entry open",
        "feed       streaming  BTCUSDT last 39472.88",
        "open       1 order(s)",
        "           o-1  buy  0.00000/0.00100 BTCUSDT @ 39413.58  accepted",
        "position   BTCUSDT -0.00300 @ 39472.88  realized 0.00  unrealized -0.02  fees 0.01",
        "pnl        total -0.28 USDT  realized 0.00  unrealized -0.02  fees 0.01  (fills 3)",
    ]


def test_status_text_uses_the_rules_it_is_given() -> None:
    rules = {"BTCUSDT": TradingRules(tick_size=Decimal("0.1"), lot_size=Decimal("0.001"))}
    lines = render_text(STATUS, rules=rules).splitlines()
    assert lines[4] == "feed       streaming  BTCUSDT last 39472.9"
    assert lines[6] == "           o-1  buy  0.000/0.001 BTCUSDT @ 39413.6  accepted"
    assert lines[7] == "position   BTCUSDT -0.003 @ 39472.9  realized 0.00  unrealized -0.02  fees 0.01"


def test_status_text_uses_the_rules_a_running_kernels_status_carries() -> None:
    status = {**STATUS, "rules": {"BTCUSDT": {"tick_size": "0.5", "lot_size": "0.01"}}}
    lines = render_text(status).splitlines()
    assert lines[4] == "feed       streaming  BTCUSDT last 39472.9"  # to the tick's places
    assert lines[6] == "           o-1  buy  0.00/0.00 BTCUSDT @ 39413.6  accepted"
    assert status_line(status, now_ms=1_796_266_267_123).endswith("pos=BTCUSDT:0.00 pnl=-0.28 fills=3")  # no "-0.00"


def test_status_line_is_stamped_in_utc_with_the_date_and_quantized() -> None:
    line = status_line(STATUS, now_ms=1_796_266_267_123)  # 2026-12-03T02:51:07.123Z
    assert line == (
        "2026-12-03T02:51:07.123Z health=healthy feed=streaming last=BTCUSDT=39472.88 entry=open "
        "open=1 pos=BTCUSDT:-0.00300 pnl=-0.28 fills=3"
    )


def test_a_status_without_instruments_shows_money_to_cents() -> None:
    empty = {**STATUS, "feed": None, "open_orders": [], "positions": {}, "pnl": dict.fromkeys(STATUS["pnl"], "0")}
    assert status_line(empty, now_ms=0) == (
        "1970-01-01T00:00:00.000Z health=healthy feed=None last=- entry=open open=0 pos=flat pnl=0.00 fills=3"
    )


def test_the_live_frame_quantizes_with_the_kernels_rules() -> None:
    console = Console(file=io.StringIO(), width=100, height=24, color_system=None)
    rules = {"BTCUSDT": TradingRules(tick_size=Decimal("0.1"), lot_size=Decimal("0.001"))}
    console.print(frame(STATUS, width=100, height=24, rules=rules))
    lines = [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert lines[:7] == [
        "kernel   running  run 3  pid 4242  journal ./k.db",
        "health   healthy",
        "trading  active  entry open",
        "feed     streaming  BTCUSDT 39472.9",
        "P&L      total -0.28 USDT  realized 0.00  unrealized -0.02  fees 0.01  (fills 3)",
        "orders   1 open",
        "position BTCUSDT -0.003 @ 39472.9  realized 0.00  unrealized -0.02  fees 0.01",
    ]
    assert lines[7].split() == ["order", "side", "leaves/qty", "price", "instrument", "state", "tag"]
    assert lines[8].split() == ["o-1", "buy", "0.000/0.001", "39413.6", "BTCUSDT", "accepted", "bid"]


def test_the_kernels_rules_come_from_its_risk_limits() -> None:
    class Kernel:
        instruments = ("BTCUSDT", "ETHUSDT")
        limits = Limits(
            defaults=InstrumentLimits(lot_size=Decimal("0.0001")),
            per_instrument={"BTCUSDT": InstrumentLimits(tick_size=Decimal("0.1"))},
        )

    assert rules_of(Kernel()) == {"BTCUSDT": TradingRules(Decimal("0.1"), Decimal("0.0001"))}
    assert rules_of(object()) == {}


def test_audit_tables_quantize_order_and_position_data() -> None:
    fill = {"fee": "0.003945303", "fill_seq": 1, "price": "39453.03", "qty": "0.001", "trade_id": "F1"}
    assert human_data(fill, "BTCUSDT") == {
        "fee": "0.00",
        "fill_seq": 1,
        "price": "39453.03",
        "qty": "0.00100",
        "trade_id": "F1",
    }
    order = {"instrument": "ETH-BTC", "avg_px": None, "cum_qty": "0", "filled_notional": "0.0123456789", "tag": "x"}
    assert human_data(order, None) == {
        "instrument": "ETH-BTC",
        "avg_px": None,
        "cum_qty": "0.00000",
        "filled_notional": "0.01234568",
        "tag": "x",
    }
    assert human_data({"qty": "3"}, None) == {"qty": "3"}  # no instrument: as journaled
    assert human_data({"price": "n/a"}, "BTCUSDT") == {"price": "n/a"}
