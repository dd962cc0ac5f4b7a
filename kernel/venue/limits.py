"""The paper venue's limits: connections in total and per account, open orders and order rate per account.

Bookkeeping only, no sockets and no clock reads: the server (``kernel.venue.server``) asks before
it serves and passes the venue clock's time. The limits are ``VenueConfig``'s (0 turns one off):

* ``max_connections``: connections open at once; one more is refused at the WebSocket handshake
  with HTTP 503 (``connection_refusal``), before any per-connection state exists.
* ``max_connections_per_account``: a connection counts against its account from its first frame
  (normally ``hello``: the account is known once the client said who it is); one over the limit
  is closed with code 1013 (try again later) and a reason naming the account and the limit.
* ``max_open_orders``: orders not done per account; a new order beyond it is answered with an
  ``execution`` ``rejected``, reason ``too_many_open_orders: ...``.
* ``order_rate``/``order_burst``: a token bucket per account (``order_burst`` tokens, refilled at
  ``order_rate`` per second); each ``new_order``, ``cancel_order`` and ``replace_order`` takes one.
  Without a token the request is answered with an ``error`` ``rate_limited`` carrying
  ``retry_after_ms`` (when one token will be there) and nothing is executed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from kernel.paper_protocol import CancelOrder, ClientMessage, Error, Execution, NewOrder, ReplaceOrder
from kernel.venue.connection import LOCAL_ACCOUNT, Connection
from kernel.venue.settings import VenueConfig

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013
"""The WebSocket close code of a connection over its account's limit (RFC 6455 registry)."""
TOKEN = 1000
"""One request's cost in the bucket, in thousandths of a token (integer arithmetic, never float)."""


class OrderLike(Protocol):
    """What the open-order bookkeeping reads of an order (``kernel.venue.matching.Order`` fits)."""

    @property
    def client_order_id(self) -> str: ...

    @property
    def done(self) -> bool: ...


@dataclass(slots=True)
class Bucket:
    """One account's order-rate bucket: ``milli`` thousandths of a token, as of ``at_ms``."""

    milli: int
    at_ms: int


class VenueLimits:
    """The venue's limit bookkeeping for one running venue."""

    def __init__(self, config: VenueConfig) -> None:
        self.config = config
        self._connections: dict[str, int] = {}
        self._open: dict[str, set[str]] = {}
        self._buckets: dict[str, Bucket] = {}
        self.refused: dict[str, int] = {"connections": 0, "account_connections": 0, "open_orders": 0, "rate": 0}
        """How many times each limit said no."""

    # -- connections ------------------------------------------------------------------------

    def admit(self, ws: ServerConnection, request: Request) -> Response | None:
        """The handshake's ``process_request``: over ``max_connections`` (the server's connections
        open now) the WebSocket is refused with HTTP 503 and the reason, before the venue
        allocates anything for it; ``None`` lets it open."""
        del request
        limit, open_now = self.config.max_connections, len(ws.server.connections)
        if not limit or open_now < limit:
            return None
        self.refused["connections"] += 1
        refusal = f"the venue has {open_now} connections open (limit {limit}); try again later"
        count = self.refused["connections"]
        if count == 1 or count % 1000 == 0:  # a flood of connections must not flood the log
            log.warning("connection refused at the handshake (%d so far): %s", count, refusal)
        return ws.respond(503, f"{refusal}\n")

    async def settle(self, conn: Connection) -> None:
        """Count ``conn`` against its account (after its first frame, again when its account
        changes); one over ``max_connections_per_account`` is closed with 1013 and the reason."""
        if conn.charged == conn.account or not conn.open:
            return
        self.release(conn)
        refusal = self.charge(conn.account)
        if refusal is None:
            conn.charged = conn.account
            return
        log.warning("connection %s closed: %s", conn.ws.id, refusal)
        conn.open = False
        await conn.ws.close(TRY_AGAIN_LATER, refusal)

    def charge(self, account: str) -> str | None:
        """Count one connection against ``account``; why not (it is full, nothing counted), or ``None``."""
        limit = self.config.max_connections_per_account
        held = self._connections.get(account, 0)
        if limit and held >= limit:
            self.refused["account_connections"] += 1
            return f"account {account!r} has {held} connections open (limit {limit}); try again later"
        self._connections[account] = held + 1
        return None

    def release(self, conn: Connection) -> None:
        """``conn`` no longer counts against its account (closed, or acting for another)."""
        account, conn.charged = conn.charged, None
        if account is None:
            return
        held = self._connections.get(account, 0) - 1
        if held > 0:
            self._connections[account] = held
        else:
            self._connections.pop(account, None)

    def connections(self, account: str) -> int:
        """Connections counted against ``account`` now."""
        return self._connections.get(account, 0)

    # -- open orders ------------------------------------------------------------------------

    def track(self, orders: Iterable[OrderLike]) -> None:
        """Orders just changed (or restored): keep each account's set of orders not done."""
        for order in orders:
            account = str(getattr(order, "account", "") or LOCAL_ACCOUNT)  # an order naming no account: local
            held = self._open.setdefault(account, set())
            if order.done:
                held.discard(order.client_order_id)
            else:
                held.add(order.client_order_id)

    def reset(self, orders: Iterable[OrderLike]) -> None:
        """Forget every open order and track ``orders`` (the book rebuilt from the store)."""
        self._open.clear()
        self.track(orders)

    def open_orders(self, account: str) -> int:
        """Orders of ``account`` not done."""
        return len(self._open.get(account, ()))

    def too_many_open(self, account: str) -> str | None:
        """The reject reason of a new order of ``account`` over ``max_open_orders``, or ``None``."""
        limit, held = self.config.max_open_orders, self.open_orders(account)
        if limit and held >= limit:
            self.refused["open_orders"] += 1
            return f"too_many_open_orders: account {account!r} has {held} open orders (limit {limit})"
        return None

    # -- order rate -------------------------------------------------------------------------

    def take(self, account: str, now_ms: int) -> int | None:
        """Take one token of ``account``'s bucket at ``now_ms``: ``None`` when taken, else the
        milliseconds until one will be there (nothing taken)."""
        rate, burst = self.config.order_rate, self.config.order_burst
        if not rate:
            return None
        full = burst * TOKEN
        bucket = self._buckets.get(account)
        if bucket is None:
            bucket = self._buckets[account] = Bucket(full, now_ms)
        elapsed = max(0, now_ms - bucket.at_ms)  # a clock stepping back refills nothing
        bucket.milli = min(full, bucket.milli + elapsed * rate)  # rate tokens/s = rate milli-tokens/ms
        bucket.at_ms = max(bucket.at_ms, now_ms)
        if bucket.milli >= TOKEN:
            bucket.milli -= TOKEN
            return None
        self.refused["rate"] += 1
        return -(-(TOKEN - bucket.milli) // rate)  # ceil: the token is whole when the wait is over

    def refuse(
        self, account: str, message: ClientMessage, now_ms: int, lookup: Callable[[str], object | None]
    ) -> Error | Execution | None:
        """The answer to an order request of ``account`` over its limits, or ``None`` (serve it;
        always for messages other than ``new_order``, ``cancel_order``, ``replace_order``).

        Takes a token first (every order request counts): without one, ``rate_limited``; then a new
        order beyond ``max_open_orders`` is rejected ``too_many_open_orders`` (unless ``lookup``
        finds its id at the venue: a duplicate is answered with the order, never refused here)."""
        if not isinstance(message, NewOrder | CancelOrder | ReplaceOrder):
            return None
        wait = self.take(account, now_ms)
        if wait is not None:
            cfg = self.config
            return Error(
                code="rate_limited",
                message=f"order rate limit: {cfg.order_rate} requests per second per account "
                f"(burst {cfg.order_burst}); retry after {wait} ms",
                ref=str(type(message).__struct_config__.tag),
                client_order_id=message.client_order_id,
                retry_after_ms=wait,
            )
        if not isinstance(message, NewOrder) or lookup(message.client_order_id) is not None:
            return None
        reason = self.too_many_open(account)
        if reason is None:
            return None
        zero = Decimal(0)
        return Execution(
            client_order_id=message.client_order_id,
            exec="rejected",
            status="rejected",
            venue_order_id="",
            qty=message.qty,
            price=message.price,
            cum_qty=zero,
            leaves_qty=zero,
            ts_ms=now_ms,
            reason=reason,
        )


__all__ = ["TOKEN", "TRY_AGAIN_LATER", "Bucket", "OrderLike", "VenueLimits"]
