"""The legs of our orders at Binance: one client order id, several ``orderId`` across replaces.

``order.cancelReplace`` cancels an order and places a new one reusing our client order id: a new
``orderId`` (a new *leg*) starting at ``executedQty`` 0 with ``origQty`` = what was left. Our order's
``qty``/``cum_qty`` are the newest leg's plus ``carried_qty``, what its earlier legs executed.

* ``OrderLegs`` keeps that per client order id, fed every ``executionReport`` (``report``) and told
  of each cancelReplace (``begin_replace``/``end_replace``). It also knows each order's *first* leg
  (seen here, or after a restart ``remember``-ed from the journal's ``venue_order_id``, which a
  replace never changes): a leg other than the first whose carried quantity it does not know needs
  the order's history (``carried_for``/``needs_history`` say so).
* ``leg_history``: from ``allOrders`` rows (every order from the first leg's ``orderId`` up), the
  carried quantity of the newest leg and the ids of every leg.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Final

from kernel.binance.errors import BinanceWireError
from kernel.binance.reports import LIVE, client_order_id_of, execution_report
from kernel.binance.wire import ExecutionReportEvent, OrderJson
from kernel.paper_protocol import Execution
from machines.decimals import DecimalError, Sign, parse_decimal

ZERO: Final = Decimal(0)


def _qty(value: str, name: str) -> Decimal:
    try:
        return parse_decimal(value, name, sign=Sign.non_negative, plain_text=True)
    except DecimalError as exc:
        raise BinanceWireError(str(exc)) from None


def leg_history(rows: Iterable[OrderJson], client_order_id: str, newest: int) -> tuple[Decimal, list[int]]:
    """The legs of ``client_order_id`` up to ``newest`` (its newest leg's ``orderId``) in ``rows``
    (``allOrders`` answers): what the legs before ``newest`` executed, and every leg's id, oldest
    first, ending with ``newest``. Raises ``BinanceWireError`` for a malformed ``executedQty``."""
    legs = sorted(
        (o for o in rows if client_order_id in (o.client_order_id, o.orig_client_order_id) and o.order_id < newest),
        key=lambda o: o.order_id,
    )
    carried = sum((_qty(o.executed_qty, "executedQty") for o in legs), ZERO)
    return carried, [*(o.order_id for o in legs), newest]


class _Leg:
    __slots__ = ("carried", "cum", "order_id", "previous", "replacing")

    def __init__(self, order_id: int, carried: Decimal = ZERO, *, previous: tuple[int, ...] = ()) -> None:
        self.order_id = order_id
        self.carried = carried
        self.cum = ZERO
        self.replacing = False
        self.previous = previous


class OrderLegs:
    """Per client order id: the ``orderId`` of its current leg, what earlier legs executed
    (``carried_qty``), whether an ``order.cancelReplace`` is in flight, and its first leg.
    An order's current leg is forgotten once done (its first leg is kept)."""

    __slots__ = ("_first", "_legs", "base_asset", "quote_asset")

    def __init__(self, base_asset: str = "", quote_asset: str = "") -> None:
        """``base_asset``/``quote_asset`` value fees (``reports.fee_in_quote``)."""
        self.base_asset = base_asset
        self.quote_asset = quote_asset
        self._legs: dict[str, _Leg] = {}
        self._first: dict[str, int] = {}

    def remember(self, client_order_id: str, first_order_id: int) -> None:
        """After a restart: ``client_order_id``'s first leg is ``first_order_id`` (the journal's
        ``venue_order_id``); its later legs, if any, are learned from its history."""
        self._first[client_order_id] = first_order_id

    def first_leg(self, client_order_id: str) -> int | None:
        """The ``orderId`` of ``client_order_id``'s first leg, when known."""
        return self._first.get(client_order_id)

    def seed(self, client_order_id: str, order_id: int, carried_qty: Decimal, previous: Iterable[int] = ()) -> None:
        """Start from a known leg: ``order_id`` is current, earlier legs (``previous``) executed ``carried_qty``."""
        previous = tuple(previous)
        self._first.setdefault(client_order_id, previous[0] if previous else order_id)
        self._legs[client_order_id] = _Leg(order_id, carried_qty, previous=previous)

    def adopt(self, client_order_id: str, order_id: int, carried_qty: Decimal, previous: Iterable[int]) -> None:
        """``seed`` from the order's history, unless its legs are already followed here."""
        if client_order_id not in self._legs:
            self.seed(client_order_id, order_id, carried_qty, previous)

    def carried_for(self, client_order_id: str, order_id: int) -> Decimal | None:
        """What the legs before ``order_id`` executed, when known here: ``None`` when ``order_id`` is
        not the order's current or first leg (its history must be read)."""
        leg = self._legs.get(client_order_id)
        if leg is not None:
            return leg.carried if leg.order_id == order_id else None
        return ZERO if self._first.get(client_order_id, order_id) == order_id else None

    def needs_history(self, client_order_id: str, order_id: int) -> bool:
        """True for an event of a leg that follows legs not seen here (replaced before a restart)."""
        return client_order_id not in self._legs and self._first.get(client_order_id, order_id) != order_id

    def leg_ids(self, client_order_id: str, order_id: int) -> list[int]:
        """The ids of the legs up to ``order_id`` known here, oldest first (``[order_id]`` if none)."""
        leg = self._legs.get(client_order_id)
        if leg is not None and leg.order_id == order_id:
            return [*leg.previous, order_id]
        return [order_id]

    def begin_replace(self, client_order_id: str, order_id: int, cum_qty: Decimal | None = None) -> None:
        """An ``order.cancelReplace`` of ``client_order_id``, whose current leg is ``order_id``, was
        sent; ``cum_qty``: our order's cumulative quantity as last read (its status)."""
        leg = self._legs.get(client_order_id)
        if leg is None or leg.order_id != order_id:
            leg = _Leg(order_id, ZERO if leg is None else leg.carried)
            self._legs[client_order_id] = leg
        self._first.setdefault(client_order_id, order_id)
        if cum_qty is not None:
            leg.cum = max(leg.cum, cum_qty - leg.carried)
        leg.replacing = True

    def end_replace(self, client_order_id: str) -> None:
        """The cancelReplace was refused and nothing changed (its cancel half failed)."""
        leg = self._legs.get(client_order_id)
        if leg is not None:
            leg.replacing = False

    def forget(self, client_order_id: str) -> None:
        """Drop ``client_order_id``'s current leg (its order is done)."""
        self._legs.pop(client_order_id, None)

    def carried_qty(self, client_order_id: str) -> Decimal:
        """What earlier legs of ``client_order_id`` executed (0 when never replaced or not followed)."""
        leg = self._legs.get(client_order_id)
        return ZERO if leg is None else leg.carried

    def replacing(self, client_order_id: str) -> bool:
        """True while a cancelReplace of ``client_order_id`` is in flight."""
        leg = self._legs.get(client_order_id)
        return leg is not None and leg.replacing

    def report(self, event: ExecutionReportEvent) -> Execution | None:
        """``event`` as our ``Execution``; ``None`` for the old leg's cancel during a replace and for
        a late event of a leg already replaced. Raises ``BinanceWireError`` as
        ``reports.execution_report`` does (the legs are then unchanged)."""
        coid = client_order_id_of(event)
        leg = self._legs.get(coid) or _Leg(event.order_id)
        if event.order_id in leg.previous:
            return None
        if event.order_id == leg.order_id:
            replacing = leg.replacing and event.execution_type == "CANCELED"
        elif leg.replacing:  # the first event of the leg the cancelReplace placed
            leg = _Leg(event.order_id, leg.carried + leg.cum, previous=(*leg.previous, leg.order_id))
            replacing = True
        else:
            # A leg not followed here (its history could not be read): reported on its own;
            # the status query and reconciliation settle the totals.
            return execution_report(event, base_asset=self.base_asset, quote_asset=self.quote_asset)
        report = execution_report(
            event,
            carried_qty=leg.carried,
            replacing=replacing,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
        )
        leg.cum = max(leg.cum, _qty(event.cum_qty, "z"))
        self._first.setdefault(coid, (*leg.previous, leg.order_id)[0])
        if report is not None and report.status not in LIVE:
            self._legs.pop(coid, None)
        else:
            self._legs[coid] = leg
        return report
