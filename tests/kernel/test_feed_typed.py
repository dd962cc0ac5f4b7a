"""The decoders' typed path (issue 17): one msgspec decode per frame, straight into Structs.

The typed path may only take a frame the general path (JSON to a dict, then convert) takes, and
must give the very same events; anything else it hands to the general path, which accepts or
refuses it with its own reason. A differential property test holds both paths to that over
mutated real frames; hand-written cases pin the edges (long decimals, zero prices, exponents,
bodies that another message type owns)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.feed import (
    BookUpdate,
    DecodeError,
    FeedEvent,
    QuoteEvent,
    TradeEvent,
    binance,
    coinbase,
    decode_binance,
    decode_coinbase,
    decode_kraken,
    decode_paper,
    kraken,
    paper,
)
from kernel.feed._common import Frame, Invalid, check_bounds, decode_with, iso_ms, sample

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "exchange_samples"


def items(name: str) -> list[dict[str, Any]]:
    data = json.loads((SAMPLES / name).read_text())
    return data if isinstance(data, list) else [data]


def general(venue: str, frame: Frame) -> list[FeedEvent]:
    """The general path alone (for paper: the protocol's own typed pass, as before the narrow one)."""
    if venue == "binance":
        return decode_with("binance", frame, lambda data: binance._message(data, ""))
    if venue == "coinbase":
        return decode_with("coinbase", frame, coinbase._message)
    if venue == "kraken":
        return decode_with("kraken", frame, kraken._message)
    check_bounds("paper", frame)
    try:
        message = paper._typed.decode(frame)
    except msgspec.DecodeError:
        return decode_with("paper", frame, paper._message)
    try:
        return paper._events(message)
    except Invalid as exc:
        raise DecodeError("paper", str(exc), sample(frame)) from None


TYPED = {"binance": binance._typed, "coinbase": coinbase._typed, "kraken": kraken._typed, "paper": paper._fast}
DECODE = {"binance": decode_binance, "coinbase": decode_coinbase, "kraken": decode_kraken, "paper": decode_paper}


def outcome(decode: Any, frame: Frame) -> tuple[str, Any]:
    try:
        return "events", decode(frame)
    except DecodeError as exc:
        return "error", (exc.venue, exc.reason, exc.sample)


def paper_items() -> list[dict[str, Any]]:
    return [
        {"type": "trade", "instrument": "BTCUSDT", "seq": 3, "trade_id": "T3", "price": "64123.45",
         "qty": "0.0153", "taker_side": "buy", "ts_ms": 1700000000003},
        {"type": "quote", "instrument": "BTCUSDT", "seq": 4, "bid": "64123.45", "bid_qty": "1.25",
         "ask": "64123.46", "ask_qty": "0.842", "ts_ms": 1700000000004},
    ]  # fmt: skip


BASES: dict[str, list[dict[str, Any]]] = {
    "binance": items("binance/aggTrade.json")[:3]
    + items("binance/bookTicker.json")[:3]
    + items("binance/depthUpdate_sequence.json")[:2]
    + items("binance/trade.json"),
    "coinbase": items("coinbase/matches.json")[:3]
    + items("coinbase/ticker.json")[:3]
    + items("coinbase/l2update_sequence.json")[:2],
    "kraken": items("kraken/trade_v2_docs.json")
    + items("kraken/ticker_v2.json")
    + items("kraken/book_v2_snapshot_and_updates.json")[:2],
    "paper": paper_items(),
}

ODD_VALUES = st.sampled_from(
    [
        "0", "0.0", "00012.5", "12.", ".5", "1e5", "1.5e1", "1E-7", "-1", "-0", "+1", " 1", "1 ", "1_0", "NaN",
        "Infinity", "١", "", "0.000000000000000000000000000012345", "1234567890123456789012345678.9012",
        "1" * 32, "1" * 41, 0, 1, 1.5, -1, 1e40, None, True, [], {}, "x", "2021-04-17T16:43:37.056746Z",
    ]
)  # fmt: skip
EXTRA_KEYS = st.sampled_from(["e", "lastUpdateId", "data", "stream", "event", "subscriptionId", "type", "channel"])


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += leaves(item, (*path, index))
    return found


def mutate(base: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    copy = json.loads(json.dumps(base))
    holder = copy
    for step in path[:-1]:
        holder = holder[step]
    last = path[-1]
    if how == "set":
        holder[last] = value
    elif how == "delete":
        del holder[last]
    elif isinstance(holder[last], dict):  # add a key that another message type owns
        holder[last][str(value)] = 1
    else:
        holder[last] = value
    return copy


@st.composite
def mutated(draw: st.DrawFn, venue: str) -> str:
    base = draw(st.sampled_from(BASES[venue]))
    if draw(st.booleans()) and isinstance(base, dict):
        base = mutate({"_": base}, ("_",), "add", draw(EXTRA_KEYS))["_"]
    for _ in range(draw(st.integers(1, 2))):
        paths = leaves(base)
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if how == "delete" and isinstance(path[-1], int):
            how = "set"
        base = mutate(base, path, how, draw(EXTRA_KEYS) if how == "add" else draw(ODD_VALUES))
    return json.dumps(base, separators=(",", ":"))


@pytest.mark.parametrize("venue", sorted(BASES))
def test_every_base_frame_takes_the_typed_path(venue: str) -> None:
    """The unmutated frames never reach the general path (or the figure in feed_decoders.py lies)."""
    typed = {"binance": binance._typed, "coinbase": coinbase._typed, "kraken": kraken._typed, "paper": paper._fast}[
        venue
    ]
    for base in BASES[venue]:
        frame = json.dumps(base)
        events = typed(frame)
        assert events, frame[:80]
        assert events == general(venue, frame)


@pytest.mark.parametrize("venue", sorted(BASES))
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_typed_and_general_paths_agree(venue: str, data: st.DataObject) -> None:
    frame = data.draw(mutated(venue))
    for form in (frame, frame.encode()):
        assert outcome(DECODE[venue], form) == outcome(lambda f: general(venue, f), form)


# -- the edges, by hand -----------------------------------------------------------------------


def agg_trade(price: Any, qty: Any = "58.00000000") -> str:
    return json.dumps({"stream": "nknusdt@aggTrade", "data": {
        "e": "aggTrade", "E": 1633998523963, "s": "NKNUSDT", "a": 15683430, "p": price, "q": qty,
        "f": 19862790, "l": 19862790, "T": 1633998523963, "m": False, "M": True}})  # fmt: skip


def test_a_long_exact_decimal_goes_the_general_way_and_stays_exact() -> None:
    text = "0.000000000000000000000000000012345"  # 35 characters: longer than the typed path takes
    with pytest.raises(msgspec.ValidationError):
        binance._typed(agg_trade(text))
    [trade] = decode_binance(agg_trade(text))
    assert isinstance(trade, TradeEvent)
    assert trade.price == D("1.2345E-29")
    assert str(trade.price) == "1.2345E-29"


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        ("0.00000000", "price: must be positive: 0E-8"),
        ("1e5", "price: not a decimal: '1e5'"),
        ("-1", "price: negative: -1"),
        (0.5, "invalid message: Expected `str`, got `decimal` - at `$.p`"),
    ],
)
def test_a_price_the_typed_path_refuses_gets_the_general_reason(price: Any, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_binance(agg_trade(price))
    assert caught.value.reason == reason


def test_a_book_ticker_body_with_a_snapshot_id_is_not_a_quote() -> None:
    """The general path reads a body with ``lastUpdateId`` as a depth snapshot (this one has no levels)."""
    frame = json.dumps({"stream": "nknusdt@bookTicker", "data": {
        "u": 499869768, "s": "NKNUSDT", "b": "0.35210000", "B": "672.00000000", "a": "0.35260000",
        "A": "3199.00000000", "lastUpdateId": 7}})  # fmt: skip
    assert binance._typed(frame) is None
    with pytest.raises(DecodeError) as caught:
        decode_binance(frame)
    assert caught.value.reason == "invalid message: Object missing required field `bids`"


def test_a_depth_update_with_u_before_U_is_refused() -> None:
    frame = json.dumps({"stream": "x@depth", "data": {"e": "depthUpdate", "E": 1, "s": "X", "U": 9, "u": 8,
                                                      "b": [["1.5", "2"]], "a": []}})  # fmt: skip
    with pytest.raises(DecodeError) as caught:
        decode_binance(frame)
    assert caught.value.reason == "depthUpdate: U 9 > u 8"


def test_coinbase_l2update_zero_size_deletes_and_zero_price_is_refused() -> None:
    update = {"type": "l2update", "product_id": "BTC-USD", "time": "2021-04-17T16:43:37.056746Z",
              "changes": [["buy", "100.5", "0"], ["sell", "101", "0.25"]]}  # fmt: skip
    [event] = decode_coinbase(json.dumps(update))
    assert event == BookUpdate(
        "coinbase", "BTC-USD", ((D("100.5"), D("0")),), ((D("101"), D("0.25")),), ts_ms=1618677817056
    )
    update["changes"] = [["buy", "0", "1"]]
    with pytest.raises(DecodeError) as caught:
        decode_coinbase(json.dumps(update))
    assert caught.value.reason == "price: must be positive: 0"


def test_kraken_several_trades_in_one_frame() -> None:
    frame = {"channel": "trade", "type": "update", "data": [
        {"symbol": "BTC/USD", "side": "sell", "price": 105944.2, "qty": 0.001, "ord_type": "market",
         "trade_id": 1, "timestamp": "2023-09-25T07:48:36.925533Z"},
        {"symbol": "BTC/USD", "side": "buy", "price": 105944.3, "qty": 2, "ord_type": "limit",
         "trade_id": 2, "timestamp": "2023-09-25T07:48:36.926Z"},
        {"symbol": "BTC/USD", "side": "buy", "price": 1.5e2, "qty": 3.10, "ord_type": "limit",
         "trade_id": 3, "timestamp": "2023-09-25T07:48:37Z"}]}  # fmt: skip
    assert decode_kraken(json.dumps(frame)) == [
        TradeEvent("kraken", "BTC/USD", "1", D("105944.2"), D("0.001"), "sell", 1695628116925, "trade"),
        TradeEvent("kraken", "BTC/USD", "2", D("105944.3"), D("2"), "buy", 1695628116926, "trade"),
        TradeEvent("kraken", "BTC/USD", "3", D("1.5E+2"), D("3.1"), "buy", 1695628117000, "trade"),
    ]


def test_paper_quote_with_an_exponent_keeps_the_protocol_meaning() -> None:
    """The paper protocol reads decimals as msgspec ``Decimal``: ``1.5e1`` is 15 there, as before."""
    quote = {"type": "quote", "instrument": "BTCUSDT", "seq": 1, "bid": "1.5e1", "bid_qty": "0",
             "ask": "16", "ask_qty": "2", "ts_ms": 5}  # fmt: skip
    with pytest.raises(msgspec.ValidationError):
        paper._fast(json.dumps(quote))
    assert decode_paper(json.dumps(quote)) == [
        QuoteEvent("paper", "BTCUSDT", D("15"), D("0"), D("16"), D("2"), 5, seq=1)
    ]


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2021-04-17T16:43:37.056746Z", 1618677817056),
        ("2021-04-17T16:43:37.9999999Z", 1618677817999),
        ("2021-04-17T18:43:37.5+02:00", 1618677817500),
    ],
)
def test_iso_ms(text: str, millis: int) -> None:
    assert iso_ms(text) == millis


def test_iso_ms_before_1970_is_refused() -> None:
    with pytest.raises(Invalid, match="before 1970"):
        iso_ms("1969-12-31T23:59:59.999Z")


def test_events_are_immutable_values() -> None:
    trade = TradeEvent("paper", "BTCUSDT", "T1", D("1"), D("2"), "buy", 5, "trades", seq=1)
    with pytest.raises(AttributeError):
        trade.price = D("3")  # type: ignore[misc]
    same = TradeEvent("paper", "BTCUSDT", "T1", D("1"), D("2"), "buy", 5, "trades", seq=1)
    assert trade == same
    assert hash(trade) == hash(same)
    assert repr(trade) == (
        "TradeEvent(venue='paper', instrument='BTCUSDT', trade_id='T1', price=Decimal('1'), qty=Decimal('2'), "
        "taker_side='buy', ts_ms=5, channel='trades', seq=1)"
    )
