"""The ``run`` machine: one entity per process session that writes the journal.

A run starts ``running`` when a writer opens the journal and becomes ``stopped`` when it closes the
journal cleanly. A run still ``running`` when the next writer opens the journal did not stop
cleanly (killed, power loss, OOM): the next run records ``crash_detected`` on it, so the audit trail
says when a crash happened and which run noticed. Entity ids are the run numbers as strings.

Creation data (given by the journal): ``started_ns`` (wall clock, ns since the epoch), ``pid``,
``host``, ``version``. ``stop`` carries ``ended_ns``; ``crash_detected`` carries ``detected_ns``
and ``detected_by_run``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from machines.base import Data, Entity, Rule, StateMachine
from machines.errors import InvalidData
from machines.registry import register


class RunState(StrEnum):
    """States of a journal-writing session."""

    running = "running"
    stopped = "stopped"
    crashed = "crashed"


def _init(data: Data) -> dict[str, Any]:
    if not isinstance(data.get("started_ns"), int):
        raise InvalidData("started_ns (int, ns since the epoch) is required")
    return {"ended_ns": None, "detected_by_run": None, **data}


def _on_stop(entity: Entity, data: Data) -> dict[str, Any]:
    if not isinstance(data.get("ended_ns"), int):
        raise InvalidData("ended_ns (int, ns since the epoch) is required")
    return {"ended_ns": data["ended_ns"]}


def _on_crash_detected(entity: Entity, data: Data) -> dict[str, Any]:
    if not isinstance(data.get("detected_by_run"), int):
        raise InvalidData("detected_by_run (int) is required")
    return {"detected_by_run": data["detected_by_run"]}


RUN = register(
    StateMachine(
        "run",
        doc=__doc__ or "",
        states=RunState,
        initial=RunState.running,
        terminal=(RunState.stopped, RunState.crashed),
        state_docs={
            RunState.running: "The session holds the journal's writer lock and appends transitions.",
            RunState.stopped: "The session closed the journal cleanly: everything it appended is committed.",
            RunState.crashed: "The session ended without closing the journal; found by the next run at start.",
        },
        rules=(
            Rule(
                "stop",
                RunState.running,
                RunState.stopped,
                effect=_on_stop,
                doc="The writer closes the journal cleanly.",
            ),
            Rule(
                "crash_detected",
                RunState.running,
                RunState.crashed,
                effect=_on_crash_detected,
                doc="A later writer found this run still `running`: it never stopped cleanly.",
            ),
        ),
        init=_init,
    )
)
