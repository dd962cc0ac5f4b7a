"""Rate limits: ``rateLimits`` read, 429/418 decisions, ORDERS counted locally (expectations by hand)."""

from __future__ import annotations

import pytest

from kernel.binance.errors import BinanceWireError
from kernel.binance.ratelimits import Limit, RateLimitTracker, limit_of
from kernel.binance.wire import RateLimit, Response, decode_frame

W = 10_000_000  # a time at the start of a 10 s (and 1 min) window: 10_000_000 % 60_000 == 40_000, % 10_000 == 0


def orders_10s(limit: int, count: int | None) -> RateLimit:
    return RateLimit(rate_limit_type="ORDERS", interval="SECOND", interval_num=10, limit=limit, count=count)


@pytest.mark.parametrize(
    ("interval", "num", "window_ms"),
    [
        ("SECOND", 1, 1_000),
        ("SECOND", 10, 10_000),
        ("MINUTE", 1, 60_000),
        ("HOUR", 1, 3_600_000),
        ("DAY", 1, 86_400_000),
    ],
)
def test_limit_of_reads_the_window(interval: str, num: int, window_ms: int) -> None:
    row = RateLimit(rate_limit_type="ORDERS", interval=interval, interval_num=num, limit=50, count=3)
    assert limit_of(row) == Limit("ORDERS", window_ms, 50, 3)


def test_limit_of_refuses_an_unknown_interval() -> None:
    with pytest.raises(BinanceWireError, match="unknown interval"):
        limit_of(RateLimit(rate_limit_type="ORDERS", interval="WEEK", interval_num=1, limit=5))


def test_the_docs_ban_answer_gives_its_rate_limits() -> None:
    # web-socket-api.md, "How to interpret rate limits": a 418 banned until 1659146400000.
    frame = decode_frame(
        b'{"id":"fc93a61a","status":418,"error":{"code":-1003,"msg":"Way too much request weight used;",'
        b'"data":{"serverTime":1659142907531,"retryAfter":1659146400000}},"rateLimits":[{"rateLimitType":'
        b'"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000,"count":2411}]}'
    )
    assert isinstance(frame, Response)
    assert frame.error is not None
    assert frame.error.data == {"serverTime": 1659142907531, "retryAfter": 1659146400000}
    assert [limit_of(row) for row in frame.rate_limits] == [Limit("REQUEST_WEIGHT", 60_000, 6000, 2411)]


def test_an_order_is_held_when_the_reported_count_plus_local_orders_reach_the_limit() -> None:
    tracker = RateLimitTracker()
    tracker.observe([orders_10s(limit=3, count=2)], at_ms=W + 1_000)
    assert tracker.order_count(10_000, W + 2_000) == 2
    assert tracker.order_allowed(W + 2_000)
    tracker.note_order(W + 2_000)
    assert tracker.order_count(10_000, W + 3_000) == 3
    assert not tracker.order_allowed(W + 3_000)
    assert tracker.order_pause_ms(W + 3_000) == 7_000  # the window ends at W + 10_000
    # the next window: the report is stale, nothing sent in it yet
    assert tracker.order_count(10_000, W + 10_000) == 0
    assert tracker.order_pause_ms(W + 10_000) == 0


def test_orders_sent_before_a_report_are_counted_by_the_report_not_twice() -> None:
    tracker = RateLimitTracker()
    tracker.observe([orders_10s(limit=5, count=0)], at_ms=W)
    tracker.note_order(W + 100)
    tracker.note_order(W + 200)
    tracker.observe([orders_10s(limit=5, count=2)], at_ms=W + 300)
    assert tracker.order_count(10_000, W + 400) == 2
    tracker.note_order(W + 500)
    assert tracker.order_count(10_000, W + 600) == 3


def test_limits_without_counts_are_enforced_by_local_counting() -> None:
    # exchangeInfo gives the limits without usage: count locally from the window's start.
    tracker = RateLimitTracker([Limit("ORDERS", 10_000, 2), Limit("ORDERS", 86_400_000, 100)])
    tracker.note_order(W - 1)  # the previous 10 s window
    tracker.note_order(W + 1)
    assert tracker.order_count(10_000, W + 2) == 1
    assert tracker.order_count(86_400_000, W + 2) == 2
    tracker.note_order(W + 2)
    assert tracker.order_pause_ms(W + 3) == 9_997


def test_the_longest_full_window_decides_the_pause() -> None:
    tracker = RateLimitTracker([Limit("ORDERS", 10_000, 50), Limit("ORDERS", 60_000, 1)])
    tracker.note_order(W)
    # W is 40 s into its minute: the minute window ends 20 s later
    assert tracker.order_pause_ms(W + 1) == 19_999


def test_without_any_orders_limit_every_order_is_allowed() -> None:
    tracker = RateLimitTracker()
    for n in range(100):
        tracker.note_order(W + n)
    assert tracker.order_allowed(W + 100)


def test_request_weight_pause_uses_the_reported_usage_in_the_current_window() -> None:
    tracker = RateLimitTracker()
    minute = RateLimit(rate_limit_type="REQUEST_WEIGHT", interval="MINUTE", interval_num=1, limit=6000, count=5990)
    tracker.observe([minute], at_ms=W)
    assert tracker.weight_pause_ms(10, W + 1) == 0
    assert tracker.weight_pause_ms(11, W + 1) == 19_999
    assert tracker.weight_pause_ms(11, W + 20_000) == 0  # a new minute


def test_the_docs_cancel_replace_answer_feeds_three_limits() -> None:
    tracker = RateLimitTracker()
    tracker.observe(
        [
            orders_10s(limit=50, count=1),
            RateLimit(rate_limit_type="ORDERS", interval="DAY", interval_num=1, limit=160000, count=1),
            RateLimit(rate_limit_type="REQUEST_WEIGHT", interval="MINUTE", interval_num=1, limit=6000, count=1),
        ],
        at_ms=W,
    )
    assert tracker.limits("ORDERS") == [Limit("ORDERS", 10_000, 50, 1), Limit("ORDERS", 86_400_000, 160000, 1)]
    assert tracker.limits("REQUEST_WEIGHT") == [Limit("REQUEST_WEIGHT", 60_000, 6000, 1)]
    assert tracker.order_allowed(W + 1)
