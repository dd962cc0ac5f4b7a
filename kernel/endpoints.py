"""The control socket and the HTTP endpoints, served from their own thread so that they answer
while the kernel's event loop is blocked (a commit waiting on a hung ``fsync`` or a foreign lock).

``EndpointThread`` runs a second asyncio loop in a daemon thread, with the ``ControlServer`` and
the ``HttpEndpoints`` on it. Each request is handed to the kernel's loop
(``run_coroutine_threadsafe``); if the kernel answers within ``HANDOVER_S`` that answer is sent,
exactly as when they ran on the kernel's loop. If it does not, the answer comes from what the
kernel last published; once the loop has not ticked for ``STALLED_MS`` it is stalled, and:

* ``/healthz`` answers 503 ``{"status": "stalled", "reason": "event loop stalled 3.2 s", ...}``
  and ``/readyz`` 503 ``{"ready": false, "reason": "loop_stalled", ...}``;
* ``status`` (control socket), ``/status`` and ``/metrics`` answer from the snapshot the kernel
  last published (``run``: a tick every ``TICK_S``, a snapshot every ``PUBLISH_S``), with
  ``loop_stalled`` naming the stall (``/metrics`` is rendered here, from the published sample,
  with the process metrics of now);
* a command that acts (``halt``, ``arm``, ``reduce``, ``stop``) stays queued on the kernel's loop
  and is applied (or refused) when it resumes; the caller is told so at once (``queued``).

Nothing here touches the kernel's state from this thread: the kernel's loop computes every answer
and every published snapshot; this thread only reads the last one published.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from kernel import wiring
from kernel.clock import monotonic_ms
from kernel.config import Config
from kernel.control import ControlServer, Handler
from kernel.http import HttpEndpoints
from kernel.metrics import KernelMetrics, MetricsExporter, MetricsSample
from kernel.status import running_status
from kernel.views import KernelSnapshot, Readiness, liveness, metrics_sample, readiness

log = logging.getLogger(__name__)

T = TypeVar("T")

HANDOVER_S = 0.1
"""How long a read (``/healthz``, ``/readyz``, ``/status``, ``/metrics``, ``status``) waits for the kernel's loop
before it is answered from the published snapshot."""
COMMAND_HANDOVER_S = 0.15
"""How long a command that acts (``halt``, ``arm``, ``stop``, ...) waits before it is answered
``queued`` (it stays queued on the kernel's loop)."""
TICK_S = 0.1
"""How often the kernel's loop shows it is alive."""
PUBLISH_S = 0.5
"""How often the kernel's loop publishes the snapshot answered during a stall."""
STALLED_MS = 1000
"""A loop that has not ticked for longer is stalled: ``/healthz`` 503 and ``loop_stalled``. A loop
merely slow to answer (a busy moment) is answered from the last snapshot as it was."""
JOIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Published:
    """What the kernel's loop last published, all from one snapshot: the ``/healthz`` body, the
    ``/readyz`` verdict, the status and the metrics sample."""

    healthz: dict[str, Any]
    readyz: Readiness
    status: dict[str, Any]
    metrics: MetricsSample

    @classmethod
    def of(cls, snapshot: KernelSnapshot, metrics: KernelMetrics) -> Published:
        """Every answer of ``snapshot`` (on the kernel's loop)."""
        return cls(liveness(snapshot), readiness(snapshot), running_status(snapshot), metrics_sample(snapshot, metrics))


class EndpointThread:
    """The endpoints' thread and loop. ``start`` (on the kernel's loop) binds the control socket and
    the HTTP endpoints there; ``run`` is the kernel-side tick task; ``stop`` closes everything."""

    def __init__(self, handle_control: Handler, snapshot: Callable[[], KernelSnapshot], metrics: KernelMetrics) -> None:
        self._handle_control = handle_control
        self._snapshot = snapshot
        self._metrics = metrics
        self._exporter: MetricsExporter | None = None
        self.control: ControlServer | None = None
        self.http: HttpEndpoints | None = None
        self._kernel_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._published: Published | None = None
        self._tick_ms = monotonic_ms()

    # -- the kernel's side ------------------------------------------------------------------------

    async def start(self, config: Config) -> None:
        """Start the thread and bind the control socket and (if configured) HTTP on its loop.

        Raises what binding raises (``ControlError``, ``RemoteBindRefused``, ``OSError``); what was
        started is left for ``stop``.
        """
        self._kernel_loop = asyncio.get_running_loop()
        self.publish()
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve_forever, name="tradekernel-endpoints", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._bind(config), loop))

    async def run(self) -> None:
        """The kernel-side task: tick every ``TICK_S``, publish a snapshot every ``PUBLISH_S``."""
        published_ms = monotonic_ms()
        while True:
            await asyncio.sleep(TICK_S)
            self._tick_ms = now = monotonic_ms()
            if now - published_ms >= PUBLISH_S * 1000:
                published_ms = now
                self.publish()

    def publish(self) -> None:
        """Publish the answers given while the kernel's loop is stalled (on the kernel's loop)."""
        try:
            self._published = self._answers()
        except Exception:  # a failing snapshot must not stop the tick; the endpoints say why
            log.exception("publishing the status snapshot failed")
        self._tick_ms = monotonic_ms()

    def _answers(self) -> Published:
        return Published.of(self._snapshot(), self._metrics)

    async def stop(self) -> None:
        """Stop the HTTP endpoints and the control socket, then the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if not loop.is_closed():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._unbind(), loop))
        finally:
            self._loop = None
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, JOIN_S)

    # -- the thread's side ------------------------------------------------------------------------

    def _serve_forever(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _bind(self, config: Config) -> None:
        self.control = await wiring.start_control(config, self._control)
        if config.http.listen:
            assert config.http.address is not None
            host, port = config.http.address
            self._exporter = MetricsExporter()
            self.http = HttpEndpoints(
                self._health_answer,
                self._ready_answer,
                self._metrics_answer,
                self._status_answer,
                allowed_hosts=config.http.allowed_hosts,
            )
            await self.http.start(host, port, allow_remote=config.http.allow_remote)

    async def _unbind(self) -> None:
        if self.http is not None:
            await self.http.stop()
        if self.control is not None:
            await self.control.stop()

    def stalled(self) -> str:
        """How long the kernel's loop has not ticked, as the endpoints say it."""
        return f"event loop stalled {max(0, monotonic_ms() - self._tick_ms) / 1000:.1f} s"

    def is_stalled(self) -> bool:
        """True when the kernel's loop has not ticked for ``STALLED_MS``."""
        return monotonic_ms() - self._tick_ms > STALLED_MS

    async def _handover(
        self, coro: Coroutine[Any, Any, T], timeout: float = HANDOVER_S, queued: str = ""
    ) -> tuple[bool, T | None]:
        """Run ``coro`` on the kernel's loop: (True, its result) if it answers in time, else
        (False, None) and it stays queued there (its outcome is then logged, as ``queued``)."""
        kernel_loop = self._kernel_loop
        if kernel_loop is None or kernel_loop.is_closed():
            coro.close()
            return False, None
        future = asyncio.run_coroutine_threadsafe(coro, kernel_loop)
        waiting = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({waiting}, timeout=timeout)
        if done:
            return True, waiting.result()
        future.add_done_callback(functools.partial(_log_late, queued))
        waiting.add_done_callback(_consume)
        return False, None

    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["command"]
        wait = HANDOVER_S if command == "status" else COMMAND_HANDOVER_S
        answered, answer = await self._handover(_ask(self._handle_control, request), wait, f"queued {command}")
        if answered:
            assert answer is not None
            return answer
        published = self._published
        stalled = self.stalled()
        if command == "status":
            return {"ok": True, "status": self._last_status()}
        trading = None if published is None else published.status.get("trading")
        return {
            "ok": True,
            "queued": True,
            "trading": trading,
            "note": f"queued: the kernel's {stalled}; {command} is applied (or refused) when it resumes",
        }

    async def _fresh(self) -> Published | None:
        """The kernel's answers of now if its loop answers within ``HANDOVER_S``, else ``None``."""
        answered, answer = await self._handover(_call(self._answers))
        return answer if answered else None

    async def _health_answer(self) -> tuple[bool, dict[str, Any]]:
        fresh = await self._fresh()
        if fresh is not None:
            return True, fresh.healthz
        published = self._published
        if not self.is_stalled() and published is not None:
            return True, published.healthz
        stalled = self.stalled()
        body = {} if published is None else dict(published.healthz)
        return False, {**body, "status": "stalled", "reason": stalled, "loop_stalled": stalled}

    async def _ready_answer(self) -> tuple[bool, dict[str, Any]]:
        fresh = await self._fresh()
        published = fresh or self._published
        if fresh is None and (published is None or self.is_stalled()):
            stalled = self.stalled()
            trading = None if published is None else published.readyz.trading
            health = None if published is None else published.readyz.health
            return False, Readiness(False, "loop_stalled", stalled, trading, health).body()
        assert published is not None
        return published.readyz.ready, published.readyz.body()

    async def _status_answer(self) -> dict[str, Any]:
        fresh = await self._fresh()
        return fresh.status if fresh is not None else self._last_status()

    def _last_status(self) -> dict[str, Any]:
        status = {} if self._published is None else self._published.status
        return {**status, "loop_stalled": self.stalled()} if self.is_stalled() else status

    async def _metrics_answer(self) -> bytes:
        fresh = await self._fresh()
        published = fresh or self._published
        exporter = self._exporter
        assert exporter is not None
        return exporter.render(None if published is None else published.metrics)


async def _call(fn: Callable[[], T]) -> T:
    return fn()


async def _ask(handler: Handler, request: dict[str, Any]) -> dict[str, Any]:
    return await handler(request)


def _log_late(queued: str, future: concurrent.futures.Future[Any]) -> None:
    """The outcome of a request that was still queued when its caller got its answer: a failure,
    and for a queued command (``queued``: e.g. ``queued halt``) whether it was applied or refused."""
    if future.cancelled():
        return
    if (exc := future.exception()) is not None:
        log.error("a request queued during a loop stall failed: %r", exc)
    elif queued:
        answer = future.result()
        ok = isinstance(answer, dict) and answer.get("ok")
        outcome = "applied" if ok else f"refused: {answer.get('error') if isinstance(answer, dict) else answer}"
        log.warning("%s after the loop stall: %s", queued, outcome)


def _consume(waiting: asyncio.Future[Any]) -> None:
    if not waiting.cancelled():
        waiting.exception()  # retrieved: reported by _log_late_failure


__all__ = ["COMMAND_HANDOVER_S", "HANDOVER_S", "PUBLISH_S", "TICK_S", "EndpointThread", "Published"]
