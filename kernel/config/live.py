"""Trading real money: ``--live`` and the start banner.

A configuration whose orders go to Binance's production venue (``venue.kind = "binance"``,
``venue.testnet = false``) is refused unless the operator also passes ``--live`` on the command
line: a file edited by mistake never trades real money by itself. ``--live`` is a command-line
switch only, never a config key, so no file can carry it.
"""

from __future__ import annotations

from kernel.config.errors import ConfigError
from kernel.config.schema import Config


class LiveTradingRefused(ConfigError):
    """``venue.testnet = false`` without ``--live``: nothing was started, nothing connected."""


def check_live(config: Config, live: bool) -> None:
    """Raise ``LiveTradingRefused`` when ``config`` trades on production without ``live`` (and
    when ``live`` is given for a configuration that is not live: the operator expects real money)."""
    venue = config.venue
    if venue.is_live and not live:
        raise LiveTradingRefused(
            "venue.testnet = false sends real orders to Binance (production): pass --live to confirm, "
            "or set venue.testnet = true",
            key="venue.testnet",
        )
    if live and not venue.is_live:
        where = "the Binance testnet" if venue.kind == "binance" else "the paper venue"
        raise LiveTradingRefused(
            f"--live given, but this configuration trades on {where}: drop --live, or set "
            'venue.kind = "binance" and venue.testnet = false',
            key="venue.testnet",
        )


def banner(config: Config) -> str:
    """One line naming where orders go: ``LIVE`` in capitals for Binance production, ``TESTNET``
    for the Binance testnet, ``PAPER`` otherwise."""
    venue = config.venue
    instruments = ", ".join(venue.instruments) or "the venue's instruments"
    if venue.kind == "binance":
        mode = "LIVE: REAL MONEY on Binance spot" if venue.is_live else "TESTNET: Binance spot testnet"
        return f"*** {mode} ({venue.binance_ws_api_url}), {instruments} ***"
    return f"PAPER: the paper venue ({venue.url}), {instruments}"
