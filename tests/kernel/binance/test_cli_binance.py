"""``tradekernel resume --dry-run`` and ``tradekernel venue check`` with a Binance configuration, in
real processes against the stand-in: the dry run reconciles a copy of a Binance kernel's journal and
changes nothing at the venue; the check is read-only too."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel.strategy import Place
from storage import Journal
from tests.conftest import run_cli
from tests.kernel.binance.standin_kernel import API_KEY, SECRET, SYMBOL, StandinKernel, requests
from tests.standins.binance_api import BinanceApiStandIn

LIMIT_S = 60.0


def write_config(path: Path, venue: BinanceApiStandIn, db: str) -> str:
    path.write_text(
        "[kernel]\n"
        f'db = "{db}"\n'
        "[venue]\n"
        'kind = "binance"\n'
        f'ws_api_url = "{venue.ws_api_url}"\n'
        'api_key_env = "BN_KEY"\n'
        'api_secret_env = "BN_SECRET"\n'
        f'instruments = ["{SYMBOL}"]\n'
        "[market]\n"
        'source = "binance"\n'
        f'instruments = ["{SYMBOL}"]\n'
        f'ws_url = "{venue.stream_url}"\n'
        f'rest_url = "{venue.rest_url}"\n',
        encoding="utf-8",
    )
    return str(path)


@pytest.mark.asyncio
async def test_resume_dry_run_reconciles_with_binance_and_sends_no_order(tmp_path: Path) -> None:
    async with BinanceApiStandIn(SYMBOL, api_keys={API_KEY: SECRET}, pace_ms=100, max_seconds=120) as venue:
        async with StandinKernel(venue, tmp_path) as sk:
            await sk.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
            (coid,) = sk.order_ids()
            await sk.until(lambda: sk.state(coid) == "accepted", "the ack")
        # the kernel stopped with the order resting (cancel_on_stop off); preview the next start
        config = write_config(tmp_path / "kernel.toml", venue, sk.journal_path)
        placed = requests(venue, "order.place")
        env = {"BN_KEY": API_KEY, "BN_SECRET": SECRET}
        result = await asyncio.to_thread(
            run_cli, "resume", "--dry-run", "--config", config, "--json", timeout=LIMIT_S, env=env
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["venue"] == venue.ws_api_url
        assert report["rebuild"]["live_orders"] == 1, report
        assert report["reconciliation"]["differences"] == [], report
        assert requests(venue, "order.place") == placed  # nothing sent
        assert requests(venue, "order.cancel") == 0
        assert requests(venue, "openOrders.status") >= 2  # the kernel's start and the dry run


def test_resume_dry_run_with_an_unusable_key_file_exits_2(tmp_path: Path) -> None:
    Journal.open(str(tmp_path / "k.db")).close()
    config = tmp_path / "kernel.toml"
    config.write_text(
        "[kernel]\n"
        f'db = "{tmp_path / "k.db"}"\n'
        "[venue]\n"
        'kind = "binance"\n'
        'ws_api_url = "ws://127.0.0.1:9/ws-api/v3"\n'
        'api_key_env = "BN_KEY"\n'
        f'private_key_file = "{tmp_path / "key.pem"}"\n'
        'instruments = ["BTCUSDT"]\n',
        encoding="utf-8",
    )
    (tmp_path / "key.pem").write_text("not a key\n")
    result = run_cli("resume", "--dry-run", "--config", str(config), timeout=LIMIT_S, env={"BN_KEY": "k"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "venue.private_key_file:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.asyncio
async def test_venue_check_against_the_stand_in_in_a_real_process(tmp_path: Path) -> None:
    async with BinanceApiStandIn(SYMBOL, api_keys={API_KEY: SECRET}, pace_ms=100, max_seconds=60) as venue:
        config = write_config(tmp_path / "kernel.toml", venue, str(tmp_path / "k.db"))
        good = {"BN_KEY": API_KEY, "BN_SECRET": SECRET}
        result = await asyncio.to_thread(run_cli, "venue", "check", "--config", config, timeout=LIMIT_S, env=good)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == f"*** TESTNET: Binance spot testnet ({venue.ws_api_url}), {SYMBOL} ***"
        assert [line.split()[:2] for line in lines[1:]] == [
            ["ok", "server"],
            ["ok", "API"],
            ["ok", "trading:"],
            ["ok", "withdrawals:"],
            ["ok", f"{SYMBOL}:"],
        ], lines
        assert "tick 0.01000000, step 0.00001000, min notional 5.00000000 USDT" in lines[-1]
        wrong = {"BN_KEY": API_KEY, "BN_SECRET": "not-the-secret"}
        result = await asyncio.to_thread(run_cli, "venue", "check", "--config", config, timeout=LIMIT_S, env=wrong)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "FAIL  API key: refused by Binance (-1022: Signature for this request is not valid.)" in result.stderr
        assert "Traceback" not in result.stderr
        assert requests(venue, "order.place") == 0  # read-only
