"""The strategy API: callbacks in, order intents out; a strategy never does I/O.

A strategy is a class with four callbacks. Each gets a read-only ``Context`` (the kernel's view at
that instant: time, positions, open orders, last prices) and returns an iterable of intents
(``Place``, ``Cancel``, ``Replace``), which the kernel checks, journals and sends::

    class MyStrategy(Strategy):
        name = "mine"

        @dataclass(frozen=True)
        class Params:
            instrument: str = "BTCUSDT"
            qty: Decimal = Decimal("0.001")

        def on_market(self, event, ctx):
            if ctx.trading_allowed and isinstance(event, TradeEvent) and not ctx.open_orders:
                yield Place(self.params.instrument, "buy", self.params.qty, event.price - 10)

Time comes only from ``ctx.now_ms`` (a fake clock in tests), so a strategy is deterministic.
``Params`` is a frozen dataclass: ``[strategy.params]`` in the config is checked against it
(unknown keys and wrong types are errors naming the key), so every strategy is configured the same
way. An exception in a callback is caught by the kernel, counted against the strategy's health and
logged; its intents of that call are dropped.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from kernel.errors import KernelError
from kernel.feed.events import QuoteEvent, TradeEvent
from machines.base import Entity
from machines.order_terms import OrderTerms, Side
from machines.positions import Position

MarketEvent = TradeEvent | QuoteEvent


@dataclass(frozen=True, slots=True)
class Place(OrderTerms):
    """Place a new order: ``OrderTerms`` (``instrument, side, qty, price=None, order_type="limit",
    tif="gtc", tag=""``). ``price`` is required for limit orders and ignored for market orders;
    ``tag`` is free text for the strategy's own bookkeeping, kept in the order's journal data."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a live order."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class Replace:
    """Change a live order's quantity and/or price (at least one of them)."""

    client_order_id: str
    qty: Decimal | None = None
    price: Decimal | None = None


Intent = Place | Cancel | Replace


@dataclass(frozen=True, slots=True)
class OrderView:
    """A read-only copy of one order as the journal holds it."""

    client_order_id: str
    instrument: str
    side: Side
    order_type: str
    tif: str
    state: str
    qty: Decimal
    price: Decimal | None
    cum_qty: Decimal
    leaves_qty: Decimal
    avg_px: Decimal | None
    live: bool
    tag: str = ""

    @classmethod
    def of(cls, order: Entity) -> OrderView:
        """The view of an order entity (machine ``order``)."""
        data = order.data
        return cls(
            client_order_id=order.entity_id,
            instrument=data["instrument"],
            side=data["side"],
            order_type=data["type"],
            tif=data["tif"],
            state=str(order.state),
            qty=data["qty"],
            price=data["price"],
            cum_qty=data["cum_qty"],
            leaves_qty=data["leaves_qty"],
            avg_px=data["avg_px"],
            live=order.live,
            tag=data.get("tag") or "",
        )


@dataclass(frozen=True, slots=True)
class FillView:
    """One execution of an order."""

    qty: Decimal
    price: Decimal
    fee: Decimal
    trade_id: str


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order changed: ``trigger`` took it from ``source`` to ``order.state``; ``fill`` for fills."""

    order: OrderView
    trigger: str
    source: str
    fill: FillView | None = None
    reason: str | None = None


class ContextSource(Protocol):
    """Where a ``Context`` reads what a callback looks at, on first use (the strategy host)."""

    def trading_allowed(self) -> bool: ...
    def positions(self) -> Mapping[str, Position]: ...
    def open_orders(self) -> Mapping[str, OrderView]: ...
    def last_trade(self) -> Mapping[str, TradeEvent]: ...
    def last_quote(self) -> Mapping[str, QuoteEvent]: ...


_UNREAD: Any = object()
_FIELDS = ("trading_allowed", "positions", "open_orders", "last_trade", "last_quote")


class Context:
    """The kernel's state as a strategy may see it, at ``now_ms``. Read-only.

    Built by the kernel for each callback, each field is read from the kernel on first use (most
    callbacks look at one or two), and whatever the callback left unread is read when it returns
    if it kept the context: a context read later still shows the instant of its callback.
    """

    __slots__ = ("now_ms", "_trading_allowed", "_positions", "_open_orders", "_last_trade", "_last_quote",
                 "_source", "__weakref__")  # fmt: skip
    now_ms: int
    _source: ContextSource | None

    def __init__(
        self,
        now_ms: int,
        trading_allowed: bool,
        positions: Mapping[str, Position],
        open_orders: Mapping[str, OrderView],
        last_trade: Mapping[str, TradeEvent],
        last_quote: Mapping[str, QuoteEvent],
    ) -> None:
        values = (now_ms, trading_allowed, positions, open_orders, last_trade, last_quote, None)
        for name, value in zip(self.__slots__, values, strict=False):
            object.__setattr__(self, name, value)

    @classmethod
    def reading(cls, now_ms: int, source: ContextSource) -> Context:
        """A context whose fields are read from ``source`` on first use (``seal`` reads the rest)."""
        context = cls.__new__(cls)
        for name, value in zip(cls.__slots__, (now_ms, *(_UNREAD,) * 5, source), strict=False):
            object.__setattr__(context, name, value)
        return context

    def _read(self, field: str) -> Any:
        value = getattr(self, "_" + field)
        if value is _UNREAD:
            value = getattr(self._source, field)()
            object.__setattr__(self, "_" + field, value)
        return value

    def seal(self) -> None:
        """Read every field not read yet, and forget the source: the context no longer changes."""
        if self._source is not None:
            for field in _FIELDS:
                self._read(field)
            object.__setattr__(self, "_source", None)

    @property
    def trading_allowed(self) -> bool:
        """False while order entry is paused (venue session down or resolving, feed stale, unhealthy,
        stopping): intents returned now are denied and journaled as such."""
        value: bool = self._read("trading_allowed")
        return value

    @property
    def positions(self) -> Mapping[str, Position]:
        """Positions by instrument."""
        value: Mapping[str, Position] = self._read("positions")
        return value

    @property
    def open_orders(self) -> Mapping[str, OrderView]:
        """Live orders by client order id."""
        value: Mapping[str, OrderView] = self._read("open_orders")
        return value

    @property
    def last_trade(self) -> Mapping[str, TradeEvent]:
        """The last trade seen per instrument."""
        value: Mapping[str, TradeEvent] = self._read("last_trade")
        return value

    @property
    def last_quote(self) -> Mapping[str, QuoteEvent]:
        """The last quote seen per instrument."""
        value: Mapping[str, QuoteEvent] = self._read("last_quote")
        return value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Context is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Context is read-only: cannot delete {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return (self.now_ms, *(self._read(field) for field in _FIELDS))

    def __eq__(self, other: object) -> bool:
        return self._values() == other._values() if isinstance(other, Context) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={value!r}" for name, value in zip(("now_ms", *_FIELDS), self._values(), strict=True)
        )
        return f"Context({fields})"

    def position(self, instrument: str) -> Position:
        """The position in ``instrument`` (flat if it never traded)."""
        return self.positions.get(instrument) or Position(instrument)

    def mid(self, instrument: str) -> Decimal | None:
        """The mid of the last quote, or ``None`` before the first quote."""
        quote = self.last_quote.get(instrument)
        return None if quote is None else (quote.bid + quote.ask) / 2

    def orders_of(self, instrument: str) -> list[OrderView]:
        """Open orders in ``instrument``, oldest first."""
        return [order for order in self.open_orders.values() if order.instrument == instrument]


class StrategyError(KernelError, ValueError):
    """A strategy that cannot be loaded or configured: names the strategy and the key at fault."""


class InvalidParams(StrategyError):
    """A strategy parameter out of range (raised by a ``Params`` check): names the parameter."""


class InvalidIntent(KernelError, TypeError):
    """A callback returned something that is not a ``Place``, ``Cancel`` or ``Replace``."""


class Strategy:
    """Base class: override the callbacks you need; each returns an iterable of intents."""

    name: ClassVar[str] = ""
    """The name ``--strategy NAME`` and ``[strategy] name`` refer to."""
    timer_interval_ms: ClassVar[int | None] = None
    """How often ``on_timer`` is called; ``None``: never. ``[strategy] timer_interval_ms`` overrides it."""

    @dataclass(frozen=True)
    class Params:
        """No parameters."""

    def __init__(self, params: Any = None) -> None:
        self.params = type(self).Params() if params is None else params

    def on_start(self, ctx: Context) -> Iterable[Intent]:
        """Called once, when the kernel is ready to trade (or as ready as it gets)."""
        return ()

    def on_market(self, event: MarketEvent, ctx: Context) -> Iterable[Intent]:
        """Called for each trade and quote of a subscribed instrument."""
        return ()

    def on_order(self, update: OrderUpdate, ctx: Context) -> Iterable[Intent]:
        """Called after each committed change to one of this kernel's orders."""
        return ()

    def on_timer(self, ctx: Context) -> Iterable[Intent]:
        """Called every ``timer_interval_ms``."""
        return ()


BUILTIN: Mapping[str, str] = {
    "market_maker": "kernel.strategies.market_maker:MarketMaker",
    "momentum": "kernel.strategies.momentum:Momentum",
    "idle": "kernel.strategy:Strategy",
}
"""The strategies shipped with the kernel, by name."""


def load_strategy_class(spec: str) -> type[Strategy]:
    """The class named by ``spec``: a built-in name, or ``module:Class`` importable from ``sys.path``."""
    target = BUILTIN.get(spec, spec)
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise StrategyError(f"unknown strategy {spec!r}: use one of {', '.join(sorted(BUILTIN))} or module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyError(f"strategy {spec!r}: cannot import {module_name!r}: {exc}") from exc
    found = getattr(module, class_name, None)
    if not isinstance(found, type) or not issubclass(found, Strategy):
        raise StrategyError(f"strategy {spec!r}: {class_name!r} in {module_name!r} is not a Strategy subclass")
    return found


def build_params(strategy: type[Strategy], raw: Mapping[str, Any], where: str = "strategy.params") -> Any:
    """``strategy.Params`` from config values, strictly: unknown keys, missing required keys and
    wrong types raise ``StrategyError`` naming ``where.key``. Decimal fields accept Decimal (TOML
    numbers are read as Decimal), int and numeric strings; never a binary float."""
    params_type = strategy.Params
    fields = {f.name: f for f in dataclasses.fields(params_type)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise StrategyError(
            f"{where}.{unknown[0]}: unknown parameter of strategy {strategy.name or strategy.__name__!r} "
            f"(known: {', '.join(fields) or 'none'})"
        )
    values: dict[str, Any] = {}
    hints = _hints(params_type)
    for key, value in raw.items():
        values[key] = _coerce(value, hints.get(key, Any), f"{where}.{key}")
    try:
        return params_type(**values)
    except TypeError as exc:
        raise StrategyError(f"{where}: {exc}") from exc
    except ValueError as exc:
        raise StrategyError(f"{where}: {exc}") from exc


def _hints(params_type: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(params_type)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if hint is Decimal:
        if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
            raise StrategyError(f"{key}: expected a decimal number, got {type(value).__name__} {value!r}")
        try:
            number = Decimal(value)
        except ArithmeticError:
            raise StrategyError(f"{key}: not a decimal number: {value!r}") from None
        if not number.is_finite():
            raise StrategyError(f"{key}: must be finite, got {value!r}")
        return number
    if hint is bool:
        if not isinstance(value, bool):
            raise StrategyError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | Decimal) or int(value) != value:
            raise StrategyError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise StrategyError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise StrategyError(f"{key}: expected a string, got {value!r}")
        return value
    return value


__all__ = [
    "BUILTIN",
    "Cancel",
    "Context",
    "FillView",
    "Intent",
    "InvalidIntent",
    "InvalidParams",
    "MarketEvent",
    "OrderUpdate",
    "OrderView",
    "Place",
    "Replace",
    "Side",
    "Strategy",
    "StrategyError",
    "build_params",
    "load_strategy_class",
]
