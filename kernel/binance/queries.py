"""``BinanceQueries``: the queries of ``BinanceExecutionClient`` (order status, open orders, fills).

Binance answers per leg (an ``order.cancelReplace`` gives our order a new ``orderId``); each answer
is our order as a whole: what its earlier legs executed is added (``kernel.binance.legs``: known
here, else read once from ``allOrders``, from the order's first leg up) and its fills are the
trades of every leg.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kernel.binance import reports, wire
from kernel.binance.connection import BinanceConnection
from kernel.binance.errors import BinanceUnknownOrder
from kernel.binance.legs import OrderLegs, leg_history
from kernel.binance.session import Json
from kernel.binance.signing import Signer
from kernel.execution import every_fill
from kernel.paper_protocol import PAGE_DEFAULT, Fill, Fills, OpenOrders, OrderSnapshot

MAX_TRADES_PAGE = 1000
"""The most rows ``myTrades`` gives per request."""
MAX_ORDERS_PAGE = 1000
"""The most orders ``allOrders`` gives per request."""


class BinanceQueries(BinanceConnection):
    """Order status, open orders and fills of ``symbol`` in our types (``reconcile.PagingClient``).
    ``base_asset``/``quote_asset`` value fees; the rest goes to ``BinanceConnection``."""

    def __init__(
        self,
        ws_api_url: str,
        symbol: str,
        api_key: str,
        signer: Signer,
        *,
        base_asset: str = "",
        quote_asset: str = "",
        **connection: Any,
    ) -> None:
        super().__init__(ws_api_url, symbol, api_key, signer, **connection)
        self.legs = OrderLegs(base_asset, quote_asset)
        """Each order's legs across ``order.cancelReplace`` (``kernel.binance.legs``)."""
        self._order_ids: dict[int, str] = {}  # Binance order id -> our client order id (fills name the former)
        self.base_asset = base_asset
        self.quote_asset = quote_asset

    async def order_status(self, client_order_id: str, timeout: float = 5.0) -> OrderSnapshot | None:
        """Binance's view of one order (its newest leg, with the fills of every leg); ``None`` when
        it does not know it."""
        del timeout  # every request is bounded by request_timeout
        try:
            response = await self._signed("order.status", {"symbol": self.symbol, "origClientOrderId": client_order_id})
        except BinanceUnknownOrder:
            return None
        order = wire.decode_result(response, wire.OrderJson)
        return await self._snapshot(order, client_order_id)

    async def _snapshot(self, order: wire.OrderJson, coid: str = "") -> OrderSnapshot:
        """``order`` (a leg) as our order: plus what its earlier legs executed (its history is read
        when not known here), with the trades of every leg (``myTrades`` of each, when anything executed)."""
        coid = coid or order.orig_client_order_id or order.client_order_id
        self._order_ids[order.order_id] = coid
        carried = self.legs.carried_for(coid, order.order_id)
        if carried is None:
            carried, ids = await self._history(coid, order.order_id)
            if reports.status_of(order.status) in reports.LIVE:
                self.legs.adopt(coid, order.order_id, carried, ids[:-1])
        else:
            ids = self.legs.leg_ids(coid, order.order_id)
        trades: list[wire.TradeRow] = []
        while True:
            snapshot = reports.order_snapshot(
                order,
                trades,
                carried_qty=carried,
                base_asset=self.base_asset,
                quote_asset=self.quote_asset,
                client_order_id=coid,
            )
            if trades or not snapshot.cum_qty:
                return snapshot
            for leg in ids:
                trades.extend(await self._trades({"orderId": leg}))
            if not trades:
                return snapshot

    async def _history(self, coid: str, newest: int) -> tuple[Decimal, list[int]]:
        """What the legs of ``coid`` before ``newest`` executed, and every leg's id: ``allOrders``
        from its first leg up, paged until ``newest``."""
        start = self.legs.first_leg(coid) or newest
        rows: list[wire.OrderJson] = []
        while start <= newest:
            params: Json = {"symbol": self.symbol, "orderId": start, "limit": MAX_ORDERS_PAGE}
            page = wire.decode_result(await self._signed("allOrders", params), list[wire.OrderJson])
            rows.extend(page)
            if len(page) < MAX_ORDERS_PAGE:
                break
            start = max(o.order_id for o in page) + 1
        for row in rows:
            if row.client_order_id == coid:
                self._order_ids[row.order_id] = coid
        return leg_history(rows, coid, newest)

    async def _trades(self, params: Json) -> list[wire.TradeRow]:
        response = await self._signed("myTrades", {"symbol": self.symbol, **params})
        return wire.decode_result(response, list[wire.TradeRow])

    async def open_orders(self, timeout: float = 5.0) -> list[OrderSnapshot]:
        """Every order of the symbol Binance holds as not done, each with its fills (as ``order_status``)."""
        del timeout
        response = await self._signed("openOrders.status", {"symbol": self.symbol})
        orders = wire.decode_result(response, list[wire.OrderJson])
        return sorted([await self._snapshot(o) for o in orders], key=lambda o: o.client_order_id)

    async def open_orders_page(self, after: str = "", limit: int | None = None, timeout: float = 5.0) -> OpenOrders:
        """The open orders whose client order id sorts after ``after``, at most ``limit`` (paged here:
        Binance answers them all at once)."""
        orders = [o for o in await self.open_orders(timeout) if o.client_order_id > after]
        size = limit or PAGE_DEFAULT
        page = orders[:size]
        more = len(orders) > size
        return OpenOrders(orders=page, more=more, next=page[-1].client_order_id if more and page else "")

    async def fills_page(self, after: int, limit: int | None = None, timeout: float = 5.0) -> Fills:
        """The symbol's fills with trade id above ``after`` (``fill_seq`` = Binance's trade id), oldest
        first, each named by its order's client order id; ``last_fill_seq`` is the account's newest
        trade id of the symbol (``myTrades`` names only the ``orderId``: its client order id is asked
        once per order with ``order.status`` and remembered)."""
        del timeout
        size = min(limit or MAX_TRADES_PAGE, MAX_TRADES_PAGE)
        rows = sorted(await self._trades({"fromId": after + 1, "limit": size}), key=lambda r: r.id)
        newest = await self._trades({"limit": 1})
        fills = []
        for row in rows:
            if row.id > after:
                coid = await self._client_order_id(row.order_id)
                fills.append(reports.fill_of(row, coid, base_asset=self.base_asset, quote_asset=self.quote_asset))
        last = fills[-1].fill_seq if fills else after
        newest_id = max([last, *(r.id for r in newest)])
        return Fills(fills=fills, more=len(rows) >= size, next=last, last_fill_seq=newest_id)

    async def _client_order_id(self, order_id: int) -> str:
        coid = self._order_ids.get(order_id)
        if coid is None:
            response = await self._signed("order.status", {"symbol": self.symbol, "orderId": order_id})
            order = wire.decode_result(response, wire.OrderJson)
            coid = self._order_ids[order_id] = order.client_order_id
        return coid

    async def fills_since(self, after: int, timeout: float = 5.0) -> list[Fill]:
        """Every fill with ``fill_seq > after``, in order (every page)."""
        return await every_fill(lambda cursor: self.fills_page(cursor, timeout=timeout), after)
