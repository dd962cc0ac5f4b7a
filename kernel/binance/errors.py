"""Errors of the Binance spot client: ``BinanceError`` and its families.

Binance answers a failed request with ``status`` (HTTP-like: 400, 403, 409, 418, 429, 5xx) and an
``error`` object ``{code, msg, data?}``. ``error_of`` turns that into the narrowest class below, so
callers can tell "slow down" (``BinanceRateLimited``), "stop" (``BinanceBanned``), "resync the
clock" (``BinanceTimestampError``), "the keys are wrong" (``BinanceAuthError``), "the order is not
there" (``BinanceUnknownOrder``) and "we do not know whether it was done" (``BinanceUnknownOutcome``)
apart. Local problems (a key that does not load, a value that cannot be signed, a frame that does
not decode) carry ``code`` 0.
"""

from __future__ import annotations

from kernel.execution import VenueError

TOO_MANY_REQUESTS = -1003
TOO_MANY_ORDERS = -1015
UNEXPECTED_RESPONSE = -1006
TIMEOUT = -1007
INVALID_MESSAGE = -1013
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FORMAT = -2014
REJECTED_API_KEY = -2015
CANCEL_REPLACE_PARTIALLY_FAILED = -2021
CANCEL_REPLACE_FAILED = -2022
ORDER_ARCHIVED = -2026
ORDER_AMEND_REJECTED = -2038

DUPLICATE_ORDER_MESSAGE = "Duplicate order sent."
"""The matching engine's message (with -2010) when the ``newClientOrderId`` is already an open order's."""
UNKNOWN_ORDER_MESSAGE = "Unknown order sent."
"""The matching engine's message (with -2011 or -2038) when it has no such working order."""

AUTH_CODES = frozenset({INVALID_SIGNATURE, BAD_API_KEY_FORMAT, REJECTED_API_KEY})
"""Codes saying the key or the signature is not accepted: retrying cannot help."""
OUTCOME_UNKNOWN_CODES = frozenset({UNEXPECTED_RESPONSE, TIMEOUT})
"""Codes saying the request may or may not have been executed (query before acting again)."""


class BinanceError(VenueError):
    """Root of every error of ``kernel.binance``: Binance's ``code`` (0 for a local problem) and ``msg``."""

    def __init__(self, code: int, msg: str, status: int = 0) -> None:
        self.code = code
        self.msg = msg
        self.status = status
        super().__init__(f"{code}: {msg}" if code else msg)


class BinanceKeyError(BinanceError, ValueError):
    """A signing key that cannot be used (empty secret, unreadable or non-Ed25519 PEM, wrong password)."""

    def __init__(self, msg: str) -> None:
        super().__init__(0, msg)


class BinanceParamError(BinanceError, TypeError):
    """A request parameter whose value cannot be rendered for signing (a float, a list, None, ...)."""

    def __init__(self, msg: str) -> None:
        super().__init__(0, msg)


class BinanceWireError(BinanceError, ValueError):
    """A frame or a field from Binance that does not decode, or a value outside the documented enums."""

    def __init__(self, msg: str) -> None:
        super().__init__(0, msg)


class BinanceRateLimited(BinanceError):
    """Status 429: a request or order rate limit was hit; nothing was executed.

    ``retry_after_ms`` is Binance's ``retryAfter`` (an epoch time in ms, when a request may be sent
    again) or ``None`` when absent; ``server_time_ms`` is the ``serverTime`` that came with it (or None).
    """

    def __init__(
        self, code: int, msg: str, retry_after_ms: int | None = None, server_time_ms: int | None = None
    ) -> None:
        self.retry_after_ms = retry_after_ms
        self.server_time_ms = server_time_ms
        super().__init__(code, msg, 429)


class BinanceBanned(BinanceError):
    """Status 418: the IP is banned until ``until_ms`` (epoch ms; None when Binance gave no time)."""

    def __init__(self, code: int, msg: str, until_ms: int | None = None) -> None:
        self.until_ms = until_ms
        super().__init__(code, msg, 418)


class BinanceTimestampError(BinanceError):
    """-1021: the request's ``timestamp`` was outside ``recvWindow``; the server clock must be re-measured."""


class BinanceAuthError(BinanceError):
    """-1022, -2014, -2015 (or status 401/403 without a code): key, signature or permission refused."""


class BinanceUnknownOrder(BinanceError):
    """-2013, -2026, or -2011/-2038 with "Unknown order sent.": Binance has no such working order."""


class BinanceRejected(BinanceError):
    """The request was refused (400 with a code not covered above): nothing was executed."""


class BinanceUnknownOutcome(BinanceError):
    """Status 5xx, -1006 or -1007: the request may or may not have been executed (query, never resend)."""


def _int_or_none(data: object, key: str) -> int | None:
    if isinstance(data, dict):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def error_of(status: int, code: int, msg: str, data: object = None) -> BinanceError:
    """The narrowest ``BinanceError`` for a failed response's ``status`` and ``error`` (``code``,
    ``msg``, ``data``: the optional object holding ``retryAfter``/``serverTime``)."""
    if status == 418:
        return BinanceBanned(code, msg, _int_or_none(data, "retryAfter"))
    if status == 429 or code == TOO_MANY_ORDERS:
        return BinanceRateLimited(code, msg, _int_or_none(data, "retryAfter"), _int_or_none(data, "serverTime"))
    if status >= 500 or code in OUTCOME_UNKNOWN_CODES:
        return BinanceUnknownOutcome(code, msg, status)
    if code == INVALID_TIMESTAMP:
        return BinanceTimestampError(code, msg, status)
    if code in AUTH_CODES or (status in (401, 403) and not code):
        return BinanceAuthError(code, msg, status)
    if is_unknown_order(code, msg):
        return BinanceUnknownOrder(code, msg, status)
    return BinanceRejected(code, msg, status)


def is_unknown_order(code: int, msg: str) -> bool:
    """True when ``code``/``msg`` say Binance has no such working order (unknown, done or archived)."""
    if code in (NO_SUCH_ORDER, ORDER_ARCHIVED):
        return True
    return code in (CANCEL_REJECTED, ORDER_AMEND_REJECTED) and msg.strip().lower().startswith("unknown order")


def is_duplicate_order(code: int, msg: str) -> bool:
    """True when ``code``/``msg`` say the client order id is already an open order's (-2010
    "Duplicate order sent."): an earlier send of ours went through; query it, never resend."""
    return code == NEW_ORDER_REJECTED and msg.strip().lower().startswith("duplicate order")
