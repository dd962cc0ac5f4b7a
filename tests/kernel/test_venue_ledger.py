"""The paper venue's ``Ledger``: what open orders reserve, kept as running totals per account and asset."""

from __future__ import annotations

from decimal import Decimal as D

from kernel.venue.balances import Ledger

FEE_BPS = D("10")


def ledger() -> Ledger:
    return Ledger({"USDT": D("1000"), "BTC": D("2")}, default=D("0"))


def test_open_orders_reserve_quote_with_fee_headroom_for_buys_and_base_for_sells() -> None:
    book = ledger()
    book.hold("alice", "b1", ("BTCUSDT", "buy", D("1"), D("100")), FEE_BPS)  # 100 + 0.1 fee
    book.hold("alice", "b2", ("BTCUSDT", "buy", D("2"), D("200")), FEE_BPS)  # 400 + 0.4 fee
    book.hold("alice", "s1", ("BTCUSDT", "sell", D("0.5"), D("300")), FEE_BPS)
    assert book.reserved("alice", "USDT") == D("500.5")
    assert book.reserved("alice", "BTC") == D("0.5")
    assert book.reserved("bob", "USDT") == D("0")
    assert book.report("alice", ["BTCUSDT"]) == [("BTC", D("2"), D("1.5")), ("USDT", D("1000"), D("499.5"))]


def test_a_changed_or_finished_order_replaces_or_releases_its_reservation() -> None:
    book = ledger()
    book.hold("alice", "b1", ("BTCUSDT", "buy", D("1"), D("100")), FEE_BPS)
    book.hold("alice", "b2", ("BTCUSDT", "buy", D("1"), D("50")), FEE_BPS)
    book.hold("alice", "b1", ("BTCUSDT", "buy", D("0.4"), D("100")), FEE_BPS)  # partly filled
    assert book.reserved("alice", "USDT") == D("90.09")  # 40.04 + 50.05
    book.hold("alice", "b2", None, FEE_BPS)  # done
    assert book.reserved("alice", "USDT") == D("40.04")
    book.hold("alice", "b1", None, FEE_BPS)
    book.hold("alice", "b1", None, FEE_BPS)  # twice: nothing left to release
    assert book.reserved("alice", "USDT") == D("0")


def test_covers_counts_the_other_orders_and_leaves_out_the_one_being_replaced() -> None:
    book = ledger()
    book.hold("alice", "b1", ("BTCUSDT", "buy", D("5"), D("100")), FEE_BPS)  # 500.5
    assert book.covers("alice", ("BTCUSDT", "buy", D("4"), D("100")), FEE_BPS)  # 400.4 + 500.5 <= 1000
    assert not book.covers("alice", ("BTCUSDT", "buy", D("5"), D("100")), FEE_BPS)  # 1001 > 1000
    assert book.covers("alice", ("BTCUSDT", "buy", D("9"), D("100")), FEE_BPS, excluding="b1")  # 900.9
    assert book.covers("bob", ("BTCUSDT", "sell", D("2"), D("100")), FEE_BPS)  # bob's own starting BTC
    assert not book.covers("alice", ("BTCUSDT", "sell", D("2.1"), D("100")), FEE_BPS)
