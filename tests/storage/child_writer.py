"""A journal writer run in a real subprocess by the crash and lock tests (``python -m tests.storage.child_writer``).

Modes (the first argument), each followed by the journal path:

* ``batches PATH`` — opens the journal, then forever appends a batch of exactly ``BATCH`` toy
  transitions (``BATCH / 2`` creates and as many starts) and commits it, printing
  ``committed N`` (toy rows committed so far) after each commit. Ends only when killed.
* ``ready PATH`` — commits one batch (entities ``b1-*``), appends a second one (``b2-*``) without
  committing, prints ``ready``, then waits on stdin (the test kills it there).
* ``hold PATH`` — appends and commits one toy create at a time until a line arrives on stdin,
  then closes the journal cleanly and prints ``stopped N`` (toy rows it committed).
* ``open-wait PATH`` — opens the journal, prints ``opened RUN``, waits on stdin, closes on a line.
* ``try-open PATH`` — tries ``Journal.open`` and ``AuditReader`` on PATH and prints one JSON line
  describing what each did (used unprivileged by the read-only tests).

Every mode that opens the journal first prints ``opened RUN_ID``.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import tests.toy  # noqa: F401  (registers the toy machine, so verify can replay it)
from storage import Journal
from storage.audit import AuditReader
from tests.toy import TOY

BATCH = 100


def say(*parts: object) -> None:
    print(*parts, flush=True)


def append_batch(journal: Journal, label: str) -> None:
    for i in range(BATCH // 2):
        entity, created = TOY.create(f"{label}-{i}", target="3")
        journal.append(created, entity)
        journal.fire(TOY, entity, "start")


def batches(path: str) -> None:
    journal = Journal.open(path)
    say("opened", journal.run_id)
    committed = 0
    batch = 0
    while True:
        batch += 1
        append_batch(journal, f"r{journal.run_id}b{batch}")
        journal.commit()
        committed += BATCH
        say("committed", committed)


def ready(path: str) -> None:
    journal = Journal.open(path)
    say("opened", journal.run_id)
    append_batch(journal, "b1")
    journal.commit()
    append_batch(journal, "b2")
    say("ready", journal.committed_seq, journal.pending)
    sys.stdin.readline()
    raise SystemExit(3)  # the test kills this process before it gets here


def hold(path: str) -> None:
    journal = Journal.open(path)
    say("opened", journal.run_id)
    stop = threading.Event()

    def wait_for_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    committed = 0
    while not stop.is_set():
        entity, created = TOY.create(f"h{committed}")
        journal.append(created, entity)
        journal.commit()
        committed += 1
        if committed == 1:
            say("committing")
        stop.wait(0.002)
    journal.close()
    say("stopped", committed)


def open_wait(path: str) -> None:
    journal = Journal.open(path)
    say("opened", journal.run_id)
    sys.stdin.readline()
    journal.close()
    say("closed")


def try_open(path: str) -> None:
    out: dict[str, Any] = {}
    try:
        Journal.open(path).close()
        out["open"] = "ok"
    except Exception as exc:
        out["open"] = [type(exc).__name__, str(exc)]
    try:
        with AuditReader(path) as reader:
            result = reader.verify()
            out["audit"] = {"ok": result.ok, "transitions": result.transitions, "tail": len(reader.tail(1000))}
    except Exception as exc:
        out["audit"] = [type(exc).__name__, str(exc)]
    say(json.dumps(out))


MODES = {"batches": batches, "ready": ready, "hold": hold, "open-wait": open_wait, "try-open": try_open}

if __name__ == "__main__":
    MODES[sys.argv[1]](sys.argv[2])
