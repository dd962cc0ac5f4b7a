"""The paper venue's orders as its matching engine holds them (``Order``), the quote it matches
against (``TopOfBook``) and what a step changed (``Changes``): plain data, no behaviour beyond
reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from kernel.paper_protocol import Fill, OrderSnapshot, OrderType, Side, Status, TimeInForce
from kernel.venue.settings import LOCAL_ACCOUNT

ZERO = Decimal(0)
DONE: frozenset[Status] = frozenset({"filled", "canceled", "rejected", "expired"})
"""Statuses from which an order never changes again."""


@dataclass
class Order:
    """An order as the venue holds it (mutable, owned by the engine)."""

    client_order_id: str
    venue_order_id: str
    instrument: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    qty: Decimal
    price: Decimal | None
    status: Status
    cum_qty: Decimal = ZERO
    leaves_qty: Decimal = ZERO
    reason: str | None = None
    duplicate_submits: int = 0
    created_ts_ms: int = 0
    priority: int = 0
    """Time priority among resting orders: lower is earlier (a price change or a larger qty loses it)."""
    fills: list[Fill] = field(default_factory=list)
    queue_ahead: Decimal | None = None
    """Live book volume ahead of the order at its price, when the market data keeps a book
    (``None``: unknown, e.g. after a restart; then only trades through its price fill it)."""
    account: str = LOCAL_ACCOUNT
    """The venue account that placed the order: the only one that sees or touches it."""

    @property
    def done(self) -> bool:
        """True once the order is filled, canceled, rejected or expired."""
        return self.status in DONE

    @property
    def resting(self) -> bool:
        """True while the order waits in the book (accepted, with quantity left)."""
        return self.status in ("new", "partially_filled") and self.leaves_qty > 0

    def snapshot(self) -> OrderSnapshot:
        """The order as a protocol ``OrderSnapshot``."""
        return OrderSnapshot(
            client_order_id=self.client_order_id,
            venue_order_id=self.venue_order_id,
            instrument=self.instrument,
            side=self.side,
            order_type=self.order_type,
            tif=self.tif,
            qty=self.qty,
            price=self.price,
            status=self.status,
            cum_qty=self.cum_qty,
            leaves_qty=self.leaves_qty,
            fills=list(self.fills),
            duplicate_submits=self.duplicate_submits,
            reason=self.reason,
        )


@dataclass
class TopOfBook:
    """The last quote of one instrument, less what the venue's own orders have taken from it."""

    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal


@dataclass(frozen=True)
class Changes:
    """What one or more engine steps changed: the orders to save, the fills to append (with the
    account of each, in ``fill_accounts``) and the balances to set, by (account, asset)."""

    orders: list[Order]
    fills: list[Fill]
    next_venue_order: int
    next_fill_seq: int
    next_priority: int
    fill_accounts: list[str] = field(default_factory=list)
    balances: dict[tuple[str, str], Decimal] = field(default_factory=dict)
