"""The command-line flags that override config keys: one table, read by ``load`` (to name a flag in
an error) and by ``add_override_arguments`` (to declare it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kernel.config.market import parse_market_flag


@dataclass(frozen=True, slots=True)
class Flag:
    """``flag`` sets the dotted ``key``; ``kind`` says how argparse reads it."""

    key: str
    flag: str
    metavar: str | None
    help: str
    kind: Literal["text", "seconds", "switch", "market"] = "text"
    also: tuple[str, ...] = ()
    """Further keys the flag sets (``--market`` sets ``market.source`` and ``market.instruments``)."""

    @property
    def dest(self) -> str:
        """The argparse attribute of the flag (``--log-format``: ``log_format``)."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the flag sets."""
        return (self.key, *self.also)

    def overrides(self, value: Any) -> dict[str, Any]:
        """The dotted keys the flag's ``value`` sets."""
        if self.kind == "market":
            return parse_market_flag(str(value))
        return {self.key: value}


FLAGS: tuple[Flag, ...] = (
    Flag("kernel.db", "--db", "PATH", "journal file (kernel.db; default: ./tradekernel.db)"),
    Flag(
        "venue.url",
        "--venue",
        "embedded|ws://HOST:PORT",
        "the venue: the in-process paper venue or a `tradekernel venue` URL (venue.url)",
    ),
    Flag(
        "strategy.name",
        "--strategy",
        "NAME|module:Class",
        "the strategy: one of {builtin} or module:Class (strategy.name)",
    ),
    Flag(
        "market.source",
        "--market",
        "VENUE:SYMBOL[,SYMBOL]",
        "paper-trade on a live venue's market data: binance, coinbase, kraken or paper (market.source, "
        "market.instruments)",
        "market",
        also=("market.instruments",),
    ),
    Flag("kernel.duration_s", "--duration", "SECONDS", "stop after this long (kernel.duration_s)", "seconds"),
    Flag("kernel.log_format", "--log-format", "text|json", "log line format (kernel.log_format)"),
    Flag(
        "kernel.control_socket", "--control-socket", "PATH", "control socket (kernel.control_socket; default: DB.sock)"
    ),
    Flag("http.listen", "--http", "HOST:PORT", "serve status over HTTP here (http.listen)"),
    Flag(
        "http.allow_remote",
        "--allow-remote",
        None,
        "allow --http on a non-loopback address (http.allow_remote)",
        "switch",
    ),
)
"""Every flag that overrides a key, in ``--help`` order."""
OVERRIDE_FLAGS: Mapping[str, str] = {key: flag.flag for flag in FLAGS for key in flag.keys}
"""The command-line flag of each key ``add_override_arguments`` can set."""
