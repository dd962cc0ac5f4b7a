"""The order-entry gate (``machines.entry``): every branch of ``entry_block`` and ``venue_block``,
the first reason that holds winning, with the expected reasons written out by hand."""

from __future__ import annotations

import pytest

from machines.entry import RECONCILING, EntryFacts, entry_block, venue_block
from machines.health import Finding, HealthState

HEALTHY = Finding("kernel", HealthState.healthy, None, False)
DEGRADED_OPEN = Finding("kernel", HealthState.degraded, "strategy: 1 error", False)
DEGRADED_PAUSED = Finding("kernel", HealthState.degraded, "feed: feed stale", True)
UNHEALTHY = Finding("kernel", HealthState.unhealthy, "journal: disk full", True)
OPEN = EntryFacts(trading_state="active", trading_reason=None, health=HEALTHY)


@pytest.mark.parametrize(
    ("connected", "resolved", "error", "expected"),
    [
        (False, False, None, "venue session down"),
        (False, True, None, "venue session down"),
        (False, False, "reconciliation failed: x", "venue session down"),
        (True, False, None, "reconciling with the venue"),
        (True, False, "reconciliation failed: timeout", "reconciliation failed: timeout"),
        (True, True, None, None),
        (True, True, "reconciliation failed: stale", None),
    ],
)
def test_venue_block(connected: bool, resolved: bool, error: str | None, expected: str | None) -> None:
    assert venue_block(connected, resolved, error) == expected


def test_reconciling_is_the_text_the_gate_gives() -> None:
    assert RECONCILING == "reconciling with the venue"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"trading_state": None}, None),  # no trading entity yet: nothing halts
        ({"trading_state": "reducing", "trading_reason": "operator: cut"}, None),  # risk decides what reduces
        ({"health": DEGRADED_OPEN}, None),
        # the first reason that holds, in the gate's order
        ({"stopping": True, "trading_state": "halted", "started": False}, "kernel stopping"),
        (
            {"trading_state": "halting", "trading_reason": "operator: x", "started": False},
            "trading halting: operator: x",
        ),
        (
            {"trading_state": "halted", "trading_reason": "journal failed: disk", "venue_connected": False},
            "trading halted: journal failed: disk",
        ),
        ({"started": False, "venue_connected": False}, "not started"),
        ({"venue_connected": False, "journal_failure": "readonly"}, "venue session down"),
        ({"venue_resolved": False, "journal_failure": "readonly"}, "reconciling with the venue"),
        ({"venue_resolved": False, "reconcile_error": "reconciliation failed: boom"}, "reconciliation failed: boom"),
        (
            {"journal_failure": "attempt to write a readonly database", "health": None},
            ("journal cannot commit: attempt to write a readonly database"),
        ),
        ({"health": None}, "starting"),
        ({"health": DEGRADED_PAUSED}, "health degraded: feed: feed stale"),
        ({"health": UNHEALTHY}, "health unhealthy: journal: disk full"),
        # a caller that does not track health (the order manager) is not blocked by it
        ({"health": None, "health_checked": False}, None),
        ({"health": UNHEALTHY, "health_checked": False}, None),
        ({"health": UNHEALTHY, "health_checked": False, "venue_resolved": False}, "reconciling with the venue"),
    ],
)
def test_entry_block(changes: dict[str, object], expected: str | None) -> None:
    fields = {
        "stopping": OPEN.stopping,
        "trading_state": OPEN.trading_state,
        "trading_reason": OPEN.trading_reason,
        "started": OPEN.started,
        "venue_connected": OPEN.venue_connected,
        "venue_resolved": OPEN.venue_resolved,
        "reconcile_error": OPEN.reconcile_error,
        "journal_failure": OPEN.journal_failure,
        "health": OPEN.health,
        "health_checked": OPEN.health_checked,
        **changes,
    }
    assert entry_block(EntryFacts(**fields)) == expected  # type: ignore[arg-type]


def test_the_defaults_are_an_open_gate_but_for_health() -> None:
    assert entry_block(EntryFacts()) == "starting"
    assert entry_block(EntryFacts(health=HEALTHY)) is None
