"""The ``feed`` machine: one entity per market-data websocket connection (its id: the feed's name).

A feed connects, subscribes, loads a snapshot per instrument, streams, and when the connection drops
waits out a backoff and connects again. States and triggers are public (scenarios, the journal);
docs/machines/feed.md explains them with a worked example.

Time is an input. Every trigger carries ``now_ms``: the shell's monotonic clock in milliseconds.
The machine never reads a clock; it answers with the timer the shell should arm, held in the data
as ``timer = {"name", "due_ms"}`` (or ``None``) and read with ``next_timer``:

* ``retry`` (in ``backoff``): fire ``retry_due`` at ``due_ms``; earlier is refused (``TimerNotDue``).
  ``venue_back`` retries at once instead, when the shell knows the venue answers again (after a
  long outage the timer can be up to ``backoff_max_ms`` away).
* ``stale_check`` (from ``subscribed`` on): staleness is counted from the subscription, so the first
  possible deadline is ``subscribed_ms + stale_after_ms``.

Data messages are not transitions, and nothing the journal cannot replay lives in the entity. The
shell keeps each instrument's last data time (message or heartbeat) in memory, passes it to
``next_timer(feed, last_data_ms)`` to arm the stale check for the earliest instrument deadline,
asks ``stale_instruments(feed, last_data_ms, now_ms)`` when that timer fires and fires
``stale_timeout {instrument}`` for each, and fires ``data_resumed {instrument}`` when data arrives
for a stale instrument. Only state changes (and the per-instrument bookkeeping of
``gap_detected``/``snapshot_applied``/``stale_timeout``/``data_resumed``) are journaled, so
``audit verify`` replays the journal to exactly the stored data.

Backoff: each ``disconnected`` counts an ``attempt`` and waits
``min(backoff_initial_ms * backoff_multiplier ** (attempt - 1), backoff_max_ms) + jitter``, the
jitter an integer hash of ``(seed, attempt)`` in ``[0, jitter_ms]``: deterministic, no random
state. The count goes back to zero only when this connection streamed without interruption for
``healthy_after_ms``: a server that accepts and then closes at once gets ever longer waits, never a
tight reconnect loop. With ``max_attempts > 0``, the disconnect that would exceed it fails the feed.

A gap resyncs only its instrument: ``gap_detected`` puts it in ``awaiting_snapshot`` and its
``snapshot_applied`` takes it out; the others stream on (``usable_instruments``). ``failed`` is
the only terminal state; ``closed`` (operator stop) accepts ``connect`` again.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from machines.base import Data, Entity, Rule, StateMachine, timed_args
from machines.errors import InvalidData
from machines.registry import register


class FeedState(StrEnum):
    """Public state names of a feed connection."""

    idle = "idle"
    connecting = "connecting"
    subscribing = "subscribing"
    syncing = "syncing"
    streaming = "streaming"
    stale = "stale"
    resyncing = "resyncing"
    backoff = "backoff"
    closed = "closed"
    failed = "failed"


class TimerNotDue(InvalidData):
    """A timer trigger (``retry_due``, ``stale_timeout``) arrived before its deadline; nothing changed."""


S = FeedState
SUBSCRIBED = (S.syncing, S.streaming, S.stale, S.resyncing)
CONNECTED = (S.subscribing, *SUBSCRIBED)
UP = (S.connecting, *CONNECTED)  # a connection exists or is being made: it can drop
STOPPABLE = (S.idle, *UP, S.backoff)
MAX_MS = 86_400_000  # one day: no policy duration needs more, and it bounds the arithmetic
MAX_MULTIPLIER = 16
DEFAULTS: Mapping[str, int] = {
    "stale_after_ms": 5000,
    "backoff_initial_ms": 250,
    "backoff_max_ms": 30000,
    "backoff_multiplier": 2,
    "jitter_ms": 250,
    "healthy_after_ms": 10000,
    "max_attempts": 0,
    "seed": 0,
}
BOUNDS: Mapping[str, tuple[int, int]] = {
    "stale_after_ms": (1, MAX_MS),
    "backoff_initial_ms": (1, MAX_MS),
    "backoff_max_ms": (1, MAX_MS),
    "backoff_multiplier": (1, MAX_MULTIPLIER),
    "jitter_ms": (0, MAX_MS),
    "healthy_after_ms": (0, MAX_MS),
    "max_attempts": (0, 1_000_000),
    "seed": (0, 2**63 - 1),
}
"""The policy fields' accepted values, ``name -> (lowest, highest)`` (the config's bounds too)."""
_MASK = 2**64 - 1

# The per-connection fields, as they are when a new connection attempt starts.
_FRESH_CONNECTION: Mapping[str, Any] = {
    "timer": None,
    "connected_ms": None,
    "subscribed_ms": None,
    "streaming_since_ms": None,
    "healthy": False,
    "synced": False,
    "awaiting_snapshot": [],
    "stale_instruments": [],
}


# -- reading data -------------------------------------------------------------------------------


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidData(f"{name} must be an int, got {value!r}")
    if not low <= value <= high:
        raise InvalidData(f"{name} must be between {low} and {high}, got {value}")
    return value


def _text(data: Data, name: str, *, empty: bool = False) -> str:
    value = data.get(name)
    if not isinstance(value, str) or (not value and not empty):
        raise InvalidData(f"{name} must be a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


def _instrument(feed: Entity, data: Data) -> str:
    instrument = _text(data, "instrument")
    if instrument not in feed.data["instruments"]:
        raise InvalidData(f"{instrument!r} is not one of this feed's instruments")
    return instrument


def _init(data: Data) -> dict[str, Any]:
    unknown = set(data) - {"url", "instruments", *DEFAULTS}
    if unknown:
        raise InvalidData(f"unknown feed fields: {', '.join(sorted(unknown))}")
    url = _text(data, "url")
    if not url.startswith(("ws://", "wss://")):
        raise InvalidData(f"url must start with ws:// or wss://, got {url!r}")
    instruments = data.get("instruments")
    if (
        not isinstance(instruments, list)
        or not instruments
        or not all(isinstance(i, str) and i for i in instruments)
        or len(set(instruments)) != len(instruments)
    ):
        raise InvalidData(f"instruments must be a non-empty list of distinct non-empty strings, got {instruments!r}")
    policy = {name: _integer(data.get(name, default), name, *BOUNDS[name]) for name, default in DEFAULTS.items()}
    check_backoff(policy["backoff_initial_ms"], policy["backoff_max_ms"])
    return {
        "url": url,
        "instruments": list(instruments),
        **policy,
        "attempt": 0,
        "retry_delay_ms": None,
        "close_code": None,
        "reason": None,
        "gaps": 0,
        **_fresh(),
    }


def _fresh() -> dict[str, Any]:
    return {name: list(value) if isinstance(value, list) else value for name, value in _FRESH_CONNECTION.items()}


# -- pure helpers for the shell -----------------------------------------------------------------


def check_backoff(initial_ms: int, max_ms: int) -> None:
    """Refuse a backoff whose cap is below its first wait: raises ``InvalidData`` naming both.

    The one check of the two together, used by ``create`` and by the config (``[feed]``)."""
    if max_ms < initial_ms:
        raise InvalidData(f"backoff_max_ms ({max_ms}) must be at least backoff_initial_ms ({initial_ms})")


def backoff_delay(feed: Entity, attempt: int) -> int:
    """The wait in ms before reconnect number ``attempt`` (1 = the first): capped base plus jitter.

    Always within ``[0, backoff_max_ms + jitter_ms]``; the same inputs always give the same delay.
    """
    data = feed.data
    exponent = min(max(attempt - 1, 0), 64)  # past 64 doublings every base is far above MAX_MS
    base = min(data["backoff_initial_ms"] * data["backoff_multiplier"] ** exponent, data["backoff_max_ms"])
    return int(base + _mix(data["seed"] * 1_000_003 + attempt) % (data["jitter_ms"] + 1))


def _mix(value: int) -> int:
    """splitmix64's finaliser: a well-spread, version-stable integer hash (no ``random`` state)."""
    x = (value + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _stale_deadlines(feed: Entity, last_data_ms: Mapping[str, int]) -> dict[str, int]:
    subscribed: int = feed.data["subscribed_ms"]
    after: int = feed.data["stale_after_ms"]
    return {
        i: max(subscribed, last_data_ms.get(i, subscribed)) + after
        for i in feed.data["instruments"]
        if i not in feed.data["stale_instruments"]
    }


def next_timer(feed: Entity, last_data_ms: Mapping[str, int] | None = None) -> tuple[str, int] | None:
    """The single timer the shell should arm now, as ``(name, due_ms)``, or ``None`` for none.

    Without ``last_data_ms`` this is the machine's ``timer``. With the shell's per-instrument last
    data times, a ``stale_check`` moves to the earliest instrument deadline (at the earliest the
    machine's, as staleness counts from subscription) and is ``None`` when every instrument is stale.
    """
    timer = feed.data["timer"]
    if timer is None:
        return None
    if timer["name"] == "stale_check" and last_data_ms is not None:
        deadlines = _stale_deadlines(feed, last_data_ms)
        return ("stale_check", min(deadlines.values())) if deadlines else None
    return str(timer["name"]), int(timer["due_ms"])


def stale_instruments(feed: Entity, last_data_ms: Mapping[str, int], now_ms: int) -> list[str]:
    """Instruments (not yet stale) with no data for ``stale_after_ms`` at ``now_ms``: fire ``stale_timeout``."""
    if feed.state not in SUBSCRIBED:
        return []
    return [i for i, due in _stale_deadlines(feed, last_data_ms).items() if due <= now_ms]


def usable_instruments(feed: Entity) -> list[str]:
    """Instruments whose data can be passed on: synced (no snapshot awaited) and not stale."""
    if feed.state not in (S.streaming, S.stale, S.resyncing):
        return []
    skip = {*feed.data["awaiting_snapshot"], *feed.data["stale_instruments"]}
    return [i for i in feed.data["instruments"] if i not in skip]


# -- guards -------------------------------------------------------------------------------------


def _was_healthy(feed: Entity, now_ms: int) -> bool:
    """This connection streamed without interruption for ``healthy_after_ms`` (so far or before)."""
    since = feed.data["streaming_since_ms"]
    return bool(feed.data["healthy"]) or (since is not None and now_ms - since >= feed.data["healthy_after_ms"])


def _attempt_after_disconnect(feed: Entity, now_ms: int) -> int:
    return (0 if _was_healthy(feed, now_ms) else int(feed.data["attempt"])) + 1


def attempts_spent(feed: Entity, data: Data) -> bool:
    """``max_attempts`` is set and this disconnect would exceed it."""
    now_ms = timed_args(data, "code", "reason")
    limit: int = feed.data["max_attempts"]
    return limit > 0 and _attempt_after_disconnect(feed, now_ms) > limit


def last_snapshot(feed: Entity, data: Data) -> bool:
    """The instrument's snapshot is the last one awaited."""
    timed_args(data, "instrument")
    return bool(feed.data["awaiting_snapshot"] == [_instrument(feed, data)])


def others_stale(feed: Entity, data: Data) -> bool:
    """Other instruments are still stale after this one resumed."""
    timed_args(data, "instrument")
    return bool(feed.data["stale_instruments"] != [_instrument(feed, data)])


def nothing_awaited(feed: Entity, data: Data) -> bool:
    """No instrument awaits a snapshot."""
    return not feed.data["awaiting_snapshot"]


def initially_synced(feed: Entity, data: Data) -> bool:
    """The initial snapshots of this connection were all applied (what is awaited is a resync)."""
    return bool(feed.data["synced"])


# -- effects ------------------------------------------------------------------------------------


def _left_streaming(feed: Entity, now_ms: int) -> dict[str, Any]:
    """Changes for leaving ``streaming``: latch a healthy stretch, stop counting it."""
    return {"healthy": _was_healthy(feed, now_ms), "streaming_since_ms": None}


def _entered_streaming(feed: Entity, now_ms: int) -> dict[str, Any]:
    return {"streaming_since_ms": now_ms}


def _connect(feed: Entity, data: Data) -> dict[str, Any]:
    timed_args(data)
    return {**_fresh(), "attempt": 0, "retry_delay_ms": None, "close_code": None, "reason": None}


def _retry(feed: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data)
    due: int = feed.data["timer"]["due_ms"]
    if now_ms < due:
        raise TimerNotDue(f"retry is due at {due}, now_ms is {now_ms}")
    return _fresh()


def _retry_now(feed: Entity, data: Data) -> dict[str, Any]:
    timed_args(data)
    return _fresh()


def _connected(feed: Entity, data: Data) -> dict[str, Any]:
    return {"connected_ms": timed_args(data)}


def _subscribed(feed: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data)
    return {
        "subscribed_ms": now_ms,
        "awaiting_snapshot": list(feed.data["instruments"]),
        "timer": {"name": "stale_check", "due_ms": now_ms + feed.data["stale_after_ms"]},
    }


def _snapshot(feed: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "instrument")
    instrument = _instrument(feed, data)
    awaiting = feed.data["awaiting_snapshot"]
    if instrument not in awaiting:
        raise InvalidData(f"no snapshot of {instrument!r} is awaited")
    left = [i for i in awaiting if i != instrument]
    changes: dict[str, Any] = {"awaiting_snapshot": left}
    if not left:
        changes["synced"] = True
        if feed.state != S.stale:
            changes.update(_entered_streaming(feed, now_ms))
    return changes


def _gap(feed: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "instrument", "expected", "received")
    instrument = _instrument(feed, data)
    for name in ("expected", "received"):
        if data.get(name) is not None:
            _integer(data[name], name, 0, 2**63 - 1)
    awaiting = feed.data["awaiting_snapshot"]
    changes: dict[str, Any] = {
        "awaiting_snapshot": awaiting if instrument in awaiting else [*awaiting, instrument],
        "gaps": feed.data["gaps"] + 1,
    }
    if feed.state == S.streaming:
        changes.update(_left_streaming(feed, now_ms))
    return changes


def _stale(feed: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "instrument")
    instrument = _instrument(feed, data)
    if instrument in feed.data["stale_instruments"]:
        raise InvalidData(f"{instrument!r} is already stale")
    due = feed.data["subscribed_ms"] + feed.data["stale_after_ms"]
    if now_ms < due:
        raise TimerNotDue(f"nothing can be stale before {due} (subscribed + stale_after_ms), now_ms is {now_ms}")
    changes: dict[str, Any] = {"stale_instruments": [*feed.data["stale_instruments"], instrument]}
    if feed.state == S.streaming:
        changes.update(_left_streaming(feed, now_ms))
    return changes


def _resumed(feed: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "instrument")
    instrument = _instrument(feed, data)
    stale = feed.data["stale_instruments"]
    if instrument not in stale:
        raise InvalidData(f"{instrument!r} is not stale")
    left = [i for i in stale if i != instrument]
    changes: dict[str, Any] = {"stale_instruments": left}
    if not left and not feed.data["awaiting_snapshot"]:
        changes.update(_entered_streaming(feed, now_ms))
    return changes


def _close_fields(data: Data) -> dict[str, Any]:
    return {
        "close_code": _integer(data.get("code"), "code", 0, 4999),
        "reason": _text(data, "reason", empty=True),
    }


def _schedule_retry(feed: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "code", "reason")
    close = _close_fields(data)
    attempt = _attempt_after_disconnect(feed, now_ms)
    delay = backoff_delay(feed, attempt)
    return {
        **_fresh(),
        **close,
        "attempt": attempt,
        "retry_delay_ms": delay,
        "timer": {"name": "retry", "due_ms": now_ms + delay},
    }


def _give_up(feed: Entity, data: Data) -> dict[str, Any]:
    close = _close_fields(data)
    now_ms = timed_args(data, "code", "reason")
    spent = f"retry budget spent: {feed.data['max_attempts']} attempts"
    return {
        **_fresh(),
        **close,
        "attempt": _attempt_after_disconnect(feed, now_ms),
        "retry_delay_ms": None,
        "reason": f"{spent}; last close: {close['reason'] or close['close_code']}",
    }


def _stop(feed: Entity, data: Data) -> dict[str, Any]:
    timed_args(data, "reason")
    reason = _text(data, "reason", empty=True) if "reason" in data else "stopped"
    return {**_fresh(), "reason": reason}


def _fatal(feed: Entity, data: Data) -> dict[str, Any]:
    timed_args(data, "reason", "code")
    changes = {**_fresh(), "reason": _text(data, "reason")}
    if data.get("code") is not None:
        changes["close_code"] = _integer(data["code"], "code", 0, 4999)
    return changes


FEED = register(
    StateMachine(
        "feed",
        doc=__doc__ or "",
        states=FeedState,
        initial=S.idle,
        terminal=(S.failed,),
        state_docs={
            S.idle: "Created, never connected.",
            S.connecting: "Opening the websocket (first connect or a retry).",
            S.subscribing: "Connected; the subscription is sent, not yet confirmed.",
            S.syncing: "Subscribed; the initial snapshot of each instrument is loading. Staleness counts from here.",
            S.streaming: "Every instrument synced and fresh: data flows.",
            S.stale: "At least one instrument had no data for stale_after_ms; still connected.",
            S.resyncing: "A gap was seen: those instruments await a new snapshot; the others stream on.",
            S.backoff: "Disconnected; waiting for the retry timer.",
            S.closed: "Stopped by the operator; connect starts again.",
            S.failed: "Fatal error (bad URL, auth refused) or retry budget spent; needs a new entity.",
        },
        rules=(
            Rule(
                "connect",
                (S.idle, S.closed),
                S.connecting,
                effect=_connect,
                doc="Start: open the connection; the attempt count starts at zero.",
            ),
            Rule(
                "retry_due",
                S.backoff,
                S.connecting,
                effect=_retry,
                doc="The retry timer fired (refused with TimerNotDue before due_ms).",
            ),
            Rule(
                "venue_back",
                S.backoff,
                S.connecting,
                effect=_retry_now,
                doc="The venue is known to answer again (another session to it just opened): retry now, "
                "before the timer; the attempt count is kept.",
            ),
            Rule("connected", S.connecting, S.subscribing, effect=_connected, doc="The websocket is open."),
            Rule(
                "subscribed",
                S.subscribing,
                S.syncing,
                effect=_subscribed,
                doc="The venue confirmed the subscription: every instrument awaits a snapshot; stale timer set.",
            ),
            Rule(
                "snapshot_applied",
                (S.syncing, S.resyncing),
                S.streaming,
                guard=last_snapshot,
                effect=_snapshot,
                doc="The last awaited snapshot is applied.",
            ),
            Rule(
                "snapshot_applied",
                (S.syncing, S.resyncing, S.stale),
                None,
                effect=_snapshot,
                doc="An instrument's snapshot is applied; others are still awaited (or some are stale).",
            ),
            Rule(
                "gap_detected",
                S.streaming,
                S.resyncing,
                effect=_gap,
                doc="A sequence gap on one instrument: only that instrument resyncs.",
            ),
            Rule(
                "gap_detected",
                (S.syncing, S.resyncing, S.stale),
                None,
                effect=_gap,
                doc="Another gap: that instrument awaits a snapshot too.",
            ),
            Rule(
                "stale_timeout",
                (S.syncing, S.streaming, S.resyncing),
                S.stale,
                effect=_stale,
                doc="No data for stale_after_ms on an instrument (counted from subscription).",
            ),
            Rule("stale_timeout", S.stale, None, effect=_stale, doc="Another instrument went stale."),
            Rule(
                "data_resumed",
                S.stale,
                None,
                guard=others_stale,
                effect=_resumed,
                doc="Data again on one stale instrument; others are still stale.",
            ),
            Rule(
                "data_resumed",
                S.stale,
                S.streaming,
                guard=nothing_awaited,
                effect=_resumed,
                doc="The last stale instrument has data again and no snapshot is awaited.",
            ),
            Rule(
                "data_resumed",
                S.stale,
                S.resyncing,
                guard=initially_synced,
                effect=_resumed,
                doc="Fresh again, but instruments still await a resync snapshot.",
            ),
            Rule(
                "data_resumed",
                S.stale,
                S.syncing,
                effect=_resumed,
                doc="Fresh again, but initial snapshots are still awaited.",
            ),
            Rule(
                "disconnected",
                UP,
                S.failed,
                guard=attempts_spent,
                effect=_give_up,
                doc="The connection dropped and max_attempts is spent.",
            ),
            Rule(
                "disconnected",
                UP,
                S.backoff,
                effect=_schedule_retry,
                doc="The connection dropped (or never opened): count an attempt, set the retry timer.",
            ),
            Rule("stop", STOPPABLE, S.closed, effect=_stop, doc="The operator stops the feed."),
            Rule(
                "fatal",
                (*UP, S.backoff),
                S.failed,
                effect=_fatal,
                doc="Retrying cannot help (bad URL, auth refused, protocol violation).",
            ),
        ),
        init=_init,
    )
)
