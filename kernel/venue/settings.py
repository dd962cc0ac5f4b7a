"""The paper venue's settings: ``VenueConfig`` (the venue) and ``EngineConfig`` (its matching engine).

Plain validated values, importable without the simulator itself (no server, engine or store), so
configuration code can build and check them. ``BUNDLED_DATA`` (from ``kernel.paper_defaults``) names
the market data shipped with the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from kernel.paper_defaults import BUNDLED_DATA as BUNDLED_DATA
from kernel.paper_defaults import TradingRules
from kernel.venue.errors import SimulatorSettingError

LOCAL_ACCOUNT = "local"
"""The account of a connection that has not authenticated, and of every order of a version 1 store."""
DEFAULT_BALANCE = Decimal(1_000_000_000)
"""What every account starts with of an asset ``balances`` does not name: practically unlimited, so
a venue started without ``--balance`` trades as it did before balances existed."""


def _balances(balances: Mapping[str, Decimal], default: Decimal) -> None:
    for asset, amount in balances.items():
        if not asset or not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise SimulatorSettingError(
                f"the starting balance of {asset!r} must be a non-negative Decimal, got {amount!r}"
            )
    if not isinstance(default, Decimal) or not default.is_finite() or default < 0:
        raise SimulatorSettingError(f"default_balance must be a non-negative Decimal, got {default!r}")


@dataclass(frozen=True)
class EngineConfig:
    """The engine's settings. Rates are probabilities in [0, 1]; bps are basis points."""

    instruments: tuple[str, ...] = ()
    fee_bps: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    reject_rate: float = 0.0
    unsolicited_cancel_rate: float = 0.0
    seed: int = 0
    rules: Mapping[str, TradingRules] = field(default_factory=dict)
    """Tick and lot size per instrument: orders off them are rejected (none: any price and size)."""
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    """Every account's starting balance per asset (``kernel.venue.balances``)."""
    default_balance: Decimal = DEFAULT_BALANCE
    """The starting balance of an asset ``balances`` does not name."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))
        object.__setattr__(self, "balances", MappingProxyType(dict(self.balances)))
        _balances(self.balances, self.default_balance)
        for name in ("reject_rate", "unsolicited_cancel_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise SimulatorSettingError(f"{name} must be between 0 and 1, got {rate}")
        for name in ("fee_bps", "slippage_bps"):
            bps = getattr(self, name)
            if not isinstance(bps, Decimal) or not bps.is_finite() or bps < 0:
                raise SimulatorSettingError(f"{name} must be a non-negative Decimal, got {bps!r}")


LIVE_SOURCES: tuple[str, ...] = ("paper", "binance", "coinbase", "kraken")
"""The venues whose market data the paper venue can follow (``kernel.feed.venues.make_source``)."""


@dataclass(frozen=True)
class LiveMarketSettings:
    """Follow a live venue's market data (``kernel.venue.live``) instead of replaying files.

    ``ws_url``/``rest_url`` ``None``: the venue's public endpoints. ``rules`` are the configured tick
    and lot sizes; for Binance the venue's own (``GET /api/v3/exchangeInfo``) are fetched at start
    and take precedence. ``policy`` is the feed machine's (``[feed]``)."""

    source: str
    instruments: tuple[str, ...]
    ws_url: str | None = None
    rest_url: str | None = None
    rules: Mapping[str, TradingRules] = field(default_factory=dict)
    policy: Mapping[str, int] = field(default_factory=dict)
    fetch_rules: bool = True
    """Fetch the venue's own rules at start where it publishes them (Binance)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "instruments", tuple(self.instruments))
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))
        object.__setattr__(self, "policy", MappingProxyType(dict(self.policy)))
        if self.source not in LIVE_SOURCES:
            raise SimulatorSettingError(f"source must be one of {', '.join(LIVE_SOURCES)}, got {self.source!r}")
        if not self.instruments or len(set(self.instruments)) != len(self.instruments):
            raise SimulatorSettingError(f"instruments must be distinct and not empty, got {list(self.instruments)}")


@dataclass(frozen=True)
class VenueConfig:
    """How the paper venue behaves. Rates are probabilities in [0, 1], bps are basis points.

    ``instruments`` empty means: those of ``data_paths``, or ``("BTCUSDT",)`` for the random walk.
    """

    instruments: Sequence[str] = ()
    data_paths: Sequence[str] = ()
    speed: float = 1.0
    seed: int = 0
    fee_bps: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    latency_ms: float = 0.0
    reject_rate: float = 0.0
    unsolicited_cancel_rate: float = 0.0
    heartbeat_s: float = 1.0
    autoplay: bool = True
    loop: bool = False
    live: LiveMarketSettings | None = None
    """Follow this live venue's market data instead of ``data_paths`` (no slippage: fills walk the live book)."""
    rules: Mapping[str, TradingRules] = field(default_factory=dict)
    """Tick and lot size per instrument (with ``live``: its rules, completed at start)."""
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    """Every account's starting balance per asset, e.g. ``{"USDT": Decimal(100_000), "BTC": Decimal(1)}``
    (``--balance USDT=100000``); an asset not named starts at ``default_balance``."""
    default_balance: Decimal = DEFAULT_BALANCE
    authenticate: bool = False
    """Require an authenticated ``hello`` (``kernel.venue.auth``): ``tradekernel venue`` and the
    embedded venue turn it on; off (every connection acts for the ``local`` account) only for
    in-process tests and ``tradekernel venue --open``."""
    allowed_origins: Sequence[str] = ()
    """The WebSocket ``Origin`` headers accepted; a connection without one (a kernel, a CLI) is always
    accepted, one from any other origin (a browser page) is refused with HTTP 403."""
    hello_timeout_s: float = 10.0
    """With ``authenticate``: a connection without an authenticated ``hello`` after this is closed (1008)."""
    # Limits (``kernel.venue.limits``; docs/venue-protocol.md "Limits"); 0 turns one off.
    max_connections: int = 256
    """Connections open at once, all accounts together: one more is refused at the handshake (HTTP 503)."""
    max_connections_per_account: int = 16
    """Connections of one account at once: one more is closed (1013) when it names the account."""
    max_open_orders: int = 10_000
    """Orders not done per account: a new order beyond it is rejected (``too_many_open_orders``)."""
    order_rate: int = 100
    """Order requests (new, cancel, replace) per second per account, on average (token bucket)."""
    order_burst: int = 200
    """How many order requests an account may send at once (the bucket's size)."""

    def __post_init__(self) -> None:
        # Accept any sequence (a list is the natural thing to pass) but hold tuples: hashable, immutable.
        object.__setattr__(self, "instruments", tuple(self.instruments))
        object.__setattr__(self, "balances", MappingProxyType({k: Decimal(v) for k, v in self.balances.items()}))
        object.__setattr__(self, "default_balance", Decimal(self.default_balance))
        object.__setattr__(self, "data_paths", tuple(self.data_paths))
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        object.__setattr__(self, "fee_bps", Decimal(self.fee_bps))
        object.__setattr__(self, "slippage_bps", Decimal(self.slippage_bps))
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))
        if self.speed < 0:
            raise SimulatorSettingError(f"speed must be >= 0, got {self.speed}")
        if self.latency_ms < 0:
            raise SimulatorSettingError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if self.heartbeat_s <= 0:
            raise SimulatorSettingError(f"heartbeat_s must be > 0, got {self.heartbeat_s}")
        for name in ("max_connections", "max_connections_per_account", "max_open_orders", "order_rate", "order_burst"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SimulatorSettingError(f"{name} must be a whole number >= 0 (0: no limit), got {value!r}")
        if self.order_rate and not self.order_burst:
            raise SimulatorSettingError("order_burst must be >= 1 while order_rate is on")
        self.engine_config()  # validates rates and bps

    def engine_config(
        self, instruments: tuple[str, ...] = (), rules: Mapping[str, TradingRules] | None = None
    ) -> EngineConfig:
        """The matching engine's part of this configuration (``rules``: those to apply, else ``self.rules``)."""
        return EngineConfig(
            instruments=instruments or tuple(self.instruments),
            fee_bps=self.fee_bps,
            slippage_bps=Decimal(0) if self.live is not None else self.slippage_bps,
            rules=self.rules if rules is None else rules,
            reject_rate=self.reject_rate,
            unsolicited_cancel_rate=self.unsolicited_cancel_rate,
            seed=self.seed,
            balances=self.balances,
            default_balance=self.default_balance,
        )
