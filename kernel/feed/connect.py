"""How a feed connection opens and ends: the close codes, the two ways it fails, the opening itself.

``FeedClient`` (``kernel.feed.client``) drives the machine; this module turns what ``websockets``
raises into ``Dropped`` (retry after the machine's backoff) or ``Fatal`` (retrying cannot help).
"""

from __future__ import annotations

from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from kernel.feed.errors import FeedError
from kernel.net import redact_in
from kernel.paper_session import SocketOptions, open_socket

ABNORMAL_CLOSURE: Final = 1006
"""The close code reported when no close frame was exchanged (refused, timed out, dropped)."""
PROTOCOL_ERROR: Final = 1002
"""The close code the client uses when the venue broke the handshake."""
FATAL_HTTP_STATUSES: Final = frozenset({401, 403, 404})
"""Handshake refusals that retrying cannot fix (others, like 429 and 503, are retried)."""


class Dropped(FeedError):
    """The connection is gone (or never opened): retry after the machine's backoff."""

    def __init__(self, code: int, reason: str, close_reason: str = "protocol error") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason[:200]
        self.close_reason = close_reason


class Fatal(FeedError):
    """Retrying cannot help: fail the feed."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason[:200]
        self.code = code


async def open_connection(url: str, socket: SocketOptions) -> ClientConnection:
    """The WebSocket to ``url``; ``Fatal`` (a bad URL, HTTP 401/403/404) or ``Dropped`` (anything else)."""
    try:
        return await open_socket(url, socket)
    except InvalidURI as exc:
        raise Fatal(f"invalid url: {redact_in(str(exc), url)}") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in FATAL_HTTP_STATUSES:
            raise Fatal(f"handshake refused: HTTP {status}") from None
        raise Dropped(ABNORMAL_CLOSURE, f"handshake refused: HTTP {status}") from None
    except TimeoutError:  # before OSError: TimeoutError is one
        raise Dropped(ABNORMAL_CLOSURE, f"no handshake within open_timeout ({socket.open_timeout}s)") from None
    except (OSError, InvalidHandshake) as exc:
        raise Dropped(ABNORMAL_CLOSURE, f"connect failed: {exc!r}") from None


def close_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason to report: the side that closed first, else 1006."""
    if exc.rcvd is not None and (exc.sent is None or exc.rcvd_then_sent):
        return exc.rcvd.code, exc.rcvd.reason
    if exc.sent is not None:
        return exc.sent.code, exc.sent.reason
    return ABNORMAL_CLOSURE, "connection lost without a close frame"
