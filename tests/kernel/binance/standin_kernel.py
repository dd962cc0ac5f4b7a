"""A real ``kind = "binance"`` kernel against ``BinanceApiStandIn``, for end-to-end tests.

``StandinKernel(venue, directory)`` runs ``kernel.app.Kernel`` with ``[venue] kind = "binance"`` on
the stand-in's WebSocket API and ``[market] source = "binance"`` on its streams and REST, keys from
its own ``environ``; a ``Script`` strategy places, cancels and replaces what the test tells it
(``await sk.act(Place(...))``). Everything else is the kernel's own: risk (the tick and lot from
``exchangeInfo``), the journal, the order machine, the Binance client, reconciliation on start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from kernel.app import Kernel
from kernel.config import load
from kernel.strategy import Context, Intent, Strategy
from machines import ORDER, Entity
from machines.positions import Position
from storage.audit import AuditReader
from tests.poll import eventually
from tests.standins.binance_api import BinanceApiStandIn
from tests.standins.binance_api_engine import Order

API_KEY, SECRET = "h4StandinKey", "h4-standin-secret"
SYMBOL = "BTCUSDT"


class Script(Strategy):
    """Returns, at each ``on_timer``, the intents the test queued."""

    name = "script"

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.intents: list[Intent] = []

    def on_timer(self, ctx: Context) -> Iterable[Intent]:
        """The queued intents (then none)."""
        out, self.intents = self.intents, []
        return out


class StandinKernel:
    """A Binance kernel on ``venue`` with its journal in ``directory`` (``async with``); a second
    one on the same directory resumes that journal, as a restarted process would."""

    def __init__(self, venue: BinanceApiStandIn, directory: Path, *, timeout: float = 10.0) -> None:
        self.venue = venue
        self.directory = directory
        self.journal_path = str(directory / "kernel.db")
        self.timeout = timeout
        self.script = Script()
        self.kernel: Kernel | None = None
        self.exit_status: int | None = None
        self._task: asyncio.Task[int] | None = None
        self._socket_dir: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> StandinKernel:
        self._socket_dir = tempfile.TemporaryDirectory(prefix="tk-")
        overrides = {
            "kernel.db": self.journal_path,
            "kernel.durability": "normal",
            "kernel.status_view": "off",
            "kernel.cancel_on_stop": False,
            "kernel.stop_timeout_s": self.timeout,
            "kernel.control_socket": os.path.join(self._socket_dir.name, "k.sock"),
            "venue.kind": "binance",
            "venue.testnet": True,
            "venue.ws_api_url": self.venue.ws_api_url,
            "venue.instruments": [SYMBOL],
            "venue.api_key_env": "BN_KEY",
            "venue.api_secret_env": "BN_SECRET",
            "market.source": "binance",
            "market.instruments": [SYMBOL],
            "market.ws_url": self.venue.stream_url,
            "market.rest_url": self.venue.rest_url,
            "feed.stale_after_ms": 30_000,
        }
        config = load(None, overrides, {"BN_KEY": API_KEY, "BN_SECRET": SECRET})
        self.kernel = Kernel(config, strategy=self.script, timers=False)
        self._task = asyncio.create_task(self.kernel.run(), name="standin-kernel")
        try:
            await self.until(lambda: self.k.ready.is_set(), "the kernel to be ready")
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self, reason: str = "test finished") -> int:
        """Stop the kernel (open orders stay open: ``cancel_on_stop`` is off); its exit status."""
        try:
            if self._task is not None and self.kernel is not None:
                self.kernel.request_stop(reason, force=True)
                async with asyncio.timeout(self.timeout * 3):
                    self.exit_status = await self._task
                self._task = None
        finally:
            if self._socket_dir is not None:
                self._socket_dir.cleanup()
                self._socket_dir = None
        return -1 if self.exit_status is None else self.exit_status

    async def crash(self) -> None:
        """End the kernel as a crash would: its task cancelled mid-run (nothing of the stop
        sequence runs; the journal records the run as not stopped cleanly)."""
        try:
            if self._task is not None:
                self._task.cancel()
                async with asyncio.timeout(self.timeout):
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._task
                self._task = None
        finally:
            if self._socket_dir is not None:
                self._socket_dir.cleanup()
                self._socket_dir = None

    @property
    def k(self) -> Kernel:
        """The running kernel."""
        assert self.kernel is not None
        return self.kernel

    async def until(self, condition: Any, what: str, timeout: float | None = None) -> None:
        """Poll ``condition`` (bounded); fails early if the kernel stopped."""

        def check() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()
                raise AssertionError(f"the kernel stopped while waiting for {what}")
            return bool(condition())

        await eventually(check, what, self.timeout if timeout is None else timeout)

    async def act(self, *intents: Intent) -> None:
        """The strategy returns ``intents`` now; returns once they are journaled and handed to the client."""
        self.script.intents.extend(intents)
        await self.k.fire_timer()

    # -- looking ---------------------------------------------------------------------------------

    def order_ids(self) -> list[str]:
        """Client order ids of every order in the journal, oldest first."""
        with AuditReader(self.journal_path) as reader:
            return reader.created(ORDER.name)

    def order(self, coid: str) -> Entity:
        """The order as the kernel holds it (or as the journal does, once it ended)."""
        manager = self.k.manager
        assert manager is not None
        found = manager.orders.get(coid) or manager.journal.entity(ORDER, coid)
        assert found is not None, coid
        return found

    def state(self, coid: str) -> str:
        """The order's current state."""
        return str(self.order(coid).state)

    def position(self) -> Position:
        """The position the kernel folded from the journal's fills."""
        return self.k.portfolio.positions.get(SYMBOL)


def timeline(journal_path: str, coid: str) -> list[tuple[str, str]]:
    """The order's journaled ``(trigger, dest)`` pairs, in order."""
    with AuditReader(journal_path) as reader:
        return [(t["trigger"], t["dest"]) for t in reader.timeline(coid, ORDER.name)]


def journal_fills(journal_path: str, coid: str) -> list[tuple[int, Decimal, Decimal]]:
    """The order's journaled fills as ``(trade_id, qty, price)``."""
    with AuditReader(journal_path) as reader:
        rows = [f for f in reader.fills() if f["client_order_id"] == coid]
    return [(int(f["trade_id"]), f["qty"], f["price"]) for f in rows]


def venue_order(venue: BinanceApiStandIn, coid: str) -> Order:
    """The stand-in's newest order with client order id ``coid``."""
    found = venue.exchange.find(None, coid)
    assert found is not None, f"the stand-in has no order {coid}"
    return found


def venue_fills(venue: BinanceApiStandIn, coid: str) -> list[tuple[int, Decimal, Decimal]]:
    """The stand-in's trades of every order (every leg) that had client order id ``coid``, as
    ``(trade_id, qty, price)``."""
    order_ids = {o.order_id for o in venue.exchange.orders.values() if o.client_order_id == coid}
    return [
        (int(r["id"]), Decimal(r["qty"]), Decimal(r["price"]))
        for r in venue.exchange.trades
        if r["orderId"] in order_ids
    ]


def requests(venue: BinanceApiStandIn, method: str) -> int:
    """How many ``method`` requests the stand-in received."""
    return sum(1 for name, _ in venue.requests if name == method)


async def market_trade(venue: BinanceApiStandIn, price: Decimal, qty: Decimal, *, buyer_maker: bool) -> None:
    """Someone else trades ``qty`` at ``price`` on the stand-in: resting orders it goes through fill
    (by its qty); the execution reports go out."""
    venue.exchange._market_trade(venue.now_ms(), price, qty, buyer_maker=buyer_maker)
    await venue._flush()


def record_calls(venue: BinanceApiStandIn) -> list[tuple[str, str]]:
    """From now on, every request the stand-in serves as ``(method, client order id)``: its
    ``newClientOrderId``, else its ``origClientOrderId``, else ``""``."""
    calls: list[tuple[str, str]] = []
    call = venue.methods.call

    def recording(method: str, params: dict[str, Any], now_ms: int) -> Any:
        calls.append((method, str(params.get("newClientOrderId") or params.get("origClientOrderId") or "")))
        return call(method, params, now_ms)

    venue.methods.call = recording  # type: ignore[method-assign]
    return calls
