"""``tradekernel drive SCENARIO.json ...``: run scripted scenarios through the real machines.

No I/O but reading the files (and, with ``--journal``, writing the journal). Exit status: 0 every
expectation held, 1 some failed (each failing step is named, with why), 2 a file is malformed
(the file, where in it, and the problem) or the journal cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from kernel.cli.common import usage_error
from kernel.exits import EXIT_FAILED, EXIT_OK
from machines.health import HEALTH, KERNEL
from machines.scenario import Scenario, ScenarioError, ScenarioResult, parse, run_all
from storage import Journal
from storage.audit import AuditReader

KERNEL_RUN = re.compile(rf"^{KERNEL}-r(\d+)$")
"""The id of the health entity every kernel run creates (``kernel.bootstrap.entity_id``)."""


def add_parser(commands: Any) -> None:
    """Register ``drive`` on the top-level subparsers."""
    drive = commands.add_parser(
        "drive",
        help="run scripted state-test scenarios through the real machines",
        description="Run scenarios (JSON: one scenario or a list per file) through the real machines, "
        "with no I/O and no clock. Exit status: 0 all expectations held, 1 some failed, "
        "2 a malformed file.",
    )
    drive.add_argument("files", nargs="+", metavar="SCENARIO.json")
    drive.add_argument("--json", action="store_true", help="print results as JSON")
    drive.add_argument(
        "--journal",
        metavar="PATH",
        help="also write every transition to this journal (inspect it with tradekernel audit); "
        "never a kernel's journal (refused: exit 2)",
    )
    drive.set_defaults(run=run)


def load(paths: list[str]) -> list[Scenario]:
    """Read and validate every file; raise ``ScenarioError`` naming the file and the problem."""
    scenarios: list[Scenario] = []
    seen: dict[tuple[str, str], str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                document = json.load(f)
        except OSError as exc:
            raise ScenarioError(path, f"cannot read: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ScenarioError(path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        for scenario in parse(document, source=path):
            key = (scenario.machine, scenario.entity)
            if key in seen:
                raise ScenarioError(
                    path,
                    f"entity {scenario.entity!r} of machine {scenario.machine!r} "
                    f"is already used by a scenario in {seen[key]}; ids must be unique",
                )
            seen[key] = path
            scenarios.append(scenario)
    return scenarios


def run(args: argparse.Namespace) -> int:
    """Run the ``drive`` command."""
    try:
        scenarios = load(args.files)
    except ScenarioError as exc:
        return usage_error(str(exc), "drive")
    if args.journal:
        runs = kernel_runs(args.journal)
        if runs:
            return usage_error(
                f"{args.journal} is the journal of a kernel (run {', '.join(runs)}): scenario entities "
                "written there would be read back as its orders and positions; drive must use a journal of "
                "its own (a new file, e.g. --journal scenarios.db)",
                "drive",
            )
        with Journal.open(args.journal) as journal:
            taken = [s.entity for s in scenarios if journal.has_entity(s.machine, s.entity)]
            if taken:
                return usage_error(
                    f"{args.journal} already has entities {', '.join(taken)}; "
                    "entity ids are unique for the life of a journal (use a new journal or new ids)",
                    "drive",
                )
            results = run_all(scenarios, record=journal.append)
            journal.commit()
    else:
        results = run_all(scenarios)
    report(results, as_json=args.json)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def kernel_runs(path: str) -> list[str]:
    """The runs of a kernel recorded in the journal at ``path`` (none for a missing file)."""
    if not os.path.exists(path):
        return []
    with AuditReader(path) as reader:
        health = reader.entities(machine=HEALTH.name)
    return [m.group(1) for e in health if (m := KERNEL_RUN.match(e["entity"]))]


def report(results: list[ScenarioResult], *, as_json: bool) -> None:
    """Print the results for people (each step and its state) or as JSON."""
    passed = sum(1 for r in results if r.passed)
    if as_json:
        out = {"passed": passed, "failed": len(results) - passed, "scenarios": [r.as_json() for r in results]}
        print(json.dumps(out, indent=2))
        return
    for result in results:
        scenario = result.scenario
        title = f" — {scenario.name}" if scenario.name else ""
        print(f"{'PASS' if result.passed else 'FAIL'}  {scenario.machine} {scenario.entity}{title}")
        if result.create_error:
            print(f"      create: {result.create_error}")
        for i, step in enumerate(result.steps, 1):
            fields = " ".join(f"{k}={v}" for k, v in step.fields.items() if v is not None)
            error = f" error={step.error}" if step.error else ""
            mark = "ok " if step.ok else "BAD"
            print(f"  {mark} {i:>2} {step.trigger:<16} -> {step.state:<17} {fields}{error}".rstrip())
            for failure in step.failures:
                print(f"         {failure}")
    print(f"{passed} passed, {len(results) - passed} failed")
