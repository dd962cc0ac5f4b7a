"""The market-data sources: subscribe frames, subscription answers and sync procedures, by hand.

Every expectation is written out: the exact frames a venue is sent, and the verdict of each event
in a sequence (``None`` follows on, ``Stale``, ``Gap``, ``Resynced``).
"""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from kernel.feed.binance import decode_binance
from kernel.feed.book import Gap, Stale
from kernel.feed.coinbase import decode_coinbase
from kernel.feed.events import HeartbeatEvent, QuoteEvent, SubscriptionAck, TradeEvent, VenueNotice
from kernel.feed.kraken import decode_kraken
from kernel.feed.paper import PaperSync
from kernel.feed.paper_source import PaperMarketData
from kernel.feed.source import Resynced, SessionFailed
from kernel.feed.venues import (
    BINANCE_REST,
    BINANCE_WS,
    COINBASE_WS,
    KRAKEN_WS,
    SOURCES,
    BinanceMarketData,
    BinanceSync,
    CoinbaseMarketData,
    CoinbaseSync,
    KrakenMarketData,
    KrakenSync,
    UnknownVenue,
    WholeAtSubscribe,
    make_source,
)


def paper_trade(instrument: str, seq: int) -> TradeEvent:
    return TradeEvent("paper", instrument, f"T{seq}", D(1), D(1), "buy", 0, "trades", seq=seq)


def paper_quote(instrument: str, seq: int) -> QuoteEvent:
    return QuoteEvent("paper", instrument, D(1), D(1), D(2), D(1), 0, seq=seq)


def match(product: str, trade_id: int) -> TradeEvent:
    return TradeEvent("coinbase", product, str(trade_id), D(1), D(1), "buy", 0, "match")


# -- sync procedures ----------------------------------------------------------------------------


def test_paper_sync_resyncs_in_the_stream_after_a_gap() -> None:
    sync = PaperSync()
    assert sync.on_subscribed(["A", "B"]) == ["A", "B"]
    verdicts = [
        sync.on_event(paper_trade("A", 1)),
        sync.on_event(paper_trade("A", 2)),
        sync.on_event(paper_trade("A", 4)),  # 3 is missing
        sync.on_event(paper_quote("A", 1)),  # the next in order, on any channel: whole again
        sync.on_event(paper_trade("A", 5)),
        sync.on_event(paper_trade("A", 5)),  # seen
        sync.on_event(paper_trade("B", 1)),  # other instruments never noticed
        sync.on_event(HeartbeatEvent("paper", 1)),
    ]
    assert verdicts == [
        None,
        None,
        Gap("A", 3, 4, "seq", "trades"),
        Resynced("A"),
        None,
        Stale("A", 5, 5, "trades"),
        None,
        None,
    ]
    assert sync.resync_frames("A") == []


def test_paper_sync_counts_from_one_again_at_each_subscription() -> None:
    sync = PaperSync()
    sync.on_subscribed(["A"])
    assert sync.on_event(paper_trade("A", 1)) is None
    assert sync.on_event(paper_trade("A", 3)) == Gap("A", 2, 3, "seq", "trades")
    sync.on_subscribed(["A"])
    assert sync.on_event(paper_trade("A", 1)) is None  # no Resynced: the resync was forgotten


def test_coinbase_sync_checks_trade_ids_and_heartbeats() -> None:
    sync = CoinbaseSync()
    assert sync.on_subscribed(["BTC-USD"]) == ["BTC-USD"]
    verdicts = [
        sync.on_event(match("BTC-USD", 10)),  # the baseline (last_match)
        sync.on_event(match("BTC-USD", 11)),
        sync.on_event(match("BTC-USD", 13)),
        sync.on_event(match("BTC-USD", 14)),
        sync.on_event(HeartbeatEvent("coinbase", 1, "BTC-USD", 90, "14")),  # nothing missed
        sync.on_event(HeartbeatEvent("coinbase", 1, "BTC-USD", 91, "16")),  # 15 and 16 missed
        sync.on_event(match("BTC-USD", 16)),  # already counted by the heartbeat
        sync.on_event(match("BTC-USD", 17)),
        sync.on_event(QuoteEvent("coinbase", "BTC-USD", D(1), None, D(2), None, 0, seq=5)),
        sync.on_event(HeartbeatEvent("coinbase", 1)),
    ]
    assert verdicts == [
        None,
        None,
        Gap("BTC-USD", 12, 13, "trade_id", "match"),
        Resynced("BTC-USD"),
        None,
        Gap("BTC-USD", 15, 16, "trade_id", "heartbeat"),
        Stale("BTC-USD", 16, 16, "match"),
        Resynced("BTC-USD"),
        None,
        None,
    ]
    assert sync.resync_frames("BTC-USD") == []


def test_streams_without_a_sequence_are_whole_at_subscribe() -> None:
    sync = WholeAtSubscribe()
    assert sync.on_subscribed(["X", "Y"]) == ["X", "Y"]
    assert sync.on_event(match("X", 5)) is None
    assert sync.on_event(match("X", 1)) is None
    assert sync.resync_frames("X") == []


# -- subscriptions ------------------------------------------------------------------------------


def test_every_venue_has_a_source_with_its_public_endpoint() -> None:
    built = {
        venue: make(ws_url=f"wss://example.test/{venue}", rest_url=None, instruments=["NKNUSDT"])
        for venue, make in SOURCES.items()
    }
    assert {venue: (source.venue, source.url) for venue, source in built.items()} == {
        "paper": ("paper", "wss://example.test/paper"),
        "binance": (
            "binance",
            "wss://example.test/binance/stream?streams=nknusdt@depth@100ms/nknusdt@trade/nknusdt@bookTicker",
        ),
        "coinbase": ("coinbase", "wss://example.test/coinbase"),
        "kraken": ("kraken", "wss://example.test/kraken"),
    }
    assert (BINANCE_WS, BINANCE_REST) == ("wss://stream.binance.com:9443", "https://api.binance.com")
    assert BinanceMarketData().url == "wss://stream.binance.com:9443/stream"
    assert CoinbaseMarketData().url == COINBASE_WS == "wss://ws-feed.exchange.coinbase.com"
    assert KrakenMarketData().url == KRAKEN_WS == "wss://ws.kraken.com/v2"


def test_make_source_defaults_to_the_public_endpoints() -> None:
    binance = make_source("binance", instruments=["BTCUSDT", "ethusdt"])
    assert binance.url == (
        "wss://stream.binance.com:9443/stream?streams="
        "btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker/ethusdt@depth@100ms/ethusdt@trade/ethusdt@bookTicker"
    )
    assert isinstance(binance, BinanceMarketData)
    assert binance.rest.base_url == "https://api.binance.com"
    assert binance.depth_path("ETHUSDT") == "/api/v3/depth?symbol=ETHUSDT&limit=1000"
    local = make_source("binance", ws_url="ws://127.0.0.1:9/", rest_url="http://127.0.0.1:9", instruments=["A"])
    assert local.url == "ws://127.0.0.1:9/stream?streams=a@depth@100ms/a@trade/a@bookTicker"
    assert isinstance(local, BinanceMarketData)
    assert local.rest.base_url == "http://127.0.0.1:9"
    assert make_source("coinbase").url == "wss://ws-feed.exchange.coinbase.com"
    assert make_source("kraken").url == "wss://ws.kraken.com/v2"
    assert make_source("kraken", ws_url="ws://127.0.0.1:9").url == "ws://127.0.0.1:9"
    assert make_source("paper", ws_url="ws://127.0.0.1:9").venue == "paper"
    with pytest.raises(UnknownVenue, match="unknown venue 'bitmex': one of binance, coinbase, kraken, paper"):
        make_source("bitmex")


def test_paper_subscription() -> None:
    source = PaperMarketData("ws://127.0.0.1:1")
    (frame,) = source.subscribe(["BTC", "ETH"], ["trades"], "feed-1")
    assert json.loads(frame) == {
        "type": "subscribe",
        "instruments": ["BTC", "ETH"],
        "channels": ["trades"],
        "id": "feed-1",
    }
    assert source.check_subscribed(SubscriptionAck("paper", (("trades", ("BTC", "ETH")),)))
    assert not source.check_subscribed(HeartbeatEvent("paper", 1))
    with pytest.raises(SessionFailed) as retried:
        source.check_subscribed(VenueNotice("paper", "error", "internal: try later"))
    assert (retried.value.reason, retried.value.fatal) == ("venue answered subscribe with internal: try later", False)
    with pytest.raises(SessionFailed) as failed:
        source.check_subscribed(VenueNotice("paper", "error", "invalid: unknown instruments: ETH"))
    assert (failed.value.reason, failed.value.fatal) == (
        "venue refused subscribe: invalid: unknown instruments: ETH",
        True,
    )
    assert isinstance(source.new_sync(), PaperSync)


def test_binance_subscription() -> None:
    assert BinanceMarketData(instruments=["BTCUSDT"]).subscribe(["BTCUSDT"], ["trades", "quotes"], "f") == []
    source = BinanceMarketData()
    (frame,) = source.subscribe(["BTCUSDT", "ETHUSDT"], ["trades", "quotes"], "feed-1")
    assert json.loads(frame) == {
        "method": "SUBSCRIBE",
        "params": [
            "btcusdt@depth@100ms",
            "btcusdt@trade",
            "btcusdt@bookTicker",
            "ethusdt@depth@100ms",
            "ethusdt@trade",
            "ethusdt@bookTicker",
        ],
        "id": 1,
    }
    (other,) = decode_binance(b'{"result":null,"id":7}')
    assert not source.check_subscribed(other)  # another request's answer
    (ours,) = decode_binance(b'{"result":null,"id":1}')
    assert source.check_subscribed(ours)
    (again,) = source.subscribe(["BTCUSDT"], ["trades"], "feed-1")  # the next connection's request
    assert json.loads(again) == {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2}
    assert not source.check_subscribed(ours)
    (error,) = decode_binance(b'{"error":{"code":2,"msg":"Invalid request"},"id":2}')
    with pytest.raises(SessionFailed) as failed:
        source.check_subscribed(error)
    assert (failed.value.reason, failed.value.fatal) == ("binance refused the subscription: 2: Invalid request", True)
    assert isinstance(source.new_sync(), BinanceSync)


def test_coinbase_subscription() -> None:
    source = CoinbaseMarketData()
    (frame,) = source.subscribe(["BTC-USD"], ["trades", "quotes"], "feed-1")
    assert json.loads(frame) == {
        "type": "subscribe",
        "product_ids": ["BTC-USD"],
        "channels": ["matches", "level2_batch", "ticker", "heartbeat"],
    }
    (ack,) = decode_coinbase(b'{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]}')
    assert source.check_subscribed(ack)
    (beat,) = decode_coinbase(
        b'{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28Z"}'
    )
    assert not source.check_subscribed(beat)
    (error,) = decode_coinbase(b'{"type":"error","message":"Failed to subscribe","reason":"bad product"}')
    with pytest.raises(SessionFailed) as failed:
        source.check_subscribed(error)
    assert (failed.value.reason, failed.value.fatal) == (
        "coinbase refused the subscription: Failed to subscribe: bad product",
        True,
    )
    assert isinstance(source.new_sync(), CoinbaseSync)


def kraken_ack(channel: str, symbol: str, req_id: int) -> bytes:
    body = {"method": "subscribe", "result": {"channel": channel, "symbol": symbol}, "success": True, "req_id": req_id}
    return json.dumps(body).encode()


def test_kraken_subscription_waits_for_every_channel_and_symbol() -> None:
    source = KrakenMarketData()
    frames = source.subscribe(["BTC/USD", "ETH/USD"], ["trades", "quotes"], "feed-1")
    pair = ["BTC/USD", "ETH/USD"]
    assert [json.loads(frame) for frame in frames] == [
        {"method": "subscribe", "params": {"channel": "trade", "symbol": pair}, "req_id": 1},
        {"method": "subscribe", "params": {"channel": "ticker", "symbol": pair}, "req_id": 2},
        {"method": "subscribe", "params": {"channel": "book", "symbol": pair, "depth": 10}, "req_id": 3},
    ]
    (status,) = decode_kraken(b'{"channel":"status","type":"update","data":[{"system":"online"}]}')
    answers = [
        source.check_subscribed(status),
        *(source.check_subscribed(only(decode_kraken(kraken_ack("trade", s, 1)))) for s in ("BTC/USD", "ETH/USD")),
        source.check_subscribed(only(decode_kraken(kraken_ack("ticker", "BTC/USD", 9)))),  # not ours
        source.check_subscribed(only(decode_kraken(kraken_ack("ticker", "BTC/USD", 2)))),
        source.check_subscribed(only(decode_kraken(kraken_ack("ticker", "ETH/USD", 2)))),
        source.check_subscribed(only(decode_kraken(kraken_ack("book", "BTC/USD", 3)))),
        source.check_subscribed(only(decode_kraken(kraken_ack("book", "ETH/USD", 3)))),
    ]
    assert answers == [False, False, False, False, False, False, False, True]
    source.subscribe(["BTC/USD"], ["trades"], "feed-1")
    refused = b'{"method":"subscribe","success":false,"error":"Currency pair not supported","req_id":4}'
    with pytest.raises(SessionFailed) as failed:
        source.check_subscribed(only(decode_kraken(refused)))
    assert (failed.value.reason, failed.value.fatal) == (
        "kraken refused the subscription: Currency pair not supported",
        True,
    )
    assert isinstance(source.new_sync(), KrakenSync)
    assert source.resubscribe_book("BTC/USD") == [
        '{"method": "unsubscribe", "params": {"channel": "book", "symbol": ["BTC/USD"]}, "req_id": 5}',
        '{"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10}, "req_id": 6}',
    ]


def only(events: list[object]) -> object:
    (event,) = events
    return event
