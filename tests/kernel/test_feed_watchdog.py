"""``kernel.feed.watchdog.Watchdog``: the feed's one stale-check timer (issue 17).

Not timed: the clock the deadlines are read on is a fake the test moves by hand (the loop's own
timer only decides when the watchdog looks at it).
"""

from __future__ import annotations

import asyncio

import pytest

from kernel.feed.errors import FeedMisuse
from kernel.feed.watchdog import Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


@pytest.mark.asyncio
async def test_wait_returns_what_it_awaits_when_nothing_is_due() -> None:
    dog = Watchdog(lambda: None, Clock())
    assert await dog.wait(asyncio.sleep(0, result="frame")) == "frame"
    assert not dog.due
    dog.close()


@pytest.mark.asyncio
async def test_a_due_deadline_wakes_the_wait_and_sets_due() -> None:
    clock = Clock()
    dog = Watchdog(lambda: 1, clock)
    clock.now = 1
    assert await dog.wait(asyncio.sleep(30, result="frame")) is None
    assert dog.due
    dog.close()


async def reader(dogs: list[Watchdog], deadline: list[int | None], clock: Clock) -> str | None:
    """In its own task, as the feed's stream loop: make a watchdog, then wait for a frame."""
    dogs.append(Watchdog(lambda: deadline[0], clock))
    return await dogs[0].wait(asyncio.sleep(30, result="frame"))


@pytest.mark.asyncio
async def test_a_deadline_moved_later_keeps_the_wait_going_until_it_is_due() -> None:
    clock = Clock()
    deadline: list[int | None] = [1]
    dogs: list[Watchdog] = []
    waiting = asyncio.ensure_future(reader(dogs, deadline, clock))
    await asyncio.sleep(0.01)  # the timer fired early (fake time 0 < 1) and re-armed: still waiting
    assert not waiting.done()
    assert not dogs[0].due
    clock.now, deadline[0] = 1, 2  # fresh data moved the deadline on
    await asyncio.sleep(0.01)
    assert not waiting.done()
    clock.now = 2
    assert await asyncio.wait_for(waiting, 5) is None
    assert dogs[0].due
    dogs[0].close()


@pytest.mark.asyncio
async def test_no_deadline_no_wake_and_close_disarms() -> None:
    clock = Clock()
    deadline: list[int | None] = [None]
    dog = Watchdog(lambda: deadline[0], clock)
    deadline[0] = 0
    dog.close()  # closed before anything re-armed it
    assert await dog.wait(asyncio.sleep(0.02, result="frame")) == "frame"
    assert not dog.due


@pytest.mark.asyncio
async def test_arm_picks_up_a_deadline_that_appeared() -> None:
    clock = Clock()
    deadline: list[int | None] = [None]
    dog = Watchdog(lambda: deadline[0], clock)
    deadline[0] = 0
    dog.arm()  # a state change: the shell re-arms
    assert await dog.wait(asyncio.sleep(30, result="frame")) is None
    dog.close()


@pytest.mark.asyncio
async def test_a_cancel_from_outside_still_cancels_when_the_watchdog_wakes_too() -> None:
    clock = Clock()
    deadline: list[int | None] = [None]
    dogs: list[Watchdog] = []
    task = asyncio.ensure_future(reader(dogs, deadline, clock))
    await asyncio.sleep(0.01)  # waiting, nothing to watch
    deadline[0] = 0
    dogs[0].arm()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    dogs[0].close()


@pytest.mark.asyncio
async def test_the_watchdogs_own_wake_leaves_the_task_uncancelled() -> None:
    clock = Clock()
    dog = Watchdog(lambda: 0, clock)
    assert await dog.wait(asyncio.sleep(30)) is None
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    dog.close()


@pytest.mark.asyncio
async def test_a_watchdog_needs_a_task() -> None:
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[str] = loop.create_future()

    def outside_any_task() -> None:
        try:
            Watchdog(lambda: None, Clock())
        except FeedMisuse as exc:
            refused.set_result(str(exc))

    loop.call_soon(outside_any_task)
    assert "task" in await refused
