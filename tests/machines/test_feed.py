"""The ``feed`` machine (``machines.feed``): connection lifecycle, backoff, staleness, resync.

Ladder: creation validation; a table test over every state x trigger (expectations written out by
hand from docs/machines/feed.md, not derived from ``FEED``'s rules); each guard both ways; the
backoff sequence stepped with a fake clock (exact delays for a seed, the cap, the reset after a
healthy period and none before it, accept-then-close); ``max_attempts``; staleness counted from
subscription, as the timer the machine asks for; per-instrument resync; trigger data validation; a
Hypothesis ``RuleBasedStateMachine`` with invariants; the journal codec round trip; and the
documented scenarios in docs/scenarios/feed.json.
"""

from __future__ import annotations

import ast
import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import machines
from machines import CREATE, FEED, Entity, FeedState, InvalidData, InvalidTransition, TransitionRefused, registry
from machines.feed import (
    DEFAULTS,
    MAX_MS,
    TimerNotDue,
    attempts_spent,
    backoff_delay,
    initially_synced,
    last_snapshot,
    next_timer,
    nothing_awaited,
    others_stale,
    stale_instruments,
    usable_instruments,
)
from machines.scenario import assert_scenario, parse, run
from storage import codec

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "docs" / "scenarios" / "feed.json"
FEED_SOURCE = REPO / "machines" / "feed.py"
BASIC = {"url": "wss://venue.test/md", "instruments": ["BTC", "ETH"], "seed": 7}
LATE = 10**9  # a now_ms after every deadline a builder sets

# -- helpers ----------------------------------------------------------------------------------


def snapshot(feed: Entity) -> tuple[str, dict[str, Any]]:
    return feed.state, copy.deepcopy(feed.data)


def assert_unchanged(feed: Entity, before: tuple[str, dict[str, Any]]) -> None:
    assert (feed.state, feed.data) == before


def new_feed(**overrides: Any) -> Entity:
    feed, _ = FEED.create("md-1", **{**BASIC, **overrides})
    return feed


def fire(feed: Entity, trigger: str, now_ms: int, **data: Any) -> Entity:
    FEED.fire(feed, trigger, now_ms=now_ms, **data)
    return feed


def drop(feed: Entity, now_ms: int, code: int = 1006, reason: str = "") -> Entity:
    return fire(feed, "disconnected", now_ms, code=code, reason=reason)


def connecting(**overrides: Any) -> Entity:
    return fire(new_feed(**overrides), "connect", 0)


def subscribing(**overrides: Any) -> Entity:
    return fire(connecting(**overrides), "connected", 100)


def syncing(**overrides: Any) -> Entity:
    """Subscribed at 1000: staleness counts from there."""
    return fire(subscribing(**overrides), "subscribed", 1000)


def streaming(**overrides: Any) -> Entity:
    """Both snapshots applied; streaming since 1200."""
    feed = fire(syncing(**overrides), "snapshot_applied", 1100, instrument="BTC")
    return fire(feed, "snapshot_applied", 1200, instrument="ETH")


def resyncing() -> Entity:
    return fire(streaming(), "gap_detected", 2000, instrument="BTC", expected=5, received=7)


def stale() -> Entity:
    """Initial sync unfinished (ETH awaits its snapshot) and ETH stale."""
    feed = fire(syncing(), "snapshot_applied", 1100, instrument="BTC")
    return fire(feed, "stale_timeout", 6000, instrument="ETH")


def backoff() -> Entity:
    return drop(streaming(), 3000)


BUILDERS: dict[str, Callable[[], Entity]] = {
    "idle": new_feed,
    "connecting": connecting,
    "subscribing": subscribing,
    "syncing": syncing,
    "streaming": streaming,
    "stale": stale,
    "resyncing": resyncing,
    "backoff": backoff,
    "closed": lambda: fire(streaming(), "stop", 5000),
    "failed": lambda: fire(connecting(), "fatal", 50, reason="auth refused", code=4001),
}


def valid_data(state: str, trigger: str) -> dict[str, Any]:
    """Data the rules accept for ``trigger`` from the builder's entity in ``state``."""
    instrument = "ETH" if (state, trigger) in {("stale", "snapshot_applied"), ("stale", "data_resumed")} else "BTC"
    extra: dict[str, dict[str, Any]] = {
        "snapshot_applied": {"instrument": instrument},
        "gap_detected": {"instrument": instrument},
        "stale_timeout": {"instrument": instrument},
        "data_resumed": {"instrument": instrument},
        "disconnected": {"code": 1001, "reason": "going away"},
        "fatal": {"reason": "bad url"},
    }
    return {"now_ms": LATE, **extra.get(trigger, {})}


# The feed's table as docs/machines/feed.md states it, written out by hand: (state, trigger) -> the
# state the builder's feed is in afterwards with ``valid_data``. Every pair not listed is refused.
EXPECTED: dict[tuple[str, str], str] = {
    ("idle", "connect"): "connecting",
    ("idle", "stop"): "closed",
    ("connecting", "connected"): "subscribing",
    ("connecting", "disconnected"): "backoff",  # never opened: an attempt, a retry timer
    ("connecting", "stop"): "closed",
    ("connecting", "fatal"): "failed",
    ("subscribing", "subscribed"): "syncing",
    ("subscribing", "disconnected"): "backoff",
    ("subscribing", "stop"): "closed",
    ("subscribing", "fatal"): "failed",
    ("syncing", "snapshot_applied"): "syncing",  # BTC applied, ETH still awaited
    ("syncing", "gap_detected"): "syncing",
    ("syncing", "stale_timeout"): "stale",
    ("syncing", "disconnected"): "backoff",
    ("syncing", "stop"): "closed",
    ("syncing", "fatal"): "failed",
    ("streaming", "gap_detected"): "resyncing",  # only BTC resyncs
    ("streaming", "stale_timeout"): "stale",
    ("streaming", "disconnected"): "backoff",
    ("streaming", "stop"): "closed",
    ("streaming", "fatal"): "failed",
    ("stale", "snapshot_applied"): "stale",  # ETH's snapshot, but ETH is still stale
    ("stale", "gap_detected"): "stale",
    ("stale", "stale_timeout"): "stale",  # another instrument
    ("stale", "data_resumed"): "syncing",  # ETH fresh again, its initial snapshot still awaited
    ("stale", "disconnected"): "backoff",
    ("stale", "stop"): "closed",
    ("stale", "fatal"): "failed",
    ("resyncing", "snapshot_applied"): "streaming",  # the last awaited snapshot
    ("resyncing", "gap_detected"): "resyncing",
    ("resyncing", "stale_timeout"): "stale",
    ("resyncing", "disconnected"): "backoff",
    ("resyncing", "stop"): "closed",
    ("resyncing", "fatal"): "failed",
    ("backoff", "retry_due"): "connecting",
    ("backoff", "venue_back"): "connecting",  # the venue answers again: retry before the timer
    ("backoff", "stop"): "closed",
    ("backoff", "fatal"): "failed",
    ("closed", "connect"): "connecting",  # closed accepts connect again
    # failed: terminal, refuses everything
}
STATES = (
    "idle",
    "connecting",
    "subscribing",
    "syncing",
    "streaming",
    "stale",
    "resyncing",
    "backoff",
    "closed",
    "failed",
)
TRIGGERS = (
    "connect",
    "retry_due",
    "venue_back",
    "connected",
    "subscribed",
    "snapshot_applied",
    "gap_detected",
    "stale_timeout",
    "data_resumed",
    "disconnected",
    "stop",
    "fatal",
)


def cycle(feed: Entity, now_ms: int, *, stream_for: int | None = None) -> tuple[Entity, int]:
    """From ``backoff``: retry when due, connect, maybe stream exactly ``stream_for`` ms, drop.

    Returns the feed and the time of the drop.
    """
    start = max(now_ms, feed.data["timer"]["due_ms"])
    fire(feed, "retry_due", start)
    fire(feed, "connected", start + 5)
    end = start + 10
    if stream_for is not None:
        fire(feed, "subscribed", start + 10)
        fire(feed, "snapshot_applied", start + 15, instrument="BTC")
        fire(feed, "snapshot_applied", start + 20, instrument="ETH")
        end = start + 20 + stream_for
    drop(feed, end)
    return feed, end


# -- creation ---------------------------------------------------------------------------------


def test_create_defaults() -> None:
    feed, created = FEED.create("md-1", url="ws://localhost:9000", instruments=["BTC"])
    assert feed.state == "idle"
    assert feed.live
    assert feed.data == {
        "url": "ws://localhost:9000",
        "instruments": ["BTC"],
        **DEFAULTS,
        "attempt": 0,
        "retry_delay_ms": None,
        "close_code": None,
        "reason": None,
        "gaps": 0,
        "timer": None,
        "connected_ms": None,
        "subscribed_ms": None,
        "streaming_since_ms": None,
        "healthy": False,
        "synced": False,
        "awaiting_snapshot": [],
        "stale_instruments": [],
    }
    assert DEFAULTS["stale_after_ms"] == 5000
    assert DEFAULTS["backoff_max_ms"] == 30000
    assert (created.trigger, created.source, created.dest) == (CREATE, None, "idle")
    assert next_timer(feed) is None


def test_create_takes_every_policy_parameter() -> None:
    policy = {
        "stale_after_ms": 1,
        "backoff_initial_ms": 10,
        "backoff_max_ms": 10,
        "backoff_multiplier": 1,
        "jitter_ms": 0,
        "healthy_after_ms": 0,
        "max_attempts": 3,
        "seed": 99,
    }
    feed = new_feed(**policy)
    assert {k: feed.data[k] for k in policy} == policy


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"url": None}, "url", id="missing-url"),
        pytest.param({"url": ""}, "url", id="empty-url"),
        pytest.param({"url": "http://x"}, "ws:// or wss://", id="http-url"),
        pytest.param({"instruments": None}, "instruments", id="missing-instruments"),
        pytest.param({"instruments": []}, "instruments", id="no-instruments"),
        pytest.param({"instruments": "BTC"}, "instruments", id="string-instruments"),
        pytest.param({"instruments": ["BTC", ""]}, "instruments", id="empty-instrument"),
        pytest.param({"instruments": ["BTC", 1]}, "instruments", id="int-instrument"),
        pytest.param({"instruments": ["BTC", "BTC"]}, "distinct", id="duplicate-instrument"),
        pytest.param({"stale_after_ms": 0}, "stale_after_ms must be between 1", id="zero-stale"),
        pytest.param({"stale_after_ms": 5000.0}, "stale_after_ms is a float", id="float-stale"),
        pytest.param({"stale_after_ms": "5000"}, "must be an int", id="string-stale"),
        pytest.param({"jitter_ms": True}, "must be an int", id="bool-jitter"),
        pytest.param({"jitter_ms": -1}, "jitter_ms", id="negative-jitter"),
        pytest.param({"backoff_initial_ms": 0}, "backoff_initial_ms", id="zero-initial"),
        pytest.param({"backoff_max_ms": MAX_MS + 1}, "backoff_max_ms", id="huge-max"),
        pytest.param({"backoff_max_ms": 100}, "at least backoff_initial_ms", id="max-below-initial"),
        pytest.param({"backoff_multiplier": 0}, "backoff_multiplier", id="zero-multiplier"),
        pytest.param({"backoff_multiplier": 17}, "backoff_multiplier", id="huge-multiplier"),
        pytest.param({"max_attempts": -1}, "max_attempts", id="negative-attempts"),
        pytest.param({"healthy_after_ms": -5}, "healthy_after_ms", id="negative-healthy"),
        pytest.param({"seed": -1}, "seed", id="negative-seed"),
        pytest.param({"heartbeat_ms": 5}, "unknown feed fields: heartbeat_ms", id="unknown-field"),
    ],
)
def test_create_refuses_bad_data(change: dict[str, Any], message: str) -> None:
    data = {k: v for k, v in {**BASIC, **change}.items() if v is not None}
    with pytest.raises(InvalidData, match=message) as info:
        FEED.create("md-bad", **data)
    assert (info.value.machine, info.value.entity_id, info.value.trigger, info.value.state) == (
        "feed",
        "md-bad",
        CREATE,
        None,
    )


def test_creation_copies_the_instrument_list() -> None:
    instruments = ["BTC"]
    feed = new_feed(instruments=instruments)
    instruments.append("ETH")
    assert feed.data["instruments"] == ["BTC"]


# -- table test: every state x every trigger ---------------------------------------------------


def test_public_names_and_terminal_states() -> None:
    assert set(FEED.state_names) == {s.value for s in FeedState}
    assert FEED.terminal_names == {"failed"}
    assert FEED.triggers == TRIGGERS
    assert registry.get("feed") is FEED
    assert machines.FEED is FEED


def test_builders_cover_every_state() -> None:
    assert set(BUILDERS) == set(FEED.state_names)
    for state, build in BUILDERS.items():
        assert build().state == state


def test_the_expected_table_names_every_state_and_trigger() -> None:
    assert FEED.state_names == STATES
    assert FEED.triggers == TRIGGERS
    assert {state for state, _ in EXPECTED} <= set(STATES)
    assert {trigger for _, trigger in EXPECTED} <= set(TRIGGERS)


@pytest.mark.parametrize(
    ("state", "trigger"),
    list(itertools.product(STATES, TRIGGERS)),
    ids=[f"{s}-{t}" for s, t in itertools.product(STATES, TRIGGERS)],
)
def test_every_state_and_trigger(state: str, trigger: str) -> None:
    feed = BUILDERS[state]()
    before = snapshot(feed)
    data = valid_data(state, trigger)
    if (state, trigger) not in EXPECTED:
        with pytest.raises(InvalidTransition) as info:
            FEED.fire(feed, trigger, **data)
        assert (info.value.state, info.value.trigger, info.value.entity_id) == (state, trigger, "md-1")
        assert_unchanged(feed, before)
        assert trigger not in FEED.allowed_triggers(state)
        return
    assert trigger in FEED.allowed_triggers(state)
    transition = FEED.fire(feed, trigger, **data)
    assert feed.state == EXPECTED[state, trigger]
    assert (transition.source, transition.dest, transition.trigger) == (state, EXPECTED[state, trigger], trigger)
    assert dict(transition.data) == data


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_trigger_requires_now_ms(trigger: str) -> None:
    state = next(s for s, t in EXPECTED if t == trigger)
    feed = BUILDERS[state]()
    before = snapshot(feed)
    data = {k: v for k, v in valid_data(state, trigger).items() if k != "now_ms"}
    with pytest.raises(InvalidData, match="now_ms"):
        FEED.fire(feed, trigger, **data)
    for bad in (1.5, "1000", True, -1, None):
        with pytest.raises(InvalidData, match="now_ms"):
            FEED.fire(feed, trigger, **data, now_ms=bad)
    with pytest.raises(InvalidData, match="unknown fields: extra"):
        FEED.fire(feed, trigger, **data, now_ms=LATE, extra=1)
    assert_unchanged(feed, before)


def test_failed_is_final() -> None:
    feed = BUILDERS["failed"]()
    assert not feed.live
    assert FEED.allowed_triggers("failed") == ()
    assert (feed.data["reason"], feed.data["close_code"], feed.data["timer"]) == ("auth refused", 4001, None)


def test_closed_connects_again_from_scratch() -> None:
    feed, now = cycle(backoff(), 0)
    assert feed.data["attempt"] == 2
    fire(feed, "stop", now + 1, reason="maintenance")
    assert (feed.state, feed.data["reason"], feed.data["timer"]) == ("closed", "maintenance", None)
    assert feed.live
    fire(feed, "connect", now + 2)
    assert (feed.state, feed.data["attempt"], feed.data["reason"], feed.data["close_code"]) == (
        "connecting",
        0,
        None,
        None,
    )
    drop(feed, now + 3)
    assert feed.data["attempt"] == 1


def test_stop_without_a_reason() -> None:
    feed = fire(new_feed(), "stop", 5)
    assert (feed.state, feed.data["reason"]) == ("closed", "stopped")
    with pytest.raises(InvalidTransition):
        fire(feed, "stop", 6)


# -- guards, both ways ------------------------------------------------------------------------


def test_guard_attempts_spent_both_ways() -> None:
    feed = connecting(max_attempts=2)
    data = {"now_ms": 10, "code": 1006, "reason": ""}
    assert not attempts_spent(feed, data)
    drop(feed, 10)
    feed, now = cycle(feed, 10)
    assert (feed.state, feed.data["attempt"]) == ("backoff", 2)
    assert attempts_spent(feed, {**data, "now_ms": now})
    fire(feed, "retry_due", feed.data["timer"]["due_ms"])
    drop(feed, LATE, code=1011, reason="internal error")
    assert feed.state == "failed"
    assert feed.data["attempt"] == 3
    assert feed.data["reason"] == "retry budget spent: 2 attempts; last close: internal error"
    assert (feed.data["close_code"], feed.data["timer"], feed.data["retry_delay_ms"]) == (1011, None, None)


def test_the_budget_reason_names_the_close_code_when_no_reason_was_given() -> None:
    feed = drop(connecting(max_attempts=1), 5)
    fire(feed, "retry_due", LATE)
    drop(feed, LATE, code=1006)
    assert feed.data["reason"] == "retry budget spent: 1 attempts; last close: 1006"


def test_unlimited_attempts_never_fail() -> None:
    feed = drop(connecting(), 0)
    now = 0
    for _ in range(50):
        feed, now = cycle(feed, now)
    assert (feed.state, feed.data["attempt"]) == ("backoff", 51)
    assert not attempts_spent(feed, {"now_ms": now, "code": 1006, "reason": ""})


def test_a_healthy_connection_restores_the_budget() -> None:
    feed = drop(connecting(max_attempts=1), 0)
    feed, _ = cycle(feed, 0, stream_for=10_000)
    assert (feed.state, feed.data["attempt"]) == ("backoff", 1)


def test_guard_last_snapshot_both_ways() -> None:
    feed = syncing()
    assert not last_snapshot(feed, {"now_ms": 1, "instrument": "BTC"})
    fire(feed, "snapshot_applied", 1100, instrument="BTC")
    assert (feed.state, feed.data["awaiting_snapshot"], feed.data["synced"]) == ("syncing", ["ETH"], False)
    assert last_snapshot(feed, {"now_ms": 1, "instrument": "ETH"})
    fire(feed, "snapshot_applied", 1200, instrument="ETH")
    assert (feed.state, feed.data["awaiting_snapshot"], feed.data["synced"]) == ("streaming", [], True)
    assert feed.data["streaming_since_ms"] == 1200


def test_guards_of_data_resumed_both_ways() -> None:
    # others_stale: true with two stale instruments, false with one.
    feed = stale()
    fire(feed, "stale_timeout", 6000, instrument="BTC")
    assert feed.data["stale_instruments"] == ["ETH", "BTC"]
    assert others_stale(feed, {"now_ms": 1, "instrument": "BTC"})
    fire(feed, "data_resumed", 6100, instrument="BTC")
    assert (feed.state, feed.data["stale_instruments"]) == ("stale", ["ETH"])
    assert not others_stale(feed, {"now_ms": 1, "instrument": "ETH"})
    # nothing_awaited false, initially_synced false: back to syncing.
    assert not nothing_awaited(feed, {})
    assert not initially_synced(feed, {})
    fire(feed, "data_resumed", 6200, instrument="ETH")
    assert (feed.state, feed.data["stale_instruments"], feed.data["streaming_since_ms"]) == ("syncing", [], None)

    # initially_synced true: a resync is awaited, back to resyncing.
    feed = fire(resyncing(), "stale_timeout", 6000, instrument="ETH")
    assert initially_synced(feed, {})
    assert not nothing_awaited(feed, {})
    fire(feed, "data_resumed", 6100, instrument="ETH")
    assert (feed.state, feed.data["awaiting_snapshot"]) == ("resyncing", ["BTC"])

    # nothing_awaited true: straight back to streaming.
    feed = fire(streaming(), "stale_timeout", 6000, instrument="ETH")
    assert nothing_awaited(feed, {})
    fire(feed, "data_resumed", 7000, instrument="ETH")
    assert (feed.state, feed.data["streaming_since_ms"]) == ("streaming", 7000)


def test_last_snapshot_while_stale_completes_the_sync() -> None:
    feed = stale()
    fire(feed, "snapshot_applied", 6100, instrument="ETH")
    assert (feed.state, feed.data["awaiting_snapshot"], feed.data["synced"]) == ("stale", [], True)
    assert (feed.state, feed.data["streaming_since_ms"]) == ("stale", None)
    fire(feed, "data_resumed", 6200, instrument="ETH")
    assert (feed.state, feed.data["streaming_since_ms"]) == ("streaming", 6200)


# -- backoff with a fake clock ----------------------------------------------------------------

SEED7_DELAYS = [378, 724, 1106, 2151, 4133, 8180, 16164, 30226, 30207, 30247]
BASES = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]


def test_backoff_delays_are_exact_for_a_seed() -> None:
    feed = new_feed()
    delays = [backoff_delay(feed, attempt) for attempt in range(1, 11)]
    assert delays == SEED7_DELAYS
    for delay, base in zip(delays, BASES, strict=True):
        assert base <= delay <= base + feed.data["jitter_ms"]
    assert [backoff_delay(new_feed(seed=8), a) for a in range(1, 11)] != delays
    assert backoff_delay(feed, 10**6) <= 30000 + 250  # a huge attempt count stays cheap and capped


def test_backoff_without_jitter_is_the_plain_capped_sequence() -> None:
    feed = new_feed(jitter_ms=0, backoff_initial_ms=100, backoff_max_ms=1000, backoff_multiplier=3)
    assert [backoff_delay(feed, a) for a in range(1, 6)] == [100, 300, 900, 1000, 1000]
    flat = new_feed(jitter_ms=0, backoff_multiplier=1)
    assert {backoff_delay(flat, a) for a in range(1, 20)} == {250}


def test_accept_then_close_keeps_growing_the_delay_to_the_cap() -> None:
    """A server that accepts and closes at once: ten cycles, each wait longer, up to the cap."""
    feed = drop(fire(connecting(), "connected", 5), 10, code=1000, reason="bye")
    now = 10
    timers = [feed.data["timer"]["due_ms"] - now]
    for _ in range(9):
        assert feed.state == "backoff"
        retry_at = feed.data["timer"]["due_ms"]
        with pytest.raises(TimerNotDue):
            fire(feed, "retry_due", retry_at - 1)
        feed, now = cycle(feed, retry_at)
        timers.append(feed.data["timer"]["due_ms"] - now)
    assert timers == SEED7_DELAYS
    assert feed.data["attempt"] == 10
    assert all(b > a for a, b in itertools.pairwise(timers[:8]))  # grows until the cap
    for waited, base in zip(timers, BASES, strict=True):
        assert base <= waited <= base + 250
    assert all(30000 <= t <= 30250 for t in timers[7:])  # then stays at the cap (plus jitter)


def test_streaming_shorter_than_the_healthy_period_does_not_reset() -> None:
    feed = drop(connecting(), 0)
    now = 0
    for attempt in range(2, 6):
        feed, now = cycle(feed, now, stream_for=9_999)
        assert feed.data["attempt"] == attempt
        assert feed.data["retry_delay_ms"] == SEED7_DELAYS[attempt - 1]


def test_a_healthy_period_resets_the_attempt_count() -> None:
    feed = drop(connecting(), 0)
    now = 0
    for _ in range(4):
        feed, now = cycle(feed, now)
    assert feed.data["attempt"] == 5
    feed, now = cycle(feed, now, stream_for=10_000)
    assert (feed.data["attempt"], feed.data["retry_delay_ms"]) == (1, SEED7_DELAYS[0])
    assert feed.data["timer"] == {"name": "retry", "due_ms": now + SEED7_DELAYS[0]}


def test_the_healthy_stretch_must_be_continuous_but_survives_a_later_resync() -> None:
    # 15 s of streaming, then a gap: still healthy when the drop comes during the resync.
    feed = streaming()
    fire(feed, "gap_detected", 1200 + 15_000, instrument="BTC")
    assert (feed.data["healthy"], feed.data["streaming_since_ms"]) == (True, None)
    drop(feed, 20_000)
    assert feed.data["attempt"] == 1
    # Two 6 s stretches split by a stale period are not one healthy period.
    feed = drop(connecting(), 0)
    fire(feed, "retry_due", LATE)
    feed.data["attempt"] = 3  # as if three cycles had failed
    fire(feed, "connected", LATE)
    fire(feed, "subscribed", LATE)
    fire(feed, "snapshot_applied", LATE, instrument="BTC")
    fire(feed, "snapshot_applied", LATE, instrument="ETH")
    fire(feed, "stale_timeout", LATE + 6000, instrument="ETH")
    assert feed.data["healthy"] is False
    fire(feed, "data_resumed", LATE + 7000, instrument="ETH")
    drop(feed, LATE + 13_000)
    assert feed.data["attempt"] == 4


def test_healthy_after_zero_resets_on_any_drop_after_streaming() -> None:
    feed = drop(connecting(healthy_after_ms=0), 0)
    feed, _ = cycle(feed, 0)
    assert feed.data["attempt"] == 2
    feed, _ = cycle(feed, LATE, stream_for=0)
    assert feed.data["attempt"] == 1


def test_venue_back_retries_before_the_timer_and_keeps_the_attempt_count() -> None:
    feed = backoff()
    due = feed.data["timer"]["due_ms"]
    fire(feed, "venue_back", due - 100)  # long before the timer (after a long outage: up to the cap)
    assert (feed.state, feed.data["timer"]) == ("connecting", None)
    assert next_timer(feed) is None
    assert feed.data["attempt"] == 1  # kept: a venue that drops us again still gets a growing wait
    fire(feed, "disconnected", due, code=1006, reason="refused")
    assert (feed.state, feed.data["attempt"], feed.data["retry_delay_ms"]) == ("backoff", 2, SEED7_DELAYS[1])


def test_retry_due_before_the_timer_is_refused() -> None:
    feed = backoff()
    due = feed.data["timer"]["due_ms"]
    assert next_timer(feed) == ("retry", due) == ("retry", 3000 + SEED7_DELAYS[0])
    before = snapshot(feed)
    with pytest.raises(TimerNotDue, match=f"retry is due at {due}") as info:
        fire(feed, "retry_due", due - 1)
    assert isinstance(info.value, InvalidData)
    assert (info.value.machine, info.value.state, info.value.trigger) == ("feed", "backoff", "retry_due")
    assert_unchanged(feed, before)
    fire(feed, "retry_due", due)
    assert (feed.state, feed.data["timer"]) == ("connecting", None)
    assert next_timer(feed) is None
    assert feed.data["attempt"] == 1  # kept until a healthy period resets it


def test_disconnect_records_the_close_and_clears_the_connection() -> None:
    feed = drop(resyncing(), 4000, code=1001, reason="going away")
    assert feed.state == "backoff"
    data = feed.data
    assert (data["close_code"], data["reason"], data["attempt"]) == (1001, "going away", 1)
    assert (data["awaiting_snapshot"], data["stale_instruments"], data["subscribed_ms"]) == ([], [], None)
    assert (data["streaming_since_ms"], data["healthy"], data["synced"]) == (None, False, False)


# -- staleness ---------------------------------------------------------------------------------


def test_staleness_counts_from_subscription() -> None:
    """A feed that subscribes and never receives data goes stale at subscribed_ms + stale_after_ms."""
    feed = syncing()
    assert feed.data["subscribed_ms"] == 1000
    assert feed.data["timer"] == {"name": "stale_check", "due_ms": 6000}
    assert next_timer(feed) == ("stale_check", 6000)
    assert next_timer(feed, {}) == ("stale_check", 6000)
    assert next_timer(feed, {"BTC": 200, "ETH": 900}) == ("stale_check", 6000)  # data before subscribing
    assert stale_instruments(feed, {}, 5999) == []
    assert stale_instruments(feed, {}, 6000) == ["BTC", "ETH"]
    before = snapshot(feed)
    with pytest.raises(TimerNotDue, match="before 6000"):
        fire(feed, "stale_timeout", 5999, instrument="BTC")
    assert_unchanged(feed, before)
    fire(feed, "stale_timeout", 6000, instrument="BTC")
    assert (feed.state, feed.data["stale_instruments"]) == ("stale", ["BTC"])
    assert next_timer(feed, {}) == ("stale_check", 6000)
    assert stale_instruments(feed, {}, 6000) == ["ETH"]
    fire(feed, "stale_timeout", 6000, instrument="ETH")
    assert next_timer(feed, {}) is None  # every instrument stale: nothing left to check
    assert next_timer(feed) == ("stale_check", 6000)
    assert stale_instruments(feed, {}, LATE) == []


def test_last_data_times_move_the_stale_check() -> None:
    feed = streaming()
    last = {"BTC": 4000, "ETH": 3000}
    assert next_timer(feed, last) == ("stale_check", 8000)
    assert stale_instruments(feed, last, 7999) == []
    assert stale_instruments(feed, last, 8000) == ["ETH"]
    assert stale_instruments(feed, last, 9000) == ["BTC", "ETH"]
    fire(feed, "stale_timeout", 8000, instrument="ETH")
    assert feed.data["healthy"] is False
    assert next_timer(feed, last) == ("stale_check", 9000)
    assert usable_instruments(feed) == ["BTC"]


def test_stale_timeout_refuses_repeats_and_strangers() -> None:
    feed = stale()
    before = snapshot(feed)
    with pytest.raises(InvalidData, match="already stale"):
        fire(feed, "stale_timeout", LATE, instrument="ETH")
    with pytest.raises(InvalidData, match="not one of this feed's instruments"):
        fire(feed, "stale_timeout", LATE, instrument="DOGE")
    with pytest.raises(InvalidData, match="is not stale"):
        fire(feed, "data_resumed", LATE, instrument="BTC")
    with pytest.raises(InvalidData, match="instrument must be a non-empty string"):
        fire(feed, "data_resumed", LATE)
    assert_unchanged(feed, before)


def test_no_stale_checks_outside_subscribed_states() -> None:
    for state in ("idle", "connecting", "subscribing", "backoff", "closed", "failed"):
        feed = BUILDERS[state]()
        assert stale_instruments(feed, {}, LATE) == []
        assert usable_instruments(feed) == []
        assert (next_timer(feed, {}) is None) == (state != "backoff")


# -- per-instrument resync ---------------------------------------------------------------------


def test_a_gap_resyncs_only_its_instrument() -> None:
    feed = streaming()
    assert usable_instruments(feed) == ["BTC", "ETH"]
    fire(feed, "gap_detected", 2000, instrument="BTC", expected=5, received=7)
    assert (feed.state, feed.data["awaiting_snapshot"], feed.data["gaps"]) == ("resyncing", ["BTC"], 1)
    assert usable_instruments(feed) == ["ETH"]
    assert feed.data["timer"] == {"name": "stale_check", "due_ms": 6000}  # the connection is unchanged
    fire(feed, "gap_detected", 2100, instrument="BTC")  # again, before its snapshot: still one resync
    fire(feed, "gap_detected", 2200, instrument="ETH", expected=None)
    assert (feed.state, feed.data["awaiting_snapshot"], feed.data["gaps"]) == ("resyncing", ["BTC", "ETH"], 3)
    assert usable_instruments(feed) == []
    fire(feed, "snapshot_applied", 2300, instrument="ETH")
    assert (feed.state, usable_instruments(feed)) == ("resyncing", ["ETH"])
    fire(feed, "snapshot_applied", 2400, instrument="BTC")
    assert (feed.state, feed.data["awaiting_snapshot"], feed.data["streaming_since_ms"]) == ("streaming", [], 2400)


def test_gaps_during_sync_and_staleness_are_awaited_too() -> None:
    feed = fire(syncing(), "snapshot_applied", 1100, instrument="BTC")
    fire(feed, "gap_detected", 1150, instrument="BTC")
    assert (feed.state, feed.data["awaiting_snapshot"]) == ("syncing", ["ETH", "BTC"])
    feed = stale()
    fire(feed, "gap_detected", 7000, instrument="BTC")
    assert (feed.state, feed.data["awaiting_snapshot"]) == ("stale", ["ETH", "BTC"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"instrument": "DOGE"}, "not one of this feed's instruments", id="stranger"),
        pytest.param({"instrument": ""}, "instrument", id="empty"),
        pytest.param({"instrument": "BTC", "expected": "5"}, "expected must be an int", id="string-seq"),
        pytest.param({"instrument": "BTC", "received": -1}, "received must be between", id="negative-seq"),
        pytest.param({"instrument": "BTC", "received": 1.0}, "float", id="float-seq"),
    ],
)
def test_gap_detected_refuses_bad_data(data: dict[str, Any], message: str) -> None:
    feed = streaming()
    before = snapshot(feed)
    with pytest.raises(InvalidData, match=message):
        fire(feed, "gap_detected", 3000, **data)
    assert_unchanged(feed, before)


def test_snapshot_applied_refuses_an_instrument_not_awaited() -> None:
    feed = resyncing()
    before = snapshot(feed)
    with pytest.raises(InvalidData, match="no snapshot of 'ETH' is awaited"):
        fire(feed, "snapshot_applied", 3000, instrument="ETH")
    with pytest.raises(InvalidData, match="not one of this feed's instruments"):
        fire(feed, "snapshot_applied", 3000, instrument="XRP")
    assert_unchanged(feed, before)


# -- disconnect / fatal data -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"reason": "x"}, "code must be an int", id="missing-code"),
        pytest.param({"code": "1006", "reason": "x"}, "code must be an int", id="string-code"),
        pytest.param({"code": 5000, "reason": "x"}, "code must be between", id="huge-code"),
        pytest.param({"code": 1006}, "reason must be a string", id="missing-reason"),
        pytest.param({"code": 1006, "reason": 3}, "reason must be a string", id="int-reason"),
    ],
)
@pytest.mark.parametrize("max_attempts", [0, 1])
def test_disconnected_refuses_bad_data(data: dict[str, Any], message: str, max_attempts: int) -> None:
    feed = fire(connecting(max_attempts=max_attempts), "connected", 5)
    if max_attempts:
        feed.data["attempt"] = 1  # the next drop would spend the budget: the failed rule checks too
    before = snapshot(feed)
    with pytest.raises(InvalidData, match=message):
        fire(feed, "disconnected", 10, **data)
    assert_unchanged(feed, before)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({}, "reason must be a non-empty string", id="missing-reason"),
        pytest.param({"reason": ""}, "reason must be a non-empty string", id="empty-reason"),
        pytest.param({"reason": "bad", "code": 1.0}, "float", id="float-code"),
        pytest.param({"reason": "bad", "code": -4}, "code must be between", id="negative-code"),
    ],
)
def test_fatal_refuses_bad_data(data: dict[str, Any], message: str) -> None:
    feed = backoff()
    before = snapshot(feed)
    with pytest.raises(InvalidData, match=message):
        fire(feed, "fatal", 10, **data)
    assert_unchanged(feed, before)


def test_fatal_without_a_code_keeps_the_last_close_code() -> None:
    feed = fire(backoff(), "fatal", 4000, reason="auth refused")
    assert (feed.state, feed.data["reason"], feed.data["close_code"], feed.data["timer"]) == (
        "failed",
        "auth refused",
        1006,
        None,
    )


def test_stop_reason_must_be_text() -> None:
    feed = streaming()
    before = snapshot(feed)
    with pytest.raises(InvalidData, match="reason must be a string"):
        fire(feed, "stop", 10, reason=None)
    assert_unchanged(feed, before)


# -- invariants under random triggers ----------------------------------------------------------

INSTRUMENTS = st.sampled_from(["BTC", "ETH", "SOL", "DOGE", ""])
TRIGGER_DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "snapshot_applied": st.fixed_dictionaries({"instrument": INSTRUMENTS}),
    "stale_timeout": st.fixed_dictionaries({"instrument": INSTRUMENTS}),
    "data_resumed": st.fixed_dictionaries({"instrument": INSTRUMENTS}),
    "gap_detected": st.fixed_dictionaries(
        {"instrument": INSTRUMENTS}, optional={"expected": st.integers(-1, 9), "received": st.integers(0, 9)}
    ),
    "disconnected": st.fixed_dictionaries(
        {"code": st.sampled_from([1000, 1001, 1006, 1011, 4000, 6000]), "reason": st.sampled_from(["", "bye", 3])}
    ),
    "fatal": st.fixed_dictionaries({"reason": st.sampled_from(["auth refused", ""])}),
    "stop": st.fixed_dictionaries({}, optional={"reason": st.sampled_from(["ops", ""])}),
}
TIMER_TRIGGERS = {"retry": "retry_due"}


class FeedInvariants(RuleBasedStateMachine):
    """Random triggers on a fake clock never break the feed's invariants."""

    feed: Entity

    @initialize(
        instruments=st.sampled_from([["BTC"], ["BTC", "ETH"], ["BTC", "ETH", "SOL"]]),
        max_attempts=st.integers(0, 4),
        jitter_ms=st.sampled_from([0, 1, 250]),
        healthy_after_ms=st.sampled_from([0, 500, 10_000]),
        multiplier=st.integers(1, 4),
        seed=st.integers(0, 2**32),
    )
    def create(
        self,
        instruments: list[str],
        max_attempts: int,
        jitter_ms: int,
        healthy_after_ms: int,
        multiplier: int,
        seed: int,
    ) -> None:
        self.feed, _ = FEED.create(
            "md-h",
            url="ws://venue.test",
            instruments=instruments,
            max_attempts=max_attempts,
            jitter_ms=jitter_ms,
            healthy_after_ms=healthy_after_ms,
            backoff_multiplier=multiplier,
            backoff_initial_ms=100,
            backoff_max_ms=5000,
            stale_after_ms=1000,
            seed=seed,
        )
        self.now = 0
        self.was_failed = False
        self.timer_set_at: int | None = None

    def _fire(self, trigger: str, data: dict[str, Any]) -> None:
        before = snapshot(self.feed)
        try:
            FEED.fire(self.feed, trigger, now_ms=self.now, **data)
        except TransitionRefused:
            assert_unchanged(self.feed, before)
            return
        if self.feed.data["timer"] != before[1]["timer"]:
            self.timer_set_at = self.now

    @rule(advance=st.sampled_from([0, 1, 50, 999, 1000, 4000, 12_000]))
    def tick(self, advance: int) -> None:
        self.now += advance

    @rule(data=st.data())
    def trigger(self, data: st.DataObject) -> None:
        trigger = data.draw(st.sampled_from([*FEED.triggers, "bogus"]))
        self._fire(trigger, data.draw(TRIGGER_DATA.get(trigger, st.just({}))))

    @rule()
    def timer_fires(self) -> None:
        """The shell's timer: jump to the due time and fire what it stands for."""
        timer = next_timer(self.feed, {})
        if timer is None:
            return
        name, due = timer
        self.now = max(self.now, due)
        if name == "retry":
            self._fire("retry_due", {})
        for instrument in stale_instruments(self.feed, {}, self.now):
            self._fire("stale_timeout", {"instrument": instrument})

    @invariant()
    def state_is_a_member(self) -> None:
        assert self.feed.state in FEED.state_names

    @invariant()
    def failed_stays_failed(self) -> None:
        if self.was_failed:
            assert self.feed.state == "failed"
        self.was_failed = self.feed.state == "failed"

    @invariant()
    def backoff_delay_within_bounds(self) -> None:
        data = self.feed.data
        delay = data["retry_delay_ms"]
        if delay is not None:
            assert 0 <= delay <= data["backoff_max_ms"] + data["jitter_ms"]
        if self.feed.state == "backoff":
            assert delay is not None
            assert data["attempt"] >= 1
            if data["max_attempts"]:
                assert data["attempt"] <= data["max_attempts"]

    @invariant()
    def timer_matches_the_state_and_is_never_in_the_past(self) -> None:
        timer = self.feed.data["timer"]
        state = self.feed.state
        if state == "backoff":
            assert timer["name"] == "retry"
        elif state in ("syncing", "streaming", "stale", "resyncing"):
            assert timer == {
                "name": "stale_check",
                "due_ms": self.feed.data["subscribed_ms"] + self.feed.data["stale_after_ms"],
            }
        else:
            assert timer is None
        if timer is not None:
            assert self.timer_set_at is not None
            assert timer["due_ms"] >= self.timer_set_at

    @invariant()
    def per_instrument_bookkeeping(self) -> None:
        data = self.feed.data
        state = self.feed.state
        assert set(data["awaiting_snapshot"]) <= set(data["instruments"])
        assert set(data["stale_instruments"]) <= set(data["instruments"])
        assert (data["streaming_since_ms"] is not None) == (state == "streaming")
        if state == "streaming":
            assert data["awaiting_snapshot"] == data["stale_instruments"] == []
            assert data["synced"]
        if state in ("syncing", "resyncing"):
            assert data["awaiting_snapshot"]
            assert data["stale_instruments"] == []
            assert data["synced"] == (state == "resyncing")
        if state == "stale":
            assert data["stale_instruments"]
        if state not in ("syncing", "streaming", "stale", "resyncing"):
            assert data["awaiting_snapshot"] == data["stale_instruments"] == []

    @invariant()
    def journal_round_trip(self) -> None:
        decoded = codec.decode(codec.encode_text(self.feed.data))
        assert FEED.restore("md-h", self.feed.state, decoded).data == self.feed.data


FeedInvariants.TestCase.settings = settings(max_examples=80, stateful_step_count=50, deadline=None)
TestFeedInvariants = FeedInvariants.TestCase


# -- restore, scenarios, sans-I/O ---------------------------------------------------------------


def test_restore_round_trip_through_the_journal_codec() -> None:
    feed = resyncing()
    decoded = codec.decode(codec.encode_text(feed.data))
    restored = FEED.restore("md-1", feed.state, decoded)
    assert restored.data == feed.data
    for copy_of in (restored, feed):
        fire(copy_of, "snapshot_applied", 2500, instrument="BTC")
    assert (restored.state, restored.data) == (feed.state, feed.data)


def test_documented_scenarios_pass() -> None:
    document = json.loads(SCENARIOS.read_text(encoding="utf-8"))
    scenarios = parse(document, source=SCENARIOS.name)
    assert len(scenarios) >= 3
    assert {s.machine for s in scenarios} == {"feed"}
    for scenario in scenarios:
        result = run(scenario)
        assert result.passed, "\n".join(result.describe_failures())


def test_assert_scenario_reads_the_timer() -> None:
    assert_scenario(
        {
            "machine": "feed",
            "entity": "md-s",
            "create": {"url": "ws://v", "instruments": ["BTC"], "jitter_ms": 0},
            "steps": [
                {"trigger": "connect", "data": {"now_ms": 0}},
                {
                    "trigger": "disconnected",
                    "data": {"now_ms": 10, "code": 1006, "reason": "refused"},
                    "expect": {"state": "backoff", "timer": {"name": "retry", "due_ms": 260}, "attempt": 1},
                },
            ],
        }
    )


def test_the_module_is_sans_io() -> None:
    tree = ast.parse(FEED_SOURCE.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= {"__future__", "collections", "enum", "typing", "machines"}
