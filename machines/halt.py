"""The halt driver's decisions: when failing health halts trading, and what a halt does next.

Pure functions over the trading entity and the facts the shell gathers (its open orders, its
positions, ``now_ms``); they return commands and never fire, journal or send anything. The shell
carries the commands out in order (cancels and flatten orders are journaled before they are sent,
as always) and calls again on its next pass: the halt sequence advances one step per call.

* ``health_halt(trading, kernel_finding, findings)``: a running kernel (``active``/``reducing``)
  whose health is ``unhealthy`` halts: ``journal_failed`` when the journal is the failing
  component (no audit, no trade), else ``health_unhealthy`` naming the first failing component.
* ``halt_step(trading, open_orders, positions, now_ms, venue_ready)``: while ``halting``, cancel
  every open order that can be canceled; once none is open, ``all_canceled``, then (a flattening
  halt) one closing market order per open position and ``flattened`` once all are flat; past the
  deadline, ``timeout``. While ``halted``, keep canceling what is still working (a halt that timed
  out, a journal that failed, a restart) whenever the venue session is ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from machines.base import Entity
from machines.health import Finding, HealthState
from machines.order_terms import OrderTerms, Side
from machines.trading import TradingState, is_halted_or_halting, next_timeout

FLATTEN_TAG = "flatten"
"""The tag of the closing market orders a flattening halt sends."""
UNCANCELABLE = ("pending_cancel", "pending_new")
"""Open orders a halting kernel does not cancel (yet): pending_new ones once the venue acked them,
pending_cancel ones are on their way already."""
WORKING = ("accepted", "partially_filled")
"""Open orders a halted kernel keeps canceling."""


@dataclass(frozen=True, slots=True)
class CancelOrders:
    """Journal a cancel for each of these orders (one commit), then send them.

    ``phase`` says which part of the sequence asked: ``halting`` (a failure is worth a warning) or
    ``halted`` (the leftovers of an earlier halt; retried on every pass).
    """

    client_order_ids: tuple[str, ...]
    phase: Literal["halting", "halted"]


@dataclass(frozen=True, slots=True)
class Flatten:
    """Close the position in ``instrument``: a market IOC order of ``qty`` on ``side``."""

    instrument: str
    side: Side
    qty: Decimal

    @property
    def terms(self) -> OrderTerms:
        """The closing order's terms (tag ``flatten``)."""
        return OrderTerms(self.instrument, self.side, self.qty, None, "market", "ioc", FLATTEN_TAG)


@dataclass(frozen=True, slots=True)
class FireTrading:
    """Fire ``trigger`` on the trading entity with ``data`` (the shell adds ``now_ms``)."""

    trigger: str
    data: Mapping[str, Any] = field(default_factory=dict)


HaltCommand = CancelOrders | Flatten | FireTrading


def health_halt(trading: Entity, kernel_finding: Finding | None, findings: Mapping[str, Finding]) -> FireTrading | None:
    """The trigger that halts a running kernel whose health is unhealthy, else ``None``.

    The first unhealthy component (in ``findings`` order) is named; the journal's failure halts
    with ``journal_failed``. Raises ``NotATradingEntity`` for another machine's entity.
    """
    if is_halted_or_halting(trading) or kernel_finding is None or kernel_finding.level != HealthState.unhealthy:
        return None
    failing = [f for f in findings.values() if f.level == HealthState.unhealthy]
    component = failing[0].component if failing else "kernel"
    reason = failing[0].reason if failing else kernel_finding.reason
    if component == "journal":
        return FireTrading("journal_failed", {"reason": reason or "the journal cannot commit"})
    return FireTrading("health_unhealthy", {"component": component, "reason": reason or "unhealthy"})


def halt_step(
    trading: Entity,
    open_orders: Mapping[str, str],
    positions: Mapping[str, Decimal],
    now_ms: int,
    *,
    venue_ready: bool = True,
) -> list[HaltCommand]:
    """What the halt sequence does next, in order; ``[]`` outside a halt or when it waits.

    ``open_orders``: client order id -> order state, of the live orders. ``positions``:
    instrument -> signed quantity. ``venue_ready``: the venue session is up and reconciled (a
    halted kernel only retries its cancels then). Raises ``NotATradingEntity`` for another
    machine's entity.
    """
    if not is_halted_or_halting(trading):
        return []
    if trading.state == TradingState.halted:
        leftovers = tuple(i for i, state in open_orders.items() if state in WORKING)
        return [CancelOrders(leftovers, "halted")] if leftovers and venue_ready else []
    commands: list[HaltCommand] = []
    cancel = tuple(i for i, state in open_orders.items() if state not in UNCANCELABLE)
    if cancel:
        commands.append(CancelOrders(cancel, "halting"))
    if not open_orders:
        if not trading.data["flatten"] or not trading.data["canceled"]:
            commands.append(FireTrading("all_canceled"))
        elif all(not qty for qty in positions.values()):
            commands.append(FireTrading("flattened"))
        else:
            commands.extend(
                Flatten(instrument, "sell" if qty > 0 else "buy", abs(qty))
                for instrument, qty in positions.items()
                if qty
            )
        return commands
    deadline = next_timeout(trading)
    if deadline is not None and now_ms >= deadline:
        commands.append(FireTrading("timeout"))
    return commands


__all__ = [
    "FLATTEN_TAG",
    "CancelOrders",
    "FireTrading",
    "Flatten",
    "HaltCommand",
    "halt_step",
    "health_halt",
]
