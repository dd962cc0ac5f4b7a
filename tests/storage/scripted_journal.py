"""A small scripted journal for the reader views, Datasette and ``audit serve`` tests: every row
is written out by hand (seqs in the comments), so the tests can expect rows by hand."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from machines import ORDER, POSITION, TRADING, Entity
from storage import Journal
from tests.conftest import FakeClock

T0 = 1_800_000_000_000_000_000
"""2027-01-15T08:00:00Z (``date -u -d @1800000000``) in nanoseconds."""
DAY_NS = 86_400 * 1_000_000_000
MS = 1_000_000


def at(clock: FakeClock, ns: int) -> None:
    clock.now = T0 + ns


def build_scripted(path: str) -> None:
    """Run 1: three orders (one duplicate fill report, one fill learned at reconciliation), two
    positions, the trading machine through two halts, two anomalies. Seqs as commented."""
    clock = FakeClock(start_ns=T0, step_ns=0)
    with Journal.open(path, clock=clock) as journal:  # seq 1: run 1 create at T0

        def fire(entity: Entity, trigger: str, **data: Any) -> None:
            journal.fire(entity.machine, entity, trigger, **data)

        at(clock, 1 * MS)
        trading, created = TRADING.create("kernel", now_ms=5000)
        journal.append(created, trading)  # 2
        at(clock, 2 * MS)
        orders = {}
        for cid, instrument, side, qty, price in (
            ("b1", "BTCUSDT", "buy", "4", "10"),  # 3
            ("s1", "ETHUSDT", "sell", "1", "20"),  # 4
            ("c1", "BTCUSDT", "buy", "2", "9"),  # 5
        ):
            order, created = ORDER.create(cid, instrument=instrument, side=side, qty=Decimal(qty), price=Decimal(price))
            journal.append(created, order)
            orders[cid] = order
        at(clock, 3 * MS)
        for cid in ("b1", "s1", "c1"):  # 6..11
            fire(orders[cid], "submit")
            fire(orders[cid], "accept", venue_order_id=f"V{cid.upper()}")
        at(clock, 10 * MS + 999_999)  # cut, not rounded, to .010
        t1 = {"qty": Decimal(1), "price": Decimal("9.5"), "trade_id": "T1", "fee": Decimal("0.01")}
        fire(orders["b1"], "fill", **t1, ts_ms=1_800_000_000_008, liquidity="maker")  # 12
        btc, created = POSITION.create("BTCUSDT")
        journal.append(created, btc)  # 13
        fire(btc, "fill", client_order_id="b1", side="buy", **t1)  # 14
        at(clock, 20 * MS)
        fire(orders["s1"], "fill", qty=Decimal(1), price=Decimal(21), trade_id="T2")  # 15
        eth, created = POSITION.create("ETHUSDT")
        journal.append(created, eth)  # 16
        fire(eth, "fill", client_order_id="s1", side="sell", qty=Decimal(1), price=Decimal(21), trade_id="T2")  # 17
        at(clock, 30 * MS)
        fire(orders["b1"], "fill", **t1)  # 18: the same trade reported again
        journal.commit()

        at(clock, DAY_NS + 5 * MS)
        t3 = {"qty": Decimal(3), "price": Decimal(10), "trade_id": "T3", "fee": Decimal("0.02")}
        fire(orders["b1"], "fill", **t3)  # 19
        fire(btc, "fill", client_order_id="b1", side="buy", **t3)  # 20
        t4 = {"qty": Decimal(1), "price": Decimal(9), "trade_id": "T4", "fee": Decimal("0.009")}
        fire(orders["c1"], "reconcile_fill", **t4)  # 21
        fire(btc, "fill", client_order_id="c1", side="buy", **t4)  # 22
        for offset, trigger, data in (
            (100, "halt", {"reason": "operator: test"}),  # 23 active -> halting
            (101, "all_canceled", {}),  # 24 halting -> halted
            (102, "risk_breach", {"limit": "max_position", "value": Decimal(5), "threshold": Decimal(3)}),  # 25
            (103, "arm", {"reason": "operator: resume"}),  # 26 halted -> active
            (104, "health_unhealthy", {"component": "feed-r1", "reason": "stale", "flatten": True}),  # 27
            (105, "journal_failed", {"reason": "disk full"}),  # 28 recorded while halting
        ):
            at(clock, DAY_NS + offset * MS)
            fire(trading, trigger, now_ms=6000 + offset, **data)
        at(clock, DAY_NS + 200 * MS)
        journal.record_anomaly("feed:paper", "decode_error", "not JSON", "{x")
        at(clock, DAY_NS + 201 * MS)
        journal.record_anomaly("orders", "unknown_order", "no such order", "V9")
        journal.commit()
        at(clock, DAY_NS + 300 * MS)
    # seq 29: run 1 stop
