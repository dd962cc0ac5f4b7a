"""The errors of an execution client (``kernel.execution`` re-exports them): one family under
``VenueError``, itself under the one root ``TradekernelError``."""

from __future__ import annotations

from machines.errors import TradekernelError


class VenueError(TradekernelError):
    """Base class of every error raised by an execution client."""


class VenueSettingError(VenueError, ValueError):
    """An execution client setting out of range (the message names it)."""


class VenueUnavailable(VenueError):
    """No session with the venue: nothing was sent (or the answer was lost with the connection)."""


class VenueUnreachable(VenueUnavailable):
    """The venue could not be reached at start (a kernel that cannot start says so and exits)."""


class ReconnectFailed(VenueUnavailable):
    """A burst of (re)connection attempts failed; the client stays down until ``connect()``."""


class HandshakeFailed(VenueUnavailable):
    """The venue answered ``hello`` with an error other than a version refusal."""


class ReaderFailed(VenueUnavailable):
    """The session's reader task raised: the connection is treated as dead and recycled."""


class VenueVersionMismatch(VenueError):
    """The venue does not speak our protocol version; retrying cannot help."""


class VenueTimeout(VenueError, TimeoutError):
    """A request got no answer in time. The request may still have been served."""


class VenueRequestError(VenueError):
    """The venue answered a request with an ``error`` (``code``, ``message``)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


__all__ = [
    "HandshakeFailed",
    "ReaderFailed",
    "ReconnectFailed",
    "VenueError",
    "VenueRequestError",
    "VenueSettingError",
    "VenueTimeout",
    "VenueUnavailable",
    "VenueUnreachable",
    "VenueVersionMismatch",
]
