"""Opening a session with the paper venue: the WebSocket connect and the ``hello``/``welcome`` handshake.

Written once, used by both clients of the paper venue: the order side (``kernel.execution.VenueClient``)
and the market-data side (``kernel.feed.paper_source.PaperMarketData``, driven by ``FeedClient``). Each
client maps the failures below onto its own policy (retry, fail, count).

* ``open_socket`` connects (no proxy, the limits of ``SocketOptions``); websockets' own errors
  (``InvalidURI``, ``InvalidStatus``, ``InvalidHandshake``, ``OSError``, ``TimeoutError``) propagate.
* ``hello`` (with ``Credentials``: it carries the key, and a ``challenge`` answering it is signed
  and sent back as a second ``hello``, see docs/venue-protocol.md "Authentication"; a venue run
  ``--open`` welcomes the first) sends ``hello`` and reads until ``welcome`` within
  ``timeout``: frames that are not a valid message go to ``on_malformed`` and are skipped, other
  messages (a ``heartbeat``) are ignored. An ``error`` answer raises ``HelloRefused``
  (``VersionRefused`` for ``unsupported_version``, ``AuthRefused`` for ``auth_failed`` and
  ``not_authenticated``), as does a ``welcome`` of another protocol version; no answer in time
  raises ``TimeoutError``; a closed connection raises ``ConnectionClosed``.
* ``connect_paper`` is both, and closes the socket when the handshake fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from kernel import paper_protocol as protocol
from kernel.net import is_loopback
from machines.errors import TradekernelError

OnMalformed = Callable[[str | bytes, protocol.ProtocolError], None]
"""Told of each frame during the handshake that is not a valid venue message (then skipped)."""


class HelloRefused(TradekernelError):
    """The venue answered ``hello`` with an ``error`` (``code``, ``detail``)."""

    def __init__(self, code: str, detail: str, message: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(message)


class VersionRefused(HelloRefused):
    """The venue does not speak our protocol version; retrying cannot help."""


class AuthRefused(HelloRefused):
    """The venue refused our credentials (or wanted some and got none); retrying cannot help."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account's API key and secret; ``source`` says where they came from (for messages: the
    names of the environment variables, never their values). Neither value is ever shown."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    source: str = "the embedded venue"

    def signed_hello(self, client_name: str, nonce: str) -> protocol.Hello:
        """The ``hello`` answering a ``challenge`` of ``nonce``."""
        signature = protocol.sign(protocol.secret_key(self.secret), nonce, self.api_key)
        return protocol.Hello(
            version=protocol.VERSION, client=client_name, api_key=self.api_key, nonce=nonce, signature=signature
        )


NO_CREDENTIALS = (
    "the venue requires authentication and no API key is configured: set [venue] api_key_env and "
    "api_secret_env to the names of the environment variables holding the account's key and secret "
    "(tradekernel venue account add NAME --db VENUE.db prints them)"
)


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """The WebSocket limits of one connection (see ``websockets.asyncio.client.connect``)."""

    open_timeout: float = 5.0
    ping_interval: float | None = 10.0
    ping_timeout: float | None = 10.0
    close_timeout: float = 2.0
    max_size: int = 2**20
    max_queue: int = 64


async def open_socket(url: str, options: SocketOptions) -> ClientConnection:
    """The WebSocket opening handshake with ``url`` (never through a proxy); websockets' errors propagate.

    permessage-deflate is offered except to a loopback host (issue 17: on loopback it only costs
    CPU per frame and memory per connection; the frames are the same either way, see
    docs/architecture.md, Performance)."""
    return await connect(
        url,
        compression=None if _loopback(url) else "deflate",
        open_timeout=options.open_timeout,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        close_timeout=options.close_timeout,
        max_size=options.max_size,
        max_queue=options.max_queue,
        proxy=None,
    )


def _loopback(url: str) -> bool:
    try:
        return is_loopback(urlsplit(url).hostname or "")
    except ValueError:  # not a URL: websockets says why
        return False


def _ignore(frame: str | bytes, error: protocol.ProtocolError) -> None:
    del frame, error


async def _next(ws: ClientConnection, on_malformed: OnMalformed) -> protocol.VenueMessage:
    while True:
        frame = await ws.recv()
        try:
            return protocol.decode_venue(frame)
        except protocol.ProtocolError as exc:
            on_malformed(frame, exc)


def _refused(message: protocol.Error, credentials: Credentials | None) -> HelloRefused:
    detail = f"{message.code}: {message.message}"
    if message.code == "unsupported_version":
        return VersionRefused(message.code, detail, f"venue refused version {protocol.VERSION}: {message.message}")
    if message.code in ("auth_failed", "not_authenticated"):
        if credentials is None:
            return AuthRefused(message.code, detail, f"{NO_CREDENTIALS}; the venue answered {detail}")
        return AuthRefused(message.code, detail, f"venue refused the API key of {credentials.source}: {detail}")
    return HelloRefused(message.code, detail, f"venue answered hello with {detail}")


async def hello(
    ws: ClientConnection,
    *,
    client_name: str,
    timeout: float,
    on_malformed: OnMalformed = _ignore,
    credentials: Credentials | None = None,
) -> protocol.Welcome:
    """Send ``hello`` (signed with ``credentials`` when given) and return the venue's ``welcome``
    (see the module docstring for the failures)."""
    api_key = "" if credentials is None else credentials.api_key
    first = protocol.Hello(version=protocol.VERSION, client=client_name, api_key=api_key)
    async with asyncio.timeout(timeout):
        await ws.send(protocol.encode(first).decode())
        while True:
            message = await _next(ws, on_malformed)
            if isinstance(message, protocol.Welcome):
                break
            if isinstance(message, protocol.Error):
                raise _refused(message, credentials)
            if isinstance(message, protocol.Challenge) and credentials is not None:
                await ws.send(protocol.encode(credentials.signed_hello(client_name, message.nonce)).decode())
    if message.version != protocol.VERSION:
        detail = f"unsupported_version: welcome of version {message.version}"
        raise VersionRefused(
            "unsupported_version", detail, f"venue speaks version {message.version}, we speak {protocol.VERSION}"
        )
    return message


async def connect_paper(
    url: str,
    *,
    client_name: str,
    options: SocketOptions,
    on_malformed: OnMalformed = _ignore,
    credentials: Credentials | None = None,
) -> tuple[ClientConnection, protocol.Welcome]:
    """Open a socket to the paper venue at ``url`` and shake hands; the socket is closed on any failure."""
    ws = await open_socket(url, options)
    try:
        welcome = await hello(
            ws,
            client_name=client_name,
            timeout=options.open_timeout,
            on_malformed=on_malformed,
            credentials=credentials,
        )
        return ws, welcome
    except BaseException:
        await ws.close()
        raise
