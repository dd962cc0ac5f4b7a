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


@pytest.mark.asyncio
async def test_a_testnet_kernel_runs_on_the_binance_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``kind = "binance"``: the kernel's order session is Binance's (subscribed, reconciled through
    ``openOrders.status`` and ``myTrades``), and no paper venue is started."""
    import asyncio
    import shutil
    import tempfile

    from kernel.app import Kernel
    from kernel.binance.client import BinanceExecutionClient
    from tests.kernel.binance.fake_ws_api import API_KEY, SECRET, FakeWsApi, ok
    from tests.poll import eventually

    monkeypatch.setenv("BN_KEY", API_KEY)
    monkeypatch.setenv("BN_SECRET", SECRET)
    from tests.standins.binance_api import BinanceApiStandIn

    sock_dir = tempfile.mkdtemp(prefix="tk-")
    try:
        # market data and trading rules from the stand-in; the order side a scripted WebSocket API
        async with BinanceApiStandIn("BTCUSDT", max_seconds=60) as market, FakeWsApi() as api:
            api.answers["exchangeInfo"] = lambda p: ok(
                {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"}]}
            )
            api.answers["openOrders.status"] = lambda p: ok([])
            api.answers["myTrades"] = lambda p: ok([])
            config = load(
                _config(tmp_path, int(api.url.split(":")[2].split("/")[0]), testnet=True),
                {
                    "kernel.status_view": "off",
                    "kernel.durability": "normal",
                    "kernel.control_socket": f"{sock_dir}/k.sock",
                    "market.source": "binance",
                    "market.instruments": ["BTCUSDT"],
                    "market.ws_url": market.stream_url,
                    "market.rest_url": market.rest_url,
                },
            )
            kernel = Kernel(config, timers=False)
            task = asyncio.create_task(kernel.run())
            try:
                await eventually(lambda: "openOrders.status" in api.methods(), "reconciliation at Binance", 20)
                assert isinstance(kernel.client, BinanceExecutionClient)
                assert kernel.venue is None  # no embedded paper venue
                assert kernel.venue_url == api.url
                assert api.methods()[:3] == ["exchangeInfo", "time", "userDataStream.subscribe.signature"]
                await eventually(lambda: "myTrades" in api.methods(), "the fills cursor read", 10)
                assert api.bad_signatures == 0
            finally:
                kernel.request_stop("test over", force=True)
                async with asyncio.timeout(20):
                    await task
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def _start_config(tmp_path: Path, ws_api_url: str, rest_url: str) -> Path:
    path = tmp_path / "start.toml"
    path.write_text(
        "[kernel]\n"
        f'db = "{tmp_path / "k.db"}"\n'
        'status_view = "off"\n'
        "[venue]\n"
        'kind = "binance"\n'
        'api_key_env = "BN_KEY"\n'
        'api_secret_env = "BN_SECRET"\n'
        'instruments = ["BTCUSDT"]\n'
        f'ws_api_url = "{ws_api_url}"\n'
        "[market]\n"
        'source = "binance"\n'
        'instruments = ["BTCUSDT"]\n'
        f'ws_url = "{ws_api_url.rsplit("/ws-api", 1)[0]}"\n'
        f'rest_url = "{rest_url}"\n',
        encoding="utf-8",
    )
    return path


def test_a_binance_kernel_that_cannot_read_the_trading_rules_does_not_start(
    tmp_path: Path, listener: socket.socket
) -> None:
    """No rules, no trading: tick, lot and notional are checked here before anything is sent."""
    from tests.conftest import run_cli

    port = listener.getsockname()[1]  # accepts TCP, never answers HTTP
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
    config = _start_config(tmp_path, f"ws://127.0.0.1:{port}/ws-api/v3", f"http://127.0.0.1:{dead_port}")
    result = run_cli("run", "--config", str(config), timeout=60, env={"BN_KEY": "k", "BN_SECRET": "s"})
    assert result.returncode == 2, result.stderr
    assert "tradekernel: error: cannot start: cannot read Binance's trading rules: " in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.asyncio
async def test_a_binance_kernel_without_a_first_session_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rules read, but the WebSocket API never answers: the kernel says which endpoint and why."""
    import kernel.app
    from kernel.app import Kernel
    from kernel.execution import VenueUnreachable
    from tests.standins.binance_api import BinanceApiStandIn

    monkeypatch.setattr(kernel.app, "BINANCE_START_S", 1.0)
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
    async with BinanceApiStandIn("BTCUSDT", max_seconds=60) as market:
        config = load(
            str(_start_config(tmp_path, f"ws://127.0.0.1:{dead_port}/ws-api/v3", market.rest_url)),
            {"kernel.control_socket": str(tmp_path / "k.sock")},
            {"BN_KEY": "k", "BN_SECRET": "s"},
        )
        with pytest.raises(
            VenueUnreachable,
            match=r"no session with Binance at ws://127\.0\.0\.1:\d+/ws-api/v3 within 1 s: cannot connect",
        ):
            await Kernel(config, timers=False).run()
