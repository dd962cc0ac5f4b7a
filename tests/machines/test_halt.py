"""The halt driver's decisions (``machines.halt``): every branch of ``health_halt`` and ``halt_step``,
with the commands each situation must give written out by hand."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from machines import HEALTH, Entity
from machines.halt import CancelOrders, FireTrading, Flatten, halt_step, health_halt
from machines.health import Finding, HealthState
from machines.order_terms import OrderTerms
from machines.trading import ENTITY_ID, TRADING, NotATradingEntity


def trading(situation: str) -> Entity:
    """The trading entity in ``situation``; a halt started at 100 ms has its deadline at 1_100 ms.

    ``halting``: cancels pending, no flatten; ``halting_flatten``: cancels pending, then flatten;
    ``halting_canceled``: canceled, flattening; ``halted``: after ``all_canceled`` of a plain halt.
    """
    entity, _ = TRADING.create(ENTITY_ID, now_ms=1)
    if situation == "reducing":
        TRADING.fire(entity, "reduce", now_ms=2, reason="wind down")
    if situation.startswith(("halting", "halted")):
        flatten = situation in ("halting_flatten", "halting_canceled")
        TRADING.fire(entity, "halt", now_ms=100, reason="stop", flatten=flatten, timeout_ms=1_000)
        if situation in ("halting_canceled", "halted"):
            TRADING.fire(entity, "all_canceled", now_ms=200)
    return entity


def finding(component: str, level: str, reason: str | None = None) -> Finding:
    return Finding(component, HealthState(level), reason, level != "healthy")


HEALTHY = finding("kernel", "healthy")


# -- health_halt ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("situation", "overall", "findings", "expected"),
    [
        ("active", None, {}, None),  # not assessed yet
        ("active", HEALTHY, {}, None),
        ("active", finding("kernel", "degraded", "feed: stale"), {"feed": finding("feed", "degraded", "stale")}, None),
        (
            "active",
            finding("kernel", "unhealthy", "feed: gone"),
            {"venue": finding("venue", "degraded", "slow"), "feed": finding("feed", "unhealthy", "gone")},
            FireTrading("health_unhealthy", {"component": "feed", "reason": "gone"}),
        ),
        (
            "reducing",
            finding("kernel", "unhealthy", "journal: disk"),
            {"journal": finding("journal", "unhealthy", "disk"), "feed": finding("feed", "unhealthy", "gone")},
            FireTrading("journal_failed", {"reason": "disk"}),
        ),
        (
            "active",
            finding("kernel", "unhealthy", "whole kernel"),
            {},  # no component says it: the kernel's own finding is quoted
            FireTrading("health_unhealthy", {"component": "kernel", "reason": "whole kernel"}),
        ),
        ("halting", finding("kernel", "unhealthy", "x"), {"feed": finding("feed", "unhealthy", "x")}, None),
        ("halted", finding("kernel", "unhealthy", "x"), {"feed": finding("feed", "unhealthy", "x")}, None),
    ],
)
def test_health_halt(
    situation: str, overall: Finding | None, findings: dict[str, Finding], expected: FireTrading | None
) -> None:
    assert health_halt(trading(situation), overall, findings) == expected


# -- halt_step ------------------------------------------------------------------------------------

OPEN = {
    "o1": "accepted",
    "o2": "pending_new",
    "o3": "pending_cancel",
    "o4": "partially_filled",
    "o5": "pending_replace",
}
LONG_SHORT = {"BTCUSDT": D("0.5"), "ETHUSDT": D("-2"), "XRPUSDT": D(0)}
FLAT = {"BTCUSDT": D(0)}


@pytest.mark.parametrize(
    ("situation", "orders", "positions", "now_ms", "ready", "expected"),
    [
        # not halting: nothing to do
        ("active", OPEN, LONG_SHORT, 5_000, True, []),
        ("reducing", OPEN, LONG_SHORT, 5_000, True, []),
        # halting: cancel what can be canceled; pending ones are waited for
        ("halting", OPEN, LONG_SHORT, 500, True, [CancelOrders(("o1", "o4", "o5"), "halting")]),
        ("halting", OPEN, LONG_SHORT, 500, False, [CancelOrders(("o1", "o4", "o5"), "halting")]),
        ("halting", {"o2": "pending_new"}, {}, 500, True, []),
        # ... and past the deadline, timeout (after the cancels)
        ("halting", {"o2": "pending_new"}, {}, 1_100, True, [FireTrading("timeout")]),
        (
            "halting",
            {"o1": "accepted"},
            {},
            1_101,
            True,
            [CancelOrders(("o1",), "halting"), FireTrading("timeout")],
        ),
        # nothing open: a plain halt is done
        ("halting", {}, LONG_SHORT, 500, True, [FireTrading("all_canceled")]),
        ("halting", {}, LONG_SHORT, 5_000, True, [FireTrading("all_canceled")]),
        # a flattening halt: the cancels are confirmed first ...
        ("halting_flatten", {}, LONG_SHORT, 500, True, [FireTrading("all_canceled")]),
        # ... then one closing market order per open position ...
        (
            "halting_canceled",
            {},
            LONG_SHORT,
            500,
            True,
            [Flatten("BTCUSDT", "sell", D("0.5")), Flatten("ETHUSDT", "buy", D("2"))],
        ),
        # ... and flat is flattened
        ("halting_canceled", {}, FLAT, 500, True, [FireTrading("flattened")]),
        ("halting_canceled", {}, {}, 500, True, [FireTrading("flattened")]),
        # the flatten orders are still working: wait, then time out
        ("halting_canceled", {"f1": "pending_new"}, LONG_SHORT, 500, True, []),
        (
            "halting_canceled",
            {"f1": "accepted"},
            LONG_SHORT,
            2_000,
            True,
            [
                CancelOrders(("f1",), "halting"),
                FireTrading("timeout"),
            ],
        ),
        # halted: keep canceling what is still working, when the venue session is ready
        ("halted", OPEN, LONG_SHORT, 5_000, True, [CancelOrders(("o1", "o4"), "halted")]),
        ("halted", OPEN, LONG_SHORT, 5_000, False, []),
        ("halted", {"o2": "pending_new", "o3": "pending_cancel"}, {}, 5_000, True, []),
        ("halted", {}, LONG_SHORT, 5_000, True, []),
    ],
)
def test_halt_step(
    situation: str,
    orders: dict[str, str],
    positions: dict[str, D],
    now_ms: int,
    ready: bool,
    expected: list[object],
) -> None:
    assert halt_step(trading(situation), orders, positions, now_ms, venue_ready=ready) == expected


def test_a_flatten_command_is_a_market_ioc_order_tagged_flatten() -> None:
    assert Flatten("BTCUSDT", "sell", D("0.5")).terms == OrderTerms(
        "BTCUSDT", "sell", D("0.5"), None, "market", "ioc", "flatten"
    )


def test_another_machines_entity_is_refused() -> None:
    other, _ = HEALTH.create("kernel-r1", now_ms=1)
    with pytest.raises(NotATradingEntity):
        halt_step(other, {}, {}, 0)
    with pytest.raises(NotATradingEntity):
        health_halt(other, HEALTHY, {})
