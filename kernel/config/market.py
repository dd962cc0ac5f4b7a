"""``[market]``: where the embedded paper venue's market data comes from, and ``--market VENUE:SYM[,SYM]``.

``source = "replay"`` (the default) replays ``[venue.embedded] data`` (the bundled data when unset);
a live source (``binance``, ``coinbase``, ``kraken``, or ``paper``: another paper venue's public
stream) makes the embedded venue follow that venue's market data for ``instruments``
(``kernel.venue.live``). ``ws_url``/``rest_url`` default to the venue's public endpoints (a
``paper`` source has none: ``ws_url`` is then required). ``[market.rules.SYMBOL]`` gives an
instrument's tick and lot size where the venue's own rules are not fetched (Binance's are).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from kernel.config.sections import Section
from kernel.config.values import Key, Problems, invalid
from kernel.paper_defaults import DEFAULT_LOT, DEFAULT_TICK, TradingRules

MarketSource = Literal["replay", "paper", "binance", "coinbase", "kraken"]
"""Where market data comes from: the replayed files, or a live venue's stream."""
REPLAY = "replay"
LIVE_SOURCES: tuple[str, ...] = tuple(name for name in get_args(MarketSource) if name != REPLAY)
"""The sources the embedded venue follows over the network."""


def _check_url(url: str, schemes: tuple[str, ...]) -> None:
    expected = f"must be a {' or '.join(s + '://' for s in schemes)} URL"
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise invalid(f"{expected}, got {url!r}")
    if "@" in parts.netloc:
        raise invalid("must not contain credentials")  # not echoed: it holds them
    try:
        port = parts.port
    except ValueError:
        raise invalid(f"{expected}, got {url!r} (bad port)") from None
    if not parts.hostname or (port is None and parts.netloc.endswith(":")):
        raise invalid(f"{expected}, got {url!r} (no host)")


def check_ws_url(url: str) -> None:
    """A ws:// or wss:// URL with a host, no credentials."""
    _check_url(url, ("ws", "wss"))


def check_http_url(url: str) -> None:
    """An http:// or https:// URL with a host, no credentials."""
    _check_url(url, ("http", "https"))


class InstrumentRulesSection(Section):
    """``[market.rules.SYMBOL]``: an instrument's price and size increments."""

    section: ClassVar[str] = "market.rules.SYMBOL"
    tick_size: Annotated[Decimal, Key(above=0)] = DEFAULT_TICK
    """Prices are whole multiples of this."""
    lot_size: Annotated[Decimal, Key(above=0)] = DEFAULT_LOT
    """Sizes are whole multiples of this."""
    min_notional: Annotated[Decimal | None, Key(above=0)] = None
    """The smallest price x size of an order (unset: none)."""

    def trading_rules(self) -> TradingRules:
        """These rules as the venue and the risk limits take them."""
        return TradingRules(self.tick_size, self.lot_size, self.min_notional)


class MarketSection(Section):
    """``[market]``: the embedded paper venue's market data: replayed files or a live venue."""

    section: ClassVar[str] = "market"
    subtables: ClassVar[tuple[str, ...]] = ("rules",)
    source: Annotated[MarketSource, Key()] = "replay"
    """"replay" (the files of [venue.embedded]) or a live venue: paper, binance, coinbase, kraken."""
    instruments: Annotated[tuple[str, ...], Key(nonempty=True, distinct=True)] = ()
    """The live venue's symbols to follow (required with a live source)."""
    ws_url: Annotated[str | None, Key(check=check_ws_url)] = None
    """The live venue's WebSocket endpoint (unset: its public one; required for paper)."""
    rest_url: Annotated[str | None, Key(check=check_http_url)] = None
    """The live venue's REST endpoint (unset: its public one)."""
    rules: dict[str, InstrumentRulesSection] = Field(default_factory=dict)
    """Tick and lot size per symbol where the venue's rules are not fetched."""

    @model_validator(mode="after")
    def _live_needs(self) -> MarketSection:
        problems = Problems("market")
        if self.is_live:
            if not self.instruments:
                message = f"market.source {self.source!r} needs the symbols to follow: set market.instruments"
                problems.add(("instruments",), message, self.instruments, blame=("source",))
            if self.source == "paper" and self.ws_url is None:
                message = "a paper market source has no public endpoint: set market.ws_url"
                problems.add(("ws_url",), message, None, blame=("source",))
        else:
            for name in ("instruments", "ws_url", "rest_url", "rules"):
                if getattr(self, name):
                    message = f"market.{name} is only used with a live market.source, not {self.source!r}"
                    problems.add((name,), message, getattr(self, name), blame=("source",))
        for symbol in self.rules:
            if self.instruments and symbol not in self.instruments:
                message = f"rules for {symbol!r}, which market.instruments does not list"
                problems.add(("rules", symbol), message, symbol, blame=("rules",))
        problems.raise_any()
        return self

    @property
    def is_live(self) -> bool:
        """True when the embedded venue follows a live venue instead of replaying files."""
        return self.source != REPLAY


def parse_market_flag(text: str) -> dict[str, Any]:
    """``--market VENUE:SYM[,SYM]`` as the keys it sets (``market.source``, ``market.instruments``).

    Never raises: what is wrong is reported by the config's checks under those keys."""
    source, _, symbols = text.partition(":")
    instruments = [symbol.strip() for symbol in symbols.split(",")] if symbols else []
    return {"market.source": source.strip().lower(), "market.instruments": instruments}
