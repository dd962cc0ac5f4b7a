"""``tradekernel venue`` (``kernel.cli.venue``) in real subprocesses (``python -m kernel venue``), and in process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest
import pytest_asyncio

from kernel import paper_protocol as p
from kernel.cli import main
from kernel.cli import venue as cli
from kernel.net import is_loopback
from kernel.paper_session import Credentials, SocketOptions, connect_paper
from tests.conftest import add_venue_account

REPO = Path(__file__).resolve().parents[2]
TRADES = str(REPO / "tests" / "data" / "binance_btcusdt_trades_20210108.csv")
QUOTES = str(REPO / "tests" / "data" / "binance_btcusdt_quotes_20210108.csv")
LIMIT_S = 30.0


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", "venue", *args],
        capture_output=True,
        text=True,
        timeout=LIMIT_S,
        cwd=str(REPO),
        env=env(),
        check=False,
    )


@pytest_asyncio.fixture
async def venue_process(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, str]]:
    """A venue subprocess replaying the binance trades and quotes at full speed; yields (process, url, db)."""
    db = str(tmp_path / "venue.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kernel",
        "venue",
        "--port",
        "0",
        "--db",
        db,
        "--data",
        TRADES,
        QUOTES,
        "--speed",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env=env(),
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(LIMIT_S):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("venue listening on ws://127.0.0.1:"), line
        yield proc, line.split()[-1], db
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.asyncio
async def test_the_venue_runs_takes_an_order_and_stops_cleanly_on_sigterm(
    venue_process: tuple[asyncio.subprocess.Process, str, str],
) -> None:
    proc, url, db = venue_process
    credentials = Credentials(*add_venue_account(db, "cli"))  # the venue authenticates by default
    async with asyncio.timeout(LIMIT_S):
        ws, welcome = await connect_paper(url, client_name="test", options=SocketOptions(), credentials=credentials)
        async with ws:
            assert welcome.instruments == ["BTCUSDT"]
            assert welcome.account == "cli"
            # far below the market: it takes the bid at once, or fills as replayed trades print above it
            order = p.NewOrder(client_order_id="cli-1", instrument="BTCUSDT", side="sell", qty=D("0.001"), price=D("1"))
            await ws.send(p.encode(order).decode())
            await ws.send(p.encode(order).decode())  # a resend: the same order, counted
            seen: list[p.VenueMessage] = []
            while not any(isinstance(m, p.OrderStatus) for m in seen) or not any(
                isinstance(m, p.Execution) and m.status == "filled" for m in seen
            ):
                message = p.decode_venue(await ws.recv())
                if not isinstance(message, p.Heartbeat):
                    seen.append(message)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
        assert proc.stdout is not None
        assert (await proc.stdout.read()).decode().strip() == "venue stopped"
    listing = run_cli("orders", "--db", db, "--json")
    assert listing.returncode == 0, listing.stderr
    (stored,) = json.loads(listing.stdout)
    assert {"client_order_id", "status", "side", "qty", "cum_qty", "fills", "duplicate_submits"} <= set(stored)
    assert (stored["client_order_id"], stored["status"], stored["side"], stored["qty"], stored["cum_qty"]) == (
        "cli-1",
        "filled",
        "sell",
        "0.001",
        "0.001",
    )
    assert stored["duplicate_submits"] == 1
    assert stored["fills"][0]["trade_id"] == "F1"
    assert stored["fills"][0]["liquidity"] == "taker"  # a sell at 1 crosses the bid as it enters
    assert {"trade_id", "qty", "price"} <= set(stored["fills"][0])
    table = run_cli("orders", "--db", db)
    assert table.returncode == 0
    assert "cli-1" in table.stdout
    assert "1 order(s)" in table.stdout


def test_a_non_loopback_host_is_refused() -> None:
    result = run_cli("--host", "0.0.0.0", "--port", "0", "--db", "unused.db")
    assert result.returncode == 2
    assert "loopback only" in result.stderr
    assert not (REPO / "unused.db").exists()


def test_bad_arguments_exit_2() -> None:
    result = run_cli("--speed", "fast", "--db", "x.db")
    assert result.returncode == 2
    assert "invalid float value" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "0"], "--db VENUE.db is required"),
        (["--db", "{tmp}/v.db", "--port", "70000"], "--port must be between"),
        (["--db", "{tmp}/v.db", "--reject-rate", "3"], "reject_rate must be between"),
        (["--db", "{tmp}/nope/v.db", "--port", "0"], "does not exist"),
        (["--db", "{tmp}/v.db", "--port", "0", "--data", "{tmp}/missing.csv"], "cannot read"),
        (["orders", "--db", "{tmp}/missing.db"], "no venue store"),
    ],
)
def test_unusable_inputs_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["venue", *(a.replace("{tmp}", str(tmp_path)) for a in argv)]) == 2
    assert message in capsys.readouterr().err


def test_an_unbindable_port_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["venue", "--db", str(tmp_path / "v.db"), "--port", str(port), "--speed", "0"]) == 2
    assert "cannot listen" in capsys.readouterr().err


def test_loopback_detection() -> None:
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.2")
    assert is_loopback("::1")
    assert is_loopback("[::1]")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("example.com")
    assert not is_loopback("[example.com]")


def test_add_parser_registers_venue_on_a_top_level_parser(tmp_path: Path) -> None:
    top = argparse.ArgumentParser(prog="tradekernel")
    commands = top.add_subparsers(dest="command")
    cli.add_parser(commands)
    args = top.parse_args(["venue", "orders", "--db", str(tmp_path / "v.db"), "--json"])
    assert (args.command, args.venue_command, args.json) == ("venue", "orders", True)
    assert args.run is cli.run
    with pytest.raises(SystemExit):
        top.parse_args(["venue", "--fee-bps", "-1"])
    parsed = top.parse_args(["venue", "--fee-bps", "2.5", "--slippage-bps", "0"])
    assert (parsed.fee_bps, parsed.slippage_bps) == (D("2.5"), D("0"))
    assert isinstance(parsed.fee_bps, D)


@pytest.mark.parametrize("flag", ["--fee-bps", "--slippage-bps"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "the value must not be negative, got -1"),
        ("-0", "the value must not be negative, got -0"),
        ("abc", "the value is not a number: 'abc'"),
        ("nan", "the value must be finite, got 'nan'"),
        ("1_0", "the value: not a decimal: '1_0'"),
    ],
)
def test_a_bad_fee_or_slippage_is_a_usage_error_naming_the_argument(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["venue", "--db", "unused.db", flag, value])
    assert exited.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err
