"""The ``run`` machine: one entity per process session that writes the journal.

A run starts ``running`` when a writer opens the journal and becomes ``stopped`` when it closes the
journal cleanly. A run still ``running`` when the next writer opens the journal did not stop
cleanly (killed, power loss, OOM): the next run records ``crash_detected`` on it, so the audit trail
says when a crash happened and which run noticed. Entity ids are the run numbers as strings.

Creation data (given by the journal): ``started_ns`` (wall clock, ns since the epoch), ``pid``,
``host``, ``version``. ``stop`` carries ``ended_ns``; ``crash_detected`` carries ``detected_ns``
and ``detected_by_run``.

Transitions journaled outside any run carry run 0 and create no run entity: the operator commands
``tradekernel halt``/``reduce``/``arm`` given with no kernel running (``Journal.open(...,
start_run=False)``), so run numbers and the last run ``status`` shows are the kernels' own.
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


def _integer(data: Data, name: str, what: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidData(f"{name} ({what}) is required")
    return value


def _init(data: Data) -> dict[str, Any]:
    _integer(data, "started_ns", "int, ns since the epoch")
    return {"ended_ns": None, "detected_by_run": None, "detected_ns": None, **data}


def _on_stop(entity: Entity, data: Data) -> dict[str, Any]:
    return {"ended_ns": _integer(data, "ended_ns", "int, ns since the epoch")}


def _on_crash_detected(entity: Entity, data: Data) -> dict[str, Any]:
    return {
        "detected_by_run": _integer(data, "detected_by_run", "int, the run that noticed"),
        "detected_ns": _integer(data, "detected_ns", "int, ns since the epoch"),
    }


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
