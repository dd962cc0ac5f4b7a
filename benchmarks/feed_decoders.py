"""Each venue decoder on a loopback socket, next to raw ``recv()`` + ``json.loads`` of the same frames.

``feed.py`` times the whole feed path for the paper venue. This one times, for every decoder in
``kernel.feed.decoders.DECODERS`` (paper, Binance, Coinbase, Kraken), ``recv()`` + the decoder
against ``recv()`` + ``json.loads``: the decode share of the per-message cost, venue by venue.
Frames are real ones (``tests/data/exchange_samples``: Binance ``aggTrade`` + ``bookTicker``,
Coinbase ``match`` + ``ticker``, Kraken ``trade`` + ``ticker`` v2; paper ``trade`` + ``quote`` built
with ``paper_protocol.encode``), trades and quotes alternating. A server (its own process) writes
``--messages`` of them, framed once at start-up, straight to each connection's transport, with no
compression. The raw and decoder clients alternate, ``--repeats`` times each; the figure is the
median of the per-pair ratios. Target (issue 17): >= 0.7 for each venue. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import msgspec
from common import emit
from roundtrip import start, stop
from websockets.asyncio.client import connect

from kernel.feed.decoders import DECODERS
from kernel.paper_protocol import Quote, Trade, encode

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "exchange_samples"
RATIO_TARGET = 0.7
VENUE_SAMPLES = {
    "binance": ("binance/aggTrade.json", "binance/bookTicker.json"),
    "coinbase": ("coinbase/matches.json", "coinbase/ticker.json"),
    "kraken": ("kraken/trade_v2_docs.json", "kraken/ticker_v2.json"),
}

SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
from websockets.frames import Frame, Opcode

with open(sys.argv[1], "rb") as f:
    frames = [line.rstrip(b"\\n") for line in f]
count = int(sys.argv[2])
BLAST = b"".join(Frame(Opcode.TEXT, frames[i % len(frames)]).serialize(mask=False) for i in range(count))

async def handler(ws):
    ws.transport.write(BLAST)
    async for _ in ws:
        pass

async def main():
    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=None) as server:
        print("listening", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
"""


def items(name: str) -> list[bytes]:
    """The frames of a sample file: its elements (a list file) or the file itself, each on one line."""
    raw = (SAMPLES / name).read_bytes()
    if raw.lstrip().startswith(b"["):
        return [
            msgspec.json.encode(msgspec.json.decode(item)) for item in msgspec.json.decode(raw, type=list[msgspec.Raw])
        ]
    return [msgspec.json.encode(msgspec.json.decode(raw))]


def paper_frames() -> list[bytes]:
    out = []
    for n in range(1, 101):
        px = Decimal("64123.45") + n * Decimal("0.01")
        out.append(encode(Trade(instrument="BTCUSDT", seq=n, trade_id=f"T{n}", price=px, qty=Decimal("0.0153"),
                                taker_side="buy", ts_ms=1_700_000_000_000 + n)))  # fmt: skip
        out.append(encode(Quote(instrument="BTCUSDT", seq=n, bid=px, bid_qty=Decimal("1.25"), ask=px + Decimal("0.01"),
                                ask_qty=Decimal("0.842"), ts_ms=1_700_000_000_000 + n)))  # fmt: skip
    return out


def venue_frames(venue: str) -> list[bytes]:
    """Trades and quotes alternating (as many pairs as the shorter sample holds)."""
    if venue == "paper":
        return paper_frames()
    trades, quotes = (items(name) for name in VENUE_SAMPLES[venue])
    return [frame for pair in zip(trades, quotes, strict=False) for frame in pair]


async def rate(port: str, count: int, decode: object) -> float:
    """Messages per second: ``recv()`` + ``decode(frame)``, first frame to the ``count``-th."""
    assert callable(decode)
    async with asyncio.timeout(60), connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
        decode(await ws.recv())
        start_s = time.perf_counter()
        for _ in range(count - 1):
            decode(await ws.recv())
        elapsed = time.perf_counter() - start_s
    return (count - 1) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000, help="frames per run (default 50000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure; the median (default 5)")
    args = parser.parse_args()
    for venue, decoder in DECODERS.items():
        frames = venue_frames(venue)
        for frame in frames:  # every frame decodes to market data, or the figure means nothing
            assert decoder(frame), (venue, frame[:80])
        with tempfile.NamedTemporaryFile("wb", suffix=".frames", delete=False) as f:
            f.write(b"\n".join(frames) + b"\n")
        server, port = start([sys.executable, "-c", SERVER, f.name, str(args.messages)])
        try:
            raws, ours = [], []
            for _ in range(args.repeats):
                raws.append(asyncio.run(rate(port, args.messages, json.loads)))
                ours.append(asyncio.run(rate(port, args.messages, decoder)))
        finally:
            stop(server)
            Path(f.name).unlink()
        ratio = statistics.median(o / r for o, r in zip(ours, raws, strict=True))
        emit({"bench": f"feed.decoder.{venue}", "messages": args.messages, "repeats": args.repeats,
              "decoder_msgs_per_s": round(statistics.median(ours)), "raw_msgs_per_s": round(statistics.median(raws)),
              "ratio": round(ratio, 2), "target": f">= {RATIO_TARGET}", "meets": ratio >= RATIO_TARGET,
              "what": "recv() + the venue decoder vs recv() + json.loads, same frames"})  # fmt: skip


if __name__ == "__main__":
    main()
