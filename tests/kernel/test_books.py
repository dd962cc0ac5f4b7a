"""Order books and gap detection (kernel.feed.book) on the real samples in tests/data/exchange_samples:
Binance depth sync (U/u against lastUpdateId), Kraken v2 CRC32 checksums, Coinbase trade_id
continuity, the paper venue's seq; a gap is returned, typed, and touches only its instrument."""

from __future__ import annotations

import zlib
from decimal import Decimal as D
from pathlib import Path

import msgspec
import pytest

from kernel import paper_protocol as p
from kernel.feed import (
    BinanceDepthSync,
    BookSnapshot,
    BookUpdate,
    CoinbaseTradeSequence,
    Gap,
    HeartbeatEvent,
    KrakenBook,
    OrderBook,
    PaperSequence,
    QuoteEvent,
    Stale,
    TopOfBook,
    TradeEvent,
    decode_binance,
    decode_coinbase,
    decode_kraken,
    decode_paper,
    kraken_checksum,
)

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "exchange_samples"


def frames(name: str) -> list[bytes]:
    return [bytes(item) for item in msgspec.json.decode((SAMPLES / name).read_bytes(), type=list[msgspec.Raw])]


def binance_updates(name: str) -> list[BookUpdate]:
    updates = [event for frame in frames(name) for event in decode_binance(frame)]
    assert all(isinstance(update, BookUpdate) for update in updates)
    return updates  # type: ignore[return-value]


def binance_snapshot(name: str, symbol: str) -> BookSnapshot:
    (snapshot,) = decode_binance((SAMPLES / name).read_bytes(), symbol=symbol)
    assert isinstance(snapshot, BookSnapshot)
    return snapshot


def synced(keeper: BinanceDepthSync | KrakenBook) -> bool:
    """The keeper's state, read through a call (mypy would narrow the property across asserts)."""
    return keeper.synced


NKN_SNAPSHOT = "binance/depth_snapshot_rest.json"
NKN_UPDATES = "binance/depthUpdate_sequence.json"
NKN_GAP = "binance/depthUpdate_gap_derived.json"
LRC_SNAPSHOT = "binance/depth_snapshot_rest_lrcbtc.json"
LRC_UPDATES = "binance/depthUpdate_lrcbtc_buffered.json"


# -- OrderBook --------------------------------------------------------------------------------


def test_order_book_levels_top_and_depth() -> None:
    book = OrderBook("X")
    assert book.top() == TopOfBook("X", None, None)
    assert not book.is_crossed()
    book.load([(D("10"), D("1")), (D("9"), D("2")), (D("8"), D("0"))], [(D("11"), D("3")), (D("12"), D("4"))])
    assert book.bid_levels() == [(D("10"), D("1")), (D("9"), D("2"))]  # a zero level is no level
    book.apply([(D("10"), D("0")), (D("9.5"), D("5")), (D("7"), D("0"))], [(D("11"), D("6")), (D("10.5"), D("1"))])
    assert book.top() == TopOfBook("X", (D("9.5"), D("5")), (D("10.5"), D("1")))
    assert book.bid_levels() == [(D("9.5"), D("5")), (D("9"), D("2"))]
    assert book.ask_levels(2) == [(D("10.5"), D("1")), (D("11"), D("6"))]
    book.truncate(1)
    assert (book.bid_levels(), book.ask_levels()) == ([(D("9.5"), D("5"))], [(D("10.5"), D("1"))])
    book.apply([(D("10.5"), D("1"))], [])
    assert book.is_crossed()
    book.clear()
    assert book.top() == TopOfBook("X", None, None)
    with pytest.raises(ValueError, match="book of 'X' given an event of 'Y'"):
        book.apply_update(BookUpdate("binance", "Y", (), ()))


# -- Binance: diff depth against the REST snapshot ---------------------------------------------


def test_binance_sequence_syncs_cleanly_and_matches_book_ticker() -> None:
    sync = BinanceDepthSync("NKNUSDT")
    updates = binance_updates(NKN_UPDATES)
    assert [sync.on_update(update) for update in updates[:3]] == [None] * 3  # buffered: no snapshot yet
    assert not synced(sync)
    assert sync.on_snapshot(binance_snapshot(NKN_SNAPSHOT, "NKNUSDT")) is None
    assert synced(sync)
    assert sync.last_update_id == 499869757  # the first (u <= 499869752) dropped, two replayed
    tops = {}
    for update in updates[3:]:
        assert sync.on_update(update) is None
        tops[update.last_update_id] = sync.book.top()
    assert sync.last_update_id == 499869831
    assert sync.book.top() == TopOfBook("NKNUSDT", (D("0.35210000"), D("42")), (D("0.35240000"), D("4589")))
    # bookTicker's u shares the depth update-id space: where they meet, the book agrees with it.
    agreed = 0
    for frame in frames("binance/bookTicker.json"):
        (quote,) = decode_binance(frame)
        assert isinstance(quote, QuoteEvent)
        if quote.seq in tops:
            top = tops[quote.seq]
            assert (top.bid, top.ask) == ((quote.bid, quote.bid_qty), (quote.ask, quote.ask_qty))
            agreed += 1
    assert agreed == 5


def test_binance_snapshot_first_then_stale_and_duplicate_updates_are_dropped() -> None:
    sync = BinanceDepthSync("NKNUSDT")
    assert sync.on_snapshot(binance_snapshot(NKN_SNAPSHOT, "NKNUSDT")) is None
    assert synced(sync)
    updates = binance_updates(NKN_UPDATES)
    assert sync.on_update(updates[0]) is None  # u == lastUpdateId: dropped
    assert sync.last_update_id == 499869752
    assert sync.on_update(updates[1]) is None  # U == lastUpdateId + 1: the first applied
    assert sync.on_update(updates[1]) is None  # a duplicate: dropped
    assert sync.last_update_id == 499869754
    assert sync.book.bids[D("0.35170000")] == D("4265")


def test_binance_lrcbtc_buffered_events_before_the_snapshot_are_discarded() -> None:
    sync = BinanceDepthSync("LRCBTC")
    updates = binance_updates(LRC_UPDATES)
    assert updates[0].first_update_id == 259345536  # before the snapshot's id
    for update in updates:
        assert sync.on_update(update) is None
    snapshot = binance_snapshot(LRC_SNAPSHOT, "LRCBTC")
    assert snapshot.last_update_id == 259345543
    assert sync.on_snapshot(snapshot) is None
    assert synced(sync)
    assert sync.last_update_id == updates[-1].last_update_id == 259345563
    # the second event (u == 259345543) set 0.00000636 to 12625, as the snapshot already had it
    assert sync.book.top() == TopOfBook("LRCBTC", (D("0.00000637"), D("2500")), (D("0.00000638"), D("2285")))


def test_binance_gap_is_detected_at_the_missing_update_id() -> None:
    sync = BinanceDepthSync("NKNUSDT")
    sync.on_snapshot(binance_snapshot(NKN_SNAPSHOT, "NKNUSDT"))
    results = [sync.on_update(update) for update in binance_updates(NKN_GAP)]
    gaps = [result for result in results if result is not None]
    assert gaps == [Gap("NKNUSDT", 499869765, 499869768, "update_id")]
    assert results.index(gaps[0]) == 6  # the event after the hole
    assert not synced(sync)
    assert sync.book.top() == TopOfBook("NKNUSDT", None, None)


def test_binance_resync_after_a_gap_rejoins_the_unbroken_book() -> None:
    """After the gap, a fresh snapshot (here: the unbroken book at u=499869767) plus the buffered
    events rebuild exactly the book that the unbroken stream gives."""
    reference = BinanceDepthSync("NKNUSDT")
    reference.on_snapshot(binance_snapshot(NKN_SNAPSHOT, "NKNUSDT"))
    full = binance_updates(NKN_UPDATES)
    for update in full[:7]:
        reference.on_update(update)
    assert reference.last_update_id == 499869767
    fresh = BookSnapshot(
        "binance",
        "NKNUSDT",
        tuple(reference.book.bid_levels()),
        tuple(reference.book.ask_levels()),
        last_update_id=499869767,
    )
    for update in full[7:12]:  # the gap file is full[:12] without full[6]
        reference.on_update(update)

    sync = BinanceDepthSync("NKNUSDT")
    sync.on_snapshot(binance_snapshot(NKN_SNAPSHOT, "NKNUSDT"))
    results = [sync.on_update(update) for update in binance_updates(NKN_GAP)]
    assert sum(result is not None for result in results) == 1  # buffering after the gap, no repeats
    assert sync.on_snapshot(fresh) is None
    assert synced(sync)
    assert sync.last_update_id == reference.last_update_id
    assert (sync.book.bids, sync.book.asks) == (reference.book.bids, reference.book.asks)


def test_binance_snapshot_older_than_the_buffer_is_a_gap_then_a_newer_one_syncs() -> None:
    sync = BinanceDepthSync("LRCBTC")
    updates = binance_updates(LRC_UPDATES)
    for update in updates:
        sync.on_update(update)
    real = binance_snapshot(LRC_SNAPSHOT, "LRCBTC")
    old = msgspec.structs.replace(real, last_update_id=259345500)
    assert sync.on_snapshot(old) == Gap("LRCBTC", 259345501, 259345536, "update_id")
    assert not synced(sync)
    assert sync.on_snapshot(real) is None  # nothing was lost from the buffer
    assert sync.last_update_id == 259345563


def test_binance_gap_touches_only_its_instrument() -> None:
    syncs = {"NKNUSDT": BinanceDepthSync("NKNUSDT"), "LRCBTC": BinanceDepthSync("LRCBTC")}
    syncs["NKNUSDT"].on_snapshot(binance_snapshot(NKN_SNAPSHOT, "NKNUSDT"))
    syncs["LRCBTC"].on_snapshot(binance_snapshot(LRC_SNAPSHOT, "LRCBTC"))
    nkn, lrc = binance_updates(NKN_GAP), binance_updates(LRC_UPDATES)
    gaps = []
    for update in [item for pair in zip(nkn, lrc, strict=False) for item in pair] + lrc[len(nkn) :]:
        gap = syncs[update.instrument].on_update(update)
        if gap is not None:
            gaps.append(gap)
    assert [gap.instrument for gap in gaps] == ["NKNUSDT"]
    assert not syncs["NKNUSDT"].synced
    assert syncs["LRCBTC"].synced
    assert syncs["LRCBTC"].last_update_id == 259345563


def test_binance_buffer_is_bounded_and_misuse_is_a_value_error() -> None:
    sync = BinanceDepthSync("LRCBTC", max_buffer=2)
    updates = binance_updates(LRC_UPDATES)
    for update in updates[:5]:
        sync.on_update(update)
    # only the last two (U=259345546, 259345547) were kept: the snapshot at 259345543 cannot join them
    assert sync.on_snapshot(binance_snapshot(LRC_SNAPSHOT, "LRCBTC")) == Gap(
        "LRCBTC", 259345544, 259345546, "update_id"
    )
    assert sync.instrument == "LRCBTC"
    with pytest.raises(ValueError, match="given an event of 'NKNUSDT'"):
        sync.on_update(binance_updates(NKN_UPDATES)[0])
    with pytest.raises(ValueError, match="lastUpdateId"):
        sync.on_snapshot(BookSnapshot("binance", "LRCBTC", (), ()))
    with pytest.raises(ValueError, match="U and u"):
        sync.on_update(BookUpdate("binance", "LRCBTC", (), ()))


# -- Kraken v2: CRC32 checksums ----------------------------------------------------------------

KRAKEN_BOOK = "kraken/book_v2_snapshot_and_updates.json"


def kraken_events() -> list[BookSnapshot | BookUpdate]:
    events = [event for frame in frames(KRAKEN_BOOK) for event in decode_kraken(frame)]
    assert all(isinstance(event, BookSnapshot | BookUpdate) for event in events)
    return events  # type: ignore[return-value]


def feed(book: KrakenBook, event: BookSnapshot | BookUpdate) -> Gap | None:
    return book.on_snapshot(event) if isinstance(event, BookSnapshot) else book.on_update(event)


def test_kraken_every_checksum_verifies() -> None:
    book = KrakenBook("BTC/USD", price_precision=1, qty_precision=8)
    events = kraken_events()
    assert len(events) == 31
    for event in events:
        assert feed(book, event) is None
        assert book.checksum() == event.checksum
        assert len(book.book.bids) <= 10
        assert len(book.book.asks) <= 10
    assert synced(book)
    assert book.instrument == "BTC/USD"
    assert book.book.top() == TopOfBook("BTC/USD", (D("29430.2"), D("0.18967538")), (D("29430.3"), D("5.41909189")))


def test_kraken_checksum_string_as_documented() -> None:
    book = OrderBook("X")
    book.load([(D("45283.5"), D("0.1"))], [(D("45285.2"), D("0.001")), (D("45286.4"), D("1.5"))])
    # asks low to high, then bids high to low; '.' removed, leading zeros stripped
    expected = zlib.crc32(b"452852100000" + b"452864150000000" + b"45283510000000")
    assert kraken_checksum(book, price_precision=1, qty_precision=8) == expected


def test_kraken_tampered_level_fails_the_checksum_then_resnapshot_recovers() -> None:
    book = KrakenBook("BTC/USD", price_precision=1, qty_precision=8)
    snapshot, *rest = kraken_events()
    assert isinstance(snapshot, BookSnapshot)
    updates = [update for update in rest if isinstance(update, BookUpdate)]
    assert len(updates) == 30
    assert book.on_snapshot(snapshot) is None
    for update in updates[:4]:
        assert book.on_update(update) is None
    honest = updates[4]
    assert honest.bids == ((D("29421.9"), D("0.0275")),)
    tampered = msgspec.structs.replace(honest, bids=((D("29421.9"), D("0.0276")),))
    gap = book.on_update(tampered)
    assert isinstance(gap, Gap)
    assert (gap.instrument, gap.kind, gap.expected) == ("BTC/USD", "checksum", honest.checksum)
    assert gap.received != gap.expected
    assert not synced(book)
    assert book.book.top() == TopOfBook("BTC/USD", None, None)
    assert book.on_update(updates[5]) is None  # ignored until a snapshot
    assert not synced(book)
    assert book.on_snapshot(snapshot) is None
    assert synced(book)


def test_kraken_tampered_snapshot_and_misuse() -> None:
    book = KrakenBook("BTC/USD", price_precision=1, qty_precision=8)
    snapshot = kraken_events()[0]
    assert isinstance(snapshot, BookSnapshot)
    tampered = msgspec.structs.replace(snapshot, asks=snapshot.asks[1:])
    gap = book.on_snapshot(tampered)
    assert gap is not None
    assert (gap.expected, gap.kind) == (2785033588, "checksum")
    with pytest.raises(ValueError, match="checksum"):
        book.on_snapshot(msgspec.structs.replace(snapshot, checksum=None))
    with pytest.raises(ValueError, match="given an event of 'ETH/USD'"):
        book.on_update(BookUpdate("kraken", "ETH/USD", (), (), checksum=1))


# -- Coinbase: level2 and trade_id continuity ---------------------------------------------------


def coinbase_trades() -> list[TradeEvent]:
    trades = [event for frame in frames("coinbase/matches.json") for event in decode_coinbase(frame)]
    assert all(isinstance(trade, TradeEvent) for trade in trades)
    return trades  # type: ignore[return-value]


def test_coinbase_level2_updates_onto_the_snapshot() -> None:
    book = OrderBook("BAND-GBP")
    (snapshot,) = decode_coinbase((SAMPLES / "coinbase/level2_snapshot.json").read_bytes())
    assert isinstance(snapshot, BookSnapshot)
    book.apply_snapshot(snapshot)
    assert book.top() == TopOfBook("BAND-GBP", (D("14.7693"), D("27.51")), (D("14.8024"), D("12.77")))
    for frame in frames("coinbase/l2update_sequence.json"):
        (update,) = decode_coinbase(frame)
        assert isinstance(update, BookUpdate)
        book.apply_update(update)
    assert book.top() == TopOfBook("BAND-GBP", (D("14.7772"), D("12.67")), (D("14.7981"), D("123.19")))
    assert (len(book.bids), len(book.asks)) == (150, 165)
    assert not book.is_crossed()


def test_coinbase_matches_are_continuous() -> None:
    sequence = CoinbaseTradeSequence()
    assert [sequence.observe(trade) for trade in coinbase_trades()] == [None] * 25
    assert sequence.last_trade_id("SKL-USD") == 1568291


def test_coinbase_removed_match_is_a_gap_then_continues() -> None:
    sequence = CoinbaseTradeSequence()
    trades = coinbase_trades()
    del trades[10]  # trade_id 1568277
    results = [sequence.observe(trade) for trade in trades]
    assert [r for r in results if r is not None] == [Gap("SKL-USD", 1568277, 1568278, "trade_id", "match")]
    assert results.index(Gap("SKL-USD", 1568277, 1568278, "trade_id", "match")) == 10
    assert sequence.observe(trades[3]) == Stale("SKL-USD", 1568291, 1568270, "match")  # a replay


def test_coinbase_gap_touches_only_its_product_and_heartbeats_reveal_missed_trades() -> None:
    sequence = CoinbaseTradeSequence()
    trades = coinbase_trades()
    other = [
        msgspec.structs.replace(trade, instrument="BAND-GBP", trade_id=str(881600 + i))
        for i, trade in enumerate(trades)
    ]
    assert sequence.observe(trades[0]) is None
    assert sequence.observe(trades[5]) == Gap("SKL-USD", 1568268, 1568272, "trade_id", "match")
    assert [sequence.observe(trade) for trade in other] == [None] * 25
    assert sequence.on_heartbeat(HeartbeatEvent("coinbase", 1, "BAND-GBP", 9, "881624")) is None
    assert sequence.on_heartbeat(HeartbeatEvent("coinbase", 1, "BAND-GBP", 9, "881630")) == Gap(
        "BAND-GBP", 881625, 881630, "trade_id", "heartbeat"
    )
    assert sequence.last_trade_id("BAND-GBP") == 881630
    assert sequence.on_heartbeat(HeartbeatEvent("coinbase", 1, "BTC-USD", 9, "20")) is None  # never traded here
    sequence.reset("SKL-USD")
    assert sequence.last_trade_id("SKL-USD") is None
    assert sequence.observe(trades[1]) is None  # a new baseline
    with pytest.raises(ValueError, match="heartbeat"):
        sequence.on_heartbeat(HeartbeatEvent("kraken"))


# -- the paper venue: seq per instrument and channel ---------------------------------------------


def paper_trade(seq: int, instrument: str = "BTCUSDT") -> TradeEvent:
    (trade,) = decode_paper(p.encode(p.Trade(instrument, seq, f"T{seq}", D("100"), D("1"), "buy", 1000 + seq)))
    assert isinstance(trade, TradeEvent)
    return trade


def paper_quote(seq: int) -> QuoteEvent:
    (quote,) = decode_paper(p.encode(p.Quote("BTCUSDT", seq, D("99"), D("1"), D("101"), D("2"), 1000 + seq)))
    assert isinstance(quote, QuoteEvent)
    return quote


def test_paper_seq_skipped_is_a_gap_per_instrument_and_channel() -> None:
    sequence = PaperSequence()
    assert [sequence.observe(paper_trade(seq)) for seq in (1, 2, 3)] == [None] * 3
    assert [sequence.observe(paper_quote(seq)) for seq in (1, 2)] == [None] * 2  # its own count
    assert sequence.observe(paper_trade(1, "ETHUSDT")) is None  # its own count
    assert sequence.observe(paper_trade(5)) == Gap("BTCUSDT", 4, 5, "seq", "trades")
    assert sequence.observe(paper_trade(6)) is None  # one hole, reported once
    assert sequence.observe(paper_quote(3)) is None
    assert sequence.observe(paper_trade(6)) == Stale("BTCUSDT", 6, 6, "trades")
    assert sequence.observe(paper_trade(2, "ETHUSDT")) is None


def test_paper_first_seq_must_be_one_and_reset() -> None:
    sequence = PaperSequence()
    assert sequence.observe(paper_quote(2)) == Gap("BTCUSDT", 1, 2, "seq", "quotes")
    sequence.observe(paper_trade(1, "ETHUSDT"))
    sequence.reset("BTCUSDT")
    assert sequence.observe(paper_quote(1)) is None
    assert sequence.observe(paper_trade(2, "ETHUSDT")) is None  # untouched by the reset
    sequence.reset()
    assert sequence.observe(paper_trade(1, "ETHUSDT")) is None
    with pytest.raises(ValueError, match="seq"):
        sequence.observe(QuoteEvent("binance", "X", D("1"), None, D("2"), None, None))
