"""The paper venue's engine orders and fills to and from its store's rows (``storage.venue_store``),
and the pages of ``open_orders``/``fills_since`` answers read from them: each for one account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from kernel.paper_protocol import (
    PAGE_DEFAULT,
    Error,
    Fill,
    Fills,
    FillsSinceRequest,
    Liquidity,
    OpenOrders,
    OpenOrdersRequest,
    OrderSnapshot,
    OrderType,
    ProtocolError,
    Side,
    Status,
    TimeInForce,
    encode_item,
)
from kernel.venue.matching import Order
from storage.venue_store import StoredFill, StoredOrder, VenueStore, VenueStoreCorrupt

PAGE_ENVELOPE_BYTES = 512
"""Bytes of a page's frame besides its items (type, id, more, next, ...), with room to spare."""

_SIDES = ("buy", "sell")
_TYPES = ("limit", "market")
_TIFS = ("gtc", "ioc", "fok", "day")
_LIQUIDITIES = ("maker", "taker")
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
        account=order.account,
    )


def fill_to_store(fill: Fill, account: str) -> StoredFill:
    """A fill of ``account``'s order as the store keeps it."""
    return StoredFill(
        fill_seq=fill.fill_seq,
        trade_id=fill.trade_id,
        client_order_id=fill.client_order_id,
        qty=fill.qty,
        price=fill.price,
        fee=fill.fee,
        ts_ms=fill.ts_ms,
        account=account,
        liquidity=fill.liquidity,
    )


def fill_from_store(stored: StoredFill, path: str) -> Fill:
    """A stored fill as a protocol ``Fill``; ``VenueStoreCorrupt`` for a liquidity no fill can have."""
    liquidity = stored.liquidity
    if liquidity is not None and liquidity not in _LIQUIDITIES:
        raise VenueStoreCorrupt(f"venue store {path}: fill {stored.fill_seq} has liquidity {liquidity!r}")
    return Fill(
        trade_id=stored.trade_id,
        qty=stored.qty,
        price=stored.price,
        fee=stored.fee,
        fill_seq=stored.fill_seq,
        ts_ms=stored.ts_ms,
        client_order_id=stored.client_order_id,
        liquidity=cast(Liquidity | None, liquidity),
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
        fills=[fill_from_store(f, path) for f in stored.fills],
        account=stored.account,
    )


# -- pages (reconciliation) ---------------------------------------------------------------------


def _page_size(limit: int | None, page_max: int, ref: str) -> int:
    if limit is None:
        return min(PAGE_DEFAULT, page_max)
    if limit < 1:
        raise ProtocolError("invalid", f"limit must be a positive number of items, got {limit}", ref)
    return min(limit, page_max)


def _fit(items: Sequence[OrderSnapshot | Fill], max_bytes: int) -> int:
    """How many of ``items`` (in order) fit in one page of ``max_bytes`` (at least one)."""
    budget = max_bytes - PAGE_ENVELOPE_BYTES
    for count, item in enumerate(items):
        budget -= len(encode_item(item)) + 1
        if budget < 0:
            return max(count, 1)
    return len(items)


def open_orders_page(
    store: VenueStore, request: OpenOrdersRequest, page_max: int, max_bytes: int, account: str
) -> OpenOrders | Error:
    """One page of ``account``'s open orders after ``request.after``, in ``client_order_id`` order:
    at most ``limit`` (clamped to ``page_max``), ended before the frame would pass ``max_bytes``."""
    try:
        size = _page_size(request.limit, page_max, request.id or "open_orders")
    except ProtocolError as exc:
        return exc.reply()
    stored = store.open_orders_after(request.after, size + 1, account)
    snapshots = [order_from_store(o, store.path).snapshot() for o in stored]
    taken = snapshots[: _fit(snapshots[:size], max_bytes)]
    return OpenOrders(
        orders=taken,
        id=request.id,
        more=len(taken) < len(snapshots),
        next=taken[-1].client_order_id if taken else request.after,
    )


def fills_page(
    store: VenueStore, request: FillsSinceRequest, page_max: int, max_bytes: int, account: str
) -> Fills | Error:
    """One page of ``account``'s fills after ``request.after``, in ``fill_seq`` order, bounded as
    ``open_orders_page``; ``last_fill_seq`` is the account's newest."""
    try:
        size = _page_size(request.limit, page_max, request.id or "fills_since")
    except ProtocolError as exc:
        return exc.reply()
    fills = [fill_from_store(f, store.path) for f in store.fills_after(request.after, size + 1, account)]
    taken = fills[: _fit(fills[:size], max_bytes)]
    return Fills(
        fills=taken,
        id=request.id,
        more=len(taken) < len(fills),
        next=taken[-1].fill_seq if taken else request.after,
        last_fill_seq=store.last_fill_seq(account),
    )
