"""A seeded fuzz of the paper venue's client input (issue 15) over real loopback WebSockets.

Valid client frames are mutated (truncations, type swaps, huge and tiny numbers, non-ASCII digits,
deep nesting, unknown types, missing fields, binary and non-UTF-8 frames, oversized frames) and sent
to a running ``PaperVenue`` replaying its random walk. Each frame is followed by a ``ping``: the
frames before its ``pong`` must hold an answer (or, for a frame over the venue's ``max_size``, the
connection is closed cleanly with 1009 and the fuzzer reconnects). Throughout, a well-behaved client
receives quotes and trades; at the end it places and cancels an order. No record with a traceback
and nothing at ERROR may be logged.

CI runs 3,000 frames (``test_the_venue_survives_a_bounded_fuzz``). The long run:
``.venv/bin/python -m tests.kernel.test_venue_fuzz --frames 100000 [--seed N]`` prints its figures
as one JSON line (frames, answers by type and error code, reconnects, elapsed) and exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kernel import paper_protocol as p
from kernel.venue import server
from kernel.venue.server import PaperVenue, VenueConfig
from tests.poll import eventually

X = "BTCUSDT"
BATCH = 50
"""Frames sent before their pings' answers are read (pipelining keeps the fuzz fast)."""
HUGE_EVERY = 1_000
"""About one frame in this many is over the venue's ``max_size`` (the connection closes, 1009)."""

DIGITS = ["\u0661", "\uff11", "\u0967", "\u09e7", "\U0001d7cf", "\u00b9", "\u2460"]
"""One in other scripts: Arabic-Indic, fullwidth, Devanagari, Bengali, mathematical, superscript, circled."""
NUMBERS: list[object] = [
    "1e1000000",
    "1e-1000000",
    "-1e1000000",
    "1E+30",
    "1e-30",
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "0",
    "-0",
    "-0.0",
    "-1",
    " 1_0 ",
    "1_000",
    "0x10",
    ".5",
    "5.",
    "+1",
    "1.2.3",
    "9" * 41,
    "0." + "0" * 40 + "1",
    "1" + "0" * 31,
    10**400,
    -(10**40),
    0,
    1,
    True,
    None,
    [],
    {},
    "",
    "\u00a0",
]


def valid_frames(rng: random.Random, n: int) -> dict[str, object]:
    """A random valid client message as a dict (before mutation)."""
    coid = f"f-{n}" if rng.random() < 0.8 else f"f-{rng.randrange(max(n, 1))}"
    price = f"{rng.randrange(39_000, 41_000)}.{rng.randrange(100):02d}"
    qty = f"0.{rng.randrange(1, 999):03d}"
    kinds: list[dict[str, object]] = [
        {"type": "hello", "version": 1, "client": "fuzz"},
        {"type": "subscribe", "instruments": [X], "channels": ["trades", "quotes"], "id": f"s{n}"},
        {
            "type": "new_order",
            "client_order_id": coid,
            "instrument": X,
            "side": rng.choice(["buy", "sell"]),
            "qty": qty,
            "price": price,
            "order_type": "limit",
            "tif": rng.choice(["gtc", "ioc", "fok", "day"]),
        },
        {
            "type": "new_order",
            "client_order_id": coid,
            "instrument": X,
            "side": "buy",
            "qty": qty,
            "order_type": "market",
        },
        {"type": "cancel_order", "client_order_id": coid},
        {"type": "replace_order", "client_order_id": coid, "qty": qty, "price": price},
        {"type": "order_status", "client_order_id": coid, "id": f"q{n}"},
        {"type": "open_orders", "id": f"o{n}", "after": "", "limit": rng.choice([1, 10, 5000, None])},
        {"type": "fills_since", "after": rng.randrange(0, 100), "id": f"f{n}", "limit": 10},
        {"type": "ping", "id": f"p{n}"},
    ]
    return rng.choice(kinds)


def nested(depth: int, inner: object = 1) -> str:
    return "[" * depth + json.dumps(inner) + "]" * depth


def mutate(rng: random.Random, message: dict[str, object]) -> tuple[str, str | bytes]:
    """One mutation of ``message``: (its name, the frame)."""
    key = rng.choice(list(message))
    text = json.dumps(message)
    choice = rng.randrange(13)
    if choice == 0:
        return "truncate", text[: rng.randrange(len(text))]
    if choice == 1:
        swapped = dict(message)
        swapped[key] = rng.choice([1, -1, 1.5, "x", None, True, [], {}, [1, 2], {"a": 1}, 2**64])
        return "type_swap", json.dumps(swapped)
    if choice == 2:
        number = dict(message)
        number[rng.choice(["qty", "price", key])] = rng.choice(NUMBERS)
        return "number", json.dumps(number)
    if choice == 3:  # a JSON number written out, exponent and all
        raw = rng.choice(["1e1000000", "1e-1000000", "1E400", "-0.0", "0.1", "1" * 500, "1.5e2", "12"])
        return "raw_number", text[:-1] + f', "qty": {raw}, "price": {raw}}}'
    if choice == 4:
        digits = dict(message)
        digit = rng.choice(DIGITS)
        digits[rng.choice(["qty", "price", key])] = rng.choice([digit, f"0.{digit}", f"{digit}00.5", f"1{digit}"])
        return "non_ascii_digits", json.dumps(digits, ensure_ascii=rng.random() < 0.5)
    if choice == 5:
        depth = rng.choice([3, 8, 9, 17, 65, 1_000, 20_000])
        return "deep_nesting", text[:-1] + f', "{key}x": {nested(depth)}}}'
    if choice == 6:
        unknown = dict(message)
        unknown["type"] = rng.choice(["launch_rocket", "", "NEW_ORDER", "new_order ", 7, None, "hello\u0000"])
        return "unknown_type", json.dumps(unknown)
    if choice == 7:
        missing = {k: v for k, v in message.items() if k != key or k == "type"}
        missing.pop(rng.choice(list(missing)), None)
        return "missing_field", json.dumps(missing)
    if choice == 8:
        if rng.random() < 0.5:
            return "binary", text.encode()
        return "binary_garbage", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if choice == 9:
        return "not_an_object", rng.choice(["[1, 2]", "null", "42", '"x"', "", " ", "{}", "[]", "{" * 3, "\ufeff{}"])
    if choice == 10:
        big = dict(message)
        big[key] = "x" * rng.choice([1_000, 70_000, 600_000])
        return "large", json.dumps(big)
    if choice == 11:  # duplicate keys, the later one nonsense
        return "duplicate_key", text[:-1] + f', "{key}": {json.dumps(rng.choice(NUMBERS))}}}'
    odd = dict(message)
    odd[key] = rng.choice(["\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), "\u202e", "a" * 40, "é"])
    return "odd_string", json.dumps(odd)


@dataclass
class Figures:
    """What a fuzz run saw."""

    frames: int = 0
    mutations: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    market_data: int = 0
    elapsed_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(
            {
                "frames": self.frames,
                "mutations": dict(sorted(self.mutations.items())),
                "answers": dict(sorted(self.answers.items())),
                "reconnects": self.reconnects,
                "market_data_to_watcher": self.market_data,
                "elapsed_s": round(self.elapsed_s, 2),
                "failures": self.failures[:20],
            }
        )


class Bad(logging.Handler):
    """Collects every record with a traceback or at ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or record.levelno >= logging.ERROR:
            self.records.append(record)


def answer_name(message: p.VenueMessage) -> str:
    return f"error:{message.code}" if isinstance(message, p.Error) else str(type(message).__struct_config__.tag)


async def _connect(url: str) -> ClientConnection:
    return await connect(url, open_timeout=5, close_timeout=1, max_size=2**25)


async def _batch(ws: ClientConnection, frames: list[str | bytes], start: int, figures: Figures) -> None:
    """Send each frame and a ``ping`` after it; check each ping's segment holds an answer."""
    for i, frame in enumerate(frames):
        await ws.send(frame)
        await ws.send(p.encode(p.Ping(id=f"sync-{start + i}")).decode())
    for i in range(len(frames)):
        answered = False
        while True:
            message = p.decode_venue(await ws.recv())
            if isinstance(message, p.Pong) and message.id == f"sync-{start + i}":
                break
            if isinstance(message, p.Heartbeat | p.Trade | p.Quote):
                continue
            answered = True
            figures.answers[answer_name(message)] += 1
        if not answered:
            figures.failures.append(f"frame {start + i} got no answer: {frames[i]!r:.200}")


async def _watch(ws: ClientConnection, figures: Figures, seen: Callable[[p.VenueMessage], None]) -> None:
    async for frame in ws:
        message = p.decode_venue(frame)
        if isinstance(message, p.Trade | p.Quote):
            figures.market_data += 1
        seen(message)


async def fuzz(
    frames: int, seed: int = 15, *, deadline_s: float | None = None, progress: Callable[[str], None] | None = None
) -> Figures:
    """Fuzz a fresh venue with ``frames`` mutated frames; the figures, with any failure listed
    (``progress``: told how far it got every 10,000 frames)."""
    figures = Figures()
    rng = random.Random(seed)
    bad = Bad()
    logging.getLogger().addHandler(bad)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        config = VenueConfig(instruments=(X,), speed=20.0, seed=seed, heartbeat_s=5.0)
        venue = PaperVenue(str(Path(tmp) / "venue.db"), config)
        await venue.start()
        try:
            watcher = await _connect(venue.url)
            await watcher.send(p.encode(p.Subscribe(instruments=[X], id="w")))
            inbox: asyncio.Queue[p.VenueMessage] = asyncio.Queue()
            watching = asyncio.create_task(_watch(watcher, figures, inbox.put_nowait))
            ws = await _connect(venue.url)
            sent = 0
            checkpoint = 0
            while sent < frames:
                batch: list[str | bytes] = []
                while len(batch) < BATCH and sent + len(batch) < frames:
                    name, frame = mutate(rng, valid_frames(rng, sent + len(batch)))
                    figures.mutations[name] += 1
                    batch.append(frame)
                    if rng.randrange(HUGE_EVERY) == 0:
                        break  # the next frame is too big: the batch goes first
                await _batch(ws, batch, sent, figures)
                sent += len(batch)
                if sent < frames and rng.randrange(HUGE_EVERY // BATCH) == 0:
                    figures.mutations["over_max_size"] += 1
                    await ws.send("x" * (server.MAX_FRAME_BYTES + 1))
                    await _closed_for_size(ws, figures)
                    figures.reconnects += 1
                    sent += 1
                    ws = await _connect(venue.url)
                if progress is not None and sent // 10_000 != (sent - len(batch)) // 10_000:
                    progress(f"{sent} frames, {time.monotonic() - started:.1f} s, {len(figures.failures)} failures")
                if sent - checkpoint >= 2_000:  # the replay keeps producing market data for the watcher
                    before = figures.market_data
                    await _await_market_data(figures, before)
                    checkpoint = sent
                if deadline_s is not None and time.monotonic() - started > deadline_s:
                    figures.failures.append(f"over the deadline of {deadline_s} s after {sent} frames")
                    break
            figures.frames = sent
            await _await_market_data(figures, figures.market_data)
            await _well_behaved_order(watcher, inbox, figures)
            if venue._replay_task is None or venue._replay_task.done():
                figures.failures.append("the replay ended")
            await ws.close()
            watching.cancel()
            await watcher.close()
        finally:
            await venue.stop()
            logging.getLogger().removeHandler(bad)
    figures.elapsed_s = time.monotonic() - started
    figures.failures += [f"logged: {r.levelname} {r.getMessage()[:200]}" for r in bad.records]
    return figures


async def _closed_for_size(ws: ClientConnection, figures: Figures) -> None:
    """The venue closes a connection that sent a frame over its ``max_size`` with 1009."""
    try:
        async with asyncio.timeout(5):
            async for _ in ws:  # market data it subscribed to may still come first
                pass
        figures.failures.append("a frame over max_size closed the connection without a close code")
    except TimeoutError:
        figures.failures.append("a frame over max_size did not close the connection")
    except ConnectionClosed as closed:
        if closed.rcvd is None or closed.rcvd.code != 1009:
            figures.failures.append(f"a frame over max_size closed with {closed.rcvd}")


async def _await_market_data(figures: Figures, before: int) -> None:
    try:
        await eventually(lambda: figures.market_data > before + 2, "market data to the watcher")
    except pytest.fail.Exception as exc:
        figures.failures.append(f"{exc} (it had {before} messages)")


async def _well_behaved_order(
    watcher: ClientConnection, inbox: asyncio.Queue[p.VenueMessage], figures: Figures
) -> None:
    async def execution(coid: str) -> p.Execution:
        while True:
            message = await asyncio.wait_for(inbox.get(), 5.0)
            if isinstance(message, p.Execution) and message.client_order_id == coid:
                return message

    order = p.NewOrder(client_order_id="well-1", instrument=X, side="buy", qty=D("0.001"), price=D("1000.00"))
    await watcher.send(p.encode(order).decode())
    new = await execution("well-1")
    await watcher.send(p.encode(p.CancelOrder(client_order_id="well-1")).decode())
    canceled = await execution("well-1")
    if (new.exec, canceled.exec) != ("new", "canceled"):
        figures.failures.append(f"the well-behaved client's order went {new.exec}, {canceled.exec}")


@pytest.mark.asyncio
async def test_the_venue_survives_a_bounded_fuzz() -> None:
    async with asyncio.timeout(60):
        figures = await fuzz(3_000, seed=15, deadline_s=40.0)
    assert figures.failures == [], figures.as_json()
    assert figures.frames == 3_000
    assert figures.market_data > 0
    assert figures.answers["error:invalid"] > 100
    assert figures.answers["error:malformed"] > 100
    assert sum(figures.mutations.values()) >= 3_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    figures = asyncio.run(fuzz(args.frames, args.seed, progress=lambda line: print(line, file=sys.stderr)))
    print(figures.as_json())
    return 1 if figures.failures else 0


if __name__ == "__main__":
    sys.exit(main())
