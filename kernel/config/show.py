"""Writing the configuration out: TOML that ``load`` reads back equal, and JSON for scripts.

One TOML writer (``toml_value``) serves every section, ``[strategy.params]`` and ``[risk]``.
Secrets appear only as their variable's name and whether it is set.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic_core import PydanticUndefined

from kernel.config.errors import ConfigError, short
from kernel.config.schema import Config, StrategySection
from kernel.config.secret import Secret
from kernel.config.sections import Section

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_NO_DEFAULT = (dataclasses.MISSING, PydanticUndefined)


class Unrepresentable(ConfigError):
    """A value TOML cannot hold (``None``, an arbitrary object)."""


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _toml_string(name)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value that ``tomllib`` (with ``parse_float=Decimal``) reads back equal.
    Raises ``Unrepresentable`` for ``None`` and objects TOML has no word for."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if value.is_nan():
            return "nan"
        if value.is_infinite():
            return "-inf" if value < 0 else "inf"
        return str(value)
    if isinstance(value, float):
        return repr(value)  # "1.0", "1e-07", "inf", "nan": all TOML, and exact when read back
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    raise Unrepresentable(repr(value))


def _line(name: str, value: Any, notes: list[str]) -> str:
    text = f"{_toml_key(name)} = {toml_value(value)}"
    return f"{text}  # {'; '.join(notes)}" if notes else text


def differs(value: Any, default: Any) -> list[str]:
    """The note for a value that is not its default (none when it is, or there is no default)."""
    if any(default is missing for missing in _NO_DEFAULT) or value == default:
        return []
    if default is None:
        return ["default: not set"]
    try:
        return [f"default: {toml_value(default)}"]
    except Unrepresentable:
        return [f"default: {short(repr(default))}"]


def _section_lines(
    header: str,
    section: Section,
    notes: Mapping[str, str] | None = None,
    after: Mapping[str, list[str]] | None = None,
    unset: Mapping[str, str] | None = None,
) -> list[str]:
    """``[header]`` and a line per key: ``notes`` (and "default: X" when not the default) as
    comments on the key's line, ``after`` as lines under it; a ``None`` value as a comment saying
    what that means (``unset``)."""
    notes, after, unset = notes or {}, after or {}, unset or {}
    lines = ["", f"[{header}]"]
    for name in section.file_keys():
        value = getattr(section, name)
        if value is None:
            lines.append(f"# {name}: not set ({unset[name]})")
        else:
            note = [notes[name]] if notes.get(name) else []
            lines.append(_line(name, value, note + differs(value, type(section).model_fields[name].default)))
        lines += after.get(name, [])
    return lines


def _params_lines(strategy: StrategySection) -> list[str]:
    """``[strategy.params]``: the values given as keys, the strategy's own defaults commented out
    (so they stay the strategy's, and read back as they are even where TOML cannot say them)."""
    lines = ["", "[strategy.params]"]
    for f in dataclasses.fields(strategy.params):
        value = getattr(strategy.params, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        given = f.name in strategy.params_table
        try:
            text = _line(f.name, value, differs(value, default) if given else [])
        except Unrepresentable:
            lines.append(f"# {f.name}: {short(repr(value))} (not a TOML value)")
            continue
        lines.append(text if given else f"# {text}  # the strategy's default")
    return lines


def _risk_lines(table: Mapping[str, Any]) -> list[str]:
    """``[risk]`` as given (docs/risk.md lists every limit; unset ones are off)."""
    lines = ["", "[risk]" + ("" if table else "  # no limits set (docs/risk.md)")]
    instruments = table.get("instruments") or {}
    lines += [_line(key, value, []) for key, value in table.items() if key != "instruments"]
    for name, overrides in instruments.items():
        lines += ["", f"[risk.instruments.{_toml_string(name)}]"]
        lines += [_line(key, value, []) for key, value in overrides.items()]
    return lines


def _class_spec(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _secret_note(secret: Secret) -> str:
    if not secret.env:
        return ""
    return "set" if secret.is_set else "not set"


def to_toml(config: Config) -> str:
    """The configuration as TOML that ``load`` reads back to an equal ``Config``: every key,
    defaults included, with "default: X" where a value differs from its default, and derived
    values (control socket, venue store, data files, strategy class) as comments. Secrets appear
    only as their variable's name and whether it is set."""
    kernel, venue, embedded, strategy = config.kernel, config.venue, config.venue.embedded, config.strategy
    timer = strategy.strategy_class.timer_interval_ms
    lines = ["# tradekernel configuration: the effective values (read it back with --config FILE)"]
    lines += _section_lines(
        "kernel",
        kernel,
        {"control_socket": "" if kernel.control_socket else f"-> {_toml_string(kernel.control_socket_path)}"},
        unset={"duration_s": "run until stopped"},
    )
    lines += _section_lines(
        "venue",
        venue,
        {
            "instruments": "" if venue.instruments else "the venue's own",
            "api_key_env": _secret_note(venue.api_key),
            "api_secret_env": _secret_note(venue.api_secret),
            "private_key_password_env": _secret_note(venue.private_key_password),
            "ws_api_url": "" if venue.ws_api_url or venue.kind != "binance" else f"-> {venue.binance_ws_api_url}",
        },
    )
    lines += _section_lines(
        "venue.embedded",
        embedded,
        {
            "data": "" if embedded.data else "the bundled data:",
            "port": "" if embedded.port else "any free port",
            "store": "" if embedded.store else f"-> {_toml_string(embedded.store_path)}",
        },
        {"data": [] if embedded.data else [f"#   {_toml_string(path)}" for path in embedded.data_paths]},
    )
    market = config.market
    lines += _section_lines(
        "market",
        market,
        {"source": "" if market.is_live else "the files of [venue.embedded]"},
        unset={"ws_url": "the venue's public endpoint", "rest_url": "the venue's public endpoint"},
    )
    for symbol, rules in market.rules.items():
        lines += _section_lines(f"market.rules.{_toml_key(symbol)}", rules, unset={"min_notional": "none"})
    lines += _section_lines("feed", config.feed)
    lines += _section_lines(
        "strategy",
        strategy,
        {"name": f"-> {_class_spec(strategy.strategy_class)}"},
        unset={
            "timer_interval_ms": f"the strategy's own: {timer}"
            if timer is not None
            else "the strategy's own: none, on_timer is never called"
        },
    )
    lines += _params_lines(strategy)
    lines += _section_lines("http", config.http, {"listen": "" if config.http.listen else "off"})
    lines += _section_lines("health", config.health)
    lines += _section_lines("ship", config.ship, {"url": "" if config.ship.url else "off"})
    lines += _risk_lines(config.risk.table)
    return "\n".join(lines) + "\n"


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data: decimals as strings, non-finite floats as text, dataclasses as
    objects, anything else unknown as its ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def _secret_json(secret: Secret) -> dict[str, Any]:
    return {"env": secret.env, "set": secret.is_set}


def to_json(config: Config) -> dict[str, Any]:
    """The configuration as JSON-ready data (decimals as strings), with derived values
    (``control_socket_path``, ``data_paths``, ``store_path``, ``strategy_class``,
    ``effective_timer_interval_ms``, ``host``/``port``). Secrets appear as ``{"env", "set"}``."""
    venue, embedded, strategy, http = config.venue, config.venue.embedded, config.strategy, config.http
    address = http.address
    sections = config.model_dump(mode="json", exclude={"risk": True, "strategy": {"params"}})
    return {
        "kernel": {**sections["kernel"], "control_socket_path": config.kernel.control_socket_path},
        "venue": {
            **sections["venue"],
            "api_key": _secret_json(venue.api_key),
            "api_secret": _secret_json(venue.api_secret),
            "embedded": {
                **sections["venue"]["embedded"],
                "data_paths": list(embedded.data_paths),
                "store_path": embedded.store_path,
            },
        },
        "market": sections["market"],
        "feed": sections["feed"],
        "risk": jsonable(config.risk.table),
        "strategy": {
            **sections["strategy"],
            "strategy_class": _class_spec(strategy.strategy_class),
            "effective_timer_interval_ms": strategy.effective_timer_interval_ms,
            "params": jsonable(strategy.params),
        },
        "http": {
            **sections["http"],
            "host": None if address is None else address[0],
            "port": None if address is None else address[1],
        },
        "health": sections["health"],
        "ship": sections["ship"],
    }
