"""Two kernels, two accounts, one paper venue (issue 15's end-to-end check).

A ``tradekernel venue`` process that authenticates, two accounts made with ``venue account add``,
and two ``tradekernel run`` processes (the torture test's churning strategy, each with its own
journal and its account's key and secret from the environment) trading against it at once for a
minute. Meanwhile an unauthenticated client and a wrong signature are refused. Then each kernel
stops cleanly, and each journal must agree with the venue's record of its own account: the same
orders (state and cum_qty), the same fills, the same position, and balances equal to the starting
balances moved by that journal's fills and fees; neither kernel has any order of the other.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from kernel import paper_protocol as protocol
from storage.audit import AuditReader
from storage.venue_store import StoredOrder, read_orders
from tests.conftest import REPO, add_venue_account, run_cli

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
ENV.pop("TRADEKERNEL_CRASH_AT", None)
SECONDS = int(os.environ.get("TRADEKERNEL_TWO_ACCOUNTS_S", "60"))
LIMIT_S = 30.0
START = {"USDT": Decimal(1_000_000), "BTC": Decimal(10)}
FEE_BPS = Decimal(10)
VENUE_TO_ORDER_STATE = {
    "new": "accepted",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "canceled": "canceled",
    "rejected": "rejected",
    "expired": "expired",
}
CONFIG = """\
[kernel]
durability = "full"
cancel_on_stop = true
stop_timeout_s = 5.0

[venue]
api_key_env = "TK_{name}_KEY"
api_secret_env = "TK_{name}_SECRET"
"""


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tk2"))  # short: Unix socket paths are limited
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_venue(db: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "venue", "--port", "0", "--db", db, "--seed", "21",
         "--fee-bps", str(FEE_BPS), *(f"--balance={asset}={amount}" for asset, amount in START.items())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=str(REPO),
    )  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], LIMIT_S)
    if not ready:
        proc.kill()
        pytest.fail("the venue did not start")
    line = proc.stdout.readline()
    assert line.startswith("venue listening on "), line
    return proc, line.split()[-1]


def start_kernel(workdir: Path, name: str, url: str, key: str, secret: str) -> tuple[subprocess.Popen[str], str]:
    db = str(workdir / f"{name}.db")
    config = workdir / f"{name}.toml"
    config.write_text(CONFIG.format(name=name))
    env = {**ENV, f"TK_{name}_KEY": key, f"TK_{name}_SECRET": secret}
    with open(workdir / f"{name}.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel", "run", "--venue", url, "--db", db, "--config", str(config),
             "--strategy", "tests.kernel.torture_strategy:Churn", "--status-view", "off",
             "--duration", str(SECONDS)],
            stdout=subprocess.DEVNULL, stderr=err, text=True, env=env, cwd=str(REPO),
        )  # fmt: skip
    return proc, db


def first_answer(url: str, hello: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``hello`` (and, when challenged, the signed ``hello`` built by ``hello["sign"]``); the answers."""
    sign = hello.pop("sign", None)
    answers: list[dict[str, Any]] = []
    with connect(url, open_timeout=LIMIT_S) as ws:
        ws.send(json.dumps(hello))
        answers.append(json.loads(ws.recv(timeout=LIMIT_S)))
        if answers[-1]["type"] == "challenge" and sign is not None:
            ws.send(json.dumps(sign(answers[-1]["nonce"])))
            answers.append(json.loads(ws.recv(timeout=LIMIT_S)))
        try:
            ws.send(json.dumps({"type": "open_orders", "id": "q"}))
            answers.append(json.loads(ws.recv(timeout=LIMIT_S)))
        except ConnectionClosed as exc:  # closed by the venue after a refusal (maybe before our send)
            answers.append({"type": "closed", "why": type(exc).__name__})
    return answers


def wrong_signature(key: str) -> Any:
    def sign(nonce: str) -> dict[str, Any]:
        signature = protocol.sign(protocol.secret_key("not the secret"), nonce, key)
        return {"type": "hello", "version": 1, "api_key": key, "nonce": nonce, "signature": signature}

    return sign


def journal_view(db: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    with AuditReader(db) as reader:
        assert reader.verify().ok
        return {o["entity"]: o for o in reader.entities(machine="order")}, reader.fills()


def balances_from(fills: list[dict[str, Any]]) -> dict[str, Decimal]:
    """The starting balances moved by ``fills`` (BTCUSDT: base BTC, quote USDT; fees in USDT)."""
    usdt, btc = START["USDT"], START["BTC"]
    for f in fills:
        notional = f["qty"] * f["price"]
        if f["side"] == "buy":
            usdt, btc = usdt - notional, btc + f["qty"]
        else:
            usdt, btc = usdt + notional, btc - f["qty"]
        usdt -= f["fee"]
    return {"USDT": usdt, "BTC": btc}


def venue_balances(db: str, account: str) -> dict[str, Decimal]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT asset, amount FROM balances WHERE account = ?", (account,)).fetchall()
    finally:
        conn.close()
    return {asset: Decimal(amount) for asset, amount in rows}


def assert_agrees(name: str, db: str, at_venue: list[StoredOrder], venue_db: str) -> int:
    """The journal at ``db`` and the venue's orders of account ``name`` agree; its fill count."""
    orders, fills = journal_view(db)
    mine = [o for o in at_venue if o.account == name]
    assert mine, f"{name} has no orders at the venue"
    for o in mine:
        journaled = orders.get(o.client_order_id)
        assert journaled is not None, f"{name}: venue order {o.client_order_id} is not in its journal"
        assert journaled["state"] == VENUE_TO_ORDER_STATE[o.status], (o, journaled)
        assert Decimal(journaled["data"]["cum_qty"]) == o.cum_qty, (o, journaled)
    assert not [o for o in orders.values() if o["data"].get("origin") == "external"], f"{name} adopted an order"
    sent = {i for i, o in orders.items() if o["state"] not in ("denied", "rejected")}
    assert sent <= {o.client_order_id for o in mine}, f"{name}: orders the venue does not hold for it"
    venue_trades = {(o.client_order_id, f.trade_id) for o in mine for f in o.fills}
    assert {(f["client_order_id"], f["trade_id"]) for f in fills} == venue_trades
    position = sum((f["qty"] if f["side"] == "buy" else -f["qty"] for f in fills), Decimal(0))
    venue_position = sum((f.qty if o.side == "buy" else -f.qty for o in mine for f in o.fills), Decimal(0))
    assert position == venue_position
    expected = balances_from(fills)
    held = venue_balances(venue_db, name)
    assert {a: held.get(a, START[a]) for a in expected} == expected, (name, held, expected)
    return len(fills)


@pytest.mark.slow
def test_two_kernels_with_two_accounts_trade_on_one_venue_without_touching_each_other(workdir: Path) -> None:
    venue_db = str(workdir / "venue.db")
    credentials = {name: add_venue_account(venue_db, name) for name in ("alice", "bob")}
    venue, url = start_venue(venue_db)
    kernels: list[subprocess.Popen[str]] = []
    try:
        # refused: no key at all, and alice's key with a wrong signature
        unauthenticated = first_answer(url, {"type": "hello", "version": 1})
        assert (unauthenticated[0]["type"], unauthenticated[0]["code"]) == ("error", "auth_failed")
        key = credentials["alice"][0]
        forged = first_answer(url, {"type": "hello", "version": 1, "api_key": key, "sign": wrong_signature(key)})
        assert forged[0]["type"] == "challenge"
        assert (forged[1]["type"], forged[1]["code"]) == ("error", "auth_failed")
        assert "signature" in forged[1]["message"]
        assert forged[2]["type"] != "open_orders_report"  # nothing served after a refusal

        dbs = {}
        for name, (key, secret) in credentials.items():
            proc, dbs[name] = start_kernel(workdir, name, url, key, secret)
            kernels.append(proc)
        codes = [proc.wait(timeout=SECONDS + LIMIT_S) for proc in kernels]
    finally:
        for proc in kernels:
            if proc.poll() is None:
                proc.kill()
        venue.terminate()
        venue.communicate(timeout=LIMIT_S)
    errors = {name: (workdir / f"{name}.err").read_text() for name in credentials}
    assert codes == [0, 0], errors
    for name, text in errors.items():
        assert "Traceback" not in text, text
        assert "stopped cleanly" in text, text
        assert credentials[name][1] not in text  # the secret never in a log
    at_venue = read_orders(venue_db)
    assert {o.account for o in at_venue} == {"alice", "bob"}
    fills = {name: assert_agrees(name, dbs[name], at_venue, venue_db) for name in credentials}
    assert all(n > 0 for n in fills.values()), fills
    # no client order id of one journal is an order of the other account, and vice versa
    alice_orders, _ = journal_view(dbs["alice"])
    bob_orders, _ = journal_view(dbs["bob"])
    assert not set(alice_orders) & set(bob_orders)
    assert not [o for o in at_venue if o.account == "bob" and o.client_order_id in alice_orders]
    summary = {
        "seconds": SECONDS,
        "orders": {name: sum(1 for o in at_venue if o.account == name) for name in credentials},
        "fills": fills,
        "refused": ["hello without api_key", "forged signature"],
    }
    print(json.dumps(summary), flush=True)
    result = run_cli("venue", "orders", "--db", venue_db, "--account", "alice", "--json", timeout=LIMIT_S)
    assert result.returncode == 0, result.stderr
    assert {o["account"] for o in json.loads(result.stdout)} == {"alice"}
