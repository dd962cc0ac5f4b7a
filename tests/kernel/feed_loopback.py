"""A scripted venue on 127.0.0.1 for the live-source tests (tests/kernel/test_feed_*_live.py).

``Loopback`` is one websockets server: each WebSocket connection runs the next ``script`` (an async
function of the connection; when none is left the connection just stays open), and plain HTTP
GETs (Binance's REST snapshots) are answered through ``process_request`` from per-path queues of
``Answer`` (the last answer of a queue repeats). Everything it receives is kept for assertions.
``running_feed`` runs a ``FeedClient`` as a task and stops it (checking the audit chain) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kernel.feed.client import FeedClient
from kernel.feed.events import FeedEvent, QuoteEvent
from kernel.feed.source import MarketDataSource
from storage.audit import AuditReader
from storage.journal import Journal

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "exchange_samples"
ENTITY = "live-feed"
FAST: dict[str, int] = {
    "backoff_initial_ms": 20,
    "backoff_max_ms": 100,
    "jitter_ms": 10,
    "stale_after_ms": 60_000,
    "healthy_after_ms": 100,
}
_EXACT = msgspec.json.Encoder(decimal_format="number")
Script = Callable[[ServerConnection], Awaitable[None]]


def sample(path: str) -> Any:
    """A sample file of tests/data/exchange_samples, parsed."""
    return json.loads((SAMPLES / path).read_text())


def frames(path: str) -> list[str]:
    """A sample file holding a list of messages, each re-serialised as one frame (JSON numbers
    keep their text: ``29431.0`` stays ``29431.0``, as a venue sends it)."""
    messages = msgspec.json.Decoder(float_hook=Decimal).decode((SAMPLES / path).read_bytes())
    return [_EXACT.encode(message).decode() for message in messages]


@dataclass
class Answer:
    """One HTTP answer: status, body, headers, how long to wait before sending it, and an event
    to wait for first (``gate``: the test decides when the answer goes out)."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: asyncio.Event | None = None


class Loopback:
    """The scripted venue (see the module docstring)."""

    def __init__(self) -> None:
        self.scripts: deque[Script] = deque()
        self.answers: dict[str, deque[Answer]] = {}
        self.ws_paths: list[str] = []
        self.rest_paths: list[str] = []
        self.received: list[Any] = []
        self.errors: list[BaseException] = []
        self.connection: ServerConnection | None = None
        self.release = asyncio.Event()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> Loopback:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._http, close_timeout=0.2)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release.set()
        for queue in self.answers.values():
            for answer in queue:
                if answer.gate is not None:
                    answer.gate.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        assert not self.errors, f"a venue script failed: {self.errors!r}"

    @property
    def http_url(self) -> str:
        """The same port, for REST."""
        return self.url.replace("ws://", "http://")

    def answer(self, path: str, *answers: Answer) -> None:
        """Answer GETs of ``path`` (with its query) with ``answers`` in turn, the last one repeating."""
        self.answers.setdefault(path, deque()).extend(answers)

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.ws_paths.append(request.path)
            return None
        path = unquote(request.path)  # as asked for: /api/v3/exchangeInfo?symbols=["A","B"]
        self.rest_paths.append(path)
        queue = self.answers.get(path)
        if not queue:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such path\n")
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        if answer.gate is not None:
            await answer.gate.wait()
        if answer.delay:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(answer.delay):
                    await self.release.wait()
        response = connection.respond(HTTPStatus(answer.status), answer.body)
        response.headers["Content-Type"] = "application/json"
        for name, value in answer.headers.items():
            response.headers[name] = value
        return response

    async def _handler(self, ws: ServerConnection) -> None:
        self.connection = ws
        script = self.scripts.popleft() if self.scripts else None
        tasks = [asyncio.create_task(self._read(ws))]
        if script is not None:
            tasks.append(asyncio.create_task(self._run(script, ws)))
        try:
            await ws.wait_closed()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, script: Script, ws: ServerConnection) -> None:
        try:
            await script(ws)
        except ConnectionClosed:
            pass
        except BaseException as exc:  # kept for the test to see: a failing script would only time out
            if not isinstance(exc, asyncio.CancelledError):
                self.errors.append(exc)
            raise

    async def _read(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                self.received.append(json.loads(frame))


async def send_all(ws: ServerConnection, messages: Sequence[str]) -> None:
    """Send every frame in order."""
    for message in messages:
        await ws.send(message)


@dataclass
class Run:
    """A running feed and what it told its listeners."""

    client: FeedClient
    task: asyncio.Task[None]
    events: list[FeedEvent] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    frames: list[tuple[str | bytes, int]] = field(default_factory=list)

    def quotes(self) -> list[tuple[str, str, str, str, str]]:
        """Every quote passed on, as ``(instrument, bid, bid_qty, ask, ask_qty)`` strings."""
        return [
            (e.instrument, str(e.bid), str(e.bid_qty), str(e.ask), str(e.ask_qty))
            for e in self.events
            if isinstance(e, QuoteEvent)
        ]


@contextlib.asynccontextmanager
async def running_feed(
    source: MarketDataSource,
    instruments: Sequence[str],
    db_path: str,
    policy: dict[str, int] | None = None,
) -> AsyncIterator[Run]:
    """A ``FeedClient`` on ``source`` as a task; on exit stop it, close the journal, verify the audit chain."""
    journal = Journal.open(db_path, durability="normal")
    client = FeedClient(
        source.url,
        instruments,
        journal,
        ENTITY,
        {**FAST, **(policy or {})},
        source=source,
        open_timeout=2.0,
        ping_interval=None,
        close_timeout=0.2,
    )
    run = Run(client, asyncio.create_task(client.run()))
    client.on_event = run.events.append
    client.on_state = run.states.append
    client.on_frame = lambda frame, t_ns: run.frames.append((frame, t_ns))
    try:
        yield run
    finally:
        client.stop()
        await run.task
        journal.close()
    with AuditReader(db_path) as reader:
        assert reader.verify().ok


def steps(db_path: str) -> list[tuple[str, str]]:
    """The journaled feed transitions as ``(trigger, destination)``."""
    with AuditReader(db_path) as reader:
        return [(row["trigger"], row["dest"]) for row in reader.timeline(ENTITY, machine="feed")]


def triggers(db_path: str, trigger: str) -> list[dict[str, Any]]:
    """The data of every journaled ``trigger`` of the feed."""
    with AuditReader(db_path) as reader:
        return [row["data"] for row in reader.timeline(ENTITY, machine="feed") if row["trigger"] == trigger]
