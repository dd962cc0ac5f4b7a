"""The shape of the code base (issue 12): one job per module, no import cycles, a light config.

Read from the source with ``ast``, so function-level imports count as imports too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernel", "machines", "storage")
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those only seen by type checkers."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _import_nodes(node)


def _owner(dotted: str) -> str | None:
    """The module of ours that ``dotted`` names (a module, or a name inside one)."""
    while dotted:
        if dotted in MODULES:
            return dotted
        if "." not in dotted:
            return None
        dotted = dotted.rsplit(".", 1)[0]
    return None


def imports_of(name: str) -> set[str]:
    """The modules of ours that module ``name`` imports, wherever the import statement stands."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            submodules = [f"{module}.{alias.name}" for alias in node.names if f"{module}.{alias.name}" in MODULES]
            targets = submodules if len(submodules) == len(node.names) else [module, *submodules]
        for target in targets:
            owner = _owner(target)
            if owner is not None and owner != name:
                found.add(owner)
    return found


def import_cycles() -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), each a cycle of imports."""
    graph = {name: imports_of(name) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in sorted(MODULES):
        if name not in index:
            visit(name)
    return cycles


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_at_most_600_lines(name: str) -> None:
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{MODULES[name]} has {lines} lines: split it by job"


def test_no_class_over_400_lines() -> None:
    big = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    big.append(f"{name}.{node.name}: {size} lines")
    assert big == []


def test_no_import_cycles_function_level_imports_included() -> None:
    assert import_cycles() == []


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "__init__.py").write_text("")
    (tmp_path / "kernel" / "a.py").write_text("from kernel import b\n")
    (tmp_path / "kernel" / "b.py").write_text("def f():\n    from kernel.a import x\n    return x\n")
    (tmp_path / "kernel" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from kernel import a\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", _modules())
    assert import_cycles() == [["kernel.a", "kernel.b"]]
    assert imports_of("kernel.c") == set()


def test_machines_import_nothing_of_the_shell_or_the_journal() -> None:
    for name in MODULES:
        if name.startswith("machines"):
            assert {m for m in imports_of(name) if not m.startswith("machines")} == set(), name


def test_storage_does_not_import_the_kernel() -> None:
    for name in MODULES:
        if name.startswith("storage"):
            assert {m for m in imports_of(name) if m.startswith("kernel")} == set(), name


@pytest.mark.parametrize(
    "module", ["kernel.config", "kernel.app", "kernel.execution", "kernel.orders", "kernel.reconcile", "kernel.status"]
)
def test_the_live_path_imports_no_simulator_module(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['kernel', 'venue'] or m == 'storage.venue_store'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
