"""Issue 13, done when: ``tradekernel market watch VENUE:SYMBOL --ws-url … --rest-url … --json``
against a loopback replay of a real capture ends with the top of book the documented procedure
computes from that capture; and a gap, a checksum mismatch, a 1001 close (Binance's 24 h
disconnect), a ``serverShutdown``, a stall and a slow REST snapshot each lead back to ``streaming``.

The stand-in (``tests.standins``) runs in this test's event loop on 127.0.0.1; the command runs in a
real subprocess with a bounded ``--duration``. The expected top of book comes from
``tests.standins.reference`` (written from the venues' docs, not from ``kernel.feed``) over the
replayed session.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.standins import BinanceStandIn, CoinbaseStandIn, Faults, KrakenStandIn, StandIn
from tests.standins import reference as ref
from tests.standins.sessions import SESSIONS_DIR, RecordedSession

REPO = Path(__file__).resolve().parents[2]
GRACE_S = 30.0


def expected_top(session: RecordedSession, instrument: str) -> ref.TopOfBook:
    """The documented procedure over the whole session: its final top of book."""
    texts = [frame.text for frame in session.frames]
    if session.venue == "binance":
        answer = session.rest_answer(f"/api/v3/depth?symbol={instrument}&")
        assert answer is not None
        events = [body for body in map(json.loads, texts) if body.get("data", {}).get("e") == "depthUpdate"]
        events = [body for body in events if body["data"]["s"] == instrument]
        return ref.top_of_book(*ref.binance_book(json.loads(answer.body), events))
    if session.venue == "coinbase":
        bodies = [json.loads(text) for text in texts]
        snapshot = next(b for b in bodies if b.get("type") == "snapshot" and b["product_id"] == instrument)
        return ref.top_of_book(*ref.coinbase_book(snapshot, bodies[bodies.index(snapshot) + 1 :]))
    return ref.top_of_book(*ref.kraken_book(texts, instrument))


async def watch(
    target: str, standin: StandIn, duration: float, *, rest: bool = True, record: Path | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    """Run ``tradekernel market watch TARGET --json`` against ``standin``: exit code, records, stderr."""
    args = [sys.executable, "-m", "kernel", "market", "watch", target, "--ws-url", standin.ws_url]
    if rest:
        args += ["--rest-url", standin.rest_url]
    args += ["--duration", str(duration), "--json"]
    if record is not None:
        args += ["--record", str(record)]
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), duration + GRACE_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    records = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert process.returncode is not None
    return process.returncode, records, err.decode()


def last_book(records: list[dict[str, Any]], instrument: str) -> ref.TopOfBook:
    books = [r for r in records if r.get("type") == "book" and r.get("instrument") == instrument]
    assert books, f"no book record for {instrument}: {records[-10:]}"
    last = books[-1]

    def value(name: str) -> Decimal | None:
        return None if last[name] is None else Decimal(last[name])

    return ref.TopOfBook(value("bid"), value("bid_qty"), value("ask"), value("ask_qty"))


def states(records: list[dict[str, Any]]) -> list[str]:
    return [r["state"] for r in records if r.get("type") == "state"]


def streams_again_after(records: list[dict[str, Any]], disruption: tuple[str, ...]) -> None:
    """A ``streaming`` state, then one of ``disruption``, then ``streaming`` again."""
    seen = states(records)
    assert "streaming" in seen, seen
    first = seen.index("streaming")
    later = [i for i, state in enumerate(seen) if i > first and state in disruption]
    assert later, f"no {disruption} after streaming: {seen}"
    assert "streaming" in seen[later[0] + 1 :], f"never streaming again after {seen[later[0]]}: {seen}"


def check_run(code: int, records: list[dict[str, Any]], err: str, session: RecordedSession, instrument: str) -> None:
    assert code == 0, err[-3000:]
    assert any(r.get("state") == "streaming" for r in records if r.get("type") == "state"), states(records)
    assert all(r.get("venue") == session.venue for r in records), records[:3]
    assert last_book(records, instrument) == expected_top(session, instrument)


def nkn() -> RecordedSession:
    return RecordedSession.load(SESSIONS_DIR / "binance_nknusdt.jsonl")


def band() -> RecordedSession:
    return RecordedSession.load(SESSIONS_DIR / "coinbase_band_gbp.jsonl")


def btc() -> RecordedSession:
    return RecordedSession.load(SESSIONS_DIR / "kraken_btc_usd.jsonl")


# -- the three venues, as recorded --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.asyncio
async def test_binance_watch_ends_with_the_documented_book() -> None:
    session = nkn()
    async with BinanceStandIn(session, pace=4.0) as venue:
        code, records, err = await watch("binance:NKNUSDT", venue, 8)
    check_run(code, records, err, session, "NKNUSDT")
    # The stand-in answered the depth snapshot over REST, and streamed every frame it had.
    assert any("/api/v3/depth?symbol=NKNUSDT" in path for _, path, _ in venue.rest_log), venue.rest_log
    assert venue.high_water == len(session.frames)
    trades = [r for r in records if r["type"] == "trade"]
    assert [(t["price"], t["qty"], t["side"]) for t in trades] == [("0.35280000", "58.00000000", "buy")]


@pytest.mark.slow
@pytest.mark.asyncio
async def test_binance_lrcbtc_buffered_events_before_the_snapshot() -> None:
    session = RecordedSession.load(SESSIONS_DIR / "binance_lrcbtc.jsonl")
    async with BinanceStandIn(session, pace=4.0) as venue:
        code, records, err = await watch("binance:LRCBTC", venue, 9)  # the replay takes ~4-5 s: room for a loaded CI
    check_run(code, records, err, session, "LRCBTC")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_coinbase_watch_ends_with_the_documented_book() -> None:
    session = band()
    async with CoinbaseStandIn(session, pace=2.0, max_gap=0.5) as venue:
        code, records, err = await watch("coinbase:BAND-GBP", venue, 5)
    check_run(code, records, err, session, "BAND-GBP")


@pytest.mark.slow
@pytest.mark.asyncio
async def test_kraken_watch_ends_with_the_documented_book() -> None:
    session = btc()
    async with KrakenStandIn(session, pace=4.0, max_gap=0.3) as venue:
        code, records, err = await watch("kraken:BTC/USD", venue, 5)
    check_run(code, records, err, session, "BTC/USD")
    assert venue.high_water == len(session.frames)


# -- faults: each leads back to streaming, and the book still ends as documented ----------------


@pytest.mark.slow
@pytest.mark.asyncio
async def test_binance_gap_resyncs_that_symbol_from_a_new_snapshot() -> None:
    session = nkn()
    async with BinanceStandIn(session, pace=4.0, faults=Faults(drop_frame=6)) as venue:
        code, records, err = await watch("binance:NKNUSDT", venue, 6)
    assert "drop_frame" in venue.fired
    check_run(code, records, err, session, "NKNUSDT")
    streams_again_after(records, ("resyncing", "syncing"))
    depth_requests = [path for _, path, status in venue.rest_log if "/api/v3/depth" in path and status == 200]
    assert len(depth_requests) >= 2, venue.rest_log


@pytest.mark.slow
@pytest.mark.asyncio
async def test_kraken_checksum_mismatch_resubscribes_the_book() -> None:
    session = btc()
    async with KrakenStandIn(session, pace=4.0, max_gap=0.3, faults=Faults(corrupt_checksum=8)) as venue:
        code, records, err = await watch("kraken:BTC/USD", venue, 5)
    assert "corrupt_checksum" in venue.fired
    check_run(code, records, err, session, "BTC/USD")
    streams_again_after(records, ("resyncing", "syncing"))


@pytest.mark.slow
@pytest.mark.asyncio
async def test_kraken_missed_update_is_a_checksum_mismatch_too() -> None:
    session = btc()
    async with KrakenStandIn(session, pace=4.0, max_gap=0.3, faults=Faults(drop_frame=8)) as venue:
        code, records, err = await watch("kraken:BTC/USD", venue, 5)
    assert "drop_frame" in venue.fired
    check_run(code, records, err, session, "BTC/USD")
    streams_again_after(records, ("resyncing", "syncing"))


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("target", "make", "build", "pace"),
    [
        ("binance:NKNUSDT", BinanceStandIn, nkn, 4.0),
        ("coinbase:BAND-GBP", CoinbaseStandIn, band, 2.0),
        ("kraken:BTC/USD", KrakenStandIn, btc, 4.0),
    ],
)
async def test_a_1001_close_reconnects_and_streams_again(target: str, make: Any, build: Any, pace: float) -> None:
    session = build()
    instrument = target.split(":", 1)[1]
    async with make(session, pace=pace, max_gap=0.5, faults=Faults(close_after=10)) as venue:
        code, records, err = await watch(target, venue, 6)
    assert "close_after" in venue.fired
    assert venue.closes[0][1] == 1001
    assert venue.connections >= 2
    check_run(code, records, err, session, instrument)
    streams_again_after(records, ("backoff", "connecting"))


@pytest.mark.slow
@pytest.mark.asyncio
async def test_binance_server_shutdown_reconnects_and_streams_again() -> None:
    session = nkn()
    async with BinanceStandIn(session, pace=4.0, faults=Faults(shutdown_after=10)) as venue:
        code, records, err = await watch("binance:NKNUSDT", venue, 6)
    assert "shutdown_after" in venue.fired
    assert venue.connections >= 2
    check_run(code, records, err, session, "NKNUSDT")
    streams_again_after(records, ("backoff", "connecting"))


@pytest.mark.slow
@pytest.mark.asyncio
async def test_binance_stalled_connection_goes_stale_then_streams_again() -> None:
    # The watch calls an instrument stale after 10 s of silence (kernel.market_watch.POLICY): the
    # stand-in stops sending for 11 s with the socket open, then carries on.
    session = nkn()
    async with BinanceStandIn(session, pace=4.0, faults=Faults(stall_after=8, stall_seconds=11.0)) as venue:
        code, records, err = await watch("binance:NKNUSDT", venue, 17)
    assert "stall_after" in venue.fired
    check_run(code, records, err, session, "NKNUSDT")
    streams_again_after(records, ("stale",))


@pytest.mark.slow
@pytest.mark.asyncio
async def test_binance_slow_rest_snapshot_then_streaming() -> None:
    session = nkn()
    async with BinanceStandIn(session, pace=4.0, faults=Faults(rest_delay=3.0)) as venue:
        code, records, err = await watch("binance:NKNUSDT", venue, 7)
    check_run(code, records, err, session, "NKNUSDT")
    seen = states(records)
    assert seen.index("syncing") < seen.index("streaming"), seen
    streaming_at = next(r["ts"] for r in records if r.get("state") == "streaming")
    syncing_at = next(r["ts"] for r in records if r.get("state") == "syncing")
    assert streaming_at - syncing_at >= 2500  # waited for the slow snapshot (3 s), did not give up


@pytest.mark.slow
@pytest.mark.asyncio
async def test_binance_rest_429_backs_off_then_streaming() -> None:
    session = nkn()
    async with BinanceStandIn(session, pace=4.0, faults=Faults(rest_429=1, retry_after=1)) as venue:
        code, records, err = await watch("binance:NKNUSDT", venue, 6)
    check_run(code, records, err, session, "NKNUSDT")
    depth = [(t, status) for t, path, status in venue.rest_log if "/api/v3/depth" in path]
    assert depth[0][1] == 429
    assert depth[1][1] == 200
    assert depth[1][0] - depth[0][0] >= 0.9  # Retry-After: 1 was respected


# -- our own recordings replay too --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("target", "make", "build"),
    [
        ("binance:NKNUSDT", BinanceStandIn, nkn),
        ("coinbase:BAND-GBP", CoinbaseStandIn, band),
        ("kraken:BTC/USD", KrakenStandIn, btc),
    ],
)
async def test_a_recording_of_a_watch_replays_to_the_same_book(
    target: str, make: Any, build: Any, tmp_path: Path
) -> None:
    session = build()
    instrument = target.split(":", 1)[1]
    recording = tmp_path / "watch.jsonl"
    async with make(session, pace=4.0, max_gap=0.3) as venue:
        code, records, err = await watch(target, venue, 4, record=recording)
    check_run(code, records, err, session, instrument)
    recorded = RecordedSession.load(recording)
    assert recorded.venue == session.venue
    assert recorded.instruments == (instrument,)
    assert len(recorded.frames) >= len(session.frames) // 2
    if session.venue == "binance":
        assert any(answer.path.startswith("/api/v3/depth?") for answer in recorded.rest), recorded.rest
    async with make(recorded, pace=4.0, max_gap=0.3) as again:
        code, replayed, err = await watch(target, again, 4)
    check_run(code, replayed, err, recorded, instrument)
    assert last_book(replayed, instrument) == last_book(records, instrument)
