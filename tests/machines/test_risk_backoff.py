"""The back-off decision after a venue's ``rate_limited`` answer (``machines.risk_backoff``) and the
order trigger such an answer stands for (``machines.order_reports.rate_limited_command``).

Every expectation is a hand-written row, never computed from the code under test.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from machines.order_reports import OrderCommand, OrderFacts, rate_limited_command
from machines.risk_backoff import BackoffError, VenueBackoff

# (until_ms before, now_ms, retry_after_ms) -> until_ms after
BACKOFF_ROWS = [
    (0, 1_000, 250, 1_250),  # the venue's hint, from now
    (0, 1_000, None, 2_000),  # no hint: 1000 ms
    (0, 1_000, 0, 2_000),  # a hint of 0 is no hint
    (0, 1_000, -5, 2_000),  # nor is a negative one
    (0, 1_000, 600_000, 61_000),  # capped at 60 s
    (5_000, 1_000, 250, 5_000),  # a pause already running longer is kept
    (1_100, 1_000, 250, 1_250),  # a shorter one is extended
    (900, 1_000, 1, 1_001),  # one long over: a new pause from now
]


@pytest.mark.parametrize(("before", "now", "retry_after", "after"), BACKOFF_ROWS)
def test_a_rate_limited_answer_pauses_until(before: int, now: int, retry_after: int | None, after: int) -> None:
    backoff = VenueBackoff(until_ms=before, answers=2, reason="older").rate_limited(now, retry_after, "retry after")
    assert backoff == VenueBackoff(until_ms=after, answers=3, reason="retry after")


# (until_ms, now_ms) -> block (None: new orders may go out)
BLOCK_ROWS = [
    (0, 0, None),
    (1_250, 1_000, "venue rate limited: new orders paused for 250 ms (slow down)"),
    (1_250, 1_249, "venue rate limited: new orders paused for 1 ms (slow down)"),
    (1_250, 1_250, None),  # the pause ends exactly at until_ms
    (1_250, 9_000, None),
]


@pytest.mark.parametrize(("until", "now", "block"), BLOCK_ROWS)
def test_the_block_holds_while_the_pause_runs(until: int, now: int, block: str | None) -> None:
    backoff = VenueBackoff(until_ms=until, answers=1, reason="slow down")
    assert backoff.block(now) == block
    assert backoff.paused(now) is (block is not None)


def test_a_fresh_backoff_pauses_nothing_and_time_must_not_be_negative() -> None:
    assert VenueBackoff().block(0) is None
    with pytest.raises(BackoffError, match="now_ms must be >= 0, got -1"):
        VenueBackoff().rate_limited(-1, 100, "x")


def facts(state: str, prior: str | None = None) -> OrderFacts:
    return OrderFacts(state=state, qty=D("1"), price=D("100"), prior_state=prior)


REASON = {"reason": "rate_limited: retry after 10 ms"}
# (order state, prior state, the request refused) -> the trigger to fire (None: nothing)
COMMAND_ROWS = [
    ("pending_new", None, "new_order", OrderCommand("reject", REASON)),
    ("pending_cancel", "pending_new", "new_order", OrderCommand("reject", REASON)),  # canceled before the answer
    ("pending_cancel", "accepted", "cancel_order", OrderCommand("cancel_reject", REASON)),
    ("pending_cancel", "pending_new", "cancel_order", OrderCommand("cancel_reject", REASON)),
    ("pending_replace", "accepted", "replace_order", OrderCommand("replace_reject", REASON)),
    ("accepted", None, "new_order", None),  # acknowledged meanwhile: the answer changes nothing
    ("rejected", None, "new_order", None),
    ("accepted", None, "cancel_order", None),
    ("canceled", None, "cancel_order", None),
    ("accepted", None, "replace_order", None),
    ("pending_new", None, "order_status", None),  # not an order request
]


@pytest.mark.parametrize(("state", "prior", "request_type", "command"), COMMAND_ROWS)
def test_a_rate_limited_request_ends_as(
    state: str, prior: str | None, request_type: str, command: OrderCommand | None
) -> None:
    assert rate_limited_command(facts(state, prior), request_type, "retry after 10 ms") == command
