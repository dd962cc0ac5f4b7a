"""A minimal kernel process for crash tests: ``python -m tests.kernel.crash_kernel MODE JOURNAL URL``.

Modes:

* ``kill-after-commit``: place an order and SIGKILL itself the moment the journal commit holding
  its ``submit`` returns, before ``new_order`` is sent (the write-ahead window).
* ``kill-after-send``: place an order and SIGKILL itself right after sending it, before the ack.
* ``resume``: open the journal (the crash is detected), resume the live orders, connect, resolve
  every in-flight order by status query, and print one JSON line with each order's state.
* ``resume-and-resend``: like ``resume``, then send ``new_order`` again for every order still
  ``pending_new`` (what a naive kernel would do): the venue must answer with the existing order,
  never make a second one.

Prints ``committed ID`` / ``sent ID`` (flushed) before killing itself, so the test knows the id.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from decimal import Decimal

from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.paper_protocol import NewOrder
from machines.order_terms import OrderTerms
from storage import Journal


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def place_and_die(journal: Journal, url: str, after: str) -> None:
    client = VenueClient(url, attempts=20, backoff=0.02, jitter=0.0)
    await client.connect()
    manager = OrderManager.resume(journal, client)
    await manager.resolve_in_flight()  # order entry opens once in-flight orders are resolved
    if after == "commit":
        commit = journal.commit

        def commit_then_die() -> int:
            written = commit()
            print(f"committed {list(manager.orders)[-1]}", flush=True)
            die()
            return written  # pragma: no cover - never reached

        journal.commit = commit_then_die  # type: ignore[method-assign]
    order = await manager.place(OrderTerms("BTCUSDT", "buy", Decimal("0.5"), Decimal("100")))
    print(f"sent {order.entity_id}", flush=True)
    die()


async def resume(journal: Journal, url: str, resend: bool) -> None:
    client = VenueClient(url, attempts=20, backoff=0.02, jitter=0.0)
    manager = OrderManager.resume(journal, client)
    await client.connect()
    resent: list[str] = []
    if resend:  # a naive kernel: resend every pending_new order before asking the venue anything
        for order in list(manager.orders.values()):
            if order.state == "pending_new":
                resent.append(order.entity_id)
                await client.send_new(
                    NewOrder(
                        client_order_id=order.entity_id,
                        instrument=order.data["instrument"],
                        side=order.data["side"],
                        qty=order.data["qty"],
                        price=order.data["price"],
                    )
                )
        answers = 0
        async with asyncio.timeout(10):  # an ack, or the existing order's status for a duplicate
            while answers < len(resent):
                answers += len(manager.apply_reports(await client.next_reports()) or [None])
    resolution = await manager.resolve_in_flight()
    print(
        json.dumps(
            {
                "crashed_runs": journal.crashed_runs,
                "orders": {o.entity_id: o.state for o in manager.orders.values()},
                "unknown_pending": resolution.unknown_pending,
                "resent": resent,
            }
        ),
        flush=True,
    )
    await client.close()


def main() -> None:
    mode, path, url = sys.argv[1:4]
    journal = Journal.open(path)
    try:
        if mode.startswith("kill-after-"):
            asyncio.run(place_and_die(journal, url, mode.removeprefix("kill-after-")))
        else:
            asyncio.run(resume(journal, url, resend=mode == "resume-and-resend"))
    finally:
        journal.close()


if __name__ == "__main__":
    main()
