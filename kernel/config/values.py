"""The value of one TOML key: ``Key`` reads it strictly and checks its rule, with the messages of docs/config.md.

A section field is declared ``name: Annotated[type, Key(rule...)] = default``. The type says what is
read (``str``, ``bool``, ``int``, ``float``, ``Decimal``, ``tuple[str, ...]``, a ``Literal`` of
choices, any of them ``| None``); ``Key`` makes pydantic run the strict reader of that type (a
boolean is not an integer, a string is not a number, a binary float is never money) and the rule,
and puts the rule into the JSON Schema. ``Problems`` carries the problems a section's own
cross-field check finds, each under its key, into pydantic's one report.
"""

from __future__ import annotations

import ipaddress
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from kernel.config.errors import ConfigError, describe
from kernel.net import is_loopback
from machines.decimals import DecimalError, Sign, parse_decimal

EMBEDDED = "embedded"
"""The value of ``venue.url`` that runs the paper venue in-process."""
PROBLEM = "config"
"""The pydantic error type of every problem found here."""
Number = int | float | Decimal
_NON_FINITE = {"nan", "snan", "inf", "infinity"}


def invalid(message: str, **context: Any) -> PydanticCustomError:
    """The problem ``message`` (which the caller raises), for pydantic to file under the key."""
    return PydanticCustomError(PROBLEM, message, context or None)


# -- reading a value of each type ---------------------------------------------------------------


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid(f"expected a string, got {describe(value)}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"expected true or false, got {describe(value)}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"expected an integer, got {describe(value)}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise invalid(f"expected a number, got {describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise invalid(f"must be a finite number, got {value}")
    return number


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise invalid(f"expected a decimal number (a number or a numeric string), got {describe(value)}")
    try:
        return parse_decimal(value, "value", sign=Sign.any)
    except DecimalError:
        if not isinstance(value, str) or value.strip().lstrip("+-").lower() in _NON_FINITE:
            raise invalid(f"must be a finite number, got {value}") from None
        raise invalid(f"expected a decimal number, got {describe(value)}") from None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise invalid(f"expected an array of strings, got {describe(value)}")
    return tuple(value)


_READERS: Mapping[Any, Callable[[Any], Any]] = {
    str: _text,
    bool: _flag,
    int: _integer,
    float: _number,
    Decimal: _decimal,
    tuple[str, ...]: _strings,
}


def _reader(hint: Any) -> tuple[Callable[[Any], Any], tuple[str, ...], bool]:
    """The reader of a field's type, its choices (a ``Literal``), and whether ``None`` is allowed."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        read, choices, _ = _reader(inner)
        return read, choices, True
    if typing.get_origin(hint) is Literal:
        return _text, tuple(typing.get_args(hint)), False
    return _READERS[hint], (), False


# -- the rule of a key --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """How a TOML key is checked beyond its type: bounds, not empty, distinct, or a ``check``
    (raising ``invalid(...)``). Used as ``Annotated[type, Key(...)]``."""

    low: Number | None = None  # inclusive
    high: Number | None = None  # inclusive
    above: Number | None = None  # exclusive
    nonempty: bool = False  # a string, or each string of an array, must not be empty
    distinct: bool = False  # the strings of an array must differ
    check: Callable[[Any], None] | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        read, choices, optional = _reader(source)

        def validate(value: Any) -> Any:
            if value is None and optional:
                return None
            value = read(value)
            if choices and value not in choices:
                raise invalid(f"must be one of {', '.join(choices)}, got {value!r}")
            self.apply(value)
            return value

        return core_schema.no_info_before_validator_function(validate, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json = dict(handler(schema))
        bounds = {"minimum": self.low, "maximum": self.high, "exclusiveMinimum": self.above}
        json.update({name: v if isinstance(v, int) else float(v) for name, v in bounds.items() if v is not None})
        if self.nonempty and json.get("type") == "array":
            json["items"] = {"type": "string", "minLength": 1}
        elif self.nonempty:
            json["minLength"] = 1
        if self.distinct:
            json["uniqueItems"] = True
        return json

    def apply(self, value: Any) -> None:
        """Check ``value`` (already of the right type) against the rule."""
        if (
            (self.above is not None and not value > self.above)
            or (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
        ):
            raise invalid(f"must be {self._bounds()}, got {value}")
        if self.nonempty and (value == "" or (isinstance(value, tuple) and "" in value)):
            raise invalid(
                "must not be empty" if value == "" else f"must not contain an empty string, got {list(value)}"
            )
        if self.distinct and len(set(value)) != len(value):
            repeated = sorted({item for item in value if value.count(item) > 1})
            raise invalid(f"must not repeat a value, got {', '.join(map(repr, repeated))} more than once")
        if self.check is not None:
            self.check(value)

    def _bounds(self) -> str:
        if self.above is not None:
            return f"greater than {self.above}"
        if self.high is None:
            return f"at least {self.low}"
        return f"between {self.low} and {self.high}"


class Problems:
    """The problems a section's own check finds, raised together; each under its key, relative to
    the section (``("embedded", "data")``). ``blame`` names other keys (relative to the section,
    ``""`` the section itself) whose source is reported when the key itself was not given."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.errors: list[InitErrorDetails] = []

    def add(self, loc: tuple[str, ...], message: str, value: Any, *, blame: tuple[str, ...] = ()) -> Problems:
        """File ``message`` under the key ``loc``; return ``self``."""
        context = {"blame": blame, "depth": len(loc)} if blame else {}
        self.errors.append(InitErrorDetails(type=invalid(message, **context), loc=loc, input=value))
        return self

    def error(self) -> ValidationError:
        """All of them as one ``ValidationError``, for the caller to raise."""
        return ValidationError.from_exception_data(self.title, self.errors)

    def raise_any(self) -> None:
        """Raise them all (nothing when none was found)."""
        if self.errors:
            raise self.error()


# -- checks of single values --------------------------------------------------------------------


def check_env_name(name: str) -> None:
    """A variable's name, or empty. Never echoes the value: a secret pasted by mistake stays out of logs."""
    if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise invalid("must be the NAME of an environment variable (letters, digits and _), not its value")


def check_url(url: str) -> None:
    """``embedded`` or a ws:// or wss:// URL with a host, no credentials."""
    if url == EMBEDDED:
        return
    expected = f'must be "{EMBEDDED}" or a ws:// or wss:// URL of a `tradekernel venue`'
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise invalid(f"{expected}, got {url!r}")
    if "@" in parts.netloc:
        # Do not echo it: it holds credentials.
        raise invalid("must not contain credentials: name environment variables in api_key_env/api_secret_env")
    try:
        port = parts.port
    except ValueError:
        raise invalid(f"{expected}, got {url!r} (bad port)") from None
    if not parts.hostname or (port is None and parts.netloc.endswith(":")):
        raise invalid(f"{expected}, got {url!r} (no host or port)")


def check_loopback(host: str) -> None:
    """A loopback address (``kernel.net.is_loopback``)."""
    if not is_loopback(host):
        raise invalid(f"must be a loopback address (127.0.0.1, ::1, localhost), got {host!r}")


def parse_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 as ``"[::1]:PORT"``) as ``(host, port)``. Raises ``ConfigError`` (a ``ValueError``)."""
    expected = f'expected "HOST:PORT" (IPv6 as "[::1]:PORT"), got {text!r}'
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or any(c.isspace() for c in host):
        raise ConfigError(expected)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{expected}: {host!r} is not an IPv6 address") from None
    elif ":" in host or "[" in host or "]" in host:
        raise ConfigError(f"{expected}: put an IPv6 address in brackets")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ConfigError(f"{expected}: the port must be 0 to 65535")
    return host, int(port_text)


def check_listen(text: str) -> None:
    """Empty (off) or what ``parse_listen`` reads."""
    if text:
        try:
            parse_listen(text)
        except ConfigError as exc:
            raise invalid(str(exc)) from None
