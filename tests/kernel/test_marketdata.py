"""Market data readers (the three real files in tests/data, see SOURCES.md) and the random walk."""

from __future__ import annotations

import itertools
from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel.venue import marketdata as md
from kernel.venue.marketdata import MarketDataError, MarketQuote, MarketTrade

DATA = Path(__file__).resolve().parents[1] / "data"
BINANCE_TRADES = str(DATA / "binance_btcusdt_trades_20210108.csv")
BINANCE_QUOTES = str(DATA / "binance_btcusdt_quotes_20210108.csv")
KRAKEN_TRADES = str(DATA / "kraken_xbtusdt_trades_20251110.csv")


def assert_time_ordered(events: list[md.MarketEvent]) -> None:
    assert all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(events))


def test_binance_trades_parse_fully() -> None:
    trades = list(md.read_csv(BINANCE_TRADES))
    assert len(trades) == 2001  # SOURCES.md
    assert all(isinstance(t, MarketTrade) for t in trades)
    assert_time_ordered(trades)
    first = trades[0]
    assert first == MarketTrade("BTCUSDT", "553287559", D("39432.48"), D("0.000263"), "sell", 1610064000278)
    assert trades[1].taker_side == "buy"  # buyer_is_maker false: the buyer took
    assert [int(t.trade_id) for t in trades] == list(range(553287559, 553289560))  # contiguous
    assert all(type(t.price) is D and type(t.qty) is D and type(t.ts_ms) is int for t in trades)


def test_binance_quotes_parse_fully() -> None:
    quotes = list(md.read_csv(BINANCE_QUOTES))
    assert len(quotes) == 451
    assert all(isinstance(q, MarketQuote) and q.instrument == "BTCUSDT" for q in quotes)
    assert_time_ordered(quotes)
    assert quotes[0] == MarketQuote("BTCUSDT", D("39432.99"), D("0.0031"), D("39433.62"), D("0.066851"), 1610064001076)
    assert all(q.bid <= q.ask for q in quotes)


def test_kraken_trades_parse_fully() -> None:
    trades = list(md.read_csv(KRAKEN_TRADES))
    assert len(trades) == 1000
    assert_time_ordered(trades)
    first = trades[0]
    assert first == MarketTrade("XBTUSDT", "10218208", D("105433.60000"), D("0.00027625"), "buy", 1762795433971)
    assert {t.taker_side for t in trades} == {"buy", "sell"}
    assert [int(t.trade_id) for t in trades] == list(range(10218208, 10219208))


def test_trades_and_quotes_merge_by_time() -> None:
    events = list(md.load([BINANCE_TRADES, BINANCE_QUOTES]))
    assert len(events) == 2001 + 451
    assert_time_ordered(events)
    assert isinstance(events[0], MarketTrade)  # the first trade (…0278) comes before the first quote (…1076)
    assert md.instruments([BINANCE_TRADES, KRAKEN_TRADES]) == ("BTCUSDT", "XBTUSDT")


def test_equal_times_keep_the_order_of_the_streams() -> None:
    a = [MarketTrade("X", "1", D(1), D(1), "buy", 5)]
    b = [MarketQuote("X", D(1), D(1), D(2), D(1), 5)]
    assert list(md.merge(a, b)) == a + b
    assert list(md.merge(b, a)) == b + a


HEADER_T = "ts_ms,trade_id,price,qty,buyer_is_maker\n"
HEADER_Q = "ts_ms,symbol,bid,bid_qty,ask,ask_qty\n"
HEADER_K = "ts,trade_id,price,qty,side,ord_type,misc\n"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", 1, "empty file"),
        ("a,b,c\n", 1, "unknown header"),
        (HEADER_T + "1,2,3,4,true\n5,6,7\n", 3, "expected 5 fields, got 3"),
        (HEADER_T + "1,2,abc,4,true\n", 2, "price is not a decimal"),
        (HEADER_T + "1,2,-3,4,true\n", 2, "price must be positive"),
        (HEADER_T + "1,2,3,0,true\n", 2, "qty must be positive"),
        (HEADER_T + "1,2,3,4,maybe\n", 2, "buyer_is_maker must be true or false"),
        (HEADER_T + "x,2,3,4,true\n", 2, "ts_ms is not a non-negative integer"),
        (HEADER_T + "5,2,3,4,true\n4,3,3,4,true\n", 3, "out of time order"),
        (HEADER_Q + "1,,1,1,2,1\n", 2, "symbol is empty"),
        (HEADER_Q + "1,X,3,1,2,1\n", 2, "crossed quote"),
        (HEADER_Q + "1,X,1,-1,2,1\n", 2, "bid_qty must be non-negative"),
        (HEADER_K + "1.5,1,1,1,up,limit,\n", 2, "side must be buy or sell"),
        (HEADER_K + "NaN,1,1,1,buy,limit,\n", 2, "ts must be non-negative"),
    ],
)
def test_a_bad_row_names_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(MarketDataError) as bad:
        list(md.read_csv(str(path)))
    assert (bad.value.path, bad.value.line) == (str(path), line)
    assert problem in str(bad.value)
    assert f"{path}, line {line}" in str(bad.value)


def test_unreadable_files_are_market_data_errors(tmp_path: Path) -> None:
    with pytest.raises(MarketDataError, match="cannot read"):
        list(md.read_csv(str(tmp_path / "missing.csv")))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MarketDataError, match="not a CSV text file"):
        list(md.read_csv(str(binary)))


def test_a_kraken_time_is_truncated_to_the_millisecond(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    path.write_text(HEADER_K + "1762795433.971999,1,1,1,sell,market,\n")
    (trade,) = md.read_csv(str(path))
    assert isinstance(trade, MarketTrade)
    assert (trade.ts_ms, trade.taker_side) == (1762795433971, "sell")


def test_the_random_walk_repeats_for_a_seed_and_differs_for_another() -> None:
    first = list(md.random_walk(42, count=200, start_ts_ms=1000))
    assert first == list(md.random_walk(42, count=200, start_ts_ms=1000))
    assert first != list(md.random_walk(43, count=200, start_ts_ms=1000))
    assert len(first) == 200
    assert_time_ordered(first)
    quotes = [e for e in first if isinstance(e, MarketQuote)]
    trades = [e for e in first if isinstance(e, MarketTrade)]
    assert len(quotes) == len(trades) == 100
    assert all(q.bid < q.ask and q.bid > 0 for q in quotes)
    assert all(type(t.price) is D and t.qty > 0 for t in trades)
    assert first[0].ts_ms == 1000
    assert len(list(md.random_walk(1, count=3))) == 3


def test_the_random_walk_stays_positive_and_refuses_bad_arguments() -> None:
    low = list(md.random_walk(5, start_price=D("0.05"), count=400))
    assert all(e.price > 0 for e in low if isinstance(e, MarketTrade))
    with pytest.raises(ValueError, match="positive"):
        next(md.random_walk(1, start_price=D(0)))
