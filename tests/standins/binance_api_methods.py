"""The WebSocket API methods of ``BinanceApiStandIn``: signature checks and one handler per method.

``Methods.call(method, params, now_ms)`` returns the ``result`` of a request or raises ``ApiError``
(status, code, msg as in ``errors.md``). SIGNED requests (``signed`` below) are checked as the
docs' "SIGNED request security" says: every param but ``signature``, sorted by name, joined
``name=value&...`` (UTF-8), HMAC-SHA256 hex (case-insensitive) or Ed25519 base64; ``timestamp``
must be within ``recvWindow`` (default 5000, at most 60000) of the stand-in's clock and not more than
1 s ahead of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import string
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.standins.binance_api_engine import ApiError, Exchange, Order, fmt, order_json, unknown_order

CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
SIGNED = {
    "order.place",
    "order.cancel",
    "order.cancelReplace",
    "order.amend.keepPriority",
    "order.status",
    "openOrders.status",
    "myTrades",
    "allOrders",
    "account.status",
    "userDataStream.subscribe.signature",
}
"""Methods that need ``apiKey``, ``timestamp`` and ``signature``."""

DAY_MS = 86_400_000

ORDER_METHODS = {"order.place", "order.cancelReplace", "order.amend.keepPriority"}
"""Methods that report the ``ORDERS`` rate limits."""

FAULT_MESSAGES = {
    -2010: "Account has insufficient balance for requested action.",
    -1013: "Filter failure: PRICE_FILTER",
    -1015: "Too many new orders; current limit is 50 orders per 10 SECOND.",
}


def render(value: Any) -> str:
    """A param value as it goes into the signature payload."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def signature_payload(params: dict[str, Any]) -> str:
    """``name=value&...`` of every param but ``signature``, sorted by name."""
    return "&".join(f"{name}={render(params[name])}" for name in sorted(params) if name != "signature")


def mandatory(name: str) -> ApiError:
    """-1102 for a missing parameter."""
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def decimal_param(params: dict[str, Any], name: str) -> Decimal:
    """A DECIMAL parameter (-1102 if missing, -1100 if not a number)."""
    if params.get(name) in (None, ""):
        raise mandatory(name)
    try:
        return Decimal(str(params[name]))
    except InvalidOperation:
        raise ApiError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9.]+$'."
        ) from None


class Methods:
    """Request handlers over one ``Exchange`` (see the module docstring)."""

    def __init__(
        self,
        exchange: Exchange,
        api_keys: dict[str, str],
        ed25519_keys: dict[str, bytes],
        exchange_info: Callable[[], dict[str, Any]],
    ) -> None:
        self.exchange = exchange
        self.api_keys = api_keys
        self.ed25519_keys = ed25519_keys
        self.exchange_info = exchange_info
        self.reject_next: int | None = None
        self._names = 0

    # -- security -----------------------------------------------------------------------------

    def verify(self, params: dict[str, Any], now_ms: int) -> str:
        """The API key of a correctly signed, timely request; ``ApiError`` otherwise."""
        key = params.get("apiKey")
        if not isinstance(key, str) or not key:
            raise mandatory("apiKey")
        if not key.isalnum() or len(key) > 64:
            raise ApiError(401, -2014, "API-key format invalid.")
        if key not in self.api_keys and key not in self.ed25519_keys:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if params.get("timestamp") in (None, ""):
            raise mandatory("timestamp")
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise mandatory("signature")
        window = decimal_param(params, "recvWindow") if "recvWindow" in params else Decimal(5000)
        if window > 60000 or window <= 0:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        payload = signature_payload(params).encode()
        if not self._signature_ok(key, payload, signature):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        timestamp = int(decimal_param(params, "timestamp"))
        if timestamp >= 10**14:
            timestamp //= 1000
        if timestamp >= now_ms + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now_ms - timestamp > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return key

    def _signature_ok(self, key: str, payload: bytes, signature: str) -> bool:
        if key in self.api_keys:
            expected = hmac.new(self.api_keys[key].encode(), payload, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature.lower())
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        public = load_pem_public_key(self.ed25519_keys[key])
        assert isinstance(public, Ed25519PublicKey)
        try:
            public.verify(base64.b64decode(signature, validate=True), payload)
        except (InvalidSignature, ValueError):
            return False
        return True

    # -- dispatch -----------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any], now_ms: int) -> Any:
        """The ``result`` of ``method``; ``ApiError`` for a refusal."""
        handler = getattr(self, "do_" + method.replace(".", "_"), None)
        if handler is None:
            raise ApiError(400, -1102, f"Unknown method '{method}'.")
        if method in SIGNED:
            self.verify(params, now_ms)
        if method.startswith(("order.", "openOrders", "myTrades", "allOrders")):
            symbol = params.get("symbol")
            if symbol is None and method != "openOrders.status":
                raise mandatory("symbol")
            if symbol is not None and symbol != self.exchange.symbol:
                raise ApiError(400, -1121, "Invalid symbol.")
        return handler(params, now_ms)

    def weight(self, method: str, params: dict[str, Any]) -> int:
        """The documented request weight of ``method``."""
        table = {
            "exchangeInfo": 20,
            "depth": 5,
            "order.amend.keepPriority": 4,
            "order.status": 4,
            "account.status": 20,
            "allOrders": 20,
            "userDataStream.subscribe.signature": 2,
            "userDataStream.unsubscribe": 2,
            "session.subscriptions": 2,
        }
        if method == "openOrders.status":
            return 6 if "symbol" in params else 80
        if method == "myTrades":
            return 5 if "orderId" in params else 20
        return table.get(method, 1)

    def client_id(self, params: dict[str, Any], name: str) -> str:
        """``params[name]`` checked against Binance's pattern, or a generated id."""
        value = params.get(name)
        if value is None:
            self._names += 1
            return "sx" + "".join(self.exchange.rng.choice(string.ascii_letters) for _ in range(14)) + str(self._names)
        if not isinstance(value, str) or not CLIENT_ID.match(value):
            raise ApiError(
                400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{CLIENT_ID.pattern}'."
            )
        return value

    def _find(self, params: dict[str, Any], id_name: str, coid_name: str) -> Order | None:
        if params.get(id_name) is None and params.get(coid_name) is None:
            raise ApiError(400, -1102, f"Param '{coid_name}' or '{id_name}' must be sent, but both were empty/null!")
        return self.exchange.find(params.get(id_name), params.get(coid_name))

    # -- public -------------------------------------------------------------------------------

    def do_ping(self, params: dict[str, Any], now_ms: int) -> Any:
        """``ping``."""
        return {}

    def do_time(self, params: dict[str, Any], now_ms: int) -> Any:
        """``time``."""
        return {"serverTime": now_ms}

    def do_exchangeInfo(self, params: dict[str, Any], now_ms: int) -> Any:
        """``exchangeInfo`` (the one symbol)."""
        return self.exchange_info()

    def do_depth(self, params: dict[str, Any], now_ms: int) -> Any:
        """``depth``."""
        return self.exchange.snapshot(int(params.get("limit", 100)))

    # -- trading ------------------------------------------------------------------------------

    def _new_order(self, params: dict[str, Any], now_ms: int, client_id: str) -> dict[str, Any]:
        side, order_type = params.get("side"), params.get("type")
        if side is None:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1117, "Invalid side.")
        if order_type not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise ApiError(400, -1116, "Invalid orderType.")
        tif = params.get("timeInForce")
        if order_type == "LIMIT" and tif is None:
            raise mandatory("timeInForce")
        if tif is not None and order_type != "LIMIT":
            raise ApiError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        if tif is not None and tif not in ("GTC", "IOC", "FOK"):
            raise ApiError(400, -1115, "Invalid timeInForce.")
        price = decimal_param(params, "price") if order_type != "MARKET" else Decimal(0)
        qty = decimal_param(params, "quantity")
        if self.reject_next is not None:
            code, self.reject_next = self.reject_next, None
            raise ApiError(429 if code == -1015 else 400, code, FAULT_MESSAGES.get(code, "Rejected (stand-in fault)."))
        order, fills = self.exchange.place(
            client_order_id=client_id,
            side=side,
            order_type=order_type,
            tif=tif or "GTC",
            price=price,
            qty=qty,
            now_ms=now_ms,
        )
        default = "ACK" if order_type == "LIMIT_MAKER" else "FULL"
        kind = params.get("newOrderRespType", default)
        answer: dict[str, Any] = {
            "symbol": self.exchange.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": now_ms,
        }
        if kind == "ACK":
            return answer
        answer.update(self._order_fields(order))
        answer["workingTime"] = order.time
        answer["selfTradePreventionMode"] = "EXPIRE_MAKER"
        if kind == "FULL":
            answer["fills"] = fills
        return answer

    @staticmethod
    def _order_fields(order: Order) -> dict[str, Any]:
        return {
            "price": fmt(order.price),
            "origQty": fmt(order.qty),
            "executedQty": fmt(order.executed),
            "origQuoteOrderQty": fmt(Decimal(0)),
            "cummulativeQuoteQty": fmt(order.quote),
            "status": order.status,
            "timeInForce": order.time_in_force,
            "type": order.type,
            "side": order.side,
        }

    def do_order_place(self, params: dict[str, Any], now_ms: int) -> Any:
        """``order.place``."""
        return self._new_order(params, now_ms, self.client_id(params, "newClientOrderId"))

    def _cancel_answer(self, order: Order, orig: str, new_id: str, now_ms: int) -> dict[str, Any]:
        answer = {
            "symbol": self.exchange.symbol,
            "origClientOrderId": orig,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": new_id,
            "transactTime": now_ms,
        }
        answer.update(self._order_fields(order))
        answer["selfTradePreventionMode"] = "EXPIRE_MAKER"
        return answer

    def do_order_cancel(self, params: dict[str, Any], now_ms: int) -> Any:
        """``order.cancel`` (-2011 ``Unknown order sent.`` when not open)."""
        order = self._find(params, "orderId", "origClientOrderId")
        new_id = self.client_id(params, "newClientOrderId")
        order = self.exchange.cancel(order, new_id, now_ms)
        return self._cancel_answer(order, order.client_order_id, new_id, now_ms)

    def do_order_cancelReplace(self, params: dict[str, Any], now_ms: int) -> Any:
        """``order.cancelReplace``: filters first; ``STOP_ON_FAILURE`` (400 -2022) or
        ``ALLOW_FAILURE`` (409 -2021 when one half fails)."""
        mode = params.get("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise mandatory("cancelReplaceMode")
        order_type = params.get("type")
        price = decimal_param(params, "price") if order_type != "MARKET" else Decimal(0)
        self.exchange.check_filters(str(order_type), price, decimal_param(params, "quantity"))
        new_id = self.client_id(params, "newClientOrderId")
        cancel_id = self.client_id(params, "cancelNewClientOrderId")
        try:
            order = self._find(params, "cancelOrderId", "cancelOrigClientOrderId")
            if order is None or not order.open:
                raise unknown_order()
            orig = order.client_order_id
            self.exchange.cancel(order, cancel_id, now_ms)
            cancel: dict[str, Any] = self._cancel_answer(order, orig, cancel_id, now_ms)
            cancel_ok = True
        except ApiError as exc:
            cancel, cancel_ok = exc.error(), False
            if mode == "STOP_ON_FAILURE":
                data = {
                    "cancelResult": "FAILURE",
                    "newOrderResult": "NOT_ATTEMPTED",
                    "cancelResponse": cancel,
                    "newOrderResponse": None,
                }
                raise ApiError(400, -2022, "Order cancel-replace failed.", data) from None
        try:
            placed: dict[str, Any] = self._new_order(params, now_ms, new_id)
            placed_ok = True
        except ApiError as exc:
            placed, placed_ok = exc.error(), False
        data = {
            "cancelResult": "SUCCESS" if cancel_ok else "FAILURE",
            "newOrderResult": "SUCCESS" if placed_ok else "FAILURE",
            "cancelResponse": cancel,
            "newOrderResponse": placed,
        }
        if cancel_ok and placed_ok:
            return data
        if not cancel_ok and not placed_ok:
            raise ApiError(400, -2022, "Order cancel-replace failed.", data)
        raise ApiError(409, -2021, "Order cancel-replace partially failed.", data)

    def do_order_amend_keepPriority(self, params: dict[str, Any], now_ms: int) -> Any:
        """``order.amend.keepPriority``: a smaller quantity, same ``orderId`` and queue place."""
        order = self._find(params, "orderId", "origClientOrderId")
        new_qty = decimal_param(params, "newQty")
        orig = order.client_order_id if order is not None else ""
        order = self.exchange.amend(order, new_qty, self.client_id(params, "newClientOrderId"), now_ms)
        amended = {
            "symbol": self.exchange.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "origClientOrderId": orig,
            "clientOrderId": order.client_order_id,
            "price": fmt(order.price),
            "qty": fmt(order.qty),
            "executedQty": fmt(order.executed),
            "preventedQty": fmt(Decimal(0)),
            "quoteOrderQty": fmt(Decimal(0)),
            "cumulativeQuoteQty": fmt(order.quote),
            "status": order.status,
            "timeInForce": order.time_in_force,
            "type": order.type,
            "side": order.side,
            "workingTime": order.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        return {"transactTime": now_ms, "executionId": self.exchange.next_execution_id, "amendedOrder": amended}

    # -- account ------------------------------------------------------------------------------

    def do_order_status(self, params: dict[str, Any], now_ms: int) -> Any:
        """``order.status`` (-2013 ``Order does not exist.``)."""
        order = self._find(params, "orderId", "origClientOrderId")
        if order is None:
            raise ApiError(400, -2013, "Order does not exist.")
        return order_json(self.exchange.symbol, order)

    def do_openOrders_status(self, params: dict[str, Any], now_ms: int) -> Any:
        """``openOrders.status``."""
        orders = sorted((o for o in self.exchange.orders.values() if o.open), key=lambda o: o.order_id)
        return [order_json(self.exchange.symbol, o) for o in orders]

    def do_myTrades(self, params: dict[str, Any], now_ms: int) -> Any:
        """``myTrades``: ``fromId`` up, or the most recent ``limit`` (default 500, at most 1000)."""
        limit = min(max(int(params.get("limit", 500)), 1), 1000)
        from_id = params.get("fromId")
        order_id = params.get("orderId")
        return self.exchange.my_trades(
            None if from_id is None else int(from_id), None if order_id is None else int(order_id), limit
        )

    def do_allOrders(self, params: dict[str, Any], now_ms: int) -> Any:
        """``allOrders``: with ``startTime``/``endTime`` (at most 24 h apart, else -1127) the orders
        last updated in that range (``orderId`` ignored); else from ``orderId`` up; else the most
        recent. At most ``limit`` (default 500, at most 1000), oldest first."""
        limit = min(max(int(params.get("limit", 500)), 1), 1000)
        start, end = params.get("startTime"), params.get("endTime")
        if start is not None or end is not None:
            if start is not None and end is not None and int(end) - int(start) > DAY_MS:
                raise ApiError(400, -1127, "More than 24 hours between startTime and endTime.")
            orders = self.exchange.orders_updated(
                None if start is None else int(start), None if end is None else int(end), limit
            )
        else:
            order_id = params.get("orderId")
            orders = self.exchange.orders_from(None if order_id is None else int(order_id), limit)
        return [order_json(self.exchange.symbol, o) for o in orders]

    def do_account_status(self, params: dict[str, Any], now_ms: int) -> Any:
        """``account.status``: balances, ``canTrade``, ``permissions``."""
        rows = [
            {"asset": a, "free": fmt(f), "locked": fmt(lk)} for a, (f, lk) in sorted(self.exchange.balances.items())
        ]
        if params.get("omitZeroBalances") is True:
            rows = [r for r in rows if Decimal(r["free"]) or Decimal(r["locked"])]
        rate = fmt(self.exchange.fee_rate)
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": True,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": fmt(Decimal(0)), "seller": fmt(Decimal(0))},
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": now_ms,
            "accountType": "SPOT",
            "balances": rows,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }


def exchange_info_body(x: Exchange, weight_limit: int, orders_limit: int, now_ms: int) -> dict[str, Any]:
    """The ``exchangeInfo`` body of the one symbol (documented shape and filters)."""
    symbol = {
        "symbol": x.symbol,
        "status": "TRADING",
        "baseAsset": x.base,
        "baseAssetPrecision": 8,
        "quoteAsset": x.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "isSpotTradingAllowed": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(x.tick),
                "maxPrice": "1000000.00000000",
                "tickSize": fmt(x.tick),
            },
            {"filterType": "LOT_SIZE", "minQty": fmt(x.step), "maxQty": "9000.00000000", "stepSize": fmt(x.step)},
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(x.min_notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }
    limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": orders_limit},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
    ]
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": limits,
        "exchangeFilters": [],
        "symbols": [symbol],
    }
