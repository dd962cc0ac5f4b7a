"""Config problems: each names its dotted key and where the value came from; one ``ConfigError`` holds them all."""

from __future__ import annotations

import datetime
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from machines.errors import TradekernelError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration.

    ``key`` is the dotted key at fault (``None`` for a file that cannot be read or parsed);
    ``source`` where the value came from: a file's path, a ``--flag``, ``env NAME``, ``override KEY``,
    or ``None`` for a default; ``message`` says what is wrong (it names the key)."""

    message: str
    key: str | None = None
    source: str | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class ConfigError(TradekernelError, ValueError):
    """A configuration that cannot be used: every problem found, in ``problems``.

    ``key`` and ``source`` are those of the first problem (as they were when only one was reported).
    ``str()`` is the problem itself when there is one, e.g.
    ``kernel.toml: kernel.durability: must be one of full, normal, got 'fast'``, else a count and a
    line per problem.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = (Problem(message, key, source),)
        super().__init__(str(self.problems[0]))
        self.key = key
        self.source = source

    @classmethod
    def of(cls, problems: Iterable[Problem]) -> ConfigError:
        """One error holding ``problems`` (at least one)."""
        found = tuple(problems)
        first = found[0]
        error = cls(first.message, key=first.key, source=first.source)
        error.problems = found
        if len(found) > 1:
            lines = "\n".join(f"  {problem}" for problem in found)
            error.args = (f"{len(found)} problems in the configuration:\n{lines}",)
        return error

    def __str__(self) -> str:
        return str(self.args[0])


def short(text: str, limit: int = 60) -> str:
    """``text``, cut to ``limit`` characters with ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """What a value is, in TOML's words: ``string 'fast'``, ``integer 5``, ``float 1.5``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, Decimal | float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {short(repr(value))}"
    if isinstance(value, list | tuple):
        return f"array {short(repr(list(value)))}"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return f"{type(value).__name__} {value.isoformat()}"
    return f"{type(value).__name__} {short(repr(value))}"


def known_keys(root: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The keys of the table at ``loc`` under the model ``root`` (the fields of its section)."""
    model: Any = root
    for part in loc:
        if typing.get_origin(model) is dict:  # a table of tables by name ([market.rules.SYMBOL])
            model = typing.get_args(model)[1]
            continue
        model = model.model_fields[part].annotation
    return list(model.model_fields)


def problems_of(
    error: ValidationError,
    root: type[BaseModel],
    sources: Mapping[str, str],
    prefix: tuple[str, ...] = (),
) -> list[Problem]:
    """``error``'s problems as ``Problem``s: dotted keys (``prefix`` first) and their sources.

    A key not given itself is blamed on the first given of the keys its check names (``blame``),
    an unknown key on its table."""
    found = []
    for item in error.errors(include_url=False):
        loc = prefix + tuple(str(part) for part in item["loc"])
        key = ".".join(loc)
        context = item.get("ctx") or {}
        blame: tuple[str, ...] = ()
        if item["type"] == "extra_forbidden":
            message = f"unknown key {key} (known: {', '.join(known_keys(root, loc[len(prefix) : -1]))})"
            blame = (".".join(loc[:-1]),)
        elif item["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = f"{key}: expected a table, got {describe(item['input'])}"
        else:
            message = f"{key}: {item['msg']}"
            base = loc[: len(loc) - context.get("depth", 0)]
            blame = tuple(".".join((*base, name) if name else base) for name in context.get("blame", ()))
        source = next((sources[name] for name in (key, *blame) if name in sources), None)
        found.append(Problem(message, key, source))
    return found
