"""The parts of one kernel and what is read off them: the order-entry gate's facts, the health
observation, the status snapshot, ``/healthz`` and ``/metrics``.

``KernelParts`` holds the parts of a kernel (built from the config in ``__init__``, or while the
process starts: see ``kernel/app.py``) under their public names, and answers the questions that
need several of them at once. The decisions are the machines': ``machines.entry.entry_block``
decides from ``entry_facts()``; ``machines.health`` assesses ``observe()``. It starts and stops
nothing: ``Kernel`` (``kernel/app.py``), the process, is a ``KernelParts``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from kernel import wiring
from kernel.clock import monotonic_ms, wall_ms
from kernel.config import Config
from kernel.control import ControlServer
from kernel.feed.client import FeedClient
from kernel.health_monitor import HealthMonitor
from kernel.http import HttpEndpoints
from kernel.metrics import KernelMetrics
from kernel.net import redact_url
from kernel.order_flow import OrderFlow, Outbox
from kernel.orders import OrderManager
from kernel.portfolio import Portfolio
from kernel.status import running_status
from kernel.stop_sequence import StopControl, StopRequest
from kernel.strategy import Context, Strategy
from kernel.strategy_host import StrategyHost
from kernel.trading_driver import TradingDriver
from kernel.venue_session import VenueSession
from kernel.views import FeedSnapshot, KernelSnapshot, metrics_text, orders_of
from kernel.watchers import Watchers
from machines import Entity
from machines.entry import RECONCILING, EntryFacts, entry_block, venue_block
from machines.health import Finding, Observation
from storage import Journal

if TYPE_CHECKING:  # psycopg and tenacity only when shipping
    from kernel.ship import ShipperThread


class PartsOptions(TypedDict, total=False):
    """The optional keyword arguments of ``KernelParts`` (and so of ``Kernel``)."""

    strategy: Strategy | None
    clock_ms: Callable[[], int]
    monotonic_ms: Callable[[], int]
    install_signals: bool


class KernelParts:
    """A kernel's parts by name, and the views over them (see the module docstring).

    ``strategy`` overrides the configured one; ``clock_ms`` is the strategy's clock,
    ``monotonic_ms`` the machines' (timers, health); ``install_signals``: SIGINT/SIGTERM stop it.
    """

    def __init__(
        self,
        config: Config,
        *,
        strategy: Strategy | None = None,
        clock_ms: Callable[[], int] = wall_ms,
        monotonic_ms: Callable[[], int] = monotonic_ms,
        install_signals: bool = False,
    ) -> None:
        self.config = config
        self.clock_ms = clock_ms
        self.monotonic_ms = monotonic_ms
        strategy = wiring.strategy_of(config, strategy)
        self.metrics = KernelMetrics()
        self.limits = config.risk.limits
        self.portfolio = Portfolio()
        self.outbox = Outbox()
        self.stops = StopControl(install_signals)
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
        self.host.on_order_while_stopping = self.stops.event.set
        # built while starting (None until then)
        self.journal: Journal | None = None
        self.shipper: ShipperThread | None = None
        """The in-run shipper (``[ship] url``), in its own thread."""
        self.driver: TradingDriver | None = None
        self.monitor: HealthMonitor | None = None
        self.venue: wiring.EmbeddedVenue | None = None
        self.client: wiring.KernelClient | None = None
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
        self.feed_reconnects = 0

    # -- what the parts hold, by name -----------------------------------------------------------------

    @property
    def strategy(self) -> Strategy:
        """The strategy this kernel hosts."""
        return self.host.strategy

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
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.stops.stopping

    @property
    def stop_request(self) -> StopRequest | None:
        """Why the kernel is stopping (``None`` until a stop is requested)."""
        return self.stops.request

    # -- the gate and health -------------------------------------------------------------------------

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
            reconcile_error=None if self.session is None else self.session.reconcile_error,
            journal_failure=None if journal is None or journal.failure is None else str(journal.failure),
            health=self.kernel_finding,
        )

    def entry_block(self) -> str | None:
        """Why a new order may not go out now, or ``None`` when order entry is open."""
        return entry_block(self.entry_facts())

    def context(self) -> Context:
        """What the strategy sees now."""
        return self.host.context()

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
            venue_rate_limited=self.flow is not None and self.flow.backoff.paused(self.monotonic_ms()),
        )

    # -- views --------------------------------------------------------------------------------------

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: ok when the kernel is healthy or degraded."""
        if self.monitor is None:
            return False, {"status": "starting", "reason": None, "components": {}}
        return self.monitor.healthz()

    def snapshot(self) -> KernelSnapshot:
        """Everything the views show, at this instant."""
        journal, client, feed, metrics = self.journal, self.client, self.feed, self.metrics
        ok, health = self.healthz()
        open_orders, by_state = orders_of(self.manager.orders.values() if self.manager is not None else ())
        for state, ended in ({} if self.manager is None else self.manager.ended).items():  # they left memory
            by_state[state] = by_state.get(state, 0) + ended
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
            feed=None if feed is None else FeedSnapshot.of(feed.feed, self.feed_reconnects),
            last_trade=dict(self.portfolio.last_trade),
            last_quote=dict(self.portfolio.last_quote),
            venue_url=redact_url(self.venue_url),
            venue_embedded=self.venue is not None,
            venue_connected=client is not None and client.connected,
            venue_session=None if client is None else client.session,
            strategy_name=self.host.name,
            strategy_errors=metrics.strategy_errors,
            intents=dict(metrics.intents),
            denied=metrics.denied,
            fills=metrics.fills,
            open_orders=open_orders,
            orders_by_state=by_state,
            positions=dict(self.portfolio.positions.snapshot()),
            control_socket=None if self.control is None else self.control.path,
            http_url=None if self.http is None else self.http.url,
            last_run=self.previous_run,
            reconciliation=None if self.session is None else self.session.last_reconciliation,
            venue_balances=None if client is None or client.last_balances is None else tuple(client.last_balances),
            ship=None if self.shipper is None else self.shipper.lag(),
        )

    def status(self) -> dict[str, Any]:
        """``/status`` and ``tradekernel status``: a JSON-ready snapshot."""
        return running_status(self.snapshot())

    def metrics_text(self) -> str:
        """``/metrics``: Prometheus text."""
        return metrics_text(self.snapshot(), self.metrics)


__all__ = ["KernelParts", "PartsOptions", "StopRequest"]
