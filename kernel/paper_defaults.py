"""What the config needs to know of the embedded paper venue, without importing the simulator.

``kernel.venue.marketdata`` (the simulator) and ``kernel.config`` both read these: ``import
kernel.config`` must not pull in the venue server, the matching engine or the venue's store.
``TradingRules`` (an instrument's tick and lot size) is shared by the venue and the kernel's risk limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

BUNDLED_DATA: tuple[str, ...] = tuple(
    str(Path(__file__).with_name("venue") / "data" / name)
    for name in ("binance_btcusdt_trades_20210108.csv", "binance_btcusdt_quotes_20210108.csv")
)
"""Real Binance BTCUSDT trades and quotes shipped with the package (``kernel/venue/data/SOURCES.md``):
what the embedded venue replays when no data file is configured."""
EMBEDDED_HOST = "127.0.0.1"
"""Where the embedded venue listens unless ``venue.embedded.host`` says otherwise (loopback only)."""
DEFAULT_TICK = Decimal("0.01")
"""Tick size of a live instrument whose rules are neither fetched nor configured ([market.rules])."""
DEFAULT_LOT = Decimal("0.00001")
"""Lot size of a live instrument whose rules are neither fetched nor configured ([market.rules])."""


@dataclass(frozen=True, slots=True)
class TradingRules:
    """An instrument's price and size increments (and smallest notional) on the paper venue.

    The venue rejects an order off them; the kernel's risk limits take ``tick_size``/``lot_size``
    from them when ``[risk]`` sets none. Fetched from Binance, or ``[market.rules.SYMBOL]``."""

    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal | None = None

    def problem(self, price: Decimal | None, qty: Decimal) -> str | None:
        """Why an order of ``qty`` at ``price`` (``None``: a market order) breaks the rules, or ``None``."""
        if price is not None and price % self.tick_size != 0:
            return f"price {price} is not a multiple of the tick size {self.tick_size}"
        if qty % self.lot_size != 0:
            return f"qty {qty} is not a multiple of the lot size {self.lot_size}"
        if price is not None and self.min_notional is not None and price * qty < self.min_notional:
            return f"notional {price * qty} is below the minimum {self.min_notional}"
        return None
