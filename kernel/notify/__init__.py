"""Notifications of fills, halts, arms, health changes and stops to webhooks and Telegram
(``[notify]``, docs/notifications.md).

``events.notices_of`` reads them off each committed journal batch; ``sender.Notifier`` queues them
(bounded, never blocking the trading loop) and posts them with retries. ``watch`` connects the two.
"""

from __future__ import annotations

from collections.abc import Callable

from kernel.display import Precision
from kernel.notify.events import Notice, notices_of, utc_iso
from kernel.notify.sender import Notifier, NotifyError, Target, targets_of, webhook_name
from kernel.paper_defaults import TradingRules
from machines.risk_limits import Limits
from storage import Journal


def precision_of(limits: Limits, instrument: str) -> Precision:
    """How ``instrument``'s numbers are shown: its tick and lot from the risk limits (which the
    venue's rules complete at start), else the defaults."""
    found = limits.for_instrument(instrument)
    rules = None if found.tick_size is None or found.lot_size is None else TradingRules(found.tick_size, found.lot_size)
    return Precision.of(instrument, rules)


def watch(notifier: Notifier, journal: Journal, precision_of: Callable[[str], Precision]) -> None:
    """After each successful commit of ``journal``, queue the notices of the batch it wrote."""

    def after_commit() -> None:
        rows, entities = journal.last_batch
        for notice in notices_of(rows, entities, precision_of):
            notifier.notify(notice)

    journal.after_commit.append(after_commit)


__all__ = [
    "Notice",
    "Notifier",
    "NotifyError",
    "Target",
    "notices_of",
    "precision_of",
    "targets_of",
    "utc_iso",
    "watch",
    "webhook_name",
]
