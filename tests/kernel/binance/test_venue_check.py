"""``tradekernel venue check``: keys, trading permission, withdrawals, clock, rules; exit 0/1/2."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from kernel.cli import main
from kernel.cli.venue_check import check
from kernel.clock import wall_ms
from kernel.config import load
from tests.kernel.binance.fake_ws_api import API_KEY, SECRET, FakeWsApi, err, ok

ENV = {"BN_KEY": API_KEY, "BN_SECRET": SECRET}

SYMBOL = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000"},
    ],
}


def _config_file(tmp_path: Path, url: str, kind: str = "binance") -> str:
    path = tmp_path / "kernel.toml"
    venue = (
        f'kind = "binance"\napi_key_env = "BN_KEY"\napi_secret_env = "BN_SECRET"\ninstruments = ["BTCUSDT"]\n'
        f'ws_api_url = "{url}"\n'
        if kind == "binance"
        else ""
    )
    path.write_text(f"[venue]\n{venue}", encoding="utf-8")
    return str(path)


def _account(can_trade: bool = True, can_withdraw: bool | None = False) -> dict[str, Any]:
    account: dict[str, Any] = {"canTrade": can_trade, "accountType": "SPOT", "balances": []}
    if can_withdraw is not None:
        account["canWithdraw"] = can_withdraw
    return account


async def _run(api: FakeWsApi, tmp_path: Path) -> tuple[int, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    config = load(_config_file(tmp_path, api.url), environ=ENV)
    status = await check(config, 2.0, lambda mark, text: lines.append((mark, text)))
    return status, lines


@pytest.mark.asyncio
async def test_everything_fine_exits_0(tmp_path: Path) -> None:
    async with FakeWsApi() as api:
        api.answers["time"] = lambda p: ok({"serverTime": wall_ms()})  # in step with ours
        api.answers["account.status"] = lambda p: ok(_account())
        api.answers["exchangeInfo"] = lambda p: ok({"symbols": [SYMBOL]})
        status, lines = await _run(api, tmp_path)
    assert status == 0
    assert [mark for mark, _ in lines] == ["ok"] * 5
    text = "\n".join(t for _, t in lines)
    assert "server clock: offset" in text
    assert "API key: accepted (account type SPOT)" in text
    assert "canTrade = true" in text
    assert "canWithdraw = false" in text
    assert "BTCUSDT: TRADING (BTC/USDT), tick 0.01, step 0.00001, min notional 5.00000000 USDT" in text
    assert api.bad_signatures == 0
    assert "userDataStream.subscribe.signature" not in api.methods()  # read-only
    assert not any(m.startswith("order.") for m in api.methods())


@pytest.mark.asyncio
async def test_withdrawal_permission_is_a_warning(tmp_path: Path) -> None:
    async with FakeWsApi() as api:
        api.answers["account.status"] = lambda p: ok(_account(can_withdraw=True))
        api.answers["exchangeInfo"] = lambda p: ok({"symbols": [SYMBOL]})
        status, lines = await _run(api, tmp_path)
    assert status == 0
    assert lines[0][0] == "warn"  # the fake server's clock is years away from ours
    assert lines[0][1].startswith("server clock: offset -")
    assert (
        "warn",
        "withdrawals: the account reports canWithdraw = true: trade with a key that has no withdrawal permission",
    ) in lines


@pytest.mark.asyncio
async def test_no_trading_permission_fails(tmp_path: Path) -> None:
    async with FakeWsApi() as api:
        api.answers["account.status"] = lambda p: ok(_account(can_trade=False))
        api.answers["exchangeInfo"] = lambda p: ok({"symbols": [SYMBOL]})
        status, lines = await _run(api, tmp_path)
    assert status == 1
    assert ("FAIL", "trading: canTrade = false: this key's account may not trade") in lines


@pytest.mark.asyncio
async def test_refused_key_fails(tmp_path: Path) -> None:
    async with FakeWsApi() as api:
        api.answers["account.status"] = lambda p: err(401, -2015, "Invalid API-key, IP, or permissions for action.")
        status, lines = await _run(api, tmp_path)
    assert status == 1
    assert lines[-1][0] == "FAIL"
    assert lines[-1][1].startswith("API key: refused by Binance (-2015: Invalid API-key")


@pytest.mark.asyncio
async def test_symbol_not_trading_fails(tmp_path: Path) -> None:
    async with FakeWsApi() as api:
        api.answers["account.status"] = lambda p: ok(_account())
        api.answers["exchangeInfo"] = lambda p: ok({"symbols": [{**SYMBOL, "status": "BREAK"}]})
        status, lines = await _run(api, tmp_path)
    assert status == 1
    assert lines[-1][1].startswith("BTCUSDT: status BREAK (not TRADING)")


def test_unreachable_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = _config_file(tmp_path, f"ws://127.0.0.1:{port}/ws-api/v3")
    assert main(["venue", "check", "--config", path, "--timeout", "0.5"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"FAIL  connection: no session with ws://127.0.0.1:{port}/ws-api/v3 within 0.5 s")
    assert "Traceback" not in captured.err


def test_not_a_binance_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["venue", "check", "--config", _config_file(tmp_path, "", kind="paper")]) == 2
    assert 'venue check needs [venue] kind = "binance"' in capsys.readouterr().err
