"""The kernel process: its parts in one ``asyncio.TaskGroup``, started in order, stopped in reverse.

``Kernel(config).run()`` is what ``tradekernel run`` does. Start order (each step needs the one
before it):

1. open the journal (the writer lock: one kernel per database), retire what a previous run left
   live, restore the trading state, create this run's health entities (``kernel/bootstrap.py``);
2. start the embedded paper venue (``venue.url = "embedded"``; ``kernel/wiring.py``);
3. connect the venue session; the order manager resumes every live order and resolves in-flight
   ones, and order entry stays paused until the session is reconciled (``kernel/venue_session.py``);
4. start the feed; market events go to the strategy (``kernel/strategy_host.py``), whose intents go
   through the order flow (``kernel/order_flow.py``: gate, risk, journal, outbox);
5. the health monitor and trading driver (``kernel/health_monitor.py``, ``kernel/trading_driver.py``),
   the control socket, the HTTP endpoints, the status view (``kernel/views.py``).

Stopping (SIGINT, SIGTERM, ``tradekernel stop``, ``--duration``) runs in reverse: the strategy
gets no more callbacks, open orders are canceled (``cancel_on_stop``) and their acks awaited up to
``stop_timeout_s``, then the feed, endpoints, venue session and venue stop, the health entities end
``stopped`` and the journal is committed and closed, which records the run as stopped cleanly. A
second signal skips the waiting; the journal is still committed and closed.

The order gate is ``machines.entry.entry_block``: this module only gathers its facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kernel import bootstrap, wiring
from kernel.bootstrap import entity_id
from kernel.clock import monotonic_ms, wall_ms
from kernel.config import Config
from kernel.control import ControlServer
from kernel.execution import VenueClient, VenueError
from kernel.exits import EXIT_FAILED, EXIT_OK
from kernel.feed.client import FeedClient
from kernel.feed.events import QuoteEvent, TradeEvent
from kernel.health_monitor import HealthMonitor, thresholds_of
from kernel.http import HttpEndpoints
from kernel.metrics import KernelMetrics
from kernel.order_flow import OrderFlow, Outbox
from kernel.orders import OrderError, OrderManager
from kernel.portfolio import Portfolio
from kernel.status import running_status
from kernel.strategy import Context, OrderView, Strategy
from kernel.strategy_host import StrategyHost
from kernel.trading_driver import OPERATOR_COMMANDS, TradingDriver
from kernel.venue_session import VenueSession
from kernel.views import FeedSnapshot, KernelSnapshot, OrderSnapshot, metrics_text
from kernel.watchers import Watchers
from machines import Entity
from machines.entry import RECONCILING, EntryFacts, entry_block, venue_block
from machines.health import Finding, Observation
from machines.positions import Positions
from storage import Journal
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StopRequest:
    """Why the kernel is stopping, and whether to skip the waiting."""

    reason: str
    force: bool = False


class Kernel:
    """One trading kernel. Build with a ``Config``; ``await run()`` returns the exit status.

    ``strategy`` overrides the configured one (tests pass an instance). ``timers=False`` leaves
    ``on_timer`` to the caller (``fire_timer()``), for tests that drive time themselves.
    ``install_signals`` makes SIGINT/SIGTERM stop it (the CLI does; tests do not).
    """

    def __init__(
        self,
        config: Config,
        *,
        strategy: Strategy | None = None,
        clock_ms: Callable[[], int] = wall_ms,
        monotonic_ms: Callable[[], int] = monotonic_ms,
        timers: bool = True,
        install_signals: bool = False,
        status_printer: Callable[[Kernel], None] | None = None,
    ) -> None:
        self.config = config
        self.clock_ms = clock_ms
        self.monotonic_ms = monotonic_ms
        self.timers = timers
        self.install_signals = install_signals
        self.status_printer = status_printer
        strategy = wiring.strategy_of(config, strategy)
        self.timer_interval_ms = wiring.timer_interval_ms(config, strategy)
        self.metrics = KernelMetrics()
        self.limits = config.risk.limits
        self.portfolio = Portfolio()
        self.outbox = Outbox()
        self.ready = asyncio.Event()
        """Set once order entry first opens and ``on_start`` has run."""
        self.stopped = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._changed = asyncio.Event()
        self.host = StrategyHost(
            strategy,
            self.portfolio,
            self.metrics,
            clock_ms=clock_ms,
            entry_block=self.entry_block,
            stopping=lambda: self.stopping,
            wake=self.wake,
        )
        self.watchers = Watchers(
            self.portfolio, self.limits, trading=lambda: self.trading, fire_trading=self.fire_trading
        )
        self.host.on_trade = self.watchers.on_trade
        self.host.on_order_while_stopping = self._stop_event.set
        # the parts built while starting (None until then)
        self.journal: Journal | None = None
        self.driver: TradingDriver | None = None
        self.monitor: HealthMonitor | None = None
        self.venue: wiring.EmbeddedVenue | None = None
        self.client: VenueClient | None = None
        self.manager: OrderManager | None = None
        self.session: VenueSession | None = None
        self.flow: OrderFlow | None = None
        self.feed: FeedClient | None = None
        self.control: ControlServer | None = None
        self.http: HttpEndpoints | None = None
        self.venue_url = ""
        self.instruments: list[str] = []
        self.started_ms = 0
        self.previous_run: dict[str, Any] | None = None
        self.stop_request: StopRequest | None = None
        self.orders_left_open: list[str] = []
        self.exit_status: int | None = None
        """Set once ``run()`` has finished (the journal closed)."""
        self.feed_reconnects = 0
        self._signals = 0
        self._tasks: list[asyncio.Task[Any]] = []

    # -- what the parts hold, by name -------------------------------------------------------------

    @property
    def strategy(self) -> Strategy:
        """The strategy this kernel hosts."""
        return self.host.strategy

    @property
    def positions(self) -> Positions:
        """The positions, folded from the journaled fills."""
        return self.portfolio.positions

    @property
    def open_views(self) -> dict[str, OrderView]:
        """Live orders by client order id."""
        return self.portfolio.open_views

    @property
    def last_trade(self) -> dict[str, TradeEvent]:
        """The last trade per instrument."""
        return self.portfolio.last_trade

    @property
    def last_quote(self) -> dict[str, QuoteEvent]:
        """The last quote per instrument."""
        return self.portfolio.last_quote

    @property
    def trading(self) -> Entity | None:
        """The ``trading`` machine's entity (``kernel``): active, reducing, halting, halted."""
        return None if self.driver is None else self.driver.trading

    @property
    def health(self) -> Mapping[str, Entity]:
        """This run's health entities by name (``kernel`` and one per component)."""
        return {} if self.monitor is None else self.monitor.entities

    @property
    def kernel_finding(self) -> Finding | None:
        """The last overall health finding (``None`` before the first assessment)."""
        return None if self.monitor is None else self.monitor.kernel_finding

    @property
    def reconcile_error(self) -> str | None:
        """Why the last reconciliation failed, if it did."""
        return None if self.session is None else self.session.reconcile_error

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.stop_request is not None

    @property
    def started_tasks(self) -> int:
        """How many long-running tasks were started (0 until start-up got that far)."""
        return len(self._tasks)

    # -- public -----------------------------------------------------------------------------------

    def request_stop(self, reason: str, *, force: bool = False) -> None:
        """Begin the stop sequence (idempotent); ``force`` skips waiting for cancel acks."""
        if self.stop_request is None or (force and not self.stop_request.force):
            log.warning("stopping: %s%s", reason, " (forced: not waiting for acks)" if force else "")
            self.stop_request = StopRequest(reason, force)
        self._stop_event.set()

    def wake(self) -> None:
        """Something changed that may open or pause order entry: health looks again at once."""
        self._changed.set()

    def entry_facts(self) -> EntryFacts:
        """What the order-entry gate looks at, now."""
        trading, client, manager, journal = self.trading, self.client, self.manager, self.journal
        return EntryFacts(
            stopping=self.stopping,
            trading_state=None if trading is None else str(trading.state),
            trading_reason=None if trading is None else trading.data["reason"],
            started=manager is not None and client is not None,
            venue_connected=client is not None and client.connected,
            venue_resolved=manager is not None and not manager.paused,
            reconcile_error=self.reconcile_error,
            journal_failure=None if journal is None or journal.failure is None else str(journal.failure),
            health=self.kernel_finding,
        )

    def entry_block(self) -> str | None:
        """Why a new order may not go out now, or ``None`` when order entry is open."""
        return entry_block(self.entry_facts())

    def context(self) -> Context:
        """What the strategy sees now."""
        return self.host.context()

    async def fire_timer(self) -> None:
        """Call the strategy's ``on_timer`` now and execute its intents."""
        self.host.timer()
        await self.outbox.join()

    async def wait_sent(self) -> None:
        """Wait until every journaled request has been handed to the venue session."""
        await self.outbox.join()

    def fire_trading(self, trigger: str, **data: Any) -> Entity:
        """Fire ``trigger`` on the trading machine and commit (operator commands, risk, health)."""
        assert self.driver is not None
        return self.driver.fire(trigger, **data)

    def observe(self) -> Observation:
        """What health is assessed from, now."""
        facts = self.entry_facts()
        feed = self.feed.feed if self.feed is not None else None
        monitor = self.monitor
        resolving = facts.started and venue_block(facts.venue_connected, facts.venue_resolved) == RECONCILING
        return Observation(
            feed_state=None if feed is None else str(feed.state),
            feed_reason=None if feed is None else feed.data.get("reason"),
            venue_connected=facts.venue_connected,
            venue_resolving=resolving,
            venue_failed=None if self.session is None else self.session.failed,
            journal_error=facts.journal_failure,
            commit_latency_ms=0 if monitor is None else monitor.commit_ms_window,
            loop_lag_ms=0 if monitor is None else monitor.loop_lag_ms,
            strategy_errors=self.host.errors,
            strategy_error=self.host.last_error,
        )

    # -- views ------------------------------------------------------------------------------------

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: ok when the kernel is healthy or degraded."""
        if self.monitor is None:
            return False, {"status": "starting", "reason": None, "components": {}}
        return self.monitor.healthz()

    def snapshot(self) -> KernelSnapshot:
        """Everything the views show, at this instant."""
        journal, manager, client, feed = self.journal, self.manager, self.client, self.feed
        ok, health = self.healthz()
        orders = manager.orders.values() if manager is not None else ()
        by_state: dict[str, int] = {}
        for order in orders:
            by_state[str(order.state)] = by_state.get(str(order.state), 0) + 1
        feed_entity = None if feed is None else feed.feed
        return KernelSnapshot(
            pid=os.getpid(),
            db=None if journal is None else journal.path,
            run_id=None if journal is None else journal.run_id,
            started_ms=self.started_ms,
            healthy=ok,
            health=health,
            health_levels={} if self.monitor is None else self.monitor.levels(),
            trading={"state": None} if self.driver is None else self.driver.status(),
            entry_block=self.entry_block(),
            feed=None
            if feed_entity is None
            else FeedSnapshot(
                entity=feed_entity.entity_id,
                state=str(feed_entity.state),
                url=feed_entity.data.get("url"),
                instruments=tuple(feed_entity.data.get("instruments", ())),
                gaps=int(feed_entity.data.get("gaps", 0)),
                reconnects=self.feed_reconnects,
            ),
            last_trade=dict(self.portfolio.last_trade),
            last_quote=dict(self.portfolio.last_quote),
            venue_url=self.venue_url,
            venue_embedded=self.venue is not None,
            venue_connected=client is not None and client.connected,
            venue_session=None if client is None else client.session,
            strategy_name=self.host.name,
            strategy_errors=self.metrics.strategy_errors,
            intents=dict(self.metrics.intents),
            denied=self.metrics.denied,
            fills=self.metrics.fills,
            open_orders=tuple(OrderSnapshot(o.entity_id, str(o.state), dict(o.data)) for o in orders if o.live),
            orders_by_state=by_state,
            positions=dict(self.portfolio.positions.snapshot()),
            control_socket=None if self.control is None else self.control.path,
            http_url=None if self.http is None else self.http.url,
            last_run=self.previous_run,
            reconciliation=None if self.session is None else self.session.last_reconciliation,
        )

    def status(self) -> dict[str, Any]:
        """``/status`` and ``tradekernel status``: a JSON-ready snapshot."""
        return running_status(self.snapshot())

    def metrics_text(self) -> str:
        """``/metrics``: Prometheus text."""
        return metrics_text(self.snapshot(), self.metrics)

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
                self._install_signal_handlers()
                await self._start(tasks)
                await self._stop_event.wait()
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
            self.exit_status = exit_status
            self.stopped.set()
            self._remove_signal_handlers()
        return exit_status

    def _spawn(self, tasks: asyncio.TaskGroup, coro: Any, name: str) -> None:
        self._tasks.append(tasks.create_task(coro, name=name))

    def _open_journal(self) -> None:
        journal = bootstrap.open_journal(self.config, self.metrics.on_commit)
        self.journal = journal
        self.started_ms = self.clock_ms()
        boot = bootstrap.prepare(journal, self.monotonic_ms())
        self.previous_run = boot.previous_run
        self.driver = TradingDriver(journal, boot.trading, self.portfolio, now_ms=self.monotonic_ms, wake=self.wake)
        self.monitor = HealthMonitor(
            journal, boot.health, thresholds_of(self.config), self.metrics, self._changed, now_ms=self.monotonic_ms
        )

    async def _start(self, tasks: asyncio.TaskGroup) -> None:
        cfg, journal, driver, monitor = self.config, self.journal, self.driver, self.monitor
        assert journal is not None
        assert driver is not None
        assert monitor is not None
        if wiring.uses_embedded_venue(cfg):
            self.venue = await wiring.start_embedded_venue(cfg)
            self.venue_url = self.venue.url
        else:
            self.venue_url = cfg.venue.url
        self.client = client = wiring.venue_client(self.venue_url)
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
        self.host.act = flow.act
        self.watchers.flow = driver.flow = flow
        await session.connect()
        self.instruments = list(cfg.venue.instruments) or list(client.instruments)
        self._spawn(tasks, session.supervise(), "orders")
        self._spawn(tasks, self.outbox.run(manager), "outbox")
        self.feed = wiring.feed_client(
            cfg,
            self.venue_url,
            self.instruments,
            journal,
            entity_id("feed", journal.run_id),
            now_ms=self.monotonic_ms,
            on_event=self.host.on_market,
            on_state=self._on_feed_state,
        )
        self._spawn(tasks, self._run_feed(), "feed")
        self._spawn(tasks, monitor.run(self._observe_unless_stopping, self._drive_trading), "health")
        self.control = await wiring.start_control(cfg, self.handle_control)
        self.http = await wiring.start_http(cfg, self.healthz, self.metrics_text, self.status)
        self._spawn(tasks, self._start_strategy(), "strategy-start")
        if self.timers and self.timer_interval_ms:
            self._spawn(tasks, self.host.run_timer(self.timer_interval_ms), "strategy-timer")
        if self.status_printer is not None:
            self._spawn(tasks, self._status_loop(), "status-view")
        if cfg.kernel.duration_s is not None:
            self._spawn(tasks, self._stop_after(cfg.kernel.duration_s), "duration")
        log.info(
            "kernel run %d: journal %s, venue %s, strategy %s, instruments %s",
            journal.run_id,
            journal.path,
            self.venue_url,
            self.host.name,
            ", ".join(self.instruments),
        )

    # -- supervised tasks -------------------------------------------------------------------------

    def _observe_unless_stopping(self) -> Observation | None:
        return None if self.stopping else self.observe()

    def _drive_trading(self) -> None:
        if self.driver is not None and self.monitor is not None and not self.stopping:
            self.driver.drive(self.monitor.kernel_finding, self.monitor.findings)

    def _on_feed_state(self, state: str) -> None:
        if state == "backoff":
            self.feed_reconnects += 1
        self.wake()

    async def _run_feed(self) -> None:
        assert self.feed is not None
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

    def _install_signal_handlers(self) -> None:
        if not self.install_signals:
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _remove_signal_handlers(self) -> None:
        if not self.install_signals:
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self.request_stop(f"{name} received (again to stop without waiting)")
        else:
            self.request_stop(f"{name} received again", force=True)

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
            await self._cancel_open_orders(manager)
        self.orders_left_open = [o.entity_id for o in manager.orders.values() if o.live]
        if self.orders_left_open:
            log.warning("%d order(s) still open at stop: %s", len(self.orders_left_open), _some(self.orders_left_open))
        return EXIT_FAILED if self.orders_left_open and self.config.kernel.cancel_on_stop else EXIT_OK

    async def _cancel_open_orders(self, manager: OrderManager) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.kernel.stop_timeout_s
        sent = 0
        open_ids = [o.entity_id for o in manager.orders.values() if o.live and o.state != "pending_cancel"]
        try:
            requests = manager.journal_cancels(open_ids) if open_ids else []  # one commit for all
        except (OrderError, JournalWriteError) as exc:
            log.warning("%d cancel(s) at stop not sent: %s", len(open_ids), exc)
            requests = []
        for request in requests:
            try:
                await manager.send(request)
                sent += 1
            except (OrderError, VenueError) as exc:
                log.warning("cancel of %s at stop not sent: %s", request.order.entity_id, exc)
        if sent:
            log.info("stop: %d cancel(s) sent; waiting up to %g s for acks", sent, self.config.kernel.stop_timeout_s)
        while any(o.live for o in manager.orders.values()):
            if self.stop_request is not None and self.stop_request.force:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._stop_event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._stop_event.wait()

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
        steps: list[wiring.Step] = []
        if self.http is not None:
            steps.append(("http", self.http.stop))
        if self.control is not None:
            steps.append(("control socket", self.control.stop))
        if self.client is not None:
            steps.append(("venue session", self.client.close))
        if self.venue is not None:
            steps.append(("paper venue", self.venue.stop))
        for name, step in steps:
            try:
                async with asyncio.timeout(5.0):
                    await step()
            except Exception:
                log.exception("stopping the %s failed", name)


def _some(ids: list[str], shown: int = 10) -> str:
    """The first ``shown`` ids, then how many more."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


def run_kernel(config: Config, **options: Any) -> int:
    """Run a kernel in a fresh event loop (the CLI's entry point); return its exit status."""
    kernel = Kernel(config, install_signals=True, **options)
    return asyncio.run(kernel.run())


__all__ = ["Kernel", "StopRequest", "entity_id", "run_kernel"]
