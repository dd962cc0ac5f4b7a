"""The paper venue's settings: ``VenueConfig`` (the venue) and ``EngineConfig`` (its matching engine).

Plain validated values, importable without the simulator itself (no server, engine or store), so
configuration code can build and check them. ``BUNDLED_DATA`` (from ``kernel.paper_defaults``) names
the market data shipped with the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from kernel.paper_defaults import BUNDLED_DATA as BUNDLED_DATA
from kernel.venue.errors import SimulatorSettingError


@dataclass(frozen=True)
class EngineConfig:
    """The engine's settings. Rates are probabilities in [0, 1]; bps are basis points."""

    instruments: tuple[str, ...] = ()
    fee_bps: Decimal = Decimal(0)
    slippage_bps: Decimal = Decimal(0)
    reject_rate: float = 0.0
    unsolicited_cancel_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("reject_rate", "unsolicited_cancel_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise SimulatorSettingError(f"{name} must be between 0 and 1, got {rate}")
        for name in ("fee_bps", "slippage_bps"):
            bps = getattr(self, name)
            if not isinstance(bps, Decimal) or not bps.is_finite() or bps < 0:
                raise SimulatorSettingError(f"{name} must be a non-negative Decimal, got {bps!r}")


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

    def __post_init__(self) -> None:
        # Accept any sequence (a list is the natural thing to pass) but hold tuples: hashable, immutable.
        object.__setattr__(self, "instruments", tuple(self.instruments))
        object.__setattr__(self, "data_paths", tuple(self.data_paths))
        object.__setattr__(self, "fee_bps", Decimal(self.fee_bps))
        object.__setattr__(self, "slippage_bps", Decimal(self.slippage_bps))
        if self.speed < 0:
            raise SimulatorSettingError(f"speed must be >= 0, got {self.speed}")
        if self.latency_ms < 0:
            raise SimulatorSettingError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if self.heartbeat_s <= 0:
            raise SimulatorSettingError(f"heartbeat_s must be > 0, got {self.heartbeat_s}")
        self.engine_config()  # validates rates and bps

    def engine_config(self, instruments: tuple[str, ...] = ()) -> EngineConfig:
        """The matching engine's part of this configuration."""
        return EngineConfig(
            instruments=instruments or tuple(self.instruments),
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            reject_rate=self.reject_rate,
            unsolicited_cancel_rate=self.unsolicited_cancel_rate,
            seed=self.seed,
        )
