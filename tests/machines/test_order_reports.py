"""Venue report -> order triggers (machines/order_reports.py): every kind, status and branch.

Expectations are written out by hand, never computed from the functions under test.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from machines import ORDER
from machines.order_reports import (
    CatchUp,
    DuplicateAnswer,
    ExecutionFacts,
    FillFacts,
    OrderCommand,
    OrderFacts,
    Settlement,
    SnapshotFacts,
    UnknownExecution,
    catch_up,
    duplicate_answer,
    execution_command,
    settle,
    unknown_at_venue,
)

D = Decimal
ZERO = D(0)
DIFFER = "terms differ at the venue"
F1 = FillFacts("T1", D("1"), D("100"), D("0.01"), 1, 1000)
F2 = FillFacts("T2", D("0.5"), D("99"), D("0"), 2, 2000)
F3 = FillFacts("T3", D("0.25"), D("98"), D("-0.001"), 3)
F1_DATA = {"qty": D("1"), "price": D("100"), "trade_id": "T1", "fee": D("0.01"), "fill_seq": 1, "ts_ms": 1000}
F2_DATA = {"qty": D("0.5"), "price": D("99"), "trade_id": "T2", "fee": D("0"), "fill_seq": 2, "ts_ms": 2000}
F3_DATA = {"qty": D("0.25"), "price": D("98"), "trade_id": "T3", "fee": D("-0.001"), "fill_seq": 3, "ts_ms": 0}


def order(
    state: str,
    prior: str | None = None,
    *,
    cum_qty: Decimal = ZERO,
    trade_ids: frozenset[str] = frozenset(),
    requested_qty: Decimal | None = None,
    requested_price: Decimal | None = None,
) -> OrderFacts:
    """An order of qty 3 at 100 in ``state``."""
    return OrderFacts(state, D("3"), D("100"), prior, cum_qty, trade_ids, requested_qty, requested_price)


def snapshot(
    status: str,
    venue_order_id: str = "V1",
    qty: str = "3",
    price: str = "100",
    *,
    fills: tuple[FillFacts, ...] = (),
    reason: str | None = None,
) -> SnapshotFacts:
    """The venue's view of the order: ``qty`` 3 at 100 unless told."""
    return SnapshotFacts(status, venue_order_id, D(qty), D(price), fills, reason)


# -- execution reports --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        pytest.param(ExecutionFacts("new", "V9"), OrderCommand("accept", {"venue_order_id": "V9"}), id="new"),
        pytest.param(ExecutionFacts("trade", "V9", fill=F1), OrderCommand("fill", F1_DATA), id="trade"),
        pytest.param(ExecutionFacts("trade", "V9"), OrderCommand("fill", {}), id="trade-without-fill"),
        pytest.param(
            ExecutionFacts("replaced", "V9", D("2"), D("101"), reason="ignored"),
            OrderCommand("replace", {"qty": D("2"), "price": D("101"), "venue_order_id": "V9"}),
            id="replaced",
        ),
        pytest.param(
            ExecutionFacts("replaced", "", D("2"), None),
            OrderCommand("replace", {"qty": D("2"), "price": None}),
            id="replaced-without-an-id",
        ),
        pytest.param(
            ExecutionFacts("restated", "V9", D("1.5"), None, reason="partial decline"),
            OrderCommand("restate", {"qty": D("1.5"), "price": None, "reason": "partial decline"}),
            id="restated",
        ),
        pytest.param(ExecutionFacts("expired", "V9", reason="day over"), OrderCommand("expire", {}), id="expired"),
        pytest.param(
            ExecutionFacts("rejected", reason="no funds"), OrderCommand("reject", {"reason": "no funds"}), id="rejected"
        ),
        pytest.param(ExecutionFacts("canceled"), OrderCommand("cancel", {"reason": None}), id="canceled"),
        pytest.param(
            ExecutionFacts("cancel_rejected", reason="too late"),
            OrderCommand("cancel_reject", {"reason": "too late"}),
            id="cancel_rejected",
        ),
        pytest.param(
            ExecutionFacts("replace_rejected", reason="bad price"),
            OrderCommand("replace_reject", {"reason": "bad price"}),
            id="replace_rejected",
        ),
    ],
)
def test_execution_command(report: ExecutionFacts, expected: OrderCommand) -> None:
    command = execution_command(report)
    assert command == expected
    assert command.required


def test_an_execution_of_an_unknown_kind_is_a_typed_error() -> None:
    with pytest.raises(UnknownExecution, match="no order trigger for an execution report of kind 'moved'"):
        execution_command(ExecutionFacts("moved"))
    with pytest.raises(KeyError):
        execution_command(ExecutionFacts("partially_filled"))


# -- snapshots: catch up ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "snap", "expected"),
    [
        pytest.param(
            order("pending_new"),
            snapshot("rejected", "", reason="no funds", fills=(F1,)),
            CatchUp((OrderCommand("reject", {"reason": "no funds"}),), settle=False),
            id="unacked-rejected",
        ),
        pytest.param(
            order("pending_cancel", "pending_new"),
            snapshot("rejected", reason=None),
            CatchUp((OrderCommand("reject", {"reason": None}),), settle=False),
            id="cancel-before-ack-rejected",
        ),
        pytest.param(
            order("pending_new"),
            snapshot("new"),
            CatchUp((OrderCommand("accept", {"venue_order_id": "V1"}, required=False),)),
            id="unacked-working",
        ),
        pytest.param(
            order("pending_cancel", "pending_new"),
            snapshot("canceled"),
            CatchUp((OrderCommand("accept", {"venue_order_id": "V1"}, required=False),)),
            id="cancel-before-ack-canceled",
        ),
        pytest.param(
            order("pending_new"),
            snapshot("partially_filled", fills=(F2, F1)),
            CatchUp(
                (
                    OrderCommand("accept", {"venue_order_id": "V1"}, required=False),
                    OrderCommand("fill", F1_DATA),
                    OrderCommand("fill", F2_DATA),
                )
            ),
            id="unacked-fills-in-fill_seq-order",
        ),
        pytest.param(order("pending_new"), snapshot("new", ""), CatchUp(()), id="unacked-no-venue-id"),
        pytest.param(order("accepted"), snapshot("new"), CatchUp(()), id="acked-nothing-new"),
        pytest.param(
            order("pending_cancel", "accepted"),
            snapshot("rejected"),
            CatchUp(()),
            id="acked-rejected-is-settled-later",
        ),
        pytest.param(
            order("partially_filled", trade_ids=frozenset({"T1"})),
            snapshot("filled", fills=(F3, F1, F2)),
            CatchUp((OrderCommand("fill", F2_DATA), OrderCommand("fill", F3_DATA))),
            id="applied-fills-skipped",
        ),
        pytest.param(
            order("accepted"),
            snapshot("partially_filled", fills=(F1, F1)),
            CatchUp((OrderCommand("fill", F1_DATA),)),
            id="repeated-fill-once",
        ),
        pytest.param(
            order("canceled"),
            snapshot("canceled", fills=(F1,)),
            CatchUp((OrderCommand("fill", F1_DATA),)),
            id="late-fill-on-a-done-order",
        ),
    ],
)
def test_catch_up(facts: OrderFacts, snap: SnapshotFacts, expected: CatchUp) -> None:
    assert catch_up(facts, snap) == expected


# -- snapshots: settle --------------------------------------------------------------------------

MISMATCH_FILLED = "venue says filled, journal says partially_filled (cum_qty 1)"


@pytest.mark.parametrize(
    ("facts", "snap", "requests", "expected"),
    [
        pytest.param(order("filled"), snapshot("canceled"), True, Settlement(), id="done-filled"),
        pytest.param(order("canceled"), snapshot("expired"), True, Settlement(), id="done-canceled"),
        pytest.param(order("rejected"), snapshot("filled"), True, Settlement(), id="done-rejected"),
        pytest.param(order("expired"), snapshot("new", qty="9"), True, Settlement(), id="done-expired"),
        pytest.param(order("denied"), snapshot("new"), True, Settlement(), id="done-denied"),
        pytest.param(
            order("accepted"),
            snapshot("canceled", reason="self-trade"),
            True,
            Settlement((OrderCommand("cancel", {"reason": "self-trade", "unsolicited": True}),)),
            id="canceled",
        ),
        pytest.param(
            order("pending_cancel", "accepted"),
            snapshot("canceled"),
            False,
            Settlement((OrderCommand("cancel", {"reason": None}),)),
            id="canceled-duplicate",
        ),
        pytest.param(
            order("partially_filled"),
            snapshot("expired"),
            True,
            Settlement((OrderCommand("expire", {}),)),
            id="expired",
        ),
        pytest.param(
            order("pending_cancel", "accepted"),
            snapshot("new"),
            True,
            Settlement((OrderCommand("cancel_reject", {"reason": "the venue still has the order working"}),)),
            id="pending-cancel-still-working",
        ),
        pytest.param(
            order("pending_cancel", "accepted"), snapshot("new"), False, Settlement(), id="duplicate-settles-nothing"
        ),
        pytest.param(
            order("pending_replace", "accepted", requested_qty=D("2")),
            snapshot("new", qty="2"),
            True,
            Settlement((OrderCommand("replace", {"qty": D("2"), "price": D("100")}),)),
            id="replace-qty-confirmed",
        ),
        pytest.param(
            order("pending_replace", "partially_filled", requested_price=D("101")),
            snapshot("partially_filled", price="101"),
            True,
            Settlement((OrderCommand("replace", {"qty": D("3"), "price": D("101")}),)),
            id="replace-price-confirmed",
        ),
        pytest.param(
            order("pending_replace", "accepted", requested_qty=D("2"), requested_price=D("101")),
            snapshot("new", qty="2", price="100"),
            True,
            Settlement((OrderCommand("replace_reject", {"reason": "the venue kept the old terms"}),)),
            id="replace-old-terms-kept",
        ),
        pytest.param(
            order("pending_replace", "accepted", requested_qty=D("2")),
            snapshot("new", qty="2"),
            False,
            Settlement(),
            id="replace-duplicate-settles-nothing",
        ),
        pytest.param(order("accepted"), snapshot("new"), True, Settlement(), id="same-terms"),
        pytest.param(
            order("accepted"),
            snapshot("new", qty="2.5"),
            True,
            Settlement((OrderCommand("restate", {"qty": D("2.5"), "price": D("100"), "reason": DIFFER}),)),
            id="restate-qty",
        ),
        pytest.param(
            order("partially_filled"),
            snapshot("partially_filled", price="99"),
            True,
            Settlement((OrderCommand("restate", {"qty": D("3"), "price": D("99"), "reason": DIFFER}),)),
            id="restate-price",
        ),
        pytest.param(order("accepted"), snapshot("new", qty="2.5"), False, Settlement(), id="duplicate-no-restate"),
        pytest.param(order("pending_new"), snapshot("new", qty="2"), True, Settlement(), id="unacked-working"),
        pytest.param(
            order("partially_filled", cum_qty=D("1")),
            snapshot("filled"),
            True,
            Settlement(mismatch=MISMATCH_FILLED),
            id="filled-but-fills-missing",
        ),
        pytest.param(
            order("partially_filled", cum_qty=D("1")),
            snapshot("filled"),
            False,
            Settlement(mismatch=MISMATCH_FILLED),
            id="filled-but-fills-missing-duplicate",
        ),
        pytest.param(
            order("accepted"),
            snapshot("rejected"),
            True,
            Settlement(mismatch="venue says rejected, journal says accepted (cum_qty 0)"),
            id="rejected-after-ack",
        ),
    ],
)
def test_settle(facts: OrderFacts, snap: SnapshotFacts, requests: bool, expected: Settlement) -> None:
    assert settle(facts, snap, requests=requests) == expected


# -- order facts --------------------------------------------------------------------------------


def test_order_facts_of_an_entity() -> None:
    entity, _ = ORDER.create("o1", instrument="BTCUSDT", side="buy", qty=D("3"), price=D("100"))
    ORDER.fire(entity, "submit")
    ORDER.fire(entity, "accept", venue_order_id="V1")
    ORDER.fire(entity, "fill", qty=D("1"), price=D("99"), trade_id="T1")
    ORDER.fire(entity, "request_replace", qty=D("2"))
    assert OrderFacts.of(entity) == OrderFacts(
        state="pending_replace",
        qty=D("3"),
        price=D("100"),
        prior_state="partially_filled",
        cum_qty=D("1"),
        trade_ids=frozenset({"T1"}),
        requested_qty=D("2"),
        requested_price=None,
        instrument="BTCUSDT",
        side="buy",
    )


@pytest.mark.parametrize(
    ("state", "prior", "live", "unacked"),
    [
        ("new", None, True, False),
        ("pending_new", None, True, True),
        ("pending_cancel", "pending_new", True, True),
        ("pending_cancel", "accepted", True, False),
        ("pending_cancel", "partially_filled", True, False),
        ("pending_replace", "accepted", True, False),
        ("accepted", None, True, False),
        ("partially_filled", None, True, False),
        ("filled", None, False, False),
        ("canceled", None, False, False),
        ("expired", None, False, False),
        ("rejected", None, False, False),
        ("denied", None, False, False),
    ],
)
def test_live_and_unacked(state: str, prior: str | None, live: bool, unacked: bool) -> None:
    facts = order(state, prior)
    assert (facts.live, facts.unacked) == (live, unacked)


# -- issue 14: answers that say the venue's order is done or gone; unsolicited cancels -------------


EVIDENCE = "the venue answered 'unknown order' to our request and a status query found no such order"
UNSOLICITED = {"reason": "canceled by the venue, unsolicited", "unsolicited": True}


def cancel_rejected(status: str, reason: str | None) -> ExecutionFacts:
    return ExecutionFacts("cancel_rejected", "V1", reason=reason, status=status)


def replace_rejected(status: str, reason: str | None) -> ExecutionFacts:
    return ExecutionFacts("replace_rejected", "V1", reason=reason, status=status)


def in_doubt(trigger: str, reason: str | None) -> OrderCommand:
    return OrderCommand(trigger, {"reason": reason, "in_doubt": True}, query_status=True)


@pytest.mark.parametrize(
    ("facts", "report", "expected"),
    [
        pytest.param(
            order("pending_cancel", "accepted"),
            cancel_rejected("filled", "too late to cancel"),
            in_doubt("cancel_reject", "too late to cancel"),
            id="cancel-too-late-filled",
        ),
        pytest.param(
            order("pending_cancel", "partially_filled", cum_qty=D(1)),
            cancel_rejected("rejected", "unknown order"),
            in_doubt("cancel_reject", "unknown order"),
            id="cancel-unknown-order",
        ),
        pytest.param(
            order("pending_cancel", "accepted"),
            cancel_rejected("canceled", "too late to cancel"),
            in_doubt("cancel_reject", "too late to cancel"),
            id="cancel-too-late-canceled",
        ),
        pytest.param(
            order("pending_replace", "accepted"),
            replace_rejected("expired", "too late to replace"),
            in_doubt("replace_reject", "too late to replace"),
            id="replace-too-late-expired",
        ),
        pytest.param(
            order("pending_replace", "accepted"),
            replace_rejected("rejected", "unknown order"),
            in_doubt("replace_reject", "unknown order"),
            id="replace-unknown-order",
        ),
        pytest.param(
            order("pending_replace", "accepted"),
            replace_rejected("", "Too late to replace"),
            in_doubt("replace_reject", "Too late to replace"),
            id="replace-no-status-reason-says",
        ),
        pytest.param(
            order("accepted"),
            cancel_rejected("filled", "too late to cancel"),
            in_doubt("cancel_reject", "too late to cancel"),
            id="not-pending-still-asks",
        ),
        pytest.param(
            order("pending_cancel", "accepted"),
            cancel_rejected("new", "too late"),
            OrderCommand("cancel_reject", {"reason": "too late"}),
            id="venue-says-working",
        ),
        pytest.param(
            order("pending_replace", "accepted"),
            replace_rejected("partially_filled", "qty must be positive"),
            OrderCommand("replace_reject", {"reason": "qty must be positive"}),
            id="replace-refused-working",
        ),
        pytest.param(
            order("pending_cancel", "pending_new"),
            cancel_rejected("rejected", "unknown order"),
            OrderCommand("cancel_reject", {"reason": "unknown order"}),
            id="unacked-B.1.f",
        ),
        pytest.param(
            order("filled", cum_qty=D(3)),
            cancel_rejected("filled", "too late to cancel"),
            OrderCommand("cancel_reject", {"reason": "too late to cancel"}),
            id="done-harmless",
        ),
        pytest.param(
            order("accepted"),
            ExecutionFacts("canceled", "V1", reason="self-trade", status="canceled"),
            OrderCommand("cancel", {"reason": "self-trade", "unsolicited": True}),
            id="unsolicited",
        ),
        pytest.param(
            order("partially_filled", cum_qty=D(1)),
            ExecutionFacts("canceled", "V1", status="canceled"),
            OrderCommand("cancel", UNSOLICITED),
            id="unsolicited-no-reason",
        ),
        pytest.param(
            order("pending_replace", "accepted"),
            ExecutionFacts("canceled", "V1", reason="risk", status="canceled"),
            OrderCommand("cancel", {"reason": "risk", "unsolicited": True}),
            id="unsolicited-while-replacing",
        ),
        pytest.param(
            order("pending_cancel", "accepted"),
            ExecutionFacts("canceled", "V1", reason="canceled by client", status="canceled"),
            OrderCommand("cancel", {"reason": "canceled by client"}),
            id="requested",
        ),
        pytest.param(
            OrderFacts("accepted", D(3), D(100), tif="ioc"),
            ExecutionFacts("canceled", "V1", reason="ioc remainder canceled", status="canceled"),
            OrderCommand("cancel", {"reason": "ioc remainder canceled"}),
            id="ioc-remainder",
        ),
        pytest.param(
            OrderFacts("pending_new", D(3), None, type="market"),
            ExecutionFacts("canceled", "V1", reason="market remainder canceled", status="canceled"),
            OrderCommand("cancel", {"reason": "market remainder canceled"}),
            id="market-remainder",
        ),
    ],
)
def test_execution_command_with_the_order(facts: OrderFacts, report: ExecutionFacts, expected: OrderCommand) -> None:
    assert execution_command(report, facts) == expected


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param(
            order("pending_replace", "accepted"),
            OrderCommand(
                "lost",
                {"reason": "lost: the venue no longer knows the order", "evidence": EVIDENCE},
            ),
            id="acked",
        ),
        pytest.param(
            order("accepted"),
            OrderCommand(
                "lost",
                {"reason": "lost: the venue no longer knows the order", "evidence": EVIDENCE},
            ),
            id="working",
        ),
        pytest.param(order("pending_cancel", "pending_new"), None, id="unacked-left-to-reconciliation"),
        pytest.param(order("pending_new"), None, id="pending-new"),
        pytest.param(order("expired"), None, id="done"),
    ],
)
def test_unknown_at_venue(facts: OrderFacts, expected: OrderCommand | None) -> None:
    assert unknown_at_venue(facts, "unknown order") == expected


def ours(state: str, prior: str | None = None) -> OrderFacts:
    """Our order: buy 3 BTCUSDT at 100."""
    return OrderFacts(state, D(3), D(100), prior, instrument="BTCUSDT", side="buy")


def answer(side: str = "buy", qty: str = "3", price: str | None = "100", instrument: str = "BTCUSDT") -> SnapshotFacts:
    return SnapshotFacts(
        "new", "V7", D(qty), None if price is None else D(price), (F1,), instrument=instrument, side=side
    )


FOREIGN = "client order id already used at the venue by another order: "


@pytest.mark.parametrize(
    ("facts", "snap", "expected"),
    [
        pytest.param(ours("pending_new"), answer(), DuplicateAnswer(True), id="same-terms-resend"),
        pytest.param(ours("pending_new"), answer(qty="3.000"), DuplicateAnswer(True), id="same-decimal"),
        pytest.param(
            ours("pending_new"),
            answer(side="sell"),
            DuplicateAnswer(
                False,
                FOREIGN + "venue has sell 3 BTCUSDT @ 100, journal has buy 3 BTCUSDT @ 100",
                (
                    OrderCommand(
                        "reject",
                        {"reason": FOREIGN + "venue has sell 3 BTCUSDT @ 100, journal has buy 3 BTCUSDT @ 100"},
                    ),
                ),
            ),
            id="other-side",
        ),
        pytest.param(
            ours("pending_cancel", "pending_new"),
            answer(qty="0.5", price="99", instrument="ETHUSDT"),
            DuplicateAnswer(
                False,
                FOREIGN + "venue has buy 0.5 ETHUSDT @ 99, journal has buy 3 BTCUSDT @ 100",
                (
                    OrderCommand(
                        "reject",
                        {"reason": FOREIGN + "venue has buy 0.5 ETHUSDT @ 99, journal has buy 3 BTCUSDT @ 100"},
                    ),
                ),
            ),
            id="other-terms-cancel-pending",
        ),
        pytest.param(
            ours("pending_new"),
            answer(price=None),
            DuplicateAnswer(
                False,
                FOREIGN + "venue has buy 3 BTCUSDT @ market, journal has buy 3 BTCUSDT @ 100",
                (
                    OrderCommand(
                        "reject",
                        {"reason": FOREIGN + "venue has buy 3 BTCUSDT @ market, journal has buy 3 BTCUSDT @ 100"},
                    ),
                ),
            ),
            id="market-vs-limit",
        ),
        pytest.param(
            ours("accepted"),
            answer(price="101"),
            DuplicateAnswer(False, FOREIGN + "venue has buy 3 BTCUSDT @ 101, journal has buy 3 BTCUSDT @ 100"),
            id="acked-anomaly-only",
        ),
    ],
)
def test_duplicate_answer(facts: OrderFacts, snap: SnapshotFacts, expected: DuplicateAnswer) -> None:
    assert duplicate_answer(facts, snap) == expected


@pytest.mark.parametrize(
    ("facts", "snap", "expected"),
    [
        pytest.param(
            order("pending_cancel", "accepted"),
            snapshot("canceled", reason="canceled by client"),
            Settlement((OrderCommand("cancel", {"reason": "canceled by client"}),)),
            id="requested-cancel",
        ),
        pytest.param(
            order("pending_replace", "accepted"),
            snapshot("canceled"),
            Settlement(
                (OrderCommand("cancel", {"reason": "canceled by the venue, unsolicited", "unsolicited": True}),)
            ),
            id="canceled-while-replacing",
        ),
    ],
)
def test_settle_marks_an_unsolicited_cancel(facts: OrderFacts, snap: SnapshotFacts, expected: Settlement) -> None:
    assert settle(facts, snap) == expected
