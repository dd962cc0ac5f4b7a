"""``AuditReader.fills``: where each fill is in the journal, what the venue said of it, and the
``since_ns`` / ``instrument`` filters (issue 18, reports)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import pytest

from machines import ORDER
from storage import Journal
from storage.audit import AuditReader
from tests.conftest import FakeClock

DAY_NS = 86_400 * 1_000_000_000
START_NS = 1_700_000_000_000_000_000
"""2023-11-14T22:13:20Z."""


@pytest.fixture
def journal_path(db_path: str) -> str:
    """Two orders; fills T1 (BTCUSDT, maker), a day later T2 (ETHUSDT), a repeat of T1, then T3 (BTCUSDT)."""
    clock = FakeClock(START_NS)
    journal = Journal.open(db_path, clock=clock)
    try:
        buy, created = ORDER.create("b1", instrument="BTCUSDT", side="buy", qty=Decimal(3), price=Decimal(10))
        journal.append(created, buy)
        sell, created = ORDER.create("s1", instrument="ETHUSDT", side="sell", qty=Decimal(1), price=Decimal(20))
        journal.append(created, sell)
        for order in (buy, sell):
            journal.fire(ORDER, order, "submit")
            journal.fire(ORDER, order, "accept", venue_order_id=f"V{order.entity_id}")
        journal.fire(
            ORDER, buy, "fill", qty=Decimal(1), price=Decimal("9.5"), trade_id="T1", fee=Decimal("0.01"),
            fill_seq=1, ts_ms=1_700_000_000_123, liquidity="maker",
        )  # fmt: skip
        clock.advance(DAY_NS)
        journal.fire(ORDER, sell, "fill", qty=Decimal(1), price=Decimal(21), trade_id="T2", fill_seq=2)
        journal.fire(ORDER, buy, "fill", qty=Decimal(1), price=Decimal("9.5"), trade_id="T1")  # duplicate report
        journal.fire(ORDER, buy, "fill", qty=Decimal(2), price=Decimal(10), trade_id="T3", fill_seq=3)
        journal.commit()
    finally:
        journal.close()
    return db_path


def seq_of(db: str, trade_id: str) -> int:
    """The seq of the first ``fill`` transition carrying ``trade_id`` (hand-written SQL)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (seq,) = conn.execute(
            "SELECT min(seq) FROM transitions WHERE trigger = 'fill' AND json_extract(data, '$.trade_id') = ?",
            (trade_id,),
        ).fetchone()
    finally:
        conn.close()
    return int(seq)


def test_each_fill_says_where_it_is_in_the_journal_and_what_the_venue_said(journal_path: str) -> None:
    with AuditReader(journal_path) as reader:
        fills = reader.fills()
    assert [f["trade_id"] for f in fills] == ["T1", "T2", "T3"]
    first = fills[0]
    assert first["seq"] == seq_of(journal_path, "T1")
    assert first["time"].startswith("2023-11-14T22:13:20.")
    assert len(first["time"]) == len("2023-11-14T22:13:20.000000000Z")
    assert first["ts_ns"] // 1_000_000_000 == START_NS // 1_000_000_000
    assert first["run"] == 1  # Journal.open starts run 1
    assert first["trigger"] == "fill"
    assert first["fill_seq"] == 1
    assert first["venue_time"] == "2023-11-14T22:13:20.123000000Z"
    assert first["liquidity"] == "maker"
    second = fills[1]
    assert second["seq"] == seq_of(journal_path, "T2")
    assert second["time"].startswith("2023-11-15T22:13:20.")
    assert (second["venue_time"], second["liquidity"], second["fill_seq"]) == (None, None, 2)
    assert (second["instrument"], second["side"], second["qty"], second["price"]) == (
        "ETHUSDT", "sell", Decimal(1), Decimal(21),
    )  # fmt: skip
    assert fills[2]["seq"] == seq_of(journal_path, "T3")


def test_since_and_instrument_filter_the_fills(journal_path: str) -> None:
    with AuditReader(journal_path) as reader:
        later = reader.fills(since_ns=START_NS + DAY_NS)
        btc = reader.fills(instrument="BTCUSDT")
        both = reader.fills(since_ns=START_NS + DAY_NS, instrument="BTCUSDT")
        none = reader.fills(instrument="XRPUSDT")
    assert [f["trade_id"] for f in later] == ["T2", "T3"]
    assert [f["trade_id"] for f in btc] == ["T1", "T3"]
    assert [f["trade_id"] for f in both] == ["T3"]
    assert none == []
