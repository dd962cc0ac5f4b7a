"""Stopping the kernel: stop requests and signals, the cancels at stop, closing in reverse order.

``StopControl`` records why the kernel stops (the first request; a forced one overrides) and is
the event the process waits on; SIGINT/SIGTERM request a stop, a second one forces it (skip the
waiting). ``cancel_open_orders`` journals one cancel per open order (one commit), sends them and
waits for the acks up to a deadline (a forced stop: only for the answers to the cancels in flight,
at most ``FORCED_GRACE_S``, so what it reports is the final state). ``close_in_reverse`` stops
the started parts, each step running even if an earlier one failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from kernel.execution import VenueError
from kernel.orders import OrderError, OrderManager
from storage.errors import JournalWriteError

log = logging.getLogger(__name__)

Step = tuple[str, Callable[[], Awaitable[None]]]
"""One step of closing: what it stops, and how."""


@dataclass(frozen=True, slots=True)
class StopRequest:
    """Why the kernel is stopping, and whether to skip the waiting."""

    reason: str
    force: bool = False


class StopControl:
    """The stop request of one kernel run and the event its process waits on.

    ``install_signals``: SIGINT/SIGTERM request the stop (installed by ``install``, removed by
    ``remove``; they stay until the journal is closed, so a late signal only skips the waiting).
    """

    def __init__(self, install_signals: bool = False) -> None:
        self.install_signals = install_signals
        self.request: StopRequest | None = None
        self.event = asyncio.Event()
        """Set by a stop request, and (while stopping) by every order change."""
        self._signals = 0

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self.request is not None

    @property
    def forced(self) -> bool:
        """True once a forced stop was requested."""
        return self.request is not None and self.request.force

    def stop(self, reason: str, *, force: bool = False) -> None:
        """Request the stop (idempotent); ``force`` skips waiting for cancel acks."""
        if self.request is None or (force and not self.request.force):
            log.warning("stopping: %s%s", reason, " (forced: not waiting for acks)" if force else "")
            self.request = StopRequest(reason, force)
        self.event.set()

    def install(self) -> None:
        """Make SIGINT/SIGTERM request the stop (when asked to)."""
        if self.install_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._on_signal, signum)

    def remove(self) -> None:
        """Remove the signal handlers ``install`` added."""
        if self.install_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            self.stop(f"{name} received (again to stop without waiting)")
        else:
            self.stop(f"{name} received again", force=True)


FORCED_GRACE_S = 1.0
"""How long a forced stop still waits for the answers to the cancels in flight (within the stop's
deadline): the venue answers in milliseconds, and what the stop reports must be the final state."""


CANCEL_ATTEMPTS = 3
"""Cancels a stop sends one order at most (a refused one, e.g. ``rate_limited``, is sent again)."""
IN_FLIGHT = frozenset({"new", "pending_new", "pending_cancel", "pending_replace"})
"""Order states waiting for the venue's answer to one of our requests."""


async def cancel_open_orders(
    manager: OrderManager, timeout_s: float, control: StopControl, grace_s: float = FORCED_GRACE_S
) -> list[str]:
    """Journal and send a cancel for every open order, then wait for the acks until ``timeout_s``
    has passed. An order that cannot be canceled yet (a replace in flight) is canceled once the
    replace is answered. A forced stop waits only for the answers to the requests in
    flight, for at most ``grace_s`` from when it is forced. Failures are logged; the caller reports
    what stays open. Returns the orders whose cancel is sent but unconfirmed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    attempts: dict[str, int] = {}
    sent = await _send_cancels(manager, attempts)
    if sent:
        log.info("stop: %d cancel(s) sent; waiting up to %g s for acks", sent, timeout_s)
    forced_until: float | None = None
    while True:
        end = deadline
        if control.forced:
            forced_until = loop.time() + grace_s if forced_until is None else forced_until
            end = min(deadline, forced_until)
            waiting = any(o.state in IN_FLIGHT for o in manager.orders.values())
        else:
            waiting = any(o.live for o in manager.orders.values())
        remaining = end - loop.time()
        if not waiting or remaining <= 0:
            break
        control.event.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await control.event.wait()
        await _send_cancels(manager, attempts)  # orders that became cancelable since
    unconfirmed = [o.entity_id for o in manager.orders.values() if o.state == "pending_cancel"]
    if unconfirmed:
        log.warning("stop: %d cancel(s) sent, unconfirmed: %s", len(unconfirmed), some(unconfirmed))
    return unconfirmed


async def _send_cancels(manager: OrderManager, attempts: dict[str, int]) -> int:
    """Journal (one commit) and send a cancel for each live order the order machine lets us cancel
    now (not while a replace is in flight) and not yet tried ``CANCEL_ATTEMPTS`` times; how many
    were sent."""
    open_ids = [
        o.entity_id
        for o in manager.orders.values()
        if o.live and o.state != "pending_cancel" and attempts.get(o.entity_id, 0) < CANCEL_ATTEMPTS
    ]
    if not open_ids:
        return 0
    try:
        requests = manager.journal_cancels(open_ids)
    except (OrderError, JournalWriteError) as exc:
        log.warning("%d cancel(s) at stop not sent: %s", len(open_ids), exc)
        for entity_id in open_ids:
            attempts[entity_id] = CANCEL_ATTEMPTS  # the journal cannot take them: do not spin
        return 0
    sent = 0
    for request in requests:
        attempts[request.order.entity_id] = attempts.get(request.order.entity_id, 0) + 1
        try:
            await manager.send(request)
            sent += 1
        except (OrderError, VenueError) as exc:
            log.warning("cancel of %s at stop not sent: %s", request.order.entity_id, exc)
    return sent


async def close_in_reverse(steps: Sequence[Step], timeout_s: float = 5.0) -> None:
    """Run each step (already in reverse start order), each even if an earlier one failed."""
    for name, step in steps:
        try:
            async with asyncio.timeout(timeout_s):
                await step()
        except Exception:
            log.exception("stopping the %s failed", name)


def some(ids: Sequence[str], shown: int = 10) -> str:
    """The first ``shown`` ids, then how many more."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


__all__ = ["FORCED_GRACE_S", "Step", "StopControl", "StopRequest", "cancel_open_orders", "close_in_reverse", "some"]
