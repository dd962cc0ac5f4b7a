"""Binance's order reports in our venue types (``kernel.paper_protocol``): the mapping is data.

``STATUS_MAP`` (order status → our status) and ``EXEC_MAP`` (execution type → our execution kind)
are the tables ``docs/venues/binance.md`` shows; the functions below apply them:

* ``execution_report``: a user-data ``executionReport`` → ``Execution`` (or ``None`` for the
  cancel leg of our own ``order.cancelReplace``).
* ``order_snapshot``: an order object (``order.status``, ``openOrders.status``) and its
  ``myTrades`` rows → ``OrderSnapshot``; ``fill_of``: one ``myTrades`` row → ``Fill``.
* ``kernel.binance.legs.OrderLegs`` keeps ``execution_report`` per client order id across
  ``order.cancelReplace`` legs.
* ``order_rejected``: a refused ``order.place`` → ``rejected`` (``None`` for a duplicate id).
* ``cancel_rejected`` / ``replace_rejected``: a refused cancel or replace → ``Execution`` whose
  reason starts ``unknown order`` when Binance no longer has the order working (-2011 "Unknown
  order sent.", -2013, -2026), so the order manager settles it with a status query.
* ``balances_of``: ``account.status`` → ``BalancesReport``.

Two Binance facts shape the details:

* A cancel's report names **our** id in ``C`` (``origClientOrderId``) and the cancel request's
  own id in ``c``; every other report names ours in ``c``. ``client_order_id_of`` picks the right one.
* ``order.cancelReplace`` cancels the order and places a new one (new ``orderId``, same client
  order id: ours). The new leg starts at ``executedQty`` 0 with ``origQty`` = what is left to fill,
  so the caller passes ``carried_qty`` (what earlier legs of the same client order id executed):
  our ``qty`` and ``cum_qty`` are the leg's plus ``carried_qty``. While a replace is in flight
  (``replacing``), the old leg's ``CANCELED`` is not ours to report (``None``), the new leg's
  ``NEW`` is our ``replaced``, and a new leg ``REJECTED`` after the cancel went through means our
  order is gone: ``canceled``.

Fees: our ``Fill.fee`` is in the quote asset. A commission in the quote asset is taken as is; in
the base asset it is valued at the fill price; in any other asset (BNB) it cannot be valued here
and counts 0 (``fee_in_quote``).

Liquidity: a fill is ``maker`` or ``taker`` as Binance says (``m`` of an executionReport, ``isMaker``
of a ``myTrades`` row; ``liquidity_of``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Final, TypeVar

from kernel.binance.errors import BinanceWireError, is_duplicate_order, is_unknown_order
from kernel.binance.wire import (
    AccountStatus,
    ExecutionReportEvent,
    OrderJson,
    TradeRow,
)
from kernel.paper_protocol import (
    Balance,
    BalancesReport,
    Exec,
    Execution,
    Fill,
    Liquidity,
    OrderSnapshot,
    OrderType,
    Side,
    Status,
    TimeInForce,
)
from machines.decimals import DecimalError, Sign, parse_decimal

ZERO: Final = Decimal(0)

STATUS_MAP: Final[Mapping[str, Status]] = {
    "NEW": "new",
    "PENDING_NEW": "new",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "PENDING_CANCEL": "new",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
}
"""Binance order status (``X``, ``status``) → our order status. ``PENDING_NEW`` and
``PENDING_CANCEL`` (documented as unused) are still working: ``new``, or ``partially_filled`` once
something executed (``LIVE_WITH_FILLS``). ``EXPIRED_IN_MATCH`` (self-trade prevention) is ``expired``."""

LIVE_WITH_FILLS: Final[Mapping[Status, Status]] = {"new": "partially_filled"}
"""A working status that reads differently once part of the order executed."""

EXEC_MAP: Final[Mapping[str, Exec]] = {
    "NEW": "new",
    "CANCELED": "canceled",
    "REPLACED": "replaced",
    "AMENDMENT": "replaced",
    "REJECTED": "rejected",
    "TRADE": "trade",
    "EXPIRED": "expired",
    "TRADE_PREVENTION": "expired",
}
"""Binance execution type (``x``) → our execution kind. ``REPLACED`` is ``order.amend.keepPriority``
(the docs' name; ``AMENDMENT`` is read the same way should it appear). ``TRADE_PREVENTION`` is an
expiry by self-trade prevention."""

REPLACE_EXEC_MAP: Final[Mapping[str, Exec | None]] = {
    "CANCELED": None,
    "NEW": "replaced",
    "REJECTED": "canceled",
}
"""While our ``order.cancelReplace`` is in flight: the old leg's cancel is not reported, the new
leg's ``NEW`` is our ``replaced``, the new leg's reject (the cancel went through) leaves our order
``canceled``. Other types map by ``EXEC_MAP``."""

EXEC_REASONS: Final[Mapping[str, str]] = {
    "TRADE_PREVENTION": "self-trade prevention",
    "EXPIRED": "expired",
}
"""A reason for execution types that carry none of their own."""

SIDE_MAP: Final[Mapping[str, Side]] = {"BUY": "buy", "SELL": "sell"}
"""Binance side → ours."""
TYPE_MAP: Final[Mapping[str, OrderType]] = {"LIMIT": "limit", "LIMIT_MAKER": "limit", "MARKET": "market"}
"""Binance order type → ours (``LIMIT_MAKER`` is a post-only limit order)."""
TIF_MAP: Final[Mapping[str, TimeInForce]] = {"GTC": "gtc", "IOC": "ioc", "FOK": "fok"}
"""Binance time in force → ours (a ``MARKET`` or ``LIMIT_MAKER`` order reports ``GTC``)."""

BINANCE_SIDE: Final[Mapping[Side, str]] = {"buy": "BUY", "sell": "SELL"}
"""Our side → Binance's ``side`` parameter."""
BINANCE_TYPE: Final[Mapping[OrderType, str]] = {"limit": "LIMIT", "market": "MARKET"}
"""Our order type → Binance's ``type`` parameter."""
BINANCE_TIF: Final[Mapping[TimeInForce, str]] = {"gtc": "GTC", "ioc": "IOC", "fok": "FOK"}
"""Our time in force → Binance's ``timeInForce`` (``day`` has no Binance equivalent)."""

UNKNOWN_ORDER = "unknown order"
"""How a reason starts when Binance no longer has the order working (``machines.order_reports``)."""
LIVE: Final = frozenset({"new", "partially_filled"})


_V = TypeVar("_V")


def _look_up(table: Mapping[str, _V], key: str, what: str) -> _V:
    try:
        return table[key]
    except KeyError:
        raise BinanceWireError(f"unknown {what} {key!r}") from None


def status_of(binance_status: str, cum_qty: Decimal = ZERO) -> Status:
    """Our status for Binance's ``binance_status`` with ``cum_qty`` executed.
    Raises ``BinanceWireError`` for an unknown status."""
    status = _look_up(STATUS_MAP, binance_status, "order status")
    return LIVE_WITH_FILLS.get(status, status) if cum_qty > 0 else status


def _decimal(value: str, name: str, sign: Sign = Sign.non_negative) -> Decimal:
    try:
        return parse_decimal(value, name, sign=sign, plain_text=True)
    except DecimalError as exc:
        raise BinanceWireError(str(exc)) from None


def fee_in_quote(commission: Decimal, asset: str | None, price: Decimal, base_asset: str, quote_asset: str) -> Decimal:
    """``commission`` paid in ``asset`` valued in the quote asset: as is in the quote asset (or when
    ``quote_asset`` is not given), times ``price`` in the base asset, 0 in any other asset."""
    if not quote_asset or asset == quote_asset:
        return commission
    if asset == base_asset:
        return commission * price
    return ZERO


def client_order_id_of(event: ExecutionReportEvent) -> str:
    """Our client order id in ``event``: ``C`` (the original id) when set, as on a cancel; else ``c``."""
    return event.orig_client_order_id or event.client_order_id


def _price(order_type: str, text: str) -> Decimal | None:
    value = _decimal(text, "price")
    return None if order_type == "MARKET" or not value else value


def execution_report(
    event: ExecutionReportEvent,
    *,
    carried_qty: Decimal = ZERO,
    replacing: bool = False,
    base_asset: str = "",
    quote_asset: str = "",
) -> Execution | None:
    """``event`` as our ``Execution``; ``None`` for the old leg's cancel while ``replacing``.

    ``carried_qty``: what earlier legs of this client order id executed (0 unless it was replaced
    by ``order.cancelReplace``). ``base_asset``/``quote_asset`` value the fee (``fee_in_quote``).
    Raises ``BinanceWireError`` for an unknown execution type or status or a malformed number.
    """
    kind_name = event.execution_type
    kind: Exec | None = (
        REPLACE_EXEC_MAP[kind_name]
        if replacing and kind_name in REPLACE_EXEC_MAP
        else _look_up(EXEC_MAP, kind_name, "execution type")
    )
    if kind is None:
        return None
    leg_qty = _decimal(event.qty, "q")
    leg_cum = _decimal(event.cum_qty, "z")
    cum = carried_qty + leg_cum
    status = "canceled" if replacing and kind_name == "REJECTED" else status_of(event.status, cum)
    leaves = leg_qty - leg_cum if status in LIVE else ZERO
    coid = client_order_id_of(event)
    fill = None
    if kind_name == "TRADE":
        last_price = _decimal(event.last_price, "L", Sign.positive)
        fill = Fill(
            trade_id=str(event.trade_id),
            qty=_decimal(event.last_qty, "l", Sign.positive),
            price=last_price,
            fee=fee_in_quote(
                _decimal(event.commission, "n", Sign.any), event.commission_asset, last_price, base_asset, quote_asset
            ),
            fill_seq=event.trade_id,
            ts_ms=event.transaction_time,
            client_order_id=coid,
            liquidity=liquidity_of(event.is_maker),
        )
    return Execution(
        client_order_id=coid,
        exec=kind,
        status=status,
        venue_order_id=str(event.order_id),
        qty=carried_qty + leg_qty,
        price=_price(event.order_type, event.price),
        cum_qty=cum,
        leaves_qty=leaves,
        ts_ms=event.transaction_time,
        fill=fill,
        reason=_reason(event, replacing),
    )


def _reason(event: ExecutionReportEvent, replacing: bool) -> str | None:
    kind = event.execution_type
    if kind == "REJECTED":
        why = event.reject_reason if event.reject_reason not in ("", "NONE") else "rejected"
        return f"replace: new order rejected after the cancel: {why}" if replacing else why
    if kind in ("EXPIRED", "TRADE_PREVENTION"):
        return event.expiry_reason or EXEC_REASONS[kind]
    return None


def liquidity_of(is_maker: bool | None) -> Liquidity | None:
    """Binance's "is this trade the maker side?" (``m`` of an executionReport, ``isMaker`` of a
    ``myTrades`` row) as a fill's ``liquidity``; ``None`` when Binance left it out."""
    if is_maker is None:
        return None
    return "maker" if is_maker else "taker"


def fill_of(row: TradeRow, client_order_id: str = "", *, base_asset: str = "", quote_asset: str = "") -> Fill:
    """One ``myTrades`` row as our ``Fill``: ``trade_id`` and ``fill_seq`` are Binance's trade ``id``
    (``myTrades`` does not name the client order id: pass it). Raises ``BinanceWireError`` for a malformed number."""
    price = _decimal(row.price, "price", Sign.positive)
    return Fill(
        trade_id=str(row.id),
        qty=_decimal(row.qty, "qty", Sign.positive),
        price=price,
        fee=fee_in_quote(
            _decimal(row.commission, "commission", Sign.any), row.commission_asset, price, base_asset, quote_asset
        ),
        fill_seq=row.id,
        ts_ms=row.time,
        client_order_id=client_order_id,
        liquidity=liquidity_of(row.is_maker),
    )


def order_snapshot(
    order: OrderJson,
    trades: Iterable[TradeRow] = (),
    *,
    carried_qty: Decimal = ZERO,
    base_asset: str = "",
    quote_asset: str = "",
    client_order_id: str = "",
) -> OrderSnapshot:
    """``order`` (an order object) and its ``trades`` (the ``myTrades`` rows of every leg of this
    client order id; rows are sorted by trade id) as our ``OrderSnapshot``. ``carried_qty`` as for
    ``execution_report``; ``client_order_id`` overrides the order's own (a cancel answer names the
    cancel's id there). Raises ``BinanceWireError`` for an unknown status, type, side or time in force."""
    coid = client_order_id or order.orig_client_order_id or order.client_order_id
    leg_qty = _decimal(order.orig_qty, "origQty")
    leg_cum = _decimal(order.executed_qty, "executedQty")
    cum = carried_qty + leg_cum
    status = status_of(order.status, cum)
    fills = [
        fill_of(row, coid, base_asset=base_asset, quote_asset=quote_asset) for row in sorted(trades, key=lambda r: r.id)
    ]
    order_type = _look_up(TYPE_MAP, order.type, "order type")
    return OrderSnapshot(
        client_order_id=coid,
        venue_order_id=str(order.order_id),
        instrument=order.symbol,
        side=_look_up(SIDE_MAP, order.side, "side"),
        order_type=order_type,
        tif=_look_up(TIF_MAP, order.time_in_force, "time in force"),
        qty=carried_qty + leg_qty,
        price=_price(order.type, order.price),
        status=status,
        cum_qty=cum,
        leaves_qty=leg_qty - leg_cum if status in LIVE else ZERO,
        fills=fills,
    )


def _request_rejected(kind: Exec, code: int, msg: str, client_order_id: str, ts_ms: int) -> Execution:
    unknown = is_unknown_order(code, msg)
    return Execution(
        client_order_id=client_order_id,
        exec=kind,
        # Our protocol has no status for "no such order": "rejected" is the closest done status
        # (as the paper venue reports it); otherwise the order is taken to be still working.
        status="rejected" if unknown else "new",
        venue_order_id="",
        qty=ZERO,
        price=None,
        cum_qty=ZERO,
        leaves_qty=ZERO,
        ts_ms=ts_ms,
        reason=f"{UNKNOWN_ORDER}: {code} {msg}" if unknown else f"{code} {msg}",
    )


def order_rejected(code: int, msg: str, client_order_id: str, ts_ms: int = 0) -> Execution | None:
    """A refused ``order.place`` (status 400: a filter failure, insufficient balance, ...) as our
    ``rejected``; ``None`` for a duplicate client order id (``errors.is_duplicate_order``): the
    order exists, so the caller queries its status instead. Rate limits (429) and unknown outcomes
    (5xx, -1006, -1007) are not rejections: do not pass them here. The reason is Binance's ``msg``."""
    if is_duplicate_order(code, msg):
        return None
    return Execution(
        client_order_id=client_order_id,
        exec="rejected",
        status="rejected",
        venue_order_id="",
        qty=ZERO,
        price=None,
        cum_qty=ZERO,
        leaves_qty=ZERO,
        ts_ms=ts_ms,
        reason=msg,
    )


def cancel_rejected(code: int, msg: str, client_order_id: str, ts_ms: int = 0) -> Execution:
    """A refused ``order.cancel`` as ``cancel_rejected``; the reason starts ``unknown order`` (status
    ``rejected``) when Binance no longer has the order working (``errors.is_unknown_order``)."""
    return _request_rejected("cancel_rejected", code, msg, client_order_id, ts_ms)


def replace_rejected(code: int, msg: str, client_order_id: str, ts_ms: int = 0) -> Execution:
    """A refused ``order.cancelReplace``/``order.amend.keepPriority`` as ``replace_rejected`` (the
    cancel half's ``code``/``msg`` for a cancelReplace); ``unknown order`` as for ``cancel_rejected``."""
    return _request_rejected("replace_rejected", code, msg, client_order_id, ts_ms)


def balances_of(account: AccountStatus, assets: Iterable[str] = ()) -> BalancesReport:
    """``account.status`` balances as ours (``total`` = free + locked, ``available`` = free): every
    asset named in ``assets`` (zero when absent) and every asset with a non-zero balance, by name."""
    wanted = set(assets)
    rows: dict[str, Balance] = {}
    for item in account.balances:
        free = _decimal(item.free, f"{item.asset} free")
        locked = _decimal(item.locked, f"{item.asset} locked")
        if free or locked or item.asset in wanted:
            rows[item.asset] = Balance(asset=item.asset, total=free + locked, available=free)
    for asset in wanted - rows.keys():
        rows[asset] = Balance(asset=asset, total=ZERO, available=ZERO)
    return BalancesReport(balances=[rows[name] for name in sorted(rows)])
