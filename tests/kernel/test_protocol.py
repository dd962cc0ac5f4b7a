"""The venue protocol codec: every message round-trips; bad frames give typed errors only."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel import execution
from kernel import paper_protocol as p
from kernel.feed._common import Invalid
from kernel.feed.errors import BookMisuse, FeedError, FeedMisuse
from kernel.feed.events import DecodeError
from kernel.feed.source import SessionFailed
from kernel.paper_session import HelloRefused, VersionRefused
from kernel.venue.errors import (
    OrderChangeRefused,
    SimulatorError,
    SimulatorSettingError,
    UnknownInstrument,
    UnknownOrder,
    VenueStateError,
)
from kernel.venue.marketdata import MarketDataError
from machines.errors import TradekernelError

D = Decimal
NEW = "new_order"
FILL = p.Fill(trade_id="F1", qty=D("0.5"), price=D("100.10"), fee=D("0.01"), fill_seq=3, ts_ms=7, client_order_id="c1")
SNAPSHOT = p.OrderSnapshot(
    client_order_id="c1",
    venue_order_id="V1",
    instrument="BTCUSDT",
    side="buy",
    order_type="limit",
    tif="gtc",
    qty=D("1"),
    price=D("100.10"),
    status="partially_filled",
    cum_qty=D("0.5"),
    leaves_qty=D("0.5"),
    fills=[FILL],
    duplicate_submits=2,
)

CLIENT_MESSAGES: list[p.Message] = [
    p.Hello(version=1, client="tradekernel/test"),
    p.Subscribe(instruments=["BTCUSDT"], channels=["trades"], id="s1"),
    p.NewOrder(client_order_id="c1", instrument="BTCUSDT", side="sell", qty=D("0.001"), price=D("39432.48")),
    p.NewOrder(client_order_id="c2", instrument="BTCUSDT", side="buy", qty=D("2"), order_type="market", tif="ioc"),
    p.CancelOrder(client_order_id="c1"),
    p.ReplaceOrder(client_order_id="c1", qty=D("3")),
    p.OrderStatusRequest(client_order_id="c1", id="q1"),
    p.OpenOrdersRequest(id="q2"),
    p.FillsSinceRequest(after=16, id="q3"),
    p.Ping(id="z"),
]
VENUE_MESSAGES: list[p.Message] = [
    p.Welcome(version=1, session="s-1", instruments=["BTCUSDT"]),
    p.Subscribed(instruments=["BTCUSDT"], channels=["trades", "quotes"], id="s1"),
    p.Trade(
        instrument="BTCUSDT",
        seq=1,
        trade_id="553287559",
        price=D("39432.48"),
        qty=D("0.000263"),
        taker_side="sell",
        ts_ms=1610064000278,
    ),
    p.Quote(instrument="BTCUSDT", seq=1, bid=D("1"), bid_qty=D("2"), ask=D("3"), ask_qty=D("4"), ts_ms=5),
    p.Heartbeat(ts_ms=9),
    p.Execution(
        client_order_id="c1",
        exec="trade",
        status="partially_filled",
        venue_order_id="V1",
        qty=D("1"),
        price=D("100.10"),
        cum_qty=D("0.5"),
        leaves_qty=D("0.5"),
        ts_ms=7,
        fill=FILL,
    ),
    p.Execution(
        client_order_id="c9",
        exec="cancel_rejected",
        status="rejected",
        venue_order_id="",
        qty=D(0),
        price=None,
        cum_qty=D(0),
        leaves_qty=D(0),
        ts_ms=7,
        reason="unknown order",
    ),
    p.OrderStatus(client_order_id="c1", order=SNAPSHOT, duplicate=True, id="q1"),
    p.OrderStatus(client_order_id="nope", order=None, id="q4"),
    p.OpenOrders(orders=[SNAPSHOT], id="q2"),
    p.Fills(fills=[FILL], id="q3"),
    p.Pong(id="z"),
    p.Error(code="invalid", message="qty must be positive", ref="new_order"),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=lambda m: type(m).__name__)
def test_client_messages_round_trip(message: p.Message) -> None:
    assert p.decode_client(p.encode(message)) == message


@pytest.mark.parametrize("message", VENUE_MESSAGES, ids=lambda m: type(m).__name__)
def test_venue_messages_round_trip(message: p.Message) -> None:
    frame = p.encode(message)
    assert p.decode_venue(frame) == message
    assert p.decode_venue(frame.decode()) == message  # text frames too


def test_decimals_travel_as_strings_and_keep_their_digits() -> None:
    wire = json.loads(p.encode(CLIENT_MESSAGES[2]))
    assert wire["type"] == "new_order"
    assert (wire["qty"], wire["price"]) == ("0.001", "39432.48")


def test_a_json_number_is_read_exactly_never_through_a_float() -> None:
    message = p.decode_client(b'{"type":"new_order","client_order_id":"c","instrument":"X","side":"buy","qty":0.1}')
    assert isinstance(message, p.NewOrder)
    assert message.qty == D("0.1")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    message = p.decode_client(b'{"type":"ping","id":"1","new_field":true}')
    assert message == p.Ping(id="1")


@pytest.mark.parametrize(
    ("frame", "code", "ref"),
    [
        (b"{", "malformed", ""),
        (b"not json", "malformed", ""),
        (b"", "malformed", ""),
        (b'{"type":"launch_rocket","id":"7"}', "unknown_type", "7"),
        (b'{"type":"nope"}', "unknown_type", "nope"),
        (b'{"no_type":1}', "invalid", ""),
        (b"[1,2]", "invalid", ""),
        (b'{"type":"new_order","client_order_id":"x"}', "invalid", "new_order"),
        (b'{"type":"new_order","client_order_id":"x","instrument":"A","side":"up","qty":"1"}', "invalid", "new_order"),
        (
            b'{"type":"new_order","client_order_id":"x","instrument":"A","side":"buy","qty":"abc"}',
            "invalid",
            "new_order",
        ),
        (b'{"type":"order_status","client_order_id":5,"id":"q"}', "invalid", "q"),
    ],
)
def test_bad_client_frames_give_typed_errors(frame: bytes, code: str, ref: str) -> None:
    with pytest.raises(p.ProtocolError) as bad:
        p.decode_client(frame)
    assert bad.value.code == code
    assert bad.value.ref == ref
    reply = bad.value.reply()
    assert (reply.code, reply.ref) == (code, ref)
    assert p.decode_venue(p.encode(reply)) == reply  # the reply itself is a valid message


def test_a_client_message_is_not_a_venue_message() -> None:
    with pytest.raises(p.ProtocolError) as bad:
        p.decode_venue(p.encode(p.Ping(id="1")))
    assert bad.value.code == "unknown_type"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_give_protocol_errors(frame: bytes) -> None:
    for decode in (p.decode_client, p.decode_venue):
        codes = set()
        try:
            decode(frame)
        except p.ProtocolError as exc:  # anything else escapes and fails the test
            codes.add(exc.code)
        assert codes <= {"malformed", "unknown_type", "invalid"}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "client_order_id", "qty", "price", "side", "instrument", "version"]),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.sampled_from(["new_order", "hello"])
        ),
    )
)
def test_arbitrary_json_objects_only_ever_give_protocol_errors(obj: dict[str, object]) -> None:
    codes = set()
    try:
        p.decode_client(json.dumps(obj).encode())
    except p.ProtocolError as exc:  # anything else escapes and fails the test
        codes.add(exc.code)
    assert codes <= {"unknown_type", "invalid"}


@pytest.mark.parametrize(
    ("error", "root", "builtin"),
    [
        (p.ProtocolError, TradekernelError, ValueError),
        (HelloRefused, TradekernelError, None),
        (VersionRefused, HelloRefused, None),
        (execution.VenueError, TradekernelError, None),
        (execution.VenueUnavailable, execution.VenueError, None),
        (execution.ReconnectFailed, execution.VenueUnavailable, None),
        (execution.HandshakeFailed, execution.VenueUnavailable, None),
        (execution.VenueVersionMismatch, execution.VenueError, None),
        (execution.VenueTimeout, execution.VenueError, TimeoutError),
        (execution.VenueRequestError, execution.VenueError, None),
        (execution.VenueSettingError, execution.VenueError, ValueError),
        (FeedError, TradekernelError, None),
        (DecodeError, FeedError, ValueError),
        (Invalid, FeedError, None),
        (BookMisuse, FeedError, ValueError),
        (FeedMisuse, FeedError, RuntimeError),
        (SessionFailed, FeedError, None),
        (SimulatorError, TradekernelError, None),
        (SimulatorSettingError, SimulatorError, ValueError),
        (UnknownOrder, SimulatorError, KeyError),
        (OrderChangeRefused, SimulatorError, ValueError),
        (UnknownInstrument, SimulatorError, ValueError),
        (VenueStateError, SimulatorError, RuntimeError),
        (MarketDataError, SimulatorError, ValueError),
    ],
)
def test_every_venue_error_has_one_root_and_keeps_its_builtin(
    error: type[Exception], root: type[Exception], builtin: type[Exception] | None
) -> None:
    assert issubclass(error, root)
    assert issubclass(error, TradekernelError)
    if builtin is not None:
        assert issubclass(error, builtin)


# -- bounds: nesting depth and frame size (issue 14, item 4) --------------------------------------


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_a_frame_nested_too_deeply_is_a_protocol_error(depth: int) -> None:
    frame = '{"type": "heartbeat", "ts_ms": 1, "x": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(p.ProtocolError, match=f"nested more than {p.MAX_DEPTH} deep") as caught:
        p.decode_venue(frame)
    assert caught.value.code == "malformed"


@pytest.mark.parametrize("depth", [9, 65, 1_000, 10_000])
def test_a_client_frame_is_bounded_tighter_depth_8_and_64_kib(depth: int) -> None:
    frame = '{"type": "ping", "id": "1", "x": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(p.ProtocolError, match="nested more than 8 deep") as caught:
        p.decode_client(frame)
    assert caught.value.code == "malformed"
    assert p.decode_client('{"type": "ping", "id": "1", "x": [[[[[[]]]]]]}') == p.Ping(id="1")
    big = b'{"type": "ping", "id": "1"}'.ljust(64 * 1024 + 1)
    with pytest.raises(p.ProtocolError, match="larger than 65536") as caught:
        p.decode_client(big)
    assert p.decode_client(big[: 64 * 1024]) == p.Ping(id="1")


ORDER = b'{"type": "new_order", "client_order_id": "c1", "instrument": "X", "side": "buy", '


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (b'"qty": "1e-30"', "qty"),
        (rb'"qty": "\u0661"', "qty"),  # a JSON escape of the Arabic-Indic one
        ('"qty": "\u0661"'.encode(), "qty"),  # the character itself, UTF-8
        (b'"qty": " 1_0 "', "qty"),
        (b'"qty": "NaN"', "qty"),
        (b'"qty": "-Infinity"', "qty"),
        (b'"qty": "-0.5"', "qty"),
        (b'"qty": 1e-19', "qty"),
        (b'"qty": "1E400"', "qty"),
        (b'"qty": "1e+31"', "qty"),
        (b'"qty": "1", "price": "0"', "price"),
        (b'"qty": "1", "price": "0.0000000000000000001"', "price"),
        (b'"qty": "1", "price": "' + b"9" * 41 + b'"', "price"),
    ],
)
def test_order_decimals_are_read_strictly_naming_the_field_and_order(fields: bytes, named: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_client(ORDER + fields + b"}")
    assert (caught.value.code, caught.value.ref) == ("invalid", "new_order")
    assert str(caught.value).startswith(f"new_order 'c1': {named}")
    replace = b'{"type": "replace_order", "client_order_id": "r1", ' + fields + b"}"
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_client(replace)
    assert (caught.value.code, caught.value.ref) == ("invalid", "replace_order")
    assert str(caught.value).startswith("replace_order 'r1': ")


def test_the_kernel_s_own_small_decimals_travel_as_it_encodes_them() -> None:
    """``str(Decimal)`` writes 0.0000001 as ``1E-7``: the venue must take what the kernel sends."""
    order = p.NewOrder(client_order_id="c", instrument="X", side="buy", qty=D("0.0000001"), price=D("0.00000000025"))
    assert b'"qty":"1E-7"' in p.encode(order)
    assert p.decode_client(p.encode(order)) == order
    replace = p.ReplaceOrder(client_order_id="c", qty=D("1E+1"), price=D("0.0000000010"))
    assert p.decode_client(p.encode(replace)) == replace


def test_plain_order_decimals_still_decode() -> None:
    message = p.decode_client(ORDER + b'"qty": "0.00100", "price": 39432.48}')
    assert isinstance(message, p.NewOrder)
    assert (message.qty, message.price) == (D("0.00100"), D("39432.48"))
    assert p.decode_client(b'{"type": "replace_order", "client_order_id": "r", "qty": 2}') == p.ReplaceOrder(
        client_order_id="r", qty=D(2)
    )


def test_nesting_within_the_bound_and_brackets_in_strings_are_fine() -> None:
    nested = '{"type": "heartbeat", "ts_ms": 7, "x": ' + "[" * 63 + "]" * 63 + "}"
    assert p.decode_venue(nested) == p.Heartbeat(ts_ms=7)
    quoted = '{"type": "heartbeat", "ts_ms": 8, "x": "' + "[" * 5_000 + '\\"{{\\\\"}'
    assert p.decode_venue(quoted) == p.Heartbeat(ts_ms=8)
    assert not p.nesting_exceeds(b"[" * 64 + b"]" * 64)
    assert p.nesting_exceeds(b"[" * 129 + b"]" * 129)
    assert p.nesting_exceeds(b'[1,{"a":' * 200 + b"}]" * 200)


def test_a_frame_larger_than_the_bound_is_a_protocol_error() -> None:
    frame = b'{"type": "heartbeat", "ts_ms": 1}' + b" " * p.MAX_FRAME_BYTES
    with pytest.raises(p.ProtocolError, match=f"larger than {p.MAX_FRAME_BYTES}") as caught:
        p.decode_venue(frame)
    assert caught.value.code == "malformed"
    fits = b'{"type": "heartbeat", "ts_ms": 1}'.ljust(p.MAX_FRAME_BYTES)
    assert p.decode_venue(fits) == p.Heartbeat(ts_ms=1)


def test_paging_fields_travel_and_a_version_1_request_or_answer_without_them_still_decodes() -> None:
    request = p.decode_client(b'{"type": "fills_since", "id": "7", "after": 16, "limit": 500}')
    assert request == p.FillsSinceRequest(after=16, id="7", limit=500)
    assert p.decode_client(b'{"type": "open_orders", "id": "8", "after": "r7-000009", "limit": 2}') == (
        p.OpenOrdersRequest(id="8", after="r7-000009", limit=2)
    )
    # A request of an older client: no limit (the venue's default page), no cursor.
    assert p.decode_client(b'{"type": "open_orders", "id": "8"}') == p.OpenOrdersRequest(id="8", after="", limit=None)
    answer = p.decode_venue(
        b'{"type": "fills_report", "id": "7", "fills": [], "more": true, "next": 516, "last_fill_seq": 900}'
    )
    assert answer == p.Fills(fills=[], id="7", more=True, next=516, last_fill_seq=900)
    older = p.decode_venue(b'{"type": "open_orders_report", "id": "8", "orders": []}')
    assert older == p.OpenOrders(orders=[], id="8", more=False, next="")
    assert json.loads(p.encode(p.OpenOrders(orders=[], id="8", more=True, next="b"))) == {
        "type": "open_orders_report",
        "orders": [],
        "id": "8",
        "more": True,
        "next": "b",
    }


def test_a_fills_since_cursor_beyond_64_bits_is_invalid_not_an_internal_error() -> None:
    """Found by the fuzz (issue 15): ``after`` 2**64 reached SQLite and raised ``OverflowError``."""
    with pytest.raises(p.ProtocolError) as caught:
        p.decode_client(b'{"type": "fills_since", "after": 18446744073709551616, "id": "f"}')
    assert (caught.value.code, caught.value.ref) == ("invalid", "f")
    top = p.decode_client(b'{"type": "fills_since", "after": 9223372036854775807, "id": "f"}')
    assert top == p.FillsSinceRequest(after=2**63 - 1, id="f")
