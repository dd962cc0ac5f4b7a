"""The command line of the configuration: the override flags (from the one table in ``flags``) and
``tradekernel config show|schema``. Exit status: ``kernel.exits``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kernel.config.errors import ConfigError
from kernel.config.flags import FLAGS, OVERRIDE_FLAGS
from kernel.config.load import env_overrides, load
from kernel.config.schema import json_schema
from kernel.config.show import to_json, to_toml
from kernel.exits import EXIT_OK, EXIT_USAGE
from kernel.strategy import BUILTIN


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and the flags that override the file (shared by ``run``, ``resume`` and
    ``config show``). Each defaults to ``None`` (not given); ``overrides_from_args`` maps those
    given to dotted keys."""
    parser.add_argument(
        "--config", metavar="PATH", help="TOML configuration file (default: none: every key has a default)"
    )
    for flag in FLAGS:
        help_text = flag.help.format(builtin=", ".join(sorted(BUILTIN)))
        if flag.kind == "switch":
            parser.add_argument(flag.flag, action="store_true", default=None, help=help_text)
        else:
            kind = _seconds if flag.kind == "seconds" else str
            parser.add_argument(flag.flag, type=kind, metavar=flag.metavar, help=help_text)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted-key overrides of the flags actually given (``load``'s ``overrides``)."""
    overrides: dict[str, Any] = {}
    for flag in FLAGS:
        value = getattr(args, flag.dest, None)
        if value is not None:
            overrides.update(flag.overrides(value))
    return overrides


def add_parser(commands: Any) -> None:
    """Register ``config`` (and its ``show`` and ``schema`` sub-commands) on the top-level subparsers."""
    config = commands.add_parser(
        "config",
        help="inspect the kernel's configuration",
        description="Inspect the kernel's configuration (docs/config.md). "
        "Exit status: 0 ok, 2 an unreadable or invalid configuration.",
    )
    sub = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    show = sub.add_parser(
        "show",
        help="print the effective configuration: defaults, then --config FILE, then environment, then flags",
        description="Validate and print the effective configuration as TOML (which --config reads "
        "back) or JSON. Every problem is reported, each with its key and where it came from. "
        "Secrets show only the environment variable's name and whether it is set.",
    )
    add_override_arguments(show)
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(run=main_show)
    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of the configuration file (for editors)",
        description="Print the JSON Schema of the TOML configuration file, for editors that "
        "validate and complete TOML against a schema.",
    )
    schema.set_defaults(run=main_schema)


def main_show(args: argparse.Namespace) -> int:
    """Run ``tradekernel config show``; return the exit status (2 and every problem for a bad config)."""
    overrides = overrides_from_args(args)
    path = getattr(args, "config", None)
    try:
        config = load(path, overrides)
    except ConfigError as exc:
        print(f"tradekernel: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(to_json(config), indent=2) + "\n")
    else:
        given = [path] if path else []
        given += [f"env {name}" for _, name in env_overrides(os.environ).values()]
        given += list(dict.fromkeys(OVERRIDE_FLAGS[key] for key in overrides))
        sys.stdout.write(f"# from: defaults{''.join(' < ' + item for item in given)}\n")
        sys.stdout.write(to_toml(config))
    return EXIT_OK


def main_schema(args: argparse.Namespace) -> int:
    """Run ``tradekernel config schema``: print the JSON Schema of the file."""
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return EXIT_OK
