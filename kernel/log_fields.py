"""Structured fields of a log record about a transition (``extra=``), as the JSON log format shows them.

    log.info("feed %s: %s -> %s (%s)", ..., extra=transition_fields(transition, journal.run_id))

gives the record ``run``, ``machine``, ``entity``, ``trigger``, ``source`` and ``dest``
(``kernel.cli.run.JsonFormatter`` copies them into each JSON line; the text format shows the message).
"""

from __future__ import annotations

from machines.base import Transition


def transition_fields(transition: Transition, run: int | None) -> dict[str, object]:
    """The ``extra=`` of a log record about ``transition``, journaled by run ``run``."""
    return {
        "run": run,
        "machine": transition.machine,
        "entity": transition.entity_id,
        "trigger": transition.trigger,
        "source": transition.source,
        "dest": transition.dest,
    }
