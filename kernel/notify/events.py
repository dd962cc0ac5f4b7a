"""What is worth telling an operator, read off the journal's committed rows: ``notices_of``.

The kernel journals every transition before it acts, so one place sees them all: after each commit
(``Journal.after_commit``) the notifier reads the batch just made durable (``Journal.last_batch``)
and turns the rows that matter into ``Notice``s:

* ``fill``: a fill applied to a position (the order manager folds each order fill that applied a
  new trade into its instrument's ``position`` in the same batch; a repeated report is no fill);
* ``halt``: the trading machine entering ``halting`` or ``halted`` (with its reason);
* ``arm``: the trading machine armed by an operator (active again);
* ``health``: the kernel's overall health entity changing state (with the reason);
* ``stop``: the kernel's health entity told ``stop`` (the stop sequence began; its reason).

Texts show decimals as people read them (``kernel/display.py``: price to the tick, quantity to the
lot, fees in the quote currency); ``data`` keeps the journal's exact decimal strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kernel.display import Precision, quote_currency
from machines import Entity
from storage import codec

Row = tuple[int, int, int, str, str, str, "str | None", str, str, str]
"""A committed ``transitions`` row: (seq, ts, run, machine, entity, trigger, source, dest, data, hash)."""
Entities = Mapping[tuple[str, str], tuple[Entity, int]]
"""The entities a batch left, by (machine, entity id), with the seq of their last row."""

HALT_STATES = frozenset({"halting", "halted"})
STOP_STATES = frozenset({"stopping", "stopped"})
KERNEL_HEALTH_PREFIX = "kernel-r"
"""The kernel's own health entity is ``kernel-rRUN`` (``kernel.bootstrap.entity_id``)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification: ``kind`` (fill, halt, arm, health, stop), ``time`` (UTC, ISO 8601, when
    the journal recorded it), a line of ``text`` for people, and ``data`` (JSON-ready, exact)."""

    kind: str
    time: str
    text: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The webhook's JSON body: ``{"kind", "time", "text", "data"}``."""
        return {"kind": self.kind, "time": self.time, "text": self.text, "data": dict(self.data)}


def utc_iso(ts_ns: int) -> str:
    """Nanoseconds since the epoch as UTC ISO 8601 with milliseconds: ``2026-12-03T02:34:31.123Z``."""
    moment = dt.datetime.fromtimestamp(ts_ns // 1_000_000 / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notices_of(rows: Iterable[Row], entities: Entities, precision_of: Callable[[str], Precision]) -> list[Notice]:
    """The notices of one committed batch, in journal order (see the module docstring)."""
    notices: list[Notice] = []
    for row in rows:
        machine, trigger, source, dest = row[3], row[5], row[6], row[7]
        if machine == "position" and trigger == "fill":
            notices.append(_fill(row, entities, precision_of))
        elif source is None or source == dest:  # a create, or a change within a state: no news
            continue
        elif machine == "trading" and (dest in HALT_STATES or trigger == "arm"):
            notices.append(_trading(row, entities))
        elif (
            machine == "health"
            and row[4].startswith(KERNEL_HEALTH_PREFIX)
            and (trigger == "stop" or dest not in STOP_STATES)
        ):
            notices.append(_health(row, entities))
    return notices


def _fill(row: Row, entities: Entities, precision_of: Callable[[str], Precision]) -> Notice:
    """A position's ``fill``: the order manager fires it, in the same batch, for each order fill that
    applied a new trade (never for a repeated report), with the fill's side, qty, price, fee,
    trade id and order."""
    data = codec.decode(row[8])
    instrument = row[4]
    order_id = str(data.get("client_order_id", ""))
    found = entities.get(("order", order_id))
    order: Mapping[str, Any] = {} if found is None else found[0].data
    p = precision_of(instrument)
    currency = quote_currency(instrument)
    side = str(data.get("side", ""))
    text = (
        f"Filled {side} {p.qty(_dec(data['qty']))} {instrument} at {p.price(_dec(data['price']))}, "
        f"fee {p.money(_dec(data.get('fee') or 0))}{' ' + currency if currency else ''}"
    )
    if found is not None:
        state = found[0].state
        text += f" (order {order_id}: {p.qty(_dec(order.get('cum_qty')))} of {p.qty(_dec(order.get('qty')))}, {state})"
    body = {
        "order": order_id,
        "instrument": instrument,
        "side": side,
        "qty": _exact(data["qty"]),
        "price": _exact(data["price"]),
        "fee": _exact(data.get("fee") or "0"),
        "trade_id": data.get("trade_id"),
        "cum_qty": _exact(order.get("cum_qty")),
        "order_qty": _exact(order.get("qty")),
        "order_state": None if found is None else str(found[0].state),
        "run": row[2],
        "seq": row[0],
    }
    return Notice("fill", utc_iso(row[1]), text, body)


def _exact(value: Any) -> str | None:
    return None if value is None else str(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _reason(row: Row, entities: Entities) -> str | None:
    data = codec.decode(row[8])
    reason = data.get("reason")
    if reason is None:
        found = entities.get((row[3], row[4]))
        reason = None if found is None else found[0].data.get("reason")
    return None if reason is None else str(reason)


def _trading(row: Row, entities: Entities) -> Notice:
    reason = _reason(row, entities)
    trigger, source, dest = row[5], row[6], row[7]
    if trigger == "arm":
        kind, text = "arm", f"Trading armed: {source} -> {dest}"
    else:
        kind, text = "halt", f"Trading {dest} (from {source}, {trigger})"
    text += f": {reason}" if reason else ""
    body = {"state": dest, "from": source, "trigger": trigger, "reason": reason, "run": row[2], "seq": row[0]}
    return Notice(kind, utc_iso(row[1]), text, body)


def _health(row: Row, entities: Entities) -> Notice:
    reason = _reason(row, entities)
    source, dest = row[6], row[7]
    if row[5] == "stop":
        kind, text = "stop", f"Kernel run {row[2]} stopping"
    else:
        kind, text = "health", f"Kernel health {source} -> {dest}"
    text += f": {reason}" if reason else ""
    body = {"state": dest, "from": source, "trigger": row[5], "reason": reason, "run": row[2], "seq": row[0]}
    return Notice(kind, utc_iso(row[1]), text, body)


__all__ = ["Notice", "Row", "notices_of", "utc_iso"]
