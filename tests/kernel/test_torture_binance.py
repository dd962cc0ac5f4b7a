"""The kill -9 torture test against the Binance spot stand-in (issue 16).

The same turns and checks as ``tests/kernel/test_torture.py`` (random kills, each crash point, a
kill during the reconciliation after the venue restarted, a journal outage), with the kernel
configured ``[venue] kind = "binance"`` and ``[market] source = "binance"`` against
``python -m tests.standins binance-api`` (a loopback stand-in of Binance's WebSocket API and market
streams, written from the official docs, its state kept in a file across restarts). The stand-in's
restart is a clean one (SIGTERM, state saved): Binance restarting its servers does not forget
orders; it is the kernel that is killed.

The venue's view is read from the stand-in's state file and put in the shape of
``tradekernel venue orders --json``: one entry per client order id, whose legs (an
``order.cancelReplace`` keeps our id on a new ``orderId``) are summed: ``cum_qty`` over every leg,
the status of the newest leg (``partially_filled`` while it works with something executed), the
fills of every leg.

CI runs 16 turns (17 kills: a journal outage adds one); ``TRADEKERNEL_TORTURE_KILLS=N`` sets another number.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.kernel.test_torture import ENV, LIMIT_S, SEED, torture

CI_KILLS = 16
API_KEY = "tortureKey0123456789"
API_SECRET = "torture-secret"
SYMBOL = "BTCUSDT"
STATUS = {
    "NEW": "new",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
}
"""Binance's order status and the paper venue's name for it (``venue orders --json``)."""


class BinanceStandInVenue:
    """``python -m tests.standins binance-api`` on a loopback port with a state file; the kernel's
    configuration (``kernel.toml``) points ``[venue]`` and ``[market]`` at it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state = workdir / "binance.json"
        self.url = ""
        self.port = 0
        self.proc = self._start()
        self._write_config()

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.standins", "binance-api", "--port", str(self.port),
             "--api-key", API_KEY, "--api-secret", API_SECRET, "--state-path", str(self.state),
             "--seed", str(SEED), "--max-seconds", "1800"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(REPO),
        )  # fmt: skip
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], LIMIT_S)
        if not ready:
            proc.kill()
            pytest.fail("the Binance stand-in did not start")
        urls = dict(item.split("=", 1) for item in proc.stdout.readline().split())
        self.url, self.stream_url, self.rest_url = urls["ws_api_url"], urls["stream_url"], urls["rest_url"]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        return proc

    def _write_config(self) -> None:
        (self.workdir / "kernel.toml").write_text(
            "[kernel]\n"
            'durability = "full"\n'
            "cancel_on_stop = true\n"
            "stop_timeout_s = 5.0\n"
            "[venue]\n"
            'kind = "binance"\n'
            f'ws_api_url = "{self.url}"\n'
            'api_key_env = "TORTURE_BINANCE_KEY"\n'
            'api_secret_env = "TORTURE_BINANCE_SECRET"\n'
            f'instruments = ["{SYMBOL}"]\n'
            "[market]\n"
            'source = "binance"\n'
            f'instruments = ["{SYMBOL}"]\n'
            f'ws_url = "{self.stream_url}"\n'
            f'rest_url = "{self.rest_url}"\n',
            encoding="utf-8",
        )

    @property
    def kernel_args(self) -> list[str]:
        return []

    def restart(self) -> None:
        """Stop the stand-in (its state saved) and start it again on the same port and state."""
        self.stop()
        self.proc = self._start()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=LIMIT_S)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=LIMIT_S)
        assert self.proc.returncode == 0, self.proc.returncode

    def orders(self) -> list[dict[str, Any]]:
        state = json.loads(self.state.read_text())
        return venue_orders(state["orders"], state["trades"])


def venue_orders(legs: list[dict[str, Any]], trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stand-in's orders and trades, one entry per client order id (see the module docstring)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for leg in sorted(legs, key=lambda leg: int(leg["order_id"])):
        by_id.setdefault(leg["client_order_id"], []).append(leg)
    fills: dict[int, list[dict[str, Any]]] = {}
    for trade in trades:
        fills.setdefault(int(trade["orderId"]), []).append(trade)
    orders = []
    for client_order_id, its_legs in by_id.items():
        newest = its_legs[-1]
        cum_qty = sum((Decimal(leg["executed"]) for leg in its_legs), Decimal(0))
        status = STATUS[newest["status"]]
        if status == "new" and cum_qty > 0:
            status = "partially_filled"
        orders.append(
            {
                "client_order_id": client_order_id,
                "instrument": SYMBOL,
                "side": newest["side"].lower(),
                "status": status,
                "cum_qty": str(cum_qty),
                "created_ts_ms": its_legs[0]["time"],
                "duplicate_submits": 0,
                "fills": [
                    {"trade_id": str(t["id"]), "qty": t["qty"], "price": t["price"], "fee": t["commission"]}
                    for leg in its_legs
                    for t in fills.get(int(leg["order_id"]), [])
                ],
            }
        )
    return orders


def test_legs_of_one_client_order_id_are_one_order() -> None:
    legs = [
        {"order_id": 7, "client_order_id": "o1", "side": "BUY", "status": "CANCELED", "executed": "0.4", "time": 5},
        {"order_id": 9, "client_order_id": "o1", "side": "BUY", "status": "NEW", "executed": "0", "time": 8},
        {"order_id": 8, "client_order_id": "o2", "side": "SELL", "status": "FILLED", "executed": "1", "time": 6},
    ]
    trades = [
        {"id": 3, "orderId": 7, "qty": "0.4", "price": "100", "commission": "0.0004"},
        {"id": 4, "orderId": 8, "qty": "1", "price": "101", "commission": "0.101"},
    ]
    assert venue_orders(legs, trades) == [
        {
            "client_order_id": "o1",
            "instrument": "BTCUSDT",
            "side": "buy",
            "status": "partially_filled",
            "cum_qty": "0.4",
            "created_ts_ms": 5,
            "duplicate_submits": 0,
            "fills": [{"trade_id": "3", "qty": "0.4", "price": "100", "fee": "0.0004"}],
        },
        {
            "client_order_id": "o2",
            "instrument": "BTCUSDT",
            "side": "sell",
            "status": "filled",
            "cum_qty": "1",
            "created_ts_ms": 6,
            "duplicate_submits": 0,
            "fills": [{"trade_id": "4", "qty": "1", "price": "101", "fee": "0.101"}],
        },
    ]


@pytest.fixture
def binance() -> Iterator[BinanceStandInVenue]:
    """The stand-in of the test in a short temporary directory (Unix socket paths are limited to
    ~100 bytes), the kernel's credentials in the environment of its processes."""
    workdir = Path(tempfile.mkdtemp(prefix="tkb"))
    ENV["TORTURE_BINANCE_KEY"], ENV["TORTURE_BINANCE_SECRET"] = API_KEY, API_SECRET
    handle = BinanceStandInVenue(workdir)
    try:
        yield handle
    finally:
        handle.kill()
        ENV.pop("TORTURE_BINANCE_KEY", None)
        ENV.pop("TORTURE_BINANCE_SECRET", None)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.slow
def test_kill_9_over_and_over_against_binance(binance: BinanceStandInVenue) -> None:
    kills = int(os.environ.get("TRADEKERNEL_TORTURE_KILLS", CI_KILLS))
    summary = torture(binance.workdir, binance, kills)
    assert summary["kills"] >= kills, summary
