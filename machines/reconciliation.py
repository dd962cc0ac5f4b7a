"""The ``reconciliation`` machine: bringing the journal to what the venue knows, before trading.

One entity per venue session that had to be reconciled (``recon-rRUN-N``). It starts ``running``
when the kernel begins comparing its live orders with the venue; ``complete`` ends it ``done``,
carrying the report (counts and every difference found, each a small record of strings) and the
fills cursor the next reconciliation starts from (``fills_cursor``, ``venue_positions``); a
failure (venue unreachable, a timeout) makes it ``failed``, from which ``retry`` starts again. One
left ``running`` or ``failed`` by a killed process is ended ``abandoned`` by the next run.
Order entry stays paused until it is ``done``: a kernel that cannot reconcile does not trade.

Every trigger carries ``now_ms`` (monotonic milliseconds, from the caller: this module reads no
clock), checked with the other machines' ``timed_args``: a field a trigger does not take is refused.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from machines.base import Data, Entity, Rule, StateMachine, timed_args
from machines.errors import InvalidData
from machines.registry import register

REPORT_COUNTS = (
    "orders_checked",
    "venue_open",
    "transitions",
    "fills_applied",
    "lost",
    "adopted",
    "anomalies",
)
"""The counts every report carries (non-negative ints)."""


class ReconciliationState(StrEnum):
    """States of one reconciliation."""

    running = "running"
    failed = "failed"
    done = "done"
    abandoned = "abandoned"


S = ReconciliationState


def _init(data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "reason")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason:
        raise InvalidData("reason (why reconciling: a non-empty string) is required")
    return {"started_ms": now_ms, "reason": reason, "attempts": 1, "error": None, "ended_ms": None}


def _failed(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "error")
    error = data.get("error")
    if not isinstance(error, str) or not error:
        raise InvalidData("error (why it failed: a non-empty string) is required")
    return {"error": error, "ended_ms": now_ms}


def _retry(entity: Entity, data: Data) -> dict[str, Any]:
    timed_args(data)
    return {"attempts": entity.data["attempts"] + 1, "ended_ms": None}


def _abandoned(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "reason")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason:
        raise InvalidData("reason (a non-empty string) is required")
    return {"error": reason, "ended_ms": now_ms}


def _cursor(data: Data) -> dict[str, Any]:
    """The optional fills cursor of ``complete``: the venue's ``fill_seq`` up to which every fill
    was applied, and the venue's signed quantity per instrument from our fills up to it."""
    if "fills_cursor" not in data and "venue_positions" not in data:
        return {}
    cursor = data.get("fills_cursor")
    if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
        raise InvalidData(f"fills_cursor must be a non-negative int (a venue fill_seq), got {cursor!r}")
    positions = data.get("venue_positions")
    if not isinstance(positions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in positions.items()
    ):
        raise InvalidData("venue_positions must map instruments to decimal strings (with fills_cursor)")
    return {"fills_cursor": cursor, "venue_positions": dict(positions)}


def _complete(entity: Entity, data: Data) -> dict[str, Any]:
    now_ms = timed_args(data, "counts", "differences", "fills_cursor", "venue_positions")
    counts = data.get("counts")
    if not isinstance(counts, dict) or set(counts) != set(REPORT_COUNTS):
        raise InvalidData(f"counts must hold exactly: {', '.join(REPORT_COUNTS)}")
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidData(f"counts.{name} must be a non-negative int, got {value!r}")
    differences = data.get("differences")
    if not isinstance(differences, list) or not all(
        isinstance(d, dict) and isinstance(d.get("kind"), str) and isinstance(d.get("detail"), str) for d in differences
    ):
        raise InvalidData("differences must be a list of records with a kind and a detail (strings)")
    return {
        "error": None,
        "ended_ms": now_ms,
        "counts": dict(counts),
        "differences": len(differences),
        **_cursor(data),
    }


RECONCILIATION = register(
    StateMachine(
        "reconciliation",
        doc=__doc__ or "",
        states=ReconciliationState,
        initial=S.running,
        terminal=(S.done, S.abandoned),
        state_docs={
            S.running: "Comparing the journal's live orders and fills with the venue's; order entry is paused.",
            S.failed: "The venue could not answer (unreachable, timeout): still paused; retried.",
            S.done: "The journal matches the venue; the report lists every difference that was applied.",
            S.abandoned: "Its process died before it finished; the next run reconciles afresh.",
        },
        rules=(
            Rule("fail", S.running, S.failed, effect=_failed, doc="The venue could not answer; `error` says why."),
            Rule("retry", S.failed, S.running, effect=_retry, doc="Try again (the kernel retries with backoff)."),
            Rule(
                "abandon",
                (S.running, S.failed),
                S.abandoned,
                effect=_abandoned,
                doc="Found unfinished by a later run (its process was killed); `reason` says so.",
            ),
            Rule(
                "complete",
                S.running,
                S.done,
                effect=_complete,
                doc=(
                    "Every difference is applied; `counts` and `differences` are the report; `fills_cursor` "
                    "(the venue `fill_seq` every fill up to which is applied) and `venue_positions` (our signed "
                    "quantity per instrument by the venue's fills up to it) let the next one page from there."
                ),
            ),
        ),
        init=_init,
    )
)

__all__ = ["RECONCILIATION", "REPORT_COUNTS", "ReconciliationState"]
