"""``BinanceConnection``: a signed, kept-up session with Binance's WebSocket API for one symbol.

The part of the execution client that ``tradekernel venue check`` also uses: connecting (the
server clock measured and the user data stream subscribed on every new connection), signing
(``timestamp`` on the server's clock, ``recvWindow``; a -1021 re-measures the clock and sends the
request once more: Binance did not execute it), and the account and symbol queries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec

from kernel.binance import wire
from kernel.binance.clock import ServerClock
from kernel.binance.errors import BinanceTimestampError
from kernel.binance.ratelimits import RateLimitTracker
from kernel.binance.session import Json, WsApiSession
from kernel.binance.signing import Signer, signed_params
from kernel.clock import wall_ms
from kernel.paper_protocol import Balance

log = logging.getLogger(__name__)


class SymbolInfo(msgspec.Struct, frozen=True, rename="camel"):
    """A symbol of ``exchangeInfo``: its assets, status and filters (kept as given)."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    filters: list[dict[str, Any]] = msgspec.field(default_factory=list)


class _ExchangeInfo(msgspec.Struct, frozen=True):
    symbols: list[SymbolInfo]


class BinanceConnection:
    """A WebSocket API session for ``symbol`` signed for ``api_key`` with ``signer``; ``now_ms`` is
    the local wall clock, ``request_timeout`` bounds every request; ``subscribe`` says whether each
    new connection subscribes to the user data stream (the execution client does)."""

    def __init__(
        self,
        ws_api_url: str,
        symbol: str,
        api_key: str,
        signer: Signer,
        *,
        recv_window_ms: int = 5000,
        request_timeout: float = 10.0,
        now_ms: Callable[[], int] = wall_ms,
        subscribe: bool = True,
        session_options: dict[str, Any] | None = None,
    ) -> None:
        self.symbol = symbol
        self.instruments = [symbol]
        self._api_key = api_key
        self._signer = signer
        self.recv_window_ms = recv_window_ms
        self.request_timeout = request_timeout
        self._now_ms = now_ms
        self._subscribe = subscribe
        self.clock = ServerClock()
        self.rate_limits = RateLimitTracker()
        """The ``rateLimits`` Binance reported, and the orders sent since (``ORDERS`` counted locally)."""
        self.ws_api = WsApiSession(
            ws_api_url,
            on_open=self._on_open,
            on_event=self._on_event,
            now_ms=self.server_now_ms,
            **(session_options or {}),
        )
        self.last_balances: list[Balance] | None = None
        self.account: wire.AccountStatus | None = None

    def server_now_ms(self) -> int:
        """Binance's time now, by the measured offset of its clock."""
        return self.clock.now(self._now_ms())

    @property
    def connected(self) -> bool:
        """True while the connection is up (and the user data stream subscribed)."""
        return self.ws_api.connected

    @property
    def session(self) -> str | None:
        """A name for the current session (the status shows it), ``None`` while down."""
        return f"binance-ws-api-{self.generation}" if self.connected else None

    @property
    def generation(self) -> int:
        """Sessions established so far."""
        return self.ws_api.generation

    def start(self) -> None:
        """Connect in the background (and keep reconnecting)."""
        self.ws_api.start()

    async def connect(self) -> None:
        """Start and wait for the first session."""
        self.ws_api.start()
        await self.ws_api.wait_connected(after=self.ws_api.generation if self.connected else 0)

    async def wait_connected(self, after: int = 0) -> int:
        """Wait for a session with ``generation > after``; return its generation."""
        return await self.ws_api.wait_connected(after)

    async def close(self) -> None:
        """Close the connection and stop reconnecting. Idempotent."""
        await self.ws_api.close()

    async def _on_open(self, session: WsApiSession) -> None:
        """A new connection: measure the server clock, subscribe to the user data stream."""
        del session
        await self.sync_clock(during_open=True)
        if self._subscribe:
            await self._signed("userDataStream.subscribe.signature", {}, during_open=True)

    async def _on_event(self, event: wire.UserEvent) -> None:
        """A user data event (the execution client handles them)."""
        del event

    async def sync_clock(self, *, during_open: bool = False) -> int:
        """Ask ``time`` and feed the server clock; return the offset in ms."""
        sent = self._now_ms()
        response = await self.ws_api.request("time", None, self.request_timeout, during_open=during_open)
        server = wire.decode_result(response, wire.ServerTime).server_time
        self.clock.sample(sent, server, max(sent, self._now_ms()))
        return self.clock.offset_ms

    async def _signed(self, method: str, params: Json, *, during_open: bool = False) -> wire.Response:
        """A SIGNED request; after a -1021 the clock is measured again and the request sent once more."""
        for attempt in (1, 2):
            signed = signed_params(
                params, self._api_key, self._signer, self.clock.now(self._now_ms()), self.recv_window_ms
            )
            try:
                response = await self.ws_api.request(method, signed, self.request_timeout, during_open=during_open)
                self.rate_limits.observe(response.rate_limits, self.server_now_ms())
                return response
            except BinanceTimestampError:
                if attempt == 2:
                    raise
                log.warning("%s: timestamp outside recvWindow (-1021); resyncing the server clock", method)
                self.clock.reset()
                await self.sync_clock(during_open=during_open)
        raise AssertionError("unreachable")  # pragma: no cover

    async def account_status(self) -> wire.AccountStatus:
        """``account.status``: permissions (``can_trade``, ``can_withdraw``) and balances."""
        response = await self._signed("account.status", {"omitZeroBalances": True})
        self.account = wire.decode_result(response, wire.AccountStatus)
        return self.account

    async def symbol_info(self, *, during_open: bool = False) -> SymbolInfo | None:
        """The symbol's ``exchangeInfo`` (assets, status, filters); ``None`` when Binance does not list it."""
        response = await self.ws_api.request(
            "exchangeInfo", {"symbol": self.symbol}, self.request_timeout, during_open=during_open
        )
        found = [s for s in wire.decode_result(response, _ExchangeInfo).symbols if s.symbol == self.symbol]
        return found[0] if found else None
