"""A failing venue reader under the kernel's ``VenueSession``: the failure is journaled as an
anomaly, order entry pauses at once, the session is recycled and later fills are applied
(issue 14, item 4). A real fake venue on 127.0.0.1 (``tests.kernel.test_execution.FakeVenue``)."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from pathlib import Path

import pytest

from kernel import paper_protocol as protocol
from kernel.execution import VenueClient
from kernel.orders import OrderManager
from kernel.venue_session import VenueSession
from machines.order_terms import OrderTerms
from storage import Journal
from storage.audit import AuditReader
from tests.conftest import FakeClock
from tests.kernel.test_execution import TIMEOUT, FakeVenue, RecordingSleep, execution, fill, snapshot
from tests.poll import eventually


@pytest.mark.asyncio
async def test_a_reader_failure_is_journaled_pauses_entry_and_the_session_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decode = protocol.decode_venue

    def buggy(frame: str | bytes) -> protocol.VenueMessage:
        if "boom" in str(frame):
            raise KeyError("a decoder bug")
        return decode(frame)

    monkeypatch.setattr(protocol, "decode_venue", buggy)
    path = str(tmp_path / "journal.db")
    journal = Journal.open(path, durability="normal", clock=FakeClock())
    wakes: list[bool] = []
    async with asyncio.timeout(TIMEOUT), FakeVenue() as venue:
        client = VenueClient(venue.url, ping_interval=None, attempts=5, sleep=RecordingSleep(), jitter=0)
        manager = OrderManager(journal, client)
        session = VenueSession(
            journal,
            client,
            manager,
            status_timeout=1.0,
            now_ms=lambda: 0,
            stopping=lambda: False,
            wake=lambda: wakes.append(client.connected),
        )
        journal_it = client.on_anomaly
        assert journal_it is not None
        gate_then: list[str | None] = []

        def anomaly(kind: str, reason: str, sample: str) -> None:
            gate_then.append(manager.entry_block())  # what order entry saw when the reader failed
            journal_it(kind, reason, sample)

        client.on_anomaly = anomaly
        await session.connect()
        supervisor = asyncio.create_task(session.supervise())
        try:
            await eventually(lambda: not manager.paused)
            terms = OrderTerms("BTCUSDT", "buy", Decimal(1), Decimal(100))
            order = await manager.place(terms)
            await venue.expect(protocol.NewOrder)
            venue.statuses[order.entity_id] = snapshot(order.entity_id, "new")
            await venue.send_raw('{"type": "heartbeat", "ts_ms": 1, "boom": 1}')
            await eventually(lambda: client.reader_failures == 1)
            assert False in wakes  # health was told while the session was down
            assert len(gate_then) == 1
            assert gate_then[0] is not None  # order entry was paused at once
            await client.wait_connected(after=1)
            assert venue.sessions == 2
            await eventually(lambda: not manager.paused)
            await venue.send(execution(order.entity_id, "trade", "filled", cum_qty="1", fill=fill("t1", "1")))
            await eventually(lambda: order.state == "filled")
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await client.close()
    journal.close()
    with AuditReader(path) as reader:
        anomalies = reader.anomalies(source="venue")
    assert [(a["kind"], a["reason"]) for a in anomalies] == [
        ("reader_failed", "venue report reader failed: KeyError('a decoder bug'); session recycled")
    ]
