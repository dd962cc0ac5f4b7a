"""Issue 13, done when: ``tradekernel run --config FILE`` with ``[market] source = "binance"`` pointed
at a loopback replay of a real Binance capture journals the feed reaching ``streaming``, the
strategy's orders are priced at that market (not at the bundled data's), fill on the paper venue
from the replayed trades, and the run stops cleanly.

The replay is ``tests/data/sessions/binance_nknusdt_paper.jsonl``: the real NKNUSDT capture of
2021-10-12 (REST depth snapshot, 40 depth updates, book tickers: bid 0.3521 / ask 0.3524) followed
by synthetic trades through that market, alternately a taker sell at 0.3500 and a taker buy at
0.3550 (see tests/data/sessions/SOURCES.md). The market maker quotes 10 bps wide around the mid
(0.3520 / 0.3525 on the 0.0001 tick), so each of those trades trades through one of its quotes.
The bundled BTCUSDT data is near 39,000: nothing of it may show up in the orders.

The stand-in runs in its own process (``tests.standins.process``); the kernel in another, bounded
by ``--duration``.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

from storage.audit import AuditReader
from tests.conftest import run_cli
from tests.standins.process import standin_process
from tests.standins.sessions import SESSIONS_DIR

LIMIT_S = 60.0
LOW, HIGH = D("0.34"), D("0.37")  # the replayed market's neighbourhood


def write_config(path: Path, db: str, ws_url: str, rest_url: str) -> str:
    path.write_text(
        "\n".join(
            [
                "[kernel]",
                f'db = "{db}"',
                'status_view = "off"',
                'durability = "normal"',
                "",
                "[venue]",
                'url = "embedded"',
                "",
                "[market]",
                'source = "binance"',
                'instruments = ["NKNUSDT"]',
                f'ws_url = "{ws_url}"',
                f'rest_url = "{rest_url}"',
                "",
                "[strategy]",
                'name = "market_maker"',
                "",
                "[strategy.params]",
                'instrument = "NKNUSDT"',
                'qty = "100"',
                'spread_bps = "10"',
                'tick_size = "0.0001"',
                'max_position = "1000"',
                "",
            ]
        )
    )
    return str(path)


def feed_timelines(db: str) -> dict[str, tuple[str, list[str]]]:
    """Every feed entity: its url and the states it went through."""
    with AuditReader(db) as reader:
        feeds = reader.entities(machine="feed")
        return {
            feed["entity"]: (
                str(feed["data"].get("url", "")),
                [row["dest"] for row in reader.timeline(feed["entity"], machine="feed")],
            )
            for feed in feeds
        }


def test_run_paper_trades_on_a_replayed_binance_market(tmp_path: Path) -> None:
    db = str(tmp_path / "kernel.db")
    session = str(SESSIONS_DIR / "binance_nknusdt_paper.jsonl")
    with standin_process("binance", session, pace=4.0, max_gap=1.0) as venue:
        config = write_config(tmp_path / "kernel.toml", db, venue.ws_url, venue.rest_url)
        result = run_cli("run", "--config", config, "--duration", "10", timeout=LIMIT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_cli("audit", "verify", "--db", db, timeout=LIMIT_S).returncode == 0

    # The kernel took its market data and rules from the stand-in (REST on the same port).
    served: list[list[Any]] = venue.summary["rest"]
    assert any(path.startswith("/api/v3/depth?") and status == 200 for path, status in served), served
    assert any(path.startswith("/api/v3/exchangeInfo") and status == 200 for path, status in served), served
    assert venue.summary["high_water"] > 40  # the recorded depth events and some trades were streamed

    # The live market's feed reached streaming and was closed at the stop.
    live = {name: states for name, (url, states) in feed_timelines(db).items() if url.startswith(venue.ws_url)}
    assert live, feed_timelines(db)
    assert any("streaming" in states for states in live.values()), live
    assert all(states[-1] == "closed" for states in live.values()), live

    with AuditReader(db) as reader:
        orders = reader.entities(machine="order")
        fills = reader.fills()
    prices = [D(order["data"]["price"]) for order in orders if order["data"].get("price") is not None]
    assert prices, "the strategy placed no order"
    assert all(LOW < price < HIGH for price in prices), prices  # at the replayed market, not ~39,000
    assert all(price == price.quantize(D("0.0001")) for price in prices), prices  # on NKNUSDT's tick
    assert fills, "no order filled from the replayed trades"
    assert all(LOW < D(fill["price"]) < HIGH for fill in fills), fills
    # Both quotes filled (the trades go through the market on both sides), each at its own limit.
    assert {fill["side"] for fill in fills} == {"buy", "sell"}, fills
    assert all(D(fill["price"]) in prices for fill in fills), (fills, prices)
