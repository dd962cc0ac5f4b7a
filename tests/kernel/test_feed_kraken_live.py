"""Kraken v2's live source against a loopback venue replaying the real BTC/USD book capture
(tests/data/exchange_samples/kraken: a snapshot and 30 updates, every checksum Kraken's own).

Expected tops were read off the sample by hand (see the comments).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from kernel.feed.book import Gap
from kernel.feed.events import BookSnapshot, TradeEvent
from kernel.feed.kraken import decode_kraken
from kernel.feed.kraken_source import KrakenMarketData, KrakenSync, infer_precisions
from kernel.feed.source import Resynced
from tests.kernel.feed_loopback import Loopback, frames, running_feed, sample, send_all, steps, triggers
from tests.poll import eventually as until

TIMEOUT = 15
PAIR = "BTC/USD"
BOOK = frames("kraken/book_v2_snapshot_and_updates.json")  # [snapshot, 30 updates]
HEARTBEAT = json.dumps(sample("kraken/heartbeat_v2_docs.json"))
# By hand: the best bid 29430.2 (0.18967538) is never touched and no update bids above it; the
# best ask 29430.3 is resized ten times, last to 5.41909189 (update 24), and no ask goes below it.
FINAL = (PAIR, "29430.2", "0.18967538", "29430.3", "5.41909189")
TRADE = json.dumps(
    {
        "channel": "trade",
        "type": "update",
        "data": [
            {
                "symbol": PAIR,
                "side": "sell",
                "price": 29430.2,
                "qty": 0.0005,
                "ord_type": "market",
                "trade_id": 61000001,
                "timestamp": "2023-07-30T15:30:01.000001Z",
            }
        ],
    }
)


def corrupted(frame: str) -> str:
    message = json.loads(frame)  # only the checksum changes; the levels are re-sent as parsed
    message["data"][0]["checksum"] += 1
    return json.dumps(message)


class KrakenVenue:
    """Answers each request once per symbol, as Kraken does; right after each symbol's ``book``
    answer comes the next plan of ``book_plans`` (its frames with BTC/USD renamed to that symbol),
    so a first symbol's snapshot arrives before the last answer of the subscription."""

    def __init__(self, venue: Loopback, book_plans: list[list[str]]) -> None:
        self.venue = venue
        self.book_plans = book_plans
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, ws: ServerConnection) -> None:
        await ws.send('{"channel":"status","type":"update","data":[{"system":"online"}]}')
        while True:
            await until(lambda: len(self.venue.received) > len(self.requests), "a request", timeout=30)
            request = self.venue.received[len(self.requests)]
            self.requests.append(request)
            params = request["params"]
            for symbol in params["symbol"]:
                result = {"channel": params["channel"], "symbol": symbol}
                answer = {"method": request["method"], "result": result, "success": True, "req_id": request["req_id"]}
                await ws.send(json.dumps(answer))
                if request["method"] == "subscribe" and params["channel"] == "book":
                    await send_all(ws, [frame.replace(PAIR, symbol) for frame in self.book_plans.pop(0)])


def test_the_precisions_are_read_off_the_first_snapshot() -> None:
    (snapshot,) = decode_kraken(BOOK[0])
    assert isinstance(snapshot, BookSnapshot)
    assert infer_precisions(snapshot) == (1, 8)  # BTC/USD: price to 0.1, qty to 8 places


@pytest.mark.asyncio
async def test_the_book_is_verified_after_every_update(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        kraken = KrakenVenue(venue, [[*BOOK, HEARTBEAT]])
        venue.scripts.append(kraken)
        source = KrakenMarketData(venue.url)
        async with running_feed(source, [PAIR], db_path) as run:
            await until(lambda: run.quotes()[-1:] == [FINAL], "the final top of book")
            assert source.verified == 31  # the snapshot and all 30 updates matched Kraken's checksum
            await venue.connection.send(TRADE)  # type: ignore[union-attr]
            await until(lambda: any(isinstance(e, TradeEvent) for e in run.events), "the trade")
            book = source.book(PAIR)
            assert book is not None
            assert run.client.book(PAIR) is book
            assert len(book.bids) == len(book.asks) == 10
        assert [(r["method"], r["params"]) for r in kraken.requests] == [
            ("subscribe", {"channel": "trade", "symbol": [PAIR]}),
            ("subscribe", {"channel": "ticker", "symbol": [PAIR]}),
            ("subscribe", {"channel": "book", "symbol": [PAIR], "depth": 10}),
        ]
        assert steps(db_path)[:5] == [
            ("create", "idle"),
            ("connect", "connecting"),
            ("connected", "subscribing"),
            ("subscribed", "syncing"),
            ("snapshot_applied", "streaming"),
        ]
        (trade,) = [e for e in run.events if isinstance(e, TradeEvent)]
        assert (trade.price, trade.qty, trade.taker_side) == (D("29430.2"), D("0.0005"), "sell")


@pytest.mark.asyncio
async def test_a_checksum_mismatch_resubscribes_that_book(db_path: str) -> None:
    broken = [*BOOK[:11], corrupted(BOOK[11]), *BOOK[12:20]]  # update 11 says 1708619587, not ...586
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        kraken = KrakenVenue(venue, [broken, BOOK])  # the fresh subscription replays the capture
        venue.scripts.append(kraken)
        source = KrakenMarketData(venue.url)
        async with running_feed(source, [PAIR], db_path) as run:
            await until(lambda: len(kraken.requests) == 5, "the book unsubscribed and subscribed again")
            await until(lambda: source.verified == 11 + 31, "the fresh book verified")
            await until(lambda: run.quotes()[-1:] == [FINAL], "the final top of book")
            assert run.client.state == "streaming"
        assert [(r["method"], r["params"]) for r in kraken.requests[3:]] == [
            ("unsubscribe", {"channel": "book", "symbol": [PAIR]}),
            ("subscribe", {"channel": "book", "symbol": [PAIR], "depth": 10}),
        ]
        (gap,) = triggers(db_path, "gap_detected")
        assert (gap["instrument"], gap["expected"], gap["received"]) == (PAIR, 1708619587, 1708619586)
        assert steps(db_path)[4:] == [
            ("snapshot_applied", "streaming"),
            ("gap_detected", "resyncing"),
            ("snapshot_applied", "streaming"),
            ("stop", "closed"),
        ]


@pytest.mark.asyncio
async def test_a_snapshot_before_the_last_subscribe_answer_is_kept(db_path: str) -> None:
    other = "BTC/EUR"  # the same capture under another name (a checksum does not cover the symbol)
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        venue.scripts.append(KrakenVenue(venue, [BOOK, BOOK]))
        source = KrakenMarketData(venue.url)
        async with running_feed(source, [PAIR, other], db_path) as run:
            await until(lambda: source.verified == 62, "both books verified")
            finals = {quote[0]: quote for quote in run.quotes()}
            await until(lambda: len({q[0]: q for q in run.quotes()}) == 2, "quotes of both")
        finals = {quote[0]: quote for quote in run.quotes()}
        assert finals == {PAIR: FINAL, other: (other, *FINAL[1:])}
        assert steps(db_path)[3:6] == [
            ("subscribed", "syncing"),
            ("snapshot_applied", "syncing"),
            ("snapshot_applied", "streaming"),
        ]


def test_resubscribing_stops_after_three_snapshots_that_do_not_verify() -> None:
    sync = KrakenSync(books=True, precisions={PAIR: (1, 8)}, resubscribe=lambda symbol: [f"again {symbol}"])
    assert sync.on_subscribed([PAIR]) == []
    (bad,) = decode_kraken(corrupted(BOOK[0]))  # says 2785033589; the book's is 2785033588
    (good,) = decode_kraken(BOOK[0])
    verdicts = []
    for _ in range(3):
        verdicts.append((sync.on_event(bad), sync.resync_frames(PAIR)))
    gap = Gap(PAIR, 2785033589, 2785033588, "checksum")
    assert verdicts == [(gap, ["again BTC/USD"]), (gap, ["again BTC/USD"]), (gap, [])]
    assert sync.book(PAIR) is None
    assert sync.on_event(good) == Resynced(PAIR)  # a snapshot that verifies (the next connection's)
    assert sync.on_event(bad) == gap
    assert sync.resync_frames(PAIR) == ["again BTC/USD"]  # the count starts again
