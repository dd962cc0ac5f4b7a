"""The paper venue's matching engine: pure, deterministic, no I/O.

Events in, execution reports out (the sans-I/O pattern of DESIGN.md): every method takes the time as
``ts_ms`` and returns the ``protocol.Execution`` messages it caused, in order, after updating the
engine's own order book. Nothing here awaits, sleeps, reads a clock or touches SQLite; the server
persists ``take_changes()`` after each step and only then sends the reports.

Rules (see DESIGN.md, "The paper venue"):

* A resting limit order fills when the market *trades through* its price (buy: trade price below
  the limit; sell: above). Touching the price is not enough. Each trade's volume is shared among
  the crossed orders of each side by price-time priority; fills are at the order's limit price, and
  a trade too small for them all leaves the rest (partially) unfilled.
* Queue-aware on a live book (``depth`` set, ``kernel.venue.live``): an order that comes to rest
  joins the back of the live level at its price (``queue_ahead``: that level's size then). Trades
  at exactly its price (a taker sell for a bid, a taker buy for an ask; what the crossed orders
  left of them) first use up the volume ahead, the rest fills it. Cancels ahead are not credited
  (conservative); an order restored after a restart has no known queue and fills only through.
* A marketable limit (buy limit >= best ask, sell limit <= best bid) or a market order fills at
  once against the opposite quote, up to its size: limits at the quote price, market orders at the
  quote worsened by ``slippage_bps``. Liquidity taken is removed from the quote until the next one.
  On a live book (``depth``) it walks the levels instead, each at its price (``kernel.venue.depth``).
  The remainder of a market or IOC order is canceled; a FOK order fills completely or is killed; a
  GTC/day limit remainder rests. A market order with no quote yet is rejected ("no market").
* Fees are ``fee_bps`` of the fill's notional.
* Every fill says its ``liquidity``: ``maker`` for a resting order a market trade reached, ``taker``
  for an order that filled on entry or on a reprice against the quote or the book.
* Every order belongs to an ``account``: orders are keyed by (account, client_order_id), so two
  accounts may use the same id and neither can see or touch the other's (``unknown order``).
* Fills debit and credit the account's balances (``kernel.venue.balances``); an order (or a
  replace) that the balance, less what the account's other open orders reserve, cannot cover is
  rejected ``insufficient balance``.
* Numbers are bounded (``kernel.venue.bounds``); a fill whose arithmetic fails all the same cancels
  that order only (``venue error: <exception>``, logged); a stored order off the bounds is expired.
* ``reject_rate`` and ``unsolicited_cancel_rate`` draw from ``random.Random(seed)``; the generator
  is consumed only when a rate is positive, so the same inputs and seed give the same reports.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from decimal import Decimal

from kernel.paper_protocol import Exec, Execution, Fill, Liquidity, NewOrder, OrderSnapshot, Side, Status
from kernel.venue.balances import INSUFFICIENT, Ledger
from kernel.venue.bounds import expired_at_load, order_problem, out_of_bounds, venue_error
from kernel.venue.depth import MAX_LEVELS, DepthOf, opposite_levels, walk
from kernel.venue.errors import OrderChangeRefused, UnknownOrder
from kernel.venue.orders import DONE as DONE
from kernel.venue.orders import Changes as Changes
from kernel.venue.orders import Order as Order
from kernel.venue.orders import TopOfBook as TopOfBook
from kernel.venue.settings import LOCAL_ACCOUNT
from kernel.venue.settings import EngineConfig as EngineConfig  # where it was defined before

BPS = Decimal(10_000)
ZERO = Decimal(0)


def _positive(value: Decimal | None) -> bool:
    return value is not None and value.is_finite() and value > 0


class MatchingEngine:
    """Resting client orders per instrument, matched against market trades and quotes.

    Not thread-safe. Every public method that changes something returns the ``Execution`` reports
    it caused and records the changed orders and new fills for ``take_changes()``.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        next_venue_order: int = 1,
        next_fill_seq: int = 1,
        next_priority: int = 1,
    ) -> None:
        self.config = config or EngineConfig()
        self._rng = random.Random(self.config.seed)
        self._orders: dict[tuple[str, str], Order] = {}  # by (account, client_order_id)
        self._by_venue_id: dict[str, Order] = {}
        self.ledger = Ledger(self.config.balances, self.config.default_balance)
        self._quotes: dict[str, TopOfBook] = {}
        self._fills: list[Fill] = []  # every fill, in fill_seq order
        self._next_venue_order = next_venue_order
        self._next_fill_seq = next_fill_seq
        self._next_priority = next_priority
        self._changed: dict[tuple[str, str], Order] = {}
        self._new_fills: list[tuple[str, Fill]] = []
        self.depth: DepthOf | None = None
        """The live book of an instrument, when the market data keeps one: taking orders walk it."""
        self._taken: dict[str, dict[tuple[Side, Decimal], Decimal]] = {}

    # -- restoring and reading --------------------------------------------------------------

    def restore(self, orders: Iterable[Order]) -> None:
        """Load orders (with their fills) saved by an earlier engine; counters come from ``__init__``."""
        for order in orders:
            self._orders[(order.account, order.client_order_id)] = order
            self._by_venue_id[order.venue_order_id] = order
            self._touch(order)
            self._fills.extend(order.fills)
            if not order.done and (why := out_of_bounds(qty=order.qty, price=order.price)) is not None:
                self._finish(order, "expired", "expired", 0, expired_at_load(order.client_order_id, why))
        self._fills.sort(key=lambda f: f.fill_seq)
        self._changed.clear()  # restored, not changed

    def order(self, client_order_id: str, account: str = LOCAL_ACCOUNT) -> Order | None:
        """The account's order with this id, or ``None`` (another account's is never found)."""
        return self._orders.get((account, client_order_id))

    def account_of(self, venue_order_id: str) -> str | None:
        """The account of the order with this venue order id (unique across accounts), or ``None``."""
        order = self._by_venue_id.get(venue_order_id)
        return None if order is None else order.account

    def orders(self) -> list[Order]:
        """Every order of every account, oldest venue order first."""
        return sorted(self._orders.values(), key=lambda o: _venue_number(o.venue_order_id))

    def open_orders(self, account: str | None = None) -> list[Order]:
        """Orders not yet done (of ``account``; ``None``: of all), oldest first."""
        return [o for o in self.orders() if not o.done and account in (None, o.account)]

    def fills_since(self, after: int) -> list[Fill]:
        """Every fill (of every account) with ``fill_seq > after``, in order."""
        return [f for f in self._fills if f.fill_seq > after]

    def quote(self, instrument: str) -> TopOfBook | None:
        """The current top of book of ``instrument`` (``None`` before its first quote)."""
        return self._quotes.get(instrument)

    def take_changes(self) -> Changes:
        """The orders changed and fills made since the last call (then forgets them)."""
        changes = Changes(
            orders=list(self._changed.values()),
            fills=[fill for _, fill in self._new_fills],
            next_venue_order=self._next_venue_order,
            next_fill_seq=self._next_fill_seq,
            next_priority=self._next_priority,
            fill_accounts=[account for account, _ in self._new_fills],
            balances=self.ledger.take_changed(),
        )
        self._changed.clear()
        self._new_fills.clear()
        return changes

    # -- order entry ------------------------------------------------------------------------

    def duplicate(self, client_order_id: str, account: str = LOCAL_ACCOUNT) -> OrderSnapshot:
        """Count a repeated ``new_order`` of an id the account used; return its order's snapshot."""
        order = self._orders[(account, client_order_id)]
        order.duplicate_submits += 1
        self._touch(order)
        return order.snapshot()

    def new_order(self, message: NewOrder, ts_ms: int, account: str = LOCAL_ACCOUNT) -> list[Execution]:
        """Enter an order for ``account``. The caller handles ids it already used (``duplicate``)."""
        if (account, message.client_order_id) in self._orders:
            raise OrderChangeRefused(f"order {message.client_order_id!r} already exists; use duplicate()")
        order = Order(
            client_order_id=message.client_order_id,
            venue_order_id=f"V{self._next_venue_order}",
            instrument=message.instrument,
            side=message.side,
            order_type=message.order_type,
            tif=message.tif,
            qty=message.qty,
            price=message.price,
            status="new",
            leaves_qty=message.qty,
            created_ts_ms=ts_ms,
            priority=self._take_priority(),
            account=account,
        )
        self._next_venue_order += 1
        self._orders[(account, order.client_order_id)] = order
        self._by_venue_id[order.venue_order_id] = order
        self._touch(order)
        reason = _invalid(self.config, order)
        if reason is None and self.config.reject_rate > 0 and self._rng.random() < self.config.reject_rate:
            reason = "random reject"
        if reason is None and order.order_type == "market" and order.instrument not in self._quotes:
            reason = "no market"
        if reason is None and _short(self, order, order.leaves_qty, order.price):
            reason = INSUFFICIENT
        if reason is not None:
            order.leaves_qty = ZERO
            return [self._finish(order, "rejected", "rejected", ts_ms, reason)]
        reports = [report(order, "new", ts_ms)]
        reports += self._take_liquidity(order, ts_ms)
        self._join_queue(order)
        return reports

    def _join_queue(self, order: Order) -> None:
        """Put a resting limit at the back of the live book's level at its price (when there is a book)."""
        book = self.depth(order.instrument) if self.depth is not None else None
        if book is None or order.price is None or not order.resting:
            order.queue_ahead = None
            return
        levels = book.bid_levels(MAX_LEVELS) if order.side == "buy" else book.ask_levels(MAX_LEVELS)
        order.queue_ahead = dict(levels).get(order.price, ZERO)

    def _take_liquidity(self, order: Order, ts_ms: int) -> list[Execution]:
        """Fill a just-entered (or repriced) order as far as it is marketable: against the live
        book when there is one (``depth``), else against the quote."""
        walked = _walk_depth(self, order, ts_ms)
        if walked is not None:
            return walked
        book = self._quotes.get(order.instrument)
        available = ZERO
        price = ZERO
        if book is not None:
            if order.side == "buy":
                price, available = book.ask, book.ask_qty
            else:
                price, available = book.bid, book.bid_qty
            marketable = order.order_type == "market" or (
                order.price is not None and (price <= order.price if order.side == "buy" else price >= order.price)
            )
            if not marketable or price <= 0:
                available = ZERO
        if order.order_type == "market":
            slip = self.config.slippage_bps / BPS
            price = price * (1 + slip) if order.side == "buy" else price * (1 - slip)
        reports: list[Execution] = []
        if order.tif == "fok" and available < order.leaves_qty:
            return [self._finish(order, "canceled", "canceled", ts_ms, "fok not filled: killed")]
        take = min(available, order.leaves_qty)
        if take > 0 and book is not None:
            if order.side == "buy":
                book.ask_qty -= take
            else:
                book.bid_qty -= take
            reports.append(self._fill(order, take, price, ts_ms, "taker"))
        if order.leaves_qty > 0 and (order.order_type == "market" or order.tif in ("ioc", "fok")):
            why = "market remainder canceled" if order.order_type == "market" else "ioc remainder canceled"
            reports.append(self._finish(order, "canceled", "canceled", ts_ms, why))
        return reports

    # -- cancel, replace, restate, expire ---------------------------------------------------

    def cancel(
        self, client_order_id: str, ts_ms: int, reason: str = "canceled by client", account: str = LOCAL_ACCOUNT
    ) -> list[Execution]:
        """Cancel the account's order; ``cancel_rejected`` for a done or unknown one."""
        order = self._orders.get((account, client_order_id))
        if order is None:
            return [_unknown(client_order_id, "cancel_rejected", ts_ms)]
        if order.done:
            return [report(order, "cancel_rejected", ts_ms, "too late to cancel")]
        return [self._finish(order, "canceled", "canceled", ts_ms, reason)]

    def replace(
        self,
        client_order_id: str,
        qty: Decimal | None,
        price: Decimal | None,
        ts_ms: int,
        account: str = LOCAL_ACCOUNT,
    ) -> list[Execution]:
        """Give the account's order a new qty and/or price; ``replace_rejected`` when that is impossible.

        A new qty at or below what has filled finishes the order (filled, qty amended to cum_qty).
        A new price is checked for marketability at once, like a new order.
        """
        order = self._orders.get((account, client_order_id))
        if order is None:
            return [_unknown(client_order_id, "replace_rejected", ts_ms)]
        problem = _replace_problem(order, qty, price)
        leaves = (order.qty if qty is None else qty) - order.cum_qty
        if problem is None and leaves > 0 and _short(self, order, leaves, order.price if price is None else price):
            problem = INSUFFICIENT
        if problem is not None:
            return [report(order, "replace_rejected", ts_ms, problem)]
        return self._amend(order, qty, price, ts_ms, "replaced", None)

    def restate(
        self,
        client_order_id: str,
        ts_ms: int,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        reason: str = "restated by venue",
        account: str = LOCAL_ACCOUNT,
    ) -> list[Execution]:
        """Change a working order on the venue's own initiative (exec ``restated``)."""
        order = self._orders.get((account, client_order_id))
        if order is None:
            raise UnknownOrder(f"no order {client_order_id!r}")
        problem = _replace_problem(order, qty, price)
        if problem is not None:
            raise OrderChangeRefused(f"cannot restate {client_order_id!r}: {problem}")
        return self._amend(order, qty, price, ts_ms, "restated", reason)

    def _amend(
        self, order: Order, qty: Decimal | None, price: Decimal | None, ts_ms: int, kind: Exec, reason: str | None
    ) -> list[Execution]:
        new_qty = order.qty if qty is None else qty
        if new_qty <= order.cum_qty:
            order.qty = order.cum_qty
            order.leaves_qty = ZERO
            if price is not None:
                order.price = price
            return [self._finish(order, kind, "filled", ts_ms, reason)]
        repriced = price is not None and price != order.price
        requeued = repriced or new_qty > order.qty
        if requeued:
            order.priority = self._take_priority()
        order.qty = new_qty
        order.leaves_qty = new_qty - order.cum_qty
        if price is not None:
            order.price = price
        self._touch(order)
        reports = [report(order, kind, ts_ms, reason)]
        if repriced:
            reports += self._take_liquidity(order, ts_ms)
        if requeued:
            self._join_queue(order)  # time priority lost: the back of the queue again
        return reports

    def end_of_day(self, ts_ms: int) -> list[Execution]:
        """Expire every working ``day`` order."""
        return [
            self._finish(order, "expired", "expired", ts_ms, "end of day")
            for order in book_order(o for o in self._orders.values() if o.tif == "day" and not o.done)
        ]

    # -- market data ------------------------------------------------------------------------

    def on_quote(
        self, instrument: str, bid: Decimal, bid_qty: Decimal, ask: Decimal, ask_qty: Decimal, ts_ms: int
    ) -> list[Execution]:
        """A new top of book. Resting orders do not fill on quotes, only on trades through them."""
        self._quotes[instrument] = TopOfBook(bid, bid_qty, ask, ask_qty)
        self._taken.pop(instrument, None)  # the book moved: what was taken from it is forgotten
        return self._unsolicited_cancels(instrument, ts_ms)

    def on_trade(
        self, instrument: str, price: Decimal, qty: Decimal, ts_ms: int, taker_side: Side | None = None
    ) -> list[Execution]:
        """A market trade: fill the resting orders it trades through, by price-time priority; then,
        on a live book, those at its price whose queue ahead the rest of its volume used up."""
        reports: list[Execution] = []
        side: Side
        for side in ("buy", "sell"):
            crossed = [
                o
                for o in self._orders.values()
                if o.instrument == instrument
                and o.side == side
                and o.resting
                and o.price is not None
                and (price < o.price if side == "buy" else price > o.price)
            ]
            volume = qty
            for order in book_order(crossed):
                if volume <= 0:
                    break
                take = min(volume, order.leaves_qty)
                volume -= take
                assert order.price is not None
                reports.append(self._fill(order, take, order.price, ts_ms, "maker"))
            if taker_side != side:  # a taker sell trades against bids, a taker buy against asks
                reports += self._fill_at_price(instrument, side, price, volume, ts_ms)
        return reports + self._unsolicited_cancels(instrument, ts_ms)

    def _fill_at_price(
        self, instrument: str, side: Side, price: Decimal, volume: Decimal, ts_ms: int
    ) -> list[Execution]:
        """``side`` orders resting exactly at ``price`` with a known queue: ``volume`` first takes
        the live volume ahead of each, the rest fills it (each order's queue counted on its own)."""
        at_price = [
            o
            for o in self._orders.values()
            if o.instrument == instrument
            and o.side == side
            and o.resting
            and o.price == price
            and o.queue_ahead is not None
        ]
        reports: list[Execution] = []
        for order in book_order(at_price):
            assert order.queue_ahead is not None
            beyond = volume - order.queue_ahead
            order.queue_ahead = max(ZERO, order.queue_ahead - volume)
            if beyond > 0:
                reports.append(self._fill(order, min(beyond, order.leaves_qty), price, ts_ms, "maker"))
        return reports

    def _unsolicited_cancels(self, instrument: str, ts_ms: int) -> list[Execution]:
        rate = self.config.unsolicited_cancel_rate
        if rate <= 0:
            return []
        resting = book_order(o for o in self._orders.values() if o.instrument == instrument and o.resting)
        return [
            self._finish(order, "canceled", "canceled", ts_ms, "unsolicited")
            for order in resting
            if self._rng.random() < rate
        ]

    # -- helpers ----------------------------------------------------------------------------

    def _take_priority(self) -> int:
        priority = self._next_priority
        self._next_priority += 1
        return priority

    def _touch(self, order: Order) -> None:
        self._changed[(order.account, order.client_order_id)] = order
        try:  # an order not yet checked may hold numbers off the bounds: it reserves nothing
            price = order.price
            held = (order.instrument, order.side, order.leaves_qty, price) if price is not None else None
            self.ledger.hold(order.account, order.client_order_id, held if order.resting else None, self.config.fee_bps)
        except ArithmeticError:
            self.ledger.hold(order.account, order.client_order_id, None, self.config.fee_bps)

    def _fill(self, order: Order, qty: Decimal, price: Decimal, ts_ms: int, liquidity: Liquidity) -> Execution:
        """Fill ``qty`` of ``order`` at ``price``: ``maker`` when a market trade reached the order
        resting on the book, ``taker`` when the order, entered or repriced, took from the book."""
        try:  # arithmetic first: numbers off the bounds (Overflow) cancel this order only, nothing half done
            fee = qty * price * self.config.fee_bps / BPS if self.config.fee_bps else ZERO
            cum_qty, leaves_qty = order.cum_qty + qty, order.qty - (order.cum_qty + qty)
        except Exception as exc:
            return self._finish(order, "canceled", "canceled", ts_ms, venue_error(order.client_order_id, exc))
        fill = Fill(
            trade_id=f"F{self._next_fill_seq}",
            qty=qty,
            price=price,
            fee=fee,
            fill_seq=self._next_fill_seq,
            ts_ms=ts_ms,
            client_order_id=order.client_order_id,
            liquidity=liquidity,
        )
        self._next_fill_seq += 1
        order.fills.append(fill)
        order.cum_qty, order.leaves_qty = cum_qty, leaves_qty
        order.status = "filled" if order.leaves_qty <= 0 else "partially_filled"
        self._fills.append(fill)
        self._new_fills.append((order.account, fill))
        self.ledger.settle(order.account, order.instrument, order.side, qty, price, fee)
        self._touch(order)
        return report(order, "trade", ts_ms, fill=fill)

    def _finish(self, order: Order, kind: Exec, status: Status, ts_ms: int, reason: str | None) -> Execution:
        order.status = status
        if status != "filled":
            order.leaves_qty = ZERO
        if reason is not None:
            order.reason = reason
        self._touch(order)
        return report(order, kind, ts_ms, reason)


def _invalid(config: EngineConfig, order: Order) -> str | None:
    if not order.client_order_id:
        return "client_order_id must not be empty"
    if config.instruments and order.instrument not in config.instruments:
        return f"unknown instrument {order.instrument}"
    if not _positive(order.qty):
        return "qty must be positive"
    if order.order_type == "limit" and not _positive(order.price):
        return "a limit order needs a positive price"
    if order.order_type == "market" and order.price is not None:
        return "a market order has no price"
    return order_problem(config.rules.get(order.instrument), order.price, order.qty)


def _replace_problem(order: Order, qty: Decimal | None, price: Decimal | None) -> str | None:
    if order.done:
        return "too late to replace"
    if qty is None and price is None:
        return "nothing to replace: give qty and/or price"
    if qty is not None and not _positive(qty):
        return "qty must be positive"
    if price is not None and order.order_type == "market":
        return "a market order has no price"
    if price is not None and not _positive(price):
        return "price must be positive"
    return out_of_bounds(qty=qty, price=price)


def _walk_depth(self: MatchingEngine, order: Order, ts_ms: int) -> list[Execution] | None:
    """Fill a taking order against the live book, level by level (``None``: no book to walk)."""
    book = self.depth(order.instrument) if self.depth is not None else None
    levels = opposite_levels(book, order.side) if book is not None else []
    if not levels:
        return None
    opposite: Side = "sell" if order.side == "buy" else "buy"
    taken = self._taken.setdefault(order.instrument, {})
    limit = None if order.order_type == "market" else order.price
    own = {price: qty for (side, price), qty in taken.items() if side == opposite}
    fills = walk(levels, order.side, order.leaves_qty, limit, own)
    if order.tif == "fok" and sum((q for _, q in fills), ZERO) < order.leaves_qty:
        return [self._finish(order, "canceled", "canceled", ts_ms, "fok not filled: killed")]
    reports = []
    for price, qty in fills:
        taken[(opposite, price)] = taken.get((opposite, price), ZERO) + qty
        reports.append(self._fill(order, qty, price, ts_ms, "taker"))
    if order.leaves_qty > 0 and (order.order_type == "market" or order.tif in ("ioc", "fok")):
        why = "market remainder canceled" if order.order_type == "market" else "ioc remainder canceled"
        reports.append(self._finish(order, "canceled", "canceled", ts_ms, why))
    return reports


def _short(self: MatchingEngine, order: Order, leaves: Decimal, price: Decimal | None) -> bool:
    """True when ``order``'s account cannot cover ``leaves`` of it at ``price`` (a market order:
    against the book) on top of what its other open orders reserve."""
    if price is None and order.side == "buy":
        price = _market_buy_price(self, order, leaves)
        if price is None:
            return False  # no market: nothing can fill (rejected for that elsewhere)
    held = (order.instrument, order.side, leaves, price or ZERO)
    return not self.ledger.covers(order.account, held, self.config.fee_bps, excluding=order.client_order_id)


def _market_buy_price(self: MatchingEngine, order: Order, qty: Decimal) -> Decimal | None:
    """The average price a market buy of ``qty`` would pay now: walking the live book, else the
    ask worsened by the slippage (``None``: no market)."""
    book = self.depth(order.instrument) if self.depth is not None else None
    levels = opposite_levels(book, "buy") if book is not None else []
    if levels:
        fills = walk(levels, "buy", qty, None, {})
        filled = sum((q for _, q in fills), ZERO)
        return sum((p * q for p, q in fills), ZERO) / filled if filled > 0 else None
    quote = self._quotes.get(order.instrument)
    return None if quote is None else quote.ask * (1 + self.config.slippage_bps / BPS)


def _unknown(client_order_id: str, kind: Exec, ts_ms: int) -> Execution:
    # The protocol has no status for "no such order"; "rejected" is the closest terminal status.
    return Execution(
        client_order_id=client_order_id,
        exec=kind,
        status="rejected",
        venue_order_id="",
        qty=ZERO,
        price=None,
        cum_qty=ZERO,
        leaves_qty=ZERO,
        ts_ms=ts_ms,
        reason="unknown order",
    )


def _venue_number(venue_order_id: str) -> int:
    digits = venue_order_id[1:]
    return int(digits) if digits.isdigit() else 0


def book_order(orders: Iterable[Order]) -> list[Order]:
    """Price-time priority: best price first (highest buy, lowest sell), then earliest."""

    def key(order: Order) -> tuple[Decimal, int]:
        price = order.price if order.price is not None else ZERO
        return (-price if order.side == "buy" else price, order.priority)

    return sorted(orders, key=key)


def report(order: Order, kind: Exec, ts_ms: int, reason: str | None = None, fill: Fill | None = None) -> Execution:
    return Execution(
        client_order_id=order.client_order_id,
        exec=kind,
        status=order.status,
        venue_order_id=order.venue_order_id,
        qty=order.qty,
        price=order.price,
        cum_qty=order.cum_qty,
        leaves_qty=order.leaves_qty,
        ts_ms=ts_ms,
        fill=fill,
        reason=reason,
    )
