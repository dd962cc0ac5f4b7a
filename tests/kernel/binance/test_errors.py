"""Binance error answers → the narrowest ``BinanceError`` (expectations by hand)."""

from __future__ import annotations

import pytest

from kernel.binance.errors import (
    BinanceAuthError,
    BinanceBanned,
    BinanceError,
    BinanceRateLimited,
    BinanceRejected,
    BinanceTimestampError,
    BinanceUnknownOrder,
    BinanceUnknownOutcome,
    error_of,
    is_duplicate_order,
)
from kernel.execution import VenueError
from machines.errors import TradekernelError

ARCHIVED = "Order was canceled or expired with no executed qty over 90 days ago and has been archived."


@pytest.mark.parametrize(
    ("status", "code", "msg", "kind"),
    [
        (429, -1003, "Too much request weight used", BinanceRateLimited),
        (429, -1015, "Too many new orders", BinanceRateLimited),
        (400, -1015, "Too many new orders", BinanceRateLimited),
        (418, -1003, "Way too much request weight used; IP banned", BinanceBanned),
        (400, -1021, "Timestamp for this request is outside of the recvWindow.", BinanceTimestampError),
        (400, -1022, "Signature for this request is not valid.", BinanceAuthError),
        (401, -2014, "API-key format invalid.", BinanceAuthError),
        (401, -2015, "Invalid API-key, IP, or permissions for action.", BinanceAuthError),
        (403, 0, "", BinanceAuthError),
        (400, -2013, "Order does not exist.", BinanceUnknownOrder),
        (400, -2011, "Unknown order sent.", BinanceUnknownOrder),
        (400, -2038, "Unknown order sent.", BinanceUnknownOrder),
        (
            400,
            -2026,
            "Order was canceled or expired with no executed qty over 90 days ago and has been archived.",
            BinanceUnknownOrder,
        ),
        (400, -2011, "Order was not canceled due to cancel restrictions.", BinanceRejected),
        (400, -2010, "Duplicate order sent.", BinanceRejected),
        (400, -1013, "Filter failure: PRICE_FILTER", BinanceRejected),
        (400, -1007, "Timeout waiting for response from backend server.", BinanceUnknownOutcome),
        (400, -1006, "An unexpected response was received from the message bus.", BinanceUnknownOutcome),
        (503, -1008, "Server is currently overloaded", BinanceUnknownOutcome),
        (500, 0, "", BinanceUnknownOutcome),
    ],
)
def test_error_of(status: int, code: int, msg: str, kind: type[BinanceError]) -> None:
    error = error_of(status, code, msg)
    assert type(error) is kind
    assert (error.code, error.msg) == (code, msg)


def test_a_429_carries_retry_after_and_server_time() -> None:
    error = error_of(429, -1003, "slow down", {"serverTime": 1_000, "retryAfter": 1_500})
    assert isinstance(error, BinanceRateLimited)
    assert (error.retry_after_ms, error.server_time_ms, error.status) == (1_500, 1_000, 429)
    assert str(error) == "-1003: slow down"


def test_a_418_carries_the_ban_end() -> None:
    error = error_of(418, -1003, "banned", {"serverTime": 1659142907531, "retryAfter": 1659146400000})
    assert isinstance(error, BinanceBanned)
    assert error.until_ms == 1659146400000


def test_a_418_without_data_has_no_ban_end() -> None:
    error = error_of(418, -1003, "banned", {"retryAfter": "soon"})
    assert isinstance(error, BinanceBanned)
    assert error.until_ms is None


def test_every_binance_error_is_a_venue_error_of_ours() -> None:
    assert issubclass(BinanceError, VenueError)
    assert issubclass(BinanceError, TradekernelError)


@pytest.mark.parametrize(
    ("code", "msg", "duplicate"),
    [
        (-2010, "Duplicate order sent.", True),
        (-2010, "Account has insufficient balance for requested action.", False),
        (-2011, "Duplicate order sent.", False),
    ],
)
def test_is_duplicate_order(code: int, msg: str, duplicate: bool) -> None:
    assert is_duplicate_order(code, msg) is duplicate
