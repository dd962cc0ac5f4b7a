"""The kernel's configuration: one TOML file, validated strictly at start, overridable by the
environment and by flags (docs/config.md describes every key).

Sections::

    [kernel]           the journal, durability, logging, control socket, status line, stopping
    [venue]            where orders go: "embedded" (the paper venue, in-process) or a ws:// URL
    [venue.embedded]   the paper venue run in-process when venue.url = "embedded"
    [feed]             the feed policy (staleness, reconnect backoff): machines.feed.DEFAULTS
    [strategy]         which strategy, its timer, and [strategy.params] checked against its Params
    [http]             the optional status endpoint
    [health]           the thresholds of the health machine
    [risk]             pre-trade limits (docs/risk.md)

Every key has a default, so no file is needed. The package: ``values`` (reading one key),
``sections`` and ``schema`` (the sections and ``Config`` as pydantic models, ``json_schema``),
``load`` (file, environment, overrides, sources), ``show`` (TOML and JSON out), ``flags`` and
``cli`` (the override flags, ``tradekernel config show|schema``), ``errors`` and ``secret``.
Importing it imports no part of the paper venue simulator.

Secrets are never in the file: ``venue.api_key_env`` names the environment variable that holds the
key, and the value is wrapped in a ``Secret`` whose repr and str show only that name.
"""

from kernel.config.cli import add_override_arguments, add_parser, main_schema, main_show, overrides_from_args
from kernel.config.errors import ConfigError, Problem
from kernel.config.flags import OVERRIDE_FLAGS
from kernel.config.load import load
from kernel.config.schema import SECTIONS, Config, RiskSection, StrategySection, json_schema
from kernel.config.secret import Secret
from kernel.config.sections import (
    EmbeddedVenueSection,
    FeedSection,
    HealthSection,
    HttpSection,
    KernelSection,
    VenueSection,
)
from kernel.config.show import to_json, to_toml
from kernel.config.values import EMBEDDED, parse_listen

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
    "Problem",
    "RiskSection",
    "Secret",
    "StrategySection",
    "VenueSection",
    "add_override_arguments",
    "add_parser",
    "json_schema",
    "load",
    "main_schema",
    "main_show",
    "overrides_from_args",
    "parse_listen",
    "to_json",
    "to_toml",
]
