"""``tradekernel resume --dry-run`` on a Binance kernel's journal: it reconciles a copy of the
journal with the venue (``[venue] kind = "binance"``) and changes nothing at the venue."""

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
