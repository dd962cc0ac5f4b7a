"""The kernel process: journal, venue session, orders, feed, strategy, health, endpoints, in one loop.

``Kernel(config).run()`` is what ``tradekernel run`` does. Start order (each step needs the one
before it), all tasks in one ``asyncio.TaskGroup``:

1. open the journal (the writer lock: one kernel per database), retire what a previous run left
   live (its health and feed entities), rebuild positions from the journaled fills;
2. start the embedded paper venue (``venue.url = "embedded"``);
3. connect the venue session; the order manager resumes every live order and resolves in-flight
   ones (order entry stays paused until it has);
4. start the feed; market events go to the strategy, whose intents go through the order gate;
5. the health monitor, the control socket, the HTTP endpoints, the status view.

Stopping (SIGINT, SIGTERM, ``tradekernel stop``, ``--duration``) runs in reverse: the strategy
gets no more callbacks, open orders are canceled (``cancel_on_stop``) and their acks awaited up to
``stop_timeout_s``, then the feed, endpoints, venue session and venue stop, the health entities end
``stopped`` and the journal is committed and closed, which records the run as stopped cleanly. A
second signal skips the waiting; the journal is still committed and closed.

The order gate: a ``Place`` intent goes out only when order entry is open (venue session resolved,
no health finding that pauses entry, not stopping); otherwise it is journaled as a denied order
with the reason. Cancels and replaces go out whenever the venue session is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, cast

from kernel.config import Config
from kernel.control import ControlServer
from kernel.execution import ReconnectFailed, VenueClient, VenueError, VenueUnavailable
from kernel.faults import crash_point
from kernel.feed.client import FeedClient
from kernel.feed.events import FeedEvent, QuoteEvent, TradeEvent
from kernel.http import HttpEndpoints
from kernel.metrics import KernelMetrics, PositionSample, render
from kernel.orders import (
    OrderEntryPaused,
    OrderError,
    OrderManager,
    OrderNotSent,
    Request,
    UnknownOrder,
    checkpoint_positions,
)
from kernel.reconcile import Reconciler, ReconciliationFailed
from kernel.strategy import (
    Cancel,
    Context,
    FillView,
    Intent,
    OrderUpdate,
    OrderView,
    Place,
    Replace,
    Strategy,
    load_strategy_class,
)
from kernel.venue.server import PaperVenue
from machines import FEED, RECONCILIATION, TRADING, Entity, TradingState, Transition, TransitionRefused
from machines.health import (
    COMPONENTS,
    HEALTH,
    KERNEL,
    Finding,
    HealthState,
    Observation,
    Thresholds,
    assess,
    overall,
    trigger_for,
)
from machines.order import live_trigger
from machines.order_terms import OrderTerms, Side
from machines.positions import Position, Positions, position_of
from machines.risk import Denial, Limits, Rates, RiskView, check_cancel, check_new, check_replace
from machines.stops import EquityTracker, StopTracker
from machines.trading import ENTITY_ID as TRADING_ID
from storage import Journal
from storage.audit import AuditReader
from storage.errors import JournalError, JournalWriteError

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 0.25
"""How often health is assessed (and the loop lag sampled)."""
JOURNAL_PROBE_MS = 1000
"""How long the journal may go without a commit before health checks that it still could."""
EXIT_OK, EXIT_ATTENTION, EXIT_USAGE = 0, 1, 2


def wall_ms() -> int:
    """Milliseconds since the epoch (the strategy's ``ctx.now_ms``)."""
    return time.time_ns() // 1_000_000


def mono_ms() -> int:
    """The monotonic clock in milliseconds (machine timers, health)."""
    return time.monotonic_ns() // 1_000_000


def entity_id(name: str, run_id: int) -> str:
    """The id of a per-run entity (health components, the feed): ``NAME-rRUN``."""
    return f"{name}-r{run_id}"


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
        monotonic_ms: Callable[[], int] = mono_ms,
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
        if strategy is None:
            cls = load_strategy_class(config.strategy.name)
            strategy = cls(config.strategy.params)
        self.strategy = strategy
        self.timer_interval_ms = config.strategy.timer_interval_ms or type(strategy).timer_interval_ms
        self.metrics = KernelMetrics()
        self.thresholds = Thresholds(
            loop_lag_degraded_ms=config.health.loop_lag_degraded_ms,
            loop_lag_unhealthy_ms=config.health.loop_lag_unhealthy_ms,
            commit_latency_degraded_ms=config.health.commit_latency_degraded_ms,
            strategy_errors_unhealthy=config.health.strategy_errors_unhealthy,
        )
        self.journal: Journal | None = None
        self.venue: PaperVenue | None = None
        self.client: VenueClient | None = None
        self.manager: OrderManager | None = None
        self.feed: FeedClient | None = None
        self.http: HttpEndpoints | None = None
        self.control: ControlServer | None = None
        self.venue_url = ""
        self.instruments: list[str] = []
        self.positions = Positions()
        self.health: dict[str, Entity] = {}
        self.findings: dict[str, Finding] = {}
        self.kernel_finding: Finding | None = None
        self.last_trade: dict[str, TradeEvent] = {}
        self.last_quote: dict[str, QuoteEvent] = {}
        self.open_views: dict[str, OrderView] = {}
        self.started_ms = 0
        self.previous_run: dict[str, Any] | None = None
        self.stop_request: StopRequest | None = None
        self.orders_left_open: list[str] = []
        self.exit_status: int | None = None
        """Set once ``run()`` has finished (the journal closed)."""
        self.ready = asyncio.Event()
        """Set once order entry first opens and ``on_start`` has run."""
        self.stopped = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._health_wake = asyncio.Event()
        self._outbox: asyncio.Queue[Request] = asyncio.Queue()
        self._acting = 0
        self._draining = False
        self._deferred: deque[OrderUpdate] = deque()
        self._strategy_errors = 0
        self._strategy_error: str | None = None
        self._loop_lag_ms = 0
        self._commit_ms_window = 0
        self._feed_reconnects = 0
        self._venue_failure: str | None = None
        self._signals = 0
        self._denial_journal_skips = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._probe_commits = -1
        self.reconciler: Reconciler
        self.trading: Entity | None = None
        self.limits: Limits = config.risk.limits
        self.rates = Rates()
        self.stops = StopTracker()
        self.equity: EquityTracker | None = None
        """Started at the first trade of the session (the session's starting P&L and its peak)."""
        """The ``trading`` machine's entity (``kernel``): active, reducing, halting, halted."""
        self.reconcile_error: str | None = None
        self.last_reconciliation: dict[str, Any] | None = None
        self._probed_ms = 0

    # -- public -----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.stop_request is not None

    def request_stop(self, reason: str, *, force: bool = False) -> None:
        """Begin the stop sequence (idempotent); ``force`` skips waiting for cancel acks."""
        if self.stop_request is None or (force and not self.stop_request.force):
            log.warning("stopping: %s%s", reason, " (forced: not waiting for acks)" if force else "")
            self.stop_request = StopRequest(reason, force)
        self._stop_event.set()

    def entry_block(self) -> str | None:
        """Why a new order may not go out now, or ``None`` when order entry is open."""
        if self.stopping:
            return "kernel stopping"
        trading = self.trading
        if trading is not None and trading.state in (TradingState.halting, TradingState.halted):
            return f"trading {trading.state}: {trading.data['reason']}"
        if self.manager is None or self.client is None:
            return "not started"
        if not self.client.connected:
            return "venue session down"
        if self.manager.paused:
            return self.reconcile_error or "reconciling with the venue"
        if self.journal is not None and self.journal.failure is not None:
            return f"journal cannot commit: {self.journal.failure}"
        finding = self.kernel_finding
        if finding is None or finding.level == HealthState.starting:
            return "starting"
        if finding.pauses_entry:
            return f"health {finding.level}: {finding.reason}"
        return None

    def context(self) -> Context:
        """What the strategy sees now."""
        return Context(
            now_ms=self.clock_ms(),
            trading_allowed=self.entry_block() is None,
            positions=self.positions.snapshot(),
            open_orders=MappingProxyType(dict(self.open_views)),
            last_trade=MappingProxyType(dict(self.last_trade)),
            last_quote=MappingProxyType(dict(self.last_quote)),
        )

    async def fire_timer(self) -> None:
        """Call the strategy's ``on_timer`` now and execute its intents."""
        self._call("on_timer", self.strategy.on_timer)
        await self._outbox.join()

    # -- running ----------------------------------------------------------------------------

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
            self._close_journal(clean)
            self.exit_status = exit_status
            self.stopped.set()
            self._remove_signal_handlers()
        return exit_status

    @property
    def started_tasks(self) -> int:
        """How many long-running tasks were started (0 until start-up got that far)."""
        return len(self._tasks)

    def _spawn(self, tasks: asyncio.TaskGroup, coro: Any, name: str) -> None:
        self._tasks.append(tasks.create_task(coro, name=name))

    async def _stop_tasks(self) -> None:
        """Stop the feed cleanly (it ends ``closed``), then cancel the rest in reverse start order."""
        if self.feed is not None:
            self.feed.stop()
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _open_journal(self) -> None:
        cfg = self.config.kernel
        journal = Journal.open(cfg.db, durability="normal" if cfg.durability == "normal" else "full")
        self.journal = journal
        journal.commit_observer = self.metrics.on_commit
        self.started_ms = self.clock_ms()
        if journal.crashed_runs:
            log.warning(
                "the last run did not end cleanly (run %s); resuming from the journal",
                ", ".join(str(r) for r in journal.crashed_runs),
            )
        self._retire_previous_runs()
        self._previous_run()
        restored = journal.live_entities(TRADING)
        if restored:
            self.trading = restored[0]
            if self.trading.state != TradingState.active:
                log.warning("trading is %s since the last run: %s", self.trading.state, self.trading.data["reason"])
        else:
            self.trading, created_trading = TRADING.create(TRADING_ID, now_ms=self.monotonic_ms())
            journal.append(created_trading, self.trading)
        for name in (KERNEL, *COMPONENTS):
            entity, created = HEALTH.create(entity_id(name, journal.run_id), now_ms=self.monotonic_ms())
            journal.append(created, entity)
            self.health[name] = entity
        journal.commit()

    def _retire_previous_runs(self) -> None:
        """End the health, reconciliation and feed entities a previous run left live (it was killed)."""
        journal = self.journal
        assert journal is not None
        now = self.monotonic_ms()
        for entity in journal.live_entities(HEALTH):
            if entity.state != HealthState.stopping:
                journal.fire(HEALTH, entity, "stop", now_ms=now, reason="its run ended without a clean stop")
            journal.fire(HEALTH, entity, "stopped", now_ms=now)
        for recon in journal.live_entities(RECONCILIATION):
            journal.fire(RECONCILIATION, recon, "abandon", now_ms=now, reason="its run ended without a clean stop")
        for feed in journal.live_entities(FEED):
            if feed.state == "closed":  # stopped cleanly; its history stays, nothing to end
                continue
            with contextlib.suppress(TransitionRefused):
                journal.fire(FEED, feed, "stop", now_ms=now, reason="its run ended without a clean stop")
        journal.commit()

    def _previous_run(self) -> None:
        from kernel.status import journal_runs, run_summary

        assert self.journal is not None
        with AuditReader(self.journal.path) as reader:
            runs = journal_runs(reader)
        self.previous_run = run_summary(runs[-2], live=False) if len(runs) > 1 else None

    def _restore_positions(self) -> None:
        """Positions from the ``position`` entities (O(instruments)); see ``checkpoint_positions``
        for a journal written before positions were checkpointed."""
        assert self.manager is not None
        checkpoint_positions(self.manager)
        self._refresh_positions()

    def _refresh_positions(self) -> None:
        assert self.manager is not None
        self.positions = Positions.of(position_of(entity) for entity in self.manager.positions.values())
        self.metrics.fills = sum(p.fills for p in self.positions.snapshot().values())

    async def _start(self, tasks: asyncio.TaskGroup) -> None:
        cfg = self.config
        journal = self.journal
        assert journal is not None
        if cfg.venue.url == "embedded":
            embedded = cfg.venue.embedded
            self.venue = PaperVenue(embedded.store_path, embedded.venue_config(tuple(cfg.venue.instruments)))
            await self.venue.start(embedded.host, embedded.port)
            self.venue_url = self.venue.url
        else:
            self.venue_url = cfg.venue.url
        self.client = VenueClient(self.venue_url, attempts=5, backoff=0.2, backoff_max=2.0)
        self.manager = OrderManager.resume(journal, self.client, status_timeout=cfg.venue.status_timeout_s)
        self.manager.listeners.append(self._on_order)
        self._restore_positions()
        for order in self.manager.orders.values():
            if order.live:
                self.open_views[order.entity_id] = OrderView.of(order)
        self.reconciler = Reconciler(
            self.manager,
            timeout=cfg.venue.status_timeout_s,
            now_ms=self.monotonic_ms,
        )
        self.manager.reconcile = self._reconcile
        await self._connect_venue()
        self.instruments = list(cfg.venue.instruments) or list(self.client.instruments)
        self._spawn(tasks, self._supervise_orders(), "orders")
        self._spawn(tasks, self._send_outbox(), "outbox")
        self.feed = FeedClient(
            self.venue_url,
            self.instruments,
            journal,
            entity_id("feed", journal.run_id),
            cfg.feed.policy(),
            now_ms=self.monotonic_ms,
            on_event=self._on_market,
            on_state=self._on_feed_state,
        )
        self._spawn(tasks, self._run_feed(), "feed")
        self._spawn(tasks, self._monitor_health(), "health")
        self.control = ControlServer(cfg.kernel.control_socket_path, self._control)
        await self.control.start()
        if cfg.http.listen:
            self.http = HttpEndpoints(self.healthz, self.metrics_text, self.status)
            assert cfg.http.address is not None
            host, port = cfg.http.address
            await self.http.start(host, port, allow_remote=cfg.http.allow_remote)
        self._spawn(tasks, self._start_strategy(), "strategy-start")
        if self.timers and self.timer_interval_ms:
            self._spawn(tasks, self._timer_loop(self.timer_interval_ms), "strategy-timer")
        if self.status_printer is not None:
            self._spawn(tasks, self._status_loop(), "status-view")
        if cfg.kernel.duration_s is not None:
            self._spawn(tasks, self._stop_after(cfg.kernel.duration_s), "duration")
        log.info(
            "kernel run %d: journal %s, venue %s, strategy %s, instruments %s",
            journal.run_id,
            journal.path,
            self.venue_url,
            type(self.strategy).name or type(self.strategy).__name__,
            ", ".join(self.instruments),
        )

    async def _reconcile(self, generation: int) -> None:
        """Reconcile the journal with the venue for this session (order entry opens after it)."""
        assert self.journal is not None
        if self.reconciler.count == 0 and self.reconcile_error is None:
            crashed = self.journal.crashed_runs
            reason = f"run {self.journal.run_id} started" + (
                f" after run {', '.join(map(str, crashed))} ended without a clean stop" if crashed else ""
            )
        else:
            reason = f"venue session {generation} of run {self.journal.run_id}"
        self._health_wake.set()
        try:
            self.last_reconciliation = (await self.reconciler.run(reason)).as_json()
        except ReconciliationFailed as exc:
            self.reconcile_error = f"reconciliation failed: {exc}"
            self._health_wake.set()
            raise
        self.reconcile_error = None
        self._health_wake.set()

    async def _connect_venue(self) -> None:
        assert self.client is not None
        try:
            await self.client.connect()
            self._venue_failure = None
        except ReconnectFailed as exc:
            # Not fatal: health says so, order entry stays paused, the supervisor keeps trying.
            self._venue_failure = str(exc)
            log.error("venue unreachable: %s", exc)

    # -- supervised tasks -------------------------------------------------------------------

    async def _supervise_orders(self) -> None:
        """The order manager's report pump and resolver, restarted after a journal or venue failure."""
        assert self.manager is not None
        assert self.client is not None
        delay = 0.25
        while True:
            if self._venue_failure is not None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                await self._connect_venue()
                continue
            try:
                await self.manager.run()
            except BaseExceptionGroup as group:
                failure = group.exceptions[0]
                if isinstance(failure, ReconnectFailed):
                    self._venue_failure = str(failure)
                    log.error("venue session lost for good: %s; retrying", failure)
                elif isinstance(failure, JournalWriteError):
                    log.error("journal commit failed while applying reports: %s", failure)
                    await asyncio.sleep(0.25)
                elif isinstance(failure, VenueUnavailable) and not self.stopping:
                    log.warning("venue unavailable: %s", failure)
                    await asyncio.sleep(0.25)
                elif not isinstance(failure, VenueUnavailable):
                    raise
                else:
                    return  # the venue session was closed: we are stopping
            self._health_wake.set()

    async def _run_feed(self) -> None:
        assert self.feed is not None
        await self.feed.run()
        if self.feed.state == "failed" and not self.stopping:
            log.error("the feed failed for good: %s", self.feed.feed.data.get("reason"))

    async def _start_strategy(self) -> None:
        while self.entry_block() is not None and not self.stopping:
            await self._wait_change(1.0)
        if self.stopping:
            return
        self._call("on_start", self.strategy.on_start)
        self.ready.set()
        log.info("ready: order entry open")

    async def _timer_loop(self, interval_ms: int) -> None:
        while not self.stopping:
            await asyncio.sleep(interval_ms / 1000)
            if not self.stopping:
                self._call("on_timer", self.strategy.on_timer)

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

    async def _wait_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._health_wake.wait()
        self._health_wake.clear()

    # -- market data and strategy -----------------------------------------------------------

    def _on_market(self, event: FeedEvent) -> None:
        if isinstance(event, TradeEvent):
            self.last_trade[event.instrument] = event
            self.metrics.feed_messages["trade"] += 1
        elif isinstance(event, QuoteEvent):
            self.last_quote[event.instrument] = event
            self.metrics.feed_messages["quote"] += 1
        else:
            self.metrics.feed_messages[type(event).__name__] += 1
            return
        if not self.stopping:
            self._call("on_market", lambda ctx: self.strategy.on_market(event, ctx))
            if isinstance(event, TradeEvent):
                self._watch_stops(event.instrument, event.price)
                self._watch_losses()

    def _on_feed_state(self, state: str) -> None:
        if state == "backoff":
            self._feed_reconnects += 1
        self._health_wake.set()

    def _call(self, callback: str, call: Callable[[Context], Iterable[Intent] | None]) -> None:
        """Run one strategy callback and act on its intents at once (journaled before the next
        callback sees a ``Context``). An exception is counted and logged, never fatal."""
        try:
            intents = list(call(self.context()) or ())
            for intent in intents:
                if not isinstance(intent, Place | Cancel | Replace):
                    raise TypeError(f"{callback} returned {intent!r}, not a Place, Cancel or Replace")
        except Exception as exc:
            self._strategy_errors += 1
            self._strategy_error = f"{callback}: {type(exc).__name__}: {exc}"
            self.metrics.strategy_errors += 1
            log.exception("strategy %s failed (%d in a row)", callback, self._strategy_errors)
            self._health_wake.set()
            return
        if self._strategy_errors:
            self._strategy_errors = 0
            self._health_wake.set()
        self._acting += 1
        try:
            for intent in intents:
                self._act(intent)
        finally:
            self._acting -= 1
        if self._acting or self._draining:
            return  # the outermost call tells the deferred updates, in a loop: never recursively
        self._draining = True
        try:
            while self._deferred:
                self._tell_order(self._deferred.popleft())
        finally:
            self._draining = False

    def _act(self, intent: Intent) -> None:
        """Journal one intent (or its denial); the send is queued for the outbox task."""
        manager = self.manager
        assert manager is not None
        self.metrics.intents[type(intent).__name__.lower()] += 1
        try:
            if isinstance(intent, Place):
                block = self.entry_block()
                if block is None:
                    denial = check_new(
                        intent.instrument,
                        intent.side,
                        intent.qty,
                        intent.price,
                        intent.order_type,
                        self.risk_view(),
                        self.limits,
                        self.monotonic_ms(),
                        self.rates,
                    )
                    if denial is not None:
                        self._deny(intent, denial.reason, check=denial.check)
                        return
                    try:
                        request = manager.journal_new(
                            OrderTerms(
                                intent.instrument, intent.side, intent.qty, intent.price, intent.order_type,
                                intent.tif, intent.tag,
                            )
                        )  # fmt: skip
                    except OrderEntryPaused as exc:
                        block = str(exc)
                    else:
                        self.rates = self.rates.record_order(self.monotonic_ms(), self.limits)
                        self._outbox.put_nowait(request)
                        return
                self._deny(intent, f"order entry paused: {block}", check="order_entry")
            elif isinstance(intent, Cancel):
                denial = check_cancel(self.risk_view(), self.limits, self.monotonic_ms(), self.rates)
                if denial is not None:
                    self._refuse(intent, denial)
                    return
                self._outbox.put_nowait(manager.journal_cancel(intent.client_order_id))
                self.rates = self.rates.record_cancel(self.monotonic_ms(), self.limits)
            else:
                view = self.open_views.get(intent.client_order_id)
                if view is not None:
                    denial = check_replace(
                        view, intent.qty, intent.price, self.risk_view(), self.limits, self.monotonic_ms(), self.rates
                    )
                    if denial is not None:
                        self._refuse(intent, denial)
                        return
                self._outbox.put_nowait(manager.journal_replace(intent.client_order_id, intent.qty, intent.price))
                self.rates = self.rates.record_order(self.monotonic_ms(), self.limits)
        except (OrderEntryPaused, UnknownOrder, TransitionRefused) as exc:
            self.metrics.intents["refused"] += 1
            log.info("intent %r not executed: %s", intent, exc)
        except JournalWriteError as exc:
            log.error("intent %r not executed: journal commit failed: %s", intent, exc)
            self._health_wake.set()

    async def _send_outbox(self) -> None:
        """Send journaled requests in the order they were journaled."""
        assert self.manager is not None
        while True:
            request = await self._outbox.get()
            if request.kind == "new":
                crash_point("after_commit")
            try:
                await self.manager.send(request)
                if request.kind == "new":
                    crash_point("after_send")
            except OrderNotSent as exc:
                log.warning("%s", exc)
            finally:
                self._outbox.task_done()

    def _watch_stops(self, instrument: str, mark: Decimal) -> None:
        """Emulated stop-loss and trailing stop: when the mark crosses, send a market order that
        closes the position, journaled with the reason (``create`` data ``reason``, tag = the kind)."""
        position = self.positions.get(instrument)
        self.stops, signal = self.stops.update(position, mark, self.limits.for_instrument(instrument))
        if signal is None:
            return
        trading, manager = self.trading, self.manager
        if manager is None or (trading is not None and trading.state in (TradingState.halting, TradingState.halted)):
            return  # a halt closes positions itself (flatten) or on purpose leaves them
        log.warning("%s", signal.reason)
        try:
            request = manager.journal_new(
                OrderTerms(
                    instrument, cast(Side, signal.side), signal.qty, None, "market", "ioc", signal.kind, signal.reason
                )
            )
        except (OrderError, TransitionRefused, JournalWriteError) as exc:
            log.error("%s: the closing order was not sent: %s", signal.reason, exc)
            return
        self._outbox.put_nowait(request)

    def _watch_losses(self) -> None:
        """Daily loss limit and drawdown from the session's equity peak: a breach halts trading."""
        if self.limits.daily_loss_limit is None and self.limits.max_drawdown is None:
            return
        total = sum((self._total_pnl(p) for p in self.positions.snapshot().values()), Decimal(0))
        if self.equity is None:
            self.equity = EquityTracker.start(total)
            return
        self.equity, breach = self.equity.update(total, self.limits)
        if breach is None or self.trading is None:
            return
        log.error("%s", breach.reason)
        self.fire_trading("risk_breach", limit=breach.limit, value=breach.value, threshold=breach.threshold)

    def _total_pnl(self, position: Position) -> Decimal:
        mark = self._mark(position.instrument)
        return position.realized_pnl - position.fees + (position.unrealized_pnl(mark) if mark is not None else 0)

    def risk_view(self) -> RiskView:
        """What the pre-trade checks see: positions, open orders, reference prices, trading state."""
        reference: dict[str, Decimal] = {i: t.price for i, t in self.last_trade.items()}
        for instrument, quote in self.last_quote.items():
            reference[instrument] = (quote.bid + quote.ask) / 2
        return RiskView(
            positions={i: p.qty for i, p in self.positions.snapshot().items()},
            open_orders=list(self.open_views.values()),
            reference_price=reference,
            trading_state=str(self.trading.state) if self.trading is not None else "active",
        )

    def _refuse(self, intent: Cancel | Replace, denial: Denial) -> None:
        """A cancel or replace the risk checks refused: it names a live order, so there is no new
        order to deny; it is recorded as an anomaly (source ``risk``) and logged."""
        assert self.journal is not None
        self.metrics.intents["refused"] += 1
        self.journal.record_anomaly("risk", denial.check, denial.reason, repr(intent))
        log.warning("%s of %s refused: %s", type(intent).__name__, intent.client_order_id, denial.reason)

    def _deny(self, intent: Place, reason: str, **details: Any) -> None:
        assert self.manager is not None
        assert self.journal is not None
        self.metrics.denied += 1
        if self.journal.failure is not None:
            # No audit, no trade, and no growing backlog of denials while the journal is down.
            self._denial_journal_skips += 1
            return
        self.manager.deny(
            OrderTerms(
                intent.instrument, intent.side, intent.qty, intent.price, intent.order_type, intent.tif, intent.tag
            ),
            reason=reason,
            **details,
        )

    def _on_order(self, order: Entity, transition: Transition) -> None:
        """Order listener (after each commit): open-order views, positions, the strategy."""
        if order.live:
            self.open_views[order.entity_id] = OrderView.of(order)
        else:
            self.open_views.pop(order.entity_id, None)
        fill: FillView | None = None
        if live_trigger(transition.trigger) == "fill" and "trade_id" in transition.data:
            position = self.manager.positions.get(order.data["instrument"]) if self.manager else None
            if position is not None and position.data["last_trade_id"] == transition.data["trade_id"]:
                # a new fill (a duplicate report leaves the position as it was): folded already
                self._refresh_positions()
                data = transition.data
                fill = FillView(data["qty"], data["price"], data.get("fee") or Decimal(0), data["trade_id"])
        if self.stopping:
            self._stop_event.set()  # the stop sequence waits for exactly this: an order changed
            return
        if transition.trigger == "create":
            return
        update = OrderUpdate(
            OrderView.of(order), transition.trigger, str(transition.source), fill, transition.data.get("reason")
        )
        if self._acting:  # told after the intents being journaled now: never re-entrant
            self._deferred.append(update)
        else:
            self._tell_order(update)

    def _tell_order(self, update: OrderUpdate) -> None:
        self._call("on_order", lambda ctx: self.strategy.on_order(update, ctx))

    # -- health -----------------------------------------------------------------------------

    def observe(self) -> Observation:
        """What health is assessed from, now."""
        feed = self.feed.feed if self.feed is not None else None
        client = self.client
        journal = self.journal
        return Observation(
            feed_state=None if feed is None else str(feed.state),
            feed_reason=None if feed is None else feed.data.get("reason"),
            venue_connected=client is not None and client.connected,
            venue_resolving=client is not None and client.connected and self.manager is not None
            and self.manager.paused,
            venue_failed=self._venue_failure or self.reconcile_error,
            journal_error=None if journal is None or journal.failure is None else str(journal.failure),
            commit_latency_ms=self._commit_ms_window,
            loop_lag_ms=self._loop_lag_ms,
            strategy_errors=self._strategy_errors,
            strategy_error=self._strategy_error,
        )  # fmt: skip

    async def _monitor_health(self) -> None:
        loop = asyncio.get_running_loop()
        last_hist = (0.0, 0)
        while True:
            due = loop.time() + HEALTH_INTERVAL_S
            await self._wait_change(HEALTH_INTERVAL_S)
            self._loop_lag_ms = max(0, int((loop.time() - due) * 1000))
            self.metrics.loop_lag_s = self._loop_lag_ms / 1000
            hist = self.metrics.commit_latency
            if hist.count > last_hist[1]:
                # the mean over the window: a slow disk shows, one unlucky fsync does not
                self._commit_ms_window = int((hist.total - last_hist[0]) / (hist.count - last_hist[1]) * 1000)
            last_hist = (hist.total, hist.count)
            self._probe_journal(hist.count)
            self.assess_health()
            await self._drive_trading()

    def _probe_journal(self, commits: int) -> None:
        """While nothing commits, check once a second that the journal could: an idle kernel must
        not report healthy over a journal that can no longer be written."""
        journal = self.journal
        if journal is None or journal.closed or journal.pending:
            return
        now = self.monotonic_ms()
        if commits != self._probe_commits:
            self._probe_commits, self._probed_ms = commits, now
            return
        if now - self._probed_ms < JOURNAL_PROBE_MS:
            return
        self._probed_ms = now
        with contextlib.suppress(JournalWriteError):  # health reads journal.failure
            journal.probe()

    def assess_health(self) -> None:
        """Bring the health entities to what the observation says (journaled), retrying the journal."""
        journal = self.journal
        if journal is None or self.stopping:
            return
        findings = assess(self.observe(), self.thresholds)
        self.findings = findings
        self.kernel_finding = overall(findings)
        now = self.monotonic_ms()
        changed = False
        for name, finding in [*findings.items(), (KERNEL, self.kernel_finding)]:
            entity = self.health[name]
            step = trigger_for(entity, finding)
            if step is not None:
                trigger, data = step
                before = entity.state
                journal.fire(HEALTH, entity, trigger, now_ms=now, **data)
                changed = True
                if name == KERNEL and before != entity.state:
                    level = logging.INFO if entity.state == HealthState.healthy else logging.WARNING
                    log.log(
                        level, "health %s -> %s%s", before, entity.state, f": {finding.reason}" * bool(finding.reason)
                    )
        if changed or journal.pending or journal.failure is not None:
            # Also the retry of whatever an earlier failed commit left buffered. A failure shows in the
            # health entities on the next pass; nothing leaves the process meanwhile.
            with contextlib.suppress(JournalWriteError):
                journal.commit()
        if changed:
            self._health_wake.set()

    # -- trading state ----------------------------------------------------------------------

    def fire_trading(self, trigger: str, **data: Any) -> Entity:
        """Fire ``trigger`` on the trading machine and commit (operator commands, risk, health)."""
        journal, trading = self.journal, self.trading
        assert journal is not None
        assert trading is not None
        before = trading.state
        journal.fire(TRADING, trading, trigger, now_ms=self.monotonic_ms(), **data)
        with contextlib.suppress(JournalWriteError):  # health shows it; the retry commits it
            journal.commit()
        if trading.state != before:
            level = logging.INFO if trading.state == TradingState.active else logging.WARNING
            log.log(level, "trading %s -> %s (%s): %s", before, trading.state, trigger, trading.data["reason"])
        self._health_wake.set()
        return trading

    async def _drive_trading(self) -> None:
        """Health that fails halts trading; a halt cancels every open order, then ends halted."""
        trading, finding = self.trading, self.kernel_finding
        if trading is None or self.stopping or self.manager is None:
            return
        if (
            trading.state in (TradingState.active, TradingState.reducing)
            and finding is not None
            and finding.level == HealthState.unhealthy
        ):
            failing = [f for f in self.findings.values() if f.level == HealthState.unhealthy]
            component = failing[0].component if failing else "kernel"
            reason = failing[0].reason if failing else finding.reason
            if component == "journal":
                self.fire_trading("journal_failed", reason=reason or "the journal cannot commit")
            else:
                self.fire_trading("health_unhealthy", component=component, reason=reason or "unhealthy")
        if trading.state == TradingState.halting:
            await self._halt_step()
        elif trading.state == TradingState.halted:
            self._cancel_leftovers()

    def _cancel_leftovers(self) -> None:
        """Halted with orders still working (a halt that timed out, a journal that failed, a
        restart): keep canceling them; cancels always go out while halted."""
        manager = self.manager
        assert manager is not None
        cancel = [
            o.entity_id for o in manager.orders.values() if o.live and o.state in ("accepted", "partially_filled")
        ]
        if not cancel or manager.paused:
            return
        try:
            for request in manager.journal_cancels(cancel):
                self._outbox.put_nowait(request)
        except (OrderError, JournalWriteError) as exc:
            log.debug("halted: %d cancel(s) not sent yet: %s", len(cancel), exc)

    async def _halt_step(self) -> None:
        """One step of the halt sequence: cancel what is open; when nothing is, ``all_canceled``;
        past the deadline, ``timeout``. Cancels are journaled before they are sent, as always."""
        manager, trading = self.manager, self.trading
        assert manager is not None
        assert trading is not None
        live = [o for o in manager.orders.values() if o.live]
        # A pending_new order is canceled once the venue has acked it; pending_cancel ones are on their way.
        cancel = [o.entity_id for o in live if o.state not in ("pending_cancel", "pending_new")]
        if cancel:
            try:
                for request in manager.journal_cancels(cancel):  # one commit for all of them
                    self._outbox.put_nowait(request)
            except (OrderError, JournalWriteError) as exc:
                log.warning("halt: %d cancel(s) not sent yet: %s", len(cancel), exc)
        if not live:
            if trading.data["flatten"] and not trading.data["canceled"]:
                self.fire_trading("all_canceled")
            elif trading.data["flatten"]:
                if all(not p.qty for p in self.positions.snapshot().values()):
                    self.fire_trading("flattened")
                else:
                    self._flatten()
            else:
                self.fire_trading("all_canceled")
            return
        deadline = trading.data["deadline_ms"]
        if deadline is not None and self.monotonic_ms() >= deadline:
            self.fire_trading("timeout")

    def _flatten(self) -> None:
        """Send one market order per open position, in the closing direction (journaled first)."""
        manager = self.manager
        assert manager is not None
        if any(o.live for o in manager.orders.values()):
            return
        for position in self.positions.snapshot().values():
            if not position.qty:
                continue
            side: Side = "sell" if position.qty > 0 else "buy"
            try:
                request = manager.journal_new(
                    OrderTerms(position.instrument, side, abs(position.qty), None, "market", "ioc", "flatten")
                )
            except (OrderError, TransitionRefused, JournalWriteError) as exc:
                log.warning("halt: flattening %s not sent: %s", position.instrument, exc)
                continue
            self._outbox.put_nowait(request)

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: ok when the kernel is healthy or degraded."""
        entity = self.health.get(KERNEL)
        state = str(entity.state) if entity is not None else "starting"
        ok = state in (HealthState.healthy, HealthState.degraded)
        return ok, {
            "status": state,
            "reason": None if entity is None else entity.data.get("reason"),
            "components": {
                name: {
                    "state": str(e.state),
                    "reason": e.data.get("reason"),
                    "pauses_entry": e.data.get("pauses_entry"),
                }
                for name, e in self.health.items()
                if name != KERNEL
            },
        }

    # -- endpoints and control ---------------------------------------------------------------

    def metrics_text(self) -> str:
        """``/metrics``: Prometheus text."""
        states: Counter[str] = Counter()
        if self.manager is not None:
            for order in self.manager.orders.values():
                states[str(order.state)] += 1
        levels = {"healthy": 0, "degraded": 1, "unhealthy": 2}
        feed = self.feed.feed if self.feed is not None else None
        return render(
            self.metrics,
            orders_by_state=states,
            feed_reconnects=self._feed_reconnects,
            feed_gaps=0 if feed is None else int(feed.data.get("gaps", 0)),
            positions=[
                PositionSample(p.instrument, p.qty, p.realized_pnl, self._unrealized(p), p.fees)
                for p in self.positions.snapshot().values()
            ],
            health_level={name: levels.get(str(e.state), 3) for name, e in self.health.items()},
        )

    def _mark(self, instrument: str) -> Decimal | None:
        trade = self.last_trade.get(instrument)
        return None if trade is None else trade.price

    def _unrealized(self, position: Position) -> Decimal:
        mark = self._mark(position.instrument)
        return Decimal(0) if mark is None or not position.qty else position.unrealized_pnl(mark)

    def status(self) -> dict[str, Any]:
        """``/status`` and ``tradekernel status``: a JSON-ready snapshot."""
        from kernel.status import running_status  # the view module imports this one

        return running_status(self)

    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["command"]
        if command == "status":
            return {"ok": True, "status": self.status()}
        if command == "stop":
            reason = str(request.get("reason") or "operator: tradekernel stop")
            self.request_stop(reason, force=bool(request.get("force")))
            return {"ok": True, "stopping": True, "reason": reason}
        if command in ("halt", "reduce", "arm"):
            given = request.get("reason")
            if not isinstance(given, str) or not given.strip():
                return {"ok": False, "error": f"{command} needs a reason"}
            data: dict[str, Any] = {"reason": f"operator: {given}"}
            if command == "halt" and request.get("flatten"):
                data["flatten"] = True
            try:
                self.fire_trading(command, **data)
            except TransitionRefused as exc:
                return {"ok": False, "error": str(exc), "trading": self._trading_status()}
            return {"ok": True, "trading": self._trading_status()}
        return {"ok": False, "error": f"unknown command {command!r} (known: status, stop, halt, reduce, arm)"}

    def _trading_status(self) -> dict[str, Any]:
        trading = self.trading
        if trading is None:
            return {"state": None}
        return {
            "state": str(trading.state),
            "reason": trading.data.get("reason"),
            "flatten": trading.data.get("flatten"),
            "halts": trading.data.get("halts"),
        }

    # -- stopping ---------------------------------------------------------------------------

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
        journal, manager = self.journal, self.manager
        assert journal is not None
        assert manager is not None
        now = self.monotonic_ms()
        for entity in self.health.values():
            with contextlib.suppress(TransitionRefused):
                journal.fire(HEALTH, entity, "stop", now_ms=now, reason=request.reason)
        with contextlib.suppress(JournalWriteError):
            journal.commit()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.kernel.stop_timeout_s):
                await self._outbox.join()  # what was journaled goes out before the cancels
        if self.config.kernel.cancel_on_stop:
            await self._cancel_open_orders()
        self.orders_left_open = [o.entity_id for o in manager.orders.values() if o.live]
        if self.orders_left_open:
            log.warning("%d order(s) still open at stop: %s", len(self.orders_left_open), _some(self.orders_left_open))
        return EXIT_ATTENTION if self.orders_left_open and self.config.kernel.cancel_on_stop else EXIT_OK

    async def _cancel_open_orders(self) -> None:
        manager, client = self.manager, self.client
        assert manager is not None
        assert client is not None
        deadline = asyncio.get_running_loop().time() + self.config.kernel.stop_timeout_s
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
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._stop_event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._stop_event.wait()

    async def _close_everything(self) -> None:
        """Reverse start order; each step runs even if an earlier one failed."""
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
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

    def _close_journal(self, clean: bool) -> None:
        """Close the journal: recording a clean stop, or (``clean=False``) leaving the run open so
        the next start reports the crash and resumes."""
        journal = self.journal
        if journal is None or journal.closed:
            return
        if not clean:
            journal.abandon()
            log.error("run %d ended by an error: left open in the journal for the next start", journal.run_id)
            return
        now = self.monotonic_ms()
        for entity in self.health.values():
            with contextlib.suppress(TransitionRefused):
                if entity.state != HealthState.stopping:
                    journal.fire(HEALTH, entity, "stop", now_ms=now, reason="kernel stopped")
                journal.fire(HEALTH, entity, "stopped", now_ms=now)
        try:
            journal.close()
            log.info("journal %s closed: run %d stopped cleanly", journal.path, journal.run_id)
        except JournalError as exc:
            log.error("the journal could not record the stop: %s (the next start will report a crash)", exc)


def _some(ids: list[str], shown: int = 10) -> str:
    """The first ``shown`` ids, then how many more."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


def run_kernel(config: Config, **options: Any) -> int:
    """Run a kernel in a fresh event loop (the CLI's entry point); return its exit status."""
    kernel = Kernel(config, install_signals=True, **options)
    return asyncio.run(kernel.run())


__all__ = ["EXIT_ATTENTION", "EXIT_OK", "Kernel", "StopRequest", "entity_id", "mono_ms", "run_kernel", "wall_ms"]
