"""The terms of a new order, as one value passed from intent to gate, risk, journal and wire."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]
TimeInForce = Literal["gtc", "ioc", "fok", "day"]


@dataclass(frozen=True, slots=True)
class OrderTerms:
    """What a new order asks for. ``price`` is required for limit orders and ignored for market
    orders; ``tag`` is free text kept in the order's data; ``reason`` says why the kernel itself
    placed it (a stop, a flatten), ``None`` for a strategy's order.

    Validation is the order machine's (its ``create`` refuses bad terms with ``InvalidData``).
    """

    instrument: str
    side: Side
    qty: Decimal
    price: Decimal | None = None
    order_type: OrderType = "limit"
    tif: TimeInForce = "gtc"
    tag: str = ""
    reason: str | None = None

    def create_data(self) -> dict[str, Any]:
        """The data of the order machine's ``create`` trigger for these terms."""
        data: dict[str, Any] = {
            "instrument": self.instrument,
            "side": self.side,
            "type": self.order_type,
            "tif": self.tif,
            "qty": self.qty,
            "price": self.price,
            "tag": self.tag,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        return data
