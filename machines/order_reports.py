"""Venue reports -> order triggers: what an execution report or an order snapshot means for one order.

Pure decisions (the sans-I/O rule of DESIGN.md): the shell turns the venue's wire messages into the
small frozen facts below, asks these functions which triggers to fire, and fires the returned
``OrderCommand``s in order. Nothing here fires, journals or reads a clock.

An execution report stands for one trigger (``execution_command``). An order snapshot (a status
answer, an open order, a duplicate-submit answer) takes two steps, because the second depends on
what the first left: ``catch_up`` (the ack or reject and the fills the journal lacks), then, with the
order as those left it, ``settle`` (a cancel, an expiry, a pending request settled, changed terms
adopted, or a mismatch to report).

Three answers need more than one trigger (issue 14):

* ``too late`` / ``unknown order`` to a cancel or replace of an acknowledged order (the venue's order
  is done or gone): the reject keeps the order pending (``in_doubt``) and the command says
  ``query_status``: the shell asks the venue for the order and applies the answer with
  ``catch_up``/``settle``, or ``unknown_at_venue`` when the venue has no such order (``lost``).
* a ``canceled`` the kernel never asked for is applied with ``unsolicited: true`` in its data.
* a duplicate-submit answer is our order only when its terms match ours (``duplicate_answer``);
  otherwise the id belongs to another order at the venue: our order is rejected, nothing of the
  other order (its fills above all) is applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from machines.base import Entity
from machines.errors import StateMachineError
from machines.order import DONE, OrderState

S = OrderState
STILL_WORKING = "the venue still has the order working"
KEPT_OLD_TERMS = "the venue kept the old terms"
TERMS_DIFFER = "terms differ at the venue"
UNSOLICITED = "canceled by the venue, unsolicited"
"""The reason of an unsolicited cancel the venue gave no reason for."""
LOST = "lost: the venue no longer knows the order"
FOREIGN_ID = "client order id already used at the venue by another order"
VENUE_DONE = ("filled", "canceled", "rejected", "expired")
"""Venue statuses from which an order never changes (an unknown order is reported as ``rejected``)."""
_FORGOTTEN = ("unknown order", "too late")
"""How the venue's reason starts when it no longer has the order working (``kernel/venue``)."""
_WITH_REASON = {
    "rejected": "reject",
    "canceled": "cancel",
    "cancel_rejected": "cancel_reject",
    "replace_rejected": "replace_reject",
}
"""Execution kinds whose trigger carries only the report's reason."""


class UnknownExecution(StateMachineError, KeyError):
    """An execution report of a kind no order trigger stands for."""


@dataclass(frozen=True, slots=True)
class FillFacts:
    """One execution of an order as the venue reports it; ``trade_id`` is unique at the venue.

    ``liquidity``: ``maker`` (our order rested on the book), ``taker`` (it took a resting order),
    or ``None`` when the venue does not say."""

    trade_id: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fill_seq: int
    ts_ms: int = 0
    liquidity: str | None = None

    def data(self) -> dict[str, Any]:
        """The data of the order's ``fill`` trigger for this fill (``liquidity`` only when known:
        a fill the venue did not qualify is journaled exactly as before the key existed)."""
        data: dict[str, Any] = {
            "qty": self.qty,
            "price": self.price,
            "trade_id": self.trade_id,
            "fee": self.fee,
            "fill_seq": self.fill_seq,
            "ts_ms": self.ts_ms,
        }
        if self.liquidity is not None:
            data["liquidity"] = self.liquidity
        return data


@dataclass(frozen=True, slots=True)
class ExecutionFacts:
    """An execution report: ``kind`` is what happened (``new``, ``trade``, ``canceled``, ...)."""

    kind: str
    venue_order_id: str = ""
    qty: Decimal | None = None
    price: Decimal | None = None
    fill: FillFacts | None = None
    reason: str | None = None
    status: str = ""
    """The venue's status of the order after this report (``""``: not given)."""


@dataclass(frozen=True, slots=True)
class SnapshotFacts:
    """An order as the venue holds it: its status, terms and every fill it made."""

    status: str
    venue_order_id: str = ""
    qty: Decimal | None = None
    price: Decimal | None = None
    fills: tuple[FillFacts, ...] = ()
    reason: str | None = None
    instrument: str = ""
    side: str = ""


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What the decisions read of one order (``OrderFacts.of(entity)`` takes it from the entity)."""

    state: str
    qty: Decimal
    price: Decimal | None = None
    prior_state: str | None = None
    cum_qty: Decimal = Decimal(0)
    trade_ids: frozenset[str] = frozenset()
    requested_qty: Decimal | None = None
    requested_price: Decimal | None = None
    instrument: str = ""
    side: str = ""
    type: str = "limit"
    tif: str = "gtc"

    @classmethod
    def of(cls, order: Entity) -> OrderFacts:
        """The facts of an ``order`` entity as it is now."""
        data = order.data
        return cls(
            state=order.state,
            qty=data["qty"],
            price=data["price"],
            prior_state=data["prior_state"],
            cum_qty=data["cum_qty"],
            trade_ids=frozenset(data["trade_ids"]),
            requested_qty=data["requested_qty"],
            requested_price=data["requested_price"],
            instrument=data["instrument"],
            side=data["side"],
            type=data["type"],
            tif=data["tif"],
        )

    @property
    def live(self) -> bool:
        """Not in a terminal state."""
        return self.state not in DONE

    @property
    def rests(self) -> bool:
        """A limit order meant to rest (``gtc``/``day``): only the venue's own decision cancels it
        unasked (an ``ioc``/``fok``/market remainder is canceled by design)."""
        return self.type == "limit" and self.tif in ("gtc", "day")

    def unsolicited(self, status: str) -> bool:
        """The venue reports ``status`` ``canceled`` though we never asked it to cancel."""
        return status == "canceled" and self.state != S.pending_cancel and self.rests

    @property
    def unacked(self) -> bool:
        """Sent and never acknowledged: ``pending_new``, or a cancel requested before the ack."""
        return self.state == S.pending_new or (self.state == S.pending_cancel and self.prior_state == S.pending_new)


@dataclass(frozen=True, slots=True)
class OrderCommand:
    """Fire ``trigger`` with ``data`` on the order. When it is refused and ``required``, fire
    nothing after it (a refused ack does not stop the fills that follow it; a refused fill does)."""

    trigger: str
    data: Mapping[str, Any] = field(default_factory=dict)
    required: bool = True
    query_status: bool = False
    """Then ask the venue for the order's status and apply the answer (the venue's order is done
    or gone); until it is applied, no further request for the order is made."""


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The first step of a snapshot: fire ``commands``; then, if ``settle`` and none that was
    required was refused, call ``settle`` with the order as they left it."""

    commands: tuple[OrderCommand, ...]
    settle: bool = True


@dataclass(frozen=True, slots=True)
class Settlement:
    """The second step of a snapshot: fire ``commands``; report ``mismatch`` (if any) as a
    ``status_mismatch`` anomaly."""

    commands: tuple[OrderCommand, ...] = ()
    mismatch: str | None = None


def forgotten(report: ExecutionFacts) -> bool:
    """A cancel or replace reject saying the venue no longer has the order working: its status is
    done (an unknown order is reported ``rejected``), or, without a status, its reason starts with
    ``too late``/``unknown order``."""
    if report.kind not in ("cancel_rejected", "replace_rejected"):
        return False
    if report.status:
        return report.status in VENUE_DONE
    return (report.reason or "").lower().startswith(_FORGOTTEN)


def execution_command(report: ExecutionFacts, order: OrderFacts | None = None) -> OrderCommand:
    """The order trigger and data an execution report stands for (docs/venue-protocol.md).

    With ``order`` (the order as the journal holds it): a ``canceled`` we never requested is
    marked ``unsolicited``; a ``forgotten`` reject of a live acknowledged order is ``in_doubt``
    and asks for ``query_status`` (a reject of an unacknowledged order's cancel is B.1.f: the ack
    may still come). A ``trade`` without a fill maps to a ``fill`` with no data: the order machine
    refuses it, so it is reported as an anomaly. Raises ``UnknownExecution`` for a kind no trigger
    stands for.
    """
    kind = report.kind
    if kind == "canceled" and order is not None and order.unsolicited(kind):
        return OrderCommand("cancel", {"reason": report.reason or UNSOLICITED, "unsolicited": True})
    if order is not None and order.live and not order.unacked and forgotten(report):
        return OrderCommand(_WITH_REASON[kind], {"reason": report.reason, "in_doubt": True}, query_status=True)
    if kind == "new":
        return OrderCommand("accept", {"venue_order_id": report.venue_order_id})
    if kind == "trade":
        return OrderCommand("fill", {} if report.fill is None else report.fill.data())
    if kind == "replaced":  # the venue's id of the order now (Binance's cancelReplace makes a new one)
        ids = {"venue_order_id": report.venue_order_id} if report.venue_order_id else {}
        return OrderCommand("replace", {"qty": report.qty, "price": report.price, **ids})
    if kind == "restated":
        return OrderCommand("restate", {"qty": report.qty, "price": report.price, "reason": report.reason})
    if kind == "expired":
        return OrderCommand("expire")
    trigger = _WITH_REASON.get(kind)
    if trigger is None:
        raise UnknownExecution(f"no order trigger for an execution report of kind {kind!r}")
    return OrderCommand(trigger, {"reason": report.reason})


RATE_LIMITED = "rate_limited"
"""How the reason of a request the venue refused as over its order rate starts."""
_REFUSED_REQUEST = {"new_order": ("reject", (S.pending_new,)), "cancel_order": ("cancel_reject", (S.pending_cancel,)),
                    "replace_order": ("replace_reject", (S.pending_replace,))}  # fmt: skip


def rate_limited_command(order: OrderFacts, request: str, message: str) -> OrderCommand | None:
    """The trigger for an order whose ``request`` (``new_order``, ``cancel_order``,
    ``replace_order``) the venue refused as ``rate_limited``: nothing was executed, so the new
    order is rejected (never resent), a cancel or replace is refused (the order stays as it was);
    reason ``rate_limited: <the venue's message>``. ``None`` when the order is no longer waiting
    for that request (its answer already came another way)."""
    trigger, states = _REFUSED_REQUEST.get(request, ("", ()))
    waiting = order.unacked if request == "new_order" else order.state in states
    if not trigger or not waiting:
        return None
    return OrderCommand(trigger, {"reason": f"{RATE_LIMITED}: {message}"})


def catch_up(order: OrderFacts, snapshot: SnapshotFacts) -> CatchUp:
    """What the journal lacks of the venue's ``snapshot``: the reject of an unacknowledged order
    (and nothing after it), or its ack, then each fill not yet applied, in ``fill_seq`` order."""
    if order.unacked and snapshot.status == "rejected":
        return CatchUp((OrderCommand("reject", {"reason": snapshot.reason}),), settle=False)
    commands: list[OrderCommand] = []
    if order.unacked and snapshot.venue_order_id:
        commands.append(OrderCommand("accept", {"venue_order_id": snapshot.venue_order_id}, required=False))
    applied = set(order.trade_ids)
    for fill in sorted(snapshot.fills, key=lambda f: f.fill_seq):
        if fill.trade_id not in applied:
            applied.add(fill.trade_id)
            commands.append(OrderCommand("fill", fill.data()))
    return CatchUp(tuple(commands))


def settle(order: OrderFacts, snapshot: SnapshotFacts, *, requests: bool = True) -> Settlement:
    """Bring a live order to the venue's status once its fills are applied.

    ``requests``: the snapshot may settle pending cancel/replace requests and restate terms (a
    status answer may; a duplicate-submit answer may predate a request still in flight, so it
    may not). A status the journal cannot reach (the venue says filled, yet the fills do not add
    up; rejected after an ack) is a mismatch.
    """
    if not order.live:
        return Settlement()
    status = snapshot.status
    if order.unsolicited(status):
        return Settlement((OrderCommand("cancel", {"reason": snapshot.reason or UNSOLICITED, "unsolicited": True}),))
    if status == "canceled":
        return Settlement((OrderCommand("cancel", {"reason": snapshot.reason}),))
    if status == "expired":
        return Settlement((OrderCommand("expire"),))
    if status in ("new", "partially_filled"):
        return Settlement(_still_working(order, snapshot)) if requests else Settlement()
    return Settlement(mismatch=f"venue says {status}, journal says {order.state} (cum_qty {order.cum_qty})")


def unknown_at_venue(order: OrderFacts, answer: str | None) -> OrderCommand | None:
    """A status query of an order whose cancel or replace was answered ``answer`` (``too late``,
    ``unknown order``) found no such order at the venue: a live acknowledged order is ``lost``
    (done, with the evidence); ``None`` for an unacknowledged one (never concluded here: the
    reconnect's resolution and reconciliation decide, with their grace) or a finished one."""
    if not order.live or order.unacked:
        return None
    evidence = f"the venue answered {answer!r} to our request and a status query found no such order"
    return OrderCommand("lost", {"reason": LOST, "evidence": evidence})


@dataclass(frozen=True, slots=True)
class DuplicateAnswer:
    """What a duplicate-submit answer is: ``ours`` (apply it with ``catch_up``/``settle``), or
    another order under our id: ``mismatch`` says how, ``commands`` reject our order if unacked."""

    ours: bool
    mismatch: str | None = None
    commands: tuple[OrderCommand, ...] = ()


def _terms(instrument: str, side: str, qty: Decimal | None, price: Decimal | None) -> str:
    return f"{side} {qty} {instrument} @ {'market' if price is None else price}"


def duplicate_answer(order: OrderFacts, snapshot: SnapshotFacts) -> DuplicateAnswer:
    """A duplicate-submit answer is ours only if instrument, side, qty and price match our order.

    (A resend after a crash is answered with our own order: same terms.) Otherwise the venue
    holds another order under our client order id: nothing of it is applied, and an order still
    unacknowledged is rejected with the reason (its fills are never booked as ours).
    """
    ours = (order.instrument, order.side, order.qty, order.price)
    theirs = (snapshot.instrument, snapshot.side, snapshot.qty, snapshot.price)
    if ours == theirs:
        return DuplicateAnswer(True)
    mismatch = f"{FOREIGN_ID}: venue has {_terms(*theirs)}, journal has {_terms(*ours)}"
    if not order.unacked:
        return DuplicateAnswer(False, mismatch)
    return DuplicateAnswer(False, mismatch, (OrderCommand("reject", {"reason": mismatch}),))


def _still_working(order: OrderFacts, snapshot: SnapshotFacts) -> tuple[OrderCommand, ...]:
    """The venue has the order working: settle a pending request, or adopt changed terms."""
    if order.state == S.pending_cancel:
        return (OrderCommand("cancel_reject", {"reason": STILL_WORKING}),)
    terms = {"qty": snapshot.qty, "price": snapshot.price}
    if order.state == S.pending_replace:
        wanted_qty = order.qty if order.requested_qty is None else order.requested_qty
        wanted_price = order.price if order.requested_price is None else order.requested_price
        if snapshot.qty == wanted_qty and snapshot.price == wanted_price:
            return (OrderCommand("replace", terms),)
        return (OrderCommand("replace_reject", {"reason": KEPT_OLD_TERMS}),)
    if order.state in (S.accepted, S.partially_filled) and (snapshot.qty != order.qty or snapshot.price != order.price):
        return (OrderCommand("restate", {**terms, "reason": TERMS_DIFFER}),)
    return ()


__all__ = [
    "FOREIGN_ID",
    "LOST",
    "RATE_LIMITED",
    "UNSOLICITED",
    "VENUE_DONE",
    "CatchUp",
    "DuplicateAnswer",
    "ExecutionFacts",
    "FillFacts",
    "OrderCommand",
    "OrderFacts",
    "Settlement",
    "SnapshotFacts",
    "UnknownExecution",
    "catch_up",
    "duplicate_answer",
    "execution_command",
    "forgotten",
    "rate_limited_command",
    "settle",
    "unknown_at_venue",
]
