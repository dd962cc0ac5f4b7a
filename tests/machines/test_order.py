"""The ``order`` machine (``machines.order``): FIX order-state semantics, anomalies, invariants.

Ladder: creation validation; a table test over every state x trigger (expectations written out by
hand from the FIX order state change matrices, not derived from ``ORDER``'s rules); the FIX rules
of the module docstring and docs/machines/order.md fired directly; anomalies (duplicate, overfill,
bad fill data, late fills, fees); a Hypothesis ``RuleBasedStateMachine`` checking the quantity
invariants under random triggers and data; the ``restore`` round trip through the journal codec;
reconciliation (the ``reconcile_*`` mirrors behave exactly like their live triggers,
``reconcile_lost``, adopted external orders, journals from before ``origin``); and every scenario
in docs/scenarios/.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from machines import (
    CREATE,
    ORDER,
    DefinitionError,
    Entity,
    InvalidData,
    InvalidTransition,
    OrderState,
    Overfill,
    TransitionRefused,
)
from machines.order import LIVE_RULES, MIRRORED, RECONCILE_PREFIX, _mirrors, live_trigger
from machines.scenario import parse, run
from storage import codec

REPO = Path(__file__).resolve().parents[2]
SCENARIO_DIR = REPO / "docs" / "scenarios"
DONE_STATES = frozenset({"filled", "canceled", "expired", "rejected", "denied"})
LIMIT = {"instrument": "XYZ", "side": "buy", "type": "limit", "qty": "10", "price": "10.00"}
MARKET = {"instrument": "XYZ", "side": "sell", "type": "market", "qty": "10"}

# -- helpers ----------------------------------------------------------------------------------


def D(text: str) -> Decimal:
    return Decimal(text)


def snapshot(order: Entity) -> tuple[str, dict[str, Any]]:
    """A deep copy of everything a refused trigger must leave untouched."""
    return order.state, copy.deepcopy(order.data)


def assert_unchanged(order: Entity, before: tuple[str, dict[str, Any]]) -> None:
    assert (order.state, order.data) == before


def new_order(entity_id: str = "o-1", **overrides: Any) -> Entity:
    order, _ = ORDER.create(entity_id, **{**LIMIT, **overrides})
    return order


def fire_all(order: Entity, *steps: tuple[str, dict[str, Any]]) -> Entity:
    for trigger, data in steps:
        ORDER.fire(order, trigger, **data)
    return order


def fill(qty: str, price: str = "10", trade_id: str = "T1", **extra: Any) -> tuple[str, dict[str, Any]]:
    return "fill", {"qty": qty, "price": price, "trade_id": trade_id, **extra}


SUBMIT: tuple[str, dict[str, Any]] = ("submit", {})
ACCEPT: tuple[str, dict[str, Any]] = ("accept", {"venue_order_id": "V1"})


def accepted(**overrides: Any) -> Entity:
    return fire_all(new_order(**overrides), SUBMIT, ACCEPT)


def partially_filled(**overrides: Any) -> Entity:
    """Accepted, then 4 of 10 filled at 10 (trade T1)."""
    return fire_all(accepted(**overrides), fill("4"))


# One known path into every state. pending_cancel starts from pending_new so that every guarded
# rule from it (accept, reject, cancel_reject) has a guard that lets it through; the other priors
# are covered by the FIX-rule tests below.
BUILDERS: dict[str, Callable[[], Entity]] = {
    "new": new_order,
    "denied": lambda: fire_all(new_order(), ("deny", {"reason": "risk"})),
    "pending_new": lambda: fire_all(new_order(), SUBMIT),
    "accepted": accepted,
    "partially_filled": partially_filled,
    "filled": lambda: fire_all(accepted(), fill("10")),
    "pending_cancel": lambda: fire_all(new_order(), SUBMIT, ("request_cancel", {})),
    "pending_replace": lambda: fire_all(partially_filled(), ("request_replace", {"qty": "12", "price": "11"})),
    "canceled": lambda: fire_all(partially_filled(), ("cancel", {})),
    "rejected": lambda: fire_all(new_order(), SUBMIT, ("reject", {"reason": "no"})),
    "expired": lambda: fire_all(partially_filled(), ("expire", {})),
}

# Data that the rules accept for each trigger (a fill on a filled order must be a duplicate: any
# new fill there overfills).
VALID_DATA: dict[str, dict[str, Any]] = {
    "submit": {},
    "deny": {"reason": "risk limit"},
    "accept": {"venue_order_id": "V9"},
    "reject": {"reason": "unknown symbol"},
    "fill": {"qty": "1", "price": "10", "trade_id": "T-new"},
    "request_cancel": {},
    "cancel_reject": {"reason": "too late"},
    "cancel": {},
    "request_replace": {"qty": "20"},
    "replace_reject": {"reason": "no"},
    "replace": {},
    "expire": {},
    "restate": {"qty": "15"},
    **{RECONCILE_PREFIX + t: {} for t in MIRRORED},  # filled in below: the live trigger's data
    "reconcile_lost": {"reason": "lost", "evidence": "the venue does not know it", "source": "reconciliation"},
    "lost": {"reason": "lost: the venue no longer knows the order", "evidence": "no such order", "source": "status"},
}
for _trigger in MIRRORED:
    VALID_DATA[RECONCILE_PREFIX + _trigger] = {**VALID_DATA[_trigger], "source": "reconciliation"}


def valid_data(state: str, trigger: str) -> dict[str, Any]:
    if state == "filled" and live_trigger(trigger) == "fill":
        return {"qty": "1", "price": "10", "trade_id": "T1"}
    return VALID_DATA[trigger]


# The order machine's table as the FIX 4.4 order state change matrices (Volume 4, Appendix D) and
# docs/machines/order.md state it, written out by hand: (state, trigger) -> the state the order is
# in afterwards, for the builder's order and ``valid_data``. Every pair not listed is refused
# (``InvalidTransition``, the order unchanged). A ``reconcile_*`` trigger does what its live
# trigger does (written out too, so a wrong mirror fails here as well).
EXPECTED: dict[tuple[str, str], str] = {
    ("new", "submit"): "pending_new",
    ("new", "deny"): "denied",  # risk refused it: never sent
    # denied: done, refuses everything
    ("pending_new", "accept"): "accepted",  # A.1.a
    ("pending_new", "reject"): "rejected",
    ("pending_new", "fill"): "partially_filled",  # a fill before the ack implies acceptance
    ("pending_new", "request_cancel"): "pending_cancel",  # B.1.d
    ("pending_new", "cancel"): "canceled",
    ("pending_new", "reconcile_accept"): "accepted",
    ("pending_new", "reconcile_reject"): "rejected",
    ("pending_new", "reconcile_fill"): "partially_filled",
    ("pending_new", "reconcile_cancel"): "canceled",
    ("pending_new", "reconcile_lost"): "rejected",  # never received: concluded, never resent
    ("accepted", "fill"): "partially_filled",  # A.1.a: 1 of 10
    ("accepted", "request_cancel"): "pending_cancel",  # B.1.a
    ("accepted", "cancel"): "canceled",  # unsolicited (E)
    ("accepted", "request_replace"): "pending_replace",  # C.1.a
    ("accepted", "expire"): "expired",
    ("accepted", "restate"): "accepted",  # qty 15, nothing filled
    ("accepted", "reconcile_fill"): "partially_filled",
    ("accepted", "reconcile_cancel"): "canceled",
    ("accepted", "reconcile_expire"): "expired",
    ("accepted", "reconcile_restate"): "accepted",
    ("accepted", "lost"): "expired",  # acked, then unknown to the venue: done, with the reason
    ("partially_filled", "fill"): "partially_filled",  # 5 of 10
    ("partially_filled", "request_cancel"): "pending_cancel",
    ("partially_filled", "cancel"): "canceled",
    ("partially_filled", "request_replace"): "pending_replace",
    ("partially_filled", "expire"): "expired",
    ("partially_filled", "restate"): "partially_filled",  # qty 15 above cum_qty 4
    ("partially_filled", "reconcile_fill"): "partially_filled",
    ("partially_filled", "reconcile_cancel"): "canceled",
    ("partially_filled", "reconcile_expire"): "expired",
    ("partially_filled", "reconcile_restate"): "partially_filled",
    ("partially_filled", "lost"): "expired",
    ("filled", "fill"): "filled",  # trade T1 again: a duplicate, ignored and counted
    ("filled", "cancel_reject"): "filled",  # B.1.c: too late to cancel, recorded
    ("filled", "replace_reject"): "filled",  # C.1.c: too late to replace, recorded
    ("filled", "reconcile_fill"): "filled",
    ("filled", "reconcile_cancel_reject"): "filled",
    ("filled", "reconcile_replace_reject"): "filled",
    # pending_cancel: requested from pending_new
    ("pending_cancel", "accept"): "pending_cancel",  # B.1.e: the ack crossed the request
    ("pending_cancel", "reject"): "rejected",  # the new order itself is rejected
    ("pending_cancel", "fill"): "pending_cancel",  # B.1.b: a partial fill, old terms
    ("pending_cancel", "cancel_reject"): "pending_new",  # back to the prior state (B.1.d)
    ("pending_cancel", "cancel"): "canceled",  # B.1.a
    ("pending_cancel", "expire"): "expired",
    ("pending_cancel", "reconcile_accept"): "pending_cancel",
    ("pending_cancel", "reconcile_reject"): "rejected",
    ("pending_cancel", "reconcile_fill"): "pending_cancel",
    ("pending_cancel", "reconcile_cancel_reject"): "pending_new",
    ("pending_cancel", "reconcile_cancel"): "canceled",
    ("pending_cancel", "reconcile_expire"): "expired",
    ("pending_cancel", "reconcile_lost"): "rejected",
    # pending_replace: requested from partially_filled (4 of 10 filled)
    ("pending_replace", "fill"): "pending_replace",  # C.1.b: old terms apply until confirmed
    ("pending_replace", "cancel"): "canceled",
    ("pending_replace", "replace_reject"): "partially_filled",  # C.2.a: back to the prior state
    ("pending_replace", "replace"): "partially_filled",  # C.3.a: part filled, works on
    ("pending_replace", "expire"): "expired",
    ("pending_replace", "reconcile_fill"): "pending_replace",
    ("pending_replace", "reconcile_cancel"): "canceled",
    ("pending_replace", "reconcile_replace_reject"): "partially_filled",
    ("pending_replace", "reconcile_replace"): "partially_filled",
    ("pending_replace", "reconcile_expire"): "expired",
    ("pending_replace", "lost"): "expired",
    ("canceled", "fill"): "canceled",  # a late fill: applied, the order stays done
    ("canceled", "cancel_reject"): "canceled",
    ("canceled", "replace_reject"): "canceled",
    ("canceled", "reconcile_fill"): "canceled",
    ("canceled", "reconcile_cancel_reject"): "canceled",
    ("canceled", "reconcile_replace_reject"): "canceled",
    # rejected: done, refuses everything (no late fill for an order the venue never took)
    ("expired", "fill"): "expired",
    ("expired", "cancel_reject"): "expired",
    ("expired", "replace_reject"): "expired",
    ("expired", "reconcile_fill"): "expired",
    ("expired", "reconcile_cancel_reject"): "expired",
    ("expired", "reconcile_replace_reject"): "expired",
}
GUARDED = {("pending_cancel", "lost")}
"""Refused by a guard, not by the table: this pending_cancel was requested before the ack, so the
venue never acknowledged the order ("lost" is for acknowledged ones; reconcile_lost decides here)."""
STATES = (
    "new",
    "denied",
    "pending_new",
    "accepted",
    "partially_filled",
    "filled",
    "pending_cancel",
    "pending_replace",
    "canceled",
    "rejected",
    "expired",
)
TRIGGERS = (
    "submit",
    "deny",
    "accept",
    "reject",
    "fill",
    "request_cancel",
    "cancel_reject",
    "cancel",
    "request_replace",
    "replace_reject",
    "replace",
    "expire",
    "restate",
    "reconcile_accept",
    "reconcile_reject",
    "reconcile_fill",
    "reconcile_cancel_reject",
    "reconcile_cancel",
    "reconcile_replace_reject",
    "reconcile_replace",
    "reconcile_expire",
    "reconcile_restate",
    "reconcile_lost",
    "lost",
)


# -- creation ---------------------------------------------------------------------------------


def test_create_limit_order_initial_data() -> None:
    order, created = ORDER.create("o-1", **LIMIT, tif="day")
    assert order.state == "new"
    assert order.live
    assert order.data == {
        "instrument": "XYZ",
        "side": "buy",
        "type": "limit",
        "tif": "day",
        "qty": D("10"),
        "price": D("10.00"),
        "cum_qty": D("0"),
        "leaves_qty": D("10"),
        "avg_px": None,
        "filled_notional": D("0"),
        "fees": D("0"),
        "venue_order_id": None,
        "prior_state": None,
        "requested_qty": None,
        "requested_price": None,
        "trade_ids": [],
        "duplicate_fills": 0,
        "late_fills": 0,
        "reason": None,
        "tag": "",
        "origin": "kernel",
    }
    assert isinstance(order.data["qty"], Decimal)
    assert created.trigger == CREATE
    assert created.source is None
    assert created.dest == "new"
    assert dict(created.data) == {**LIMIT, "tif": "day"}


def test_create_keeps_a_strategy_tag() -> None:
    order, created = ORDER.create("o-1", **LIMIT, tag="bid-1")
    assert order.data["tag"] == "bid-1"
    assert created.data["tag"] == "bid-1"


@pytest.mark.parametrize("tag", [7, None, "x" * 65])
def test_create_refuses_a_bad_tag(tag: object) -> None:
    with pytest.raises(InvalidData, match="tag must be a string of at most 64 characters"):
        ORDER.create("o-1", **LIMIT, tag=tag)


def test_create_defaults_to_limit_gtc() -> None:
    order, _ = ORDER.create("o-1", instrument="XYZ", side="sell", qty=5, price=D("1.5"))
    assert order.data["type"] == "limit"
    assert order.data["tif"] == "gtc"
    assert order.data["qty"] == D("5")
    assert order.data["leaves_qty"] == D("5")
    assert order.data["price"] == D("1.5")


def test_create_market_order_has_no_price() -> None:
    order, _ = ORDER.create("m-1", **MARKET, tif="ioc")
    assert order.data["type"] == "market"
    assert order.data["price"] is None
    assert order.data["tif"] == "ioc"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"instrument": None}, "instrument", id="missing-instrument"),
        pytest.param({"instrument": ""}, "instrument", id="empty-instrument"),
        pytest.param({"instrument": 7}, "instrument", id="non-string-instrument"),
        pytest.param({"side": None}, "side", id="missing-side"),
        pytest.param({"side": "short"}, "side", id="bad-side"),
        pytest.param({"type": "stop"}, "type", id="bad-type"),
        pytest.param({"tif": "gtd"}, "tif", id="bad-tif"),
        pytest.param({"price": None}, "needs a price", id="limit-without-price"),
        pytest.param({"type": "market"}, "has no price", id="market-with-price"),
        pytest.param({"qty": None}, "qty", id="missing-qty"),
        pytest.param({"qty": "0"}, "positive", id="zero-qty"),
        pytest.param({"qty": "-1"}, "positive", id="negative-qty"),
        pytest.param({"qty": 1.5}, "float", id="float-qty"),
        pytest.param({"qty": "ten"}, "not a number", id="non-numeric-qty"),
        pytest.param({"qty": "NaN"}, "finite", id="nan-qty"),
        pytest.param({"qty": True}, "decimal number", id="bool-qty"),
        pytest.param({"price": "0"}, "positive", id="zero-price"),
        pytest.param({"price": "-2"}, "positive", id="negative-price"),
        pytest.param({"venue": "X"}, "unknown order fields: venue", id="unknown-field"),
    ],
)
def test_create_refuses_bad_data(change: dict[str, Any], message: str) -> None:
    data = {**LIMIT, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(InvalidData, match=message) as info:
        ORDER.create("o-bad", **data)
    assert info.value.machine == "order"
    assert info.value.entity_id == "o-bad"
    assert info.value.trigger == CREATE
    assert info.value.state is None


# -- table test: every state x every trigger ---------------------------------------------------


def test_valid_data_covers_every_trigger() -> None:
    assert set(VALID_DATA) == set(ORDER.triggers)


def test_builders_cover_every_state() -> None:
    assert set(BUILDERS) == set(ORDER.state_names)
    for state, build in BUILDERS.items():
        assert build().state == state


def test_the_expected_table_names_every_state_and_trigger() -> None:
    assert ORDER.state_names == STATES
    assert set(ORDER.triggers) == set(TRIGGERS)
    assert {state for state, _ in EXPECTED} <= set(STATES)
    assert {trigger for _, trigger in EXPECTED} <= set(TRIGGERS)


@pytest.mark.parametrize(
    ("state", "trigger"),
    list(itertools.product(STATES, TRIGGERS)),
    ids=[f"{s}-{t}" for s, t in itertools.product(STATES, TRIGGERS)],
)
def test_every_state_and_trigger(state: str, trigger: str) -> None:
    order = BUILDERS[state]()
    before = snapshot(order)
    data = valid_data(state, trigger)
    if (state, trigger) not in EXPECTED:
        with pytest.raises(InvalidTransition) as info:
            ORDER.fire(order, trigger, **data)
        assert (info.value.state, info.value.trigger, info.value.entity_id) == (state, trigger, "o-1")
        assert_unchanged(order, before)
        assert (trigger in ORDER.allowed_triggers(state)) == ((state, trigger) in GUARDED)
        return
    assert trigger in ORDER.allowed_triggers(state)
    transition = ORDER.fire(order, trigger, **data)
    assert order.state == EXPECTED[state, trigger]
    assert (transition.source, transition.dest, transition.trigger) == (state, EXPECTED[state, trigger], trigger)
    assert dict(transition.data) == data
    if state in DONE_STATES:
        assert order.state == state  # a done order never comes back


def test_unknown_trigger_is_invalid_transition() -> None:
    order = accepted()
    before = snapshot(order)
    with pytest.raises(InvalidTransition, match="unknown trigger"):
        ORDER.fire(order, "amend")
    assert_unchanged(order, before)


# -- FIX rules, fired directly ----------------------------------------------------------------


def test_full_lifecycle_quantities() -> None:
    """A.1.a: partial fills then a completing fill; avg_px is the exact fill-weighted average."""
    order = accepted(qty="10000")
    assert order.data["venue_order_id"] == "V1"
    fire_all(order, fill("2000", "10.00", "T1"))
    assert (order.state, order.data["cum_qty"], order.data["leaves_qty"]) == ("partially_filled", 2000, 8000)
    fire_all(order, fill("1000", "10.30", "T2"))
    assert order.data["avg_px"] == D("10.1")
    fire_all(order, fill("7000", "10.00", "T3"))
    assert order.state == "filled"
    assert (order.data["cum_qty"], order.data["leaves_qty"], order.data["avg_px"]) == (10000, 0, D("10.03"))
    assert not order.live


def test_fill_before_ack_implies_acceptance() -> None:
    order = fire_all(new_order(), SUBMIT, fill("3"))
    assert order.state == "partially_filled"
    assert order.data["venue_order_id"] is None
    with pytest.raises(InvalidTransition, match="not allowed"):
        ORDER.fire(order, "accept", venue_order_id="V1")


def test_fill_completing_before_ack_fills() -> None:
    order = fire_all(new_order(), SUBMIT, fill("10"))
    assert order.state == "filled"
    assert order.data["leaves_qty"] == 0


def test_fill_while_pending_cancel_uses_old_qty_and_updates_prior_state() -> None:
    """B.1.b: partial fills while the cancel is pending; a reject returns to partially_filled."""
    order = fire_all(accepted(), ("request_cancel", {}))
    assert (order.state, order.data["prior_state"]) == ("pending_cancel", "accepted")
    fire_all(order, fill("3"))
    assert order.state == "pending_cancel"
    assert (order.data["cum_qty"], order.data["leaves_qty"]) == (3, 7)
    assert order.data["prior_state"] == "partially_filled"
    fire_all(order, ("cancel_reject", {"reason": "busy"}))
    assert order.state == "partially_filled"
    assert order.data["prior_state"] is None
    assert order.data["reason"] == "busy"
    assert order.data["leaves_qty"] == 7


def test_fill_while_pending_cancel_keeps_prior_partially_filled() -> None:
    order = fire_all(partially_filled(), ("request_cancel", {}), fill("1", trade_id="T2"))
    assert order.data["prior_state"] == "partially_filled"
    assert (order.data["cum_qty"], order.data["leaves_qty"]) == (5, 5)
    fire_all(order, ("cancel", {"reason": "requested"}))
    assert order.state == "canceled"
    assert (order.data["cum_qty"], order.data["leaves_qty"]) == (5, 0)
    assert order.data["prior_state"] is None
    assert order.data["reason"] == "requested"


def test_fill_while_pending_cancel_from_pending_new_sets_prior_partially_filled() -> None:
    order = fire_all(new_order(), SUBMIT, ("request_cancel", {}), fill("2"))
    assert (order.state, order.data["prior_state"]) == ("pending_cancel", "partially_filled")
    # The new order can no longer be rejected, nor acked: it traded.
    for trigger, data in (("reject", {}), ("accept", {"venue_order_id": "V1"})):
        before = snapshot(order)
        with pytest.raises(InvalidTransition, match="no guard"):
            ORDER.fire(order, trigger, **data)
        assert_unchanged(order, before)
    fire_all(order, ("cancel_reject", {}))
    assert order.state == "partially_filled"


def test_fill_completing_while_pending_cancel_fills_and_clears_prior() -> None:
    """B.1.c: the order fills before the cancel is answered; the late cancel reject is harmless."""
    order = fire_all(partially_filled(), ("request_cancel", {}), fill("6", trade_id="T2"))
    assert order.state == "filled"
    assert (order.data["cum_qty"], order.data["leaves_qty"]) == (10, 0)
    assert order.data["prior_state"] is None
    fire_all(order, ("cancel_reject", {"reason": "too late to cancel"}))
    assert order.state == "filled"
    assert order.data["reason"] == "too late to cancel"
    assert (order.data["cum_qty"], order.data["leaves_qty"]) == (10, 0)


def test_fill_while_pending_replace_uses_old_qty_and_price() -> None:
    """C.1.b: executions while the replace is pending apply to the old quantity."""
    order = fire_all(accepted(), ("request_replace", {"qty": "6", "price": "9"}))
    assert order.state == "pending_replace"
    assert (order.data["prior_state"], order.data["requested_qty"], order.data["requested_price"]) == (
        "accepted",
        6,
        9,
    )
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (10, 10, 10)
    fire_all(order, fill("7"))  # above the requested 6, within the old 10
    assert order.state == "pending_replace"
    assert (order.data["qty"], order.data["cum_qty"], order.data["leaves_qty"]) == (10, 7, 3)
    assert order.data["prior_state"] == "partially_filled"
    assert order.data["requested_qty"] == 6
    fire_all(order, ("replace_reject", {"reason": "no"}))
    assert order.state == "partially_filled"
    assert (order.data["prior_state"], order.data["requested_qty"], order.data["requested_price"]) == (
        None,
        None,
        None,
    )
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (10, 10, 3)


def test_fill_completing_old_qty_while_pending_replace_fills() -> None:
    """C.1.c: the order fills before the replace is answered; the replace reject is harmless."""
    order = fire_all(partially_filled(), ("request_replace", {"qty": "20"}), fill("6", trade_id="T2"))
    assert order.state == "filled"
    assert (order.data["qty"], order.data["cum_qty"], order.data["leaves_qty"]) == (10, 10, 0)
    assert (order.data["prior_state"], order.data["requested_qty"], order.data["requested_price"]) == (
        None,
        None,
        None,
    )
    fire_all(order, ("replace_reject", {"reason": "already filled"}))
    assert order.state == "filled"
    assert order.data["reason"] == "already filled"
    with pytest.raises(InvalidTransition):
        ORDER.fire(order, "replace")


def test_fill_above_old_qty_while_pending_replace_to_larger_qty_overfills() -> None:
    order = fire_all(accepted(), ("request_replace", {"qty": "20"}))
    before = snapshot(order)
    with pytest.raises(Overfill):
        fire_all(order, fill("11"))
    assert_unchanged(order, before)


def test_replace_defaults_to_requested_qty_and_price() -> None:
    """C.1.a: a zero-filled order replaced to a larger quantity and a new price."""
    order = fire_all(accepted(), ("request_replace", {"qty": "12", "price": "11.5"}), ("replace", {}))
    assert order.state == "accepted"
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (12, D("11.5"), 12)
    assert (order.data["prior_state"], order.data["requested_qty"], order.data["requested_price"]) == (
        None,
        None,
        None,
    )


def test_replace_of_price_only_keeps_qty() -> None:
    order = fire_all(partially_filled(), ("request_replace", {"price": "9.5"}))
    assert order.data["requested_qty"] is None
    fire_all(order, ("replace", {}))
    assert order.state == "partially_filled"
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (10, D("9.5"), 6)


def test_replace_of_qty_only_keeps_price() -> None:
    order = fire_all(partially_filled(), ("request_replace", {"qty": "8"}), ("replace", {}))
    assert order.state == "partially_filled"
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (8, 10, 4)


def test_replace_with_explicit_qty_and_price_overrides_request() -> None:
    order = fire_all(partially_filled(), ("request_replace", {"qty": "12", "price": "11"}))
    fire_all(order, ("replace", {"qty": "15", "price": "12.25"}))
    assert order.state == "partially_filled"
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (15, D("12.25"), 11)


@pytest.mark.parametrize(("new_qty", "ref"), [("4", "C.3.b"), ("2", "C.3.c")])
def test_replace_at_or_below_cum_qty_fills_with_qty_amended(new_qty: str, ref: str) -> None:
    order = fire_all(partially_filled(), ("request_replace", {"qty": new_qty}), ("replace", {}))
    assert order.state == "filled", ref
    assert (order.data["qty"], order.data["cum_qty"], order.data["leaves_qty"]) == (4, 4, 0)
    assert order.data["prior_state"] is None
    assert not order.live


def test_replace_explicit_qty_below_cum_qty_fills() -> None:
    order = fire_all(partially_filled(), ("request_replace", {"qty": "12"}), ("replace", {"qty": "3"}))
    assert order.state == "filled"
    assert (order.data["qty"], order.data["leaves_qty"]) == (4, 0)


def test_replace_after_fills_while_pending_with_prior_accepted_goes_partially_filled() -> None:
    """C.3.a: replace to decrease while executions are reported, new qty above cum qty."""
    order = fire_all(accepted(), ("request_replace", {"qty": "8"}), fill("3"), ("replace", {}))
    assert order.state == "partially_filled"
    assert (order.data["qty"], order.data["cum_qty"], order.data["leaves_qty"]) == (8, 3, 5)


def test_replace_reject_returns_to_accepted() -> None:
    order = fire_all(accepted(), ("request_replace", {"qty": "12"}), ("replace_reject", {}))
    assert order.state == "accepted"
    assert order.data["qty"] == 10
    assert order.data["reason"] is None


def test_request_replace_needs_qty_or_price() -> None:
    order = accepted()
    before = snapshot(order)
    with pytest.raises(InvalidData, match="needs a new qty or price"):
        ORDER.fire(order, "request_replace")
    with pytest.raises(InvalidData, match="needs a new qty or price"):
        ORDER.fire(order, "request_replace", qty=None, price=None)
    assert_unchanged(order, before)


@pytest.mark.parametrize("data", [{"qty": "0"}, {"price": "-1"}, {"qty": "x"}, {"qty": "Infinity"}])
def test_request_replace_bad_terms(data: dict[str, Any]) -> None:
    order = accepted()
    before = snapshot(order)
    with pytest.raises(InvalidData):
        ORDER.fire(order, "request_replace", **data)
    assert_unchanged(order, before)


def test_request_replace_price_on_market_order_is_invalid() -> None:
    order = accepted(type="market", price=None)
    before = snapshot(order)
    with pytest.raises(InvalidData, match="market order"):
        ORDER.fire(order, "request_replace", price="10")
    assert_unchanged(order, before)
    fire_all(order, ("request_replace", {"qty": "5"}), ("replace", {}))
    assert (order.state, order.data["qty"], order.data["price"]) == ("accepted", 5, None)


def test_replace_confirming_a_price_on_market_order_is_invalid() -> None:
    """docs/machines/order.md: ``price`` is null for market orders, whatever the venue confirms."""
    order = fire_all(accepted(type="market", price=None), ("request_replace", {"qty": "5"}))
    before = snapshot(order)
    with pytest.raises(InvalidData):
        ORDER.fire(order, "replace", price="7")
    assert_unchanged(order, before)


def test_restate_price_on_market_order_is_invalid() -> None:
    """docs/machines/order.md: ``price`` is null for market orders, whatever the venue restates."""
    order = accepted(type="market", price=None)
    before = snapshot(order)
    with pytest.raises(InvalidData):
        ORDER.fire(order, "restate", price="5")
    assert_unchanged(order, before)


def test_market_order_lifecycle() -> None:
    order = fire_all(
        new_order("m-1", type="market", price=None),
        SUBMIT,
        ACCEPT,
        fill("4", "100.5", "T1"),
        fill("6", "101", "T2"),
    )
    assert order.state == "filled"
    assert order.data["price"] is None
    assert order.data["avg_px"] == (D("4") * D("100.5") + D("6") * D("101")) / D("10")
    assert order.data["avg_px"] == D("100.8")


def test_restate_to_higher_qty() -> None:
    order = fire_all(partially_filled(), ("restate", {"qty": "15", "reason": "venue restated"}))
    assert order.state == "partially_filled"
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (15, 10, 11)
    assert order.data["reason"] == "venue restated"


def test_restate_to_lower_qty_above_cum_qty() -> None:
    """Group E: a partial decline of quantity by the venue."""
    order = fire_all(partially_filled(), ("restate", {"qty": "6"}))
    assert order.state == "partially_filled"
    assert (order.data["qty"], order.data["leaves_qty"]) == (6, 2)


def test_restate_to_qty_at_cum_qty_fills() -> None:
    order = fire_all(partially_filled(), ("restate", {"qty": "4"}))
    assert order.state == "filled"
    assert (order.data["qty"], order.data["leaves_qty"]) == (4, 0)


def test_restate_below_cum_qty_fills_with_qty_amended() -> None:
    order = fire_all(partially_filled(), ("restate", {"qty": "1"}))
    assert order.state == "filled"
    assert (order.data["qty"], order.data["cum_qty"], order.data["leaves_qty"]) == (4, 4, 0)


def test_restate_price_only() -> None:
    order = fire_all(accepted(), ("restate", {"price": "9.75"}))
    assert order.state == "accepted"
    assert (order.data["qty"], order.data["price"], order.data["leaves_qty"]) == (10, D("9.75"), 10)
    assert order.data["reason"] is None


@pytest.mark.parametrize("data", [{"qty": "0"}, {"qty": "abc"}, {"price": "0"}, {"reason": 5}])
def test_restate_bad_data(data: dict[str, Any]) -> None:
    order = partially_filled()
    before = snapshot(order)
    with pytest.raises(InvalidData):
        ORDER.fire(order, "restate", **data)
    assert_unchanged(order, before)


@pytest.mark.parametrize("done", ["filled", "canceled", "expired"])
@pytest.mark.parametrize("trigger", ["cancel_reject", "replace_reject"])
def test_late_request_reject_on_done_order_is_harmless(done: str, trigger: str) -> None:
    order = BUILDERS[done]()
    before = snapshot(order)
    fire_all(order, (trigger, {"reason": "too late"}))
    state, data = before
    assert order.state == state
    assert order.data == {**data, "reason": "too late"}


@pytest.mark.parametrize("state", ["rejected", "denied"])
@pytest.mark.parametrize("trigger", ["cancel_reject", "replace_reject"])
def test_request_reject_on_order_never_working_is_refused(state: str, trigger: str) -> None:
    order = BUILDERS[state]()
    before = snapshot(order)
    with pytest.raises(InvalidTransition):
        ORDER.fire(order, trigger, reason="too late")
    assert_unchanged(order, before)


def test_accept_crossing_cancel_request_then_cancel_reject_returns_to_accepted() -> None:
    """B.1.d + B.1.e: cancel requested before the ack; the ack crosses it; the cancel is refused."""
    order = fire_all(new_order(), SUBMIT, ("request_cancel", {}))
    assert (order.state, order.data["prior_state"]) == ("pending_cancel", "pending_new")
    fire_all(order, ("accept", {"venue_order_id": "V7"}))
    assert order.state == "pending_cancel"
    assert order.data["prior_state"] == "accepted"
    assert order.data["venue_order_id"] == "V7"
    before = snapshot(order)
    with pytest.raises(InvalidTransition, match="no guard"):
        ORDER.fire(order, "accept", venue_order_id="V8")  # a second ack
    with pytest.raises(InvalidTransition, match="no guard"):
        ORDER.fire(order, "reject", reason="too late")  # the order was acked
    assert_unchanged(order, before)
    fire_all(order, ("cancel_reject", {"reason": "no"}))
    assert order.state == "accepted"
    assert order.data["prior_state"] is None


def test_accept_crossing_cancel_request_then_cancel() -> None:
    order = fire_all(new_order(), SUBMIT, ("request_cancel", {}), ACCEPT, ("cancel", {}))
    assert order.state == "canceled"
    assert order.data["leaves_qty"] == 0
    assert order.data["venue_order_id"] == "V1"


def test_cancel_reject_before_ack_returns_to_pending_new() -> None:
    """B.1.f: the venue does not know the order yet."""
    order = fire_all(new_order(), SUBMIT, ("request_cancel", {}), ("cancel_reject", {"reason": "unknown order"}))
    assert order.state == "pending_new"
    assert order.data["prior_state"] is None
    assert order.data["reason"] == "unknown order"
    fire_all(order, ACCEPT)
    assert order.state == "accepted"


def test_cancel_reject_returns_to_accepted() -> None:
    order = fire_all(accepted(), ("request_cancel", {}), ("cancel_reject", {}))
    assert order.state == "accepted"


def test_reject_while_pending_cancel_with_prior_pending_new() -> None:
    order = fire_all(new_order(), SUBMIT, ("request_cancel", {}), ("reject", {"reason": "bad symbol"}))
    assert order.state == "rejected"
    assert (order.data["leaves_qty"], order.data["prior_state"], order.data["reason"]) == (0, None, "bad symbol")
    assert not order.live


def test_reject_new_order() -> None:
    order = fire_all(new_order(), SUBMIT, ("reject", {}))
    assert order.state == "rejected"
    assert (order.data["leaves_qty"], order.data["reason"]) == (0, None)


def test_reject_with_non_string_reason_is_invalid() -> None:
    order = fire_all(new_order(), SUBMIT)
    before = snapshot(order)
    with pytest.raises(InvalidData, match="reason must be a string"):
        ORDER.fire(order, "reject", reason=3)
    assert_unchanged(order, before)


@pytest.mark.parametrize("data", [{}, {"reason": ""}, {"reason": 1}])
def test_deny_needs_a_reason(data: dict[str, Any]) -> None:
    order = new_order()
    before = snapshot(order)
    with pytest.raises(InvalidData, match="deny needs a reason"):
        ORDER.fire(order, "deny", **data)
    assert_unchanged(order, before)


def test_deny_is_done() -> None:
    order = fire_all(new_order(), ("deny", {"reason": "risk"}))
    assert (order.state, order.data["leaves_qty"], order.data["reason"]) == ("denied", 0, "risk")
    assert not order.live


@pytest.mark.parametrize("data", [{}, {"venue_order_id": ""}, {"venue_order_id": 5}])
def test_accept_needs_a_venue_order_id(data: dict[str, Any]) -> None:
    order = fire_all(new_order(), SUBMIT)
    before = snapshot(order)
    with pytest.raises(InvalidData, match="venue_order_id"):
        ORDER.fire(order, "accept", **data)
    assert_unchanged(order, before)


@pytest.mark.parametrize("start", ["pending_new", "accepted", "partially_filled", "pending_cancel", "pending_replace"])
def test_unsolicited_cancel_from_working_and_pending_states(start: str) -> None:
    order = BUILDERS[start]()
    cum_qty = order.data["cum_qty"]
    fire_all(order, ("cancel", {"reason": "venue"}))
    assert order.state == "canceled"
    assert (order.data["cum_qty"], order.data["leaves_qty"], order.data["reason"]) == (cum_qty, 0, "venue")
    assert (order.data["prior_state"], order.data["requested_qty"], order.data["requested_price"]) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize("start", ["accepted", "partially_filled", "pending_cancel", "pending_replace"])
def test_expire_from_working_and_pending_states(start: str) -> None:
    order = BUILDERS[start]() if start != "pending_cancel" else fire_all(accepted(), ("request_cancel", {}))
    fire_all(order, ("expire", {}))
    assert order.state == "expired"
    assert order.data["leaves_qty"] == 0
    assert order.data["prior_state"] is None


def test_new_order_cannot_expire_or_be_canceled_before_sending() -> None:
    order = new_order()
    for trigger in ("expire", "cancel", "request_cancel", "fill"):
        before = snapshot(order)
        with pytest.raises(InvalidTransition):
            ORDER.fire(order, trigger, **VALID_DATA[trigger])
        assert_unchanged(order, before)


# -- anomalies --------------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["partially_filled", "pending_cancel", "pending_replace", "filled", "canceled"])
def test_duplicate_fill_is_counted_and_ignored(start: str) -> None:
    order = BUILDERS[start]() if start != "pending_cancel" else fire_all(partially_filled(), ("request_cancel", {}))
    state, data = snapshot(order)
    transition = ORDER.fire(order, "fill", qty="2", price="99", trade_id="T1")
    assert (transition.source, transition.dest) == (state, state)
    assert order.state == state
    assert order.data == {**data, "duplicate_fills": 1}
    ORDER.fire(order, "fill", qty="2", price="99", trade_id="T1")
    assert order.data["duplicate_fills"] == 2
    assert order.data["trade_ids"] == data["trade_ids"]


def test_duplicate_fill_with_bad_data_is_still_invalid() -> None:
    order = partially_filled()
    before = snapshot(order)
    with pytest.raises(InvalidData):
        ORDER.fire(order, "fill", qty="0", price="10", trade_id="T1")
    assert_unchanged(order, before)


def test_overfill_raises_and_leaves_order_unchanged() -> None:
    order = partially_filled()
    before = snapshot(order)
    with pytest.raises(Overfill, match="above the order qty") as info:
        fire_all(order, fill("7", trade_id="T2"))
    assert isinstance(info.value, InvalidData)
    assert issubclass(Overfill, InvalidData)
    assert (info.value.state, info.value.trigger, info.value.entity_id) == ("partially_filled", "fill", "o-1")
    assert_unchanged(order, before)


def test_fill_on_filled_order_overfills() -> None:
    order = BUILDERS["filled"]()
    before = snapshot(order)
    with pytest.raises(Overfill):
        fire_all(order, fill("1", trade_id="T2"))
    assert_unchanged(order, before)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"qty": "0", "price": "10", "trade_id": "T9"}, id="zero-qty"),
        pytest.param({"qty": "-1", "price": "10", "trade_id": "T9"}, id="negative-qty"),
        pytest.param({"qty": "1", "price": "0", "trade_id": "T9"}, id="zero-price"),
        pytest.param({"qty": "1", "price": "-10", "trade_id": "T9"}, id="negative-price"),
        pytest.param({"qty": "NaN", "price": "10", "trade_id": "T9"}, id="nan-qty"),
        pytest.param({"qty": "1", "price": "NaN", "trade_id": "T9"}, id="nan-price"),
        pytest.param({"qty": "Infinity", "price": "10", "trade_id": "T9"}, id="infinite-qty"),
        pytest.param({"qty": "1", "price": "-Infinity", "trade_id": "T9"}, id="infinite-price"),
        pytest.param({"qty": 1.0, "price": "10", "trade_id": "T9"}, id="float-qty"),
        pytest.param({"qty": "1", "price": 10.0, "trade_id": "T9"}, id="float-price"),
        pytest.param({"qty": True, "price": "10", "trade_id": "T9"}, id="bool-qty"),
        pytest.param({"qty": "1", "price": "10"}, id="missing-trade-id"),
        pytest.param({"qty": "1", "price": "10", "trade_id": ""}, id="empty-trade-id"),
        pytest.param({"qty": "1", "price": "10", "trade_id": 9}, id="non-string-trade-id"),
        pytest.param({"qty": "one", "price": "10", "trade_id": "T9"}, id="non-numeric-qty"),
        pytest.param({"price": "10", "trade_id": "T9"}, id="missing-qty"),
        pytest.param({"qty": "1", "trade_id": "T9"}, id="missing-price"),
        pytest.param({"qty": "1", "price": "10", "trade_id": "T9", "fee": "x"}, id="non-numeric-fee"),
        pytest.param({"qty": "1", "price": "10", "trade_id": "T9", "fee": "NaN"}, id="nan-fee"),
        pytest.param({"qty": "1", "price": "10", "trade_id": "T9", "fee": 0.1}, id="float-fee"),
    ],
)
@pytest.mark.parametrize("start", ["accepted", "partially_filled", "pending_replace", "canceled"])
def test_bad_fill_data_is_invalid_and_leaves_order_unchanged(start: str, data: dict[str, Any]) -> None:
    order = BUILDERS[start]()
    before = snapshot(order)
    with pytest.raises(InvalidData) as info:
        ORDER.fire(order, "fill", **data)
    assert not isinstance(info.value, Overfill)
    assert_unchanged(order, before)


@pytest.mark.parametrize("state", ["new", "denied", "rejected"])
def test_fill_for_order_that_cannot_have_one(state: str) -> None:
    order = BUILDERS[state]()
    before = snapshot(order)
    with pytest.raises(InvalidTransition):
        fire_all(order, fill("1", trade_id="T9"))
    assert_unchanged(order, before)


@pytest.mark.parametrize("done", ["canceled", "expired"])
def test_late_fill_after_done_is_applied(done: str) -> None:
    order = BUILDERS[done]()  # 4 of 10 filled at 10 (T1)
    fire_all(order, fill("2", "13", "T2", fee="0.5"))
    assert order.state == done
    assert not order.live
    assert (order.data["cum_qty"], order.data["leaves_qty"], order.data["late_fills"]) == (6, 0, 1)
    assert order.data["avg_px"] == (D("40") + D("26")) / D("6")
    assert order.data["filled_notional"] == D("66")
    assert order.data["fees"] == D("0.5")
    assert order.data["trade_ids"] == ["T1", "T2"]
    fire_all(order, fill("2", "13", "T2"))  # the same report again: a duplicate, not another late fill
    assert (order.data["cum_qty"], order.data["late_fills"], order.data["duplicate_fills"]) == (6, 1, 1)
    before = snapshot(order)
    with pytest.raises(Overfill):  # the overfill check still applies
        fire_all(order, fill("5", trade_id="T3"))
    assert_unchanged(order, before)
    fire_all(order, fill("4", "10", "T3"))
    assert (order.data["cum_qty"], order.data["leaves_qty"], order.data["late_fills"]) == (10, 0, 2)
    assert order.state == done


def test_fees_accumulate_with_rebates() -> None:
    order = fire_all(
        accepted(),
        fill("2", trade_id="T1", fee="0.25"),
        fill("2", trade_id="T2", fee=D("-0.10")),
        fill("2", trade_id="T3"),
        fill("2", trade_id="T4", fee=1),
        fill("2", trade_id="T5", fee="0"),
    )
    assert order.data["fees"] == D("1.15")
    assert order.state == "filled"


# -- invariants under random triggers ----------------------------------------------------------

DECIMAL_TEXT = st.sampled_from(["1", "2", "3", "0.5", "4", "7", "12", "0", "-1", "abc", "NaN", "Infinity"])
ANY_NUMBER = st.one_of(
    DECIMAL_TEXT,
    st.integers(-2, 12),
    st.decimals(min_value=Decimal("-1"), max_value=Decimal("15"), places=1),
    st.just(1.5),
    st.just(True),
    st.none(),
)
PRICES = st.one_of(st.sampled_from(["9", "10.5", "11.25", "0", "x"]), st.integers(-1, 20), st.none(), st.just(2.5))
TEXT = st.one_of(st.sampled_from(["", "why", "V1"]), st.none(), st.integers(0, 2))
TRADE_IDS = st.one_of(st.sampled_from(["T1", "T2", "T3", "T4", "T5", "T6", ""]), st.none(), st.just(3))
TRIGGER_DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "fill": st.fixed_dictionaries(
        {"qty": ANY_NUMBER, "price": PRICES, "trade_id": TRADE_IDS},
        optional={"fee": st.one_of(st.sampled_from(["0.1", "-0.05", "0", "bad"]), st.integers(-1, 1))},
    ),
    "accept": st.fixed_dictionaries({}, optional={"venue_order_id": TEXT}),
    "request_replace": st.fixed_dictionaries({}, optional={"qty": ANY_NUMBER, "price": PRICES}),
    "replace": st.fixed_dictionaries({}, optional={"qty": ANY_NUMBER, "price": PRICES}),
    "restate": st.fixed_dictionaries({}, optional={"qty": ANY_NUMBER, "price": PRICES, "reason": TEXT}),
    "reconcile_lost": st.fixed_dictionaries({}, optional={"reason": TEXT, "evidence": TEXT}),
}
REASON_DATA = st.fixed_dictionaries({}, optional={"reason": TEXT})


@st.composite
def trigger_and_data(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    trigger = draw(st.sampled_from([*ORDER.triggers, "fill", "fill", "fill", "reconcile_fill", "bogus"]))
    return trigger, draw(TRIGGER_DATA.get(live_trigger(trigger), REASON_DATA))


class OrderInvariants(RuleBasedStateMachine):
    """Random triggers with random (valid and invalid) data never break an order's invariants."""

    order: Entity

    @initialize(
        kind=st.sampled_from(["limit", "market"]),
        qty=st.sampled_from(["5", "10", "12.5"]),
        tif=st.sampled_from(["gtc", "ioc", "fok", "day"]),
    )
    def create(self, kind: str, qty: str, tif: str) -> None:
        price = "10" if kind == "limit" else None
        self.order, _ = ORDER.create("o-h", instrument="XYZ", side="buy", type=kind, qty=qty, price=price, tif=tif)
        self.fills: list[tuple[Decimal, Decimal]] = []
        self.trade_ids: set[str] = set()
        self.was_done = False

    @rule(step=trigger_and_data())
    def fire(self, step: tuple[str, dict[str, Any]]) -> None:
        trigger, data = step
        before = snapshot(self.order)
        try:
            ORDER.fire(self.order, trigger, **data)
        except TransitionRefused:
            assert_unchanged(self.order, before)
            return
        if live_trigger(trigger) == "fill" and data["trade_id"] not in self.trade_ids:
            self.trade_ids.add(data["trade_id"])
            self.fills.append((Decimal(data["qty"]), Decimal(data["price"])))

    @invariant()
    def quantities(self) -> None:
        data = self.order.data
        cum_qty = sum((q for q, _ in self.fills), Decimal(0))
        assert data["cum_qty"] == cum_qty
        assert 0 <= data["cum_qty"] <= data["qty"]
        if self.order.state in DONE_STATES:
            assert data["leaves_qty"] == 0
        else:
            assert data["leaves_qty"] == data["qty"] - data["cum_qty"]

    @invariant()
    def average_price(self) -> None:
        notional = Decimal(0)
        for qty, price in self.fills:
            notional += qty * price
        if self.fills:
            assert self.order.data["avg_px"] == notional / self.order.data["cum_qty"]
        else:
            assert self.order.data["avg_px"] is None

    @invariant()
    def terminal_stays_terminal(self) -> None:
        if self.was_done:
            assert self.order.state in DONE_STATES
        self.was_done = self.order.state in DONE_STATES
        assert self.order.live == (not self.was_done)

    @invariant()
    def pending_remembers_prior(self) -> None:
        if self.order.state in ("pending_cancel", "pending_replace"):
            assert self.order.data["prior_state"] in ("pending_new", "accepted", "partially_filled")
        else:
            assert self.order.data["prior_state"] is None


OrderInvariants.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestOrderInvariants = OrderInvariants.TestCase


# -- restore ----------------------------------------------------------------------------------


def test_restore_round_trip_through_the_journal_codec() -> None:
    order = fire_all(
        partially_filled(),
        fill("1", "10.33", "T2", fee="0.01"),
        ("request_replace", {"qty": "12", "price": "10.5"}),
        fill("1", "10.33", "T2"),
    )
    text = codec.encode_text(order.data)
    decoded = codec.decode(text)
    assert isinstance(decoded["cum_qty"], str)  # the JSON carries decimals as strings
    restored = ORDER.restore("o-1", order.state, decoded)
    assert restored.state == "pending_replace"
    assert restored.data == order.data
    for name in ("qty", "price", "cum_qty", "leaves_qty", "avg_px", "filled_notional", "fees", "requested_qty"):
        assert isinstance(restored.data[name], Decimal), name
        assert str(restored.data[name]) == str(order.data[name])
    assert restored.data["trade_ids"] == ["T1", "T2"]
    # The restored order works on exactly like the original.
    ORDER.fire(restored, "replace")
    ORDER.fire(order, "replace")
    assert (restored.state, restored.data) == (order.state, order.data)


def test_restore_keeps_none_fields_and_missing_trade_ids() -> None:
    order = new_order("m-1", type="market", price=None)
    decoded = codec.decode(codec.encode_text(order.data))
    restored = ORDER.restore("m-1", "new", decoded)
    assert restored.data == order.data
    assert restored.data["price"] is None
    assert restored.data["avg_px"] is None
    del decoded["trade_ids"]
    assert ORDER.restore("m-1", "new", decoded).data["trade_ids"] == []


def test_restore_unknown_state_is_invalid() -> None:
    with pytest.raises(InvalidData, match="unknown state"):
        ORDER.restore("o-1", "working", {})


# -- reconciliation -----------------------------------------------------------------------------

LIVE_TRIGGERS = tuple(dict.fromkeys(r.trigger for r in LIVE_RULES))
RECONCILED = {"source": "reconciliation"}  # what the kernel adds to every reconcile_* trigger's data


def pending_cancel_from(prior: str) -> Entity:
    """An order pending cancel whose ``prior_state`` is ``prior`` (or, for ``acked``, an ack crossed it)."""
    if prior == "pending_new":
        return fire_all(new_order(), SUBMIT, ("request_cancel", {}))
    if prior == "acked":  # B.1.e: the ack crossed the request, prior_state is accepted
        return fire_all(new_order(), SUBMIT, ("request_cancel", {}), ACCEPT)
    if prior == "filled_before_ack":  # a partial fill before any ack: prior_state is partially_filled
        return fire_all(new_order(), SUBMIT, ("request_cancel", {}), fill("2"))
    return fire_all(BUILDERS[prior](), ("request_cancel", {}))


# Every state, and the pending states with each prior_state their guards tell apart.
MIRROR_STARTS: dict[str, Callable[[], Entity]] = {
    **BUILDERS,
    "pending_cancel(accepted)": lambda: pending_cancel_from("accepted"),
    "pending_cancel(partially_filled)": lambda: pending_cancel_from("partially_filled"),
    "pending_cancel(acked)": lambda: pending_cancel_from("acked"),
    "pending_cancel(filled_before_ack)": lambda: pending_cancel_from("filled_before_ack"),
    "pending_replace(accepted)": lambda: fire_all(accepted(), ("request_replace", {"qty": "3", "price": "9"})),
    "pending_replace(market)": lambda: fire_all(
        accepted(type="market", price=None), ("request_replace", {"qty": "12"})
    ),
}

# Valid data, data that picks each guarded rule, and invalid data, per mirrored trigger.
MIRROR_DATA: dict[str, list[dict[str, Any]]] = {
    "accept": [{"venue_order_id": "V9"}, {}, {"venue_order_id": ""}, {"venue_order_id": 9}],
    "reject": [{"reason": "unknown symbol"}, {}, {"reason": 3}],
    "fill": [
        {"qty": "1", "price": "10", "trade_id": "T-new", "fee": "0.01"},
        {"qty": "6", "price": "11", "trade_id": "T-new"},
        {"qty": "10", "price": "9.5", "trade_id": "T-new"},
        {"qty": "11", "price": "10", "trade_id": "T-new"},
        {"qty": "2", "price": "99", "trade_id": "T1"},
        {"qty": "0", "price": "10", "trade_id": "T-new"},
        {"qty": "1", "price": "10"},
        {"qty": 1.5, "price": "10", "trade_id": "T-new"},
    ],
    "cancel_reject": [{}, {"reason": "too late"}, {"reason": 1}],
    "cancel": [{}, {"reason": "venue"}, {"reason": 2}],
    "replace_reject": [{}, {"reason": "no"}],
    "replace": [{}, {"qty": "3"}, {"qty": "20", "price": "11"}, {"price": "7"}, {"qty": "0"}],
    "expire": [{}, {"reason": "day ended"}],
    "restate": [{"qty": "15"}, {"qty": "2"}, {"price": "9"}, {"qty": "abc"}, {"reason": 5}],
}


def outcome(order: Entity, trigger: str, data: dict[str, Any]) -> tuple[Any, ...]:
    """What firing did, comparable between a trigger and its mirror (the trigger's name left out)."""
    before = snapshot(order)
    try:
        transition = ORDER.fire(order, trigger, **data)
    except TransitionRefused as exc:
        assert_unchanged(order, before)
        return ("refused", type(exc), exc.reason, exc.state, order.state, order.data)
    assert transition.trigger == trigger
    recorded = {k: v for k, v in transition.data.items() if k != "source"}
    return ("fired", transition.source, transition.dest, recorded, order.state, order.data)


def test_mirrored_triggers_are_the_reconcile_triggers() -> None:
    reconcile = {t for t in ORDER.triggers if t.startswith(RECONCILE_PREFIX)}
    assert reconcile == {RECONCILE_PREFIX + t for t in MIRRORED} | {"reconcile_lost"}
    assert set(MIRRORED) <= set(LIVE_TRIGGERS)
    assert not set(LIVE_TRIGGERS) & reconcile


@pytest.mark.parametrize("trigger", MIRRORED)
def test_mirror_rules_are_exact_copies(trigger: str) -> None:
    live = [r for r in ORDER.rules if r.trigger == trigger]
    mirrors = [r for r in ORDER.rules if r.trigger == RECONCILE_PREFIX + trigger]
    assert live
    assert len(mirrors) == len(live)
    for original, mirror in zip(live, mirrors, strict=True):
        assert (mirror.sources, mirror.dest, mirror.guard_label) == (
            original.sources,
            original.dest,
            original.guard_label,
        )
        assert mirror.guard is original.guard
        assert mirror.effect is original.effect
        assert mirror.doc == f"Reconciliation: {original.doc}"
    # and the engine allows both from the same states:
    for state in ORDER.state_names:
        allowed = ORDER.allowed_triggers(state)
        assert (trigger in allowed) == (RECONCILE_PREFIX + trigger in allowed), state


def test_mirrors_refuse_a_trigger_without_rules() -> None:
    with pytest.raises(DefinitionError, match="no rules to mirror for amend"):
        _mirrors(LIVE_RULES, ("fill", "amend"))
    assert [r.trigger for r in _mirrors(LIVE_RULES, ("expire",))] == ["reconcile_expire"]


@pytest.mark.parametrize(
    ("trigger", "live"),
    [
        ("reconcile_fill", "fill"),
        ("reconcile_cancel_reject", "cancel_reject"),
        ("fill", "fill"),
        ("reconcile_lost", "reconcile_lost"),
        ("reconcile_submit", "reconcile_submit"),
        ("reconcile_", "reconcile_"),
        ("submit", "submit"),
    ],
)
def test_live_trigger_names_what_a_mirror_copies(trigger: str, live: str) -> None:
    assert live_trigger(trigger) == live


@pytest.mark.parametrize("trigger", MIRRORED)
def test_each_mirror_behaves_exactly_like_its_live_trigger(trigger: str) -> None:
    """Exhaustive: every start state (and prior_state) x valid, guard-picking and invalid data."""
    fired = refused = 0
    for start, build in MIRROR_STARTS.items():
        for data in MIRROR_DATA[trigger]:
            live = outcome(build(), trigger, data)
            mirrored = outcome(build(), RECONCILE_PREFIX + trigger, {**data, **RECONCILED})
            assert mirrored == live, (start, data)
            fired += live[0] == "fired"
            refused += live[0] == "refused"
    assert fired, "the loop exercised no rule"
    assert refused, "the loop exercised no refusal"


@st.composite
def live_step(draw: st.DrawFn) -> tuple[str, dict[str, Any], bool]:
    """A live trigger with random data, and whether to fire its reconcile_ mirror instead."""
    trigger = draw(st.sampled_from([*LIVE_TRIGGERS, "fill", "fill", "fill", "accept"]))
    return trigger, draw(TRIGGER_DATA.get(trigger, REASON_DATA)), draw(st.booleans())


@settings(max_examples=150, deadline=None)
@given(
    start=st.sampled_from(["new", "pending_new", "accepted", "partially_filled"]),
    market=st.booleans(),
    steps=st.lists(live_step(), max_size=25),
)
def test_reconcile_mirrors_replay_random_sequences_like_live_reports(
    start: str, market: bool, steps: list[tuple[str, dict[str, Any], bool]]
) -> None:
    """Firing the reconcile_ variant in place of any live trigger gives the same state and data."""
    terms: dict[str, Any] = {"type": "market", "price": None} if market else {}
    path = {"new": [], "pending_new": [SUBMIT], "accepted": [SUBMIT, ACCEPT], "partially_filled": [SUBMIT, fill("4")]}
    live = fire_all(new_order(**terms), *path[start])
    mixed = fire_all(new_order(**terms), *path[start])
    for trigger, data, use_mirror in steps:
        expected = outcome(live, trigger, data)
        if use_mirror and trigger in MIRRORED:
            assert outcome(mixed, RECONCILE_PREFIX + trigger, {**data, **RECONCILED}) == expected
        else:
            assert outcome(mixed, trigger, data) == expected
    assert (mixed.state, mixed.data) == (live.state, live.data)


@pytest.mark.parametrize("evidence", [{}, {"evidence": "venue says unknown order, twice, 1 s apart"}])
def test_reconcile_lost_from_pending_new_is_rejected(evidence: dict[str, Any]) -> None:
    order = fire_all(new_order(), SUBMIT)
    transition = ORDER.fire(order, "reconcile_lost", reason="lost: never received", **evidence, **RECONCILED)
    assert (transition.source, transition.dest, transition.trigger) == ("pending_new", "rejected", "reconcile_lost")
    assert dict(transition.data) == {"reason": "lost: never received", **evidence, **RECONCILED}
    assert order.state == "rejected"
    assert not order.live
    assert (order.data["reason"], order.data["leaves_qty"], order.data["prior_state"]) == (
        "lost: never received",
        0,
        None,
    )
    assert "evidence" not in order.data  # kept in the transition (the audit), not on the order
    assert (order.data["cum_qty"], order.data["venue_order_id"]) == (0, None)


def test_reconcile_lost_while_pending_cancel_of_an_unacked_order_is_rejected() -> None:
    order = pending_cancel_from("pending_new")
    transition = ORDER.fire(order, "reconcile_lost", reason="lost", evidence="unknown at the venue")
    assert (transition.source, transition.dest) == ("pending_cancel", "rejected")
    assert (order.state, order.data["prior_state"], order.data["leaves_qty"]) == ("rejected", None, 0)
    assert order.data["reason"] == "lost"


@pytest.mark.parametrize(
    "start",
    [
        *(s for s in BUILDERS if s != "pending_new" and s != "pending_cancel"),
        "pending_cancel(accepted)",
        "pending_cancel(partially_filled)",
        "pending_cancel(acked)",
        "pending_cancel(filled_before_ack)",
        "pending_replace(accepted)",
    ],
)
def test_reconcile_lost_is_refused_once_the_venue_knew_the_order(start: str) -> None:
    """Acked, filled, never sent or done: the venue knew it (or it was never sent), never "lost"."""
    order = MIRROR_STARTS[start]()
    before = snapshot(order)
    with pytest.raises(InvalidTransition) as info:
        ORDER.fire(order, "reconcile_lost", reason="lost", evidence="x", **RECONCILED)
    assert (info.value.trigger, info.value.state) == ("reconcile_lost", order.state)
    assert_unchanged(order, before)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "reconcile_lost needs a reason"),
        ({"reason": ""}, "reconcile_lost needs a reason"),
        ({"reason": None}, "reconcile_lost needs a reason"),
        ({"reason": 3}, "reconcile_lost needs a reason"),
        ({"evidence": "unknown at the venue"}, "reconcile_lost needs a reason"),
        ({"reason": "lost", "evidence": 7}, "evidence must be a string"),
        ({"reason": "lost", "evidence": ["a"]}, "evidence must be a string"),
    ],
)
@pytest.mark.parametrize("start", ["pending_new", "pending_cancel"])
def test_reconcile_lost_needs_a_reason(start: str, data: dict[str, Any], message: str) -> None:
    order = BUILDERS[start]()
    before = snapshot(order)
    with pytest.raises(InvalidData, match=message) as info:
        ORDER.fire(order, "reconcile_lost", **data)
    assert (info.value.trigger, info.value.state) == ("reconcile_lost", start)
    assert_unchanged(order, before)


def test_reconcile_lost_with_a_null_evidence_counts_as_none() -> None:
    order = fire_all(new_order(), SUBMIT, ("reconcile_lost", {"reason": "lost", "evidence": None}))
    assert order.state == "rejected"


def test_create_origin_defaults_to_kernel() -> None:
    order, created = ORDER.create("o-1", **LIMIT)
    assert order.data["origin"] == "kernel"
    assert "origin" not in created.data  # the journal records what was given


def test_create_adopts_an_external_order() -> None:
    order, created = ORDER.create("ext-1", **LIMIT, origin="external")
    assert (order.state, order.data["origin"]) == ("new", "external")
    assert created.data["origin"] == "external"
    fire_all(
        order,
        ("submit", RECONCILED),
        ("reconcile_accept", {"venue_order_id": "V5", **RECONCILED}),
        ("reconcile_fill", {"qty": "4", "price": "10", "trade_id": "T1", **RECONCILED}),
        fill("6", trade_id="T2"),
    )
    assert (order.state, order.data["cum_qty"], order.data["venue_order_id"]) == ("filled", 10, "V5")
    assert order.data["origin"] == "external"


def test_create_explicit_kernel_origin() -> None:
    assert new_order(origin="kernel").data["origin"] == "kernel"


@pytest.mark.parametrize("origin", ["venue", "", "EXTERNAL", None, 1, True])
def test_create_refuses_an_unknown_origin(origin: object) -> None:
    with pytest.raises(InvalidData, match="origin must be one of kernel, external") as info:
        ORDER.create("o-1", **LIMIT, origin=origin)
    assert info.value.trigger == CREATE


def test_restore_defaults_origin_of_orders_journaled_before_it_existed() -> None:
    order = fire_all(partially_filled(), ("request_cancel", {}))
    decoded = codec.decode(codec.encode_text(order.data))
    del decoded["origin"]  # a row written before orders had an origin
    restored = ORDER.restore("o-1", "pending_cancel", decoded)
    assert restored.data["origin"] == "kernel"
    assert restored.data == order.data
    ORDER.fire(restored, "reconcile_cancel", reason="canceled while we were down", **RECONCILED)
    assert (restored.state, restored.data["cum_qty"], restored.data["leaves_qty"]) == ("canceled", 4, 0)


def test_restore_keeps_an_external_origin() -> None:
    order = new_order("ext-1", origin="external")
    restored = ORDER.restore("ext-1", "new", codec.decode(codec.encode_text(order.data)))
    assert restored.data["origin"] == "external"
    assert restored.data == order.data


# -- the documented scenarios ------------------------------------------------------------------


def _doc_scenarios() -> list[Any]:
    params = []
    for path in sorted(SCENARIO_DIR.glob("*.json")):
        for scenario in parse(json.loads(path.read_text(encoding="utf-8")), source=path.name):
            params.append(pytest.param(scenario, id=f"{path.stem}:{scenario.entity}"))
    return params


@pytest.mark.parametrize("scenario", _doc_scenarios())
def test_documented_scenario(scenario: Any) -> None:
    result = run(scenario)
    assert result.passed, "\n".join(result.describe_failures())
    assert result.steps, "a scenario with no steps checks nothing"


def test_fix_scenarios_cite_the_matrices() -> None:
    document = json.loads((SCENARIO_DIR / "fix_appendix_d.json").read_text(encoding="utf-8"))
    cited = [s for s in document if re.search(r"\b[A-I]\.\d+\.[a-z]\b", s.get("name", ""))]
    assert len(cited) >= 15, [s.get("name") for s in document]
    assert len({s["entity"] for s in document}) == len(document)


def test_order_states_are_public_names() -> None:
    assert set(ORDER.state_names) == {s.value for s in OrderState}
    assert ORDER.terminal_names == DONE_STATES


def test_a_late_reject_without_a_reason_keeps_the_recorded_reason() -> None:
    order = fire_all(accepted(), ("cancel", {"reason": "venue halted"}))
    ORDER.fire(order, "cancel_reject")
    assert order.data["reason"] == "venue halted"
    ORDER.fire(order, "replace_reject", reason="too late")
    assert order.data["reason"] == "too late"


def test_a_null_fee_counts_as_no_fee() -> None:
    order = fire_all(accepted(), fill("1", fee=None))
    assert order.data["fees"] == 0
    assert order.data["cum_qty"] == 1


# -- issue 14: a request answered as if the venue's order were done or gone ---------------------------

DOUBT = {"reason": "too late", "in_doubt": True}


@pytest.mark.parametrize(
    ("start", "trigger", "data", "state", "prior"),
    [
        # in doubt, acknowledged: stays pending, prior kept, until the status query settles it
        ("pending_cancel(accepted)", "cancel_reject", DOUBT, "pending_cancel", "accepted"),
        ("pending_cancel(partially_filled)", "cancel_reject", DOUBT, "pending_cancel", "partially_filled"),
        ("pending_cancel(acked)", "cancel_reject", DOUBT, "pending_cancel", "accepted"),
        ("pending_replace(accepted)", "replace_reject", DOUBT, "pending_replace", "accepted"),
        ("pending_replace", "replace_reject", DOUBT, "pending_replace", "partially_filled"),
        # without in_doubt: back to the prior state, as ever (B.1.d, C.2.a)
        ("pending_cancel(accepted)", "cancel_reject", {"reason": "too late"}, "accepted", None),
        ("pending_replace(accepted)", "replace_reject", {"reason": "too late"}, "accepted", None),
        # before the ack (B.1.f): in_doubt does not hold, back to pending_new
        ("pending_cancel", "cancel_reject", DOUBT, "pending_new", None),
        # done already: harmless, recorded
        ("filled", "cancel_reject", DOUBT, "filled", None),
        ("canceled", "replace_reject", DOUBT, "canceled", None),
    ],
)
def test_a_too_late_answer_keeps_an_acked_order_pending(
    start: str, trigger: str, data: dict[str, Any], state: str, prior: str | None
) -> None:
    order = MIRROR_STARTS[start]()
    transition = ORDER.fire(order, trigger, **data)
    assert (transition.dest, order.state, order.data["prior_state"]) == (state, state, prior)
    assert order.data["reason"] == "too late"


LOST = {"reason": "lost: the venue no longer knows the order", "evidence": "no such order", "source": "status"}


@pytest.mark.parametrize(
    ("start", "cum_qty"),
    [
        ("accepted", D(0)),
        ("partially_filled", D(4)),
        ("pending_cancel(accepted)", D(0)),
        ("pending_cancel(partially_filled)", D(4)),
        ("pending_cancel(acked)", D(0)),
        ("pending_cancel(filled_before_ack)", D(2)),  # a fill proves the venue had it
        ("pending_replace(accepted)", D(0)),
        ("pending_replace", D(4)),
    ],
)
def test_lost_ends_an_acked_order_expired_with_the_reason(start: str, cum_qty: Decimal) -> None:
    order = MIRROR_STARTS[start]()
    transition = ORDER.fire(order, "lost", **LOST)
    assert (transition.trigger, transition.dest, dict(transition.data)) == ("lost", "expired", LOST)
    assert (order.state, order.live, order.data["reason"]) == ("expired", False, LOST["reason"])
    assert (order.data["leaves_qty"], order.data["cum_qty"], order.data["prior_state"]) == (0, cum_qty, None)
    assert (order.data["requested_qty"], order.data["requested_price"]) == (None, None)
    assert "evidence" not in order.data  # kept in the transition (the audit)


@pytest.mark.parametrize(
    "start", ["new", "pending_new", "pending_cancel", "denied", "rejected", "filled", "canceled", "expired"]
)
def test_lost_is_refused_before_the_ack_and_once_done(start: str) -> None:
    order = MIRROR_STARTS[start]()
    before = snapshot(order)
    with pytest.raises(InvalidTransition):
        ORDER.fire(order, "lost", **LOST)
    assert_unchanged(order, before)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "lost needs a reason"),
        ({"reason": ""}, "lost needs a reason"),
        ({"reason": 3, "evidence": "x"}, "lost needs a reason"),
        ({"reason": "lost", "evidence": 7}, "evidence must be a string"),
    ],
)
def test_lost_needs_a_reason(data: dict[str, Any], message: str) -> None:
    order = accepted()
    before = snapshot(order)
    with pytest.raises(InvalidData, match=message):
        ORDER.fire(order, "lost", **data)
    assert_unchanged(order, before)
