"""ServerClock: the offset of Binance's clock from ours, from round-trip samples (expectations by hand)."""

from __future__ import annotations

import pytest

from kernel.binance.clock import ServerClock
from kernel.binance.errors import BinanceParamError


def test_without_samples_the_offset_is_zero() -> None:
    clock = ServerClock()
    assert clock.offset_ms == 0
    assert clock.now(1_700_000_000_000) == 1_700_000_000_000
    assert not clock.synced
    assert clock.samples == 0
    assert clock.round_trip_ms is None


def test_one_sample_assumes_the_server_read_its_clock_halfway() -> None:
    clock = ServerClock()
    # sent at 1000, answered at 1100 (round trip 100): the server said 1600 at our 1050.
    assert clock.sample(1000, 1600, 1100) == 550
    assert clock.offset_ms == 550
    assert clock.round_trip_ms == 100
    assert clock.now(2000) == 2550
    assert clock.synced


def test_a_server_behind_us_gives_a_negative_offset() -> None:
    clock = ServerClock()
    clock.sample(10_000, 9_000, 10_020)
    assert clock.offset_ms == -1010
    assert clock.now(20_000) == 18_990


def test_the_offset_is_the_median_so_one_slow_round_trip_does_not_move_it() -> None:
    clock = ServerClock(window=3)
    clock.sample(0, 510, 20)  # offset 500
    clock.sample(100, 612, 120)  # offset 502
    clock.sample(200, 3_000, 2_200)  # slow answer: offset 1800
    assert clock.offset_ms == 502
    assert clock.round_trip_ms == 20


def test_only_the_last_window_samples_count() -> None:
    clock = ServerClock(window=2)
    clock.sample(0, 100, 0)  # offset 100
    clock.sample(0, 200, 0)  # offset 200
    clock.sample(0, 300, 0)  # offset 300: the first one is gone
    assert clock.samples == 2
    # median_low of (200, 300) is 200
    assert clock.offset_ms == 200


def test_reset_forgets_every_sample() -> None:
    clock = ServerClock()
    clock.sample(0, 5_000, 10)
    clock.reset()
    assert clock.offset_ms == 0
    assert clock.samples == 0


def test_an_answer_before_its_request_is_refused_and_not_kept() -> None:
    clock = ServerClock()
    with pytest.raises(BinanceParamError, match="received before sent"):
        clock.sample(1000, 5000, 999)
    assert clock.samples == 0


def test_a_window_below_one_is_refused() -> None:
    with pytest.raises(BinanceParamError):
        ServerClock(window=0)
