"""What every decoder shares: JSON in, exact decimals, sane values, one typed error out.

A decoder's body works on the parsed JSON and raises ``Invalid`` (or lets a msgspec
``ValidationError`` escape from ``convert``); ``decode_with`` turns every failure into a
``DecodeError`` carrying the venue, the reason and a sample of the frame.

The common frames (trades, quotes, book updates) take a typed path first (``decode_typed``): one
``msgspec`` decode straight into tagged Structs whose decimal fields are ``DecimalText`` (short
plain text, read with one ``Decimal(text)``), no dict in between. Anything that path refuses (a
shape it does not take, a field it does not like, a value out of bounds) goes the general way
above, which accepts or refuses it and says why: the typed path only ever takes frames the general
one takes the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import msgspec

from kernel.feed.errors import FeedError
from kernel.feed.events import SAMPLE_CHARS, DecodeError, FeedEvent, Level, Venue
from kernel.paper_protocol import bound_frame
from machines.decimals import SHORT_BOUNDED, DecimalError, Sign, parse_decimal

T = TypeVar("T")

Frame = bytes | bytearray | memoryview | str
"""A WebSocket frame (or an HTTP body) as received."""

Id = Annotated[int, msgspec.Meta(ge=0)]
"""A non-negative integer: update ids, trade ids, sequences."""
Millis = Annotated[int, msgspec.Meta(ge=0)]
"""Integer milliseconds since the epoch."""
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
"""A symbol, product or channel name."""
Text = Annotated[str, msgspec.Meta(max_length=64)]
"""A short text field (client order ids, reasons, timestamps)."""

_json = msgspec.json.Decoder(float_hook=Decimal)
MAX_FRAME_BYTES = 2**24
"""The largest market-data frame (or HTTP body) decoded: 16 MiB."""
MAX_DEPTH = 32
"""The deepest nesting of arrays/objects a market-data frame may have (real ones have 5 at most)."""
QUICK_CHARS = MAX_FRAME_BYTES // 4
"""Text frames up to this many characters are within ``MAX_FRAME_BYTES`` (4 UTF-8 bytes a character at most)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Invalid(FeedError):
    """A frame that parsed as JSON but is not a valid message; the text is the reason."""


def sample(frame: Frame) -> str:
    """The first ``SAMPLE_CHARS`` characters of a frame, undecodable bytes escaped."""
    if isinstance(frame, str):
        return frame[:SAMPLE_CHARS]
    head = bytes(frame[: SAMPLE_CHARS * 4])
    return head.decode("utf-8", "backslashreplace")[:SAMPLE_CHARS]


def decode_with(venue: Venue, frame: Frame, body: Callable[[Any], list[FeedEvent]]) -> list[FeedEvent]:
    """Parse ``frame`` as JSON and hand it to ``body``; ``DecodeError`` for anything that fails.

    A frame larger than ``MAX_FRAME_BYTES`` or nested deeper than ``MAX_DEPTH`` is refused before
    it is parsed.
    """
    check_bounds(venue, frame)
    try:
        return body(_json.decode(frame))
    except msgspec.ValidationError as exc:
        reason = f"invalid message: {exc}"
    except msgspec.DecodeError as exc:
        reason = f"not JSON: {exc}"
    except RecursionError:
        reason = "not JSON: nested too deeply"
    except Invalid as exc:
        reason = str(exc)
    raise DecodeError(venue, reason, sample(frame))


def decode_typed(
    venue: Venue, frame: Frame, typed: Callable[[Frame], list[FeedEvent] | None], body: Callable[[Any], list[FeedEvent]]
) -> list[FeedEvent]:
    """``typed(frame)`` (one typed decode) when it takes the frame, else ``decode_with(venue, frame, body)``.

    ``typed`` returns ``None`` for a shape it does not take, or raises a msgspec error or ``Invalid``
    for a value it does not; the general path then decides, with its own reason.
    """
    if type(frame) is not str or len(frame) > QUICK_CHARS or frame.count("[") + frame.count("{") > MAX_DEPTH:
        check_bounds(venue, frame)  # else inside every bound: ``check_bounds``' own first test, inline
    try:
        events = typed(frame)
    except (msgspec.DecodeError, Invalid):  # ValidationError is a DecodeError
        events = None
    return decode_with(venue, frame, body) if events is None else events


def check_bounds(venue: Venue, frame: Frame) -> None:
    """``DecodeError`` when ``frame`` is larger than ``MAX_FRAME_BYTES`` or nested deeper than ``MAX_DEPTH``."""
    if isinstance(frame, str):
        # A character is at most 4 UTF-8 bytes, and text with few brackets cannot nest deep: the
        # common frame needs no byte copy to say so.
        if len(frame) <= QUICK_CHARS and frame.count("[") + frame.count("{") <= MAX_DEPTH:
            return
        data = frame.encode()
    else:
        data = bytes(frame)
    refused = bound_frame(data, max_bytes=MAX_FRAME_BYTES, max_depth=MAX_DEPTH)
    if refused is not None:
        raise DecodeError(venue, f"not JSON: {refused}", sample(frame))


def require_object(data: Any, what: str = "message") -> dict[str, Any]:
    """``data`` if it is a JSON object, else ``Invalid``."""
    if not isinstance(data, dict):
        raise Invalid(f"{what} is not a JSON object (got {json_type(data)})")
    return data


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "number"  # never called with an object


def convert(data: Any, kind: type[T]) -> T:
    """``data`` validated into ``kind`` (a msgspec Struct); ``msgspec.ValidationError`` if it is not."""
    return msgspec.convert(data, kind)


DecimalText = Annotated[str, msgspec.Meta(max_length=SHORT_BOUNDED, pattern=r"^[0-9]+(?:\.[0-9]+)?\Z")]
"""Short plain decimal text (``machines.decimals.SHORT_BOUNDED``: inside every bound), as the typed
path takes a decimal field: ``Decimal(text)`` reads it exactly, as ``parse_decimal`` would. Longer
or other text fails the typed decode, and the general path reads (or refuses) it."""


def positive_text(text: str) -> Decimal:
    """``DecimalText`` that must be greater than zero (a price, a traded size); ``Invalid`` for zero
    (the general path then names the field)."""
    value = Decimal(text)
    if not value:
        raise Invalid("zero")
    return value


_SHORT = SHORT_BOUNDED
_SHORT_PLAIN = re.compile(r"[0-9]{1,31}(?:\.[0-9]{1,29})?")
"""A ``Decimal`` (a JSON number decoded as one) whose text is short plain decimal text is inside
every bound, as ``machines.decimals.SHORT_BOUNDED`` says of text: returned as it is."""


def decimal(value: str | Decimal, field: str) -> Decimal:
    """A non-negative, finite decimal read exactly from a string (or a Decimal the JSON number became).

    Raises ``Invalid`` for text that is not a plain decimal, NaN, infinities, negatives (``-0`` too)
    magnitudes beyond 10**±30 and more than 40 digits (``machines.decimals.parse_decimal`` reads it).
    """
    # Short plain text takes parse_decimal's own fast path (machines.decimals.SHORT_BOUNDED).
    if type(value) is Decimal and value.is_finite() and not value.is_signed():  # a typed decode, a JSON number
        text = str(value)
        if len(text) <= _SHORT and _SHORT_PLAIN.fullmatch(text) is not None:
            return value
    if isinstance(value, Decimal) and not value.is_finite():  # a JSON number: its own message
        raise Invalid(f"{field}: not a finite number: {value}")
    try:
        result = parse_decimal(value, field, sign=Sign.any, plain_text=True, bounded=True)
    except DecimalError as exc:
        raise Invalid(str(exc)) from None
    if result.is_signed():
        raise Invalid(f"{field}: negative: {result}")
    return result


def price(value: str | Decimal, field: str = "price") -> Decimal:
    """A price: a decimal greater than zero."""
    result = decimal(value, field)
    if not result:
        raise Invalid(f"{field}: must be positive: {result}")
    return result


def size(value: str | Decimal, field: str = "qty") -> Decimal:
    """A size: a decimal, zero allowed (an empty side, a deleted level)."""
    return decimal(value, field)


def positive_size(value: str | Decimal, field: str = "qty") -> Decimal:
    """A size that must be greater than zero (a trade, a snapshot level)."""
    result = decimal(value, field)
    if not result:
        raise Invalid(f"{field}: must be positive: {result}")
    return result


def levels(pairs: Sequence[tuple[str | Decimal, str | Decimal]], field: str, *, snapshot: bool) -> tuple[Level, ...]:
    """Price levels validated: prices positive; sizes positive in a snapshot, zero allowed (delete)
    in an update."""
    check = positive_size if snapshot else size
    return tuple((price(p, f"{field} price"), check(q, f"{field} qty")) for p, q in pairs)


def iso_ms(text: str, field: str = "time") -> int:
    """An ISO 8601 time with a zone (``2021-04-17T16:43:37.056746Z``) as epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{field}: not an ISO 8601 time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise Invalid(f"{field}: time without a zone: {text[:40]!r}")
    delta = moment - _EPOCH  # normalised: only ``days`` may be negative; the floor in milliseconds
    millis: int = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    if millis < 0:
        raise Invalid(f"{field}: before 1970: {text[:40]!r}")
    return millis
