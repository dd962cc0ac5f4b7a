"""``BinanceExecutionClient``: the kernel's ``ExecutionClient`` on Binance spot (one symbol).

Everything goes over one WebSocket API connection (``kernel.binance.session``): orders, queries
and the user data stream (``userDataStream.subscribe.signature``, made again on every new
connection before the session counts as up, so no execution report is missed without the kernel
knowing: a new ``generation`` makes it reconcile). Binance's messages are translated into the
paper venue's types (``kernel.binance.reports``), so the order manager and reconciliation do not
change with the venue.

Order requests are sent and their answers handled in the background:

* ``order.place`` answered with an error: an ``Execution`` ``rejected`` (a duplicate client order id
  instead gives the order's status as a duplicate-submit ``OrderStatus``); ``order.cancel`` refused:
  ``cancel_rejected`` (``unknown order ...`` when Binance has no such working order).
* No answer in time, a 5xx or a lost connection: nothing is re-sent. The order manager resolves an
  order left in flight with ``order_status`` (Binance's answer is authoritative).
* 429: requests pause until ``retryAfter``; 418: order entry halts until the ban ends. A request
  refused for either (by Binance, or locally meanwhile) is an ``Error`` ``rate_limited`` naming the
  order, with ``retry_after_ms``. -1021 (timestamp outside ``recvWindow``): the server clock is
  measured again and the request (which Binance did not execute) sent once more.

Replace: a smaller quantity at the same price is ``order.amend.keepPriority`` (queue position and
ids kept); anything else ``order.cancelReplace`` (``STOP_ON_FAILURE``) reusing our client order id
for the new order, whose quantity is the new total less what the old one filled. Binance reports a
cancel-replace as the old order canceled and a new one: the client folds that into one
``replaced`` report and adds the quantity filled before the replace to the new order's reports, so
an order keeps one id and one cumulative quantity for life (its ``venue_order_id`` changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from decimal import Decimal
from typing import Any

from kernel.binance import reports, wire
from kernel.binance.connection import BinanceConnection
from kernel.binance.errors import (
    CANCEL_REJECTED,
    CANCEL_REPLACE_PARTIALLY_FAILED,
    NEW_ORDER_REJECTED,
    TOO_MANY_ORDERS,
    BinanceBanned,
    BinanceError,
    BinanceRateLimited,
    BinanceRejected,
    BinanceUnknownOrder,
    BinanceUnknownOutcome,
    BinanceWireError,
)
from kernel.binance.session import Json, WsApiSession
from kernel.binance.signing import Signer
from kernel.execution import Report, VenueError, VenueTimeout, VenueUnavailable
from kernel.paper_protocol import (
    PAGE_DEFAULT,
    Balance,
    Error,
    Execution,
    Fill,
    Fills,
    NewOrder,
    OpenOrders,
    OrderSnapshot,
    OrderStatus,
)
from machines.decimals import DecimalError, Sign, parse_decimal

log = logging.getLogger(__name__)
ZERO = Decimal(0)

_TIF = {"gtc": "GTC", "ioc": "IOC", "fok": "FOK"}
MAX_TRADES_PAGE = 1000
"""The most rows ``myTrades`` gives per request."""


def order_params(order: NewOrder) -> Json:
    """``order.place`` parameters of ``order`` (before signing)."""
    params: Json = {
        "symbol": order.instrument,
        "side": order.side.upper(),
        "type": order.order_type.upper(),
        "quantity": order.qty,
        "newClientOrderId": order.client_order_id,
        "newOrderRespType": "ACK",
    }
    if order.order_type == "limit":
        params["timeInForce"] = _TIF.get(order.tif, "GTC")
        params["price"] = order.price
    return params


def rejected(order: NewOrder, reason: str, ts_ms: int) -> Execution:
    """``order`` refused before Binance executed anything."""
    zero = ZERO
    return Execution(
        client_order_id=order.client_order_id,
        exec="rejected",
        status="rejected",
        venue_order_id="",
        qty=order.qty,
        price=order.price,
        cum_qty=zero,
        leaves_qty=zero,
        ts_ms=ts_ms,
        reason=reason,
    )


def replace_refused(current: OrderSnapshot, reason: str, ts_ms: int) -> Execution:
    """A replace of ``current`` refused here (nothing sent): the order stays as it is."""
    return Execution(
        client_order_id=current.client_order_id,
        exec="replace_rejected",
        status=current.status,
        venue_order_id=current.venue_order_id,
        qty=current.qty,
        price=current.price,
        cum_qty=current.cum_qty,
        leaves_qty=current.leaves_qty,
        ts_ms=ts_ms,
        reason=reason,
    )


class BinanceExecutionClient(BinanceConnection):
    """``ExecutionClient`` (and ``reconcile.PagingClient``) on Binance spot for ``symbol``.

    ``signer`` signs requests for ``api_key`` (``HmacSigner`` or ``Ed25519Signer``); ``connection``
    goes to ``BinanceConnection`` (``recv_window_ms``, ``request_timeout``, ``now_ms``, ``session_options``)."""

    def __init__(
        self,
        ws_api_url: str,
        symbol: str,
        api_key: str,
        signer: Signer,
        *,
        report_queue: int = 10_000,
        on_anomaly: Callable[[str, str, str], None] | None = None,
        base_asset: str = "",
        quote_asset: str = "",
        **connection: Any,
    ) -> None:
        super().__init__(ws_api_url, symbol, api_key, signer, **connection)
        self.on_anomaly = on_anomaly
        self._reports: asyncio.Queue[Report] = asyncio.Queue(report_queue)
        self._tasks: set[asyncio.Task[None]] = set()
        self._carried: dict[str, Decimal] = {}  # per client order id: what its earlier legs executed
        self._leg_carry: dict[int, Decimal] = {}  # per replaced leg's order id: its own carried qty
        self._old_legs: dict[str, list[int]] = {}  # per client order id: its replaced legs' order ids
        self._replacing: dict[str, int] = {}  # client order id -> the leg being replaced, until the new leg shows
        self._order_ids: dict[int, str] = {}  # Binance order id -> our client order id (fills name the former)
        self.base_asset = base_asset
        self.quote_asset = quote_asset
        self.bad_events = 0
        """User data events that could not be read (logged, skipped)."""

    async def _on_open(self, session: WsApiSession) -> None:
        """A new connection: learn the symbol's assets once (fees are valued in the quote asset),
        then measure the clock and subscribe (``BinanceConnection``)."""
        if not self.quote_asset:
            info = await self.symbol_info(during_open=True)
            if info is None:
                raise BinanceRejected(-1121, f"Invalid symbol: Binance does not list {self.symbol}")
            self.base_asset, self.quote_asset = info.base_asset, info.quote_asset
        await super()._on_open(session)

    async def close(self) -> None:
        """Close the connection, stop reconnecting, cancel the background answers. Idempotent."""
        await super().close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- events -----------------------------------------------------------------------------------

    async def _on_event(self, event: wire.UserEvent) -> None:
        try:
            await self._handle_event(event)
        except (BinanceWireError, DecimalError) as exc:  # one bad event is skipped, loudly
            self.bad_events += 1
            log.error("Binance event skipped (%s): %r", exc, event)
            if self.on_anomaly is not None:
                self.on_anomaly("bad_event", str(exc), repr(event)[:500])

    async def _handle_event(self, event: wire.UserEvent) -> None:
        if isinstance(event, wire.ExecutionReportEvent):
            if event.symbol == self.symbol:
                report = self._translate(event)
                if report is not None:
                    await self._reports.put(report)
        elif isinstance(event, wire.AccountPositionEvent):
            self._merge_balances(event.balances)
        elif isinstance(event, wire.StreamTerminatedEvent):
            await self.ws_api.recycle("user data stream terminated")  # a new session subscribes again

    def _translate(self, event: wire.ExecutionReportEvent) -> Execution | None:
        """An execution report as ours: a cancel-replace folded into one ``replaced`` report, each
        leg's quantities plus what the order's earlier legs executed."""
        coid = reports.client_order_id_of(event)
        self._order_ids[event.order_id] = coid
        old_leg = self._replacing.get(coid)
        replacing = old_leg is not None
        carried = self._leg_carry.get(event.order_id, self._carried.get(coid, ZERO))
        report = reports.execution_report(
            event,
            carried_qty=carried,
            replacing=replacing,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
        )
        if replacing and event.order_id != old_leg and event.execution_type in ("NEW", "REJECTED"):
            del self._replacing[coid]  # the new leg showed: the replace is over
        if report is not None and report.status not in ("new", "partially_filled") and coid not in self._replacing:
            self._forget(coid)  # done: its legs' bookkeeping is no longer needed
        return report

    def seed(self, client_order_id: str, carried_qty: Decimal) -> None:
        """After a restart: ``client_order_id``'s current leg follows legs (cancel-replaced) that
        executed ``carried_qty`` (the journal knows: its cum_qty when it was last replaced). Without
        it, a replaced order's status would count its current leg alone."""
        if carried_qty:
            self._carried[client_order_id] = carried_qty

    def _forget(self, coid: str) -> None:
        self._carried.pop(coid, None)
        for order_id in self._old_legs.pop(coid, ()):
            self._leg_carry.pop(order_id, None)

    def _merge_balances(self, rows: list[wire.PositionBalance] | list[wire.AssetBalance]) -> None:
        merged = {b.asset: b for b in self.last_balances or []}
        for row in rows:
            free, locked = (
                parse_decimal(row.free, f"{row.asset} free", sign=Sign.non_negative),
                parse_decimal(row.locked, f"{row.asset} locked", sign=Sign.non_negative),
            )
            merged[row.asset] = Balance(asset=row.asset, total=free + locked, available=free)
        self.last_balances = sorted(merged.values(), key=lambda b: b.asset)

    # -- order entry ------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _require_up(self, what: str) -> None:
        if not self.connected:
            raise VenueUnavailable(f"not connected to Binance; {what} not sent")

    async def _rate_limited(self, request: str, coid: str, exc: BinanceRateLimited | BinanceBanned) -> None:
        """``request`` (``new_order``, ``cancel_order``, ``replace_order``: what the order manager
        ends) was refused for a rate limit or a ban: nothing was executed."""
        until = exc.until_ms if isinstance(exc, BinanceBanned) else exc.retry_after_ms
        now = self.server_now_ms()  # Binance's retryAfter is on its clock
        retry = max(0, (until or now) - now)
        await self._reports.put(
            Error(code="rate_limited", message=str(exc), ref=request, client_order_id=coid, retry_after_ms=retry)
        )

    async def send_new(self, order: NewOrder) -> None:
        """Place ``order`` (``order.place``); its answer is handled in the background.
        Raises ``VenueUnavailable`` when not connected."""
        self._require_up("order.place")
        self._spawn(self._place(order), f"binance-place {order.client_order_id}")
        await asyncio.sleep(0)  # the request is on the wire before the caller goes on

    def _order_slot(self) -> None:
        """Count one order toward Binance's ``ORDERS`` limits; ``BinanceRateLimited`` (nothing sent)
        when it would pass one."""
        now = self.server_now_ms()
        pause = self.rate_limits.order_pause_ms(now)
        if pause:
            raise BinanceRateLimited(TOO_MANY_ORDERS, "ORDERS limit reached (counted here); not sent", now + pause)
        self.rate_limits.note_order(now)

    async def _place(self, order: NewOrder) -> None:
        coid = order.client_order_id
        try:
            if order.tif == "day":
                raise BinanceRejected(0, "Binance spot has no day orders (time in force gtc, ioc or fok)")
            self.ws_api.check_allowed()
            self._order_slot()
            await self._signed("order.place", order_params(order))
        except (BinanceRateLimited, BinanceBanned) as exc:
            await self._rate_limited("new_order", coid, exc)
        except (VenueTimeout, VenueUnavailable, BinanceUnknownOutcome) as exc:
            log.warning("order.place %s: outcome unknown (%s); the kernel resolves it by order status", coid, exc)
        except BinanceError as exc:
            if exc.code == NEW_ORDER_REJECTED and "duplicate" in exc.msg.lower():
                await self._duplicate(coid)
                return
            log.warning("order.place %s refused: %s", coid, exc)
            await self._reports.put(rejected(order, exc.msg, self._now_ms()))

    async def _duplicate(self, coid: str) -> None:
        try:
            snapshot = await self.order_status(coid, self.request_timeout)
        except VenueError as exc:
            log.warning("duplicate order %s: its status could not be read (%s)", coid, exc)
            return
        await self._reports.put(OrderStatus(client_order_id=coid, order=snapshot, duplicate=True))

    async def send_cancel(self, client_order_id: str) -> None:
        """Cancel an order (``order.cancel``); the answer is handled in the background."""
        self._require_up("order.cancel")
        self._spawn(self._cancel(client_order_id), f"binance-cancel {client_order_id}")
        await asyncio.sleep(0)

    async def _cancel(self, coid: str) -> None:
        try:
            await self._signed("order.cancel", {"symbol": self.symbol, "origClientOrderId": coid})
        except (BinanceRateLimited, BinanceBanned) as exc:
            await self._rate_limited("cancel_order", coid, exc)
        except (VenueTimeout, VenueUnavailable, BinanceUnknownOutcome) as exc:
            log.warning("order.cancel %s: outcome unknown (%s)", coid, exc)
        except BinanceError as exc:
            await self._reports.put(reports.cancel_rejected(exc.code, exc.msg, coid, self._now_ms()))

    async def send_replace(self, client_order_id: str, qty: Decimal | None, price: Decimal | None) -> None:
        """Change an order's quantity and/or price (see the module docstring)."""
        self._require_up("replace")
        self._spawn(self._replace(client_order_id, qty, price), f"binance-replace {client_order_id}")
        await asyncio.sleep(0)

    async def _replace(self, coid: str, qty: Decimal | None, price: Decimal | None) -> None:
        try:
            current = await self.order_status(coid, self.request_timeout)
            if current is None:
                raise BinanceUnknownOrder(-2013, "unknown order: Binance has no such order")
            if current.status not in ("new", "partially_filled"):
                await self._reports.put(replace_refused(current, "too late to replace", self._now_ms()))
                return
            new_qty = current.qty if qty is None else qty
            new_price = current.price if price is None else price
            if new_price == current.price and new_qty < current.qty:
                await self._signed(
                    "order.amend.keepPriority",
                    {
                        "symbol": self.symbol,
                        "origClientOrderId": coid,
                        "newQty": new_qty - self._carried.get(coid, ZERO),
                    },
                )
                return
            await self._cancel_replace(current, new_qty, new_price)
        except (BinanceRateLimited, BinanceBanned) as exc:
            await self._rate_limited("replace_order", coid, exc)
        except (VenueTimeout, VenueUnavailable, BinanceUnknownOutcome) as exc:
            log.warning("replace %s: outcome unknown (%s)", coid, exc)
        except BinanceError as exc:
            if exc.code == CANCEL_REPLACE_PARTIALLY_FAILED:  # canceled, but the new leg was refused
                exc = BinanceUnknownOrder(CANCEL_REJECTED, f"Unknown order sent. (canceled; the new order: {exc.msg})")
            await self._reports.put(reports.replace_rejected(exc.code, exc.msg, coid, self._now_ms()))

    async def _cancel_replace(self, current: OrderSnapshot, qty: Decimal, price: Decimal | None) -> None:
        coid = current.client_order_id
        remaining = qty - current.cum_qty
        if remaining <= 0:
            await self._reports.put(replace_refused(current, "new qty is not above the filled qty", self._now_ms()))
            return
        params: Json = {
            "symbol": self.symbol,
            "cancelReplaceMode": "STOP_ON_FAILURE",
            "cancelOrigClientOrderId": coid,
            "newClientOrderId": coid,
            "side": current.side.upper(),
            "type": current.order_type.upper(),
            "quantity": remaining,
            "newOrderRespType": "ACK",
        }
        if current.order_type == "limit":
            params["timeInForce"] = _TIF.get(current.tif, "GTC")
            params["price"] = price
        old_leg = int(current.venue_order_id)
        before = self._carried.get(coid, ZERO)
        self._leg_carry[old_leg] = before
        self._old_legs.setdefault(coid, []).append(old_leg)
        self.ws_api.check_allowed()
        self._order_slot()
        self._replacing[coid] = old_leg
        self._carried[coid] = current.cum_qty  # before sending: the new leg's report may beat the answer
        try:
            await self._signed("order.cancelReplace", params)
        except BinanceError:
            self._replacing.pop(coid, None)
            self._carried[coid] = before
            raise

    # -- queries ----------------------------------------------------------------------------------

    async def order_status(self, client_order_id: str, timeout: float = 5.0) -> OrderSnapshot | None:
        """Binance's view of one order (with its fills); ``None`` when it does not know it."""
        del timeout  # every request is bounded by request_timeout
        try:
            response = await self._signed("order.status", {"symbol": self.symbol, "origClientOrderId": client_order_id})
        except BinanceUnknownOrder:
            return None
        order = wire.decode_result(response, wire.OrderJson)
        trades = await self._trades({"orderId": order.order_id})
        return self._snapshot(order, trades, client_order_id)

    def _snapshot(self, order: wire.OrderJson, trades: list[wire.TradeRow], coid: str = "") -> OrderSnapshot:
        coid = coid or order.orig_client_order_id or order.client_order_id
        self._order_ids[order.order_id] = coid
        return reports.order_snapshot(
            order,
            trades,
            carried_qty=self._leg_carry.get(order.order_id, self._carried.get(coid, ZERO)),
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            client_order_id=coid,
        )

    async def _trades(self, params: Json) -> list[wire.TradeRow]:
        response = await self._signed("myTrades", {"symbol": self.symbol, **params})
        return wire.decode_result(response, list[wire.TradeRow])

    async def open_orders(self, timeout: float = 5.0) -> list[OrderSnapshot]:
        """Every order of the symbol Binance holds as not done (fills not included)."""
        del timeout
        response = await self._signed("openOrders.status", {"symbol": self.symbol})
        orders = wire.decode_result(response, list[wire.OrderJson])
        return sorted((self._snapshot(o, []) for o in orders), key=lambda o: o.client_order_id)

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
        fills: list[Fill] = []
        while True:
            page = await self.fills_page(after, timeout=timeout)
            fills.extend(page.fills)
            if not page.more or page.next <= after:
                return fills
            after = page.next

    async def account_status(self) -> wire.AccountStatus:
        """``account.status`` (its balances also kept in ``last_balances``)."""
        account = await super().account_status()
        self.last_balances = reports.balances_of(account, (self.base_asset, self.quote_asset)).balances
        return account

    async def request_balances(self) -> None:
        """Ask for the balances in the background (``last_balances``; the stream keeps them fresh)."""
        self._require_up("account.status")
        self._spawn(self._balances(), "binance-balances")

    async def _balances(self) -> None:
        try:
            await self.account_status()
        except VenueError as exc:
            log.warning("account.status failed: %s", exc)

    # -- reports ----------------------------------------------------------------------------------

    async def next_reports(self, max_batch: int = 256) -> list[Report]:
        """Wait for at least one report; return it with others already queued (up to ``max_batch``)."""
        batch = [await self._reports.get()]
        while len(batch) < max_batch and not self._reports.empty():
            batch.append(self._reports.get_nowait())
        return batch

    async def reports(self) -> AsyncGenerator[Report, None]:
        """The report stream, one at a time."""
        while True:
            yield await self._reports.get()
