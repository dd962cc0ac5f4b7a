"""One error root: every exception class defined in ``kernel``, ``machines`` and ``storage`` derives
from ``machines.errors.TradekernelError`` (directly or through its family), so ``except
TradekernelError`` catches anything of ours and nothing of Python's or a library's."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import kernel
import machines
import storage
from machines.errors import TradekernelError

PACKAGES = (kernel, machines, storage)


def modules() -> list[ModuleType]:
    """Every module of the three packages, imported (``__main__`` modules only run, so are skipped)."""
    found: list[ModuleType] = []
    for package in PACKAGES:
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue
            found.append(importlib.import_module(info.name))
    return found


def exception_classes() -> dict[str, type[BaseException]]:
    """``module.Class`` -> class, for every exception class defined (not imported) in the packages."""
    classes: dict[str, type[BaseException]] = {}
    for module in modules():
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                classes[f"{module.__name__}.{name}"] = value
    return classes


def test_the_walk_finds_every_package_and_known_errors() -> None:
    names = {module.__name__ for module in modules()}
    assert {"machines.risk", "machines.risk_limits", "storage.venue_store", "kernel.config"} <= names
    found = exception_classes()
    for known in (
        "machines.errors.TradekernelError",
        "machines.errors.InvalidData",
        "machines.decimals.DecimalError",
        "machines.risk_limits.RiskLimitError",
        "machines.scenario.ScenarioError",
        "storage.errors.JournalError",
        "storage.venue_store.VenueStoreError",
    ):
        assert known in found


@pytest.mark.parametrize("package", [p.__name__ for p in PACKAGES])
def test_every_exception_class_derives_from_the_root(package: str) -> None:
    strays = sorted(
        name
        for name, cls in exception_classes().items()
        if name.startswith(package + ".") and not issubclass(cls, TradekernelError)
    )
    assert strays == []
