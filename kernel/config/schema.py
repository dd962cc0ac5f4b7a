"""The whole configuration as a pydantic model: ``Config`` of the sections, ``[strategy]`` with its
``Params``, ``[risk]`` checked by ``machines.risk.limits_from_mapping``, and ``json_schema``.

The plain sections are in ``sections``; a check of several keys together is the owning machine's
(or the strategy's ``Params``), its error turned into problems under the keys at fault.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)

from kernel.config.errors import describe
from kernel.config.market import MarketSection
from kernel.config.sections import (
    FeedSection,
    HealthSection,
    HttpSection,
    KernelSection,
    Section,
    ShipSection,
    VenueSection,
)
from kernel.config.values import (
    Key,
    Problems,
    invalid,
)
from kernel.strategy import Strategy, StrategyError, build_params, load_strategy_class
from machines.risk import INSTRUMENT_KEYS, KERNEL_KEYS, Limits, limits_from_mapping


def _params_table(value: Any) -> Any:
    if value is None or isinstance(value, Mapping):
        return dict(value or {})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return value  # a Params instance, checked against the strategy once it is known
    raise invalid(f"expected a table, got {describe(value)}")


def _strategy_class(name: str) -> type[Strategy]:
    try:
        return load_strategy_class(name)
    except StrategyError as exc:
        message = str(exc)
    except Exception as exc:  # a user's module that fails while importing: say so, with the key
        message = f"importing {name!r} failed: {type(exc).__name__}: {exc}"
    raise Problems("strategy").add(("name",), message, name).error()


class StrategySection(Section):
    """``[strategy]``: the strategy and its ``Params``.

    ``params`` is given as the ``[strategy.params]`` table (or a ``Params`` instance) and holds the
    strategy's ``Params`` built from it; ``params_table`` is the table as written."""

    section: ClassVar[str] = "strategy"
    subtables: ClassVar[tuple[str, ...]] = ("params",)
    name: Annotated[str, Key(nonempty=True)] = "market_maker"
    """A built-in strategy (idle, market_maker) or module:Class."""
    timer_interval_ms: Annotated[int | None, Key(above=0)] = None
    """How often on_timer runs (unset: the strategy's own)."""
    params: Annotated[
        Any,
        BeforeValidator(_params_table),
        WithJsonSchema({"type": "object", "description": "The strategy's parameters (its Params)."}),
    ] = None
    """The strategy's parameters, checked against its Params."""
    _table: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _build_params(self) -> StrategySection:
        strategy_class = _strategy_class(self.name)
        problems = Problems("strategy")
        params = {} if self.params is None else self.params
        if isinstance(params, dict):
            table = params
            try:
                self.__dict__["params"] = build_params(strategy_class, table, where="params")
                self._table = table
            except StrategyError as exc:
                where, _, detail = str(exc).partition(": ")  # build_params names the key: "params.qty: ..."
                problems.add(tuple(where.split(".")), detail, table, blame=("params", "name"))
        elif not isinstance(params, strategy_class.Params):
            expected = f"expected {strategy_class.__name__}.Params, got {type(params).__name__}"
            problems.add(("params",), expected, params)
        problems.raise_any()
        return self

    def __eq__(self, other: object) -> bool:
        # The table as written is not part of the value: "0.25" and 0.25 give equal Params.
        if not isinstance(other, StrategySection):
            return NotImplemented
        return (self.name, self.timer_interval_ms, self.params) == (other.name, other.timer_interval_ms, other.params)

    __hash__ = None  # type: ignore[assignment]

    @property
    def params_table(self) -> Mapping[str, Any]:
        """``[strategy.params]`` as written (empty when ``params`` was given as an instance)."""
        return self._table

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


class RiskSection(BaseModel):
    """``[risk]``: pre-trade limits (docs/risk.md). ``table`` is the TOML table as written;
    ``limits`` the checked ``machines.risk.Limits`` built from it (no table: no limits)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    table: dict[str, Any] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)


def _risk_section(value: Any) -> Any:
    if isinstance(value, RiskSection):
        return value
    if not isinstance(value, Mapping):
        raise invalid(f"expected a table, got {describe(value)}")
    try:
        return RiskSection(table=dict(value), limits=limits_from_mapping(value))
    except ValueError as exc:  # limits_from_mapping names the key: "risk.max_open_orders: ..."
        text = str(exc)
    key = text.split(":", 1)[0].split(" ", 1)[0]
    detail = text[len(key) :].removeprefix(":").strip()
    raise Problems("risk").add(tuple(key.split("."))[1:], detail, value, blame=("",)).error()


_LIMIT = {"description": "a risk limit (docs/risk.md)"}
RISK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Pre-trade limits (docs/risk.md); unset limits are off.",
    "properties": {
        **dict.fromkeys((*KERNEL_KEYS, *INSTRUMENT_KEYS), _LIMIT),
        "instruments": {
            "type": "object",
            "description": "Per-instrument overrides of the instrument limits.",
            "additionalProperties": {
                "type": "object",
                "properties": dict.fromkeys(INSTRUMENT_KEYS, _LIMIT),
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


class Config(Section):
    """The whole configuration. Build it with ``load``; ``Config()`` is all defaults."""

    kernel: KernelSection = Field(default_factory=KernelSection)
    """The process itself."""
    venue: VenueSection = Field(default_factory=VenueSection)
    """Where orders go."""
    market: MarketSection = Field(default_factory=MarketSection)
    """Where the embedded paper venue's market data comes from."""
    feed: FeedSection = Field(default_factory=FeedSection)
    """The market data feed's policy."""
    strategy: StrategySection = Field(default_factory=StrategySection)
    """The strategy and its parameters."""
    http: HttpSection = Field(default_factory=HttpSection)
    """The status endpoint."""
    health: HealthSection = Field(default_factory=HealthSection)
    """Thresholds of the health machine."""
    ship: ShipSection = Field(default_factory=ShipSection)
    """Shipping the journal to the fleet store (PostgreSQL)."""
    risk: Annotated[RiskSection, BeforeValidator(_risk_section), WithJsonSchema(RISK_SCHEMA)] = Field(
        default_factory=RiskSection
    )
    """Pre-trade limits."""

    @model_validator(mode="after")
    def _live_market_needs_the_embedded_venue(self) -> Config:
        problems = Problems("config")
        if self.venue.kind == "binance":
            if self.market.source not in ("replay", "binance"):
                message = (
                    f'kind = "binance" takes its market data from Binance: market.source {self.market.source!r} '
                    'cannot feed it (set market.source = "binance", or leave it unset)'
                )
                problems.add(("market", "source"), message, self.market.source, blame=("venue.kind",))
            elif self.market.is_live and tuple(self.market.instruments) != tuple(self.venue.instruments):
                message = 'market.instruments must be venue.instruments (or unset) with kind = "binance"'
                problems.add(("market", "instruments"), message, list(self.market.instruments), blame=("venue.kind",))
        elif self.market.is_live and not self.venue.is_embedded:
            message = (
                f"market.source {self.market.source!r} feeds the embedded paper venue: "
                f'set venue.url = "embedded" (or market.source = "replay")'
            )
            problems.add(("market", "source"), message, self.market.source, blame=("venue.url",))
        elif self.market.is_live and self.venue.instruments:
            missing = [i for i in self.venue.instruments if i not in self.market.instruments]
            if missing:
                message = f"venue.instruments {', '.join(missing)} not in market.instruments"
                problems.add(("venue", "instruments"), message, list(self.venue.instruments), blame=("market.source",))
        problems.raise_any()
        return self

    @model_validator(mode="after")
    def _venue_store_follows_the_journal(self) -> Config:
        embedded = self.venue.embedded
        if embedded.journal_db != self.kernel.db:
            venue = self.venue.model_copy(update={"embedded": embedded.with_journal(self.kernel.db)})
            self.__dict__["venue"] = venue
        return self


SECTIONS: Mapping[str, type[Section]] = {
    "kernel": KernelSection,
    "venue": VenueSection,
    "market": MarketSection,
    "feed": FeedSection,
    "strategy": StrategySection,
    "http": HttpSection,
    "health": HealthSection,
    "ship": ShipSection,
}
"""The top-level tables but ``[risk]``, in file order."""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the TOML file, for editors (``tradekernel config schema``)."""
    schema = Config.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "tradekernel configuration",
        "description": "The kernel's TOML configuration file (docs/config.md).",
    }
