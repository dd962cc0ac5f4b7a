"""Docs generated from a machine's table: a Mermaid ``stateDiagram-v2`` and Markdown tables.

``docs/machines/NAME.md`` holds hand-written prose around a block delimited by ``BEGIN``/``END``
markers; ``tradekernel diagram NAME --update-docs DIR`` rewrites that block, and a test fails when a
page is stale. Pure string functions: no file I/O here.
"""

from __future__ import annotations

from machines.base import CREATE, StateMachine
from machines.errors import StateMachineError

BEGIN = "<!-- BEGIN GENERATED: tradekernel diagram {name} (do not edit by hand) -->"
END = "<!-- END GENERATED -->"


class GeneratedBlockError(StateMachineError, ValueError):
    """A docs page holds the start marker of a machine's generated block but not its end marker."""


def mermaid(machine: StateMachine) -> str:
    """The machine's table as a Mermaid ``stateDiagram-v2`` (ends with a newline)."""
    lines = ["stateDiagram-v2", f"    [*] --> {machine.initial.value}: {CREATE}"]
    for rule in machine.rules:
        label = rule.trigger + (f" [{rule.guard_label}]" if rule.guard_label else "")
        for source in rule.sources:
            dest = source if rule.dest is None else rule.dest
            lines.append(f"    {source.value} --> {dest.value}: {label}")
    for state in machine.states:
        if state in machine.terminal:
            lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(machine: StateMachine) -> str:
    """The generated block of ``docs/machines/NAME.md``: diagram, states and transitions tables."""
    out = [BEGIN.format(name=machine.name), "", "```mermaid", mermaid(machine).rstrip("\n"), "```", ""]
    out += ["| state | terminal | meaning |", "| --- | --- | --- |"]
    for state in machine.states:
        terminal = "yes" if state in machine.terminal else ""
        out.append(f"| `{state.value}` | {terminal} | {_cell(machine.state_docs[state])} |")
    out += ["", "| trigger | from | to | guard | meaning |", "| --- | --- | --- | --- | --- |"]
    out.append(f"| `{CREATE}` | (none) | `{machine.initial.value}` |  | A new entity is recorded. |")
    for rule in machine.rules:
        sources = ", ".join(f"`{s.value}`" for s in rule.sources)
        dest = "(stays)" if rule.dest is None else f"`{rule.dest.value}`"
        guard = f"`{_cell(rule.guard_label)}`" if rule.guard_label else ""
        out.append(f"| `{rule.trigger}` | {sources} | {dest} | {guard} | {_cell(rule.doc)} |")
    out += ["", END]
    return "\n".join(out) + "\n"


def replace_block(page: str, machine: StateMachine) -> str:
    """Return ``page`` with its generated block replaced (or appended when it has none)."""
    begin = BEGIN.format(name=machine.name)
    start = page.find(begin)
    if start < 0:
        return page.rstrip("\n") + "\n\n" + markdown(machine)
    end = page.find(END, start)
    if end < 0:
        raise GeneratedBlockError(f"generated block for {machine.name!r} has no end marker")
    end += len(END)
    if page[end : end + 1] == "\n":
        end += 1
    return page[:start] + markdown(machine) + page[end:]


def extract_block(page: str, machine: StateMachine) -> str | None:
    """The generated block as it stands in ``page``, or ``None`` when it has none."""
    begin = BEGIN.format(name=machine.name)
    start = page.find(begin)
    if start < 0:
        return None
    end = page.find(END, start)
    if end < 0:
        return None
    return page[start : end + len(END)] + "\n"
