"""Bootstrap and close the journal of one kernel run.

``open_journal`` takes the writer lock (one kernel per database); ``prepare`` then retires what a
previous run left live (its health, reconciliation and feed entities: it was killed), reads the
previous run's summary, restores the trading entity (halted stays halted) and creates this run's
health entities, all committed. ``restore_positions`` folds the positions once the order manager
has resumed; ``close_journal`` records the stop, or leaves the run open for the next start.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kernel.config import Config
from kernel.orders import OrderManager, checkpoint_positions
from kernel.status import journal_runs, run_summary
from machines import FEED, RECONCILIATION, TRADING, Entity, TradingState, TransitionRefused
from machines.health import COMPONENTS, HEALTH, KERNEL, HealthState
from machines.trading import ENTITY_ID as TRADING_ID
from storage import Journal
from storage.audit import AuditReader
from storage.errors import JournalError

log = logging.getLogger(__name__)

RETIRED = "its run ended without a clean stop"
"""The reason journaled for the entities a killed run left live."""


def entity_id(name: str, run_id: int) -> str:
    """The id of a per-run entity (health components, the feed): ``NAME-rRUN``."""
    return f"{name}-r{run_id}"


@dataclass(frozen=True, slots=True)
class Boot:
    """What ``prepare`` leaves ready: the trading entity, this run's health entities, the previous run."""

    trading: Entity
    health: Mapping[str, Entity]
    previous_run: dict[str, Any] | None


def open_journal(config: Config, commit_observer: Callable[[int, int], None]) -> Journal:
    """Open the configured journal (raises ``JournalError``: missing, locked, corrupt, too new)."""
    cfg = config.kernel
    journal = Journal.open(cfg.db, durability="normal" if cfg.durability == "normal" else "full")
    journal.commit_observer = commit_observer
    if journal.crashed_runs:
        log.warning(
            "the last run did not end cleanly (run %s); resuming from the journal",
            ", ".join(str(r) for r in journal.crashed_runs),
        )
    return journal


def prepare(journal: Journal, now_ms: int) -> Boot:
    """Retire the previous run's entities, restore trading, create this run's health entities."""
    retire_previous_runs(journal, now_ms)
    with AuditReader(journal.path) as reader:
        runs = journal_runs(reader)
    previous = run_summary(runs[-2], live=False) if len(runs) > 1 else None
    restored = journal.live_entities(TRADING)
    if restored:
        trading = restored[0]
        if trading.state != TradingState.active:
            log.warning("trading is %s since the last run: %s", trading.state, trading.data["reason"])
    else:
        trading, created_trading = TRADING.create(TRADING_ID, now_ms=now_ms)
        journal.append(created_trading, trading)
    health: dict[str, Entity] = {}
    for name in (KERNEL, *COMPONENTS):
        entity, created = HEALTH.create(entity_id(name, journal.run_id), now_ms=now_ms)
        journal.append(created, entity)
        health[name] = entity
    journal.commit()
    return Boot(trading, health, previous)


def retire_previous_runs(journal: Journal, now_ms: int) -> None:
    """End the health, reconciliation and feed entities a previous run left live (it was killed)."""
    for entity in journal.live_entities(HEALTH):
        if entity.state != HealthState.stopping:
            journal.fire(HEALTH, entity, "stop", now_ms=now_ms, reason=RETIRED)
        journal.fire(HEALTH, entity, "stopped", now_ms=now_ms)
    for recon in journal.live_entities(RECONCILIATION):
        journal.fire(RECONCILIATION, recon, "abandon", now_ms=now_ms, reason=RETIRED)
    for feed in journal.live_entities(FEED):
        if feed.state == "closed":  # stopped cleanly; its history stays, nothing to end
            continue
        with contextlib.suppress(TransitionRefused):
            journal.fire(FEED, feed, "stop", now_ms=now_ms, reason=RETIRED)
    journal.commit()


def restore_positions(manager: OrderManager) -> list[Entity]:
    """The ``position`` entities (O(instruments)), after giving a journal written before positions
    were checkpointed its entities (``checkpoint_positions``)."""
    checkpoint_positions(manager)
    return list(manager.positions.values())


def close_journal(journal: Journal | None, health: Mapping[str, Entity], clean: bool, now_ms: int) -> None:
    """Close the journal: recording a clean stop, or (``clean=False``) leaving the run open so
    the next start reports the crash and resumes."""
    if journal is None or journal.closed:
        return
    if not clean:
        journal.abandon()
        log.error("run %d ended by an error: left open in the journal for the next start", journal.run_id)
        return
    for entity in health.values():
        with contextlib.suppress(TransitionRefused):
            if entity.state != HealthState.stopping:
                journal.fire(HEALTH, entity, "stop", now_ms=now_ms, reason="kernel stopped")
            journal.fire(HEALTH, entity, "stopped", now_ms=now_ms)
    try:
        journal.close()
        log.info("journal %s closed: run %d stopped cleanly", journal.path, journal.run_id)
    except JournalError as exc:
        log.error("the journal could not record the stop: %s (the next start will report a crash)", exc)


__all__ = ["Boot", "close_journal", "entity_id", "open_journal", "prepare", "restore_positions", "retire_previous_runs"]
