"""Decoding WebSocket API frames: responses, events, results (shapes from the Binance docs)."""

from __future__ import annotations

import msgspec
import pytest

from kernel.binance.errors import BinanceWireError
from kernel.binance.wire import (
    AccountPositionEvent,
    BalanceUpdateEvent,
    EventFrame,
    OrderJson,
    OtherEvent,
    PositionBalance,
    RateLimit,
    Response,
    ServerShutdownEvent,
    ServerTime,
    StreamTerminatedEvent,
    SubscribeResult,
    decode_event,
    decode_frame,
    decode_result,
)


class OrderIdOnly(msgspec.Struct, frozen=True, rename="camel"):
    order_id: int


def test_a_response_with_a_result_and_rate_limits() -> None:
    frame = decode_frame(
        '{"id":"7069b743","status":200,"result":{"serverTime":1656400526260},"rateLimits":[{"rateLimitType":'
        '"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000,"count":70}]}'
    )
    assert isinstance(frame, Response)
    assert (frame.id, frame.status, frame.error) == ("7069b743", 200, None)
    assert frame.rate_limits == [
        RateLimit(rate_limit_type="REQUEST_WEIGHT", interval="MINUTE", interval_num=1, limit=6000, count=70)
    ]
    assert decode_result(frame, ServerTime) == ServerTime(server_time=1656400526260)


def test_an_error_response_has_no_result() -> None:
    frame = decode_frame(b'{"id":3,"status":400,"error":{"code":-2013,"msg":"Order does not exist."}}')
    assert isinstance(frame, Response)
    assert frame.error is not None
    assert (frame.id, frame.error.code, frame.error.msg, frame.error.data) == (3, -2013, "Order does not exist.", None)
    with pytest.raises(BinanceWireError, match="has no result"):
        decode_result(frame, OrderJson)


def test_a_result_of_the_wrong_shape_is_a_wire_error() -> None:
    frame = decode_frame(b'{"id":"a","status":200,"result":{"subscriptionId":"x"}}')
    assert isinstance(frame, Response)
    with pytest.raises(BinanceWireError, match="unexpected result"):
        decode_result(frame, SubscribeResult)
    assert decode_result(decode_frame(b'{"id":"a","status":200,"result":{"subscriptionId":0}}'), SubscribeResult) == (
        SubscribeResult(subscription_id=0)
    )


def test_an_ack_and_a_null_result() -> None:
    ack = decode_frame(
        b'{"id":"p","status":200,"result":{"symbol":"BTCUSDT","orderId":12569099453,"orderListId":-1,'
        b'"clientOrderId":"4d96324ff9d44481926157","transactTime":1660801715639}}'
    )
    assert isinstance(ack, Response)
    assert decode_result(ack, OrderIdOnly) == OrderIdOnly(12569099453)
    null = decode_frame(b'{"id":"p","status":200,"result":null}')
    assert isinstance(null, Response)
    with pytest.raises(BinanceWireError):
        decode_result(null, OrderIdOnly)


def test_events_by_type() -> None:
    frame = decode_frame(
        b'{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1728972148778,"u":1728972148778,'
        b'"B":[{"a":"BTC","f":"11818.00000000","l":"182.00000000"}]}}'
    )
    assert isinstance(frame, EventFrame)
    assert frame.subscription_id == 0
    assert decode_event(frame.event) == AccountPositionEvent(
        event_time=1728972148778,
        update_time=1728972148778,
        balances=[PositionBalance(asset="BTC", free="11818.00000000", locked="182.00000000")],
    )
    assert decode_event(b'{"e":"balanceUpdate","E":1573200697110,"a":"BTC","d":"100.00000000","T":1573200697068}') == (
        BalanceUpdateEvent(event_time=1573200697110, asset="BTC", delta="100.00000000", clear_time=1573200697068)
    )
    assert decode_event(b'{"e":"eventStreamTerminated","E":1728973001334}') == StreamTerminatedEvent(1728973001334)
    assert decode_event(b'{"e":"listStatus","E":1}') == OtherEvent(event_type="listStatus")


def test_server_shutdown_comes_without_a_subscription() -> None:
    frame = decode_frame(b'{"event":{"e":"serverShutdown","E":1770123456789}}')
    assert isinstance(frame, EventFrame)
    assert frame.subscription_id is None
    assert decode_event(frame.event) == ServerShutdownEvent(1770123456789)


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"id":"x"}', b'{"status":"200"}'])
def test_frames_that_are_neither_are_wire_errors(data: bytes) -> None:
    with pytest.raises(BinanceWireError):
        decode_frame(data)


def test_an_event_without_a_type_is_a_wire_error() -> None:
    frame = decode_frame(b'{"event":{"E":1}}')
    assert isinstance(frame, EventFrame)
    with pytest.raises(BinanceWireError):
        decode_event(frame.event)


def test_an_execution_report_missing_a_field_is_a_wire_error() -> None:
    with pytest.raises(BinanceWireError, match="undecodable event"):
        decode_event(b'{"e":"executionReport","E":1}')
