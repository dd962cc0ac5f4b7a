"""Binance's live source against a loopback venue replaying the real captures in tests/data/exchange_samples.

The expected tops of book were read off the sample files by hand (see each test's comment):
nothing here recomputes them with the code under test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from tenacity import stop_after_attempt
from websockets.asyncio.server import ServerConnection

from kernel.feed.binance import decode_binance
from kernel.feed.binance_source import BinanceMarketData, BinanceSync
from kernel.feed.client import FeedClient
from kernel.feed.events import BookSnapshot, BookUpdate, TradeEvent
from kernel.feed.record import FeedRecorder, read_recording
from kernel.feed.rest import RestClient, RestFailed, retry_after_seconds
from kernel.feed.rules import InstrumentRules, RulesError, fetch_binance_rules
from kernel.feed.source import Resynced
from storage.journal import Journal
from tests.kernel.feed_loopback import Answer, Loopback, frames, running_feed, sample, send_all, steps, triggers
from tests.poll import eventually as until

TIMEOUT = 15
NKN = "NKNUSDT"
LRC = "LRCBTC"
NKN_DEPTH = "/api/v3/depth?symbol=NKNUSDT&limit=1000"
LRC_DEPTH = "/api/v3/depth?symbol=LRCBTC&limit=1000"
NKN_SNAPSHOT = json.dumps(sample("binance/depth_snapshot_rest.json"))  # lastUpdateId 499869752
LRC_SNAPSHOT = json.dumps(sample("binance/depth_snapshot_rest_lrcbtc.json"))  # lastUpdateId 259345543
NKN_EVENTS = frames("binance/depthUpdate_sequence.json")  # 40 events, U=499869750 .. u=499869831
NKN_GAP = frames("binance/depthUpdate_gap_derived.json")  # the first 12 without the 7th (U=499869765)
LRC_EVENTS = frames("binance/depthUpdate_lrcbtc_buffered.json")  # 15 events from U=259345536
TICKERS = frames("binance/bookTicker.json")
START = [
    ("create", "idle"),
    ("connect", "connecting"),
    ("connected", "subscribing"),
    ("subscribed", "syncing"),
    ("snapshot_applied", "streaming"),
]
AGAIN = [
    ("disconnected", "backoff"),
    ("retry_due", "connecting"),
    ("connected", "subscribing"),
    ("subscribed", "syncing"),
    ("snapshot_applied", "streaming"),
]
# NKNUSDT after the snapshot and all 40 updates, by hand: the best bid 0.3521 goes 672 -> 42
# (U=499869795); 0.3524 appears on the ask side (U=499869776), is deleted and set again twice and
# ends at 4589 (U=499869829), below 0.3525 (3959 -> 1123). No bid above 0.3521, no ask below 0.3524.
NKN_FINAL = (NKN, "0.35210000", "42.00000000", "0.35240000", "4589.00000000")
# LRCBTC after its snapshot and the 13 updates past lastUpdateId (the 2 before are dropped): bid
# 0.00000637 6500 -> 2500 -> 5500 -> 2500; ask 0.00000638 24365 -> 27122 -> 5219 -> 2462 -> 2285.
LRC_FINAL = (LRC, "0.00000637", "2500.00000000", "0.00000638", "2285.00000000")


def nkn_trade(trade_id: int) -> str:
    data = {"e": "trade", "E": 1, "s": NKN, "t": trade_id, "p": "0.35220000", "q": "10.00000000", "T": 2, "m": True}
    return json.dumps({"stream": "nknusdt@trade", "data": data})


def source_on(venue: Loopback, *instruments: str, **rest: object) -> BinanceMarketData:
    client = RestClient(venue.http_url, stagger_s=0.0, **rest)
    return BinanceMarketData(venue.url, venue.http_url, instruments, rest=client)


class FakeSleep:
    """Records each wait and returns at once (the loop still turns); ``clock`` is a monotonic
    clock that moves only by these waits, so staggering is measured without real time."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 1000.0

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def clock(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_the_book_follows_the_snapshot_and_the_depth_stream(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(200, NKN_SNAPSHOT))

        source = source_on(venue, NKN)
        async with running_feed(source, [NKN], db_path) as run:

            async def script(ws: ServerConnection) -> None:
                await send_all(ws, [*NKN_EVENTS, *TICKERS])
                await until(lambda: run.client.state == "streaming", "the book whole")
                await send_all(ws, [nkn_trade(7)])  # (trades before it are not passed on)

            venue.scripts.append(script)
            await until(lambda: any(isinstance(e, TradeEvent) for e in run.events), "the trade")
            await until(lambda: run.quotes()[-1:] == [NKN_FINAL], "the final top of book")
            book = source.book(NKN)
            assert book is not None
            assert run.client.book(NKN) is book
            assert (book.best_bid(), book.best_ask()) == ((D("0.3521"), D("42")), (D("0.3524"), D("4589")))
            assert len(run.frames) == 40 + 15 + 1  # every frame tapped with its receive time
        assert venue.ws_paths == ["/stream?streams=nknusdt@depth@100ms/nknusdt@trade/nknusdt@bookTicker"]
        assert venue.rest_paths == [NKN_DEPTH]
        assert venue.received == []  # the streams are in the URL: nothing to subscribe
        assert steps(db_path)[:5] == START
        # bookTicker only freshens: its 0.3526 ask (a top the book never had) is never passed on
        assert not [quote for quote in run.quotes() if quote[3] == "0.35260000"]
        quotes = run.quotes()
        assert all(a != b for a, b in itertools.pairwise(quotes))  # a quote only when the top changes
        (trade,) = [e for e in run.events if isinstance(e, TradeEvent)]
        assert (trade.trade_id, trade.price, trade.taker_side) == ("7", D("0.3522"), "sell")


@pytest.mark.asyncio
async def test_a_gap_resyncs_that_symbol_only_while_the_other_streams(db_path: str) -> None:
    # The second NKNUSDT snapshot stands for one taken after the hole: the same levels, at
    # lastUpdateId 499869769, so the buffered U=499869768 is dropped and U=499869770 joins it.
    later = json.dumps({**sample("binance/depth_snapshot_rest.json"), "lastUpdateId": 499869769})
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        held = asyncio.Event()  # the second NKNUSDT snapshot waits until LRCBTC has streamed on
        venue.answer(NKN_DEPTH, Answer(200, NKN_SNAPSHOT), Answer(200, later, gate=held))
        venue.answer(LRC_DEPTH, Answer(200, LRC_SNAPSHOT))
        source = source_on(venue, NKN, LRC)
        async with running_feed(source, [NKN, LRC], db_path) as run:

            async def script(ws: ServerConnection) -> None:
                await send_all(ws, [*NKN_GAP[:6], *LRC_EVENTS[:10]])
                await until(lambda: run.client.state == "streaming", "both books whole")
                await send_all(ws, NKN_GAP[6:])  # U=499869768: 765..767 missing
                await until(lambda: len(venue.rest_paths) == 3, "NKNUSDT's second snapshot asked for")
                await send_all(ws, LRC_EVENTS[10:])  # LRCBTC streams on meanwhile
                await until(lambda: run.quotes()[-1:] == [LRC_FINAL], "LRCBTC quotes during the resync")
                assert NKN in run.client.feed.data["awaiting_snapshot"]
                held.set()
                await until(lambda: run.client.state == "streaming", "NKNUSDT whole again")
                await send_all(ws, NKN_EVENTS[12:])  # U=499869776 on

            venue.scripts.append(script)
            await until(lambda: run.quotes()[-1:] == [NKN_FINAL], "NKNUSDT's final top")
            assert run.client.state == "streaming"
        assert sorted(venue.rest_paths) == [LRC_DEPTH, NKN_DEPTH, NKN_DEPTH]
        assert steps(db_path) == [
            *START[:4],
            ("snapshot_applied", "syncing"),
            ("snapshot_applied", "streaming"),
            ("gap_detected", "resyncing"),
            ("snapshot_applied", "streaming"),
            ("stop", "closed"),
        ]
        (gap,) = triggers(db_path, "gap_detected")
        assert (gap["instrument"], gap["expected"], gap["received"]) == (NKN, 499869765, 499869768)


@pytest.mark.asyncio
async def test_buffered_events_older_than_the_snapshot_are_dropped(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(LRC_DEPTH, Answer(200, LRC_SNAPSHOT, delay=0.3))  # every event is buffered first

        async def script(ws: ServerConnection) -> None:
            await send_all(ws, LRC_EVENTS)

        venue.scripts.append(script)
        source = source_on(venue, LRC)
        async with running_feed(source, [LRC], db_path) as run:
            await until(lambda: run.quotes()[-1:] == [LRC_FINAL], "LRCBTC's final top")
            book = source.book(LRC)
            assert book is not None
            # U=259345559 set 0.00000636 to 10310 and 0.00000634 to 44780; U=259345563 0.00000639 to 45096
            assert (book.bids[D("0.00000636")], book.bids[D("0.00000634")]) == (D("10310"), D("44780"))
            assert book.asks[D("0.00000639")] == D("45096")
        assert steps(db_path)[:5] == START


def test_the_sync_drops_events_at_or_below_the_snapshot_id() -> None:
    sync = BinanceSync()
    assert sync.on_subscribed([LRC]) == []
    updates = [event for frame in LRC_EVENTS for event in decode_binance(frame)]
    assert all(isinstance(u, BookUpdate) for u in updates)
    assert [sync.on_event(u) for u in updates[:4]] == [None] * 4  # buffered: no snapshot yet
    (snapshot,) = decode_binance(LRC_SNAPSHOT, symbol=LRC)
    assert isinstance(snapshot, BookSnapshot)
    assert sync.on_event(snapshot) == Resynced(LRC)  # 259345536..539 and ..540..543 dropped, 544 joins
    assert [sync.on_event(u) for u in updates[4:]] == [None] * 11
    book = sync.book(LRC)
    assert book is not None
    assert (book.best_bid(), book.best_ask()) == ((D("6.37E-6"), D(2500)), (D("6.38E-6"), D(2285)))


@pytest.mark.asyncio
async def test_a_1001_close_and_a_server_shutdown_each_reconnect(db_path: str) -> None:
    shutdown = json.dumps(sample("binance/serverShutdown_docs.json")[1])  # the combined-stream form
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(200, NKN_SNAPSHOT))

        async def close_like_24h(ws: ServerConnection) -> None:
            await send_all(ws, NKN_EVENTS[:5])
            await until(lambda: len(venue.rest_paths) == 1, "the first snapshot")
            await asyncio.sleep(0.1)
            await ws.close(1001, "24 hours")

        async def shut_down(ws: ServerConnection) -> None:
            await until(lambda: len(venue.rest_paths) == 2, "the second snapshot")
            await ws.send(shutdown)

        async def stream(ws: ServerConnection) -> None:
            await send_all(ws, NKN_EVENTS)

        venue.scripts.extend([close_like_24h, shut_down, stream])
        async with running_feed(source_on(venue, NKN), [NKN], db_path) as run:
            await until(lambda: len(venue.ws_paths) == 3 and run.quotes()[-1:] == [NKN_FINAL], "third connection")
        assert steps(db_path) == [*START, *AGAIN, *AGAIN, ("stop", "closed")]
        closes = [(row["code"], row["reason"]) for row in triggers(db_path, "disconnected")]
        assert closes == [(1001, "24 hours"), (1001, "venue notice: serverShutdown")]
        assert venue.rest_paths == [NKN_DEPTH] * 3  # a fresh book on every connection


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [429, 418])
async def test_a_rate_limit_waits_retry_after_then_retries(db_path: str, status: int) -> None:
    sleep = FakeSleep()
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(
            NKN_DEPTH,
            Answer(status, '{"code":-1003,"msg":"Too many requests"}', {"Retry-After": "7"}),
            Answer(200, NKN_SNAPSHOT),
        )
        async with running_feed(source_on(venue, NKN, sleep=sleep), [NKN], db_path) as run:
            await until(lambda: run.client.state == "streaming", "streaming after the pause")
        assert venue.rest_paths == [NKN_DEPTH, NKN_DEPTH]
        # tenacity waits 0 (the rate limit is not its business); the gate then waits out Retry-After
        # before the next request of any symbol
        assert len(sleep.waits) == 2
        assert sleep.waits[0] == 0
        assert 6.5 < sleep.waits[1] <= 7.0


@pytest.mark.asyncio
async def test_a_slow_snapshot_times_out_and_is_fetched_again(db_path: str) -> None:
    sleep = FakeSleep()
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(200, NKN_SNAPSHOT, delay=3.0), Answer(200, NKN_SNAPSHOT))
        async with running_feed(source_on(venue, NKN, sleep=sleep, timeout=0.3), [NKN], db_path) as run:
            await until(lambda: run.client.state == "streaming", "streaming after the retry")
        assert venue.rest_paths == [NKN_DEPTH, NKN_DEPTH]
        assert sleep.waits == [0.5]  # tenacity's first exponential wait (multiplier 0.5)
        assert steps(db_path)[:5] == START


@pytest.mark.asyncio
async def test_snapshots_that_keep_failing_drop_the_connection_then_recover(db_path: str) -> None:
    sleep = FakeSleep()
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(503, "busy"), Answer(503, "busy"), Answer(200, NKN_SNAPSHOT))
        source = source_on(venue, NKN, sleep=sleep, stop=stop_after_attempt(2))
        async with running_feed(source, [NKN], db_path) as run:
            await until(lambda: run.client.state == "streaming", "streaming on the second connection")
        assert venue.rest_paths == [NKN_DEPTH] * 3
        assert [(row["code"], row["reason"]) for row in triggers(db_path, "disconnected")] == [
            (1011, "snapshot failed")
        ]


@pytest.mark.asyncio
async def test_snapshots_of_many_symbols_are_staggered(db_path: str) -> None:
    sleep = FakeSleep()
    symbols = ["NKNUSDT", "NKNBTC", "NKNETH"]
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        for symbol in symbols:
            venue.answer(f"/api/v3/depth?symbol={symbol}&limit=1000", Answer(200, NKN_SNAPSHOT))
        rest = RestClient(venue.http_url, stagger_s=0.25, sleep=sleep, clock=sleep.clock)
        source = BinanceMarketData(venue.url, venue.http_url, symbols, rest=rest)
        async with running_feed(source, symbols, db_path) as run:
            await until(lambda: run.client.state == "streaming", "three books whole")
        assert sorted(venue.rest_paths) == sorted(f"/api/v3/depth?symbol={s}&limit=1000" for s in symbols)
        assert sleep.waits == [0.25, 0.25]


EXCHANGE_INFO = {
    "symbols": [
        {
            "symbol": "NKNUSDT",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.00010000",
                    "maxPrice": "1000.0",
                    "tickSize": "0.00010000",
                },
                {"filterType": "LOT_SIZE", "minQty": "1.00000000", "maxQty": "9000000.0", "stepSize": "1.00000000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True},
            ],
        },
        {
            "symbol": "LRCBTC",
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.00000001"},
                {"filterType": "LOT_SIZE", "stepSize": "1.00000000"},
                {"filterType": "MIN_NOTIONAL", "minNotional": "0.00010000"},
            ],
        },
    ]
}


@pytest.mark.asyncio
async def test_instrument_rules_from_exchange_info() -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer('/api/v3/exchangeInfo?symbols=["NKNUSDT","LRCBTC"]', Answer(200, json.dumps(EXCHANGE_INFO)))
        rules = await fetch_binance_rules(venue.http_url, ["NKNUSDT", "lrcbtc"])
        assert rules == {
            "NKNUSDT": InstrumentRules("NKNUSDT", D("0.0001"), D("1"), D("5")),
            "LRCBTC": InstrumentRules("LRCBTC", D("0.00000001"), D("1"), D("0.0001")),
        }
        with pytest.raises(RulesError, match="HTTP 404"):
            await fetch_binance_rules(venue.http_url, ["BTCUSDT"])


@pytest.mark.asyncio
async def test_a_session_is_recorded_with_its_rest_answers(db_path: str, tmp_path: Path) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(200, NKN_SNAPSHOT))

        async def script(ws: ServerConnection) -> None:
            await send_all(ws, NKN_EVENTS[:3])

        venue.scripts.append(script)
        source = source_on(venue, NKN)
        with FeedRecorder(tmp_path / "session.jsonl", "binance", [NKN]) as recorder:
            journal = Journal.open(db_path, durability="normal")
            client = FeedClient(
                source.url,
                [NKN],
                journal,
                "recorded",
                source=source,
                ping_interval=None,
                on_frame=recorder.frame,
                on_rest=recorder.rest,
            )
            task = asyncio.create_task(client.run())
            await until(lambda: recorder.frames == 1 + 3, "the snapshot and three frames recorded")
            client.stop()
            await task
            journal.close()
    header, entries = read_recording(tmp_path / "session.jsonl")
    assert header == {
        "kind": "header",
        "venue": "binance",
        "instruments": [NKN],
        "recorded_by": "tradekernel market watch",
    }
    assert sorted(entry["kind"] for entry in entries) == ["rest", "ws", "ws", "ws"]
    (rest,) = [entry for entry in entries if entry["kind"] == "rest"]
    assert (rest["path"], rest["status"], json.loads(rest["body"])) == (NKN_DEPTH, 200, json.loads(NKN_SNAPSHOT))
    frames_recorded = [json.loads(entry["frame"]) for entry in entries if entry["kind"] == "ws"]
    assert frames_recorded == [json.loads(frame) for frame in NKN_EVENTS[:3]]
    assert all(isinstance(entry["t_ns"], int) and entry["t_ns"] > 1_600_000_000 * 10**9 for entry in entries)


@pytest.mark.asyncio
async def test_a_stalled_stream_goes_stale_then_streams_again(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(200, NKN_SNAPSHOT))
        async with running_feed(source_on(venue, NKN), [NKN], db_path, {"stale_after_ms": 300}) as run:

            async def script(ws: ServerConnection) -> None:
                await send_all(ws, NKN_EVENTS[:10])
                await until(lambda: run.client.state == "stale", "stale after 300 ms of silence")
                await send_all(ws, NKN_EVENTS[10:])

            venue.scripts.append(script)
            await until(lambda: run.quotes()[-1:] == [NKN_FINAL], "the final top after the stall")
        assert steps(db_path) == [
            *START,
            ("stale_timeout", "stale"),
            ("data_resumed", "streaming"),
            ("stop", "closed"),
        ]


@pytest.mark.asyncio
async def test_a_snapshot_that_is_not_one_drops_the_connection(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(200, '{"lastUpdateId": -1, "bids": [], "asks": []}'), Answer(200, NKN_SNAPSHOT))
        async with running_feed(source_on(venue, NKN), [NKN], db_path) as run:
            await until(lambda: run.client.state == "streaming", "streaming on the second connection")
        assert [(row["code"], row["reason"]) for row in triggers(db_path, "disconnected")] == [
            (1011, "snapshot failed")
        ]


@pytest.mark.asyncio
async def test_a_failing_frame_listener_is_an_anomaly_not_a_stop(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.answer(NKN_DEPTH, Answer(200, NKN_SNAPSHOT))

        async def script(ws: ServerConnection) -> None:
            await send_all(ws, NKN_EVENTS)

        venue.scripts.append(script)
        async with running_feed(source_on(venue, NKN), [NKN], db_path) as run:

            def broken(frame: str | bytes, t_ns: int) -> None:
                raise OSError("disk full")

            run.client.on_frame = broken
            await until(lambda: run.quotes()[-1:] == [NKN_FINAL], "the final top despite the listener")
            assert run.client.counts["listener_error"] == 40


@pytest.mark.asyncio
async def test_rest_transport_errors_are_retried_then_fail() -> None:
    sleep = FakeSleep()
    rest = RestClient("http://127.0.0.1:1", stop=stop_after_attempt(3), sleep=sleep, timeout=1.0, stagger_s=0.0)
    with pytest.raises(RestFailed, match=r"GET /api/v3/depth\?symbol=X: transport error: .* \(retries spent\)"):
        await rest.get("/api/v3/depth?symbol=X")
    assert rest.requests == 3
    assert sleep.waits == [0.5, 1.0]  # tenacity's exponential wait (multiplier 0.5) between the attempts


def test_retry_after_is_read_as_whole_seconds_bounded() -> None:
    assert [retry_after_seconds(v) for v in ("7", " 30 ", None, "soon", "-5", "999999")] == [
        7.0,
        30.0,
        10.0,
        10.0,
        10.0,
        86_400.0,
    ]
