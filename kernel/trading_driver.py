"""The trading driver: fires the trading machine (operator commands, risk, health) and carries out
the halt sequence.

The decisions are ``machines.halt``'s: ``health_halt`` (failing health halts a running kernel) and
``halt_step`` (cancel what is open, then confirm, flatten, or time out). ``drive()`` gathers the
facts, asks them, and carries the commands out: cancels and flatten orders through the order flow
(journaled before they are sent), triggers on the trading entity (journaled and committed).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kernel.log_fields import transition_fields
from kernel.order_flow import OrderFlow
from kernel.orders import OrderError
from kernel.portfolio import Portfolio
from machines import TRADING, Entity, TradingState, TransitionRefused
from machines.halt import CancelOrders, FireTrading, Flatten, HaltCommand, halt_step, health_halt
from machines.health import Finding
from storage import Journal
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)

OPERATOR_COMMANDS = ("halt", "reduce", "arm")
"""The control commands that fire the trading machine (each needs a reason)."""


class TradingDriver:
    """Owns the trading entity of one kernel. ``wake()`` tells the health monitor to look again."""

    def __init__(
        self,
        journal: Journal,
        trading: Entity,
        portfolio: Portfolio,
        *,
        now_ms: Callable[[], int],
        wake: Callable[[], None],
    ) -> None:
        self.journal = journal
        self.trading = trading
        self.portfolio = portfolio
        self.flow: OrderFlow | None = None
        """Set once the order manager exists: the halt sequence sends through it."""
        self._now_ms = now_ms
        self._wake = wake

    @property
    def state(self) -> str:
        """The trading machine's state."""
        return str(self.trading.state)

    def fire(self, trigger: str, **data: Any) -> Entity:
        """Fire ``trigger`` on the trading machine and commit (operator commands, risk, health).

        Raises ``TransitionRefused`` (nothing changed); a failed commit is left to the health
        monitor (it shows, the retry commits it).
        """
        trading = self.trading
        before = trading.state
        transition = self.journal.fire(TRADING, trading, trigger, now_ms=self._now_ms(), **data)
        with contextlib.suppress(JournalWriteError):  # health shows it; the retry commits it
            self.journal.commit()
        if trading.state != before:
            level = logging.INFO if trading.state == TradingState.active else logging.WARNING
            fields = transition_fields(transition, self.journal.run_id)
            log.log(
                level, "trading %s -> %s (%s): %s", before, trading.state, trigger, trading.data["reason"], extra=fields
            )
        self._wake()
        return trading

    def status(self) -> dict[str, Any]:
        """State, reason, flatten and the number of halts, as status and the control socket show them."""
        data = self.trading.data
        return {
            "state": str(self.trading.state),
            "reason": data.get("reason"),
            "flatten": data.get("flatten"),
            "halts": data.get("halts"),
        }

    def operator(self, command: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """An operator's ``halt``/``reduce``/``arm`` from the control socket: the answer to send."""
        given = request.get("reason")
        if not isinstance(given, str) or not given.strip():
            return {"ok": False, "error": f"{command} needs a reason"}
        data: dict[str, Any] = {"reason": f"operator: {given}"}
        if command == "halt" and request.get("flatten"):
            data["flatten"] = True
        try:
            self.fire(command, **data)
        except TransitionRefused as exc:
            return {"ok": False, "error": str(exc), "trading": self.status()}
        return {"ok": True, "trading": self.status()}

    # -- the halt sequence ----------------------------------------------------------------------------

    def drive(self, kernel_finding: Finding | None, findings: Mapping[str, Finding]) -> None:
        """Health that fails halts trading; a halt cancels every open order, then ends halted."""
        flow = self.flow
        if flow is None:
            return
        halt = health_halt(self.trading, kernel_finding, findings)
        if halt is not None:
            self.fire(halt.trigger, **halt.data)
        manager = flow.manager
        open_orders = {o.entity_id: str(o.state) for o in manager.orders.values() if o.live}
        commands = halt_step(
            self.trading, open_orders, self.portfolio.quantities(), self._now_ms(), venue_ready=not manager.paused
        )
        for command in commands:
            self._carry_out(command, flow)

    def _carry_out(self, command: HaltCommand, flow: OrderFlow) -> None:
        if isinstance(command, CancelOrders):
            try:
                flow.send_cancels(command.client_order_ids)  # one commit for all of them
            except (OrderError, JournalWriteError) as exc:
                count = len(command.client_order_ids)
                if command.phase == "halting":
                    log.warning("halt: %d cancel(s) not sent yet: %s", count, exc)
                else:
                    log.debug("halted: %d cancel(s) not sent yet: %s", count, exc)
        elif isinstance(command, Flatten):
            try:
                flow.send_new(command.terms)
            except (OrderError, TransitionRefused, JournalWriteError) as exc:
                log.warning("halt: flattening %s not sent: %s", command.instrument, exc)
        elif isinstance(command, FireTrading):
            self.fire(command.trigger, **command.data)


__all__ = ["OPERATOR_COMMANDS", "TradingDriver"]
