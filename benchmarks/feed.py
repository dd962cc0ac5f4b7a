"""Market-data feed throughput and reconnect time on loopback, next to a raw baseline measured in the
same run. Prints JSON lines.

A blaster server (its own process) speaks just enough of the paper protocol (``hello`` →
``welcome``, ``subscribe`` → ``subscribed``) and then, on path ``/blast``, writes ``--messages``
pre-encoded frames (``Trade`` and ``Quote`` alternating over two instruments, gapless ``seq`` per
instrument and channel, built with ``kernel.paper_protocol.encode``) plus a final heartbeat as fast
as the socket takes them: the frames are framed once at start-up and written straight to the
transport, so the sender is never the bottleneck. No compression is negotiated.

* ``feed.throughput``: messages per second, first data message to the last, through ``FeedClient``
  (websocket receive → ``decode_paper`` → ``PaperSequence`` check → ``on_event`` listener that keeps
  a ``TopOfBook`` per instrument), next to a bare ``websockets`` client doing ``recv()`` +
  ``json.loads`` of the very same frames from the same server. The two alternate (raw, kernel,
  raw, kernel, ...), so load on the machine hits both alike; medians of ``--repeats`` each, and the
  median of the per-pair ratios. Target (issues 5, 17): kernel >= 0.7 x raw.
* ``feed.reconnect``: on path ``/abort`` the server sends a few frames, then aborts the TCP
  connection (no close frame) and prints the time (``CLOCK_MONOTONIC``, shared by both processes).
  Measured from that abort to the feed being ``streaming`` again, ``--reconnects`` times; the
  feed's backoff delay for each attempt is the machine's ``retry_delay_ms`` (journaled with
  ``disconnected``). Target: measured <= backoff delay + 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

from common import emit, fresh
from roundtrip import start, stop
from websockets.asyncio.client import connect

from kernel.feed.book import TopOfBook
from kernel.feed.client import FeedClient
from kernel.feed.events import FeedEvent, QuoteEvent, TradeEvent
from storage import Journal

INSTRUMENTS = ["BTCUSDT", "ETHUSDT"]
ABORT_AFTER = 100
"""Frames the server sends on ``/abort`` before it aborts the connection."""
ABORT_PAUSE_S = 0.05
"""How long the server waits after those frames before aborting (the feed is surely streaming)."""
BACKOFF_MS = 50
RECONNECT_POLICY = {
    "backoff_initial_ms": BACKOFF_MS,
    "backoff_max_ms": 1000,
    "jitter_ms": 0,
    "healthy_after_ms": 0,  # every connection counts as healthy: each reconnect is attempt 1
    "stale_after_ms": 60_000,
}
OVERHEAD_TARGET_MS = 50.0
RATIO_TARGET = 0.7
TIMEOUT_S = 60.0
ZERO = Decimal(0)

BLASTER = """
import asyncio, sys, time
from decimal import Decimal
from websockets.asyncio.server import serve
from websockets.frames import Frame, Opcode
from kernel.paper_protocol import (VERSION, Heartbeat, Hello, Quote, Subscribe, Subscribed, Trade, Welcome,
                                   decode_client, encode)

COUNT, ABORT_AFTER, PAUSE = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
INSTRUMENTS = ["BTCUSDT", "ETHUSDT"]
BASE = {"BTCUSDT": Decimal("64123.45"), "ETHUSDT": Decimal("3187.12")}
CENT = Decimal("0.01")

def messages(count):
    seq = {}
    for i in range(count):
        instrument = INSTRUMENTS[(i // 2) % 2]
        channel = "trades" if i % 2 == 0 else "quotes"
        n = seq[instrument, channel] = seq.get((instrument, channel), 0) + 1
        px = BASE[instrument] + (i % 200 - 100) * CENT
        ts = 1_700_000_000_000 + i
        if channel == "trades":
            yield Trade(instrument=instrument, seq=n, trade_id=f"{instrument[:3]}-{n}", price=px,
                        qty=Decimal("0.01530") + (i % 7) * Decimal("0.001"),
                        taker_side="buy" if i % 4 == 0 else "sell", ts_ms=ts)
        else:
            yield Quote(instrument=instrument, seq=n, bid=px, bid_qty=Decimal("1.2500") + (i % 5) * Decimal("0.1"),
                        ask=px + CENT, ask_qty=Decimal("0.8420") + (i % 3) * Decimal("0.1"), ts_ms=ts)

def wire(payloads):
    return b"".join(Frame(Opcode.TEXT, p).serialize(mask=False) for p in payloads)

payloads = [encode(m) for m in messages(COUNT)]
BLAST = wire(payloads + [encode(Heartbeat(ts_ms=1_700_000_000_000 + COUNT))])
ABORT = wire(payloads[:ABORT_AFTER])

async def handler(ws):
    path = ws.request.path
    async for frame in ws:
        message = decode_client(frame)
        if isinstance(message, Hello):
            await ws.send(encode(Welcome(version=VERSION, session="blast", instruments=INSTRUMENTS)).decode())
        elif isinstance(message, Subscribe):
            await ws.send(encode(Subscribed(instruments=message.instruments, channels=list(message.channels),
                                            id=message.id)).decode())
            if path == "/abort":
                ws.transport.write(ABORT)
                await asyncio.sleep(PAUSE)
                print("abort", time.monotonic_ns(), flush=True)
                ws.transport.abort()
                return
            ws.transport.write(BLAST)  # then wait for the client to close

async def main():
    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, close_timeout=1) as server:
        print("listening", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


async def raw_rate(url: str, count: int) -> float:
    """Messages per second: bare ``recv()`` + ``json.loads``, first data frame to the ``count``-th."""
    async with asyncio.timeout(TIMEOUT_S), connect(f"{url}/blast") as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "client": "raw"}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "subscribe", "instruments": INSTRUMENTS, "id": "raw"}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        json.loads(await ws.recv())
        start_s = time.perf_counter()
        for _ in range(count - 1):
            json.loads(await ws.recv())
        elapsed = time.perf_counter() - start_s
    return (count - 1) / elapsed


async def kernel_rate(url: str, count: int, db: str) -> float:
    """Messages per second through ``FeedClient`` into a top of book, first event to the ``count``-th."""
    journal = Journal.open(fresh(db), durability="normal")
    tops: dict[str, TopOfBook] = {}
    last_trade: dict[str, TradeEvent] = {}
    seen = 0
    start_s = end_s = 0.0
    done = asyncio.Event()

    def on_event(event: FeedEvent) -> None:
        nonlocal seen, start_s, end_s
        if isinstance(event, QuoteEvent):
            bid, ask = (event.bid, event.bid_qty or ZERO), (event.ask, event.ask_qty or ZERO)  # paper sends sizes
            tops[event.instrument] = TopOfBook(event.instrument, bid, ask)
        elif isinstance(event, TradeEvent):
            last_trade[event.instrument] = event
        seen += 1
        if seen == 1:
            start_s = time.perf_counter()
        elif seen == count:
            end_s = time.perf_counter()
            done.set()

    client = FeedClient(f"{url}/blast", INSTRUMENTS, journal, "bench-feed", on_event=on_event)
    runner = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await done.wait()
    finally:
        client.stop()
        async with asyncio.timeout(TIMEOUT_S):
            await asyncio.gather(runner, return_exceptions=True)
        journal.close()
    if client.counts or client.feed.data["gaps"] or len(tops) != len(INSTRUMENTS):
        raise SystemExit(f"feed path went wrong: {dict(client.counts)}, gaps {client.feed.data['gaps']}")
    return (count - 1) / (end_s - start_s)


def read_aborts(proc: subprocess.Popen[str], wanted: int) -> list[int]:
    """The abort times (``monotonic_ns``) the server printed; ``wanted`` are expected, 5 s at most.

    Read from the pipe itself: nothing but the first line went through ``proc.stdout``'s buffer.
    """
    assert proc.stdout is not None
    fd, text = proc.stdout.fileno(), ""
    deadline = time.monotonic() + 5
    while text.count("\n") < wanted and (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text += chunk.decode()
    return [int(value) for word, _, value in (line.partition(" ") for line in text.splitlines()) if word == "abort"]


async def reconnect_samples(url: str, reconnects: int, db: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Run a feed against ``/abort`` until it has streamed ``reconnects + 1`` times.

    Returns the times (``monotonic_ns``) it entered ``streaming``, and ``(time, retry_delay_ms)``
    each time it entered ``backoff``.
    """
    journal = Journal.open(fresh(db), durability="normal")
    streaming: list[int] = []
    backoffs: list[tuple[int, int]] = []
    done = asyncio.Event()

    def on_state(state: str) -> None:
        now = time.monotonic_ns()
        if state == "backoff":
            backoffs.append((now, client.feed.data["retry_delay_ms"]))
        elif state == "streaming":
            streaming.append(now)
            if len(streaming) > reconnects:
                done.set()

    client = FeedClient(f"{url}/abort", INSTRUMENTS, journal, "bench-reconnect", RECONNECT_POLICY, on_state=on_state)
    runner = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await done.wait()
    finally:
        client.stop()
        async with asyncio.timeout(TIMEOUT_S):
            await asyncio.gather(runner, return_exceptions=True)
        journal.close()
    return streaming, backoffs


def pair(aborts: list[int], streaming: list[int], backoffs: list[tuple[int, int]]) -> list[tuple[float, int]]:
    """For each abort: (ms from it to the next ``streaming``, the backoff delay in between)."""
    samples = []
    for abort in aborts:
        back = next((b for b in backoffs if b[0] > abort), None)
        again = next((s for s in streaming if s > abort), None)
        if back is None or again is None or back[0] > again:
            continue
        samples.append(((again - abort) / 1e6, back[1]))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="frames per throughput run (default 100000)")
    parser.add_argument("--repeats", type=int, default=7, help="throughput runs per figure; the median (default 7)")
    parser.add_argument("--reconnects", type=int, default=20, help="abrupt closes to time (default 20)")
    args = parser.parse_args()
    logging.getLogger("kernel.feed").setLevel(logging.ERROR)  # the drops below are on purpose
    workdir = tempfile.mkdtemp(prefix="tradekernel-bench-")
    db = os.path.join(workdir, "feed.db")
    server, port = start([sys.executable, "-c", BLASTER, str(args.messages), str(ABORT_AFTER), str(ABORT_PAUSE_S)])
    url = f"ws://127.0.0.1:{port}"
    try:
        raws: list[float] = []
        kernels: list[float] = []
        for _ in range(args.repeats):  # interleaved: each kernel run next to its raw run
            raws.append(asyncio.run(raw_rate(url, args.messages)))
            kernels.append(asyncio.run(kernel_rate(url, args.messages, db)))
        streaming, backoffs = asyncio.run(reconnect_samples(url, args.reconnects, db))
        aborts = read_aborts(server, args.reconnects)
    finally:
        stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
    kernel, raw = statistics.median(kernels), statistics.median(raws)
    ratio = statistics.median(k / r for k, r in zip(kernels, raws, strict=True))
    emit({"bench": "feed.throughput", "messages": args.messages, "repeats": args.repeats,
          "kernel_msgs_per_s": round(kernel), "raw_msgs_per_s": round(raw), "ratio": round(ratio, 2),
          "ratios": [round(k / r, 2) for k, r in zip(kernels, raws, strict=True)],
          "target": f">= {RATIO_TARGET}", "meets": ratio >= RATIO_TARGET})  # fmt: skip
    samples = pair(aborts, streaming, backoffs)
    if not samples:
        raise SystemExit("no reconnect was timed")
    measured = [ms for ms, _ in samples]
    overheads = [ms - delay for ms, delay in samples]
    delays = sorted({delay for _, delay in samples})
    emit({"bench": "feed.reconnect", "reconnects": len(samples),
          "backoff_ms": delays[0] if len(delays) == 1 else delays,
          "p50_ms": round(statistics.median(measured), 1), "max_ms": round(max(measured), 1),
          "overhead_p50_ms": round(statistics.median(overheads), 1), "overhead_max_ms": round(max(overheads), 1),
          "target": f"<= backoff + {OVERHEAD_TARGET_MS:g} ms",
          "meets": max(overheads) <= OVERHEAD_TARGET_MS})  # fmt: skip


if __name__ == "__main__":
    main()
