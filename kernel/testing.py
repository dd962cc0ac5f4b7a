"""Drive a strategy in pytest: a real kernel, a real paper venue on 127.0.0.1, a fake clock.

``KernelHarness`` starts a ``PaperVenue`` that plays nothing on its own (``autoplay=False``) and a
``Kernel`` running your strategy against it, with its journal in a temporary directory. You push
market data, move the strategy's clock and call its timer; each step waits until the kernel has
seen the event, journaled and sent what the strategy asked for, and the venue has answered::

    import pytest
    from decimal import Decimal as D
    from kernel.testing import KernelHarness

    @pytest.mark.asyncio
    async def test_quotes_around_the_mid(tmp_path):
        async with KernelHarness(MyStrategy(), tmp_path) as kh:
            await kh.quote(D("100.00"), D("100.10"))
            assert sorted(o.side for o in kh.open_orders()) == ["buy", "sell"]
            await kh.trade(D("99.00"), D("5"), "sell")   # trades through our bid: we are filled
            assert kh.position("BTCUSDT").qty == D("0.001")

The ``tradekernel_harness`` pytest fixture is a factory: put ``pytest_plugins = ["kernel.testing"]``
in your ``conftest.py``, then ``async with tradekernel_harness(MyStrategy()) as kh:``.

Time: ``ctx.now_ms`` (the strategy's clock) is ``kh.clock``, which moves only when told
(``await kh.timer(advance_ms=...)`` or ``kh.clock.advance(ms)``); the kernel's own timers (feed
staleness, health) use real monotonic time, so a test that needs no staleness must not sleep for
seconds. Everything is real but the clock: orders go through the order machine, the journal
(durability ``normal`` here, for speed) and the venue protocol; ``kh.journal_path`` can be read with
``storage.audit.AuditReader`` or ``tradekernel audit`` after (or during) the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from kernel.app import Kernel
from kernel.config import load
from kernel.errors import KernelError, UsageError
from kernel.strategy import OrderView, Strategy
from kernel.venue.server import PaperVenue, VenueConfig
from machines import ORDER
from machines.positions import Position
from storage.audit import AuditReader

PENDING = ("pending_new", "pending_cancel", "pending_replace")
START_MS = 1_700_000_000_000
HARNESS_KEY_ENV, HARNESS_SECRET_ENV = "TK_HARNESS_VENUE_KEY", "TK_HARNESS_VENUE_SECRET"
"""Where the harness puts the venue account's key and secret (in the kernel's own ``environ``)."""


class FakeClock:
    """Milliseconds since the epoch that move only when told: ``clock()`` returns ``now_ms``."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms`` milliseconds."""
        if ms < 0:
            raise UsageError("the clock never goes back")
        self.now_ms += ms


class HarnessTimeout(KernelError, AssertionError):
    """The kernel did not reach the expected point in time: names what it waited for."""


class HarnessNotRunning(KernelError, RuntimeError):
    """The harness was used outside its ``async with`` block."""


class KernelHarness:
    """A kernel running ``strategy`` against a paper venue, for one test (``async with``).

    ``directory`` holds the journal, the venue's store and the control socket. ``config`` sets
    kernel config keys by their dotted names (``{"kernel.cancel_on_stop": False}``). ``venue``
    passes ``VenueConfig`` fields (``fee_bps``, ``reject_rate``, ...; the venue's order rate limit is
    off unless ``order_rate`` is given: the harness clock moves only when told).
    """

    def __init__(
        self,
        strategy: Strategy,
        directory: str | os.PathLike[str],
        *,
        instruments: tuple[str, ...] = ("BTCUSDT",),
        config: dict[str, Any] | None = None,
        venue: dict[str, Any] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.strategy = strategy
        self.directory = Path(directory)
        self.instruments = instruments
        self.clock = FakeClock()
        self.timeout = timeout
        self.journal_path = str(self.directory / "kernel.db")
        self.venue_path = str(self.directory / "venue.db")
        self._config = dict(config or {})
        self._venue_options = dict(venue or {})
        self.venue: PaperVenue | None = None
        self.kernel: Kernel | None = None
        self.exit_status: int | None = None
        self._task: asyncio.Task[int] | None = None
        self._socket_dir: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> KernelHarness:
        self.venue = PaperVenue(
            self.venue_path,
            # Defaults the caller may override: a long heartbeat_s lets the feed go stale; the venue's
            # order rate is off (the clock moves only when told: a rate per second would starve bursts).
            VenueConfig(
                instruments=self.instruments,
                autoplay=False,
                **{"heartbeat_s": 0.5, "authenticate": True, "order_rate": 0, **self._venue_options},
            ),
            clock=self.clock,
        )
        await self.venue.start("127.0.0.1", 0)
        # The kernel authenticates as a real one would: the account's key and secret from the
        # environment it is given (here a mapping of its own, never os.environ).
        environ = dict(os.environ)
        if self.venue.gate is not None:
            environ[HARNESS_KEY_ENV], environ[HARNESS_SECRET_ENV] = self.venue.gate.local_credentials(START_MS)
        # A Unix socket path is limited to ~100 bytes; pytest's tmp_path can be longer.
        self._socket_dir = tempfile.TemporaryDirectory(prefix="tk-")
        overrides = {
            "kernel.db": self.journal_path,
            "kernel.durability": "normal",
            "kernel.status_view": "off",
            "kernel.control_socket": os.path.join(self._socket_dir.name, "k.sock"),
            "kernel.stop_timeout_s": self.timeout,
            "venue.url": self.venue.url,
            "venue.instruments": list(self.instruments),
            **(
                {"venue.api_key_env": HARNESS_KEY_ENV, "venue.api_secret_env": HARNESS_SECRET_ENV}
                if self.venue.config.authenticate
                else {}
            ),
            **self._config,
        }
        config = load(None, overrides, environ)
        self.kernel = Kernel(config, strategy=self.strategy, clock_ms=self.clock, timers=False)
        self._task = asyncio.create_task(self.kernel.run(), name="harness-kernel")
        await self._until(lambda: self.kernel is not None and self.kernel.ready.is_set(), "the kernel to be ready")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self, reason: str = "test finished") -> int:
        """Stop the kernel (cancelling open orders if configured) and the venue; the exit status."""
        try:
            if self._task is not None and self.kernel is not None:
                self.kernel.request_stop(reason)
                async with asyncio.timeout(self.timeout * 3):
                    self.exit_status = await self._task
                self._task = None
        finally:
            if self.venue is not None:
                await self.venue.stop()
            if self._socket_dir is not None:
                self._socket_dir.cleanup()
                self._socket_dir = None
        return self.exit_status if self.exit_status is not None else -1

    # -- driving --------------------------------------------------------------------------------

    async def quote(
        self,
        bid: Decimal,
        ask: Decimal,
        bid_qty: Decimal = Decimal(1),
        ask_qty: Decimal = Decimal(1),
        instrument: str | None = None,
    ) -> None:
        """The venue publishes a top-of-book quote; wait until the kernel has acted on it."""
        await self._market(
            "quote", lambda v: v.push_quote(instrument or self.instruments[0], bid, bid_qty, ask, ask_qty)
        )

    async def trade(
        self,
        price: Decimal,
        qty: Decimal,
        taker_side: Literal["buy", "sell"] = "buy",
        instrument: str | None = None,
    ) -> None:
        """The market trades (crossing resting orders fill); wait until the kernel has acted on it."""
        await self._market("trade", lambda v: v.push_trade(instrument or self.instruments[0], price, qty, taker_side))

    async def timer(self, advance_ms: int = 0) -> None:
        """Move the strategy's clock, call ``on_timer``, wait until its intents are settled."""
        kernel = self._kernel()
        self.clock.advance(advance_ms)
        await kernel.fire_timer()
        await self.settle()

    async def settle(self) -> None:
        """Wait until every journaled request is sent and the venue has answered each one."""
        kernel = self._kernel()
        async with asyncio.timeout(self.timeout):
            await kernel.wait_sent()
        await self._until(lambda: not any(o.state in PENDING for o in self.open_orders()), "pending orders to settle")

    async def _market(self, kind: str, push: Callable[[PaperVenue], Any]) -> None:
        kernel = self._kernel()
        assert self.venue is not None
        seen = kernel.metrics.feed_messages[kind]
        await push(self.venue)
        await self._until(lambda: kernel.metrics.feed_messages[kind] > seen, f"the {kind} to reach the kernel")
        await self.settle()

    async def _until(self, condition: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                while not condition():
                    if self._task is not None and self._task.done():
                        self._task.result()  # raises what stopped the kernel
                        raise HarnessTimeout(f"the kernel stopped while waiting for {what}")
                    await asyncio.sleep(0.002)
        except TimeoutError:
            raise HarnessTimeout(f"timed out after {self.timeout} s waiting for {what}") from None

    def _kernel(self) -> Kernel:
        if self.kernel is None:
            raise HarnessNotRunning("the harness is not running: use `async with KernelHarness(...)`")
        return self.kernel

    # -- looking ----------------------------------------------------------------------------------

    def open_orders(self) -> list[OrderView]:
        """Live orders, oldest first."""
        manager = self._kernel().manager
        if manager is None:
            return []
        return [OrderView.of(o) for o in manager.orders.values() if o.live]

    def orders(self) -> list[OrderView]:
        """Every order of this run (denied and done ones too), oldest first.

        Orders that ended have left the kernel's memory: they are read from the journal."""
        manager = self._kernel().manager
        if manager is None:
            return []
        with AuditReader(self.journal_path) as reader:
            ids = reader.created(ORDER.name, run=manager.journal.run_id)
        created = set(ids)
        ids = [*(i for i in manager.orders if i not in created), *ids]  # resumed from an earlier run first
        orders = (manager.orders.get(i) or manager.journal.entity(ORDER, i) for i in ids)
        return [OrderView.of(o) for o in orders if o is not None]

    def position(self, instrument: str | None = None) -> Position:
        """The position folded from the fills so far."""
        return self._kernel().portfolio.positions.get(instrument or self.instruments[0])

    @property
    def health(self) -> str:
        """The kernel's health state."""
        return str(self._kernel().health["kernel"].state)


try:  # the pytest fixture, when pytest is there (the test extra)
    import pytest
    import pytest_asyncio  # noqa: F401  (the fixture is used from asyncio tests)

    @pytest.fixture
    def tradekernel_harness(
        tmp_path: Path,
    ) -> Callable[..., contextlib.AbstractAsyncContextManager[KernelHarness]]:
        """A factory: ``async with tradekernel_harness(MyStrategy(), **options) as kh:`` (see ``KernelHarness``)."""

        @contextlib.asynccontextmanager
        async def start(strategy: Strategy, **options: Any) -> AsyncIterator[KernelHarness]:
            async with KernelHarness(strategy, tmp_path, **options) as harness:
                yield harness

        return start

except ImportError:  # pragma: no cover - pytest is only in the test extra
    pass
