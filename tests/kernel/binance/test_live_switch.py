"""``testnet = false`` trades real money: refused without ``--live``, before anything connects."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kernel.cli import main
from kernel.config import load
from kernel.config.live import LiveTradingRefused, banner, check_live


def _config(tmp_path: Path, port: int, testnet: bool) -> str:
    path = tmp_path / "kernel.toml"
    path.write_text(
        "[kernel]\n"
        f'db = "{tmp_path / "k.db"}"\n'
        "[venue]\n"
        'kind = "binance"\n'
        'api_key_env = "BN_KEY"\n'
        'api_secret_env = "BN_SECRET"\n'
        'instruments = ["BTCUSDT"]\n'
        f"testnet = {'true' if testnet else 'false'}\n"
        f'ws_api_url = "ws://127.0.0.1:{port}/ws-api/v3"\n',
        encoding="utf-8",
    )
    return str(path)


@pytest.fixture
def listener() -> socket.socket:
    """A listening socket the kernel would connect to: nothing may ever reach it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.setblocking(False)
    yield sock
    sock.close()


def _nobody_connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def test_production_without_live_exits_2_before_connecting(
    tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BN_KEY", "k")
    monkeypatch.setenv("BN_SECRET", "s")
    config = _config(tmp_path, listener.getsockname()[1], testnet=False)
    assert main(["run", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "venue.testnet = false sends real orders to Binance (production): pass --live" in err
    assert _nobody_connected(listener)
    assert not (tmp_path / "k.db").exists()  # not even the journal was created


def test_live_on_the_testnet_is_refused_too(
    tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BN_KEY", "k")
    monkeypatch.setenv("BN_SECRET", "s")
    config = _config(tmp_path, listener.getsockname()[1], testnet=True)
    assert main(["run", "--config", config, "--live"]) == 2
    assert "--live given, but this configuration trades on the Binance testnet" in capsys.readouterr().err
    assert _nobody_connected(listener)


def test_check_live_and_banner(tmp_path: Path) -> None:
    env = {"BN_KEY": "k", "BN_SECRET": "s"}
    production = load(_config(tmp_path, 9, testnet=False), environ=env)
    with pytest.raises(LiveTradingRefused):
        check_live(production, live=False)
    check_live(production, live=True)
    assert banner(production).startswith("*** LIVE: REAL MONEY on Binance spot")
    testnet = load(_config(tmp_path, 9, testnet=True), environ=env)
    check_live(testnet, live=False)
    assert banner(testnet).startswith("*** TESTNET: Binance spot testnet")
    assert "LIVE" not in banner(testnet)
    paper = load(environ={})
    check_live(paper, live=False)
    with pytest.raises(LiveTradingRefused, match="the paper venue"):
        check_live(paper, live=True)
