"""Loading the configuration: defaults, then the TOML file, then environment variables, then flags.

``load`` reads the file (a TOML number with a fraction or exponent is read as ``Decimal``: money
never passes through a binary float), remembers where each key came from (the file's path,
``env NAME``, the ``--flag`` or ``override KEY``), applies the environment and the overrides on top,
and validates the whole with the models of ``schema``. Every problem is reported at once, in one
``ConfigError``, each with its dotted key and its source; nothing is half-applied or guessed.

Environment overrides are an explicit mapping, not pydantic-settings' (whose source ignores a
misspelt variable and hands every value over as a string): ``TRADEKERNEL_<SECTION>__<KEY>``, each
``__`` a dot of the dotted key, lower-cased (an instrument under ``risk.instruments`` or
``market.rules`` is taken as written), e.g. ``TRADEKERNEL_VENUE__EMBEDDED__PORT=8765``. The value
is read as a TOML value (``7``, ``0.5``, ``true``, ``["A", "B"]``, ``"text"``); text that is not
one is taken as a string. A misspelt variable is an unknown key like any other. ``TRADEKERNEL_``
names without ``__`` are not config (e.g. ``TRADEKERNEL_CRASH_AT``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from kernel.config.errors import ConfigError, Problem, describe, problems_of
from kernel.config.flags import OVERRIDE_FLAGS
from kernel.config.schema import SECTIONS, Config

ENV_PREFIX = "TRADEKERNEL_"
ENV_SEPARATOR = "__"
_NAMED_TABLES = (["risk", "instruments"], ["market", "rules"])
"""Tables of tables named by instrument: the name is taken as written, not lower-cased."""


def read_file(path: str) -> dict[str, Any]:
    """The TOML file at ``path`` (floats as ``Decimal``). Raises ``ConfigError`` naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f, parse_float=Decimal)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not valid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})", source=path) from None


def _record(table: Mapping[str, Any], prefix: str, source: str, sources: dict[str, str]) -> None:
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        sources[key] = source
        if isinstance(value, Mapping):
            _record(value, key, source, sources)


def env_overrides(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """The keys the ``TRADEKERNEL_<SECTION>__<KEY>`` variables of ``environ`` set: key -> (value, variable)."""
    found: dict[str, tuple[Any, str]] = {}
    for name in sorted(environ):
        rest = name.removeprefix(ENV_PREFIX)
        if rest == name or ENV_SEPARATOR not in rest:
            continue
        parts = rest.split(ENV_SEPARATOR)
        key = ".".join(
            part if index == 2 and [p.lower() for p in parts[:2]] in _NAMED_TABLES else part.lower()
            for index, part in enumerate(parts)
        )
        found[key] = (_env_value(environ[name]), name)
    return found


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}", parse_float=Decimal)["value"]
    except tomllib.TOMLDecodeError:
        return text


def _apply(document: dict[str, Any], sources: dict[str, str], key: str, value: Any, source: str) -> Problem | None:
    """Set the dotted ``key`` of ``document`` to ``value``; the problem when it cannot be."""
    parts = key.split(".")
    if not all(parts):
        return Problem(f"not a dotted key: {key!r}", key, source)
    table = document
    for depth, part in enumerate(parts[:-1], start=1):
        prefix = ".".join(parts[:depth])
        if part not in table:
            table[part] = {}
            sources[prefix] = source
        inner = table[part]
        if not isinstance(inner, dict):
            return Problem(f"{prefix}: expected a table, got {describe(inner)}", prefix, source)
        table = inner
    table[parts[-1]] = value
    sources[key] = source
    return None


def load(
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """The configuration: defaults, then the TOML file at ``path`` (if any), then the
    ``TRADEKERNEL_<SECTION>__<KEY>`` variables of ``environ``, then ``overrides`` (dotted keys such
    as ``"kernel.db"``; those of ``OVERRIDE_FLAGS`` are named by their flag in errors), all
    validated. Secrets are read from ``environ``.

    Raises ``ConfigError`` for a file that cannot be read or parsed, and with every problem found
    for invalid values (each with its key and source).
    """
    document: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        document = read_file(path)
        _record(document, "", path, sources)
    given = [(key, value, f"env {name}") for key, (value, name) in env_overrides(environ).items()]
    given += [(key, value, OVERRIDE_FLAGS.get(key, f"override {key}")) for key, value in (overrides or {}).items()]
    problems = [problem for key, value, source in given if (problem := _apply(document, sources, key, value, source))]
    for name in SECTIONS:  # validated with the context (the environment), not built as defaults
        document.setdefault(name, {})
    try:
        config = Config.model_validate(document, context={"environ": environ})
    except ValidationError as exc:
        seen = {problem.message for problem in problems}
        problems += [problem for problem in problems_of(exc, Config, sources) if problem.message not in seen]
    if problems:
        raise ConfigError.of(problems)
    return config
