"""The stop sequence's cancels (``kernel.stop_sequence.cancel_open_orders``): an order whose replace
is in flight when the stop begins (the order machine refuses ``request_cancel`` then) is canceled
once the replace is answered, not left open. A stand-in order manager records what is sent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from kernel.stop_sequence import CANCEL_ATTEMPTS, StopControl, StopRequest, cancel_open_orders


@dataclass
class FakeOrder:
    entity_id: str
    state: str

    @property
    def live(self) -> bool:
        return self.state not in ("filled", "canceled", "rejected", "expired")


@dataclass
class FakeRequest:
    order: FakeOrder
    kind: str = "cancel"


@dataclass
class FakeManager:
    orders: dict[str, FakeOrder]
    sent: list[str] = field(default_factory=list)

    def journal_cancels(self, ids: Iterable[str]) -> list[FakeRequest]:
        requests = []
        for entity_id in ids:
            order = self.orders[entity_id]
            if order.state in ("pending_new", "accepted", "partially_filled"):  # as the order machine allows
                order.state = "pending_cancel"
                requests.append(FakeRequest(order))
        return requests

    async def send(self, request: FakeRequest) -> None:
        self.sent.append(request.order.entity_id)


def manager_of(**states: str) -> FakeManager:
    return FakeManager({name: FakeOrder(name, state) for name, state in states.items()})


@pytest.mark.asyncio
async def test_an_order_replacing_at_the_stop_is_canceled_once_its_replace_is_answered() -> None:
    manager = manager_of(a="accepted", b="pending_replace")
    control = StopControl()
    control.request = StopRequest("test")

    async def venue() -> None:
        await asyncio.sleep(0.05)
        manager.orders["a"].state = "canceled"
        manager.orders["b"].state = "accepted"  # the replace is answered
        control.event.set()
        await asyncio.sleep(0.05)
        manager.orders["b"].state = "canceled"
        control.event.set()

    answers = asyncio.create_task(venue())
    unconfirmed = await cancel_open_orders(manager, 2.0, control)  # type: ignore[arg-type]
    await answers
    assert manager.sent == ["a", "b"]
    assert unconfirmed == []
    assert {o.state for o in manager.orders.values()} == {"canceled"}


@pytest.mark.asyncio
async def test_a_refused_cancel_is_sent_again_at_most_a_few_times() -> None:
    manager = manager_of(a="accepted")
    control = StopControl()
    control.request = StopRequest("test")

    async def venue_refuses() -> None:
        for _ in range(5):
            await asyncio.sleep(0.02)
            manager.orders["a"].state = "accepted"  # cancel_reject (e.g. rate_limited)
            control.event.set()

    answers = asyncio.create_task(venue_refuses())
    await cancel_open_orders(manager, 0.3, control)  # type: ignore[arg-type]
    await answers
    assert CANCEL_ATTEMPTS == 3
    assert manager.sent == ["a", "a", "a"]
