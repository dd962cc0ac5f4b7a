"""The compiled dispatch (``StateMachine.fire``) against the ``transitions`` reference (``fire_reference``).

For every registered machine kind, Hypothesis draws sequences of triggers (known and unknown, valid
and invalid for the state the entity is in) with data that is mostly plausible and often wrong
(wrong types, floats, missing and unknown keys, zero and negative decimals, repeated trade ids). Each
step is fired on twin entities, one through each path; the two must agree on the outcome (the
``Transition``, or the error's type, message and bound context), on the entity's state and data
after, and on what the journal would write (the row's data and the entity's state snapshot).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import machines
from machines import InvalidData, InvalidTransition, StateMachine, registry
from machines.errors import TransitionRefused
from machines.order import completes, live_trigger
from machines.order_data import fill_data
from machines.positions import buys
from machines.shared_parse import LastParse
from storage import codec

# A valid ``create`` for every machine kind the process registers (a new kind must add one here).
CREATE: dict[str, dict[str, Any]] = {
    "order": {"instrument": "BTCUSDT", "side": "buy", "type": "limit", "qty": "10", "price": "100.5"},
    "position": {},
    "feed": {"url": "ws://localhost:9000", "instruments": ["BTC", "ETH"]},
    "health": {"now_ms": 0},
    "reconciliation": {"now_ms": 5, "reason": "run 1 crashed"},
    "run": {"started_ns": 1},
    "trading": {"now_ms": 0},
    "toy": {"target": "5"},  # the tests' own machine (tests/toy.py, registered by conftest)
}

# Plausible trigger data per kind: the base each step's data is drawn around.
TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "order": [
        {},
        {"venue_order_id": "V1"},
        {"qty": "4", "price": "100.5", "trade_id": "T1"},
        {"qty": "6", "price": "100.4", "trade_id": "T2"},
        {"qty": Decimal("3"), "price": Decimal("99"), "trade_id": "T3", "fee": "0.01"},
        {"qty": "8"},
        {"price": "101"},
        {"qty": "2", "price": "100"},
        {"reason": "too late", "in_doubt": True},
        {"reason": "venue said so"},
        {"reason": "not found", "evidence": "status query"},
    ],
    "position": [
        {"side": "buy", "qty": "2", "price": "100", "trade_id": "T1", "client_order_id": "o1"},
        {"side": "sell", "qty": "1", "price": "101.5", "trade_id": "T2", "client_order_id": "o1", "fee": "0.1"},
        {"side": "sell", "qty": "3", "price": "99", "trade_id": "T3", "client_order_id": "o2"},
        {"side": "buy", "qty": Decimal("1.5"), "price": Decimal("100"), "trade_id": "T4", "client_order_id": "o3"},
    ],
    "feed": [
        {"now_ms": 10},
        {"now_ms": 20, "instrument": "BTC"},
        {"now_ms": 30, "instrument": "ETH", "expected": 5, "received": 7},
        {"now_ms": 40, "code": 1006, "reason": "closed"},
        {"now_ms": 50, "reason": "stop"},
    ],
    "health": [
        {"now_ms": 10},
        {"now_ms": 20, "reason": "slow"},
        {"now_ms": 30, "reason": "slow", "pauses_entry": False},
    ],
    "reconciliation": [
        {"now_ms": 10},
        {"now_ms": 20, "reason": "again"},
        {"now_ms": 30, "error": "venue down"},
        {"now_ms": 40, "counts": {"orders": 1}, "differences": [], "fills_cursor": "f1", "venue_positions": {}},
    ],
    "toy": [{}, {"qty": "2"}, {"qty": Decimal("3.5")}],
    "run": [{"ended_ns": 5}, {"detected_by_run": 2, "detected_ns": 9}],
    "trading": [
        {"now_ms": 10},
        {"now_ms": 20, "reason": "operator"},
        {"now_ms": 30, "reason": "operator", "flatten": True, "timeout_ms": 1000},
        {"now_ms": 40, "limit": "max_loss", "value": "5", "threshold": "4", "reason": "loss"},
        {"now_ms": 50, "component": "feed", "reason": "stale"},
    ],
}

# The order's templates by trigger (its 24 triggers would rarely meet the one template that fits).
FILLS = [t for t in TEMPLATES["order"] if "trade_id" in t]
ORDER_BY_TRIGGER: dict[str, list[dict[str, Any]]] = {
    "accept": [{"venue_order_id": "V1"}],
    "fill": FILLS,
    "request_replace": [{"qty": "8"}, {"price": "101"}, {"qty": "2", "price": "100"}],
    "replace": [{}, {"qty": "8"}, {"qty": "2", "price": "100"}, {"price": "101"}],
    "restate": [{"qty": "8"}, {"qty": "2", "reason": "declined"}, {"price": "101"}],
}

# Every key some machine reads from trigger data (``model`` and ``self`` are left out: they collide
# with ``transitions``' own arguments in the reference path, see ``fire_reference``).
KEYS = sorted(
    {key for templates in TEMPLATES.values() for template in templates for key in template}
    | {"instruments", "url", "started_ns", "extra"}
)

VALUES = st.one_of(
    st.sampled_from(
        [None, True, False, 0, 1, -1, 2**63, "", "x", "T1", "T2", "BTC", "0", "-1", "abc", "NaN", "1e3", "4", "6"]
    ),
    st.decimals(min_value=-20, max_value=20, places=2),
    st.sampled_from([Decimal(0), Decimal(-3), Decimal("NaN"), Decimal("Infinity"), Decimal("1E+2")]),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False, width=32),
    st.lists(st.sampled_from(["BTC", 1, 1.5, None]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "orders"]), st.sampled_from([1, "x", 0.5]), max_size=2),
)


def step(draw: st.DrawFn, machine: StateMachine, state: str, kind: str) -> tuple[str, dict[str, Any]]:
    """A trigger (mostly one the table has from ``state``) and its data (mostly plausible, often spoiled)."""
    allowed = machine.allowed_triggers(state)
    if allowed and draw(st.integers(min_value=0, max_value=3)):
        trigger = draw(st.sampled_from(allowed))
    else:
        trigger = draw(st.sampled_from([*machine.triggers, "bogus"]))
    templates = TEMPLATES[kind]
    if kind == "order" and draw(st.integers(min_value=0, max_value=3)):
        templates = ORDER_BY_TRIGGER.get(live_trigger(trigger), templates)
    data = dict(draw(st.sampled_from(templates)))
    if not draw(st.integers(min_value=0, max_value=2)):  # spoil it: drop keys, add or overwrite with random values
        for key in draw(st.sets(st.sampled_from(sorted(data) or ["extra"]), max_size=2)):
            data.pop(key, None)
        data.update(draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)))
    return trigger, data


def outcome(fire: Any, entity: Any, trigger: str, data: dict[str, Any]) -> tuple[Any, ...]:
    try:
        transition = fire(entity, trigger, **copy.deepcopy(data))
    except TransitionRefused as exc:
        bound = (exc.machine, exc.entity_id, exc.state, exc.trigger)
        return ("refused", type(exc), str(exc), bound)
    except Exception as exc:  # any other error must match too
        return ("error", type(exc), str(exc))
    row = codec.encode(transition.data.copy())
    return ("ok", transition._replace(data=dict(transition.data)), row)


def snapshot(entity: Any) -> tuple[Any, ...]:
    return (entity.state, repr(entity.data), codec.encode(entity.data))


@pytest.mark.parametrize("kind", registry.names())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_dispatch_matches_transitions(kind: str, data: st.DataObject) -> None:
    machine: StateMachine = registry.get(kind)
    compiled, _ = machine.create("e-1", **copy.deepcopy(CREATE[kind]))
    reference, _ = machine.create("e-1", **copy.deepcopy(CREATE[kind]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=15), label="steps")):
        trigger, trigger_data = step(data.draw, machine, reference.state, kind)
        got = outcome(machine.fire, compiled, trigger, trigger_data)
        want = outcome(machine.fire_reference, reference, trigger, trigger_data)
        assert got == want, (trigger, trigger_data)
        assert snapshot(compiled) == snapshot(reference), (trigger, trigger_data)


def test_every_registered_machine_is_covered() -> None:
    assert machines.ORDER is registry.get("order")
    assert set(registry.names()) == set(CREATE), "add a create example and templates for each new machine"


def test_order_fill_sequence_hand_checked() -> None:
    """A hand-written run through both paths: the same states and figures at every step."""
    order_machine = registry.get("order")
    for fire in (order_machine.fire, order_machine.fire_reference):
        order, _ = order_machine.create("o-1", **CREATE["order"])
        fire(order, "submit")
        fire(order, "accept", venue_order_id="V1")
        first = fire(order, "fill", qty="4", price="100.5", trade_id="T1")
        assert (first.source, first.dest) == ("accepted", "partially_filled")
        repeat = fire(order, "fill", qty="4", price="100.5", trade_id="T1")
        assert (repeat.source, repeat.dest) == ("partially_filled", "partially_filled")
        assert order.data["duplicate_fills"] == 1
        with pytest.raises(InvalidData, match="fill qty"):
            fire(order, "fill", qty="-1", price="100", trade_id="T9")
        last = fire(order, "fill", qty="6", price="100.4", trade_id="T2")
        assert (last.dest, order.data["cum_qty"], order.data["avg_px"]) == ("filled", Decimal(10), Decimal("100.44"))
        with pytest.raises(InvalidTransition, match="not allowed from this state") as refused:
            fire(order, "submit")
        assert (refused.value.machine, refused.value.entity_id, refused.value.state) == ("order", "o-1", "filled")


def test_compiled_fire_takes_keys_the_reference_cannot() -> None:
    """``model`` is an argument of ``transitions``' own trigger: only the compiled path takes it as data."""
    run_machine = registry.get("run")
    run, _ = run_machine.create("1", started_ns=1)
    initial = run.state
    with pytest.raises(InvalidData, match="ended_ns"):
        run_machine.fire(run, "stop", model="x")
    assert run.state == initial
    with pytest.raises(TypeError):
        run_machine.fire_reference(run, "stop", model="x")


# -- one parse shared by the guards and the effect ------------------------------------------------


def test_last_parse_is_keyed_by_the_mapping_and_the_values_read() -> None:
    memo: LastParse[str] = LastParse()
    data = {"qty": "4"}
    key = (data["qty"],)
    assert memo.put(data, key, "parsed") == "parsed"
    assert memo.get(data, key) == "parsed"
    assert memo.get({"qty": "4"}, key) is None  # an equal mapping is another trigger's data
    assert memo.get(data, ("4.0",)) is None  # a value read differs
    assert memo.get(data, (data["qty"], None)) is None  # another read of it


def test_an_order_fill_changed_in_place_is_parsed_again() -> None:
    data: dict[str, Any] = {"qty": "4", "price": "100.5", "trade_id": "T1"}
    assert fill_data(data) == (Decimal(4), Decimal("100.5"), "T1", Decimal(0))
    data["qty"] = "5"
    data["fee"] = "-0.25"
    assert fill_data(data) == (Decimal(5), Decimal("100.5"), "T1", Decimal("-0.25"))
    data["price"] = "0"
    with pytest.raises(InvalidData, match="fill price must be positive"):
        fill_data(data)


def test_bad_fill_errors_keep_each_readers_order() -> None:
    """The effect checks qty before trade_id; the ``completes`` guard reads trade_id first."""
    order_machine = registry.get("order")
    order, _ = order_machine.create("o-1", **CREATE["order"])
    bad = {"qty": "-1", "price": "100", "trade_id": ""}
    with pytest.raises(InvalidData, match="fill qty must be positive"):
        fill_data(bad)
    with pytest.raises(InvalidData, match="fill needs a trade_id"):
        completes(order, bad)
    # a bad price is the effect's business: the guard answers from qty and trade_id alone
    assert completes(order, {"qty": "10", "price": "-1", "trade_id": "T1"}) is True


def test_a_position_fill_given_an_unknown_field_in_place_is_refused() -> None:
    position_machine = registry.get("position")
    position, _ = position_machine.create("BTCUSDT")
    data: dict[str, Any] = {"side": "buy", "qty": "2", "price": "100", "trade_id": "T1", "client_order_id": "o1"}
    assert buys(position, data) is True
    data["venue"] = "x"
    with pytest.raises(InvalidData, match="unknown fill fields: venue"):
        buys(position, data)
