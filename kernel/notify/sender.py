"""Sending notifications: a bounded queue the trading loop only ever ``put_nowait``s into, and one
task that posts each notice to every target with retries.

``Notifier.notify`` is O(1) and never blocks: when the queue is full the *oldest* waiting notice is
dropped (and counted in ``dropped``) to make room, so the latest news (a stop, a halt) gets through.
``run()`` posts with one ``httpx.AsyncClient`` (short timeouts), retrying an error or a 5xx/429
answer with exponential backoff (tenacity) for at most ``attempts`` attempts, then counts the
notice ``failed`` for that target and goes on. A 4xx answer other than 429 is not retried. At stop,
``drain(seconds)`` waits for the queue to empty for at most that long; what is left is dropped and
counted.

Targets: each webhook URL gets ``POST`` with the JSON body ``{"kind", "time", "text", "data"}``;
Telegram gets ``POST {api}/bot{token}/sendMessage`` with ``{"chat_id", "text"}``. The bot token is
never logged: targets are named without it (``telegram chat 42``), webhooks by scheme and host only
(their paths often carry a token), error texts have the token replaced, and a filter on the
``httpx`` logger (which logs every request's URL at INFO) shows the token, and a webhook's path,
as ``***`` while the notifier runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from kernel.config.sections import NotifySection
from kernel.errors import KernelError
from kernel.notify.events import Notice

log = logging.getLogger(__name__)

REDACTED = "***"
BACKOFF_S = 0.5
"""The first wait between attempts (then 1 s, 2 s, ... up to ``BACKOFF_MAX_S``)."""
BACKOFF_MAX_S = 8.0


class NotifyError(KernelError):
    """One attempt to deliver a notice failed in a way worth retrying (network error, 5xx, 429)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a notice goes: ``name`` (safe to log), the URL to post to, and the JSON of a notice."""

    name: str
    url: str
    secret: str = ""

    def payload(self, notice: Notice, chat_id: str) -> dict[str, Any]:
        """The JSON body for ``notice``: the whole notice for a webhook, chat and text for Telegram."""
        if chat_id:
            return {"chat_id": chat_id, "text": notice.text}
        return notice.body()

    def redact(self, text: str) -> str:
        """``text`` with this target's URL replaced by its name, and its secret by ``***``."""
        text = text.replace(self.url, self.name)
        return text.replace(self.secret, REDACTED) if self.secret else text

    def shown(self, text: str) -> str:
        """``text`` with this target's URL as it may be logged (its path ``***`` unless it is
        ``/``), and its secret as ``***``: for lines that need the URL's shape (``httpx``'s)."""
        parts = urlsplit(self.url)
        if parts.path not in ("", "/") or parts.query:
            text = text.replace(self.url, f"{parts.scheme}://{parts.netloc}/{REDACTED}")
        return text.replace(self.secret, REDACTED) if self.secret else text


def webhook_name(url: str) -> str:
    """A webhook as logs show it: ``webhook https://host:port`` (the path may carry a token)."""
    parts = urlsplit(url)
    return f"webhook {parts.scheme}://{parts.netloc}"


def targets_of(section: NotifySection) -> list[tuple[Target, str]]:
    """Each target of ``[notify]`` with its Telegram chat id (``""`` for a webhook)."""
    targets = [(Target(webhook_name(url), url), "") for url in section.webhook_urls]
    if section.telegram_chat_id:
        token = section.telegram_token.reveal()
        url = f"{section.telegram_api_url.rstrip('/')}/bot{token}/sendMessage"
        targets.append((Target(f"telegram chat {section.telegram_chat_id}", url, token), section.telegram_chat_id))
    return targets


class _RedactTargets(logging.Filter):
    """Rewrites log records that name a target's URL or secret (``Target.shown``)."""

    def __init__(self, targets: list[Target]) -> None:
        super().__init__()
        self.targets = targets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = message
        for target in self.targets:
            shown = target.shown(shown)
        if shown != message:
            record.msg, record.args = shown, None
        return True


class Notifier:
    """The bounded queue and its sender (module docstring). ``counts``: queued, sent, failed
    (per target, after the last attempt), dropped (queue full, or left at stop).

    ``sleep`` is what tenacity waits with between attempts (tests pass one that does not sleep).
    """

    def __init__(
        self,
        section: NotifySection,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.section = section
        self.kinds = frozenset(section.events)
        self.targets = targets_of(section)
        self.queue: asyncio.Queue[Notice] = asyncio.Queue(section.queue_size)
        self.counts = {"queued": 0, "sent": 0, "failed": 0, "dropped": 0}
        self._sleep = sleep
        self._transport = transport
        self._muted = 0

    # -- the trading loop's side: O(1), never blocks ------------------------------------------

    def notify(self, notice: Notice) -> None:
        """Queue ``notice`` if its kind is configured; when full, drop the oldest (counted)."""
        if notice.kind not in self.kinds or self._muted:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.queue.task_done()
            self.counts["dropped"] += 1
        self.queue.put_nowait(notice)
        self.counts["queued"] += 1

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """Nothing is queued inside (the kernel refolding history at start is no news)."""
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    def status(self) -> dict[str, Any]:
        """The counters, the queue's length and the targets by their safe names."""
        return {
            **self.counts,
            "waiting": self.queue.qsize(),
            "targets": [target.name for target, _ in self.targets],
            "events": sorted(self.kinds),
        }

    # -- the sender task ------------------------------------------------------------------------

    async def run(self) -> None:
        """Post each queued notice to every target until cancelled."""
        redact = _RedactTargets([target for target, _ in self.targets])
        httpx_log = logging.getLogger("httpx")
        httpx_log.addFilter(redact)
        timeout = httpx.Timeout(self.section.timeout_s)
        try:
            async with httpx.AsyncClient(timeout=timeout, transport=self._transport) as client:
                while True:
                    notice = await self.queue.get()
                    try:
                        for target, chat_id in self.targets:
                            await self._deliver(client, target, notice, chat_id)
                    except asyncio.CancelledError:  # stopped while sending it: given up, counted
                        self.counts["dropped"] += 1
                        raise
                    finally:
                        self.queue.task_done()
        finally:
            httpx_log.removeFilter(redact)

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the queue to empty; drop (and count) what is left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.queue.join()
        left = 0
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
            left += 1
        if left:
            self.counts["dropped"] += left
            log.warning("notifications: %d left unsent at stop (dropped)", left)

    async def _deliver(self, client: httpx.AsyncClient, target: Target, notice: Notice, chat_id: str) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.section.attempts),
            wait=wait_exponential(multiplier=BACKOFF_S, max=BACKOFF_MAX_S),
            retry=retry_if_exception_type(NotifyError),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._post(client, target, target.payload(notice, chat_id))
        except NotifyError as exc:
            self.counts["failed"] += 1
            log.warning("notification %s to %s failed after %d attempts: %s", notice.kind, target.name,
                        self.section.attempts, exc)  # fmt: skip
        except _Refused as exc:
            self.counts["failed"] += 1
            log.warning("notification %s refused by %s: %s", notice.kind, target.name, exc)
        except Exception as exc:  # a bug here must not take the kernel's task group down
            self.counts["failed"] += 1
            log.error("notification %s to %s failed: %s", notice.kind, target.name, target.redact(repr(exc)))
        else:
            self.counts["sent"] += 1

    async def _post(self, client: httpx.AsyncClient, target: Target, payload: dict[str, Any]) -> None:
        try:
            response = await client.post(target.url, json=payload)
        except httpx.HTTPError as exc:
            raise NotifyError(target.redact(f"{type(exc).__name__}: {exc}")) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise NotifyError(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise _Refused(f"HTTP {response.status_code}: {target.redact(response.text[:200])}")


class _Refused(KernelError):
    """The target answered 4xx (not 429): retrying would not help."""


__all__ = ["Notifier", "NotifyError", "Target", "targets_of", "webhook_name"]
