"""The ``health`` machine: the kernel's health and each component's, one entity each.

``KERNEL`` and ``COMPONENTS`` (feed, venue, journal, loop, strategy) name the findings; entity ids
are the shell's choice. Ids are unique for the life of a journal and ``stopped`` is terminal, so a
kernel needs new entities each run (e.g. ``feed-r7`` for run 7). An entity starts ``starting``,
moves between ``healthy``, ``degraded`` and ``unhealthy`` as the shell reports what it measured,
and ends ``stopping`` then ``stopped`` at shutdown. Each entity's data says why it is where it is
(``reason``), whether new orders are refused meanwhile (``pauses_entry``), since when
(``since_ms``) and how many changes it went through (``changes``). docs/machines/health.md
explains each state and each rule.

Two halves, both pure:

* The machine records; it does not judge. Its triggers (``ok``, ``degrade``, ``fail``, ``stop``,
  ``stopped``) carry the verdict. Every trigger requires ``now_ms`` (the shell's monotonic clock in
  ms, never read here). Reporting exactly what an entity already says (``degrade`` with the same
  reason and pause, ``fail`` with the same reason) is refused, so the journal holds one row per
  change, not one per measurement.
* The assessment judges; it does not record. ``assess(observation, thresholds)`` applies ``RULES``
  (the single source of the health rules, rendered in the docs by ``rules_markdown``) to what the
  shell measured at one instant and returns one ``Finding`` per component; ``overall`` folds them
  into the kernel's. ``trigger_for(entity, finding)`` names the trigger (if any) that brings an
  entity to a finding. The shell's loop: measure, ``assess``, ``overall``, and for each entity fire
  ``trigger_for``'s trigger with ``now_ms``, journaled like every transition.

Shutdown wins: once ``stopping``, assessments no longer move an entity (``trigger_for`` returns
``None``). ``unhealthy`` always pauses new orders; so does ``starting`` (nothing is known yet) and
everything from ``stop`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from machines.base import Data, Entity, Rule, StateMachine, timed_args
from machines.errors import InvalidData, StateMachineError
from machines.feed import FeedState
from machines.registry import register


class HealthError(StateMachineError, ValueError):
    """A threshold, observation, finding or rule that cannot be used; nothing was built.

    ``fields`` names the field(s) at fault, the one to blame first (empty when it is no one field):
    the config reports ``[health]`` problems under those keys."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields


class HealthState(StrEnum):
    """Public state names of a health entity."""

    starting = "starting"
    healthy = "healthy"
    degraded = "degraded"
    unhealthy = "unhealthy"
    stopping = "stopping"
    stopped = "stopped"


S = HealthState
KERNEL = "kernel"
"""The entity id of the kernel's aggregate health (``overall`` of the components)."""
COMPONENTS = ("feed", "venue", "journal", "loop", "strategy")
"""The component entity ids, in the order findings and reasons are listed."""
FINDING_NAMES = (KERNEL, *COMPONENTS)
"""What a ``Finding`` can be about: the kernel or one of its components."""
LEVELS = (S.healthy, S.degraded, S.unhealthy)
"""The states an assessment can find, best first."""
RUNNING = (S.starting, *LEVELS)  # every state an assessment or a stop can leave
FEED_STATES = frozenset(str(s.value) for s in FeedState)


# -- reading trigger data -----------------------------------------------------------------------


def _reason(data: Data) -> str:
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason:
        raise InvalidData(f"reason must be a non-empty string, got {reason!r}")
    return reason


def _degradation(data: Data) -> tuple[int, str, bool]:
    now_ms = timed_args(data, "reason", "pauses_entry")
    reason = _reason(data)
    pauses = data.get("pauses_entry")
    if not isinstance(pauses, bool):
        raise InvalidData(f"pauses_entry must be true or false, got {pauses!r}")
    return now_ms, reason, pauses


def _failure(data: Data) -> tuple[int, str]:
    now_ms = timed_args(data, "reason")
    return now_ms, _reason(data)


def _init(data: Data) -> dict[str, Any]:
    unknown = set(data) - {"now_ms"}
    if unknown:
        raise InvalidData(f"unknown health fields: {', '.join(sorted(unknown))}")
    # Nothing is known yet: new orders wait for the first assessment.
    return {"since_ms": timed_args(data), "reason": None, "pauses_entry": True, "changes": 0}


# -- guards -------------------------------------------------------------------------------------


def reason_or_pause_changed(entity: Entity, data: Data) -> bool:
    """The report differs from what the degraded entity says (its reason or its pause)."""
    _, reason, pauses = _degradation(data)
    return (reason, pauses) != (entity.data["reason"], entity.data["pauses_entry"])


def reason_changed(entity: Entity, data: Data) -> bool:
    """The failure differs from the one the unhealthy entity records."""
    _, reason = _failure(data)
    return bool(reason != entity.data["reason"])


# -- effects ------------------------------------------------------------------------------------


def _changed(entity: Entity, now_ms: int, reason: str | None, pauses_entry: bool) -> dict[str, Any]:
    return {"since_ms": now_ms, "reason": reason, "pauses_entry": pauses_entry, "changes": entity.data["changes"] + 1}


def _ok(entity: Entity, data: Data) -> dict[str, Any]:
    return _changed(entity, timed_args(data), None, False)


def _degrade(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms, reason, pauses = _degradation(data)
    return _changed(entity, now_ms, reason, pauses)


def _fail(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms, reason = _failure(data)
    return _changed(entity, now_ms, reason, True)


def _stop(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms, reason = _failure(data)
    return _changed(entity, now_ms, reason, True)


def _stopped(entity: Entity, data: Data) -> dict[str, Any]:
    return _changed(entity, timed_args(data), entity.data["reason"], True)


HEALTH = register(
    StateMachine(
        "health",
        doc=__doc__ or "",
        states=HealthState,
        initial=S.starting,
        terminal=(S.stopped,),
        state_docs={
            S.starting: "Created at process start; nothing assessed yet, so new orders wait (pauses_entry).",
            S.healthy: "Every check passes: new orders are allowed.",
            S.degraded: "Something is off (reason); pauses_entry says whether new orders wait meanwhile.",
            S.unhealthy: "A check failed (reason): new orders are refused until it recovers.",
            S.stopping: "Shutdown has begun (reason): new orders are refused; assessments no longer move it.",
            S.stopped: "Shut down (final); the stop reason is kept.",
        },
        rules=(
            Rule(
                "ok",
                (S.starting, S.degraded, S.unhealthy),
                S.healthy,
                effect=_ok,
                doc="Every check passes again: reason cleared, new orders allowed.",
            ),
            Rule(
                "degrade",
                (S.starting, S.healthy, S.unhealthy),
                S.degraded,
                effect=_degrade,
                doc="Something is off: record the reason and whether new orders wait.",
            ),
            Rule(
                "degrade",
                S.degraded,
                None,
                guard=reason_or_pause_changed,
                effect=_degrade,
                doc="Degraded for another reason or pause; an identical re-report is refused.",
            ),
            Rule(
                "fail",
                (S.starting, S.healthy, S.degraded),
                S.unhealthy,
                effect=_fail,
                doc="A check failed: record the reason; new orders are refused.",
            ),
            Rule(
                "fail",
                S.unhealthy,
                None,
                guard=reason_changed,
                effect=_fail,
                doc="Failing for another reason; an identical re-report is refused.",
            ),
            Rule(
                "stop",
                RUNNING,
                S.stopping,
                effect=_stop,
                doc="Shutdown begins (reason): new orders are refused from here on.",
            ),
            Rule(
                "stopped",
                S.stopping,
                S.stopped,
                effect=_stopped,
                doc="Shutdown finished; the stop reason is kept.",
            ),
        ),
        init=_init,
    )
)


# -- the assessment: what the shell measured -> one finding per component -----------------------


def _positive(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise HealthError(f"{name} must be a positive int, got {value!r}", name)


def _non_negative(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise HealthError(f"{name} must be a non-negative int, got {value!r}", name)


def _optional_text(value: object, name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise HealthError(f"{name} must be a string or None, got {value!r}", name)


def _flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise HealthError(f"{name} must be true or false, got {value!r}", name)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where measurements turn into findings. Raises ``HealthError`` naming a bad field."""

    loop_lag_degraded_ms: int = 250
    loop_lag_unhealthy_ms: int = 2000
    commit_latency_degraded_ms: int = 250
    strategy_errors_unhealthy: int = 5
    venue_outage_halt_ms: int = 0
    """A venue session down this long is unhealthy (which halts trading); 0: never, an outage only
    pauses order entry while the kernel reconnects."""

    def __post_init__(self) -> None:
        for name in ("loop_lag_degraded_ms", "loop_lag_unhealthy_ms", "commit_latency_degraded_ms"):
            _positive(getattr(self, name), name)
        _positive(self.strategy_errors_unhealthy, "strategy_errors_unhealthy")
        _non_negative(self.venue_outage_halt_ms, "venue_outage_halt_ms")
        if self.loop_lag_unhealthy_ms <= self.loop_lag_degraded_ms:
            raise HealthError(
                f"loop_lag_unhealthy_ms ({self.loop_lag_unhealthy_ms}) must be above "
                f"loop_lag_degraded_ms ({self.loop_lag_degraded_ms})",
                "loop_lag_unhealthy_ms",
                "loop_lag_degraded_ms",
            )


@dataclass(frozen=True, slots=True)
class Observation:
    """What the kernel shell measured, at one instant. Raises ``HealthError`` naming a bad field.

    ``feed_state`` is the feed machine's state name (``None``: no feed); ``feed_reason`` its last
    reason. ``venue_resolving``: connected, the session not yet reconciled (order entry paused). ``venue_failed``,
    ``journal_error``: why reconnecting gave up, why the last commit failed (``None``: no such
    failure). ``venue_down_ms``: how long the venue session has been down (``None``: it is up, or
    not measured). ``commit_latency_ms``, ``loop_lag_ms``: the worst in the last measurement window.
    ``strategy_errors``: consecutive callback errors (a success resets it), the last one in
    ``strategy_error``.
    """

    feed_state: str | None
    feed_reason: str | None = None
    venue_connected: bool = False
    venue_resolving: bool = False
    venue_failed: str | None = None
    venue_down_ms: int | None = None
    journal_error: str | None = None
    commit_latency_ms: int = 0
    loop_lag_ms: int = 0
    strategy_errors: int = 0
    strategy_error: str | None = None
    venue_rate_limited: bool = False  # new orders wait for a ``rate_limited`` answer's retry-after (risk_backoff)

    def __post_init__(self) -> None:
        if self.feed_state is not None and (not isinstance(self.feed_state, str) or self.feed_state not in FEED_STATES):
            raise HealthError(f"feed_state must be a feed state name or None, got {self.feed_state!r}", "feed_state")
        for name in ("feed_reason", "venue_failed", "journal_error", "strategy_error"):
            _optional_text(getattr(self, name), name)
        for name in ("venue_connected", "venue_resolving", "venue_rate_limited"):
            _flag(getattr(self, name), name)
        for name in ("commit_latency_ms", "loop_lag_ms", "strategy_errors"):
            _non_negative(getattr(self, name), name)
        if self.venue_down_ms is not None:
            _non_negative(self.venue_down_ms, "venue_down_ms")


@dataclass(frozen=True, slots=True)
class Finding:
    """One component's (or the kernel's) health at one instant.

    ``level`` is healthy, degraded or unhealthy; ``reason`` is ``None`` exactly when healthy;
    ``pauses_entry``: new orders are refused while this holds (always when unhealthy, never when
    healthy). Raises ``HealthError`` when these do not hold together.
    """

    component: str
    level: HealthState
    reason: str | None
    pauses_entry: bool

    def __post_init__(self) -> None:
        if self.component not in FINDING_NAMES:
            raise HealthError(
                f"component must be one of {', '.join(FINDING_NAMES)}, got {self.component!r}", "component"
            )
        if self.level not in LEVELS:
            raise HealthError(f"level must be healthy, degraded or unhealthy, got {self.level!r}", "level")
        object.__setattr__(self, "level", HealthState(self.level))
        _flag(self.pauses_entry, "pauses_entry")
        if self.level == S.healthy:
            if self.reason is not None or self.pauses_entry:
                raise HealthError("a healthy finding has no reason and does not pause new orders")
        elif not isinstance(self.reason, str) or not self.reason:
            raise HealthError(f"a {self.level} finding needs a reason, got {self.reason!r}")
        elif self.level == S.unhealthy and not self.pauses_entry:
            raise HealthError("an unhealthy finding always pauses new orders")


Check = Callable[[Observation, Thresholds], str | None]


@dataclass(frozen=True, slots=True)
class HealthRule:
    """One health rule: when ``check`` returns a reason, ``component`` is at ``level``.

    ``when`` is the condition in words (the docs table); ``pauses_entry``: new orders are refused
    while the rule holds. A rule finds degraded or unhealthy (no match is healthy), and an unhealthy
    rule always pauses. Raises ``HealthError`` otherwise.
    """

    component: str
    level: HealthState
    pauses_entry: bool
    when: str
    check: Check

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise HealthError(f"component must be one of {', '.join(COMPONENTS)}, got {self.component!r}", "component")
        if self.level not in (S.degraded, S.unhealthy):
            raise HealthError(f"a rule finds degraded or unhealthy, not {self.level!r}", "level")
        if self.level == S.unhealthy and not self.pauses_entry:
            raise HealthError("an unhealthy rule always pauses new orders")
        if not self.when:
            raise HealthError("when (the condition in words) is required")


def _because(text: str, why: str | None) -> str:
    return f"{text}: {why}" if why else text


# The feed's states other than streaming, failed, stale and resyncing: no data flows yet (or any more).
NOT_STREAMING = (
    FeedState.idle,
    FeedState.connecting,
    FeedState.subscribing,
    FeedState.syncing,
    FeedState.backoff,
    FeedState.closed,
)


def _feed_failed(o: Observation, t: Thresholds) -> str | None:
    return _because("feed failed", o.feed_reason) if o.feed_state == FeedState.failed else None


def _feed_stale(o: Observation, t: Thresholds) -> str | None:
    return "feed stale" if o.feed_state == FeedState.stale else None


def _feed_resyncing(o: Observation, t: Thresholds) -> str | None:
    return "feed resyncing after a gap" if o.feed_state == FeedState.resyncing else None


def _feed_not_streaming(o: Observation, t: Thresholds) -> str | None:
    if o.feed_state is None:
        return "feed not streaming (no feed)"
    return f"feed not streaming ({o.feed_state})" if o.feed_state in NOT_STREAMING else None


def _venue_failed(o: Observation, t: Thresholds) -> str | None:
    return None if o.venue_failed is None else _because("venue failed", o.venue_failed)


def _venue_outage(o: Observation, t: Thresholds) -> str | None:
    limit = t.venue_outage_halt_ms
    if o.venue_connected or limit == 0 or o.venue_down_ms is None or o.venue_down_ms < limit:
        return None
    return f"venue session down for >= {limit} ms"


def _venue_down(o: Observation, t: Thresholds) -> str | None:
    return None if o.venue_connected else "venue session down"


def _venue_resolving(o: Observation, t: Thresholds) -> str | None:
    return "reconciling with the venue" if o.venue_resolving else None


def _venue_rate_limited(o: Observation, t: Thresholds) -> str | None:
    return "venue rate limited: new orders wait for its retry-after" if o.venue_rate_limited else None


def _journal_error(o: Observation, t: Thresholds) -> str | None:
    return None if o.journal_error is None else _because("journal cannot commit", o.journal_error)


# Reasons quote the threshold, not the measurement: a reason that changed with every window would
# make every window a new transition.
def _journal_slow(o: Observation, t: Thresholds) -> str | None:
    limit = t.commit_latency_degraded_ms
    return f"slow commits (>= {limit} ms)" if o.commit_latency_ms >= limit else None


def _loop_stalled(o: Observation, t: Thresholds) -> str | None:
    limit = t.loop_lag_unhealthy_ms
    return f"event loop lag >= {limit} ms" if o.loop_lag_ms >= limit else None


def _loop_lagging(o: Observation, t: Thresholds) -> str | None:
    limit = t.loop_lag_degraded_ms
    return f"event loop lag >= {limit} ms" if o.loop_lag_ms >= limit else None


def _strategy_failing(o: Observation, t: Thresholds) -> str | None:
    n = o.strategy_errors
    if n < t.strategy_errors_unhealthy:
        return None
    return _because(f"strategy failed {n} times in a row", o.strategy_error)


def _strategy_error(o: Observation, t: Thresholds) -> str | None:
    return _because("strategy error", o.strategy_error) if o.strategy_errors > 0 else None


_DEFAULTS = Thresholds()

RULES: tuple[HealthRule, ...] = (
    HealthRule("feed", S.unhealthy, True, "the feed is `failed` (fatal error or retry budget spent)", _feed_failed),
    HealthRule("feed", S.degraded, True, "the feed is `stale`", _feed_stale),
    HealthRule(
        "feed", S.degraded, True, "the feed is `resyncing` (a gap: instruments await a snapshot)", _feed_resyncing
    ),
    HealthRule(
        "feed",
        S.degraded,
        True,
        "no feed, or the feed is `idle`, `connecting`, `subscribing`, `syncing`, `backoff` or `closed`",
        _feed_not_streaming,
    ),
    HealthRule("venue", S.unhealthy, True, "reconnecting to the venue gave up (`venue_failed`)", _venue_failed),
    HealthRule(
        "venue",
        S.unhealthy,
        True,
        "the venue session has been down for `venue_outage_halt_ms` or longer (only when set: off by default)",
        _venue_outage,
    ),
    HealthRule("venue", S.degraded, True, "the venue session is down (the kernel keeps reconnecting)", _venue_down),
    HealthRule("venue", S.degraded, True, "connected, the session not yet reconciled", _venue_resolving),
    HealthRule("venue", S.degraded, False, "the venue answered `rate_limited` (docs/risk.md)", _venue_rate_limited),
    HealthRule("journal", S.unhealthy, True, "the last commit failed (`journal_error`)", _journal_error),
    HealthRule(
        "journal",
        S.degraded,
        False,
        f"`commit_latency_ms` >= `commit_latency_degraded_ms` ({_DEFAULTS.commit_latency_degraded_ms})",
        _journal_slow,
    ),
    HealthRule(
        "loop",
        S.unhealthy,
        True,
        f"`loop_lag_ms` >= `loop_lag_unhealthy_ms` ({_DEFAULTS.loop_lag_unhealthy_ms})",
        _loop_stalled,
    ),
    HealthRule(
        "loop",
        S.degraded,
        False,
        f"`loop_lag_ms` >= `loop_lag_degraded_ms` ({_DEFAULTS.loop_lag_degraded_ms})",
        _loop_lagging,
    ),
    HealthRule(
        "strategy",
        S.unhealthy,
        True,
        f"`strategy_errors` >= `strategy_errors_unhealthy` ({_DEFAULTS.strategy_errors_unhealthy}) in a row",
        _strategy_failing,
    ),
    HealthRule(
        "strategy", S.degraded, False, "the last strategy callback failed (`strategy_errors` > 0)", _strategy_error
    ),
)
"""The health rules, worst first within each component: the first that matches wins, none is healthy."""

_RULES_BY_COMPONENT: Mapping[str, tuple[HealthRule, ...]] = {
    component: tuple(r for r in RULES if r.component == component) for component in COMPONENTS
}


def assess(observation: Observation, thresholds: Thresholds = _DEFAULTS) -> dict[str, Finding]:
    """One ``Finding`` per component (keys in ``COMPONENTS`` order): its first matching rule, else healthy."""
    findings = {}
    for component in COMPONENTS:
        finding = Finding(component, S.healthy, None, False)
        for rule in _RULES_BY_COMPONENT[component]:
            reason = rule.check(observation, thresholds)
            if reason is not None:
                finding = Finding(component, rule.level, reason, rule.pauses_entry)
                break
        findings[component] = finding
    return findings


def overall(findings: Mapping[str, Finding]) -> Finding:
    """The kernel's finding: the worst level, every non-healthy component's reason, any pause.

    The reason reads ``"feed: <reason>; venue: <reason>"`` in ``COMPONENTS`` order (``None`` when
    all are healthy). Raises ``HealthError`` for a key that is not a component or a finding filed
    under another component's key.
    """
    for key, finding in findings.items():
        if key not in COMPONENTS:
            raise HealthError(f"not a component: {key!r} (one of: {', '.join(COMPONENTS)})")
        if finding.component != key:
            raise HealthError(f"the finding under {key!r} is {finding.component!r}'s")
    ordered = [findings[c] for c in COMPONENTS if c in findings]
    level = max((f.level for f in ordered), key=LEVELS.index, default=S.healthy)
    reasons = [f"{f.component}: {f.reason}" for f in ordered if f.level != S.healthy]
    return Finding(KERNEL, level, "; ".join(reasons) or None, any(f.pauses_entry for f in ordered))


def trigger_for(entity: Entity, finding: Finding) -> tuple[str, dict[str, Any]] | None:
    """The trigger and its data (add ``now_ms``) that bring ``entity`` to ``finding``.

    ``None`` when the entity already says exactly that, or when it is ``stopping`` or ``stopped``
    (shutdown wins). Raises ``HealthError`` when ``entity`` is not a health entity.
    """
    if entity.machine is not HEALTH:
        raise HealthError(f"not a health entity: {entity!r}")
    state = entity.state
    if state in (S.stopping, S.stopped):
        return None
    said = (state, entity.data["reason"], entity.data["pauses_entry"])
    if said == (finding.level, finding.reason, finding.pauses_entry):
        return None
    if finding.level == S.healthy:
        return "ok", {}
    if finding.level == S.degraded:
        return "degrade", {"reason": finding.reason, "pauses_entry": finding.pauses_entry}
    return "fail", {"reason": finding.reason}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rules_markdown() -> str:
    """``RULES`` as a Markdown table (component, condition, level, pauses new orders), for the docs."""
    lines = ["| component | condition | level | pauses new orders |", "| --- | --- | --- | --- |"]
    for rule in RULES:
        pauses = "yes" if rule.pauses_entry else "no"
        lines.append(f"| `{rule.component}` | {_cell(rule.when)} | `{rule.level}` | {pauses} |")
    return "\n".join(lines) + "\n"
