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
The legs are ``kernel.binance.legs.OrderLegs``. After a restart the kernel tells the client each
live order's first leg (``remember_order``, from the journal); a later leg's first report then waits
for the order's history (``allOrders``, read in the background), and queries
(``kernel.binance.queries``) read it too, so nothing counts a leg alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from kernel.binance import reports, wire
from kernel.binance.errors import (
    CANCEL_REJECTED,
    CANCEL_REPLACE_PARTIALLY_FAILED,
    TOO_MANY_ORDERS,
    BinanceBanned,
    BinanceError,
    BinanceRateLimited,
    BinanceRejected,
    BinanceUnknownOrder,
    BinanceUnknownOutcome,
    BinanceWireError,
)
from kernel.binance.queries import BinanceQueries
from kernel.binance.session import Json, WsApiSession
from kernel.binance.signing import Signer
from kernel.execution import Report, ReportStream, VenueError, VenueTimeout, VenueUnavailable
from kernel.paper_protocol import (
    Balance,
    Error,
    Execution,
    NewOrder,
    OrderSnapshot,
    OrderStatus,
)
from machines.decimals import DecimalError, Sign, parse_decimal

log = logging.getLogger(__name__)
ZERO = Decimal(0)

_TIF = {"gtc": "GTC", "ioc": "IOC", "fok": "FOK"}


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


class BinanceExecutionClient(BinanceQueries, ReportStream):
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
        super().__init__(
            ws_api_url, symbol, api_key, signer, base_asset=base_asset, quote_asset=quote_asset, **connection
        )
        self.on_anomaly = on_anomaly
        self._reports: asyncio.Queue[Report] = asyncio.Queue(report_queue)
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, list[wire.ExecutionReportEvent]] = {}  # events waiting for their order's history
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
            self.legs.base_asset, self.legs.quote_asset = self.base_asset, self.quote_asset
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
        except (BinanceWireError, DecimalError) as exc:
            self._bad_event(exc, event)

    def _bad_event(self, exc: Exception, event: wire.UserEvent) -> None:
        """One bad event is skipped, loudly."""
        self.bad_events += 1
        log.error("Binance event skipped (%s): %r", exc, event)
        if self.on_anomaly is not None:
            self.on_anomaly("bad_event", str(exc), repr(event)[:500])

    async def _handle_event(self, event: wire.UserEvent) -> None:
        if isinstance(event, wire.ExecutionReportEvent):
            if event.symbol == self.symbol:
                await self._execution_event(event)
        elif isinstance(event, wire.AccountPositionEvent):
            self._merge_balances(event.balances)
        elif isinstance(event, wire.StreamTerminatedEvent):
            await self.ws_api.recycle("user data stream terminated")  # a new session subscribes again

    async def _execution_event(self, event: wire.ExecutionReportEvent) -> None:
        """An execution report as ours (``OrderLegs``). The first event of a leg that follows legs
        replaced before a restart waits, with the order's later events, for its history (read in
        the background: this runs on the connection's reader)."""
        coid = reports.client_order_id_of(event)
        self._order_ids[event.order_id] = coid
        held = self._held.get(coid)
        if held is not None:
            held.append(event)
        elif self.legs.needs_history(coid, event.order_id):
            self._held[coid] = [event]
            self._spawn(self._release_held(coid, event.order_id), f"binance-legs {coid}")
        else:
            await self._emit(event)

    async def _emit(self, event: wire.ExecutionReportEvent) -> None:
        try:
            report = self.legs.report(event)
        except (BinanceWireError, DecimalError) as exc:
            self._bad_event(exc, event)
            return
        if report is not None:
            await self._reports.put(report)

    async def _release_held(self, coid: str, order_id: int) -> None:
        try:
            carried, ids = await self._history(coid, order_id)
            self.legs.adopt(coid, order_id, carried, ids[:-1])
        except VenueError as exc:  # reported on their own: status and reconciliation settle the totals
            log.warning("history of %s not read (%s); its events are reported leg by leg", coid, exc)
        held = self._held[coid]
        while held:  # events coming meanwhile join the queue, in order
            await self._emit(held.pop(0))
        del self._held[coid]

    def remember_order(self, client_order_id: str, first_venue_order_id: str) -> None:
        """After a restart: ``client_order_id`` is a live order whose first leg (the journal's
        ``venue_order_id``) is ``first_venue_order_id``; a later leg's reports and snapshots then
        count what the order's earlier legs executed (read from ``allOrders`` once)."""
        try:
            self.legs.remember(client_order_id, int(first_venue_order_id))
        except ValueError:
            log.warning("order %s: venue order id %r is not Binance's", client_order_id, first_venue_order_id)

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
            refused = reports.order_rejected(exc.code, exc.msg, coid, self._now_ms())
            if refused is None:  # a duplicate client order id: an earlier send went through
                await self._duplicate(coid)
                return
            log.warning("order.place %s refused: %s", coid, exc)
            await self._reports.put(refused)

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
                        "newClientOrderId": coid,  # else Binance gives the order a random one
                        "newQty": new_qty - self.legs.carried_qty(coid),
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
        self.ws_api.check_allowed()
        self._order_slot()
        # before sending: the new leg's report may beat the answer
        self.legs.begin_replace(coid, int(current.venue_order_id), current.cum_qty)
        try:
            await self._signed("order.cancelReplace", params)
        except BinanceError:
            self.legs.end_replace(coid)
            raise

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
