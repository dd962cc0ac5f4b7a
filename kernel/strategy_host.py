"""The strategy host: builds each ``Context``, runs the strategy's callbacks, acts on their intents.

A callback's intents are acted on at once (journaled before the next callback sees a
``Context``). Order updates that arrive while intents are being acted on (the order manager tells
its listeners after each commit) are deferred and told to ``on_order`` afterwards, by the
outermost call, in a loop: never recursively, so a burst of orders from one callback cannot
exhaust the stack. A callback that raises is counted (health) and logged, never fatal; its
intents of that call are dropped. Errors are logged without flooding (``ErrorLog``): the first of
each distinct error (callback, exception type, where it was raised) whole with its traceback, then
repeats only counted and summarised every ``REPEAT_WINDOW_MS``; each first error and each summary
is journaled as an anomaly (source ``strategy``).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from kernel.clock import monotonic_ms
from kernel.feed.events import FeedEvent, QuoteEvent, TradeEvent
from kernel.metrics import KernelMetrics
from kernel.orders import OrderManager
from kernel.portfolio import Portfolio
from kernel.strategy import (
    Cancel,
    Context,
    FillView,
    Intent,
    InvalidIntent,
    OrderUpdate,
    OrderView,
    Place,
    Replace,
    Strategy,
)
from machines import Entity, Transition
from machines.order import live_trigger
from machines.positions import Position

log = logging.getLogger(__name__)

Callback = Callable[[Context], Iterable[Intent] | None]
REPEAT_WINDOW_MS = 10_000
"""How often repeats of one strategy error are summarised (logged and journaled)."""
ErrorKey = tuple[str, str, str]
"""A distinct strategy error: the callback, the exception type, where it was raised (file:line)."""


@dataclass(slots=True)
class _Repeats:
    since_ms: int
    count: int = 0


class ErrorLog:
    """Logs a strategy's callback errors without flooding the log or the journal.

    The first of each distinct error (``ErrorKey``) is logged whole, with its traceback, and
    journaled; its repeats are counted and, once ``window_ms`` has passed, summarised in one line
    (``strategy on_timer raised ValueError 251 more times in the last 10 s``) and one anomaly. An
    error quiet for a whole window is forgotten: its next occurrence is logged whole again.
    ``record(kind, reason, sample)`` journals an anomaly (a no-op until the host is attached).
    """

    def __init__(self, monotonic: Callable[[], int] = monotonic_ms, window_ms: int = REPEAT_WINDOW_MS) -> None:
        self._monotonic = monotonic
        self.window_ms = window_ms
        self.record: Callable[[str, str, str], None] = lambda kind, reason, sample: None
        self._seen: dict[ErrorKey, _Repeats] = {}
        self._pending = 0

    def error(self, callback: str, exc: Exception, in_a_row: int) -> None:
        """One callback error: logged whole if it is new, else counted."""
        now = self._monotonic()
        key = (callback, type(exc).__name__, _where(exc))
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Repeats(now)
            log.error("strategy %s failed (%d in a row)", callback, in_a_row, exc_info=exc)
            text = "".join(traceback.format_exception(exc))
            self.record("callback_error", f"{callback} raised {type(exc).__name__}: {exc}", text)
        else:
            seen.count += 1
            self._pending += 1
        self.flush(now)

    def flush(self, now: int | None = None) -> None:
        """Summarise the repeats whose window has passed; forget errors quiet for a whole window."""
        if not self._seen:
            return
        now = self._monotonic() if now is None else now
        for key, seen in list(self._seen.items()):
            elapsed = now - seen.since_ms
            if elapsed < self.window_ms:
                continue
            if not seen.count:
                del self._seen[key]
                continue
            callback, kind, where = key
            summary = f"{callback} raised {kind} {seen.count} more times in the last {elapsed / 1000:g} s"
            log.error("strategy %s (first raised at %s)", summary, where)
            self.record("callback_error_repeats", summary, where)
            self._pending -= seen.count
            seen.since_ms, seen.count = now, 0

    @property
    def pending(self) -> int:
        """Repeats counted and not yet summarised."""
        return self._pending


def _where(exc: BaseException) -> str:
    """Where ``exc`` was raised: ``file:line`` of its innermost frame."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class StrategyHost:
    """Hosts one strategy. ``act`` carries out one intent (the order flow); ``on_trade`` runs after
    the strategy saw a trade (the stop and loss watchers); ``on_order_while_stopping`` is told of
    every order change once the kernel stops (the stop sequence waits on it); ``wake`` tells the
    health monitor to look again."""

    def __init__(
        self,
        strategy: Strategy,
        portfolio: Portfolio,
        metrics: KernelMetrics,
        *,
        clock_ms: Callable[[], int],
        entry_block: Callable[[], str | None],
        stopping: Callable[[], bool],
        wake: Callable[[], None],
        monotonic: Callable[[], int] = monotonic_ms,
    ) -> None:
        self.strategy = strategy
        self.portfolio = portfolio
        self.metrics = metrics
        self.errors = 0
        """Consecutive callback errors (a success resets it)."""
        self.last_error: str | None = None
        self.error_log = ErrorLog(monotonic)
        """Callback errors, logged and journaled without flooding."""
        self.act: Callable[[Intent], None] = _not_started
        self.on_trade: Callable[[str, Decimal], None] = lambda instrument, price: None
        self.on_order_while_stopping: Callable[[], None] = lambda: None
        self.manager: OrderManager | None = None
        self._clock_ms = clock_ms
        self._entry_block = entry_block
        self._stopping = stopping
        self._wake = wake
        self._acting = 0
        self._draining = False
        self._deferred: deque[OrderUpdate] = deque()
        self._reads = _Now(self)

    @property
    def name(self) -> str:
        """The strategy's name (its class name when it has none)."""
        return type(self.strategy).name or type(self.strategy).__name__

    def attach(self, manager: OrderManager) -> None:
        """Follow ``manager``'s orders: their views now, and every committed change from now on."""
        self.manager = manager
        self.error_log.record = lambda kind, reason, sample: manager.journal.record_anomaly(
            "strategy", kind, reason, sample
        )
        for order in manager.orders.values():
            self.portfolio.record_order(order)
        manager.listeners.append(self.on_order)

    def context(self) -> Context:
        """What the strategy sees now (every field read at once)."""
        context = Context.reading(self._clock_ms(), self._reads)
        context.seal()
        return context

    # -- callbacks ----------------------------------------------------------------------------------

    def start(self) -> None:
        """``on_start``."""
        self.call("on_start", self.strategy.on_start)

    def timer(self) -> None:
        """``on_timer``."""
        self.call("on_timer", self.strategy.on_timer)

    async def run_timer(self, interval_ms: int) -> None:
        """Call ``on_timer`` every ``interval_ms`` until the kernel stops."""
        while not self._stopping():
            await asyncio.sleep(interval_ms / 1000)
            if not self._stopping():
                self.timer()

    def on_market(self, event: FeedEvent) -> None:
        """The feed's event callback: remember it, tell the strategy, then the watchers."""
        kind = self.portfolio.record_market(event)
        self.metrics.on_feed_message(kind or type(event).__name__, getattr(event, "instrument", None), self._clock_ms())
        if kind is None or self._stopping():
            return
        self.call("on_market", lambda ctx: self.strategy.on_market(event, ctx))  # type: ignore[arg-type]
        if isinstance(event, TradeEvent):
            self.on_trade(event.instrument, event.price)

    def call(self, callback: str, call: Callback) -> None:
        """Run one strategy callback and act on its intents at once (journaled before the next
        callback sees a ``Context``). An exception is counted and logged, never fatal."""
        context = Context.reading(self._clock_ms(), self._reads)  # fields read on first use
        kept = weakref.ref(context)
        try:
            intents = list(call(context) or ())
            for intent in intents:
                if not isinstance(intent, Place | Cancel | Replace):
                    raise InvalidIntent(f"{callback} returned {intent!r}, not a Place, Cancel or Replace")
        except Exception as exc:
            del context
            _seal_if_kept(kept)
            self.errors += 1
            self.last_error = f"{callback}: {type(exc).__name__}: {exc}"
            self.metrics.strategy_errors += 1
            self.error_log.error(callback, exc, self.errors)
            self._wake()
            return
        del context
        _seal_if_kept(kept)  # before its intents change anything
        if self.error_log.pending:
            self.error_log.flush()
        if self.errors:
            self.errors = 0
            self._wake()
        self._acting += 1
        try:
            for intent in intents:
                self.act(intent)
        finally:
            self._acting -= 1
        if self._acting or self._draining:
            return  # the outermost call tells the deferred updates, in a loop: never recursively
        self._draining = True
        try:
            while self._deferred:
                self._tell(self._deferred.popleft())
        finally:
            self._draining = False

    # -- order updates ------------------------------------------------------------------------------

    def on_order(self, order: Entity, transition: Transition) -> None:
        """Order listener (after each commit): open-order views, positions, the strategy."""
        view = self.portfolio.record_order(order)
        fill: FillView | None = None
        if live_trigger(transition.trigger) == "fill" and "trade_id" in transition.data:
            positions = self.manager.positions if self.manager is not None else {}
            position = positions.get(order.data["instrument"])
            if position is not None and position.data["last_trade_id"] == transition.data["trade_id"]:
                # a new fill (a duplicate report leaves the position as it was): folded already
                self.metrics.fills = self.portfolio.refold(positions.values())
                data = transition.data
                fill = FillView(data["qty"], data["price"], data.get("fee") or Decimal(0), data["trade_id"])
        if self._stopping():
            self.on_order_while_stopping()  # the stop sequence waits for exactly this: an order changed
            return
        if transition.trigger == "create":
            return
        update = OrderUpdate(
            view or OrderView.of(order), transition.trigger, str(transition.source), fill, transition.data.get("reason")
        )
        if self._acting:  # told after the intents being journaled now: never re-entrant
            self._deferred.append(update)
        else:
            self._tell(update)

    def _tell(self, update: OrderUpdate) -> None:
        self.call("on_order", lambda ctx: self.strategy.on_order(update, ctx))


class _Now:
    """What a callback's ``Context`` reads on first use: the kernel's state at that moment."""

    __slots__ = ("_host",)

    def __init__(self, host: StrategyHost) -> None:
        self._host = host

    def trading_allowed(self) -> bool:
        return self._host._entry_block() is None

    def positions(self) -> Mapping[str, Position]:
        return self._host.portfolio.positions.snapshot()

    def open_orders(self) -> Mapping[str, OrderView]:
        return MappingProxyType(dict(self._host.portfolio.open_views))

    def last_trade(self) -> Mapping[str, TradeEvent]:
        return MappingProxyType(dict(self._host.portfolio.last_trade))

    def last_quote(self) -> Mapping[str, QuoteEvent]:
        return MappingProxyType(dict(self._host.portfolio.last_quote))


def _seal_if_kept(kept: weakref.ref[Context]) -> None:
    """A context the callback kept (a reference outlives the call) reads what it has not read yet,
    so that it keeps showing the instant of its callback; one nobody kept is gone already."""
    context = kept()
    if context is not None:
        context.seal()


def _not_started(intent: Intent) -> None:
    log.info("intent %r not executed: the kernel has not started", intent)


__all__ = ["REPEAT_WINDOW_MS", "ErrorLog", "StrategyHost"]
