"""The paper venue's authentication (``docs/venue-protocol.md``, "Authentication").

On a venue that authenticates (``VenueConfig.authenticate``) a client's first ``hello`` carries its
``api_key`` only; the venue answers with a ``challenge`` holding a fresh random nonce for this
connection. The client sends ``hello`` again with the key, the nonce and
``paper_protocol.sign(secret_key(secret), nonce, api_key)``; ``Gate.check`` looks the key up in the
venue's ``accounts`` table (``storage.venue_accounts``, opened per look-up: an account added or
revoked while the venue runs counts at once), recomputes the signature from the stored
``secret_hash`` and compares in constant time (``hmac.compare_digest``). On success the connection
acts for that account (``Connection.account``); on failure the venue answers ``auth_failed`` and
closes the connection. Anything but ``hello`` before that is refused with ``not_authenticated``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets

from kernel.paper_protocol import VERSION, Challenge, ClientMessage, Error, Hello, encode, secret_key, sign
from kernel.venue.connection import LOCAL_ACCOUNT, Connection
from storage.venue_accounts import VenueAccounts, new_credentials

log = logging.getLogger(__name__)

NONCE_BYTES = 24
"""Random bytes in a challenge's nonce (URL-safe base64 text)."""
CLOSE_AUTH_FAILED = 1008
"""The WebSocket close code after ``auth_failed`` (policy violation)."""
HELLO_TIMEOUT_S = 10.0
"""How long a connection may stay without an authenticated ``hello`` before it is closed (1008):
a silent connection must not hold one of the venue's connection slots for good."""


class Gate:
    """Authenticates the connections of a venue against the accounts of its store file ``path``."""

    def __init__(self, path: str, hello_timeout_s: float = HELLO_TIMEOUT_S) -> None:
        self.path = path
        self.hello_timeout_s = hello_timeout_s
        self._closing: set[asyncio.Task[None]] = set()

    def watch(self, conn: Connection) -> asyncio.TimerHandle:
        """Close ``conn`` (1008) unless it authenticates within ``hello_timeout_s``; cancel the
        returned handle when the connection ends."""
        return asyncio.get_running_loop().call_later(self.hello_timeout_s, self._expire, conn)

    def _expire(self, conn: Connection) -> None:
        if conn.authenticated or not conn.open:
            return
        why = f"no authenticated hello within {self.hello_timeout_s:g} s"
        log.info("venue closes connection %s: %s", conn.ws.id, why)
        task = asyncio.ensure_future(conn.ws.close(CLOSE_AUTH_FAILED, why))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    def challenge(conn: Connection) -> Challenge:
        """A fresh nonce for ``conn`` (kept on it) and the ``challenge`` carrying it."""
        conn.nonce = secrets.token_urlsafe(NONCE_BYTES)
        return Challenge(nonce=conn.nonce)

    async def admit(self, conn: Connection, message: ClientMessage) -> bool:
        """True when ``message`` may be served on ``conn``: it is authenticated, or ``message`` is
        the ``hello`` that authenticates it (or one of another version, answered as usual).
        Otherwise a ``challenge`` is sent (a ``hello`` with a key but no signature yet), or the
        refusal: ``not_authenticated`` (the connection stays), or ``auth_failed`` and the
        connection is closed."""
        if conn.authenticated:
            return True
        if not isinstance(message, Hello):
            tag = str(type(message).__struct_config__.tag)
            ref = str(getattr(message, "id", "") or tag)
            refused = f"{tag} refused: send an authenticated hello first"
            conn.send(Error(code="not_authenticated", message=refused, ref=ref))
            return False
        if message.version != VERSION:
            return True
        if message.api_key and not message.signature and not message.nonce:
            conn.send(self.challenge(conn))  # sign this, then say hello again
            return False
        refusal = self.check(conn, message)
        if refusal is None:
            return True
        log.warning("venue refused a hello (connection %s): %s", conn.ws.id, refusal)
        await conn.ws.send(encode(Error(code="auth_failed", message=refusal, ref="hello")).decode())
        await conn.ws.close(CLOSE_AUTH_FAILED, "authentication failed")
        return False

    def check(self, conn: Connection, hello: Hello) -> str | None:
        """Authenticate ``conn`` by ``hello`` (then ``None``), or why it is refused."""
        if not hello.api_key:
            return "this venue requires authentication: hello carries no api_key (see docs/venue-protocol.md)"
        with VenueAccounts.open(self.path) as accounts:
            account = accounts.by_key(hello.api_key)
        if account is None:
            return "unknown api_key: no account holds this key"
        if account.revoked:
            return f"the api_key of account {account.name!r} is revoked"
        if not conn.nonce or not hmac.compare_digest(hello.nonce.encode(), conn.nonce.encode()):
            return "wrong nonce: hello must sign the nonce of this connection's challenge"
        expected = sign(account.secret_hash, conn.nonce, hello.api_key)
        if not hmac.compare_digest(expected.encode(), hello.signature.encode()):
            return f"wrong signature for the api_key of account {account.name!r} (is the secret right?)"
        conn.account, conn.authenticated, conn.nonce = account.name, True, ""
        return None

    def local_credentials(self, now_ms: int) -> tuple[str, str]:
        """Fresh credentials of the ``local`` account (created if missing): ``(api_key, secret)``.

        For the embedded venue, which hands them to its in-process kernel: the secret is only
        returned (never stored, printed or logged); each call replaces the account's previous key.
        """
        api_key, secret = new_credentials()
        with VenueAccounts.open(self.path) as accounts:
            accounts.rekey(LOCAL_ACCOUNT, api_key, secret_key(secret), now_ms)
        return api_key, secret
