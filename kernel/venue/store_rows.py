"""The paper venue's engine orders and fills to and from its store's rows (``storage.venue_store``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from kernel.paper_protocol import Fill, OrderType, Side, Status, TimeInForce
from kernel.venue.matching import Order
from storage.venue_store import StoredFill, StoredOrder, VenueStoreCorrupt

_SIDES = ("buy", "sell")
_TYPES = ("limit", "market")
_TIFS = ("gtc", "ioc", "fok", "day")
_STATUSES = ("new", "partially_filled", "filled", "canceled", "rejected", "expired")


def order_to_store(order: Order) -> StoredOrder:
    """An engine order as the store keeps it."""
    return StoredOrder(
        client_order_id=order.client_order_id,
        venue_order_id=order.venue_order_id,
        instrument=order.instrument,
        side=order.side,
        order_type=order.order_type,
        tif=order.tif,
        qty=order.qty,
        price=order.price,
        status=order.status,
        cum_qty=order.cum_qty,
        leaves_qty=order.leaves_qty,
        reason=order.reason,
        duplicate_submits=order.duplicate_submits,
        created_ts_ms=order.created_ts_ms,
        priority=order.priority,
    )


def fill_to_store(fill: Fill) -> StoredFill:
    """A fill as the store keeps it."""
    return StoredFill(
        fill_seq=fill.fill_seq,
        trade_id=fill.trade_id,
        client_order_id=fill.client_order_id,
        qty=fill.qty,
        price=fill.price,
        fee=fill.fee,
        ts_ms=fill.ts_ms,
    )


def _one_of(value: str, allowed: Sequence[str], what: str, stored: StoredOrder, path: str) -> str:
    if value not in allowed:
        raise VenueStoreCorrupt(f"venue store {path}: order {stored.client_order_id} has {what} {value!r}")
    return value


def order_from_store(stored: StoredOrder, path: str) -> Order:
    """A stored order back as an engine order; ``VenueStoreCorrupt`` for a value no order can have."""
    return Order(
        client_order_id=stored.client_order_id,
        venue_order_id=stored.venue_order_id,
        instrument=stored.instrument,
        side=cast(Side, _one_of(stored.side, _SIDES, "side", stored, path)),
        order_type=cast(OrderType, _one_of(stored.order_type, _TYPES, "order_type", stored, path)),
        tif=cast(TimeInForce, _one_of(stored.tif, _TIFS, "tif", stored, path)),
        qty=stored.qty,
        price=stored.price,
        status=cast(
            Status,
            _one_of(stored.status, _STATUSES, "status", stored, path),
        ),
        cum_qty=stored.cum_qty,
        leaves_qty=stored.leaves_qty,
        reason=stored.reason,
        duplicate_submits=stored.duplicate_submits,
        created_ts_ms=stored.created_ts_ms,
        priority=stored.priority,
        fills=[
            Fill(
                trade_id=f.trade_id,
                qty=f.qty,
                price=f.price,
                fee=f.fee,
                fill_seq=f.fill_seq,
                ts_ms=f.ts_ms,
                client_order_id=f.client_order_id,
            )
            for f in stored.fills
        ],
    )
