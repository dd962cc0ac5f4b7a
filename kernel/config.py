"""The kernel's configuration: one TOML file, validated strictly at start, overridable by flags.

Sections (docs/config.md describes every key)::

    [kernel]           the journal, durability, logging, control socket, status line, stopping
    [venue]            where orders go: "embedded" (the paper venue, in-process) or a ws:// URL
    [venue.embedded]   the paper venue run in-process when venue.url = "embedded"
    [feed]             the feed policy (staleness, reconnect backoff): machines.feed.DEFAULTS
    [strategy]         which strategy, its timer, and [strategy.params] checked against its Params
    [http]             the optional status endpoint
    [health]           the thresholds of the health machine

Every key has a default, so no file is needed. ``load`` reads the file (a TOML number with a
fraction or exponent is read as ``Decimal``: money never passes through a binary float), applies the
overrides (command-line flags) on top, then validates everything and returns a frozen ``Config``.
Any problem is one ``ConfigError`` naming where the value came from (the file or the flag), the
dotted key and what is wrong; nothing is half-applied and nothing is guessed.

Secrets are never in the file: ``venue.api_key_env`` names the environment variable that holds the
key, and the value is wrapped in a ``Secret`` whose repr and str show only that name.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import json
import math
import os
import re
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from kernel.strategy import BUILTIN, Strategy, StrategyError, build_params, load_strategy_class
from kernel.venue import server
from kernel.venue.cli import is_loopback
from kernel.venue.marketdata import BUNDLED_DATA
from machines.feed import _BOUNDS as FEED_BOUNDS
from machines.feed import DEFAULTS as FEED_DEFAULTS
from machines.risk import Limits, limits_from_mapping

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_ZERO, _ONE = Decimal(0), Decimal(1)
EMBEDDED = "embedded"
"""The value of ``venue.url`` that runs the paper venue in-process."""


# -- errors and secrets ---------------------------------------------------------------------------


class ConfigError(ValueError):
    """A configuration that cannot be used.

    ``key`` is the dotted key at fault (``None`` for a file that cannot be read or parsed);
    ``source`` is where the value came from: the file's path, a ``--flag``, or ``None`` for a
    default. ``str()`` is the full message, e.g.
    ``kernel.toml: kernel.durability: must be one of full, normal, got 'fast'``.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.key = key
        self.source = source


class Secret:
    """A credential read from an environment variable. Its repr and str show the variable's name
    and whether it is set, never the value: ``Secret(env='TK_KEY', set)``."""

    __slots__ = ("_env", "_value")

    def __init__(self, env: str = "", value: str | None = None) -> None:
        self._env = env
        self._value = value or None

    @classmethod
    def from_env(cls, env: str, environ: Mapping[str, str] | None = None) -> Secret:
        """The secret held by the variable ``env`` (``os.environ`` unless ``environ`` is given)."""
        source = os.environ if environ is None else environ
        return cls(env, source.get(env) if env else None)

    @property
    def env(self) -> str:
        """The environment variable's name ("" when none is configured)."""
        return self._env

    @property
    def is_set(self) -> bool:
        """True when the variable is set and not empty."""
        return self._value is not None

    def reveal(self) -> str:
        """The value. Raises ``ConfigError`` when no variable is configured or it is unset or empty."""
        if self._value is None:
            if not self._env:
                raise ConfigError("no environment variable is configured for this secret")
            raise ConfigError(f"environment variable {self._env} is not set (or empty)")
        return self._value

    def __repr__(self) -> str:
        return f"Secret(env={self._env!r}, {'set' if self.is_set else 'not set'})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._env, self._value) == (other._env, other._value)

    def __hash__(self) -> int:
        return hash((Secret, self._env, self._value))


# -- declaring keys -------------------------------------------------------------------------------


class _Invalid(Exception):
    """A value is wrong; the message says why (the caller adds the key and the source)."""


Number = int | float | Decimal


@dataclass(frozen=True, slots=True)
class _Rule:
    """How one TOML key is checked beyond its type (which comes from the field's annotation)."""

    choices: tuple[str, ...] = ()
    low: Number | None = None  # inclusive
    high: Number | None = None  # inclusive
    above: Number | None = None  # exclusive
    nonempty: bool = False  # a string, or each string of an array, must not be empty
    distinct: bool = False  # the strings of an array must differ
    check: Callable[[Any], None] | None = None  # raises _Invalid


_RULE = "tradekernel.config.rule"


def _key(default: Any, **rule: Any) -> Any:
    """A dataclass field that is a TOML key, with its default and rule."""
    return field(default=default, metadata={_RULE: _Rule(**rule)})


def _check_env_name(name: str) -> None:
    # Never echo the value: a secret pasted here by mistake must not end up in a log.
    if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise _Invalid("must be the NAME of an environment variable (letters, digits and _), not its value")


def _check_url(url: str) -> None:
    if url == EMBEDDED:
        return
    expected = f'must be "{EMBEDDED}" or a ws:// or wss:// URL of a `tradekernel venue`'
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise _Invalid(f"{expected}, got {url!r}")
    if "@" in parts.netloc:
        # Do not echo it: it holds credentials.
        raise _Invalid("must not contain credentials: name environment variables in api_key_env/api_secret_env")
    try:
        port = parts.port
    except ValueError:
        raise _Invalid(f"{expected}, got {url!r} (bad port)") from None
    if not parts.hostname or (port is None and parts.netloc.endswith(":")):
        raise _Invalid(f"{expected}, got {url!r} (no host or port)")


def _check_loopback(host: str) -> None:
    if not is_loopback(host):
        raise _Invalid(f"must be a loopback address (127.0.0.1, ::1, localhost), got {host!r}")


def parse_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 as ``"[::1]:PORT"``) as ``(host, port)``. Raises ``ValueError``."""
    expected = f'expected "HOST:PORT" (IPv6 as "[::1]:PORT"), got {text!r}'
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or any(c.isspace() for c in host):
        raise ValueError(expected)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{expected}: {host!r} is not an IPv6 address") from None
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"{expected}: put an IPv6 address in brackets")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"{expected}: the port must be 0 to 65535")
    return host, int(port_text)


def _check_listen(text: str) -> None:
    if text:
        try:
            parse_listen(text)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None


# -- the sections ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KernelSection:
    """``[kernel]``: the process itself."""

    db: str = _key("tradekernel.db", nonempty=True)
    durability: str = _key("full", choices=("full", "normal"))
    log_format: str = _key("text", choices=("text", "json"))
    log_level: str = _key("info", choices=("debug", "info", "warning", "error"))
    control_socket: str = _key("")
    status_view: str = _key("auto", choices=("auto", "live", "lines", "off"))
    status_interval_s: float = _key(1.0, above=0)
    cancel_on_stop: bool = _key(True)
    stop_timeout_s: float = _key(5.0, above=0)
    duration_s: float | None = _key(None, above=0)

    @property
    def control_socket_path(self) -> str:
        """The control socket: ``control_socket``, or ``DB.sock`` when that is empty."""
        return self.control_socket or f"{self.db}.sock"


@dataclass(frozen=True, slots=True)
class EmbeddedVenueSection:
    """``[venue.embedded]``: the paper venue the kernel runs in-process when ``venue.url = "embedded"``."""

    data: tuple[str, ...] = _key((), nonempty=True)
    speed: float = _key(1.0, low=0)
    loop: bool = _key(True)
    seed: int = _key(0, low=0, high=2**63 - 1)
    # _key() is dataclasses.field() with a rule: the default is shared, and a Decimal is immutable.
    fee_bps: Decimal = _key(_ONE, low=0)  # noqa: RUF009
    slippage_bps: Decimal = _key(_ZERO, low=0)  # noqa: RUF009
    latency_ms: float = _key(0.0, low=0)
    reject_rate: float = _key(0.0, low=0, high=1)
    host: str = _key("127.0.0.1", check=_check_loopback)
    port: int = _key(0, low=0, high=65535)
    store: str = _key("")
    journal_db: str = field(default="tradekernel.db", repr=False)
    """``kernel.db``, which ``Config`` copies here: the default store is named after it."""

    @property
    def data_paths(self) -> tuple[str, ...]:
        """The market data files replayed: ``data``, or the bundled Binance BTCUSDT data."""
        return self.data or BUNDLED_DATA

    @property
    def store_path(self) -> str:
        """The venue's own SQLite file: ``store``, or ``KERNEL_DB.venue.db``."""
        return self.store or f"{self.journal_db}.venue.db"

    def venue_config(self, instruments: tuple[str, ...] = ()) -> server.VenueConfig:
        """The ``PaperVenue`` settings of this section (``instruments`` empty: those of the data)."""
        return server.VenueConfig(
            instruments=instruments,
            data_paths=self.data_paths,
            speed=self.speed,
            seed=self.seed,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            latency_ms=self.latency_ms,
            reject_rate=self.reject_rate,
            loop=self.loop,
        )


@dataclass(frozen=True, slots=True)
class VenueSection:
    """``[venue]``: where orders go, and the credentials for a remote venue.

    ``api_key``/``api_secret`` are read from the variables named by ``api_key_env``/
    ``api_secret_env`` (``load`` reads its ``environ``; built directly, ``os.environ``)."""

    url: str = _key(EMBEDDED, check=_check_url)
    instruments: tuple[str, ...] = _key((), nonempty=True, distinct=True)
    api_key_env: str = _key("", check=_check_env_name)
    api_secret_env: str = _key("", check=_check_env_name)
    status_timeout_s: float = _key(5.0, above=0)
    embedded: EmbeddedVenueSection = field(default_factory=EmbeddedVenueSection)
    api_key: Secret = field(default=Secret())
    api_secret: Secret = field(default=Secret())

    def __post_init__(self) -> None:
        if self.api_key.env != self.api_key_env:
            object.__setattr__(self, "api_key", Secret.from_env(self.api_key_env))
        if self.api_secret.env != self.api_secret_env:
            object.__setattr__(self, "api_secret", Secret.from_env(self.api_secret_env))

    @property
    def is_embedded(self) -> bool:
        """True when the kernel runs the paper venue in-process."""
        return self.url == EMBEDDED


def _feed_key(name: str) -> Any:
    low, high = FEED_BOUNDS[name]
    return _key(FEED_DEFAULTS[name], low=low, high=high)


@dataclass(frozen=True, slots=True)
class FeedSection:
    """``[feed]``: the feed policy (see the ``feed`` machine); the same keys and bounds as
    ``machines.feed.DEFAULTS`` except ``seed``."""

    stale_after_ms: int = _feed_key("stale_after_ms")
    backoff_initial_ms: int = _feed_key("backoff_initial_ms")
    backoff_max_ms: int = _feed_key("backoff_max_ms")
    backoff_multiplier: int = _feed_key("backoff_multiplier")
    jitter_ms: int = _feed_key("jitter_ms")
    healthy_after_ms: int = _feed_key("healthy_after_ms")
    max_attempts: int = _feed_key("max_attempts")

    def policy(self) -> dict[str, int]:
        """The policy fields to pass to ``FEED.create`` (or ``FeedClient(policy=...)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class StrategySection:
    """``[strategy]``: the strategy and its ``Params``.

    Built directly, the class is loaded and ``params`` (when ``None``) built from ``params_table``:
    raises ``StrategyError`` as ``load_strategy_class``/``build_params`` do."""

    name: str = _key("market_maker", nonempty=True)
    timer_interval_ms: int | None = _key(None, above=0)
    params: Any = None
    """An instance of the strategy's ``Params``."""
    params_table: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """``[strategy.params]`` as written (the file's values, not yet checked)."""

    def __post_init__(self) -> None:
        strategy_class = self.strategy_class
        if self.params is None:
            object.__setattr__(self, "params", build_params(strategy_class, self.params_table))
        elif not isinstance(self.params, strategy_class.Params):
            raise StrategyError(
                f"strategy.params: expected {strategy_class.__name__}.Params, got {type(self.params).__name__}"
            )

    @property
    def strategy_class(self) -> type[Strategy]:
        """The strategy class ``name`` refers to."""
        return load_strategy_class(self.name)

    @property
    def effective_timer_interval_ms(self) -> int | None:
        """``timer_interval_ms``, or the class's own when unset (``None``: ``on_timer`` never runs)."""
        if self.timer_interval_ms is not None:
            return self.timer_interval_ms
        return self.strategy_class.timer_interval_ms


@dataclass(frozen=True, slots=True)
class HttpSection:
    """``[http]``: the status endpoint; off when ``listen`` is empty."""

    listen: str = _key("", check=_check_listen)
    allow_remote: bool = _key(False)

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to listen on (IPv6 without brackets), or ``None`` when off."""
        return parse_listen(self.listen) if self.listen else None


@dataclass(frozen=True, slots=True)
class HealthSection:
    """``[health]``: thresholds of the health machine."""

    loop_lag_degraded_ms: int = _key(250, low=1)
    loop_lag_unhealthy_ms: int = _key(2000, low=1)
    commit_latency_degraded_ms: int = _key(250, low=1)
    strategy_errors_unhealthy: int = _key(5, low=1)


@dataclass(frozen=True, slots=True)
class RiskSection:
    """``[risk]``: pre-trade limits (docs/risk.md). ``table`` is the TOML table as written;
    ``limits`` the checked ``machines.risk.Limits`` built from it (no table: no limits)."""

    table: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Build it with ``load``; ``Config()`` is all defaults."""

    kernel: KernelSection = field(default_factory=KernelSection)
    venue: VenueSection = field(default_factory=VenueSection)
    feed: FeedSection = field(default_factory=FeedSection)
    strategy: StrategySection = field(default_factory=StrategySection)
    http: HttpSection = field(default_factory=HttpSection)
    health: HealthSection = field(default_factory=HealthSection)
    risk: RiskSection = field(default_factory=RiskSection)

    def __post_init__(self) -> None:
        embedded = self.venue.embedded
        if embedded.journal_db != self.kernel.db:
            embedded = dataclasses.replace(embedded, journal_db=self.kernel.db)
            object.__setattr__(self, "venue", dataclasses.replace(self.venue, embedded=embedded))


SECTIONS: Mapping[str, type] = {
    "kernel": KernelSection,
    "venue": VenueSection,
    "feed": FeedSection,
    "strategy": StrategySection,
    "http": HttpSection,
    "health": HealthSection,
}
"""The top-level tables, in file order."""
_SUBTABLES: Mapping[str, tuple[str, ...]] = {"venue": ("embedded",), "strategy": ("params",)}


def _toml_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if _RULE in f.metadata]


# -- reading values -------------------------------------------------------------------------------


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
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
        return f"string {_short(repr(value))}"
    if isinstance(value, list | tuple):
        return f"array {_short(repr(list(value)))}"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return f"{type(value).__name__} {value.isoformat()}"
    return f"{type(value).__name__} {_short(repr(value))}"


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected an integer, got {_describe(value)}")
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _Invalid(f"expected a number, got {_describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise _Invalid(f"must be a finite number, got {value}")
    return number


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise _Invalid(f"expected a decimal number (a number or a numeric string), got {_describe(value)}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Invalid(f"expected a decimal number, got {_describe(value)}") from None
    if not number.is_finite():
        raise _Invalid(f"must be a finite number, got {value}")
    return number


def _as_strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise _Invalid(f"expected an array of strings, got {_describe(value)}")
    return tuple(value)


_READERS: Mapping[Any, Callable[[Any], Any]] = {
    str: _as_str,
    bool: _as_bool,
    int: _as_int,
    float: _as_float,
    Decimal: _as_decimal,
    tuple[str, ...]: _as_strings,
}


def _reader(hint: Any) -> tuple[Callable[[Any], Any], bool]:
    """The reader of a field's type, and whether ``None`` is allowed (``X | None``)."""
    if isinstance(hint, types.UnionType):
        (inner,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return _READERS[inner], True
    return _READERS[hint], False


def _bounds_text(rule: _Rule) -> str:
    if rule.above is not None:
        return f"greater than {rule.above}"
    if rule.high is None:
        return f"at least {rule.low}"
    return f"between {rule.low} and {rule.high}"


def _apply_rule(value: Any, rule: _Rule) -> None:
    if rule.choices and value not in rule.choices:
        raise _Invalid(f"must be one of {', '.join(rule.choices)}, got {value!r}")
    if (
        (rule.above is not None and not value > rule.above)
        or (rule.low is not None and value < rule.low)
        or (rule.high is not None and value > rule.high)
    ):
        raise _Invalid(f"must be {_bounds_text(rule)}, got {value}")
    if rule.nonempty and (value == "" or (isinstance(value, tuple) and "" in value)):
        raise _Invalid("must not be empty" if value == "" else f"must not contain an empty string, got {list(value)}")
    if rule.distinct and len(set(value)) != len(value):
        duplicates = sorted({item for item in value if value.count(item) > 1})
        raise _Invalid(f"must not repeat a value, got {', '.join(map(repr, duplicates))} more than once")
    if rule.check is not None:
        rule.check(value)


class _Reader:
    """Reads one document (file values with overrides applied), knowing where each value came from."""

    def __init__(self, document: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        self.document = document
        self.sources = sources

    def source(self, *keys: str) -> str | None:
        """Where the first of ``keys`` that was given came from (``None``: all are defaults)."""
        for key in keys:
            if key in self.sources:
                return self.sources[key]
        return None

    def error(self, key: str, detail: str, *, blame: tuple[str, ...] = ()) -> ConfigError:
        return ConfigError(f"{key}: {detail}", key=key, source=self.source(key, *blame))

    def table(self, parent: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
        value = parent.get(name, {})
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a table, got {_describe(value)}")
        return value

    def known(self, table: Mapping[str, Any], prefix: str, names: list[str]) -> None:
        for name in table:
            if name not in names:
                key = f"{prefix}.{name}" if prefix else name
                raise ConfigError(
                    f"unknown key {key} (known: {', '.join(names)})", key=key, source=self.source(key, prefix)
                )

    def section(self, cls: type, table: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """The values ``table`` gives for the TOML fields of ``cls``, checked; unknown keys refused."""
        fields = _toml_fields(cls)
        self.known(table, prefix, [f.name for f in fields] + list(_SUBTABLES.get(prefix, ())))
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields:
            if f.name not in table:
                continue
            key = f"{prefix}.{f.name}"
            read, nullable = _reader(hints[f.name])
            raw = table[f.name]
            try:
                value = None if raw is None and nullable else read(raw)
                if value is not None:
                    _apply_rule(value, f.metadata[_RULE])
            except _Invalid as exc:
                raise self.error(key, str(exc)) from None
            values[f.name] = value
        return values


def _read_file(path: str) -> dict[str, Any]:
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


OVERRIDE_FLAGS: Mapping[str, str] = {
    "kernel.db": "--db",
    "venue.url": "--venue",
    "strategy.name": "--strategy",
    "kernel.duration_s": "--duration",
    "kernel.log_format": "--log-format",
    "kernel.control_socket": "--control-socket",
    "http.listen": "--http",
    "http.allow_remote": "--allow-remote",
}
"""The command-line flag of each key ``add_override_arguments`` can set."""


def _apply_override(document: dict[str, Any], sources: dict[str, str], key: str, value: Any) -> None:
    source = OVERRIDE_FLAGS.get(key, f"override {key}")
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"not a dotted key: {key!r}", key=key, source=source)
    table = document
    for depth, part in enumerate(parts[:-1], start=1):
        prefix = ".".join(parts[:depth])
        if part not in table:
            table[part] = {}
            sources[prefix] = source
        inner = table[part]
        if not isinstance(inner, dict):
            raise ConfigError(f"{prefix}: expected a table, got {_describe(inner)}", key=prefix, source=source)
        table = inner
    table[parts[-1]] = value
    sources[key] = source


def load(
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """The configuration: defaults, then the TOML file at ``path`` (if any), then ``overrides``
    (dotted keys such as ``"kernel.db"``; those of ``OVERRIDE_FLAGS`` are named by their flag in
    errors), all validated. Secrets are read from ``environ``.

    Raises ``ConfigError`` for a file that cannot be read or parsed and for any invalid value.
    """
    document: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        document = _read_file(path)
        _record(document, "", path, sources)
    for key, value in (overrides or {}).items():
        _apply_override(document, sources, key, value)
    return _build(_Reader(document, sources), environ)


def _build(r: _Reader, environ: Mapping[str, str]) -> Config:
    doc = r.document
    r.known(doc, "", [*SECTIONS, "risk"])
    tables = {name: r.table(doc, name, name) for name in SECTIONS}
    kernel = KernelSection(**r.section(KernelSection, tables["kernel"], "kernel"))
    venue = _venue(r, tables["venue"], environ)
    feed = FeedSection(**r.section(FeedSection, tables["feed"], "feed"))
    if feed.backoff_max_ms < feed.backoff_initial_ms:
        raise r.error(
            "feed.backoff_max_ms",
            f"must be at least feed.backoff_initial_ms ({feed.backoff_initial_ms}), got {feed.backoff_max_ms}",
            blame=("feed.backoff_initial_ms",),
        )
    strategy = _strategy(r, tables["strategy"])
    http = HttpSection(**r.section(HttpSection, tables["http"], "http"))
    if http.address is not None and not http.allow_remote and not is_loopback(http.address[0]):
        raise r.error(
            "http.listen",
            f"{http.address[0]} is not a loopback address: pass --allow-remote "
            "(or set http.allow_remote = true) to serve status beyond this machine",
        )
    health = HealthSection(**r.section(HealthSection, tables["health"], "health"))
    if health.loop_lag_unhealthy_ms <= health.loop_lag_degraded_ms:
        raise r.error(
            "health.loop_lag_unhealthy_ms",
            f"must be greater than health.loop_lag_degraded_ms ({health.loop_lag_degraded_ms}), "
            f"got {health.loop_lag_unhealthy_ms}",
            blame=("health.loop_lag_degraded_ms",),
        )
    risk_table = r.table(doc, "risk", "risk")
    try:
        risk = RiskSection(table=dict(risk_table), limits=limits_from_mapping(risk_table))
    except ValueError as exc:
        key = str(exc).split(":", 1)[0].split(" ", 1)[0]
        raise ConfigError(str(exc), key=key, source=r.source(key, "risk")) from None
    return Config(kernel=kernel, venue=venue, feed=feed, strategy=strategy, http=http, health=health, risk=risk)


def _venue(r: _Reader, table: Mapping[str, Any], environ: Mapping[str, str]) -> VenueSection:
    values = r.section(VenueSection, table, "venue")
    embedded_table = r.table(table, "embedded", "venue.embedded")
    embedded = EmbeddedVenueSection(**r.section(EmbeddedVenueSection, embedded_table, "venue.embedded"))
    url = values.get("url", EMBEDDED)
    if url == EMBEDDED:
        # Only the venue in use needs its files; a remote venue leaves this section idle.
        for index, data_path in enumerate(embedded.data):
            if not os.path.isfile(data_path):
                raise r.error(
                    "venue.embedded.data",
                    f"no such file: {data_path!r}" + (f" (item {index + 1})" if len(embedded.data) > 1 else ""),
                )
    secrets = [Secret.from_env(values.get(f"{name}_env", ""), environ) for name in ("api_key", "api_secret")]
    for name, secret in zip(("api_key", "api_secret"), secrets, strict=True):
        if url != EMBEDDED and secret.env and not secret.is_set:
            raise r.error(
                f"venue.{name}_env",
                f"environment variable {secret.env} is not set (or empty); venue {url} needs it",
                blame=("venue.url",),
            )
    return VenueSection(**values, embedded=embedded, api_key=secrets[0], api_secret=secrets[1])


def _strategy(r: _Reader, table: Mapping[str, Any]) -> StrategySection:
    values = r.section(StrategySection, table, "strategy")
    params_table = dict(r.table(table, "params", "strategy.params"))
    name = values.get("name", "market_maker")
    try:
        strategy_class = load_strategy_class(name)
    except StrategyError as exc:
        raise r.error("strategy.name", str(exc)) from None
    except Exception as exc:  # a user's module that fails while importing: say so, with the key
        raise r.error("strategy.name", f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None
    try:
        params = build_params(strategy_class, params_table)
    except StrategyError as exc:
        key, _, detail = str(exc).partition(": ")  # build_params names the key: "strategy.params.qty: ..."
        raise r.error(key, detail, blame=("strategy.params", "strategy.name")) from None
    return StrategySection(**values, params=params, params_table=params_table)


# -- writing it out -------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


class _Unrepresentable(Exception):
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


def _toml_value(value: Any) -> str:
    """``value`` as a TOML value that ``tomllib`` (with ``parse_float=Decimal``) reads back equal."""
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
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    raise _Unrepresentable(repr(value))


def _line(name: str, value: Any, notes: list[str]) -> str:
    text = f"{_toml_key(name)} = {_toml_value(value)}"
    return f"{text}  # {'; '.join(notes)}" if notes else text


def _differs(value: Any, default: Any) -> list[str]:
    """The note for a value that is not its default (none when it is, or there is no default)."""
    if default is dataclasses.MISSING or value == default:
        return []
    if default is None:
        return ["default: not set"]
    try:
        return [f"default: {_toml_value(default)}"]
    except _Unrepresentable:
        return [f"default: {_short(repr(default))}"]


def _section_lines(
    header: str,
    section: Any,
    notes: Mapping[str, str] | None = None,
    after: Mapping[str, list[str]] | None = None,
    unset: Mapping[str, str] | None = None,
) -> list[str]:
    """``[header]`` and a line per key: ``notes`` (and "default: X" when not the default) as
    comments on the key's line, ``after`` as lines under it; a ``None`` value as a comment saying
    what that means (``unset``)."""
    notes, after, unset = notes or {}, after or {}, unset or {}
    lines = ["", f"[{header}]"]
    for f in _toml_fields(type(section)):
        value = getattr(section, f.name)
        if value is None:
            lines.append(f"# {f.name}: not set ({unset[f.name]})")
        else:
            note = [notes[f.name]] if notes.get(f.name) else []
            lines.append(_line(f.name, value, note + _differs(value, f.default)))
        lines += after.get(f.name, [])
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
            text = _line(f.name, value, _differs(value, default) if given else [])
        except _Unrepresentable:
            lines.append(f"# {f.name}: {_short(repr(value))} (not a TOML value)")
            continue
        lines.append(text if given else f"# {text}  # the strategy's default")
    return lines


def _class_spec(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


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
        {
            "control_socket": "" if kernel.control_socket else f"-> {_toml_string(kernel.control_socket_path)}",
        },
        unset={"duration_s": "run until stopped"},
    )
    lines += _section_lines(
        "venue",
        venue,
        {
            "instruments": "" if venue.instruments else "the venue's own",
            "api_key_env": _secret_note(venue.api_key),
            "api_secret_env": _secret_note(venue.api_secret),
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
    lines += _risk_lines(config.risk.table)
    return "\n".join(lines) + "\n"


def _risk_lines(table: Mapping[str, Any]) -> list[str]:
    """``[risk]`` as given (docs/risk.md lists every limit; unset ones are off)."""
    lines = ["", "[risk]" + ("" if table else "  # no limits set (docs/risk.md)")]
    instruments = table.get("instruments") or {}
    lines += [f"{key} = {_risk_value(value)}" for key, value in table.items() if key != "instruments"]
    for name, overrides in instruments.items():
        lines += ["", f"[risk.instruments.{_toml_string(name)}]"]
        lines += [f"{key} = {_risk_value(value)}" for key, value in overrides.items()]
    return lines


def _risk_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value) if isinstance(value, int) else _toml_string(str(value))


def _secret_note(secret: Secret) -> str:
    if not secret.env:
        return ""
    return "set" if secret.is_set else "not set"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def _section_json(section: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(section, f.name)) for f in _toml_fields(type(section))}


def to_json(config: Config) -> dict[str, Any]:
    """The configuration as JSON-ready data (decimals as strings), with derived values
    (``control_socket_path``, ``data_paths``, ``store_path``, ``strategy_class``,
    ``effective_timer_interval_ms``, ``host``/``port``). Secrets appear as ``{"env", "set"}``."""
    venue, embedded, strategy, http = config.venue, config.venue.embedded, config.strategy, config.http
    address = http.address
    return {
        "kernel": {**_section_json(config.kernel), "control_socket_path": config.kernel.control_socket_path},
        "venue": {
            **_section_json(venue),
            "api_key": {"env": venue.api_key.env, "set": venue.api_key.is_set},
            "api_secret": {"env": venue.api_secret.env, "set": venue.api_secret.is_set},
            "embedded": {
                **_section_json(embedded),
                "data_paths": list(embedded.data_paths),
                "store_path": embedded.store_path,
            },
        },
        "feed": _section_json(config.feed),
        "risk": _jsonable(config.risk.table),
        "strategy": {
            **_section_json(strategy),
            "strategy_class": _class_spec(strategy.strategy_class),
            "effective_timer_interval_ms": strategy.effective_timer_interval_ms,
            "params": _jsonable(strategy.params),
        },
        "http": {
            **_section_json(http),
            "host": None if address is None else address[0],
            "port": None if address is None else address[1],
        },
        "health": _section_json(config.health),
    }


# -- the command line -----------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


_DESTS: Mapping[str, str] = {
    "db": "kernel.db",
    "venue": "venue.url",
    "strategy": "strategy.name",
    "duration": "kernel.duration_s",
    "log_format": "kernel.log_format",
    "control_socket": "kernel.control_socket",
    "http": "http.listen",
    "allow_remote": "http.allow_remote",
}


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and the flags that override the file (shared by ``run`` and ``config show``).

    Each defaults to ``None`` (not given); ``overrides_from_args`` maps those given to dotted keys."""
    parser.add_argument(
        "--config", metavar="PATH", help="TOML configuration file (default: none: every key has a default)"
    )
    parser.add_argument("--db", metavar="PATH", help="journal file (kernel.db; default: ./tradekernel.db)")
    parser.add_argument(
        "--venue",
        metavar="embedded|ws://HOST:PORT",
        help="the venue: the in-process paper venue or a `tradekernel venue` URL (venue.url)",
    )
    parser.add_argument(
        "--strategy",
        metavar="NAME|module:Class",
        help=f"the strategy: one of {', '.join(sorted(BUILTIN))} or module:Class (strategy.name)",
    )
    parser.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after this long (kernel.duration_s)")
    parser.add_argument("--log-format", metavar="text|json", help="log line format (kernel.log_format)")
    parser.add_argument(
        "--control-socket", metavar="PATH", help="control socket (kernel.control_socket; default: DB.sock)"
    )
    parser.add_argument("--http", metavar="HOST:PORT", help="serve status over HTTP here (http.listen)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        default=None,
        help="allow --http on a non-loopback address (http.allow_remote)",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted-key overrides of the flags actually given (``load``'s ``overrides``)."""
    return {key: getattr(args, dest) for dest, key in _DESTS.items() if getattr(args, dest, None) is not None}


def add_parser(commands: Any) -> None:
    """Register ``config`` (and its ``show`` sub-command) on the top-level subparsers."""
    config = commands.add_parser(
        "config",
        help="inspect the kernel's configuration",
        description="Inspect the kernel's configuration (docs/config.md). "
        "Exit status: 0 ok, 2 an unreadable or invalid configuration.",
    )
    sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = sub.add_parser(
        "show",
        help="print the effective configuration: defaults, then --config FILE, then flags",
        description="Validate and print the effective configuration as TOML (which --config reads "
        "back) or JSON. Secrets show only the environment variable's name and whether it is set.",
    )
    add_override_arguments(show)
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(run=main_show)


def main_show(args: argparse.Namespace) -> int:
    """Run ``tradekernel config show``; return the exit status (2 and a message for a bad config)."""
    overrides = overrides_from_args(args)
    try:
        config = load(getattr(args, "config", None), overrides)
    except ConfigError as exc:
        print(f"tradekernel: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(to_json(config), indent=2) + "\n")
    else:
        given = [args.config] if getattr(args, "config", None) else []
        given += [OVERRIDE_FLAGS[key] for key in overrides]
        sys.stdout.write(f"# from: defaults{''.join(' < ' + item for item in given)}\n")
        sys.stdout.write(to_toml(config))
    return EXIT_OK


__all__ = [
    "EMBEDDED",
    "OVERRIDE_FLAGS",
    "SECTIONS",
    "Config",
    "ConfigError",
    "EmbeddedVenueSection",
    "FeedSection",
    "HealthSection",
    "HttpSection",
    "KernelSection",
    "Secret",
    "StrategySection",
    "VenueSection",
    "add_override_arguments",
    "add_parser",
    "load",
    "main_show",
    "overrides_from_args",
    "parse_listen",
    "to_json",
    "to_toml",
]
