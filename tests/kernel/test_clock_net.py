"""The process clocks (``kernel.clock``) and the loopback test (``kernel.net``)."""

from __future__ import annotations

import time

import pytest

from kernel import clock
from kernel.net import is_loopback


def test_monotonic_ms_never_goes_back_and_counts_milliseconds() -> None:
    readings = [clock.monotonic_ms() for _ in range(1000)]
    assert all(type(r) is int for r in readings)
    assert readings == sorted(readings)
    before = clock.monotonic_ms()
    deadline = time.monotonic() + 0.02
    while time.monotonic() < deadline:  # a busy wait of 20 ms, measured by both clocks
        pass
    assert 20 <= clock.monotonic_ms() - before < 2000


def test_wall_ms_is_the_epoch_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    now = clock.wall_ms()
    after = time.time_ns() // 1_000_000
    assert type(now) is int
    assert before <= now <= after
    assert now > 1_700_000_000_000  # after 2023-11-14


def test_both_clocks_floor_nanoseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock.time, "monotonic_ns", lambda: 1_999_999)
    monkeypatch.setattr(clock.time, "time_ns", lambda: 1_700_000_000_123_999_999)
    assert clock.monotonic_ms() == 1
    assert clock.wall_ms() == 1_700_000_000_123


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.5.5.5", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("example.com", False),
        ("", False),
        ("[1.2.3.4]", False),
        ("[]", False),
        ("[::1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
