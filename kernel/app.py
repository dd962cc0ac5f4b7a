"""The kernel process: its parts in one ``asyncio.TaskGroup``, started in order, stopped in reverse.

``Kernel(config).run()`` is what ``tradekernel run`` does. Start order (each step needs the one
before it):

1. open the journal (the writer lock: one kernel per database), retire what a previous run left
   live, restore the trading state, create this run's health entities (``kernel/bootstrap.py``);
2. start the embedded paper venue (``venue.url = "embedded"``; ``kernel/wiring.py``);
3. connect the venue session in the background (a venue not there yet is waited for); the order
   manager resumes every live order and resolves in-flight ones, and order entry stays paused
   until the session is reconciled (``kernel/venue_session.py``);
4. start the feed (without ``venue.instruments``: once the venue's first session named them);
   market events go to the strategy (``kernel/strategy_host.py``), whose intents go through the
   order flow (``kernel/order_flow.py``: gate, risk, journal, outbox);
5. the health monitor and trading driver (``kernel/health_monitor.py``, ``kernel/trading_driver.py``),
   the control socket, the HTTP endpoints, the status view (``kernel/views.py``).

Stopping (SIGINT, SIGTERM, ``tradekernel stop``, ``--duration``) runs in reverse: the strategy
gets no more callbacks, open orders are canceled (``cancel_on_stop``) and their acks awaited up to
``stop_timeout_s``, then the feed, endpoints, venue session and venue stop, the health entities end
``stopped`` and the journal is committed and closed, which records the run as stopped cleanly. A
second signal skips the waiting; the journal is still committed and closed.

``KernelParts`` (``kernel/parts.py``) holds the parts under their public names and the views over
them (gate facts, health observation, status snapshot); this module runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Unpack

from kernel import bootstrap, faults, wiring
from kernel.bootstrap import entity_id
from kernel.config import Config
from kernel.endpoints import EndpointThread
from kernel.execution import ReconnectFailed, VenueUnreachable
from kernel.exits import EXIT_FAILED, EXIT_OK
from kernel.health_monitor import HealthMonitor, thresholds_of
from kernel.net import redact_url
from kernel.order_flow import OrderFlow
from kernel.paper_defaults import TradingRules
from kernel.parts import KernelParts, PartsOptions
from kernel.stop_sequence import Step, StopRequest, cancel_open_orders, close_in_reverse, some
from kernel.trading_driver import OPERATOR_COMMANDS, TradingDriver
from kernel.venue_session import VenueSession
from machines import TransitionRefused
from machines.health import Observation
from storage import outage as storage_outage
from storage.errors import JournalWriteError
from storage.schema import LOOP_BUSY_TIMEOUT_S

log = logging.getLogger(__name__)

BINANCE_START_S = 20.0
"""How long a Binance kernel waits at start for the trading rules and for its first session."""


class Kernel(KernelParts):
    """One trading kernel. Build with a ``Config``; ``await run()`` returns the exit status.

    ``strategy`` overrides the configured one (tests pass an instance). ``timers=False`` leaves
    ``on_timer`` to the caller (``fire_timer()``), for tests that drive time themselves.
    ``install_signals`` makes SIGINT/SIGTERM stop it (the CLI does; tests do not).
    """

    def __init__(
        self,
        config: Config,
        *,
        timers: bool = True,
        status_printer: Callable[[Kernel], None] | None = None,
        **options: Unpack[PartsOptions],
    ) -> None:
        super().__init__(config, **options)
        self.timers = timers
        self.status_printer = status_printer
        self.timer_interval_ms = wiring.timer_interval_ms(config, self.strategy)
        self.ready = asyncio.Event()
        """Set once order entry first opens and ``on_start`` has run."""
        self.stopped = asyncio.Event()
        self.orders_left_open: list[str] = []
        self.exit_status: int | None = None
        """Set once ``run()`` has finished (the journal closed)."""
        self._tasks: list[asyncio.Task[Any]] = []
        self.endpoints: EndpointThread | None = None

    @property
    def started_tasks(self) -> int:
        """How many long-running tasks were started (0 until start-up got that far)."""
        return len(self._tasks)

    # -- public -----------------------------------------------------------------------------------

    def request_stop(self, reason: str, *, force: bool = False) -> None:
        """Begin the stop sequence (idempotent); ``force`` skips waiting for cancel acks."""
        self.stops.stop(reason, force=force)

    async def fire_timer(self) -> None:
        """Call the strategy's ``on_timer`` now and execute its intents."""
        self.host.timer()
        await self.outbox.join()

    async def wait_sent(self) -> None:
        """Wait until every journaled request has been handed to the venue session."""
        await self.outbox.join()

    async def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control-socket command: ``status``, ``stop``, ``halt``, ``reduce``, ``arm``."""
        command = request["command"]
        if command == "status":
            return {"ok": True, "status": self.status()}
        if command == "stop":
            reason = str(request.get("reason") or "operator: tradekernel stop")
            self.request_stop(reason, force=bool(request.get("force")))
            return {"ok": True, "stopping": True, "reason": reason}
        if command in OPERATOR_COMMANDS and self.driver is not None:
            return self.driver.operator(command, request)
        return {"ok": False, "error": f"unknown command {command!r} (known: status, stop, halt, reduce, arm)"}

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; return the exit status (0 clean, 1 stopped but needs attention).

        Raises what prevents starting: ``JournalError`` (missing, locked, corrupt journal),
        ``ControlError``, ``RemoteBindRefused``, ``OSError`` (address in use). An unexpected
        error while running propagates too; the journal then keeps the run open, so the next
        start reports it as a crash and resumes from the journal.
        """
        exit_status = EXIT_OK
        clean = False
        try:
            self._open_journal()
            async with asyncio.TaskGroup() as tasks:
                self.stops.install()
                await self._start(tasks)
                await self.stops.event.wait()
                exit_status = await self._shutdown()
                await self._stop_tasks()
            clean = True
        except BaseExceptionGroup as group:
            clean = not self.ready.is_set()  # failing to start is not a crash: nothing traded
            if len(group.exceptions) == 1:  # one failure: raise it as itself, not wrapped by the TaskGroup
                raise group.exceptions[0] from group
            raise
        except BaseException:
            clean = not self.ready.is_set()
            raise
        finally:
            # The handlers stay until the journal is closed: a signal now only skips the waiting.
            # Restored to the defaults earlier, a second Ctrl-C raised KeyboardInterrupt here and
            # the journal never recorded the stop.
            await self._close_everything()
            bootstrap.close_journal(self.journal, self.health, clean, self.monotonic_ms())
            if self.shipper is not None:  # after the close: its last pass ships the run's end
                await asyncio.to_thread(self.shipper.stop, self.config.ship.stop_timeout_s)
            self.exit_status = exit_status
            self.stopped.set()
            self.stops.remove()
        return exit_status

    def _spawn(self, tasks: asyncio.TaskGroup, coro: Any, name: str) -> None:
        self._tasks.append(tasks.create_task(coro, name=name))

    def _open_journal(self) -> None:
        journal = bootstrap.open_journal(self.config, self.metrics.on_commit)
        self.journal = journal
        self.started_ms = self.clock_ms()
        boot = bootstrap.prepare(journal, self.monotonic_ms())
        # From here commits run on the event loop: a foreign lock may hold it this long per attempt,
        # then the commit fails as an outage (retried by the health monitor) instead of freezing it.
        journal.bound_busy_wait(LOOP_BUSY_TIMEOUT_S)
        if faults.STALL is not None:
            journal.in_commit = faults.stall_commit
        self.previous_run = boot.previous_run
        self.driver = TradingDriver(journal, boot.trading, self.portfolio, now_ms=self.monotonic_ms, wake=self.wake)
        outage = storage_outage.read(journal.path)
        if outage is not None:  # an earlier process was halted by a journal outage it could not record
            self._record_unrecorded_outage(outage)
        self.monitor = HealthMonitor(
            journal, boot.health, thresholds_of(self.config), self.metrics, self._changed, now_ms=self.monotonic_ms
        )

    def _record_unrecorded_outage(self, outage: str) -> None:
        """Halt (``journal_failed``) as the journal would say had it recorded the outage; the halt
        completes once the venue session is reconciled (docs/recovery.md)."""
        assert self.journal is not None
        assert self.driver is not None
        reason = f"an earlier run's journal outage was never recorded ({outage or 'no reason left'})"
        log.warning("%s: trading halts; reconcile, check, then `tradekernel arm`", reason)
        with contextlib.suppress(TransitionRefused):
            self.driver.fire("journal_failed", reason=reason)
        if self.journal.failure is None:
            storage_outage.clear(self.journal.path)

    async def _start(self, tasks: asyncio.TaskGroup) -> None:
        cfg, journal, driver, monitor = self.config, self.journal, self.driver, self.monitor
        assert journal is not None
        assert driver is not None
        assert monitor is not None
        if wiring.uses_embedded_venue(cfg):
            self.venue = await wiring.start_embedded_venue(cfg, journal)
            self.venue_url = self.venue.url
            self.limits = wiring.limits_with_rules(self.limits, self.venue.rules)
        elif cfg.venue.kind == "binance":
            self.venue_url = cfg.venue.binance_ws_api_url
            self.limits = wiring.limits_with_rules(self.limits, await self._binance_rules())
        else:
            self.venue_url = cfg.venue.url
        self.credentials = wiring.venue_credentials(cfg, self.venue)
        self.client = client = wiring.execution_client(cfg, self.venue_url, self.credentials)
        self.manager = manager = wiring.order_manager(journal, client, cfg)
        self.metrics.fills = self.portfolio.refold(bootstrap.restore_positions(manager))
        self.host.attach(manager)
        self.session = session = VenueSession(
            journal,
            client,
            manager,
            status_timeout=cfg.venue.status_timeout_s,
            now_ms=self.monotonic_ms,
            stopping=lambda: self.stopping,
            wake=self.wake,
        )
        self.flow = flow = OrderFlow(
            manager,
            journal,
            self.outbox,
            self.portfolio,
            self.metrics,
            self.limits,
            entry_block=self.entry_block,
            trading_state=lambda: driver.state,
            now_ms=self.monotonic_ms,
            wake=self.wake,
        )
        session.on_up = self._venue_back
        self.host.act = flow.act
        self.watchers.flow = driver.flow = flow
        await session.connect()
        if cfg.venue.kind == "binance":
            await self._first_binance_session()
        self.instruments = list(cfg.venue.instruments)
        self._spawn(tasks, session.supervise(), "orders")
        self._spawn(tasks, self.outbox.run(manager), "outbox")
        self._spawn(tasks, self._run_feed(), "feed")
        self._spawn(tasks, monitor.run(self._observe_unless_stopping, self._drive_trading), "health")
        # in their own thread: they answer while this loop is blocked (kernel/endpoints.py)
        self.endpoints = endpoints = EndpointThread(self.handle_control, self.healthz, self.status, self.metrics_text)
        try:
            await endpoints.start(cfg)
        finally:
            self.control, self.http = endpoints.control, endpoints.http
        self._spawn(tasks, endpoints.run(), "endpoints-tick")
        self._spawn(tasks, self._start_strategy(), "strategy-start")
        if self.timers and self.timer_interval_ms:
            self._spawn(tasks, self.host.run_timer(self.timer_interval_ms), "strategy-timer")
        if self.status_printer is not None:
            self._spawn(tasks, self._status_loop(), "status-view")
        if cfg.kernel.duration_s is not None:
            self._spawn(tasks, self._stop_after(cfg.kernel.duration_s), "duration")
        if cfg.ship.url:  # its own thread, reader and connection: never on this loop
            from kernel.ship import ShipOptions, start_in_run

            options = ShipOptions(cfg.ship.batch_rows, cfg.ship.interval_s, cfg.ship.max_backoff_s)
            self.shipper = start_in_run(journal.path, cfg.ship.url, options)
        log.info(
            "kernel run %d: journal %s, venue %s, strategy %s, instruments %s",
            journal.run_id,
            journal.path,
            redact_url(self.venue_url),
            self.host.name,
            ", ".join(self.instruments) or "from the venue",
        )

    async def _binance_rules(self) -> dict[str, TradingRules]:
        """Binance's tick, lot and minimum notional for the risk limits (an order that breaks them is
        denied here, never sent). Raises ``VenueUnreachable`` when they cannot be had at start."""
        from kernel.feed.rules import RulesError

        try:
            async with asyncio.timeout(BINANCE_START_S):
                return await wiring.binance_rules(self.config)
        except RulesError as exc:
            raise VenueUnreachable(f"cannot read Binance's trading rules: {exc}") from None
        except TimeoutError:
            raise VenueUnreachable(f"no trading rules from Binance within {BINANCE_START_S:g} s") from None

    async def _first_binance_session(self) -> None:
        """Wait for the first Binance session; ``VenueUnreachable`` (naming the last error) when none
        came within ``BINANCE_START_S``. Later outages heal by themselves."""
        assert self.client is not None
        try:
            async with asyncio.timeout(BINANCE_START_S):
                await self.client.wait_connected()
        except TimeoutError:
            last = getattr(getattr(self.client, "ws_api", None), "last_error", None) or "no answer"
            raise VenueUnreachable(
                f"no session with Binance at {redact_url(self.venue_url)} within {BINANCE_START_S:g} s: {last}"
            ) from None

    # -- supervised tasks -------------------------------------------------------------------------

    def _observe_unless_stopping(self) -> Observation | None:
        if self.stopping:
            return None
        outage_ms = None if self.session is None else self.session.outage_ms()
        return dataclasses.replace(self.observe(), venue_down_ms=outage_ms)

    def _drive_trading(self) -> None:
        if self.driver is not None and self.monitor is not None and not self.stopping:
            self.driver.drive(self.monitor.kernel_finding, self.monitor.findings)

    def _venue_back(self) -> None:
        """The order session is up again: a feed from the same venue waiting out its backoff retries now."""
        if self.feed is not None and self.feed.url == self.venue_url:
            self.feed.retry_now()

    def _on_feed_state(self, state: str) -> None:
        if state == "backoff":
            self.feed_reconnects += 1
        self.wake()

    async def _run_feed(self) -> None:
        journal, client = self.journal, self.client
        assert journal is not None
        assert client is not None
        generation = 0
        while not self.instruments:  # none configured: the venue names them in its welcome
            try:
                generation = await client.wait_connected(after=generation)
            except ReconnectFailed:
                await asyncio.sleep(1.0)  # the session supervisor starts the client again
                continue
            self.instruments = list(client.instruments)
            log.info("instruments from the venue: %s", ", ".join(self.instruments) or "none yet")
        self.feed = wiring.feed_client(
            self.config,
            self.venue_url,
            self.instruments,
            journal,
            entity_id("feed", journal.run_id),
            now_ms=self.monotonic_ms,
            on_event=self.host.on_market,
            on_state=self._on_feed_state,
            credentials=self.credentials,
        )
        await self.feed.run()
        if self.feed.state == "failed" and not self.stopping:
            log.error("the feed failed for good: %s", self.feed.feed.data.get("reason"))

    async def _start_strategy(self) -> None:
        assert self.monitor is not None
        while self.entry_block() is not None and not self.stopping:
            await self.monitor.wait_change(1.0)
        if self.stopping:
            return
        self.host.start()
        self.ready.set()
        log.info("ready: order entry open")

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.request_stop(f"--duration {seconds:g} s elapsed")

    async def _status_loop(self) -> None:
        assert self.status_printer is not None
        while True:
            try:
                self.status_printer(self)
            except Exception:
                log.exception("status view failed")
            await asyncio.sleep(self.config.kernel.status_interval_s)

    # -- stopping ---------------------------------------------------------------------------------

    async def _shutdown(self) -> int:
        """The stop sequence; returns the exit status."""
        request = self.stop_request or StopRequest("stopped")
        journal, manager, monitor = self.journal, self.manager, self.monitor
        assert journal is not None
        assert manager is not None
        assert monitor is not None
        monitor.stop_all(request.reason)
        with contextlib.suppress(JournalWriteError):
            journal.commit()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.kernel.stop_timeout_s):
                await self.outbox.join()  # what was journaled goes out before the cancels
        if self.config.kernel.cancel_on_stop:
            await cancel_open_orders(manager, self.config.kernel.stop_timeout_s, self.stops)
        self.orders_left_open = [o.entity_id for o in manager.orders.values() if o.live]
        if self.orders_left_open:
            log.warning("%d order(s) still open at stop: %s", len(self.orders_left_open), some(self.orders_left_open))
        return EXIT_FAILED if self.orders_left_open and self.config.kernel.cancel_on_stop else EXIT_OK

    async def _stop_tasks(self) -> None:
        """Stop the feed cleanly (it ends ``closed``), then cancel the rest in reverse start order."""
        if self.feed is not None:
            self.feed.stop()
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _close_everything(self) -> None:
        """Reverse start order; each step runs even if an earlier one failed."""
        steps: list[Step] = []
        if self.endpoints is not None:
            steps.append(("http and control socket", self.endpoints.stop))
        if self.client is not None:
            steps.append(("venue session", self.client.close))
        if self.venue is not None:
            steps.append(("paper venue", self.venue.stop))
        await close_in_reverse(steps)


def run_kernel(config: Config, **options: Any) -> int:
    """Run a kernel in a fresh event loop (the CLI's entry point); return its exit status."""
    kernel = Kernel(config, install_signals=True, **options)
    return asyncio.run(kernel.run())


__all__ = ["Kernel", "StopRequest", "entity_id", "run_kernel"]
