"""Order flow: a strategy's intent -> the entry gate -> the risk checks -> the journal -> the outbox.

``OrderFlow.act(intent)`` handles one intent synchronously: a ``Place`` goes out only when the
order-entry gate (``machines.entry``, asked through ``entry_block``) is open and the risk checks
(``machines.risk.check_new``) pass; otherwise it is journaled as a denied order with the reason.
Cancels and replaces are checked by risk too (a refusal is journaled as an anomaly, source
``risk``). Whatever passes is journaled (committed) by the order manager and queued on the
``Outbox``, whose task sends the requests in the order they were journaled. The kernel's own orders
(stops, the halt's cancels and flatten orders) take the same journal -> outbox path.

A ``rate_limited`` answer from the venue (its order ended by the order manager, never resent) is
journaled as an anomaly (source ``risk``, kind ``venue_rate_limited``) and pauses new orders and
replaces for the venue's ``retry_after_ms`` (``machines.risk_backoff``): meanwhile a new order is
denied (check ``venue_rate_limit``) and a replace refused; cancels still go out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kernel.faults import crash_point
from kernel.metrics import KernelMetrics
from kernel.orders import (
    OrderEntryPaused,
    OrderError,
    OrderManager,
    OrderNotSent,
    OrderUnresolved,
    Request,
    UnknownOrder,
)
from kernel.paper_protocol import Error
from kernel.portfolio import Portfolio
from kernel.strategy import Cancel, Intent, Place, Replace
from kernel.tick_probe import PROBE
from machines import TransitionRefused
from machines.order_terms import OrderTerms
from machines.risk import Denial, Limits, Rates, check_cancel, check_new, check_replace
from machines.risk_backoff import VenueBackoff
from storage import Journal
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)


class Outbox:
    """Journaled requests waiting to be sent, in journal order; ``run`` is the sending task."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Request] = asyncio.Queue()

    def put(self, request: Request) -> None:
        """Queue one committed request."""
        self._queue.put_nowait(request)

    async def join(self) -> None:
        """Wait until every queued request has been handed to the venue session."""
        await self._queue.join()

    async def run(self, manager: OrderManager) -> None:
        """Send queued requests forever (a request the venue refused is logged, not fatal)."""
        while True:
            request = await self._queue.get()
            if request.kind == "new":
                crash_point("after_commit")
            try:
                await manager.send(request)
                if request.kind == "new":
                    crash_point("after_send")
            except OrderNotSent as exc:
                log.warning("%s", exc)
            finally:
                self._queue.task_done()


class OrderFlow:
    """Carries intents and the kernel's own orders from decision to the outbox.

    ``entry_block()`` says why a new order may not go out now (``None``: open);
    ``trading_state()`` the trading machine's state, for the risk view; ``wake()`` tells the
    health monitor to look again (a journal failure).
    """

    def __init__(
        self,
        manager: OrderManager,
        journal: Journal,
        outbox: Outbox,
        portfolio: Portfolio,
        metrics: KernelMetrics,
        limits: Limits,
        *,
        entry_block: Callable[[], str | None],
        trading_state: Callable[[], str],
        now_ms: Callable[[], int],
        wake: Callable[[], None],
    ) -> None:
        self.manager = manager
        self.journal = journal
        self.outbox = outbox
        self.portfolio = portfolio
        self.metrics = metrics
        self.limits = limits
        self.rates = Rates()
        self.backoff = VenueBackoff()
        """Until when the venue's ``rate_limited`` answers pause new orders and replaces."""
        manager.reports.on_rate_limited = self.venue_rate_limited
        self.denial_journal_skips = 0
        """Denials not journaled because the journal could not commit (no growing backlog)."""
        self._entry_block = entry_block
        self._trading_state = trading_state
        self._now_ms = now_ms
        self._wake = wake

    # -- a strategy's intents ---------------------------------------------------------------------

    def act(self, intent: Intent) -> None:
        """Journal one intent (or its denial); the send is queued for the outbox task."""
        self.metrics.intents[type(intent).__name__.lower()] += 1
        try:
            if isinstance(intent, Place):
                self._place(intent)
            elif isinstance(intent, Cancel):
                self._cancel(intent)
            else:
                self._replace(intent)
        except (OrderEntryPaused, UnknownOrder, TransitionRefused) as exc:
            self.metrics.intents["refused"] += 1
            log.info("intent %r not executed: %s", intent, exc)
        except OrderUnresolved as exc:  # never retried blindly: the status query settles the order
            self.metrics.intents["refused"] += 1
            log.warning("intent %r not executed: %s", intent, exc)
        except JournalWriteError as exc:
            log.error("intent %r not executed: journal commit failed: %s", intent, exc)
            self._wake()

    def venue_rate_limited(self, error: Error) -> None:
        """The venue refused a request as ``rate_limited``: back off for its ``retry_after_ms``."""
        self.backoff = self.backoff.rate_limited(self._now_ms(), error.retry_after_ms, error.message)
        detail = f"{error.client_order_id}: {error.ref} refused; new orders paused until {self.backoff.until_ms} ms"
        self.journal.record_anomaly("risk", "venue_rate_limited", detail, repr(error))
        log.warning("venue rate limited (%s); new orders paused until %d ms", error.message, self.backoff.until_ms)
        # No wake: health sees the pause at its next pass (0.25 s); waking it would make a halt
        # resend its refused cancels at once, again and again, while the venue's bucket is empty.

    def _place(self, terms: OrderTerms) -> None:
        block = self._entry_block()
        if block is None and (paused := self.backoff.block(self._now_ms())) is not None:
            self._deny(terms, paused, check="venue_rate_limit")
            return
        if block is None:
            view = self.portfolio.risk_view(self._trading_state())
            denial = check_new(terms, view, self.limits, self._now_ms(), self.rates)
            if denial is not None:
                self._deny(terms, denial.reason, check=denial.check)
                return
            try:
                request = self.manager.journal_new(terms)
            except OrderEntryPaused as exc:
                block = exc.reason
            else:
                self.rates = self.rates.record_order(self._now_ms(), self.limits)
                self.outbox.put(request)
                if PROBE is not None:  # a benchmark's tick-to-send stamps (kernel.tick_probe)
                    PROBE.order_queued(request.order.entity_id)
                return
        self._deny(terms, f"order entry paused: {block}", check="order_entry")

    def _cancel(self, intent: Cancel) -> None:
        view = self.portfolio.risk_view(self._trading_state())
        denial = check_cancel(view, self.limits, self._now_ms(), self.rates)
        if denial is not None:
            self._refuse(intent, denial)
            return
        self.outbox.put(self.manager.journal_cancel(intent.client_order_id))
        self.rates = self.rates.record_cancel(self._now_ms(), self.limits)

    def _replace(self, intent: Replace) -> None:
        paused = self.backoff.block(self._now_ms())
        if paused is not None:
            self._refuse(intent, Denial("venue_rate_limit", paused))
            return
        order = self.portfolio.open_views.get(intent.client_order_id)
        if order is not None:
            view = self.portfolio.risk_view(self._trading_state())
            denial = check_replace(order, intent.qty, intent.price, view, self.limits, self._now_ms(), self.rates)
            if denial is not None:
                self._refuse(intent, denial)
                return
        self.outbox.put(self.manager.journal_replace(intent.client_order_id, intent.qty, intent.price))
        self.rates = self.rates.record_order(self._now_ms(), self.limits)

    def _refuse(self, intent: Cancel | Replace, denial: Denial) -> None:
        """A cancel or replace the risk checks refused: it names a live order, so there is no new
        order to deny; it is recorded as an anomaly (source ``risk``) and logged."""
        self.metrics.intents["refused"] += 1
        self.journal.record_anomaly("risk", denial.check, denial.reason, repr(intent))
        log.warning("%s of %s refused: %s", type(intent).__name__, intent.client_order_id, denial.reason)

    def _deny(self, terms: OrderTerms, reason: str, **details: Any) -> None:
        self.metrics.denied += 1
        if self.journal.failure is not None:
            # No audit, no trade, and no growing backlog of denials while the journal is down.
            self.denial_journal_skips += 1
            return
        self.manager.deny(terms, reason=reason, **details)

    # -- the kernel's own orders ------------------------------------------------------------------

    def send_new(self, terms: OrderTerms) -> None:
        """Journal the kernel's own new order (a stop, a flatten) and queue it; no gate, no risk.

        Raises what ``journal_new`` raises (``OrderError``, ``TransitionRefused``, ``JournalWriteError``).
        """
        self.outbox.put(self.manager.journal_new(terms))

    def send_cancels(self, client_order_ids: Iterable[str]) -> int:
        """Journal cancels for these orders in one commit and queue them; how many.

        Raises ``OrderError`` (entry paused, unknown order) and ``JournalWriteError``.
        """
        requests = self.manager.journal_cancels(client_order_ids)
        for request in requests:
            self.outbox.put(request)
        return len(requests)


__all__ = ["OrderError", "OrderFlow", "Outbox"]
