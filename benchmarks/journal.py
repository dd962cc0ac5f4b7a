"""Journal benchmarks: audited transitions per second, and resume cost. Prints JSON lines.

Each throughput figure stands next to a raw baseline measured in the same run, the two alternated
``--repeats`` times and their medians reported: plain ``sqlite3``
``executemany`` of the very same rows (read back from the audited journal) into a table of the same
shape, in batches of the same size, at the same durability. Run with ``make bench``.

Lines printed (``bench`` field):

* ``journal.audited`` — fire on a small example machine + ``append`` + ``commit`` every 100, per
  durability, with ``ratio`` = audited / raw.
* ``journal.parts`` — where the time goes: firing alone (in memory), and ``append`` + ``commit``
  of already-fired transitions (the journal's own cost) with its ratio to raw.
* ``journal.resume`` — open the journal and load every live entity, with 10,000 live entities in
  journals of 100,000 and 1,000,000 rows, and the ratio between the two.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from enum import StrEnum
from typing import Any

from common import BATCH, emit, fresh, journal_rows, raw_insert

from machines import Entity, Rule, StateMachine, Transition
from machines.base import Data
from storage import Journal

IN_FLIGHT = 50


class Step(StrEnum):
    new = "new"
    working = "working"
    done = "done"


def _progress(entity: Entity, data: Data) -> dict[str, Any]:
    return {"filled": entity.data["filled"] + Decimal(str(data["qty"]))}


def _complete(entity: Entity, data: Data) -> bool:
    return bool(entity.data["filled"] >= entity.data["qty"])


# A small order-like lifecycle: create, start, three progress steps (internal, Decimal effect), finish.
BENCH = StateMachine(
    "bench",
    states=Step,
    initial=Step.new,
    terminal=(Step.done,),
    state_docs={Step.new: "created", Step.working: "in progress", Step.done: "finished"},
    rules=(
        Rule("start", Step.new, Step.working),
        Rule("progress", Step.working, None, effect=_progress),
        Rule("finish", Step.working, Step.done, guard=_complete),
    ),
    init=lambda data: {"qty": Decimal(str(data["qty"])), "filled": Decimal(0)},
    decode=lambda data: {"qty": Decimal(data["qty"]), "filled": Decimal(data["filled"])},
)
LIFECYCLE = ("start", "progress", "progress", "progress", "finish")


def lifecycle_events(count: int, first_id: int = 0) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(entity id, trigger, data) for ``count`` transitions, ``IN_FLIGHT`` entities interleaved."""
    produced = 0
    next_id = first_id
    slots: list[tuple[str, int]] = []
    while produced < count:
        if len(slots) < IN_FLIGHT:
            entity_id = f"b-{next_id}"
            next_id += 1
            slots.append((entity_id, 0))
            yield entity_id, "create", {"qty": "3"}
            produced += 1
            continue
        for i, (entity_id, step) in enumerate(list(slots)):
            if produced >= count:
                break
            trigger = LIFECYCLE[step]
            yield entity_id, trigger, ({"qty": "1"} if trigger == "progress" else {})
            produced += 1
            slots[i] = (entity_id, step + 1)
        slots = [s for s in slots if s[1] < len(LIFECYCLE)]


def record(journal: Journal, entities: dict[str, Entity], entity_id: str, trigger: str, data: dict[str, Any]) -> None:
    """Create (``trigger == "create"``) or fire one event on a bench entity, and journal it."""
    if trigger == "create":
        entity, transition = BENCH.create(entity_id, **data)
        entities[entity_id] = entity
        journal.append(transition, entity)
    else:
        journal.fire(BENCH, entities[entity_id], trigger, **data)


def fire_all(count: int) -> tuple[list[tuple[Transition, Entity]], float]:
    """Fire ``count`` transitions in memory; return them and the seconds it took."""
    entities: dict[str, Entity] = {}
    fired: list[tuple[Transition, Entity]] = []
    start = time.perf_counter()
    for entity_id, trigger, data in lifecycle_events(count):
        if trigger == "create":
            entity, transition = BENCH.create(entity_id, **data)
            entities[entity_id] = entity
        else:
            entity = entities[entity_id]
            transition = BENCH.fire(entity, trigger, **data)
        fired.append((transition, entity))
    return fired, time.perf_counter() - start


def audited(path: str, durability: str, count: int) -> float:
    """Seconds to fire + append + commit (every ``BATCH``) ``count`` transitions."""
    journal = Journal.open(fresh(path), durability=durability)  # type: ignore[arg-type]
    entities: dict[str, Entity] = {}
    pending = 0
    start = time.perf_counter()
    for entity_id, trigger, data in lifecycle_events(count):
        record(journal, entities, entity_id, trigger, data)
        pending += 1
        if pending == BATCH:
            journal.commit()
            pending = 0
    journal.commit()
    elapsed = time.perf_counter() - start
    journal.close()
    return elapsed


def journal_only(path: str, durability: str, fired: list[tuple[Transition, Entity]]) -> float:
    """Seconds to append + commit already-fired transitions (the journal's own cost)."""
    journal = Journal.open(fresh(path), durability=durability)  # type: ignore[arg-type]
    start = time.perf_counter()
    for i, (transition, entity) in enumerate(fired, 1):
        journal.append(transition, entity)
        if i % BATCH == 0:
            journal.commit()
    journal.commit()
    elapsed = time.perf_counter() - start
    journal.close()
    return elapsed


def interleaved(repeats: int, *measures: Callable[[], float]) -> list[float]:
    """The median of each measure, the measures run alternately ``repeats`` times."""
    runs: list[list[float]] = [[] for _ in measures]
    for _ in range(repeats):
        for times, measure in zip(runs, measures, strict=True):
            times.append(measure())
    return [statistics.median(times) for times in runs]


def bench_throughput(workdir: str, count: int, repeats: int) -> None:
    fired, _ = fire_all(count)
    (fire_s,) = interleaved(repeats, lambda: fire_all(count)[1])
    for durability in ("full", "normal"):
        audited_path = os.path.join(workdir, f"audited-{durability}.db")
        audited(audited_path, durability, count)  # the rows the raw baseline writes
        rows = journal_rows(audited_path, "bench")
        raw_path = os.path.join(workdir, f"raw-{durability}.db")
        only_path = os.path.join(workdir, f"only-{durability}.db")
        audited_s, raw_s, only_s = interleaved(
            repeats,
            lambda: audited(audited_path, durability, count),  # noqa: B023
            lambda: raw_insert(raw_path, durability, rows),  # noqa: B023
            lambda: journal_only(only_path, durability, fired),  # noqa: B023
        )
        audited_rate, raw_rate, only_rate = count / audited_s, count / raw_s, count / only_s
        record: dict[str, Any] = {
            "bench": "journal.audited",
            "durability": durability,
            "transitions": count,
            "batch": BATCH,
            "audited_per_s": round(audited_rate),
            "raw_rows_per_s": round(raw_rate),
            "ratio": round(audited_rate / raw_rate, 3),
        }
        if durability == "full":
            record["target"] = ">= 50000/s and ratio >= 0.5"
            record["meets_rate"] = audited_rate >= 50_000
            record["meets_ratio"] = audited_rate / raw_rate >= 0.5
        emit(record)
        emit(
            {
                "bench": "journal.parts",
                "durability": durability,
                "fire_only_us": round(fire_s / count * 1e6, 2),
                "append_commit_us": round(only_s / count * 1e6, 2),
                "raw_row_us": round(raw_s / count * 1e6, 2),
                "audited_us": round(audited_s / count * 1e6, 2),
                "journal_only_per_s": round(only_rate),
                "journal_only_ratio": round(only_rate / raw_rate, 3),
            }
        )


def build_resume_journal(path: str, rows: int, live: int) -> None:
    """A journal of ``rows`` rows whose last ``live`` entities are still live (``working``)."""
    journal = Journal.open(fresh(path), durability="normal")
    entities: dict[str, Entity] = {}
    # Finished history first (in-flight ones finished off: up to ~4 rows each for IN_FLIGHT
    # entities), then the live entities: create + start each. Row counts are approximate.
    history = rows - 2 * live - 4 * IN_FLIGHT
    for written, (entity_id, trigger, data) in enumerate(lifecycle_events(history), 1):
        record(journal, entities, entity_id, trigger, data)
        if written % 10_000 == 0:
            journal.commit()
            entities = {k: v for k, v in entities.items() if v.live}
    for entity in entities.values():  # finish the history's in-flight entities
        if entity.state == Step.new:
            journal.fire(BENCH, entity, "start")
        while entity.live and entity.data["filled"] < entity.data["qty"]:
            journal.fire(BENCH, entity, "progress", qty="1")
        if entity.live:
            journal.fire(BENCH, entity, "finish")
    journal.commit()
    for i in range(live):
        entity, transition = BENCH.create(f"live-{i}", qty="5")
        journal.append(transition, entity)
        journal.fire(BENCH, entity, "start")
        if i % 5_000 == 4_999:
            journal.commit()
    journal.close()


def resume_once(path: str) -> tuple[float, int]:
    start = time.perf_counter()
    journal = Journal.open(path)
    loaded = journal.live_entities(BENCH)
    elapsed = time.perf_counter() - start
    journal.close()
    return elapsed, len(loaded)


def bench_resume(workdir: str, live: int, sizes: tuple[int, ...], repeats: int) -> None:
    timings: dict[int, float] = {}
    for rows in sizes:
        path = os.path.join(workdir, f"resume-{rows}.db")
        build_resume_journal(path, rows, live)
        # Each open commits one run row (an fsync of a few ms): a median of several smooths that out.
        results = [resume_once(path) for _ in range(max(repeats, 7))]
        counts = {count for _, count in results}
        if counts != {live}:
            raise SystemExit(f"resume loaded {counts} live entities, expected {live}")
        timings[rows] = statistics.median(seconds for seconds, _ in results)
        emit(
            {
                "bench": "journal.resume",
                "rows": rows,
                "live_entities": live,
                "seconds": round(timings[rows], 4),
                "target_s": 1.0,
            }
        )
    small, large = min(sizes), max(sizes)
    ratio = timings[large] / timings[small]
    emit(
        {
            "bench": "journal.resume.ratio",
            "rows_small": small,
            "rows_large": large,
            "ratio": round(ratio, 3),
            "target": "<= 1.2",
            "meets": ratio <= 1.2 and timings[large] <= 1.0,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=50_000, help="per throughput run (default 50000)")
    parser.add_argument("--repeats", type=int, default=5, help="median of this many runs (default 5)")
    parser.add_argument("--resume-sizes", default="100000,1000000", help="journal sizes in rows for resume")
    parser.add_argument("--live", type=int, default=10_000, help="live entities for resume (default 10000)")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    workdir = args.dir or tempfile.mkdtemp(prefix="tradekernel-bench-")
    try:
        bench_throughput(workdir, args.transitions, args.repeats)
        sizes = tuple(int(s) for s in args.resume_sizes.split(","))
        bench_resume(workdir, args.live, sizes, args.repeats)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
