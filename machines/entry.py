"""The order-entry gate: may a new order leave the process now? One pure decision, used by the
kernel's order flow, the order manager and the health assessment alike.

Cancels are never gated here (a cancel only ever reduces risk); replaces and new orders are.
"""

from __future__ import annotations

from dataclasses import dataclass

from machines.health import Finding
from machines.trading import TradingState

RECONCILING = "reconciling with the venue"
"""The block while a connected venue session has not been reconciled yet."""


@dataclass(frozen=True, slots=True)
class EntryFacts:
    """What the gate looks at, gathered by the shell at one instant.

    ``trading_state``/``trading_reason``: the trading entity (``None`` before it exists).
    ``started``: the venue session and order manager exist. ``venue_resolved``: this session was
    reconciled. ``reconcile_error``: why the last reconciliation failed, if it did.
    ``journal_failure``: why the journal cannot commit, if it cannot. ``health``: the kernel's
    overall finding (``None`` before the first assessment: health is still starting).
    """

    stopping: bool = False
    trading_state: str | None = None
    trading_reason: str | None = None
    started: bool = True
    venue_connected: bool = True
    venue_resolved: bool = True
    reconcile_error: str | None = None
    journal_failure: str | None = None
    health: Finding | None = None
    health_checked: bool = True
    """False where the caller does not track health (the order manager): ``health`` is not consulted."""


def venue_block(connected: bool, resolved: bool, reconcile_error: str | None = None) -> str | None:
    """The venue-session part of the gate: down, or up but not yet reconciled, or ``None``."""
    if not connected:
        return "venue session down"
    if not resolved:
        return reconcile_error or RECONCILING
    return None


def entry_block(facts: EntryFacts) -> str | None:
    """Why a new order may not go out now (the first reason that holds), or ``None`` when open.

    In order: the kernel is stopping; trading is halting or halted; not started; the venue
    session is down or not reconciled; the journal cannot commit; health is still starting or
    its finding pauses entry.
    """
    if facts.stopping:
        return "kernel stopping"
    if facts.trading_state in (TradingState.halting, TradingState.halted):
        return f"trading {facts.trading_state}: {facts.trading_reason}"
    if not facts.started:
        return "not started"
    venue = venue_block(facts.venue_connected, facts.venue_resolved, facts.reconcile_error)
    if venue is not None:
        return venue
    if facts.journal_failure is not None:
        return f"journal cannot commit: {facts.journal_failure}"
    if not facts.health_checked:
        return None
    finding = facts.health
    if finding is None:  # not assessed yet (a finding is never ``starting``)
        return "starting"
    if finding.pauses_entry:
        return f"health {finding.level}: {finding.reason}"
    return None
