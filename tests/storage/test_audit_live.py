"""Issue 14 item 12e: ``audit entities --live`` lists only what is live now.

A run-scoped entity (feed, health, reconciliation: ``NAME-rRUN``) of a run that ended, cleanly or
by a crash, is not live, even when its machine left it in a non-terminal state (a feed stopped by
the operator is ``closed``, which accepts ``connect`` again). The journals are built the way the
kernel writes them; the CLI runs in a real subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

from machines import FEED, Entity
from storage import Journal
from storage.audit import AuditReader
from tests.conftest import run_cli

NOW = 1_700_000_000_000


def start_feed(journal: Journal) -> Entity:
    feed, created = FEED.create(f"feed-r{journal.run_id}", url="ws://127.0.0.1:1/md", instruments=["BTCUSDT"])
    journal.append(created, feed)
    journal.fire(FEED, feed, "connect", now_ms=NOW)
    journal.commit()
    return feed


def live_feeds_cli(db: str) -> list[tuple[str, str]]:
    result = run_cli("audit", "entities", "--live", "--machine", "feed", "--json", "--db", db, timeout=30)
    assert result.returncode == 0, result.stderr
    return [(row["entity"], row["state"]) for row in json.loads(result.stdout)]


def test_feeds_of_runs_that_ended_are_not_live(tmp_path: Path) -> None:
    db = str(tmp_path / "k.db")
    with Journal.open(db) as journal:  # run 1: stops cleanly, its feed closed by the stop
        feed = start_feed(journal)
        journal.fire(FEED, feed, "stop", now_ms=NOW, reason="kernel stopped")
    journal = Journal.open(db)  # run 2: killed, its feed left connecting
    start_feed(journal)
    journal.abandon()
    journal = Journal.open(db)  # run 3: finds run 2 crashed, retires its feed (closed), runs its own
    assert journal.crashed_runs == [2]
    (old,) = [f for f in journal.live_entities(FEED) if f.entity_id == "feed-r2"]
    journal.fire(FEED, old, "stop", now_ms=NOW, reason="its run ended without a clean stop")
    start_feed(journal)
    try:
        assert live_feeds_cli(db) == [("feed-r3", "connecting")]
        with AuditReader(db) as reader:
            feeds = {(e["entity"], e["state"], e["live"]) for e in reader.entities(machine="feed", live_now=True)}
            stored = {(e["entity"], e["live"]) for e in reader.entities(machine="feed")}
        assert feeds == {("feed-r1", "closed", False), ("feed-r2", "closed", False), ("feed-r3", "connecting", True)}
        assert stored == {("feed-r1", True), ("feed-r2", True), ("feed-r3", True)}  # the tables: not terminal
    finally:
        journal.abandon()  # run 3 is killed too: nothing holds the journal, its run is over
    assert live_feeds_cli(db) == []
