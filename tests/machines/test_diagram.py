"""Docs generated from machine tables (``machines.diagram``), and the freshness of ``docs/machines/``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import pytest

from machines import Entity, Rule, StateMachine, registry
from machines.base import Data
from machines.diagram import BEGIN, END, GeneratedBlockError, extract_block, markdown, mermaid, replace_block

DOCS = Path(__file__).resolve().parents[2] / "docs" / "machines"

# Machines registered only by tests: they have no docs page.
TEST_MACHINES = {"toy"}


class Valve(StrEnum):
    shut = "shut"
    flowing = "flowing"
    burst = "burst"
    removed = "removed"


def _pressure_ok(entity: Entity, data: Data) -> bool:
    return True


def _overpressure(entity: Entity, data: Data) -> bool:
    return bool(data.get("bar", 0) > 10)


VALVE = StateMachine(
    "valve",
    states=Valve,
    initial=Valve.shut,
    terminal=(Valve.burst, Valve.removed),
    state_docs={
        Valve.shut: "no flow",
        Valve.flowing: "water | flows",
        Valve.burst: "broke\nbadly",
        Valve.removed: "gone",
    },
    rules=(
        Rule("open", Valve.shut, Valve.flowing, guard=_pressure_ok, doc="open it | if safe"),
        Rule("close", Valve.flowing, Valve.shut, doc="close it"),
        Rule("tap", (Valve.shut, Valve.flowing), None, doc="check it"),
        Rule(
            "overload",
            (Valve.shut, Valve.flowing),
            Valve.burst,
            guard=_overpressure,
            guard_label="bar > 10",
            doc="too much",
        ),
        Rule("remove", Valve.burst, Valve.removed),
    ),
)

VALVE_MERMAID = """\
stateDiagram-v2
    [*] --> shut: create
    shut --> flowing: open [pressure_ok]
    flowing --> shut: close
    shut --> shut: tap
    flowing --> flowing: tap
    shut --> burst: overload [bar > 10]
    flowing --> burst: overload [bar > 10]
    burst --> removed: remove
    burst --> [*]
    removed --> [*]
"""

VALVE_MARKDOWN = (
    "<!-- BEGIN GENERATED: tradekernel diagram valve (do not edit by hand) -->\n"
    "\n"
    "```mermaid\n" + VALVE_MERMAID + "```\n"
    "\n"
    "| state | terminal | meaning |\n"
    "| --- | --- | --- |\n"
    "| `shut` |  | no flow |\n"
    "| `flowing` |  | water \\| flows |\n"
    "| `burst` | yes | broke badly |\n"
    "| `removed` | yes | gone |\n"
    "\n"
    "| trigger | from | to | guard | meaning |\n"
    "| --- | --- | --- | --- | --- |\n"
    "| `create` | (none) | `shut` |  | A new entity is recorded. |\n"
    "| `open` | `shut` | `flowing` | `pressure_ok` | open it \\| if safe |\n"
    "| `close` | `flowing` | `shut` |  | close it |\n"
    "| `tap` | `shut`, `flowing` | (stays) |  | check it |\n"
    "| `overload` | `shut`, `flowing` | `burst` | `bar > 10` | too much |\n"
    "| `remove` | `burst` | `removed` |  |  |\n"
    "\n"
    "<!-- END GENERATED -->\n"
)


# -- mermaid and markdown ---------------------------------------------------------------------


def test_mermaid_exact_output() -> None:
    assert mermaid(VALVE) == VALVE_MERMAID


def test_mermaid_of_the_run_machine() -> None:
    run = registry.get("run")
    assert mermaid(run) == (
        "stateDiagram-v2\n"
        "    [*] --> running: create\n"
        "    running --> stopped: stop\n"
        "    running --> crashed: crash_detected\n"
        "    stopped --> [*]\n"
        "    crashed --> [*]\n"
    )


def test_guard_label_defaults_to_the_guard_name_without_leading_underscores() -> None:
    assert Rule("open", Valve.shut, Valve.flowing, guard=_pressure_ok).guard_label == "pressure_ok"
    assert Rule("open", Valve.shut, Valve.flowing, guard=_pressure_ok, guard_label="_safe").guard_label == "safe"
    assert Rule("open", Valve.shut, Valve.flowing).guard_label == ""


def test_markdown_exact_output() -> None:
    assert markdown(VALVE) == VALVE_MARKDOWN


def test_markdown_has_markers_rows_and_escapes_pipes() -> None:
    block = markdown(VALVE)
    lines = block.splitlines()
    assert lines[0] == BEGIN.format(name="valve")
    assert lines[-1] == END
    assert "| `flowing` |  | water \\| flows |" in lines
    assert "| `open` | `shut` | `flowing` | `pressure_ok` | open it \\| if safe |" in lines
    # No unescaped pipe inside a cell: every table row has exactly its column separators.
    for line in lines:
        if line.startswith("| `"):
            unescaped = line.replace("\\|", "").count("|")
            assert unescaped in (4, 6), line
    assert "broke\nbadly" not in block


# -- replace_block and extract_block ----------------------------------------------------------


def test_replace_block_appends_to_a_page_without_one() -> None:
    page = "# The valve\n\nHand-written prose.\n\n\n"
    assert replace_block(page, VALVE) == "# The valve\n\nHand-written prose.\n\n" + VALVE_MARKDOWN


def test_replace_block_replaces_only_the_block() -> None:
    stale = BEGIN.format(name="valve") + "\n\nold diagram\n\n" + END + "\n"
    before = "# The valve\n\nProse before.\n\n"
    after = "\nProse after, kept.\n"
    page = before + stale + after
    updated = replace_block(page, VALVE)
    assert updated == before + VALVE_MARKDOWN + after
    # Idempotent: a fresh page is left as it is.
    assert replace_block(updated, VALVE) == updated


def test_replace_block_at_the_end_of_a_page_without_a_final_newline() -> None:
    page = "# The valve\n\n" + BEGIN.format(name="valve") + "\nold\n" + END
    assert replace_block(page, VALVE) == "# The valve\n\n" + VALVE_MARKDOWN


def test_replace_block_leaves_other_machines_blocks_alone() -> None:
    other = BEGIN.format(name="run") + "\nrun block\n" + END + "\n"
    page = "# Two machines\n\n" + other
    updated = replace_block(page, VALVE)
    assert updated.startswith("# Two machines\n\n" + other)
    assert updated.endswith(VALVE_MARKDOWN)


def test_replace_block_without_an_end_marker_raises() -> None:
    page = "# The valve\n\n" + BEGIN.format(name="valve") + "\nhalf a block\n"
    with pytest.raises(GeneratedBlockError, match="generated block for 'valve' has no end marker"):
        replace_block(page, VALVE)


def test_extract_block() -> None:
    page = "# The valve\n\nProse.\n\n" + VALVE_MARKDOWN + "\nMore prose.\n"
    assert extract_block(page, VALVE) == VALVE_MARKDOWN
    # Without a final newline after the END marker, the block still reads the same.
    assert extract_block("intro\n" + VALVE_MARKDOWN.rstrip("\n"), VALVE) == VALVE_MARKDOWN


def test_extract_block_absent() -> None:
    assert extract_block("# The valve\n\nNo generated block here.\n", VALVE) is None
    assert extract_block(markdown(registry.get("run")), VALVE) is None


def test_extract_block_without_an_end_marker() -> None:
    assert extract_block(BEGIN.format(name="valve") + "\nhalf a block\n", VALVE) is None


# -- docs/machines freshness ------------------------------------------------------------------

DOCUMENTED = [name for name in registry.names() if name not in TEST_MACHINES]


def test_every_product_machine_is_checked() -> None:
    assert "run" in DOCUMENTED
    assert "valve" not in registry.names()


@pytest.mark.parametrize("name", DOCUMENTED)
def test_docs_page_is_fresh(name: str) -> None:
    machine = registry.get(name)
    page_path = DOCS / f"{name}.md"
    assert page_path.is_file(), f"docs/machines/{name}.md is missing: run `make docs` to create it"
    page = page_path.read_text(encoding="utf-8")
    assert extract_block(page, machine) == markdown(machine), (
        f"the generated block of docs/machines/{name}.md is stale or missing: run `make docs`"
    )
