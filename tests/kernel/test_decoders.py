"""Venue decoders (kernel.feed): every real sample in tests/data/exchange_samples decodes into the
expected typed events; bad frames, and arbitrary bytes or JSON, give ``DecodeError`` and nothing else."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel import paper_protocol as p
from kernel.feed import (
    DECODERS,
    BookSnapshot,
    BookUpdate,
    DecodeError,
    ExecutionReportEvent,
    FeedEvent,
    HeartbeatEvent,
    QuoteEvent,
    SubscriptionAck,
    TradeEvent,
    UnhandledMessage,
    VenueNotice,
    decode_binance,
    decode_coinbase,
    decode_kraken,
    decode_paper,
)
from kernel.feed._common import sample

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "exchange_samples"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "exchange_samples"
ALL_FILES = sorted(path.relative_to(SAMPLES).as_posix() for path in SAMPLES.glob("*/*.json"))


def frames(name: str) -> list[bytes]:
    """The frames of a sample file: its elements as sent (a list file) or the file itself."""
    raw = (SAMPLES / name).read_bytes()
    if raw.lstrip().startswith(b"["):
        return [bytes(item) for item in msgspec.json.decode(raw, type=list[msgspec.Raw])]
    return [raw]


def decode_file(name: str, symbol: str = "") -> list[FeedEvent]:
    venue = name.split("/")[0]
    events: list[FeedEvent] = []
    for frame in frames(name):
        events += decode_binance(frame, symbol=symbol) if venue == "binance" else DECODERS[venue](frame)  # type: ignore[index]
    return events


def only(events: list[FeedEvent]) -> FeedEvent:
    assert len(events) == 1
    return events[0]


# -- the samples ------------------------------------------------------------------------------


def test_samples_are_byte_identical_copies() -> None:
    assert len(ALL_FILES) == 23
    assert (SAMPLES / "SOURCES.md").is_file()
    if SHARED.is_dir():  # the shared folder is where they came from; not needed to run the tests
        for name in [*ALL_FILES, "SOURCES.md"]:
            assert (SAMPLES / name).read_bytes() == (SHARED / name).read_bytes(), name


EXPECTED_TYPES: dict[str, tuple[int, type]] = {
    "binance/aggTrade.json": (13, TradeEvent),
    "binance/bookTicker.json": (15, QuoteEvent),
    "binance/depthUpdate_gap_derived.json": (11, BookUpdate),
    "binance/depthUpdate_lrcbtc_buffered.json": (15, BookUpdate),
    "binance/depthUpdate_sequence.json": (40, BookUpdate),
    "binance/depth_snapshot_rest.json": (1, BookSnapshot),
    "binance/depth_snapshot_rest_lrcbtc.json": (1, BookSnapshot),
    "binance/eventStreamTerminated_docs.json": (1, VenueNotice),
    "binance/executionReport_docs.json": (1, ExecutionReportEvent),
    "binance/executionReport_lifecycle.json": (4, ExecutionReportEvent),
    "binance/serverShutdown_docs.json": (2, VenueNotice),
    "binance/trade.json": (1, TradeEvent),
    "coinbase/heartbeat_docs.json": (1, HeartbeatEvent),
    "coinbase/l2update_sequence.json": (30, BookUpdate),
    "coinbase/level2_snapshot.json": (1, BookSnapshot),
    "coinbase/matches.json": (25, TradeEvent),
    "coinbase/subscriptions.json": (3, SubscriptionAck),
    "coinbase/ticker.json": (12, QuoteEvent),
    "kraken/book_v2_snapshot_and_updates.json": (31, BookSnapshot),  # 1 snapshot, then updates
    "kraken/heartbeat_v2_docs.json": (1, HeartbeatEvent),
    "kraken/subscribe_ack_v2.json": (1, SubscriptionAck),
    "kraken/ticker_v2.json": (1, QuoteEvent),
    "kraken/trade_v2_docs.json": (2, TradeEvent),
}


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_sample_decodes(name: str) -> None:
    count, kind = EXPECTED_TYPES[name]
    events = decode_file(name, symbol="NKNUSDT")
    assert len(events) == count
    assert isinstance(events[0], kind)
    assert not any(isinstance(event, UnhandledMessage) for event in events)


def test_binance_trade() -> None:
    assert only(decode_file("binance/trade.json")) == TradeEvent(
        "binance", "ETHUSDT", "705291099", D("4149.74000000"), D("0.43870000"), "sell", 1639351062243, "trade"
    )


def test_binance_agg_trades() -> None:
    trades = decode_file("binance/aggTrade.json")
    assert all(isinstance(t, TradeEvent) and t.channel == "aggTrade" for t in trades)
    first, second, *rest = trades
    assert first == TradeEvent(
        "binance", "NKNUSDT", "15683430", D("0.35280000"), D("58.00000000"), "buy", 1633998523963, "aggTrade"
    )
    assert isinstance(second, TradeEvent)
    assert (second.instrument, second.price) == ("LRCBTC", D("0.00000638"))
    assert [t.trade_id for t in rest if isinstance(t, TradeEvent)] == [str(i) for i in range(425085, 425096)]
    assert isinstance(rest[2], TradeEvent)
    assert rest[2].taker_side == "sell"  # m: true, the buyer was the maker


def test_binance_book_ticker() -> None:
    quotes = decode_file("binance/bookTicker.json")
    assert quotes[0] == QuoteEvent(
        "binance", "NKNUSDT", D("0.35210000"), D("672.00000000"), D("0.35260000"), D("3199.00000000"), None, 499869768
    )
    assert [q.seq for q in quotes if isinstance(q, QuoteEvent)][:3] == [499869768, 499869769, 499869778]


def test_binance_depth_update() -> None:
    first = decode_file("binance/depthUpdate_sequence.json")[0]
    assert first == BookUpdate(
        "binance",
        "NKNUSDT",
        ((D("0.35130000"), D("6195.00000000")), (D("0.34750000"), D("5548.00000000")), (D("0.34640000"), D("6222"))),
        (),
        ts_ms=1633998512068,
        first_update_id=499869750,
        last_update_id=499869752,
    )
    seventh = decode_file("binance/depthUpdate_sequence.json")[6]
    assert isinstance(seventh, BookUpdate)
    assert seventh.asks == ((D("0.35340000"), D("0")),)  # a deletion


def test_binance_rest_snapshot_needs_a_symbol() -> None:
    snapshot = only(decode_file("binance/depth_snapshot_rest.json", symbol="nknusdt"))
    assert isinstance(snapshot, BookSnapshot)
    assert (snapshot.instrument, snapshot.last_update_id) == ("NKNUSDT", 499869752)
    assert (len(snapshot.bids), len(snapshot.asks)) == (20, 20)
    assert snapshot.bids[0] == (D("0.35210000"), D("672.00000000"))
    assert snapshot.asks[0] == (D("0.35250000"), D("3959.00000000"))
    with pytest.raises(DecodeError, match="without a symbol"):
        decode_binance((SAMPLES / "binance/depth_snapshot_rest.json").read_bytes())


def test_binance_execution_report_docs_envelope() -> None:
    report = only(decode_file("binance/executionReport_docs.json"))
    assert isinstance(report, ExecutionReportEvent)
    assert report.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"
    assert (report.instrument, report.side, report.exec_type, report.status) == ("ETHBTC", "buy", "NEW", "NEW")
    assert (report.order_qty, report.order_price) == (D("1.00000000"), D("0.10264410"))
    assert (report.venue_order_id, report.trade_id, report.orig_client_order_id) == ("4293153", None, None)
    assert (report.ts_ms, report.event_ts_ms) == (1499405658657, 1499405658658)


def test_binance_execution_report_lifecycle() -> None:
    new, trade, canceled, rejected = decode_file("binance/executionReport_lifecycle.json")
    assert isinstance(new, ExecutionReportEvent)
    assert isinstance(trade, ExecutionReportEvent)
    assert isinstance(canceled, ExecutionReportEvent)
    assert isinstance(rejected, ExecutionReportEvent)
    assert [r.exec_type for r in (new, trade, canceled, rejected)] == ["NEW", "TRADE", "CANCELED", "REJECTED"]
    assert (trade.status, trade.trade_id, trade.last_qty, trade.last_price) == (
        "PARTIALLY_FILLED",
        "98765432",
        D("0.5"),
        D("2499.5"),
    )
    assert (trade.cum_qty, trade.cum_quote_qty, trade.commission, trade.commission_asset) == (
        D("0.5"),
        D("1249.75"),
        D("0.0005"),
        "ETH",
    )
    assert trade.is_maker is True
    assert (canceled.cum_qty, canceled.venue_order_id) == (D("0.1"), "9876543210")
    assert rejected.reject_reason == "GTX_ORDER_REJECT"


def test_binance_notices() -> None:
    raw, combined = decode_file("binance/serverShutdown_docs.json")
    assert raw == combined == VenueNotice("binance", "serverShutdown", ts_ms=1770123456789)
    terminated = only(decode_file("binance/eventStreamTerminated_docs.json"))
    assert terminated == VenueNotice("binance", "eventStreamTerminated", ts_ms=1728973001334)


def test_binance_answers_and_unknown_events() -> None:
    assert decode_binance(b'{"result":null,"id":312}') == [SubscriptionAck("binance", (), "312")]
    assert decode_binance(b'{"result":["btcusdt@trade"],"id":null}') == [
        SubscriptionAck("binance", (("btcusdt@trade", ()),), None)
    ]
    assert decode_binance(b'{"error":{"code":2,"msg":"Invalid request"},"id":1}') == [
        VenueNotice("binance", "error", "2: Invalid request")
    ]
    assert decode_binance(b'{"e":"balanceUpdate","E":1}') == [UnhandledMessage("binance", "balanceUpdate")]
    futures_ticker = b'{"e":"bookTicker","u":5,"s":"BTCUSDT","b":"1.0","B":"2","a":"1.1","A":"3","T":7,"E":8}'
    (quote,) = decode_binance(futures_ticker)
    assert isinstance(quote, QuoteEvent)
    assert (quote.ts_ms, quote.seq) == (7, 5)
    (quote,) = decode_binance(b'{"u":5,"s":"BTCUSDT","b":"1.0","B":"2","a":"1.1","A":"3","E":8}')
    assert isinstance(quote, QuoteEvent)
    assert quote.ts_ms == 8


def test_coinbase_matches_taker_side_is_opposite_of_maker() -> None:
    matches = decode_file("coinbase/matches.json")
    first = matches[0]
    assert first == TradeEvent(
        "coinbase", "SKL-USD", "1568267", D("0.7904"), D("1338.3"), "buy", 1618677817056, "last_match", 201390042
    )
    assert [m.trade_id for m in matches if isinstance(m, TradeEvent)] == [str(i) for i in range(1568267, 1568292)]
    ticker = {q.seq: q for q in decode_file("coinbase/ticker.json") if isinstance(q, QuoteEvent)}
    for match in matches:  # the ticker's side is the taker's: they agree
        assert isinstance(match, TradeEvent)
        if match.seq in ticker:
            assert ticker[match.seq].last_price == match.price


def test_coinbase_ticker() -> None:
    first = decode_file("coinbase/ticker.json")[0]
    assert first == QuoteEvent(
        "coinbase",
        "BAND-GBP",
        D("14.7550"),
        None,
        D("14.8060"),
        None,
        1618677810244,
        333938798,
        last_price=D("14.7775"),
        last_qty=D("0.04"),
    )
    with_sizes = {**json.loads(frames("coinbase/ticker.json")[0]), "best_bid_size": "1.5", "best_ask_size": "2"}
    (quote,) = decode_coinbase(json.dumps(with_sizes))
    assert isinstance(quote, QuoteEvent)
    assert (quote.bid_qty, quote.ask_qty) == (D("1.5"), D("2"))
    minimal = {"type": "ticker", "sequence": 1, "product_id": "X-Y", "price": "1", "best_bid": "1", "best_ask": "2"}
    (quote,) = decode_coinbase(json.dumps(minimal))
    assert isinstance(quote, QuoteEvent)
    assert (quote.ts_ms, quote.last_qty) == (None, None)


def test_coinbase_level2() -> None:
    snapshot = only(decode_file("coinbase/level2_snapshot.json"))
    assert isinstance(snapshot, BookSnapshot)
    assert (snapshot.instrument, len(snapshot.bids), len(snapshot.asks)) == ("BAND-GBP", 152, 166)
    assert (snapshot.bids[0], snapshot.asks[0], snapshot.ts_ms) == (
        (D("14.7693"), D("27.51")),
        (D("14.8024"), D("12.77")),
        None,
    )
    updates = decode_file("coinbase/l2update_sequence.json")
    assert updates[0] == BookUpdate("coinbase", "BAND-GBP", (), ((D("14.8098"), D("0")),), ts_ms=1618677817083)
    assert updates[1] == BookUpdate("coinbase", "BAND-GBP", ((D("14.7472"), D("0")),), (), ts_ms=1618677817281)
    timed = {"type": "snapshot", "product_id": "A-B", "bids": [], "asks": [], "time": "2021-04-17T16:43:37Z"}
    assert decode_coinbase(json.dumps(timed)) == [BookSnapshot("coinbase", "A-B", (), (), ts_ms=1618677817000)]


def test_coinbase_control_messages() -> None:
    beat = only(decode_file("coinbase/heartbeat_docs.json"))
    assert beat == HeartbeatEvent("coinbase", 1415348368464, "BTC-USD", 90, "20")
    acks = decode_file("coinbase/subscriptions.json")
    assert isinstance(acks[2], SubscriptionAck)
    assert [name for name, _ in acks[2].channels] == ["ticker", "matches", "level2"]
    assert len(acks[2].channels[1][1]) == 10
    assert decode_coinbase(b'{"type":"error","message":"Failed to subscribe","reason":"bad product"}') == [
        VenueNotice("coinbase", "error", "Failed to subscribe: bad product")
    ]
    assert decode_coinbase(b'{"type":"error","message":"oops"}') == [VenueNotice("coinbase", "error", "oops")]
    assert decode_coinbase(b'{"type":"open","order_id":"x"}') == [UnhandledMessage("coinbase", "open")]


def test_kraken_book_snapshot_and_update() -> None:
    snapshot, update, *_ = decode_file("kraken/book_v2_snapshot_and_updates.json")
    assert isinstance(snapshot, BookSnapshot)
    assert (snapshot.instrument, snapshot.checksum, snapshot.ts_ms) == ("BTC/USD", 2785033588, None)
    assert (len(snapshot.bids), len(snapshot.asks)) == (10, 10)
    assert snapshot.bids[3] == (D("29426.7"), D("4.0"))  # exactly as sent, never through a float
    assert snapshot.bids[1] == (D("29429.6"), D("0.00011621"))
    assert update == BookUpdate(
        "kraken",
        "BTC/USD",
        (),
        ((D("29431.1"), D("0.0")), (D("29433.3"), D("0.8")), (D("29430.6"), D("0.001"))),
        ts_ms=1690730998343,
        checksum=3547452596,
    )


def test_kraken_trade_ticker_and_control() -> None:
    first, second = decode_file("kraken/trade_v2_docs.json")
    assert first == TradeEvent(
        "kraken", "MATIC/USD", "4665846", D("0.5147"), D("6423.46326"), "buy", 1695628116925, "trade"
    )
    assert isinstance(second, TradeEvent)
    assert second.qty == D("1136.19677815")
    ticker = only(decode_file("kraken/ticker_v2.json"))
    assert ticker == QuoteEvent(
        "kraken", "BTC/USD", D("105944.2"), D("2.5"), D("105944.3"), D("3.2"), 1671960659123, last_price=D("105899.4")
    )
    assert only(decode_file("kraken/heartbeat_v2_docs.json")) == HeartbeatEvent("kraken")
    assert only(decode_file("kraken/subscribe_ack_v2.json")) == SubscriptionAck(
        "kraken", (("ticker", ("BTC/USD",)),), "1"
    )
    refused = b'{"method":"subscribe","success":false,"error":"Currency pair not supported","req_id":7}'
    assert decode_kraken(refused) == [SubscriptionAck("kraken", (), "7", False, "Currency pair not supported")]
    assert decode_kraken(b'{"method":"subscribe","success":false}') == [
        SubscriptionAck("kraken", (), None, False, "refused")
    ]
    no_symbol = b'{"method":"subscribe","success":true,"result":{"channel":"heartbeat"}}'
    assert decode_kraken(no_symbol) == [SubscriptionAck("kraken", (("heartbeat", ()),))]
    assert decode_kraken(b'{"method":"pong","req_id":1}') == [UnhandledMessage("kraken", "pong")]
    assert decode_kraken(b'{"channel":"ohlc","type":"update","data":[]}') == [UnhandledMessage("kraken", "ohlc")]
    status = b'{"channel":"status","type":"update","data":[{"api_version":"v2","system":"online","version":"2.0.0"}]}'
    assert decode_kraken(status) == [VenueNotice("kraken", "status", "online")]


def test_paper_market_data_round_trips_through_the_protocol() -> None:
    trade = p.Trade("BTCUSDT", 1, "553287559", D("39432.48"), D("0.000263"), "sell", 1610064000278)
    quote = p.Quote("BTCUSDT", 1, D("39432.99"), D("0.0031"), D("39433.62"), D("0.066851"), 1610064001076)
    assert decode_paper(p.encode(trade)) == [
        TradeEvent("paper", "BTCUSDT", "553287559", D("39432.48"), D("0.000263"), "sell", 1610064000278, "trades", 1)
    ]
    assert decode_paper(p.encode(quote)) == [
        QuoteEvent("paper", "BTCUSDT", D("39432.99"), D("0.0031"), D("39433.62"), D("0.066851"), 1610064001076, 1)
    ]
    assert decode_paper(p.encode(p.Heartbeat(ts_ms=5))) == [HeartbeatEvent("paper", 5)]
    subscribed = p.Subscribed(instruments=["BTCUSDT"], channels=["trades", "quotes"], id="1")
    assert decode_paper(p.encode(subscribed)) == [
        SubscriptionAck("paper", (("trades", ("BTCUSDT",)), ("quotes", ("BTCUSDT",))), "1")
    ]
    assert decode_paper(p.encode(p.Error(code="invalid", message="qty must be positive"))) == [
        VenueNotice("paper", "error", "invalid: qty must be positive")
    ]
    assert decode_paper(p.encode(p.Pong(id="3"))) == [UnhandledMessage("paper", "pong")]


# -- bad frames -------------------------------------------------------------------------------

TRADE: dict[str, Any] = json.loads(frames("binance/trade.json")[0])["data"]
MATCH: dict[str, Any] = json.loads(frames("coinbase/matches.json")[1])
KRAKEN_TRADE: dict[str, Any] = json.loads(frames("kraken/trade_v2_docs.json")[0])
PAPER_TRADE: dict[str, Any] = json.loads(p.encode(p.Trade("BTCUSDT", 1, "T1", D("1.5"), D("2"), "buy", 1610064000278)))
EXECUTION: dict[str, Any] = json.loads(frames("binance/executionReport_lifecycle.json")[1])["data"]


def with_(message: dict[str, Any], **changes: Any) -> bytes:
    """``message`` with fields replaced (a value of ``...`` removes the field), as JSON."""
    changed = {**message, **changes}
    return json.dumps({k: v for k, v in changed.items() if v is not ...}).encode()


def kraken_trade(**changes: Any) -> bytes:
    return json.dumps({**KRAKEN_TRADE, "data": [{**KRAKEN_TRADE["data"][0], **changes}]}).encode()


BAD_FRAMES: list[tuple[str, Any, bytes | str, str]] = [
    ("garbage", decode_binance, b"\x00\xffnot json at all", "not JSON"),
    ("truncated", decode_binance, frames("binance/trade.json")[0][:-20], "not JSON"),
    ("empty", decode_coinbase, b"", "not JSON"),
    ("deep", decode_kraken, b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ("array", decode_binance, b"[1, 2]", "not a JSON object (got array)"),
    ("null", decode_coinbase, b"null", "got null"),
    ("bool", decode_kraken, b"true", "got boolean"),
    ("string", decode_paper, b'"x"', "got string"),
    ("number", decode_binance, b"1.5", "got number"),
    ("no type", decode_coinbase, b'{"product_id":"X"}', "no 'type'"),
    ("unknown binance", decode_binance, b'{"x":1}', "not a Binance message"),
    ("unknown kraken", decode_kraken, b'{"x":1}', "neither"),
    ("unknown paper type", decode_paper, b'{"type":"wat"}', "invalid message"),
    ("missing field", decode_binance, with_(TRADE, p=...), "missing required field `p`"),
    ("missing time", decode_coinbase, with_(MATCH, time=...), "`time`"),
    ("negative price", decode_binance, with_(TRADE, p="-4149.74"), "price: negative"),
    ("negative zero price", decode_binance, with_(TRADE, p="-0"), "price: negative"),
    ("zero price", decode_coinbase, with_(MATCH, price="0.000"), "price: must be positive"),
    ("zero size", decode_coinbase, with_(MATCH, size="0"), "size: must be positive"),
    ("NaN price", decode_binance, with_(TRADE, p="NaN"), "not a decimal"),
    ("Infinity size", decode_binance, with_(TRADE, q="Infinity"), "not a decimal"),
    ("exponent text", decode_binance, with_(TRADE, p="1e5"), "not a decimal"),
    ("underscore", decode_binance, with_(TRADE, p="1_000"), "not a decimal"),
    ("spaces", decode_coinbase, with_(MATCH, price=" 1.5"), "not a decimal"),
    ("number not string", decode_binance, with_(TRADE, p=4149.74), "Expected `str`"),
    ("bool id", decode_binance, with_(TRADE, t=True), "Expected `int`"),
    ("negative id", decode_binance, with_(TRADE, t=-1), ">= 0"),
    ("float time", decode_binance, with_(TRADE, T=1.5), "Expected `int`"),
    ("wrong side", decode_coinbase, with_(MATCH, side="up"), "`$.side`"),
    ("bad time", decode_coinbase, with_(MATCH, time="yesterday"), "not an ISO 8601 time"),
    ("time without zone", decode_coinbase, with_(MATCH, time="2021-04-17T16:43:37"), "without a zone"),
    ("time before 1970", decode_coinbase, with_(MATCH, time="1969-12-31T23:59:59Z"), "before 1970"),
    ("long symbol", decode_coinbase, with_(MATCH, product_id="X" * 65), "length"),
    ("kraken NaN", decode_kraken, kraken_trade(price="NaN"), "price: not a finite number"),
    ("kraken negative", decode_kraken, kraken_trade(qty=-1.5), "qty: negative"),
    ("kraken huge", decode_kraken, kraken_trade(price=1e300), "price: out of range"),
    ("kraken tiny", decode_kraken, kraken_trade(qty=1e-40), "qty: out of range"),
    (
        "kraken digits",
        decode_kraken,
        kraken_trade(qty=1.5).replace(b"1.5", b"1." + b"1" * 40),
        "qty: more than 40 digits",
    ),
    ("kraken bool price", decode_kraken, kraken_trade(price=True), "Expected `decimal`"),
    ("kraken side", decode_kraken, kraken_trade(side="long"), "side"),
    ("kraken channel", decode_kraken, b'{"channel":5}', "'channel' is not a string"),
    ("kraken method", decode_kraken, b'{"method":[]}', "'method' is not a string"),
    ("kraken ack", decode_kraken, b'{"method":"subscribe","success":true}', "success without a 'result'"),
    ("kraken data", decode_kraken, b'{"channel":"book","type":"snapshot","data":{}}', "Expected `array`"),
    (
        "kraken checksum",
        decode_kraken,
        b'{"channel":"book","type":"update","data":[{"symbol":"A","bids":[],"asks":[],"checksum":-1}]}',
        ">= 0",
    ),
    (
        "kraken snapshot zero",
        decode_kraken,
        b'{"channel":"book","type":"snapshot","data":[{"symbol":"A","bids":[{"price":1,"qty":0}],"asks":[],'
        b'"checksum":1}]}',
        "bid qty: must be positive",
    ),
    ("stream not str", decode_binance, b'{"stream":1,"data":{}}', "'stream' is not a string"),
    ("data not object", decode_binance, b'{"stream":"a","data":[]}', "'data' is not a JSON object"),
    ("event not object", decode_binance, b'{"subscriptionId":0,"event":null}', "'event' is not a JSON object"),
    ("e not str", decode_binance, b'{"e":1}', "'e' (event type) is not a string"),
    ("agg ids", decode_binance, with_(json.loads(frames("binance/aggTrade.json")[0])["data"], f=9, l=8), "first"),
    (
        "depth ids",
        decode_binance,
        with_(json.loads(frames("binance/depthUpdate_sequence.json")[0])["data"], U=9, u=8),
        "U 9 > u 8",
    ),
    (
        "depth level",
        decode_binance,
        with_(json.loads(frames("binance/depthUpdate_sequence.json")[0])["data"], b=[["1", "2", "3"]]),
        "length 2",
    ),
    ("snapshot zero qty", decode_binance, b'{"lastUpdateId":1,"bids":[["1","0"]],"asks":[]}', "must be positive"),
    ("error answer", decode_binance, b'{"error":{"code":"x"},"id":1}', "Expected `int`"),
    ("exec trade id", decode_binance, with_(EXECUTION, t=-1), "TRADE without a trade id"),
    ("exec last qty", decode_binance, with_(EXECUTION, l="0"), "TRADE without"),
    ("exec status", decode_binance, with_(EXECUTION, X="DONE"), "`$.X`"),
    ("exec negative", decode_binance, with_(EXECUTION, z="-1"), "cum qty (z): negative"),
    ("l2 side", decode_coinbase, b'{"type":"l2update","product_id":"A","changes":[["up","1","1"]],"time":"x"}', "up"),
    ("paper seq", decode_paper, with_(PAPER_TRADE, seq=0), "seq must be >= 1"),
    ("paper ts", decode_paper, with_(PAPER_TRADE, ts_ms=-1), "ts_ms must be >= 0"),
    ("paper instrument", decode_paper, with_(PAPER_TRADE, instrument=""), "empty instrument"),
    ("paper trade id", decode_paper, with_(PAPER_TRADE, trade_id=""), "empty trade_id"),
    ("paper NaN", decode_paper, with_(PAPER_TRADE, price="NaN"), "price: not a finite number"),
    ("paper heartbeat", decode_paper, b'{"type":"heartbeat","ts_ms":-5}', "ts_ms must be >= 0"),
    ("paper missing", decode_paper, b'{"type":"quote","instrument":"X"}', "missing required field"),
]


@pytest.mark.parametrize(
    ("decoder", "frame", "reason"), [case[1:] for case in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES]
)
def test_bad_frames_are_typed_errors_with_a_sample(decoder: Any, frame: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decoder(frame)
    error = caught.value
    assert reason in error.reason
    assert error.venue == decoder.__name__.removeprefix("decode_")
    assert len(error.sample) <= 200
    expected = frame[:800].decode("utf-8", "backslashreplace")[:200]
    assert error.sample == expected
    assert str(error).startswith(f"{error.venue}: ")


def test_sample_of_text_and_binary_frames() -> None:
    assert sample("é" * 500) == "é" * 200
    assert sample(b"\xff" * 500) == "\\xff" * 50
    assert sample(memoryview(b"abc")) == "abc"
    with pytest.raises(DecodeError) as caught:
        decode_coinbase('{"type": "match", ' + "x" * 1000)
    assert caught.value.sample == ('{"type": "match", ' + "x" * 1000)[:200]


def test_one_bad_item_fails_the_whole_frame() -> None:
    good = KRAKEN_TRADE["data"][0]
    frame = json.dumps({**KRAKEN_TRADE, "data": [good, {**good, "qty": -1}]})
    with pytest.raises(DecodeError, match="negative"):
        decode_kraken(frame)


# -- anything at all --------------------------------------------------------------------------

DECODER_LIST = [decode_paper, decode_binance, decode_coinbase, decode_kraken]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["NaN", "-1", "0", "1.5", "1e5", "2021-04-17T16:43:37Z", "buy", "sell"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=20,
)
KEYS = ["e", "E", "s", "t", "p", "q", "T", "m", "u", "U", "b", "a", "B", "A", "lastUpdateId", "bids", "asks"]
KEYS += ["type", "product_id", "price", "size", "side", "time", "trade_id", "sequence", "changes", "channels"]
KEYS += ["channel", "data", "symbol", "qty", "checksum", "method", "success", "result", "stream", "event"]
TYPES = ["trade", "aggTrade", "depthUpdate", "executionReport", "match", "ticker", "snapshot", "l2update", "book"]
TYPES += ["heartbeat", "subscriptions", "quote", "subscribed", "error", "subscribe", "update", "status"]
shaped = st.dictionaries(
    st.sampled_from(KEYS), json_values | st.sampled_from(TYPES), max_size=10
)  # objects that look like messages, so the decoders go past the first check


def only_decode_errors(frame: bytes | str) -> None:
    for decoder in DECODER_LIST:
        errors: list[DecodeError] = []
        try:
            events = decoder(frame)
        except DecodeError as error:
            errors.append(error)
        else:
            assert isinstance(events, list)
        assert all(len(error.sample) <= 200 for error in errors)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_only_decode_errors(frame: bytes) -> None:
    only_decode_errors(frame)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values | shaped)
def test_arbitrary_json_gives_only_decode_errors(value: Any) -> None:
    only_decode_errors(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([(name, i) for name in ALL_FILES for i in range(len(frames(name)))]),
    st.data(),
)
def test_mutated_samples_give_only_decode_errors(case: tuple[str, int], data: st.DataObject) -> None:
    """A real message with one field replaced by anything, or cut short anywhere."""
    frame = frames(case[0])[case[1]]
    message = json.loads(frame)
    target = message.get("data", message.get("event", message)) if isinstance(message, dict) else message
    if isinstance(target, list):
        target = target[0]
    if isinstance(target, dict) and target:
        key = data.draw(st.sampled_from(sorted(target)))
        target[key] = data.draw(json_values)
    only_decode_errors(json.dumps(message))
    only_decode_errors(frame[: data.draw(st.integers(0, len(frame)))])


# -- bounds: nesting depth and frame size (issue 14, item 4) --------------------------------------


@pytest.mark.parametrize("decoder", [decode_paper, decode_binance, decode_coinbase, decode_kraken])
@pytest.mark.parametrize("depth", [33, 1_000, 100_000])
def test_every_decoder_refuses_a_frame_nested_too_deeply(decoder: Any, depth: int) -> None:
    frame = '{"type": "heartbeat", "e": "trade", "x": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(DecodeError) as caught:
        decoder(frame)
    assert caught.value.reason == "not JSON: nested more than 32 deep"
    assert caught.value.sample == frame[:200]


@pytest.mark.parametrize("decoder", [decode_paper, decode_binance, decode_coinbase, decode_kraken])
def test_every_decoder_refuses_a_frame_larger_than_16_mib(decoder: Any) -> None:
    frame = b'{"type": "heartbeat", "ts_ms": 1}' + b" " * 2**24
    with pytest.raises(DecodeError) as caught:
        decoder(frame)
    assert caught.value.reason == f"not JSON: frame of {len(frame)} bytes is larger than {2**24}"


def test_a_frame_within_the_bounds_still_decodes() -> None:
    frame = b'{"type": "heartbeat", "ts_ms": 5, "x": ' + b"[" * 32 + b"]" * 32 + b"}"
    assert decode_paper(frame.ljust(2**24)) == [HeartbeatEvent(venue="paper", ts_ms=5)]
