"""Coinbase Exchange's live source against a loopback venue replaying the real captures
(tests/data/exchange_samples/coinbase: the BAND-GBP level2 snapshot and 30 l2updates, SKL-USD matches).

Expected tops were read off the samples by hand (see the comments).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import ServerConnection

from kernel.feed.events import TradeEvent
from kernel.feed.venues import make_source
from tests.kernel.feed_loopback import Loopback, frames, running_feed, sample, send_all, steps, triggers
from tests.poll import eventually as until

TIMEOUT = 15
BAND, SKL = "BAND-GBP", "SKL-USD"
SNAPSHOT = json.dumps(sample("coinbase/level2_snapshot.json"))
UPDATES = frames("coinbase/l2update_sequence.json")
MATCHES = frames("coinbase/matches.json")  # SKL-USD last_match 1568267, then matches 1568268 ...
TICKERS = frames("coinbase/ticker.json")
# An SKL-USD book written for this test (the capture has no SKL-USD snapshot).
SKL_SNAPSHOT = json.dumps(
    {"type": "snapshot", "product_id": SKL, "bids": [["0.7900", "500"]], "asks": [["0.7915", "800"]]}
)
# BAND-GBP by hand. Snapshot top: bid 14.7693 (27.51), ask 14.8024 (12.77). Bids: 14.7698 12.65
# (u8) then 14.7693 deleted (u9), 14.7699 27.51 (u10) -> 63.51 (u12), 14.7731 12.27 (u16), 14.7772
# 12.67 (u22): the best. Asks: 14.8024 deleted (u3), 14.8067 27.80 (u5), 14.7995 12.49 (u7), 14.7981
# 123.19 (u14), 14.7995 deleted (u15); nothing lower later: the best is 14.7981.
BAND_FINAL = (BAND, "14.7772", "12.67", "14.7981", "123.19")


@pytest.mark.asyncio
async def test_books_from_level2_and_trades_with_id_continuity(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        source = make_source("coinbase", ws_url=venue.url)
        async with running_feed(source, [BAND, SKL], db_path) as run:

            async def script(ws: ServerConnection) -> None:
                await until(lambda: len(venue.received) == 1, "the subscription")
                request = venue.received[0]
                channels = [{"name": name, "product_ids": request["product_ids"]} for name in request["channels"]]
                await ws.send(json.dumps({"type": "subscriptions", "channels": channels}))
                await send_all(ws, [SNAPSHOT, SKL_SNAPSHOT, *TICKERS, *UPDATES])
                await until(lambda: run.client.state == "streaming", "both books whole")
                await send_all(ws, [*MATCHES[:10], *MATCHES[11:]])  # 1568277 never arrives

            venue.scripts.append(script)
            await until(lambda: len([e for e in run.events if isinstance(e, TradeEvent)]) == 23, "the trades")
            await until(lambda: [q for q in run.quotes() if q[0] == BAND][-1:] == [BAND_FINAL], "BAND-GBP's top")
            book = source.book(BAND)  # type: ignore[attr-defined]
            assert book is not None
            assert run.client.book(BAND) is book
        assert venue.received == [
            {
                "type": "subscribe",
                "product_ids": [BAND, SKL],
                "channels": ["matches", "level2_batch", "ticker", "heartbeat"],
            }
        ]
        assert (SKL, "0.7900", "500", "0.7915", "800") in run.quotes()
        # tickers only freshen: the first BAND-GBP ticker's 14.7550 / 14.8060 is never a quote
        assert not [quote for quote in run.quotes() if quote[1] == "14.7550"]
        ids = [int(e.trade_id) for e in run.events if isinstance(e, TradeEvent)]
        # 1568278 revealed the hole (not passed on: SKL-USD resyncs), 1568279 follows on
        assert ids == [*range(1568267, 1568277), *range(1568279, 1568292)]
        (gap,) = triggers(db_path, "gap_detected")
        assert (gap["instrument"], gap["expected"], gap["received"]) == (SKL, 1568277, 1568278)
        assert steps(db_path) == [
            ("create", "idle"),
            ("connect", "connecting"),
            ("connected", "subscribing"),
            ("subscribed", "syncing"),
            ("snapshot_applied", "syncing"),
            ("snapshot_applied", "streaming"),
            ("gap_detected", "resyncing"),
            ("snapshot_applied", "streaming"),
            ("stop", "closed"),
        ]


@pytest.mark.asyncio
async def test_a_product_without_its_snapshot_is_not_passed_on(db_path: str) -> None:
    async with asyncio.timeout(TIMEOUT), Loopback() as venue:
        source = make_source("coinbase", ws_url=venue.url)
        async with running_feed(source, [BAND], db_path) as run:

            async def script(ws: ServerConnection) -> None:
                await until(lambda: len(venue.received) == 1, "the subscription")
                await ws.send(json.dumps({"type": "subscriptions", "channels": []}))
                await send_all(ws, UPDATES[:5])  # updates before any snapshot: no book to apply them to
                await ws.send(SNAPSHOT)
                await send_all(ws, UPDATES[5:])

            venue.scripts.append(script)
            await until(lambda: run.quotes()[-1:] == [BAND_FINAL], "BAND-GBP's top")
        # the first quote is the snapshot's own top (14.7693 / 14.8024), not one from the early updates
        assert run.quotes()[0] == (BAND, "14.7693", "27.51", "14.8024", "12.77")
