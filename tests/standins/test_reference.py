"""The documented procedures of ``reference`` against values read off the sample files by hand."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from tests.standins import reference as ref
from tests.standins.sessions import SAMPLES, sample_elements


def load(relative: str) -> object:
    return json.loads((SAMPLES / relative).read_text(encoding="utf-8"))


# -- Binance --------------------------------------------------------------------------------------


def test_binance_snapshot_alone_is_its_top_levels() -> None:
    # depth_snapshot_rest.json: first bid 0.35210000 x 672, first ask 0.35250000 x 3959.
    bids, asks = ref.binance_book(load("binance/depth_snapshot_rest.json"), [])
    assert ref.top_of_book(bids, asks) == (D("0.3521"), D("672"), D("0.3525"), D("3959"))
    assert len(bids) == 20
    assert len(asks) == 20


def test_binance_nknusdt_after_every_event() -> None:
    # By hand: 0.3521 bid set to 42 at U=499869795; the 0.3524 ask appears at U=499869776 (3959),
    # is removed and restored three times, and is last set to 4589 at U=499869829. No event sets a
    # bid above 0.3521 or an ask below 0.3524.
    events = load("binance/depthUpdate_sequence.json")
    bids, asks = ref.binance_book(load("binance/depth_snapshot_rest.json"), events)
    assert ref.top_of_book(bids, asks) == (D("0.3521"), D("42"), D("0.3524"), D("4589"))
    # 0.34640000 x 6222 only appears in the first event, which the snapshot covers: never applied.
    assert D("0.3464") not in bids


def test_binance_first_event_covered_by_the_snapshot_is_dropped() -> None:
    snapshot = load("binance/depth_snapshot_rest.json")
    local = ref.BinanceLocalBook(snapshot)
    events = load("binance/depthUpdate_sequence.json")
    assert local.apply(events[0]) is False  # U=499869750 u=499869752 <= lastUpdateId 499869752
    assert local.apply(events[1]) is True  # U=499869753 = lastUpdateId + 1
    assert local.last_update_id == 499869754


def test_binance_gap_is_refused() -> None:
    # depthUpdate_gap_derived.json lacks U=499869765..767: the event after the hole starts at 768.
    with pytest.raises(ref.SequenceGap, match="499869765"):
        ref.binance_book(load("binance/depth_snapshot_rest.json"), load("binance/depthUpdate_gap_derived.json"))


def test_binance_snapshot_newer_than_the_first_event_needs_a_straddling_event() -> None:
    snapshot = {"lastUpdateId": 100, "bids": [], "asks": []}
    with pytest.raises(ref.SequenceGap):
        ref.binance_book(snapshot, [{"U": 102, "u": 103, "b": [], "a": []}])
    bids, _ = ref.binance_book(snapshot, [{"U": 99, "u": 103, "b": [["1.0", "2"]], "a": []}])
    assert bids == {D("1.0"): D("2")}


def test_binance_lrcbtc_buffered_events() -> None:
    # lastUpdateId 259345543: the events ending at 539 and 543 are dropped, 544-545 straddles 544.
    # Last changes: ask 0.00000638 -> 2285 (u=554), bid 0.00000637 -> 2500 (u=558).
    bids, asks = ref.binance_book(
        load("binance/depth_snapshot_rest_lrcbtc.json"), load("binance/depthUpdate_lrcbtc_buffered.json")
    )
    assert ref.top_of_book(bids, asks) == (D("0.00000637"), D("2500"), D("0.00000638"), D("2285"))
    assert asks[D("0.00000639")] == D("45096")


def test_binance_snapshot_body_keeps_the_texts() -> None:
    local = ref.BinanceLocalBook({"lastUpdateId": 7, "bids": [["0.35210000", "672.00000000"]], "asks": []})
    assert json.loads(local.snapshot_body()) == {
        "lastUpdateId": 7,
        "bids": [["0.35210000", "672.00000000"]],
        "asks": [],
    }


# -- Coinbase -------------------------------------------------------------------------------------


def test_coinbase_band_gbp() -> None:
    # Snapshot: best bid 14.7693 x 27.51, best ask 14.8024 x 12.77. By hand through the 30 updates,
    # the last best bid is 14.7772 x 12.67 (set at 16:43:39.100530) and the best ask 14.7981 x
    # 123.19 (16:43:37.925607; 14.7995 above it was removed at 16:43:38.798519).
    snapshot = load("coinbase/level2_snapshot.json")
    assert ref.top_of_book(*ref.coinbase_book(snapshot, [])) == (D("14.7693"), D("27.51"), D("14.8024"), D("12.77"))
    bids, asks = ref.coinbase_book(snapshot, load("coinbase/l2update_sequence.json"))
    assert ref.top_of_book(bids, asks) == (D("14.7772"), D("12.67"), D("14.7981"), D("123.19"))
    assert D("14.8024") not in asks  # removed by the third update
    assert D("14.7066") not in bids  # added then removed in the last updates


def test_coinbase_ignores_other_products() -> None:
    snapshot = {"type": "snapshot", "product_id": "A", "bids": [["1", "1"]], "asks": [["2", "1"]]}
    other = {"type": "l2update", "product_id": "B", "changes": [["buy", "1.5", "3"]]}
    assert ref.coinbase_book(snapshot, [other]) == ({D(1): D(1)}, {D(2): D(1)})


# -- Kraken ---------------------------------------------------------------------------------------


def kraken_frames() -> list[str]:
    return sample_elements("kraken/book_v2_snapshot_and_updates.json")


def test_kraken_snapshot_checksum_and_top() -> None:
    frames = kraken_frames()
    local = ref.KrakenLocalBook()
    body = ref.parse_exact(frames[0])
    local.apply(body["data"][0], snapshot=True)
    assert local.checksum() == 2785033588
    assert local.book.top() == (D("29430.2"), D("0.18967538"), D("29430.3"), D("8.25215653"))


def test_kraken_every_checksum_verifies_and_the_final_top() -> None:
    # By hand: no update touches a bid at or above 29429; the 29430.3 ask is last set to 5.41909189.
    bids, asks = ref.kraken_book(kraken_frames(), "BTC/USD")
    assert ref.top_of_book(bids, asks) == (D("29430.2"), D("0.18967538"), D("29430.3"), D("5.41909189"))
    assert len(bids) == 10
    assert len(asks) == 10


def test_kraken_first_update_truncates_to_depth() -> None:
    # The first update inserts 29430.6 and 29433.3 and removes 29431.1: ten asks up to 29433.1 remain
    # (29433.3 falls off the end).
    frames = kraken_frames()
    _, asks = ref.kraken_book(frames[:2], "BTC/USD")
    assert D("29430.6") in asks
    assert D("29431.1") not in asks
    assert D("29433.3") not in asks
    assert max(asks) == D("29433.1")


def test_kraken_float_text_is_kept() -> None:
    body = ref.parse_exact('{"price": 29426.7, "qty": 4.0}')
    assert body == {"price": "29426.7", "qty": "4.0"}


def test_kraken_dropped_update_is_a_checksum_mismatch() -> None:
    frames = kraken_frames()
    with pytest.raises(ref.ChecksumMismatch):
        ref.kraken_book([frames[0], *frames[2:5]], "BTC/USD")


def test_kraken_corrupt_checksum_is_refused() -> None:
    frames = kraken_frames()
    broken = frames[1].replace('"checksum":3547452596', '"checksum":3547452597')
    with pytest.raises(ref.ChecksumMismatch, match="3547452597"):
        ref.kraken_book([frames[0], broken], "BTC/USD")


def test_kraken_snapshot_frame_round_trips() -> None:
    local = ref.KrakenLocalBook()
    for text in kraken_frames():
        body = ref.parse_exact(text)
        local.apply(body["data"][0], snapshot=body["type"] == "snapshot")
    frame = local.snapshot_frame("BTC/USD")
    assert '"qty":4.0}' in frame  # the 29426.7 bid's size, as Kraken wrote it
    assert ref.kraken_book([frame], "BTC/USD") == ref.kraken_book(kraken_frames(), "BTC/USD")


def test_top_of_book_of_empty_sides() -> None:
    assert ref.top_of_book({}, {}) == (None, None, None, None)
    assert ref.top_of_book({D(1): D(2), D(3): D(4)}, {}) == (D(3), D(4), None, None)
