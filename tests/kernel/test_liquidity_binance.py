"""Liquidity on a Binance kernel's fills (issue 18): a real ``kind = "binance"`` kernel against the
loopback stand-in (``tests/kernel/binance/standin_kernel.py``).

Binance says on each executionReport of a trade whether our order was the maker side (``m``), and
on each ``myTrades`` row (``isMaker``): a resting order that a market trade reaches is the maker, a
market order that takes the book is the taker. The journal's fill data (``AuditReader.fills``, the
``liquidity`` column of ``tradekernel fills``) must say the same, for fills learned live and for a
fill learned at a restart's reconciliation.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from kernel.strategy import Place
from storage.audit import AuditReader
from tests.kernel.binance.standin_kernel import API_KEY, SECRET, SYMBOL, StandinKernel, market_trade, timeline
from tests.standins.binance_api import BinanceApiStandIn

pytestmark = pytest.mark.asyncio


def standin() -> BinanceApiStandIn:
    return BinanceApiStandIn(SYMBOL, api_keys={API_KEY: SECRET}, pace_ms=100, max_seconds=120)


def journal_liquidity(journal_path: str) -> dict[str, tuple[str, str | None]]:
    """Each journaled fill's trade id -> (its trigger, its liquidity)."""
    with AuditReader(journal_path) as reader:
        return {str(f["trade_id"]): (f["trigger"], f["liquidity"]) for f in reader.fills()}


def venue_is_maker(venue: BinanceApiStandIn) -> dict[str, bool]:
    """The stand-in's own record: each of our trades' id -> ``isMaker``."""
    return {str(row["id"]): row["isMaker"] for row in venue.exchange.trades}


async def test_a_resting_order_fills_as_maker_and_a_market_order_as_taker(tmp_path: Path) -> None:
    async with standin() as venue, StandinKernel(venue, tmp_path) as sk:
        await sk.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
        (resting,) = sk.order_ids()
        await sk.until(lambda: sk.state(resting) == "accepted", "the ack")
        await market_trade(venue, D("29949.00"), D("0.002"), buyer_maker=True)
        await sk.until(lambda: sk.state(resting) == "filled", "the resting buy's fill")

        await sk.act(Place(SYMBOL, "sell", D("0.001"), order_type="market"))
        taker = sk.order_ids()[1]
        await sk.until(lambda: sk.state(taker) == "filled", "the market sell's fill")

        journaled = journal_liquidity(sk.journal_path)
        at_venue = venue_is_maker(venue)
        assert sorted(at_venue.values()) == [False, True]  # one of each at the stand-in
        maker_id = next(t for t, m in at_venue.items() if m)
        taker_id = next(t for t, m in at_venue.items() if not m)
        assert journaled == {maker_id: ("fill", "maker"), taker_id: ("fill", "taker")}


async def test_a_fill_learned_at_a_restart_carries_the_trades_is_maker(tmp_path: Path) -> None:
    async with standin() as venue:
        async with StandinKernel(venue, tmp_path) as first:
            await first.act(Place(SYMBOL, "buy", D("0.001"), D("29950.00")))
            (resting,) = first.order_ids()
            await first.until(lambda: first.state(resting) == "accepted", "the ack")
        await market_trade(venue, D("29949.00"), D("0.002"), buyer_maker=True)  # while no kernel runs

        async with StandinKernel(venue, tmp_path) as second:
            await second.until(lambda: second.state(resting) == "filled", "the restart to learn the fill")
            assert timeline(second.journal_path, resting)[-1] == ("reconcile_fill", "filled")
            ((trade_id, is_maker),) = venue_is_maker(venue).items()
            assert is_maker is True
            assert journal_liquidity(second.journal_path) == {trade_id: ("reconcile_fill", "maker")}
