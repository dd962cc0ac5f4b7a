"""The ``order`` machine: one entity per order (its client order id), FIX order-state semantics.

States and triggers are public API (scenario files and the journal use them); semantics follow the
FIX 4.4 Order State Change Matrices (Volume 4, Appendix D; unchanged in FIX 5.0 SP2). The rules
that matter most, with their matrix references (docs/machines/order.md has the whole list):

* Quantities: ``leaves_qty = qty - cum_qty`` while the order is working, 0 once it is done
  (filled, canceled, expired, rejected, denied); ``avg_px`` is the fill-weighted average price,
  kept exact as ``filled_notional / cum_qty``.
* A cancel or replace request moves the order to ``pending_cancel``/``pending_replace`` and
  remembers the state it had (``prior_state``). A reject of the request returns it there (B.1.a,
  C.2.a). Fills arriving meanwhile apply with the *old* quantity and price (B.1.b, C.1.b): an
  order pending replace is not replaced until the venue confirms it. A fill that completes the
  old quantity fills the order (B.1.c); the late cancel or replace reject is harmless and recorded
  (B.1.c, C.1.c).
* A confirmed replace to a quantity at or below ``cum_qty`` leaves the order ``filled`` with its
  quantity amended to ``cum_qty`` (C.3.b, C.3.c); above it, the order works on (C.3.a).
* A cancel may be requested before the new-order ack (B.1.d); an ack that crosses the request keeps
  the order ``pending_cancel`` but a later cancel reject returns it to ``accepted`` (B.1.e).
* Unsolicited cancel (the venue cancels on its own: E.1.a-style) and restatement (``restate``:
  the venue changes quantity or price, e.g. a partial decline of quantity) are accepted from the
  working states.

Anomalies never corrupt the order: a fill whose ``trade_id`` was already applied is ignored and
counted in ``duplicate_fills`` (the journal still records that it arrived); a fill that would take
``cum_qty`` past ``qty`` raises ``Overfill``; non-positive quantity or price raises ``InvalidData``;
a fill for an order in ``new``, ``denied`` or ``rejected`` raises ``InvalidTransition``; all leave
the order unchanged. A *late* fill after ``canceled`` or ``expired`` (the venue traded before it
processed the cancel, and reports it after) is applied: it is real, so ``cum_qty``, ``avg_px`` and
positions must include it. The order stays in its terminal state, ``leaves_qty`` stays 0, and
``late_fills`` counts it.

A cancel or replace answered ``too late`` or ``unknown order`` for an acknowledged order (data
``in_doubt``) leaves it pending: the venue's order is done or gone, so a status query settles it
(filled, canceled, expired, or ``lost``: the venue no longer knows an order it acknowledged, which
ends ``expired`` with the reason), and meanwhile no new request is made for it.

Reconciliation (after a crash, before trading): what the venue knows and the journal lacks is
applied with ``reconcile_*`` triggers. ``reconcile_accept``, ``reconcile_fill`` and the other
mirrors of ``MIRRORED`` are generated from the live-report rules (same sources, destinations, guards
and effects), so the two can never drift; the audit tells them apart by name. ``reconcile_lost``
concludes that an order journaled as sent never reached the venue (``rejected``; only before an
ack). ``create`` takes ``origin="external"`` for an order found at the venue that the journal never
recorded (adopted, so it is tracked).

Time never enters this machine: nothing here depends on when a report arrives.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from machines.base import Data, Entity, Rule, StateMachine
from machines.errors import DefinitionError, InvalidData
from machines.order_data import (
    DECIMAL_FIELDS,
    MAX_REASON_CHARS,
    MAX_TAG_CHARS,
    ORIGINS,
    SIDES,
    TIFS,
    TYPES,
    decode_data,
    fill_data,
    init_data,
    new_fill_qty,
    to_decimal,
    trade_id_of,
)
from machines.registry import register


class OrderState(StrEnum):
    """Public state names of an order."""

    new = "new"
    denied = "denied"
    pending_new = "pending_new"
    accepted = "accepted"
    partially_filled = "partially_filled"
    filled = "filled"
    pending_cancel = "pending_cancel"
    pending_replace = "pending_replace"
    canceled = "canceled"
    rejected = "rejected"
    expired = "expired"


class Overfill(InvalidData):
    """A fill would take ``cum_qty`` past the order quantity; the order is unchanged."""


S = OrderState
RECONCILE_PREFIX = "reconcile_"
"""Prefix of the triggers that apply what reconciliation learned from the venue."""
MIRRORED = ("accept", "fill", "cancel", "expire", "reject", "replace", "replace_reject", "cancel_reject", "restate")
"""Venue-report triggers that have a ``reconcile_`` mirror: the same rules under another name."""
DONE = (S.filled, S.canceled, S.expired, S.rejected, S.denied)
WORKING = (S.accepted, S.partially_filled)
FILLABLE = (S.pending_new, S.accepted, S.partially_filled)
PENDING = (S.pending_cancel, S.pending_replace)
_DONE_NAMES, _PENDING_NAMES = frozenset(s.value for s in DONE), frozenset(s.value for s in PENDING)
_PRIOR_WORKING = (S.pending_new.value, S.accepted.value)  # prior states a partial fill moves on
ZERO = Decimal(0)


# -- guards -------------------------------------------------------------------------------------


def new_trade(order: Entity, data: Data) -> bool:
    """The fill's ``trade_id`` has not been applied yet (a repeat falls through to the last rule)."""
    return trade_id_of(data) not in order.data["trade_ids"]


def completes(order: Entity, data: Data) -> bool:
    """A new fill that takes ``cum_qty`` to (or past: ``Overfill`` follows) the order quantity."""
    qty = new_fill_qty(data, order.data["trade_ids"])
    return qty is not None and bool(order.data["cum_qty"] + qty >= order.data["qty"])


def _prior(state: OrderState) -> Any:
    def check(order: Entity, data: Data) -> bool:
        return bool(order.data["prior_state"] == state)

    check.__name__ = f"was_{state.value}"
    return check


def _replaced_qty(order: Entity, data: Data) -> Decimal:
    if data.get("qty") is not None:
        return to_decimal(data["qty"], "qty")
    requested: Decimal | None = order.data["requested_qty"]
    return requested if requested is not None else order.data["qty"]


def replace_fills(order: Entity, data: Data) -> bool:
    """The confirmed quantity is at or below ``cum_qty``: the order is done (C.3.b, C.3.c)."""
    return bool(_replaced_qty(order, data) <= order.data["cum_qty"])


def restate_fills(order: Entity, data: Data) -> bool:
    """The restated quantity is at or below ``cum_qty``: the order is done."""
    if data.get("qty") is None:
        return False
    return bool(to_decimal(data["qty"], "qty") <= order.data["cum_qty"])


def has_fills(order: Entity, data: Data) -> bool:
    """Some quantity is already filled."""
    return bool(order.data["cum_qty"] > 0)


# -- effects ------------------------------------------------------------------------------------


def _apply_fill(order: Entity, data: Data, *, late: bool = False) -> dict[str, Any]:
    qty, price, trade_id, fee = fill_data(data)
    terms = order.data  # read once: this runs on every fill
    order_qty = terms["qty"]
    cum_qty = terms["cum_qty"] + qty
    if cum_qty > order_qty:
        raise Overfill(f"fill of {qty} would take cum_qty to {cum_qty}, above the order qty {order_qty}")
    notional = terms["filled_notional"] + qty * price
    state = order.state
    changes: dict[str, Any] = {
        "cum_qty": cum_qty,
        "leaves_qty": order_qty - cum_qty if cum_qty < order_qty and state not in _DONE_NAMES else ZERO,
        "filled_notional": notional,
        "avg_px": notional / cum_qty,
        "fees": terms["fees"] + fee,
        "trade_ids": [*terms["trade_ids"], trade_id],
    }
    if state in _PENDING_NAMES:
        if cum_qty == order_qty:  # filled while pending (B.1.c): the request is moot
            changes.update(prior_state=None, requested_qty=None, requested_price=None)
        elif terms["prior_state"] in _PRIOR_WORKING:
            changes["prior_state"] = S.partially_filled.value  # a reject now returns here
    if late:
        changes["late_fills"] = terms["late_fills"] + 1
    return changes


def _fill(order: Entity, data: Data) -> dict[str, Any]:
    return _apply_fill(order, data)


def _late_fill(order: Entity, data: Data) -> dict[str, Any]:
    return _apply_fill(order, data, late=True)


def _duplicate_fill(order: Entity, data: Data) -> dict[str, Any]:
    fill_data(data)  # a repeat must still be a well-formed fill
    return {"duplicate_fills": order.data["duplicate_fills"] + 1}


def _reason(order: Entity, data: Data) -> dict[str, Any]:
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidData(f"reason must be a string, got {reason!r}")
    return {"reason": reason}


def _deny(order: Entity, data: Data) -> dict[str, Any]:
    if not isinstance(data.get("reason"), str) or not data["reason"]:
        raise InvalidData("deny needs a reason")
    return {"reason": data["reason"], "leaves_qty": ZERO}


def _accept(order: Entity, data: Data) -> dict[str, Any]:
    venue_order_id = data.get("venue_order_id")
    if not isinstance(venue_order_id, str) or not venue_order_id:
        raise InvalidData("accept needs a venue_order_id (a non-empty string)")
    changes: dict[str, Any] = {"venue_order_id": venue_order_id}
    if order.state == S.pending_cancel:  # the ack crossed our cancel request (B.1.e)
        changes["prior_state"] = S.accepted.value
    return changes


def _reject(order: Entity, data: Data) -> dict[str, Any]:
    return {**_reason(order, data), "leaves_qty": ZERO, "prior_state": None}


def _done(order: Entity, data: Data) -> dict[str, Any]:
    return {
        **_reason(order, data),
        "leaves_qty": ZERO,
        "prior_state": None,
        "requested_qty": None,
        "requested_price": None,
    }


def _request_cancel(order: Entity, data: Data) -> dict[str, Any]:
    return {"prior_state": order.state}


def _back_to_prior(order: Entity, data: Data) -> dict[str, Any]:
    return {**_reason(order, data), "prior_state": None, "requested_qty": None, "requested_price": None}


def _request_replace(order: Entity, data: Data) -> dict[str, Any]:
    qty = to_decimal(data["qty"], "qty") if data.get("qty") is not None else None
    price = to_decimal(data["price"], "price") if data.get("price") is not None else None
    if qty is None and price is None:
        raise InvalidData("request_replace needs a new qty or price")
    if price is not None and order.data["type"] == "market":
        raise InvalidData("a market order has no price to replace")
    return {"prior_state": order.state, "requested_qty": qty, "requested_price": price}


def _new_terms(order: Entity, data: Data, qty: Decimal) -> dict[str, Any]:
    price = order.data["price"]
    if data.get("price") is not None:
        if order.data["type"] == "market":
            raise InvalidData("a market order has no price")
        price = to_decimal(data["price"], "price")
    elif order.data["requested_price"] is not None and order.state == S.pending_replace:
        price = order.data["requested_price"]
    cum_qty = order.data["cum_qty"]
    final_qty = max(qty, cum_qty)  # at or below cum_qty: amended to cum_qty (C.3.b, C.3.c)
    return {
        "qty": final_qty,
        "price": price,
        "leaves_qty": final_qty - cum_qty,
        "prior_state": None,
        "requested_qty": None,
        "requested_price": None,
    }


def _replace(order: Entity, data: Data) -> dict[str, Any]:
    return _new_terms(order, data, _replaced_qty(order, data))


def _restate(order: Entity, data: Data) -> dict[str, Any]:
    qty = to_decimal(data["qty"], "qty") if data.get("qty") is not None else order.data["qty"]
    return {**_new_terms(order, data, qty), **_reason(order, data)}


def _returns_to_prior(trigger: str, source: OrderState, priors: tuple[OrderState, ...], doc: str) -> tuple[Rule, ...]:
    """One rule per state a pending request may return to: back to the state it left."""
    return tuple(Rule(trigger, source, prior, guard=_prior(prior), effect=_back_to_prior, doc=doc) for prior in priors)


def _lost(order: Entity, data: Data) -> dict[str, Any]:
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason:
        raise InvalidData("reconcile_lost needs a reason (a non-empty string)")
    evidence = data.get("evidence")
    if evidence is not None and not isinstance(evidence, str):
        raise InvalidData(f"evidence must be a string, got {evidence!r}")
    return {"reason": reason, "leaves_qty": ZERO, "prior_state": None}


def in_doubt(order: Entity, data: Data) -> bool:
    """The venue answered our request as if its order were done or gone (``too late``, ``unknown
    order``: ``machines.order_reports`` sets ``in_doubt``): a status query must settle it."""
    return data.get("in_doubt") is True and acked(order, data)


def acked(order: Entity, data: Data) -> bool:
    """The venue acknowledged the order (a cancel requested before the ack is not)."""
    return bool(order.data["prior_state"] != S.pending_new)


def _forgotten(order: Entity, data: Data) -> dict[str, Any]:
    if not isinstance(data.get("reason"), str) or not data["reason"]:
        raise InvalidData("lost needs a reason (a non-empty string)")
    return {**_lost(order, data), "requested_qty": None, "requested_price": None}


def _recorded(order: Entity, data: Data) -> dict[str, Any]:
    """A harmless late answer (e.g. a cancel reject after the order filled): keep its reason, if any."""
    return _reason(order, data) if data.get("reason") is not None else {}


def live_trigger(trigger: str) -> str:
    """The venue-report trigger that ``trigger`` mirrors (``reconcile_fill`` -> ``fill``), else itself.

    For consumers that act on what a transition means rather than where it came from (positions
    count a ``reconcile_fill`` exactly like a ``fill``).
    """
    name = trigger.removeprefix(RECONCILE_PREFIX)
    return name if trigger != name and name in MIRRORED else trigger


def _mirrors(rules: tuple[Rule, ...], triggers: tuple[str, ...] = MIRRORED) -> tuple[Rule, ...]:
    """A ``reconcile_`` copy of every rule of ``triggers``, in table order; only trigger and doc differ.

    Sources, destination, guard and effect are the very same objects, so a reconciled report is
    validated and applied exactly like the live one. ``DefinitionError`` when a trigger has no rule.
    """
    missing = set(triggers) - {r.trigger for r in rules}
    if missing:
        raise DefinitionError(f"machine 'order': no rules to mirror for {', '.join(sorted(missing))}")
    return tuple(
        Rule(
            RECONCILE_PREFIX + r.trigger,
            r.sources,
            r.dest,
            guard=r.guard,
            effect=r.effect,
            doc=f"Reconciliation: {r.doc}",
            guard_label=r.guard_label,
        )
        for r in rules
        if r.trigger in triggers
    )


LIVE_RULES = (
    Rule("submit", S.new, S.pending_new, doc="The order is sent (after the journal commit)."),
    Rule("deny", S.new, S.denied, effect=_deny, doc="Risk refused it; it is never sent."),
    Rule("accept", S.pending_new, S.accepted, effect=_accept, doc="The venue acknowledges the order."),
    Rule(
        "accept",
        S.pending_cancel,
        None,
        guard=_prior(S.pending_new),
        effect=_accept,
        doc="The ack crossed our cancel request (B.1.e): still pending cancel.",
    ),
    Rule("reject", S.pending_new, S.rejected, effect=_reject, doc="The venue rejects the new order."),
    Rule(
        "reject",
        S.pending_cancel,
        S.rejected,
        guard=_prior(S.pending_new),
        effect=_reject,
        doc="The new order is rejected while our cancel request is pending.",
    ),
    # Fills: the rules for a new trade_id first (the common case tries one or two rules),
    # then one catch-all for a trade_id already applied.
    Rule(
        "fill",
        (*FILLABLE, *PENDING),
        S.filled,
        guard=completes,
        effect=_fill,
        doc="A fill completes the (old) quantity (A.1.a, B.1.c).",
    ),
    Rule(
        "fill",
        FILLABLE,
        S.partially_filled,
        guard=new_trade,
        effect=_fill,
        doc="A partial fill (A.1.a); before the ack it implies acceptance.",
    ),
    Rule(
        "fill",
        PENDING,
        None,
        guard=new_trade,
        effect=_fill,
        doc="A partial fill while a request is pending: old terms apply (B.1.b, C.1.b).",
    ),
    Rule("fill", S.filled, None, guard=new_trade, effect=_fill, doc="Any new fill on a filled order overfills."),
    Rule(
        "fill",
        (S.canceled, S.expired),
        None,
        guard=new_trade,
        effect=_late_fill,
        doc="A late fill after cancel/expiry: applied, the order stays done.",
    ),
    Rule(
        "fill",
        (*FILLABLE, *PENDING, S.filled, S.canceled, S.expired),
        None,
        effect=_duplicate_fill,
        doc="A fill whose trade_id was already applied: ignored, counted.",
    ),
    Rule(
        "request_cancel",
        (S.pending_new, *WORKING),
        S.pending_cancel,
        effect=_request_cancel,
        doc="We ask the venue to cancel (B.1.a, B.1.d).",
    ),
    Rule(
        "cancel_reject",
        S.pending_cancel,
        None,
        guard=in_doubt,
        effect=_recorded,
        doc="Too late / unknown order: still pending until a status query says what became of it.",
    ),
    *_returns_to_prior(
        "cancel_reject",
        S.pending_cancel,
        (S.pending_new, *WORKING),
        "Cancel refused: back to the prior state (B.1.d, B.1.f).",
    ),
    Rule(
        "cancel_reject",
        (S.filled, S.canceled, S.expired),
        None,
        effect=_recorded,
        doc="Too late to cancel (B.1.c): harmless, recorded.",
    ),
    Rule(
        "cancel",
        (S.pending_new, *WORKING, *PENDING),
        S.canceled,
        effect=_done,
        doc="The venue confirms a cancel, requested or unsolicited (B.1.a, E).",
    ),
    Rule(
        "request_replace",
        WORKING,
        S.pending_replace,
        effect=_request_replace,
        doc="We ask the venue to change qty and/or price (C.1.a).",
    ),
    Rule(
        "replace_reject",
        S.pending_replace,
        None,
        guard=in_doubt,
        effect=_recorded,
        doc="Too late / unknown order: still pending until a status query says; never retried blindly.",
    ),
    *_returns_to_prior(
        "replace_reject", S.pending_replace, WORKING, "Replace refused: back to the prior state (C.2.a)."
    ),
    Rule(
        "replace_reject",
        (S.filled, S.canceled, S.expired),
        None,
        effect=_recorded,
        doc="Too late to replace (C.1.c): harmless, recorded.",
    ),
    Rule(
        "replace",
        S.pending_replace,
        S.filled,
        guard=replace_fills,
        effect=_replace,
        doc="Replaced at or below cum_qty: qty amended to cum_qty, filled (C.3.b, C.3.c).",
    ),
    Rule(
        "replace",
        S.pending_replace,
        S.partially_filled,
        guard=has_fills,
        effect=_replace,
        doc="Replaced; part already filled (C.1.b, C.3.a).",
    ),
    Rule("replace", S.pending_replace, S.accepted, effect=_replace, doc="Replaced; nothing filled yet (C.1.a)."),
    Rule(
        "expire",
        (*WORKING, *PENDING),
        S.expired,
        effect=_done,
        doc="Time in force ran out at the venue (A.1.b-style done for day).",
    ),
    Rule(
        "restate",
        WORKING,
        S.filled,
        guard=restate_fills,
        effect=_restate,
        doc="Unsolicited restatement at or below cum_qty: done.",
    ),
    Rule(
        "restate",
        WORKING,
        None,
        effect=_restate,
        doc="Unsolicited restatement of qty and/or price by the venue.",
    ),
)
"""The rules for what the kernel does and what the venue reports live (``_mirrors`` copies some)."""


ORDER = register(
    StateMachine(
        "order",
        doc=__doc__ or "",
        states=OrderState,
        initial=S.new,
        terminal=DONE,
        state_docs={
            S.new: "Created by the kernel (or adopted from the venue by reconciliation), not yet sent.",
            S.denied: "Refused locally (risk); never sent.",
            S.pending_new: "Sent to the venue; no answer yet.",
            S.accepted: "Acknowledged by the venue and working; nothing filled.",
            S.partially_filled: "Working, with part of the quantity filled.",
            S.filled: "The whole quantity is filled.",
            S.pending_cancel: "A cancel was requested; the venue has not answered.",
            S.pending_replace: "A replace was requested; the old terms apply until the venue confirms.",
            S.canceled: "Canceled by the venue (on request or unsolicited); late fills may still arrive.",
            S.rejected: "Rejected by the venue, or concluded lost by reconciliation (never received).",
            S.expired: "Expired at the venue (time in force), or lost there after the ack; late fills may arrive.",
        },
        rules=(
            *LIVE_RULES,
            *_mirrors(LIVE_RULES),
            Rule(
                "reconcile_lost",
                S.pending_new,
                S.rejected,
                effect=_lost,
                doc="Reconciliation: the venue never received the order; concluded, never resent.",
            ),
            Rule(
                "reconcile_lost",
                S.pending_cancel,
                S.rejected,
                guard=_prior(S.pending_new),
                effect=_lost,
                doc="Reconciliation: never received; the cancel we requested for it is moot.",
            ),
            Rule(
                "lost",
                (*WORKING, *PENDING),
                S.expired,
                guard=acked,
                effect=_forgotten,
                doc="A status query found no such order at the venue after its ack: done, reason journaled.",
            ),
        ),
        init=init_data,
        decode=decode_data,
    )
)


__all__ = [
    "DECIMAL_FIELDS",
    "DONE",
    "FILLABLE",
    "LIVE_RULES",
    "MAX_REASON_CHARS",
    "MAX_TAG_CHARS",
    "MIRRORED",
    "ORDER",
    "ORIGINS",
    "PENDING",
    "RECONCILE_PREFIX",
    "SIDES",
    "TIFS",
    "TYPES",
    "WORKING",
    "OrderState",
    "Overfill",
    "acked",
    "completes",
    "has_fills",
    "in_doubt",
    "live_trigger",
    "new_trade",
    "replace_fills",
    "restate_fills",
    "to_decimal",
]
