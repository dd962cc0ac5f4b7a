"""``tradekernel market watch``: real subprocesses against a real paper venue and against loopback
servers replaying recorded Binance, Coinbase and Kraken frames (tests/data/exchange_samples).

The replay servers speak each venue's subscribe/answer protocol and send only what the client
asked for. The expected records are built here from the sample files with the venues' documented
meanings (Binance ``m``: the buyer is the maker, so the taker sold; Coinbase ``side`` is the
maker's; Kraken ``side`` is the taker's), not with the decoders under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kernel.cli.market import TerminalView, describe, display
from kernel.feed.record import RECORDED_BY, FeedRecorder
from kernel.feed.venues import make_source
from kernel.market_watch import (
    MAX_INSTRUMENTS,
    BadTarget,
    Target,
    parse_target,
    watch,
)
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
        (["binance:BTCUSDT", "--ws-url", "http://127.0.0.1:1"], "--ws-url must start with ws:// or wss://"),
        (["binance:BTCUSDT", "--rest-url", "ws://127.0.0.1:1"], "--rest-url must start with http:// or https://"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = run_cli("market", "watch", *args, timeout=TIMEOUT)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_help_names_the_command() -> None:
    result = run_cli("market", "watch", "--help", timeout=TIMEOUT)
    assert result.returncode == 0
    for option in ("VENUE:SYMBOL[,SYMBOL...]", "--ws-url", "--rest-url", "--duration", "--json", "--record"):
        assert option in result.stdout


# -- the human views ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [("0.35210000", "0.3521"), ("672.00000000", "672"), ("100", "100"), ("0.123456789", "0.12345679"), ("x", "x")],
)
def test_display(text: str, shown: str) -> None:
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
        assert self.process is not None
        assert self._reader is not None
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await self._reader

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
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
        assert self.process is not None
        assert self.process.stderr is not None
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
    async with (
        PaperVenue(str(tmp_path / "venue.db"), config) as venue,
        Watching("paper:BTCUSDT", "--ws-url", venue.url) as watching,
    ):
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
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"tradekernel market watch: error: no market data from {url}: connect failed: ")
    assert "ConnectionRefusedError" in result.stderr
    lines = records(result.stdout)
    assert states(lines)[:2] == ["connecting", "backoff"]
    assert states(lines)[-1] == "closed"
    assert states(lines).count("backoff") >= 2  # retried meanwhile


@pytest.mark.parametrize("where", ["missing/dir/rec.jsonl", ".", "/dev/full"])
def test_unwritable_recording_exit_1(tmp_path: Path, where: str) -> None:
    path = where if where.startswith("/") else str(tmp_path / where)
    url = f"ws://127.0.0.1:{free_port()}"
    result = run_cli("market", "watch", "paper:BTCUSDT", "--ws-url", url, "--record", path, "--duration", "5")
    assert result.returncode == 1
    assert result.stderr.startswith(f"tradekernel market watch: error: cannot write the recording {path}: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # refused before connecting


# -- loopback replays of recorded Binance, Coinbase and Kraken frames ---------------------------------


class Replay:
    """A loopback server on a free port: ``answer(ws, message)`` says what each client message gets;
    ``sent`` keeps every frame sent, in order; HTTP GETs are answered by ``rest(path)``."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.asked: list[str] = []
        self.rest_answers: dict[str, str] = {}
        self.served: list[str] = []
        self._server: Server | None = None
        self.ws_url = self.rest_url = ""

    async def __aenter__(self) -> Replay:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._http, close_timeout=0.5)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.ws_url, self.rest_url = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        body = self.rest_answers.get(request.path)
        if body is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "{}")
        return connection.respond(HTTPStatus.OK, body)

    async def _handler(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            assert ws.request is not None
            await self.connected(ws, ws.request.path)
            async for frame in ws:
                await self.answer(ws, json.loads(frame))

    async def send(self, ws: ServerConnection, *messages: Any) -> None:
        for message in messages:
            text = dumps_exact(message)
            self.sent.append(text)
            await ws.send(text)

    async def connected(self, ws: ServerConnection, path: str) -> None:
        """Nothing until the client asks (Coinbase, Kraken)."""

    async def answer(self, ws: ServerConnection, message: Any) -> None:
        raise AssertionError(f"unexpected {message}")


class BinanceReplay(Replay):
    """Binance spot: streams named in the path (``/stream?streams=a/b``) or asked for with ``SUBSCRIBE``
    (answered ``{"result": null, "id"}``); ``GET /api/v3/depth?symbol=NKNUSDT&limit=N``: the recorded
    snapshot. ETHUSDT (whose trade is recorded) has no recorded book: its snapshot is an empty one.
    When depth is asked for, the trades follow once both snapshots were fetched (as if they came later).
    """

    def __init__(self) -> None:
        super().__init__()
        recorded = (SAMPLES / "binance" / "depth_snapshot_rest.json").read_text()
        empty = json.dumps({"lastUpdateId": 1, "bids": [], "asks": []})
        for limit in ("100", "500", "1000", "5000"):
            self.rest_answers[f"/api/v3/depth?symbol=NKNUSDT&limit={limit}"] = recorded
            self.rest_answers[f"/api/v3/depth?symbol=ETHUSDT&limit={limit}"] = empty
        self.combined = False
        self.snapshots_served = asyncio.Event()

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        answer = await super()._http(connection, request)
        if answer is not None:
            self.served.append(request.path)
            if {p.partition("&")[0] for p in self.served} >= {
                "/api/v3/depth?symbol=NKNUSDT",
                "/api/v3/depth?symbol=ETHUSDT",
            }:
                self.snapshots_served.set()
        return answer

    async def connected(self, ws: ServerConnection, path: str) -> None:
        streams = parse_qs(urlsplit(path).query).get("streams", [""])[0]
        self.combined = path.startswith("/stream")
        if streams:
            await self.stream(ws, streams.split("/"))

    async def answer(self, ws: ServerConnection, message: Any) -> None:
        assert message["method"] == "SUBSCRIBE", message
        await self.send(ws, {"result": None, "id": message["id"]})
        await self.stream(ws, message["params"])

    async def stream(self, ws: ServerConnection, streams: list[str]) -> None:
        self.asked += streams
        ticker, depth = sample("binance/bookTicker.json"), sample("binance/depthUpdate_sequence.json")
        if not any("@depth" in stream for stream in streams):
            recorded = ticker + sample("binance/trade.json")
            await self.send(ws, *(self._framed(e) for e in recorded if self._wanted(e["stream"], streams)))
            return
        # A book keeper: the first depth events come before the snapshots (buffered by the client), the
        # rest after them, paced like a replay (20 ms apart), then the trade.
        await self.send(ws, *(self._framed(e) for e in ticker + depth[:10] if self._wanted(e["stream"], streams)))
        async with asyncio.timeout(TIMEOUT):
            await self.snapshots_served.wait()
        for envelope in depth[10:] + sample("binance/trade.json"):
            if self._wanted(envelope["stream"], streams):
                await asyncio.sleep(0.02)
                await self.send(ws, self._framed(envelope))

    def _framed(self, envelope: Any) -> Any:
        return envelope if self.combined else envelope["data"]

    @staticmethod
    def _wanted(stream: str, streams: list[str]) -> bool:
        return stream in streams or (stream.endswith("@depth@100ms") and stream.removesuffix("@100ms") in streams)


class CoinbaseReplay(Replay):
    """Coinbase Exchange: ``subscribe`` answered with ``subscriptions``, then the recorded messages of
    the products asked for: for a ``level2*`` channel the ``snapshot``s (SKL-USD, whose trades are
    recorded, has no recorded book: an empty one) and ``l2update``s, then ``ticker``, then ``matches``."""

    async def answer(self, ws: ServerConnection, message: Any) -> None:
        assert message["type"] == "subscribe", message
        products = message["product_ids"]
        names = [c if isinstance(c, str) else c["name"] for c in message["channels"]]
        self.asked += names
        channels = [{"name": name, "product_ids": products} for name in names]
        await self.send(ws, {"type": "subscriptions", "channels": channels})
        recorded = []
        if any(name.startswith("level2") for name in names):
            empty = {"type": "snapshot", "product_id": "SKL-USD", "bids": [], "asks": []}
            recorded += [sample("coinbase/level2_snapshot.json"), empty, *sample("coinbase/l2update_sequence.json")]
        if "ticker" in names:
            recorded += sample("coinbase/ticker.json")
        if "matches" in names:
            recorded += sample("coinbase/matches.json")
        await self.send(ws, *(m for m in recorded if m["product_id"] in products))


class KrakenReplay(Replay):
    """Kraken v2: each ``subscribe`` answered once per symbol (``success: false`` when ``refuse``), then
    the recorded ``ticker``/``trade``/``book`` messages of the channels answered (MATIC/USD, whose
    trades are recorded, has no recorded book: an empty snapshot, checksum CRC32 of nothing = 0).

    The data waits until every channel the client subscribes to (asked of its source) is answered,
    then book messages go first: the feed client reads nothing but subscription answers until its
    whole subscription is confirmed, so data sent between two answers (as Kraken does) would be lost.
    """

    FILES: Final = {
        "ticker": "ticker_v2.json",
        "trade": "trade_v2_docs.json",
        "book": "book_v2_snapshot_and_updates.json",
    }

    def __init__(self, *, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.waiting: list[Any] = []
        # The channels the client will ask for, so the data can wait for the last answer.
        frames = make_source("kraken", ws_url="ws://127.0.0.1:1").subscribe(["BTC/USD"], ["trades", "quotes"], "1")
        self.coming = {json.loads(frame)["params"]["channel"] for frame in frames}

    async def answer(self, ws: ServerConnection, message: Any) -> None:
        assert message["method"] == "subscribe", message
        channel, symbols = message["params"]["channel"], message["params"]["symbol"]
        self.asked.append(channel)
        for symbol in symbols:
            result = {"channel": channel, "symbol": symbol, "snapshot": True}
            answer = {"method": "subscribe", "result": result, "success": not self.refuse, "req_id": message["req_id"]}
            if self.refuse:
                answer["error"] = "Currency pair not supported"
            await self.send(ws, answer)
        if channel in self.FILES and not self.refuse:
            loaded = sample(f"kraken/{self.FILES[channel]}")
            messages = loaded if isinstance(loaded, list) else [loaded]
            if channel == "book":
                empty = {"symbol": "MATIC/USD", "bids": [], "asks": [], "checksum": 0}
                messages.insert(1, {"channel": "book", "type": "snapshot", "data": [empty]})
            self.waiting += [m for m in messages if m["data"][0]["symbol"] in symbols]
        if set(self.asked) >= self.coming:
            self.waiting.sort(key=lambda m: m["channel"] != "book")  # stable: books first, in order
            await self.send(ws, *self.waiting)
            self.waiting.clear()


def dumps_exact(message: Any) -> str:
    """``message`` as JSON, its ``Decimal`` numbers written as the exact text they were read from."""
    text = json.dumps(_decimals_as_raw(message), separators=(",", ":"))
    return text.replace('"\\u0000', "").replace('\\u0000"', "")


def _decimals_as_raw(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"\u0000{value}\u0000"
    if isinstance(value, list):
        return [_decimals_as_raw(v) for v in value]
    if isinstance(value, dict):
        return {k: _decimals_as_raw(v) for k, v in value.items()}
    return value


# -- what the records must be, from the samples -------------------------------------------------------


def distinct_tops(tops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Book records as the watch prints them: only when an instrument's top changes."""
    last: dict[str, dict[str, Any]] = {}
    kept = []
    for top in tops:
        if last.get(top["instrument"]) != top:
            kept.append(top)
            last[top["instrument"]] = top
    return kept


def top_of(bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> tuple[Decimal, ...]:
    bid, ask = max(p for p, q in bids.items() if q), min(p for p, q in asks.items() if q)
    return bid, bids[bid], ask, asks[ask]


def binance_depth_top() -> tuple[Decimal, ...]:
    """NKNUSDT by Binance's documented procedure: the REST snapshot, then the events with ``u`` past it."""
    snapshot = sample("binance/depth_snapshot_rest.json")
    bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    for event in (e["data"] for e in sample("binance/depthUpdate_sequence.json")):
        if event["u"] > snapshot["lastUpdateId"]:
            bids.update((Decimal(p), Decimal(q)) for p, q in event["b"])
            asks.update((Decimal(p), Decimal(q)) for p, q in event["a"])
    return top_of(bids, asks)


def coinbase_level2_top() -> tuple[Decimal, ...]:
    """BAND-GBP: the level2 snapshot, then each l2update's changes (size 0 removes the level)."""
    snapshot = sample("coinbase/level2_snapshot.json")
    book = {
        "buy": {Decimal(p): Decimal(q) for p, q in snapshot["bids"]},
        "sell": {Decimal(p): Decimal(q) for p, q in snapshot["asks"]},
    }
    for update in sample("coinbase/l2update_sequence.json"):
        for side, p, q in update["changes"]:
            book[side][Decimal(p)] = Decimal(q)
    return top_of(book["buy"], book["sell"])


def kraken_book_top() -> tuple[Decimal, ...]:
    """BTC/USD: the book snapshot, then each update (qty 0 removes the level)."""
    book: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
    for message in sample("kraken/book_v2_snapshot_and_updates.json"):
        for side in book:
            book[side].update((level["price"], level["qty"]) for level in message["data"][0][side])
    return top_of(book["bids"], book["asks"])


def as_top(record: dict[str, Any]) -> tuple[Decimal, ...]:
    return tuple(Decimal(record[k]) for k in ("bid", "bid_qty", "ask", "ask_qty"))


def binance_expected() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    books = [
        {"type": "book", "venue": "binance", "instrument": d["s"], "bid": d["b"], "bid_qty": d["B"], "ask": d["a"],
         "ask_qty": d["A"]}
        for d in (e["data"] for e in sample("binance/bookTicker.json"))
    ]  # fmt: skip
    trades = [
        {"type": "trade", "venue": "binance", "instrument": d["s"], "price": d["p"], "qty": d["q"],
         "side": "sell" if d["m"] else "buy", "trade_id": str(d["t"]), "ts": d["T"]}
        for d in (e["data"] for e in sample("binance/trade.json"))
    ]  # fmt: skip
    return distinct_tops(books), trades


def coinbase_expected() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    books = [
        {"type": "book", "venue": "coinbase", "instrument": t["product_id"], "bid": t["best_bid"],
         "bid_qty": t.get("best_bid_size"), "ask": t["best_ask"], "ask_qty": t.get("best_ask_size")}
        for t in sample("coinbase/ticker.json")
    ]  # fmt: skip
    trades = [
        {"type": "trade", "venue": "coinbase", "instrument": m["product_id"], "price": m["price"], "qty": m["size"],
         "side": "buy" if m["side"] == "sell" else "sell", "trade_id": str(m["trade_id"]), "ts": iso_ms(m["time"])}
        for m in sample("coinbase/matches.json")
    ]  # fmt: skip
    return distinct_tops(books), trades


def kraken_expected() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    books = [
        {"type": "book", "venue": "kraken", "instrument": t["symbol"], "bid": str(t["bid"]),
         "bid_qty": str(t["bid_qty"]), "ask": str(t["ask"]), "ask_qty": str(t["ask_qty"])}
        for t in sample("kraken/ticker_v2.json")["data"]
    ]  # fmt: skip
    trades = [
        {"type": "trade", "venue": "kraken", "instrument": t["symbol"], "price": str(t["price"]), "qty": str(t["qty"]),
         "side": t["side"], "trade_id": str(t["trade_id"]), "ts": iso_ms(t["timestamp"])}
        for t in sample("kraken/trade_v2_docs.json")["data"]
    ]  # fmt: skip
    return distinct_tops(books), trades


REPLAYS: dict[str, tuple[Callable[[], Replay], str, Callable[[], Any], str, str, Callable[[], tuple[Decimal, ...]]]] = {
    # venue: (server, target, expected records, the book's instrument, a book channel, its top by the procedure)
    "binance": (BinanceReplay, "binance:NKNUSDT,ETHUSDT", binance_expected, "NKNUSDT", "@depth", binance_depth_top),
    "coinbase": (
        CoinbaseReplay,
        "coinbase:BAND-GBP,SKL-USD",
        coinbase_expected,
        "BAND-GBP",
        "level2",
        coinbase_level2_top,
    ),
    "kraken": (KrakenReplay, "kraken:BTC/USD,MATIC/USD", kraken_expected, "BTC/USD", "book", kraken_book_top),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", list(REPLAYS))
async def test_replayed_venue_json_and_record(tmp_path: Path, venue: str) -> None:
    server, target, expected, book_instrument, book_channel, book_top = REPLAYS[venue]
    recording = tmp_path / f"{venue}.jsonl"
    async with server() as replay:
        args = ["--ws-url", replay.ws_url, "--rest-url", replay.rest_url, "--duration", "3", "--json"]
        result = await asyncio.to_thread(run_cli, "market", "watch", target, *args, "--record", str(recording))
    assert (result.returncode, result.stderr) == (0, "")
    lines = records(result.stdout)
    books, trades = expected()
    if any(book_channel in asked for asked in replay.asked):  # a source that keeps the venue's book
        assert "streaming" in states(lines)
        assert states(lines)[-1] == "closed"
        assert as_top([b for b in of(lines, "book") if b["instrument"] == book_instrument][-1]) == book_top()
    else:  # top of book from the venue's ticker stream
        assert states(lines) == [*START, "closed"]
        assert of(lines, "book") == books
    assert [line for line in lines if line["type"] == "trade"] == trades  # each replay sends them once books are whole
    written = [json.loads(line) for line in recording.read_text().splitlines()]
    instruments = target.partition(":")[2].split(",")
    assert written[0] == {"kind": "header", "venue": venue, "instruments": instruments, "recorded_by": RECORDED_BY}
    assert [w["frame"] for w in written if w["kind"] == "ws"] == replay.sent
    for answer in (w for w in written if w["kind"] == "rest"):
        assert answer["body"] == replay.rest_answers[answer["path"]]
        assert answer["status"] == 200
    assert all(isinstance(w["t_ns"], int) for w in written[1:])


def test_refused_subscription_fails_at_once() -> None:
    async def scenario() -> Any:
        async with KrakenReplay(refuse=True) as replay:
            args = ("market", "watch", "kraken:BTC/USD", "--ws-url", replay.ws_url, "--duration", "20", "--json")
            return await asyncio.to_thread(run_cli, *args)

    result = asyncio.run(scenario())
    assert result.returncode == 1
    assert result.stderr.startswith("tradekernel market watch: error: the kraken feed at ws://127.0.0.1:")
    assert "failed: kraken refused the subscription: Currency pair not supported" in result.stderr
    assert states(records(result.stdout)) == ["connecting", "subscribing", "failed"]


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (
            {"type": "book", "venue": "coinbase", "instrument": "BAND-GBP", "bid": "14.7550", "bid_qty": None,
             "ask": "14.8060", "ask_qty": None, "ts": 0},
            "coinbase BAND-GBP book 14.755 / 14.806",
        ),
        (
            {"type": "book", "venue": "binance", "instrument": "NKNUSDT", "bid": "0.35210000",
             "bid_qty": "672.00000000", "ask": "0.35260000", "ask_qty": "3199.00000000", "ts": 0},
            "binance NKNUSDT book 0.3521 x 672 / 0.3526 x 3199",
        ),
        (
            {"type": "state", "venue": "kraken", "state": "backoff", "reason": "connect failed: refused", "ts": 0},
            "kraken state backoff (connect failed: refused)",
        ),
    ],
)  # fmt: skip
def test_describe(record: dict[str, Any], line: str) -> None:
    assert describe(record) == line


class FullDisk(io.StringIO):
    """A file that takes the header, then fails every write as a full disk would."""

    def write(self, text: str) -> int:
        if self.getvalue():
            raise OSError(28, "No space left on device")
        return super().write(text)


@pytest.mark.asyncio
async def test_a_recording_that_fails_midway_ends_the_watch(tmp_path: Path) -> None:
    recorder = FeedRecorder(str(tmp_path / "rec.jsonl"), "paper", ["BTCUSDT"])
    recorder.open()
    recorder._file.close()  # type: ignore[union-attr]
    recorder._file = FullDisk()
    recorder._file.write("header\n")
    seen: list[dict[str, Any]] = []
    config = VenueConfig(instruments=["BTCUSDT"], autoplay=False)
    async with asyncio.timeout(TIMEOUT), PaperVenue(str(tmp_path / "venue.db"), config) as venue:
        target = parse_target("paper:BTCUSDT", VENUES)
        result = await watch(target, seen.append, ws_url=venue.url, duration=TIMEOUT, recorder=recorder)
    expected = f"cannot write the recording {tmp_path / 'rec.jsonl'}: No space left on device"
    assert result.error == expected  # the first frame (the subscription answer) could not be written
    assert recorder.frames == 0
    assert states(seen)[-1] == "closed"
