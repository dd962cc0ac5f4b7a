"""``OrderTerms`` (``machines.order_terms``): the one value carrying a new order's terms."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from machines import ORDER
from machines.order_terms import OrderTerms

D = Decimal


def test_defaults() -> None:
    terms = OrderTerms("BTCUSDT", "buy", D("0.5"))
    assert (terms.price, terms.order_type, terms.tif, terms.tag, terms.reason) == (None, "limit", "gtc", "", None)


def test_create_data_without_a_reason() -> None:
    terms = OrderTerms("BTCUSDT", "sell", D("2"), D("39400.5"), tif="ioc", tag="bid-1")
    assert terms.create_data() == {
        "instrument": "BTCUSDT",
        "side": "sell",
        "type": "limit",
        "tif": "ioc",
        "qty": D("2"),
        "price": D("39400.5"),
        "tag": "bid-1",
    }


def test_create_data_with_a_reason() -> None:
    terms = OrderTerms("ETHUSDT", "buy", D("3"), order_type="market", reason="stop-loss: mark 99 <= 100")
    assert terms.create_data() == {
        "instrument": "ETHUSDT",
        "side": "buy",
        "type": "market",
        "tif": "gtc",
        "qty": D("3"),
        "price": None,
        "tag": "",
        "reason": "stop-loss: mark 99 <= 100",
    }


def test_create_data_is_a_fresh_dict_each_time() -> None:
    terms = OrderTerms("BTCUSDT", "buy", D(1), D(1))
    first = terms.create_data()
    first["qty"] = D(9)
    assert terms.create_data()["qty"] == D(1)


def test_the_order_machine_takes_create_data_as_is() -> None:
    limit, _ = ORDER.create("o-1", **OrderTerms("BTCUSDT", "buy", D(1), D("100.5"), tag="t").create_data())
    assert (limit.state, limit.data["qty"], limit.data["price"], limit.data["tag"]) == ("new", D(1), D("100.5"), "t")
    market = OrderTerms("BTCUSDT", "sell", D(2), order_type="market", tif="ioc", reason="flatten")
    order, _ = ORDER.create("o-2", **market.create_data())
    assert (order.data["type"], order.data["price"], order.data["tif"]) == ("market", None, "ioc")


def test_frozen_and_slotted() -> None:
    terms = OrderTerms("BTCUSDT", "buy", D(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        terms.qty = D(2)  # type: ignore[misc]
    assert not hasattr(terms, "__dict__")
    assert dataclasses.replace(terms, qty=D(2)) == OrderTerms("BTCUSDT", "buy", D(2))
