"""The exchange behind ``BinanceApiStandIn``: one symbol, one account, a synthetic market.

Written from Binance's spot API documentation (``web-socket-api.md``, ``user-data-stream.md``,
``errors.md``, ``filters.md``), independently of ``kernel.binance``. No sockets and no clock reads:
every method takes ``now_ms``; the server drives ``step`` every ``pace_ms``.

* Market: the mid walks on the tick grid (seeded), ``levels`` price levels each side around it; each
  step may print a synthetic trade at the best bid or ask. Depth changes are numbered (``update_id``)
  so ``depthUpdate`` events and ``snapshot`` agree, as the documented book procedure needs.
* Orders (LIMIT, LIMIT_MAKER, MARKET; GTC/IOC/FOK): marketable quantity walks the book's levels;
  a resting order fills when the market trades through its price (``step``), by the trade's qty.
* Each fill: a trade row (``myTrades`` shape) with ``commission`` (``fee_rate`` of what is received,
  in that asset), balances move (``locked`` while an order rests), ``executionReport`` and
  ``outboundAccountPosition`` events queued on ``events``.
* Errors are ``ApiError(status, code, msg, data)``, codes and messages as in ``errors.md``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from machines.errors import TradekernelError

ZERO = Decimal(0)
EIGHT = Decimal("0.00000001")


class ApiError(TradekernelError):
    """A request refused: ``status`` (HTTP-like), ``code`` and ``msg`` as documented."""

    def __init__(self, status: int, code: int, msg: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status, self.code, self.msg, self.data = status, code, msg, data

    def error(self) -> dict[str, Any]:
        """The ``error`` object of a response."""
        body: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.data is not None:
            body["data"] = self.data
        return body


def unknown_order() -> ApiError:
    """-2011, as answered to a cancel of an order that is not open."""
    return ApiError(400, -2011, "Unknown order sent.")


def fmt(value: Decimal) -> str:
    """A decimal with 8 places, as Binance prints them."""
    return format(value.quantize(EIGHT), "f")


@dataclass
class Order:
    """One order of the account."""

    order_id: int
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    qty: Decimal
    time: int
    executed: Decimal = ZERO
    quote: Decimal = ZERO
    status: str = "NEW"
    update_time: int = 0
    locked: Decimal = ZERO

    @property
    def open(self) -> bool:
        """Still on the book."""
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        """Quantity not yet executed."""
        return self.qty - self.executed


@dataclass
class Exchange:
    """Market, account and matching (see the module docstring)."""

    symbol: str = "BTCUSDT"
    base: str = "BTC"
    quote: str = "USDT"
    mid: Decimal = Decimal("30000")
    tick: Decimal = Decimal("0.01")
    step: Decimal = Decimal("0.00001")
    min_notional: Decimal = Decimal("5")
    fee_rate: Decimal = Decimal("0.001")
    levels: int = 5
    level_qty: Decimal = Decimal("0.05")
    seed: int = 0
    balances: dict[str, list[Decimal]] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    next_order_id: int = 1000
    next_trade_id: int = 5000
    next_execution_id: int = 1
    update_id: int = 100
    events: list[dict[str, Any]] = field(default_factory=list)
    market: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.mid = self._on_tick(self.mid)
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self._rebuild(0)

    # -- market -------------------------------------------------------------------------------

    def _on_tick(self, price: Decimal) -> Decimal:
        return (price / self.tick).to_integral_value() * self.tick

    def _level_qty(self) -> Decimal:
        units = int(self.level_qty / self.step)
        return self.step * self.rng.randint(max(units // 2, 1), max(units * 2, 1))

    def _rebuild(self, now_ms: int) -> None:
        """A fresh book around ``mid``; a ``depthUpdate`` of what changed on ``market``."""
        bids = {self.mid - self.tick * (i + 1): self._level_qty() for i in range(self.levels)}
        asks = {self.mid + self.tick * (i + 1): self._level_qty() for i in range(self.levels)}
        changes_b = [[p, q] for p, q in bids.items() if self.bids.get(p) != q]
        changes_b += [[p, ZERO] for p in self.bids if p not in bids]
        changes_a = [[p, q] for p, q in asks.items() if self.asks.get(p) != q]
        changes_a += [[p, ZERO] for p in self.asks if p not in asks]
        self.bids, self.asks = bids, asks
        self._depth_event(now_ms, changes_b, changes_a)

    def _depth_event(self, now_ms: int, bids: list[list[Decimal]], asks: list[list[Decimal]]) -> None:
        if not bids and not asks:
            return
        self.update_id += 1
        self.market.append(
            {
                "e": "depthUpdate",
                "E": now_ms,
                "s": self.symbol,
                "U": self.update_id,
                "u": self.update_id,
                "b": [[fmt(p), fmt(q)] for p, q in bids],
                "a": [[fmt(p), fmt(q)] for p, q in asks],
            }
        )
        self.market.append(self.book_ticker())

    def book_ticker(self) -> dict[str, Any]:
        """A ``bookTicker`` event of the current top."""
        bid, ask = max(self.bids), min(self.asks)
        return {
            "u": self.update_id,
            "s": self.symbol,
            "b": fmt(bid),
            "B": fmt(self.bids[bid]),
            "a": fmt(ask),
            "A": fmt(self.asks[ask]),
        }

    def snapshot(self, limit: int) -> dict[str, Any]:
        """``GET /api/v3/depth`` / ``depth`` body."""
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {
            "lastUpdateId": self.update_id,
            "bids": [[fmt(p), fmt(q)] for p, q in bids],
            "asks": [[fmt(p), fmt(q)] for p, q in asks],
        }

    def step_market(self, now_ms: int) -> None:
        """One synthetic step: the mid moves -1/0/+1 tick, the book is rebuilt, a trade may print
        (and fill resting orders it goes through)."""
        self.mid = max(self.mid + self.tick * self.rng.choice((-1, 0, 0, 1)), self.tick * (self.levels + 2))
        self._rebuild(now_ms)
        if self.rng.random() < 0.7:
            buyer_taker = self.rng.random() < 0.5
            price = min(self.asks) if buyer_taker else max(self.bids)
            self._market_trade(now_ms, price, self._level_qty(), buyer_maker=not buyer_taker)
        for order in sorted(self.orders.values(), key=lambda o: o.order_id):
            if not order.open or order.type == "MARKET":
                continue
            crossed = (order.side == "BUY" and order.price >= min(self.asks)) or (
                order.side == "SELL" and order.price <= max(self.bids)
            )
            if crossed:
                self._market_trade(now_ms, order.price, self._level_qty(), buyer_maker=order.side == "BUY")

    def _market_trade(self, now_ms: int, price: Decimal, qty: Decimal, *, buyer_maker: bool) -> None:
        """A trade between others at ``price``: resting orders it goes through fill (maker), by its qty."""
        left = qty
        for order in sorted(self.orders.values(), key=lambda o: (o.time, o.order_id)):
            if left <= ZERO:
                break
            if not order.open or order.type == "MARKET":
                continue
            through = price <= order.price if order.side == "BUY" else price >= order.price
            if through:
                take = min(left, order.remaining)
                self._fill(order, order.price, take, now_ms, maker=True)
                left -= take
        self.next_trade_id += 1
        self.market.append(
            {
                "e": "trade",
                "E": now_ms,
                "s": self.symbol,
                "t": self.next_trade_id,
                "p": fmt(price),
                "q": fmt(qty),
                "T": now_ms,
                "m": buyer_maker,
                "M": True,
            }
        )

    # -- account ------------------------------------------------------------------------------

    def balance(self, asset: str) -> list[Decimal]:
        """``[free, locked]`` of ``asset`` (created at zero)."""
        return self.balances.setdefault(asset, [ZERO, ZERO])

    def account_position(self, now_ms: int) -> None:
        """Queue an ``outboundAccountPosition`` of the symbol's two assets."""
        rows = [{"a": a, "f": fmt(self.balance(a)[0]), "l": fmt(self.balance(a)[1])} for a in (self.base, self.quote)]
        self.events.append({"e": "outboundAccountPosition", "E": now_ms, "u": now_ms, "B": rows})

    def deposit(self, asset: str, delta: Decimal, now_ms: int) -> None:
        """Move a balance from outside (a ``balanceUpdate`` event, then the position)."""
        self.balance(asset)[0] += delta
        self.events.append({"e": "balanceUpdate", "E": now_ms, "a": asset, "d": fmt(delta), "T": now_ms})
        self.account_position(now_ms)

    def _lock(self, order: Order, amount: Decimal) -> None:
        asset = self.quote if order.side == "BUY" else self.base
        row = self.balance(asset)
        if row[0] < amount:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        row[0] -= amount
        row[1] += amount
        order.locked += amount

    def _release(self, order: Order, amount: Decimal) -> None:
        asset = self.quote if order.side == "BUY" else self.base
        amount = min(amount, order.locked)
        row = self.balance(asset)
        row[1] -= amount
        row[0] += amount
        order.locked -= amount

    # -- orders -------------------------------------------------------------------------------

    def find(self, order_id: Any, client_order_id: Any) -> Order | None:
        """By ``orderId`` (checked against ``origClientOrderId`` if both), else the newest order
        with that client order id."""
        if order_id is not None:
            order = self.orders.get(int(order_id))
            if order is not None and client_order_id is not None and order.client_order_id != client_order_id:
                return None
            return order
        matches = [o for o in self.orders.values() if o.client_order_id == client_order_id]
        return max(matches, key=lambda o: o.order_id) if matches else None

    def orders_from(self, order_id: int | None, limit: int) -> list[Order]:
        """``allOrders`` by id: from ``order_id`` up (oldest first), else the most recent ``limit``."""
        orders = sorted(self.orders.values(), key=lambda o: o.order_id)
        if order_id is not None:
            return [o for o in orders if o.order_id >= order_id][:limit]
        return orders[-limit:]

    def orders_updated(self, start_ms: int | None, end_ms: int | None, limit: int) -> list[Order]:
        """``allOrders`` by time: the orders whose last update falls in ``[start_ms, end_ms]``
        (either end open), the oldest ``limit`` of them."""
        orders = sorted(self.orders.values(), key=lambda o: o.order_id)
        return [
            o
            for o in orders
            if (start_ms is None or o.update_time >= start_ms) and (end_ms is None or o.update_time <= end_ms)
        ][:limit]

    def check_filters(self, order_type: str, price: Decimal, qty: Decimal) -> None:
        """PRICE_FILTER, LOT_SIZE and NOTIONAL (``filters.md``): -1013 on a failure."""
        if order_type != "MARKET" and (price <= ZERO or price % self.tick != ZERO):
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty <= ZERO or qty % self.step != ZERO:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        reference = self.mid if order_type == "MARKET" else price
        if reference * qty < self.min_notional:
            raise ApiError(400, -1013, "Filter failure: NOTIONAL")

    def place(
        self, *, client_order_id: str, side: str, order_type: str, tif: str, price: Decimal, qty: Decimal, now_ms: int
    ) -> tuple[Order, list[dict[str, Any]]]:
        """A new order: filters, duplicate id, balance; marketable qty walks the book. Returns the
        order and its ``fills`` (the ``FULL`` response rows)."""
        self.check_filters(order_type, price, qty)
        if any(o.open and o.client_order_id == client_order_id for o in self.orders.values()):
            raise ApiError(400, -2010, "Duplicate order sent.")
        book = sorted(self.asks.items()) if side == "BUY" else sorted(self.bids.items(), reverse=True)
        if order_type != "MARKET":
            book = [(p, q) for p, q in book if (p <= price if side == "BUY" else p >= price)]
        if order_type == "LIMIT_MAKER" and book:
            raise ApiError(400, -2010, "Order would immediately match and take.")
        available = sum((q for _, q in book), ZERO)
        if tif == "FOK" and available < qty:
            book = []
        walk: list[tuple[Decimal, Decimal]] = []
        left = qty
        for level_price, level_qty in book:
            if left <= ZERO:
                break
            take = min(left, level_qty)
            walk.append((level_price, take))
            left -= take
        order = Order(self.next_order_id + 1, client_order_id, side, order_type, tif, price, qty, now_ms)
        order.update_time = now_ms
        if side == "BUY":
            cost = sum((p * q for p, q in walk), ZERO)
            need = cost if order_type == "MARKET" else price * qty
        else:
            need = qty
        self._lock(order, need)
        self.next_order_id += 1
        self.orders[order.order_id] = order
        self.execution_report(order, "NEW", now_ms)
        fills = [self._fill(order, p, q, now_ms, maker=False) for p, q in walk]
        levels = self.asks if side == "BUY" else self.bids
        changed: list[list[Decimal]] = []
        for level_price, take in walk:
            levels[level_price] -= take
            changed.append([level_price, levels[level_price]])
            if levels[level_price] <= ZERO:
                del levels[level_price]
        if not self.asks or not self.bids:
            self._rebuild(now_ms)
        elif changed:
            self._depth_event(now_ms, [] if side == "BUY" else changed, changed if side == "BUY" else [])
        if order.open and (order_type == "MARKET" or tif in ("IOC", "FOK")):
            self._end(order, "EXPIRED", now_ms)
        self.account_position(now_ms)
        return order, fills

    def _fill(self, order: Order, price: Decimal, qty: Decimal, now_ms: int, *, maker: bool) -> dict[str, Any]:
        buying = order.side == "BUY"
        gross = qty if buying else (price * qty).quantize(EIGHT, ROUND_DOWN)
        commission = (gross * self.fee_rate).quantize(EIGHT, ROUND_DOWN)
        asset = self.base if buying else self.quote
        if buying:
            release = price * qty if order.type == "MARKET" else order.price * qty
            self.balance(self.quote)[1] -= price * qty
            order.locked -= price * qty
            self._release(order, release - price * qty)
            self.balance(self.base)[0] += qty - commission
        else:
            self.balance(self.base)[1] -= qty
            order.locked -= qty
            self.balance(self.quote)[0] += gross - commission
        order.executed += qty
        order.quote += price * qty
        order.update_time = now_ms
        order.status = "FILLED" if order.remaining <= ZERO else "PARTIALLY_FILLED"
        self.next_trade_id += 1
        row = {
            "symbol": self.symbol,
            "id": self.next_trade_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "price": fmt(price),
            "qty": fmt(qty),
            "quoteQty": fmt(price * qty),
            "commission": fmt(commission),
            "commissionAsset": asset,
            "time": now_ms,
            "isBuyer": buying,
            "isMaker": maker,
            "isBestMatch": True,
        }
        self.trades.append(row)
        if order.status == "FILLED" and order.locked > ZERO:
            self._release(order, order.locked)
        self.execution_report(order, "TRADE", now_ms, last=(price, qty, commission, asset, row["id"], maker))
        if maker:
            self.account_position(now_ms)
        return {
            "price": fmt(price),
            "qty": fmt(qty),
            "commission": fmt(commission),
            "commissionAsset": asset,
            "tradeId": row["id"],
        }

    def _end(self, order: Order, status: str, now_ms: int, *, client_id: str = "", orig: str = "") -> None:
        order.status = status
        order.update_time = now_ms
        self._release(order, order.locked)
        self.execution_report(order, status, now_ms, client_id=client_id, orig=orig)

    def cancel(self, order: Order | None, new_client_id: str, now_ms: int) -> Order:
        """Cancel an open order (-2011 ``Unknown order sent.`` if it is not open)."""
        if order is None or not order.open:
            raise unknown_order()
        self._end(order, "CANCELED", now_ms, client_id=new_client_id, orig=order.client_order_id)
        self.account_position(now_ms)
        return order

    def amend(self, order: Order | None, new_qty: Decimal, new_client_id: str, now_ms: int) -> Order:
        """``order.amend.keepPriority``: a smaller quantity, same id and place (-2038 otherwise)."""
        if order is None or not order.open:
            raise ApiError(400, -2038, "Unknown order sent.")
        if new_qty >= order.qty:
            raise ApiError(400, -2038, "Order amend (quantity increase) is not supported.")
        if new_qty <= order.executed or new_qty <= ZERO or new_qty % self.step != ZERO:
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        self._release(order, (order.qty - new_qty) * (order.price if order.side == "BUY" else Decimal(1)))
        orig = order.client_order_id
        order.qty = new_qty
        order.client_order_id = new_client_id
        order.update_time = now_ms
        self.execution_report(order, "REPLACED", now_ms, client_id=new_client_id, orig=orig)
        self.account_position(now_ms)
        return order

    def execution_report(
        self,
        order: Order,
        execution: str,
        now_ms: int,
        *,
        last: tuple[Decimal, Decimal, Decimal, str, int, bool] | None = None,
        client_id: str = "",
        orig: str = "",
    ) -> None:
        """Queue one ``executionReport`` (``user-data-stream.md``)."""
        price, qty, commission, asset, trade_id, maker = last or (ZERO, ZERO, ZERO, None, -1, False)
        self.next_execution_id += 1
        event: dict[str, Any] = {
            "e": "executionReport",
            "E": now_ms,
            "s": self.symbol,
            "c": client_id or order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force,
            "q": fmt(order.qty),
            "p": fmt(order.price),
            "P": fmt(ZERO),
            "F": fmt(ZERO),
            "g": -1,
            "C": orig,
            "x": execution,
            "X": order.status,
            "r": "NONE",
            "i": order.order_id,
            "l": fmt(qty),
            "z": fmt(order.executed),
            "L": fmt(price),
            "n": fmt(commission) if asset else "0",
            "N": asset,
            "T": now_ms,
            "t": trade_id,
            "I": self.next_execution_id,
            "w": order.open and order.type != "MARKET",
            "m": maker,
            "M": False,
            "O": order.time,
            "Z": fmt(order.quote),
            "Y": fmt(price * qty),
            "Q": fmt(ZERO),
            "V": "EXPIRE_MAKER",
        }
        if event["w"]:
            event["W"] = order.time
        self.events.append(event)

    def my_trades(self, from_id: int | None, order_id: int | None, limit: int) -> list[dict[str, Any]]:
        """``myTrades``: from ``fromId`` up, else the most recent ``limit`` (oldest first)."""
        rows = [r for r in self.trades if order_id is None or r["orderId"] == order_id]
        if from_id is not None:
            return [r for r in rows if r["id"] >= from_id][:limit]
        return rows[-limit:]


def order_json(symbol: str, order: Order) -> dict[str, Any]:
    """The ``order.status`` / ``openOrders.status`` shape."""
    return {
        "symbol": symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": fmt(order.price),
        "origQty": fmt(order.qty),
        "executedQty": fmt(order.executed),
        "cummulativeQuoteQty": fmt(order.quote),
        "status": order.status,
        "timeInForce": order.time_in_force,
        "type": order.type,
        "side": order.side,
        "stopPrice": fmt(ZERO),
        "icebergQty": fmt(ZERO),
        "time": order.time,
        "updateTime": order.update_time,
        "isWorking": True,
        "workingTime": order.time,
        "origQuoteOrderQty": fmt(ZERO),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


# -- persistence (module level) --------------------------------------------------------------------------


def save_state(x: Exchange, path: Path) -> None:
    """Orders, trades, balances and counters as JSON (written whole, then renamed)."""
    state = {
        "mid": str(x.mid),
        "balances": {a: [str(v) for v in row] for a, row in x.balances.items()},
        "orders": [
            {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(o).items()} for o in x.orders.values()
        ],
        "trades": x.trades,
        "next_order_id": x.next_order_id,
        "next_trade_id": x.next_trade_id,
        "next_execution_id": x.next_execution_id,
        "update_id": x.update_id,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(path)


def load_state(x: Exchange, path: Path) -> None:
    """The state ``save`` wrote (nothing if the file does not exist)."""
    if not path.exists():
        return
    state = json.loads(path.read_text())
    x.mid = Decimal(state["mid"])
    x.balances = {a: [Decimal(v) for v in row] for a, row in state["balances"].items()}
    x.orders = {}
    decimals = {"price", "qty", "executed", "quote", "locked"}
    for raw in state["orders"]:
        values = {k: Decimal(v) if k in decimals else v for k, v in raw.items()}
        x.orders[int(values["order_id"])] = Order(**values)
    x.trades = state["trades"]
    x.next_order_id = state["next_order_id"]
    x.next_trade_id = state["next_trade_id"]
    x.next_execution_id = state["next_execution_id"]
    x.update_id = state["update_id"]
    x._rebuild(0)
    x.market.clear()
