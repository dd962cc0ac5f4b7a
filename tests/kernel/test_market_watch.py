"""``tradekernel market watch``: real subprocesses against a real paper venue and against loopback
servers replaying recorded Binance, Coinbase and Kraken frames (tests/data/exchange_samples).

The replay servers speak each venue's subscribe/answer protocol and send only what the client
asked for. The expected records are built here from the sample files with the venues' documented
meanings (Binance ``m``: the buyer is the maker, so the taker sold; Coinbase ``side`` is the
maker's; Kraken ``side`` is the taker's), not with the decoders under test.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kernel.cli.market import TerminalView, display
from kernel.market_watch import MAX_INSTRUMENTS, BadTarget, Target, parse_target
from kernel.venue.server import PaperVenue, VenueConfig
from tests.conftest import REPO, run_cli

SAMPLES = REPO / "tests" / "data" / "exchange_samples"
VENUES = ("paper", "binance", "coinbase", "kraken")
TIMEOUT = 30
BOOK_KEYS = ["type", "venue", "instrument", "bid", "bid_qty", "ask", "ask_qty", "ts"]
TRADE_KEYS = ["type", "venue", "instrument", "price", "qty", "side", "trade_id", "ts"]
STATE_KEYS = ["type", "venue", "state", "reason", "ts"]
START = ["connecting", "subscribing", "syncing", "streaming"]


def sample(path: str) -> Any:
    """A sample file with its numbers as the exact text they were sent as (``Decimal``)."""
    return json.loads((SAMPLES / path).read_text(), parse_float=Decimal)


def iso_ms(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def records(stdout: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    for line in lines:
        keys = {"book": BOOK_KEYS, "trade": TRADE_KEYS, "state": STATE_KEYS}[line["type"]]
        assert list(line) == keys, line
        assert isinstance(line["ts"], int), line
    return lines


def of(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The records of one type, without their ``ts`` (checked apart)."""
    return [{k: v for k, v in line.items() if k != "ts"} for line in lines if line["type"] == kind]


def states(lines: list[dict[str, Any]]) -> list[str]:
    return [line["state"] for line in lines if line["type"] == "state"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("binance:BTCUSDT", Target("binance", ("BTCUSDT",))),
        ("binance:btcusdt,ETHUSDT", Target("binance", ("BTCUSDT", "ETHUSDT"))),
        ("coinbase:BAND-GBP", Target("coinbase", ("BAND-GBP",))),
        ("kraken:BTC/USD,eth/usd", Target("kraken", ("BTC/USD", "ETH/USD"))),
        ("paper:btcusdt", Target("paper", ("btcusdt",))),
    ],
)
def test_parse_target(text: str, expected: Target) -> None:
    assert parse_target(text, VENUES) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("BTCUSDT", "expected VENUE:SYMBOL"),
        ("nasdaq:AAPL", "unknown venue 'nasdaq'"),
        ("Binance:BTCUSDT", "unknown venue 'Binance'"),
        ("binance:", "bad symbol ''"),
        ("binance:BTC,,ETH", "bad symbol ''"),
        ("binance:BTC USDT", "bad symbol 'BTC USDT'"),
        ("binance:BTCUSDT:X", "bad symbol 'BTCUSDT:X'"),
        ("binance:" + "A" * 41, "bad symbol"),
        ("binance:btcusdt,BTCUSDT", "listed twice"),
        ("binance:" + ",".join(f"S{i}" for i in range(MAX_INSTRUMENTS + 1)), f"at most {MAX_INSTRUMENTS}"),
    ],
)
def test_parse_target_refuses(text: str, message: str) -> None:
    with pytest.raises(BadTarget, match=message):
        parse_target(text, VENUES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nasdaq:AAPL"], "unknown venue 'nasdaq': one of binance, coinbase, kraken, paper"),
        (["binance:BTC,,ETH"], "bad symbol ''"),
        (["binance:BTCUSDT", "--duration", "0"], "must be a positive number of seconds"),
        (["binance:BTCUSDT", "--ws-url", "http://127.0.0.1:1"], "url must start with ws:// or wss://"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = run_cli("market", "watch", *args, timeout=TIMEOUT)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_help_names_the_command() -> None:
    result = run_cli("market", "watch", "--help", timeout=TIMEOUT)
    assert result.returncode == 0
    for option in ("VENUE:SYMBOL[,SYMBOL...]", "--ws-url", "--rest-url", "--duration", "--json", "--record"):
        assert option in result.stdout


# -- the human views ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [("0.35210000", "0.3521"), ("672.00000000", "672"), ("100", "100"), ("0.123456789", "0.12345679"), (None, "?")],
)
def test_display(text: str | None, shown: str) -> None:
    assert display(text) == shown


@pytest.mark.asyncio
async def test_terminal_view_redraws_in_place() -> None:
    out = io.StringIO()
    view = TerminalView(out)
    view({"type": "state", "venue": "binance", "state": "streaming", "reason": None, "ts": 0})
    book = {"type": "book", "venue": "binance", "instrument": "NKNUSDT", "ts": 0}
    view({**book, "bid": "0.35210000", "bid_qty": "672.0", "ask": "0.3526", "ask_qty": "3199", "ts": 0})
    view.close()
    drawn = out.getvalue()
    assert drawn.endswith(
        "\x1b[1F\x1b[2Kbinance streaming  (1 book changes, 0 trades)\n"
        "\x1b[2KNKNUSDT  0.3521 x 672 / 0.3526 x 3199  |  last no trade yet\n"
    )


# -- a real paper venue -------------------------------------------------------------------------------


class Watching:
    """``tradekernel market watch ARGS`` as a subprocess whose stdout is read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watching:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kernel", "market", "watch", *self.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(REPO),
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.process is not None and self._reader is not None
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode())

    def json(self) -> list[dict[str, Any]]:
        return records("".join(self.lines))

    async def until(self, check: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not check():
                assert self.process is not None
                if self.process.returncode is not None:
                    raise AssertionError(f"watch exited {self.process.returncode} waiting for {what}: {self.lines}")
                await asyncio.sleep(0.02)

    async def end(self, sig: signal.Signals | None = None) -> tuple[int, str]:
        """Send ``sig`` (if any), wait for the exit; the exit status and stderr."""
        assert self.process is not None and self.process.stderr is not None
        if sig is not None:
            self.process.send_signal(sig)
        async with asyncio.timeout(TIMEOUT):
            stderr = await self.process.stderr.read()
            code = await self.process.wait()
            assert self._reader is not None
            await self._reader
        return code, stderr.decode()


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_paper_venue_json_record_and_signal(tmp_path: Path, sig: signal.Signals) -> None:
    recording = tmp_path / "paper.jsonl"
    config = VenueConfig(instruments=["BTCUSDT"], autoplay=False, heartbeat_s=0.2)
    async with PaperVenue(str(tmp_path / "venue.db"), config) as venue:
        args = ("paper:BTCUSDT", "--ws-url", venue.url, "--json", "--record", str(recording))
        async with Watching(*args) as watching:
            await watching.until(lambda: "streaming" in states(watching.json()), "streaming")
            quote = (Decimal("100.10"), Decimal("2.5"), Decimal("100.20"), Decimal("1.25"))
            await venue.push_quote("BTCUSDT", *quote, ts_ms=1_700_000_000_001)
            await venue.push_quote("BTCUSDT", *quote, ts_ms=1_700_000_000_002)  # the same top: no record
            await venue.push_trade("BTCUSDT", Decimal("100.20"), Decimal("0.75"), "buy", ts_ms=1_700_000_000_003)
            await venue.push_quote("BTCUSDT", Decimal("100.15"), Decimal("1"), *quote[2:], ts_ms=1_700_000_000_004)
            await watching.until(lambda: len(of(watching.json(), "book")) == 2, "two book records")
            code, stderr = await watching.end(sig)
    assert (code, stderr) == (0, "")
    lines = watching.json()
    assert states(lines) == [*START, "closed"]
    assert [line["ts"] for line in lines if line["type"] != "state"] == [
        1_700_000_000_001,
        1_700_000_000_003,
        1_700_000_000_004,
    ]
    book = {"type": "book", "venue": "paper", "instrument": "BTCUSDT"}
    assert of(lines, "book") == [
        {**book, "bid": "100.10", "bid_qty": "2.5", "ask": "100.20", "ask_qty": "1.25"},
        {**book, "bid": "100.15", "bid_qty": "1", "ask": "100.20", "ask_qty": "1.25"},
    ]
    assert of(lines, "trade") == [
        {"type": "trade", "venue": "paper", "instrument": "BTCUSDT", "price": "100.20", "qty": "0.75",
         "side": "buy", "trade_id": "P1"},
    ]  # fmt: skip
    written = [json.loads(line) for line in recording.read_text().splitlines()]
    assert written[0] == {
        "kind": "header",
        "venue": "paper",
        "instruments": ["BTCUSDT"],
        "recorded_by": "tradekernel market watch",
    }
    frames = written[1:]
    assert all(list(f) == ["t_ns", "kind", "frame"] and f["kind"] == "ws" for f in frames)
    assert [f["t_ns"] for f in frames] == sorted(f["t_ns"] for f in frames)
    assert all(isinstance(f["t_ns"], int) and f["t_ns"] > 1_600_000_000 * 10**9 for f in frames)
    sent = [json.loads(f["frame"]) for f in frames]
    assert sent[0]["type"] == "subscribed"
    market = [(m["type"], m.get("price") or m.get("bid")) for m in sent if m["type"] in ("trade", "quote")]
    assert market == [("quote", "100.10"), ("quote", "100.10"), ("trade", "100.20"), ("quote", "100.15")]


@pytest.mark.asyncio
async def test_paper_venue_plain_lines(tmp_path: Path) -> None:
    config = VenueConfig(instruments=["BTCUSDT"], autoplay=False)
    async with PaperVenue(str(tmp_path / "venue.db"), config) as venue:
        async with Watching("paper:BTCUSDT", "--ws-url", venue.url) as watching:
            await watching.until(lambda: any("state streaming" in line for line in watching.lines), "streaming")
            await venue.push_trade("BTCUSDT", Decimal("100.50000000"), Decimal("0.25"), "sell", ts_ms=1_700_000_000_123)
            await watching.until(lambda: any("trade" in line for line in watching.lines), "the trade")
            code, stderr = await watching.end(signal.SIGTERM)
    assert (code, stderr) == (0, "")
    assert "22:13:20.123 paper BTCUSDT trade 100.5 x 0.25 sell #P1\n" in watching.lines
    assert watching.lines[-1].endswith(" paper state closed\n")


@pytest.mark.asyncio
async def test_refused_then_the_venue_comes_up(tmp_path: Path) -> None:
    """Refused connections are retried with backoff (a ``backoff`` record each) until the venue answers."""
    port = free_port()
    async with Watching("paper:BTCUSDT", "--ws-url", f"ws://127.0.0.1:{port}", "--json") as watching:
        await watching.until(lambda: states(watching.json()).count("backoff") >= 2, "two refused attempts")
        venue = PaperVenue(str(tmp_path / "venue.db"), VenueConfig(instruments=["BTCUSDT"], autoplay=False))
        await venue.start("127.0.0.1", port)
        try:
            await watching.until(lambda: "streaming" in states(watching.json()), "streaming")
            code, stderr = await watching.end(signal.SIGTERM)
        finally:
            await venue.stop()
    assert (code, stderr) == (0, "")
    lines = watching.json()
    refused = [line for line in lines if line["state"] == "backoff"]
    assert all("ConnectionRefusedError" in line["reason"] for line in refused)
    assert states(lines)[-5:] == [*START, "closed"]


def test_refused_until_the_end_is_one_clear_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    result = run_cli("market", "watch", "binance:BTCUSDT", "--ws-url", url, "--duration", "1.5", "--json")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"tradekernel market watch: error: no market data from {url}: connect failed: ")
    assert "ConnectionRefusedError" in result.stderr
    lines = records(result.stdout)
    assert states(lines)[:2] == ["connecting", "backoff"] and states(lines)[-1] == "closed"
    assert states(lines).count("backoff") >= 2  # retried meanwhile


@pytest.mark.parametrize("where", ["missing/dir/rec.jsonl", ".", "/dev/full"])
def test_unwritable_recording_exit_1(tmp_path: Path, where: str) -> None:
    path = where if where.startswith("/") else str(tmp_path / where)
    url = f"ws://127.0.0.1:{free_port()}"
    result = run_cli("market", "watch", "paper:BTCUSDT", "--ws-url", url, "--record", path, "--duration", "5")
    assert result.returncode == 1
    assert result.stderr.startswith(f"tradekernel market watch: error: cannot write the recording {path}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""  # refused before connecting
