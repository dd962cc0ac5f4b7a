"""What the config needs to know of the embedded paper venue, without importing the simulator.

``kernel.venue.marketdata`` (the simulator) and ``kernel.config`` both read these: ``import
kernel.config`` must not pull in the venue server, the matching engine or the venue's store.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DATA: tuple[str, ...] = tuple(
    str(Path(__file__).with_name("venue") / "data" / name)
    for name in ("binance_btcusdt_trades_20210108.csv", "binance_btcusdt_quotes_20210108.csv")
)
"""Real Binance BTCUSDT trades and quotes shipped with the package (``kernel/venue/data/SOURCES.md``):
what the embedded venue replays when no data file is configured."""
EMBEDDED_HOST = "127.0.0.1"
"""Where the embedded venue listens unless ``venue.embedded.host`` says otherwise (loopback only)."""
