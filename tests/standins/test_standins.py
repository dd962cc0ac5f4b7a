"""The stand-ins speak each venue's protocol, replay their session and fire their faults (loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.standins import BinanceStandIn, CoinbaseStandIn, Faults, KrakenStandIn
from tests.standins import reference as ref
from tests.standins.sessions import (
    SAMPLES,
    SESSIONS_DIR,
    RecordedSession,
    RestAnswer,
    WsFrame,
    binance_nknusdt,
    coinbase_band_gbp,
    compact,
    kraken_btc_usd,
    session,
)

REPO = Path(__file__).resolve().parents[2]
NKN_STREAMS = "/stream?streams=nknusdt@depth@100ms/nknusdt@trade/nknusdt@bookTicker"
FINAL_NKN = (D("0.3521"), D("42"), D("0.3524"), D("4589"))


async def drain(ws: ClientConnection, quiet: float = 0.4, limit: float = 10.0) -> list[Any]:
    """Every message until none came for ``quiet`` seconds (at most ``limit`` seconds)."""
    out: list[Any] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            out.append(json.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            break
        except ConnectionClosed:
            break
    return out


async def collect(ws: ClientConnection, done: Any, limit: float = 10.0) -> list[str]:
    """Raw frames until ``done(frames)`` is true (``AssertionError`` after ``limit`` seconds)."""
    frames: list[str] = []
    async with asyncio.timeout(limit):
        while not done(frames):
            frames.append(str(await ws.recv()))
    return frames


def count(text: str, at_least: int) -> Any:
    return lambda frames: sum(text in frame for frame in frames) >= at_least


def depth_events(messages: list[Any]) -> list[dict[str, Any]]:
    return [m["data"] for m in messages if m.get("data", {}).get("e") == "depthUpdate"]


# -- Binance ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_binance_combined_streams_replay_the_session_and_rest_follows_the_stream() -> None:
    async with (
        BinanceStandIn(binance_nknusdt()) as venue,
        httpx.AsyncClient(base_url=venue.rest_url, timeout=5) as http,
    ):
        first = await http.get("/api/v3/depth", params={"symbol": "NKNUSDT", "limit": 1000})
        assert first.status_code == 200
        assert first.headers["content-type"] == "application/json"
        assert first.headers["x-mbx-used-weight-1m"] == "50"
        recorded = (SAMPLES / "binance/depth_snapshot_rest.json").read_text()
        assert first.text == compact(recorded)  # nothing streamed yet: the capture itself
        async with connect(venue.ws_url + NKN_STREAMS) as ws:
            messages = await drain(ws)
        streams = [m["stream"] for m in messages]
        assert streams.count("nknusdt@depth@100ms") == 40
        assert streams.count("nknusdt@bookTicker") == 5
        assert streams.count("nknusdt@trade") == 1
        events = depth_events(messages)
        assert ref.top_of_book(*ref.binance_book(first.json(), events)) == FINAL_NKN
        later = (await http.get("/api/v3/depth", params={"symbol": "NKNUSDT", "limit": 5})).json()
        assert later["lastUpdateId"] == 499869831
        assert ref.top_of_book(*ref.binance_book(later, [])) == FINAL_NKN
        assert len(later["bids"]) == 5
        assert (await http.get("/api/v3/depth", params={"symbol": "NOPE"})).status_code == 400


@pytest.mark.asyncio
async def test_binance_raw_stream_and_subscribe_method() -> None:
    async with BinanceStandIn(binance_nknusdt()) as venue, connect(venue.ws_url + "/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["nknusdt@depth"], "id": 7}))
        messages = await drain(ws)
        assert messages[0] == {"result": None, "id": 7}
        assert all(m["e"] == "depthUpdate" for m in messages[1:])  # bare events, depth only
        assert len(messages) == 41


@pytest.mark.asyncio
async def test_binance_exchange_info_and_weights() -> None:
    async with (
        BinanceStandIn(binance_nknusdt(), weight_limit=60) as venue,
        httpx.AsyncClient(base_url=venue.rest_url, timeout=5) as http,
    ):
        info = await http.get("/api/v3/exchangeInfo", params={"symbols": '["NKNUSDT"]'})
        filters = {f["filterType"]: f for f in info.json()["symbols"][0]["filters"]}
        assert filters["PRICE_FILTER"]["tickSize"] == "0.00010000"
        assert filters["LOT_SIZE"]["stepSize"] == "1.00000000"
        assert filters["NOTIONAL"]["minNotional"] == "5.00000000"
        assert (await http.get("/api/v3/exchangeInfo", params={"symbol": "XYZ"})).status_code == 400
        # 20 + 20 used; a depth of limit 1000 (50) goes over 60
        over = await http.get("/api/v3/depth", params={"symbol": "NKNUSDT", "limit": 1000})
        assert over.status_code == 429
        assert over.headers["retry-after"] == "1"


@pytest.mark.asyncio
async def test_binance_rest_429_then_slow_snapshot() -> None:
    async with (
        BinanceStandIn(binance_nknusdt(), faults=Faults(rest_429=1, rest_delay=0.5)) as venue,
        httpx.AsyncClient(base_url=venue.rest_url, timeout=5) as http,
    ):
        refused = await http.get("/api/v3/depth", params={"symbol": "NKNUSDT", "limit": 1000})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        start = time.monotonic()
        answered = await http.get("/api/v3/depth", params={"symbol": "NKNUSDT", "limit": 1000})
        assert answered.status_code == 200
        assert time.monotonic() - start >= 0.5


@pytest.mark.asyncio
async def test_binance_dropped_event_is_a_gap_and_the_resnapshot_heals_it() -> None:
    async with BinanceStandIn(binance_nknusdt(), faults=Faults(drop_frame=6)) as venue:
        async with connect(venue.ws_url + NKN_STREAMS) as ws:
            events = depth_events(await drain(ws))
        assert len(events) == 39
        assert events[5]["u"] == 499869764
        assert events[6]["U"] == 499869768  # 765..767 never arrived
        async with httpx.AsyncClient(base_url=venue.rest_url, timeout=5) as http:
            fresh = (await http.get("/api/v3/depth", params={"symbol": "NKNUSDT", "limit": 1000})).json()
        # The venue's book includes what the client missed.
        assert ref.top_of_book(*ref.binance_book(fresh, [])) == FINAL_NKN


@pytest.mark.asyncio
async def test_binance_close_1001_then_reconnect_continues_where_it_was() -> None:
    async with BinanceStandIn(binance_nknusdt(), faults=Faults(close_after=10)) as venue:
        async with connect(venue.ws_url + NKN_STREAMS) as ws:
            before = await drain(ws)
            assert ws.close_code == 1001
        async with connect(venue.ws_url + NKN_STREAMS) as ws:
            after = await drain(ws)
        assert len(before) == 10
        first, second = depth_events(before), depth_events(after)
        assert second[0]["U"] == first[-1]["u"] + 1
        assert len(before) + len(after) == 46
        assert venue.closes[0] == (1, 1001)


@pytest.mark.asyncio
async def test_binance_server_shutdown_event_then_close() -> None:
    async with BinanceStandIn(binance_nknusdt(), faults=Faults(shutdown_after=3, shutdown_grace=0.1)) as venue:
        async with connect(venue.ws_url + NKN_STREAMS) as ws:
            messages = await drain(ws)
            assert ws.close_code == 1001
        assert messages[3]["stream"] == "!serverShutdown"
        assert messages[3]["data"]["e"] == "serverShutdown"
        assert len(messages) == 4


@pytest.mark.asyncio
async def test_binance_stall_keeps_the_socket_then_resumes() -> None:
    async with BinanceStandIn(binance_nknusdt(), faults=Faults(stall_after=5, stall_seconds=1.0)) as venue:
        async with connect(venue.ws_url + NKN_STREAMS) as ws:
            head = await drain(ws, quiet=0.5)
            assert len(head) == 5
            rest = await drain(ws, quiet=1.5)
        assert len(head) + len(rest) == 46


@pytest.mark.asyncio
async def test_pace_follows_the_recorded_gaps() -> None:
    # The first two depth events are 500 ms apart; at pace 5 that is 100 ms.
    async with BinanceStandIn(binance_nknusdt(), pace=5.0) as venue, connect(venue.ws_url + NKN_STREAMS) as ws:
        await ws.recv()
        start = time.monotonic()
        await ws.recv()
        assert 0.08 <= time.monotonic() - start < 0.5


@pytest.mark.asyncio
async def test_max_connections_refuses_with_503() -> None:
    async with BinanceStandIn(binance_nknusdt(), max_connections=1) as venue:
        async with connect(venue.ws_url + "/ws"):  # subscribes to nothing: no frames to read
            pass
        with pytest.raises(InvalidStatus) as refused:
            async with connect(venue.ws_url + "/ws"):
                pass
        assert refused.value.response.status_code == 503


# -- Coinbase -----------------------------------------------------------------------------------

SUBSCRIBE_CB = {"type": "subscribe", "product_ids": ["BAND-GBP"], "channels": ["level2_batch", "ticker", "heartbeat"]}


@pytest.mark.asyncio
async def test_coinbase_subscriptions_snapshot_updates_heartbeat() -> None:
    async with CoinbaseStandIn(coinbase_band_gbp()) as venue, connect(venue.ws_url) as ws:
        await ws.send(json.dumps(SUBSCRIBE_CB))
        frames = await collect(ws, count('"type": "heartbeat"', 1))
        frames += await collect(ws, count('"l2update"', 30 - sum('"l2update"' in f for f in frames)))
    messages = [json.loads(frame) for frame in frames]
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "subscriptions"
    assert {c["name"] for c in messages[0]["channels"]} == {"level2_batch", "ticker", "heartbeat"}
    assert kinds[1:3] == ["ticker", "snapshot"]
    assert kinds.count("l2update") == 30
    beat = next(m for m in messages if m["type"] == "heartbeat")
    assert beat["product_id"] == "BAND-GBP"
    assert beat["last_trade_id"] == 881613  # the ticker's trade
    snapshot = next(m for m in messages if m["type"] == "snapshot")
    updates = [m for m in messages if m["type"] == "l2update"]
    assert ref.top_of_book(*ref.coinbase_book(snapshot, updates)) == (
        D("14.7772"),
        D("12.67"),
        D("14.7981"),
        D("123.19"),
    )


@pytest.mark.asyncio
async def test_coinbase_reconnect_gets_a_snapshot_of_where_the_venue_is() -> None:
    async with CoinbaseStandIn(coinbase_band_gbp(), faults=Faults(close_after=12)) as venue:
        async with connect(venue.ws_url) as ws:
            await ws.send(json.dumps(SUBSCRIBE_CB))
            await drain(ws)
        async with connect(venue.ws_url) as ws:
            await ws.send(json.dumps(SUBSCRIBE_CB))
            messages = await drain(ws)
    snapshot = next(m for m in messages if m["type"] == "snapshot")
    updates = [m for m in messages if m["type"] == "l2update"]
    assert len(updates) == 30 - 10  # 12 frames sent: ticker, snapshot and 10 updates
    assert ref.top_of_book(*ref.coinbase_book(snapshot, updates)) == (
        D("14.7772"),
        D("12.67"),
        D("14.7981"),
        D("123.19"),
    )


@pytest.mark.asyncio
async def test_coinbase_unknown_product_is_an_error() -> None:
    async with CoinbaseStandIn(coinbase_band_gbp()) as venue, connect(venue.ws_url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "product_ids": ["XYZ-USD"], "channels": ["ticker"]}))
        answer = json.loads(await ws.recv())
    assert answer["type"] == "error"
    assert "XYZ-USD" in answer["reason"]


# -- Kraken -------------------------------------------------------------------------------------


def kraken_subscribe(req_id: int = 1) -> str:
    return json.dumps(
        {"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10}, "req_id": req_id}
    )


@pytest.mark.asyncio
async def test_kraken_status_ack_snapshot_updates_exact_text() -> None:
    async with KrakenStandIn(kraken_btc_usd()) as venue, connect(venue.ws_url) as ws:
        status = json.loads(await ws.recv())
        await ws.send(kraken_subscribe())
        raw = await collect(ws, count('"channel":"book"', 31))
        raw += await collect(ws, count('"channel":"heartbeat"', 1))
    assert status["channel"] == "status"
    assert status["data"][0]["system"] == "online"
    ack = json.loads(raw[0])
    assert ack["success"] is True
    assert ack["result"]["channel"] == "book"
    assert ack["result"]["symbol"] == "BTC/USD"
    assert ack["req_id"] == 1
    book = [text for text in raw if '"channel":"book"' in text]
    assert book == [frame.text for frame in kraken_btc_usd().frames]  # byte for byte
    assert '{"channel":"heartbeat"}' in raw
    assert ref.top_of_book(*ref.kraken_book(book, "BTC/USD")) == (
        D("29430.2"),
        D("0.18967538"),
        D("29430.3"),
        D("5.41909189"),
    )


@pytest.mark.asyncio
async def test_kraken_corrupt_checksum_then_resubscribe_gets_a_valid_snapshot() -> None:
    async with (
        KrakenStandIn(kraken_btc_usd(), faults=Faults(corrupt_checksum=5, stall_after=8, stall_seconds=0.5)) as venue,
        connect(venue.ws_url) as ws,
    ):
        await ws.recv()
        await ws.send(kraken_subscribe())
        first = [json.loads(await ws.recv()) for _ in range(9)]
        book = [m for m in first if m.get("channel") == "book"]
        with pytest.raises(ref.ChecksumMismatch):
            ref.kraken_book(book, "BTC/USD")
        await ws.send(json.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": ["BTC/USD"]}}))
        await ws.send(kraken_subscribe(2))
        frames = await collect(ws, lambda got: '"type":"snapshot"' in "".join(got))
        frames += await collect(ws, count('"channel":"book"', 31 - 8 - sum('"book"' in f for f in frames)))
        rest = [m for m in map(json.loads, frames) if m.get("channel") == "book"]
    assert rest[0]["type"] == "snapshot"
    assert ref.top_of_book(*ref.kraken_book(rest, "BTC/USD")) == (
        D("29430.2"),
        D("0.18967538"),
        D("29430.3"),
        D("5.41909189"),
    )


@pytest.mark.asyncio
async def test_kraken_unknown_symbol_is_refused() -> None:
    async with KrakenStandIn(kraken_btc_usd()) as venue, connect(venue.ws_url) as ws:
        await ws.recv()
        await ws.send(
            json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["XYZ/USD"]}, "req_id": 3})
        )
        answer = json.loads(await ws.recv())
    assert answer["success"] is False
    assert "XYZ/USD" in answer["error"]


# -- recordings and the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["binance_nknusdt", "binance_lrcbtc", "coinbase_band_gbp", "kraken_btc_usd", "binance_nknusdt_paper"]
)
def test_recording_files_equal_the_sessions_built_from_the_samples(name: str) -> None:
    assert RecordedSession.load(SESSIONS_DIR / f"{name}.jsonl") == session(name)


def test_command_line_prints_urls_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.standins",
            "binance",
            "--session",
            str(SESSIONS_DIR / "binance_nknusdt.jsonl"),
            "--port",
            "0",
            "--max-seconds",
            "30",
            "--fault",
            "rest_delay=0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ws_url=ws://127.0.0.1:")
        urls = dict(part.split("=", 1) for part in line.split())
        answer = httpx.get(urls["rest_url"] + "/api/v3/depth?symbol=NKNUSDT&limit=1000", timeout=5)
        assert answer.json()["lastUpdateId"] == 499869752
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rest"] == [["/api/v3/depth?symbol=NKNUSDT&limit=1000", 200]]


def test_binance_depth_moves_on_from_a_later_recorded_snapshot_over_a_hole() -> None:
    # A recording whose client missed U=499869765..767 and resynced: its second REST answer (taken
    # after the hole) is where the venue's book continues from.
    snapshot = json.loads((SAMPLES / "binance/depth_snapshot_rest.json").read_text())
    full = json.loads((SAMPLES / "binance/depthUpdate_sequence.json").read_text())[:12]
    holed = [event for event in full if event["data"]["U"] != 499869765]
    resynced = ref.BinanceLocalBook(snapshot)
    for event in full[:8]:  # up to u=499869769
        resynced.apply(event)
    frames = tuple(WsFrame(i, json.dumps(event)) for i, event in enumerate(holed))
    rest = (
        RestAnswer(0, "/api/v3/depth?symbol=NKNUSDT&limit=1000", 200, json.dumps(snapshot)),
        RestAnswer(8, "/api/v3/depth?limit=1000&symbol=NKNUSDT", 200, resynced.snapshot_body()),
    )
    venue = BinanceStandIn(RecordedSession("binance", ("NKNUSDT",), frames, rest))
    venue.high_water = len(frames)
    body = venue.depth_body("NKNUSDT", 1000)
    assert body is not None
    assert json.loads(body)["lastUpdateId"] == 499869775  # the 12th event ends at u=499869775
    assert ref.binance_book(json.loads(body), []) == ref.binance_book(snapshot, full)
