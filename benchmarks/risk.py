"""Pre-trade risk cost, and halt-to-everything-canceled on loopback. Prints JSON lines.

* ``risk.check``: ``machines.risk.check_new`` with every check on (order size and notional, price
  collar, tick, lot, min notional, max position and gross exposure counting open orders, max open
  orders, order rate per second and per minute, reduce-only off, trading state), for an intent
  that passes them all, with 10 open orders; next to one order-machine trigger (``submit`` on a
  fresh order) measured in the same run. Target (issue 8): <= 1 x that trigger.
* ``risk.halt``: a kernel process holds 1,000 working orders at a paper venue process; time from
  the operator's halt (the control-socket request ``tradekernel halt`` sends; and from launching
  the ``tradekernel halt`` command) to the venue holding no working order. Target: <= 1 s.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from decimal import Decimal
from pathlib import Path

from common import emit

from kernel import control
from kernel.strategy import Context, Place, Strategy
from machines import ORDER
from machines.order_terms import OrderTerms
from machines.risk import InstrumentLimits, Limits, OpenOrder, Rates, RiskView, check_new
from storage.venue_store import read_orders

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
RESTING = 1_000


class Rest1000(Strategy):
    """Places 1,000 small buys far below the market once, then nothing."""

    name = "rest_1000"

    def on_start(self, ctx: Context) -> list[Place]:
        return [Place("BTCUSDT", "buy", Decimal("0.001"), Decimal("1.00") + Decimal(i) / 100) for i in range(RESTING)]


def check_cost() -> None:
    limits = Limits(
        defaults=InstrumentLimits(
            max_order_qty=Decimal("1"),
            max_order_notional=Decimal("100000"),
            min_notional=Decimal("1"),
            price_collar_bps=Decimal("500"),
            max_position=Decimal("5"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.001"),
        ),
        max_gross_exposure=Decimal("1000000"),
        max_open_orders=100,
        orders_per_second=1000,
        orders_per_minute=10000,
    )
    open_orders = [OpenOrder("BTCUSDT", "buy", Decimal("0.01")) for _ in range(10)]
    view = RiskView({"BTCUSDT": Decimal("0.5")}, open_orders, {"BTCUSDT": Decimal("39400")}, "active")
    rates = Rates()
    for ms in range(0, 500, 10):
        rates = rates.record_order(ms, limits)
    terms = OrderTerms("BTCUSDT", "buy", Decimal("0.01"), Decimal("39390.00"))
    assert check_new(terms, view, limits, 600, rates) is None

    def check() -> None:
        check_new(terms, view, limits, 600, rates)

    orders = [ORDER.create(f"o{i}", instrument="BTCUSDT", side="buy", qty=Decimal(1), price=Decimal(1))[0]
              for i in range(2100 * 7)]  # fmt: skip
    fresh = iter(orders)

    def trigger() -> None:
        ORDER.fire(next(fresh), "submit")

    n = 2000
    checks = [timeit.timeit(check, number=n) / n * 1e6 for _ in range(7)]
    triggers = [timeit.timeit(trigger, number=n) / n * 1e6 for _ in range(7)]
    check_us, trigger_us = statistics.median(checks), statistics.median(triggers)
    emit({"bench": "risk.check", "check_new_us": round(check_us, 2), "order_trigger_us": round(trigger_us, 2),
          "ratio": round(check_us / trigger_us, 2), "open_orders": len(open_orders),
          "target": "<= 1 x one order trigger", "meets": check_us <= trigger_us})  # fmt: skip


def halt_time() -> None:
    workdir = tempfile.mkdtemp(prefix="tk-halt-")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    venue_db = os.path.join(workdir, "venue.db")
    # 1,000 orders at once: the venue's order rate limit off (docs/venue-protocol.md, Limits)
    venue = subprocess.Popen([sys.executable, "-m", "kernel", "venue", "--open", "--port", "0", "--db", venue_db,
                              "--order-rate", "0"], stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    assert venue.stdout is not None
    url = venue.stdout.readline().split()[-1]
    config = os.path.join(workdir, "k.toml")
    Path(config).write_text('[kernel]\nstatus_view = "off"\nlog_level = "warning"\nstop_timeout_s = 30\n')
    db = os.path.join(workdir, "k.db")
    kernel = subprocess.Popen([sys.executable, "-m", "kernel", "run", "--config", config, "--db", db, "--venue", url,
                               "--strategy", "risk:Rest1000"], env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while sum(o.status == "new" for o in read_orders(venue_db)) < RESTING:
            if time.monotonic() > deadline:
                raise SystemExit("the 1,000 orders never rested at the venue")
            time.sleep(0.2)
        started = time.perf_counter()
        control.request(db + ".sock", "halt", reason="benchmark")
        while any(o.status == "new" for o in read_orders(venue_db)):
            time.sleep(0.005)
        from_request = time.perf_counter() - started
        emit({"bench": "risk.halt", "open_orders": RESTING, "halt_to_all_canceled_s": round(from_request, 3),
              "measured_from": "the control request (what `tradekernel halt` sends)",
              "target": "<= 1 s", "meets": from_request <= 1.0})  # fmt: skip
    finally:
        kernel.send_signal(signal.SIGTERM)
        kernel.wait(timeout=60)
        venue.send_signal(signal.SIGTERM)
        venue.wait(timeout=60)


def main() -> None:
    check_cost()
    halt_time()


if __name__ == "__main__":
    main()
