"""The shipper: streams a local journal to the fleet store (PostgreSQL), resumably, in batches.

``Shipper.ship_available()`` ships everything the journal holds now: it asks the store for this
kernel's head, checks that the local journal still holds that head unchanged (else an incident:
the journal was rewritten after shipping, an old backup was restored, or two journals claim one
kernel id), then sends the rows after it in batches of ``batch_rows`` (one transaction each,
``storage.fleet.store.FleetStore.ingest``, which checks the chain again). Memory is bounded by the
batch size. ``follow(stop)`` does it again every ``interval_s`` until ``stop`` is set, retrying
with capped exponential backoff (tenacity) while the store is down; a chain break ends it.

``ShipperThread`` runs ``follow`` in a thread of its own, with its own SQLite reader and psycopg
connection, for ``tradekernel run`` with ``[ship] url``: it never touches the kernel's event loop,
so an unreachable store cannot slow trading. Its ``lag()`` is what ``status`` shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from storage.errors import JournalBusy, JournalLocked
from storage.fleet.errors import ChainBroken, StoreUnavailable
from storage.fleet.local import LocalJournal
from storage.fleet.store import FleetStore, KernelHead
from storage.fleet.verify import compare

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE = (StoreUnavailable, JournalBusy, JournalLocked)


@dataclass(frozen=True, slots=True)
class ShipOptions:
    """How a shipper batches, waits and backs off (``[ship]`` in the configuration)."""

    batch_rows: int = 2000
    interval_s: float = 1.0
    max_backoff_s: float = 30.0
    first_backoff_s: float = 0.1


class Shipper:
    """Ships one journal (``path``) to the fleet store at ``url``. Not thread-safe; one per journal.

    ``clock_ns`` is the wall clock the lag in seconds is measured with."""

    def __init__(
        self,
        path: str,
        url: str,
        options: ShipOptions | None = None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        host: str | None = None,
    ) -> None:
        self.path = path
        self.options = options or ShipOptions()
        self.store = FleetStore(url, host=host)
        self.clock_ns = clock_ns
        self._local: LocalJournal | None = None
        self.shipped = KernelHead()
        self.shipped_rows = 0
        """Rows this shipper sent (not counting what the store already had)."""
        self.state = "starting"
        self.error: str | None = None
        self._lag: dict[str, Any] = {"state": "starting"}

    @property
    def local(self) -> LocalJournal:
        if self._local is None:
            self._local = LocalJournal(self.path)
        return self._local

    @property
    def kernel_id(self) -> str:
        return self.local.kernel_id

    def close(self) -> None:
        self.store.close()
        if self._local is not None:
            self._local.close()
            self._local = None

    # -- one pass ---------------------------------------------------------------------------------

    def ship_available(self) -> int:
        """Ship every row and anomaly the journal holds now; return how many rows were sent.

        Raises ``ChainBroken`` (an incident, committed to the store), ``StoreUnavailable`` and the
        journal's ``JournalError`` subclasses."""
        local, kernel_id = self.local, self.kernel_id
        head = self.store.head(kernel_id)
        self._check_head(head)
        sent = 0
        batch = self.options.batch_rows
        while True:
            rows = local.rows(head.last_seq + 1, batch)
            anomalies = local.anomalies(head.last_anomaly_id, batch)
            if not rows and not anomalies:
                break
            head = self.store.ingest(kernel_id, rows, anomalies, journal_path=self.path)
            sent += len(rows)
            self.shipped = head
            self.note("shipping")
        self.shipped = head
        self.shipped_rows += sent
        self.note("caught_up")
        return sent

    def _check_head(self, head: KernelHead) -> None:
        """The local journal must hold the store's head for this kernel, unchanged."""
        if head.last_seq == 0:
            return
        rows = self.local.rows(head.last_seq, 1)
        if rows and rows[0].seq == head.last_seq and rows[0].hash == head.last_hash:
            return
        # Find the first row that differs (streamed; rare: only when something is wrong).
        result = compare(self.local.hashes(), self.store.hashes(self.kernel_id))
        if result.first_mismatch is not None:
            seq, got, expected = result.first_mismatch
            kind, detail = (
                "rewritten",
                "the local journal differs from what it shipped (a journal rewritten after shipping, an old "
                "backup restored, or two journals claiming one kernel id)",
            )
        else:
            seq, got = result.first_missing_locally or head.last_seq, ""
            expected = head.last_hash if seq == head.last_seq else "(held by the store)"
            kind, detail = (
                "behind",
                f"the store holds rows up to seq {head.last_seq} that the local journal lacks (an old backup "
                "restored, or two journals claiming one kernel id)",
            )
        raise self.store.record_incident(self.kernel_id, kind, seq, expected, got, detail, journal_path=self.path)

    # -- following --------------------------------------------------------------------------------

    def retrying(self, stop: threading.Event, attempts: int | None = None) -> Retrying:
        """tenacity's retry policy: capped exponential backoff on a store outage, until ``stop`` is
        set (or ``attempts`` are spent); the wait is ``stop.wait`` so stopping interrupts it."""
        never_more = stop_after_attempt(attempts) if attempts else None

        def should_stop(state: RetryCallState) -> bool:
            return stop.is_set() or (never_more is not None and never_more(state))

        def pause(seconds: float) -> None:
            stop.wait(seconds)

        return Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential(multiplier=self.options.first_backoff_s, max=self.options.max_backoff_s),
            stop=should_stop,
            sleep=pause,
            before_sleep=self._on_retry,
            reraise=True,
        )

    def ship_with_retries(self, stop: threading.Event, attempts: int | None = None) -> int:
        """``ship_available`` under the retry policy; raises the last error once it gives up."""
        return self.retrying(stop, attempts)(self.ship_available)

    def follow(self, stop: threading.Event) -> None:
        """Ship, wait ``interval_s``, again, until ``stop`` is set. Raises ``ChainBroken`` (the
        shipper stops: nothing is merged) or an unexpected error; an outage is waited out."""
        while not stop.is_set():
            try:
                self.ship_with_retries(stop)
            except RETRYABLE:
                if stop.is_set():
                    return
                raise
            stop.wait(self.options.interval_s)

    def _on_retry(self, state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        self.store.close()  # reconnect afresh on the next attempt
        self.error = str(error)
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("shipping %s: %s; retrying in %.1f s (attempt %d)", self.path, error, wait, state.attempt_number)
        self.note("store_down")

    # -- lag --------------------------------------------------------------------------------------

    def note(self, state: str) -> None:
        """Record ``state`` and measure the lag (what ``lag()`` returns)."""
        self.state = state
        if state != "store_down":
            self.error = None
        try:
            head_seq = self.local.head_seq()
            first_unshipped = self.local.ts_of(self.shipped.last_seq + 1) if head_seq > self.shipped.last_seq else None
        except Exception:  # the lag is best effort: a busy reader must not stop shipping
            head_seq, first_unshipped = self.shipped.last_seq, None
        lag_s = 0.0 if first_unshipped is None else max(0.0, (self.clock_ns() - first_unshipped) / 1e9)
        self._lag = {
            "state": state,
            "store": self.store.where,
            "kernel_id": self._local.kernel_id if self._local is not None else None,
            "head_seq": head_seq,
            "shipped_seq": self.shipped.last_seq,
            "lag_rows": max(0, head_seq - self.shipped.last_seq),
            "lag_s": round(lag_s, 3),
            "shipped_rows": self.shipped_rows,
            "error": self.error,
        }

    def lag(self) -> dict[str, Any]:
        """The shipper's state and lag (journal head seq − shipped seq, and the age in seconds of the
        oldest row not shipped yet), as of its last pass or retry. Safe to call from any thread."""
        return dict(self._lag)


class ShipperThread:
    """A ``Shipper`` following its journal in a daemon thread of its own (``tradekernel run``)."""

    def __init__(self, shipper: Shipper) -> None:
        self.shipper = shipper
        self.stop_event = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        shipper = self.shipper
        try:
            shipper.follow(self.stop_event)
            self._last_pass()
        except ChainBroken as exc:
            self.failure = exc
            shipper.error = str(exc)
            shipper.note("chain_broken")
            log.error("shipping stopped: %s", exc)
        except Exception as exc:
            self.failure = exc
            shipper.error = f"{type(exc).__name__}: {exc}"
            shipper.note("failed")
            log.exception("shipping stopped")
        finally:
            shipper.close()

    def _last_pass(self) -> None:
        """Once stopped, ship what the journal holds now, once, without retries."""
        try:
            self.shipper.ship_available()
        except RETRYABLE as exc:
            log.warning("the last shipment at stop failed: %s (the next `tradekernel ship` sends it)", exc)
        self.shipper.note("stopped")

    def stop(self, timeout_s: float) -> None:
        """Stop following and make the last pass (in the shipper's thread), waiting at most
        ``timeout_s`` for it. Blocks: call it off the event loop."""
        self.stop_event.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning(
                "the shipper did not stop within %.1f s (it is a daemon thread: it ends with the process)", timeout_s
            )

    def lag(self) -> dict[str, Any]:
        return self.shipper.lag()


def start_in_run(path: str, url: str, options: ShipOptions) -> ShipperThread:
    """Start following ``path`` in a thread (``[ship] url`` in ``tradekernel run``)."""
    thread = ShipperThread(Shipper(path, url, options))
    thread.start()
    return thread
