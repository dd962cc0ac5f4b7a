"""Decode + book throughput per live venue, next to ``json.loads`` of the same frames in the same run.
Prints JSON lines.

For each venue, one round is a real capture from tests/data/exchange_samples: the snapshot and
the updates of one book (Binance NKNUSDT: the REST snapshot and 40 ``depthUpdate``; Coinbase
BAND-GBP: the level2 snapshot and 30 ``l2update``; Kraken BTC/USD: the snapshot and 30 updates,
every checksum verified). Each frame is decoded by the venue's decoder and handed to its sync
procedure (the ``StreamSync`` that keeps the book, as ``FeedClient`` does: ``on_event`` then
``passed_on``, which builds a quote when the top changes), on a fresh sync per round.

* ``feed.venue_book``: messages per second (median of ``--repeats``), next to a loop of
  ``json.loads`` over the very same frames (``raw_msgs_per_s``) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import emit, median_of

from kernel.feed.binance import decode_binance
from kernel.feed.binance_source import BinanceSync
from kernel.feed.coinbase import decode_coinbase
from kernel.feed.coinbase_source import CoinbaseSync
from kernel.feed.events import FeedEvent
from kernel.feed.kraken import decode_kraken
from kernel.feed.kraken_source import KrakenSync
from kernel.feed.source import MarketEvent

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "exchange_samples"


def _frames(path: str) -> list[str]:
    """Each message of a sample list as one frame (Kraken's JSON numbers keep their text)."""
    text = (SAMPLES / path).read_text()
    decoder = json.JSONDecoder()
    body = text[text.index("[") + 1 :]
    frames: list[str] = []
    position = 0
    while True:
        while position < len(body) and body[position] in " \n\r\t,":
            position += 1
        if position >= len(body) or body[position] == "]":
            return frames
        _, end = decoder.raw_decode(body, position)
        frames.append(body[position:end])
        position = end


def _round(sync_of: Callable[[], Any], decode: Callable[[str], list[FeedEvent]], frames: list[str]) -> None:
    sync = sync_of()
    for frame in frames:
        for event in decode(frame):
            sync.on_event(event)
            if isinstance(event, MarketEvent):
                sync.passed_on(event)


def _binance() -> tuple[Callable[[], Any], Callable[[str], list[FeedEvent]], list[str]]:
    snapshot = (SAMPLES / "binance" / "depth_snapshot_rest.json").read_text()

    def decode(frame: str) -> list[FeedEvent]:
        return decode_binance(frame, symbol="NKNUSDT") if frame is snapshot else decode_binance(frame)

    def sync_of() -> BinanceSync:
        sync = BinanceSync()
        sync.on_subscribed(["NKNUSDT"])
        return sync

    return sync_of, decode, [snapshot, *_frames("binance/depthUpdate_sequence.json")]


def _coinbase() -> tuple[Callable[[], Any], Callable[[str], list[FeedEvent]], list[str]]:
    snapshot = (SAMPLES / "coinbase" / "level2_snapshot.json").read_text()

    def sync_of() -> CoinbaseSync:
        sync = CoinbaseSync(books=True)
        sync.on_subscribed(["BAND-GBP"])
        return sync

    return sync_of, decode_coinbase, [snapshot, *_frames("coinbase/l2update_sequence.json")]


def _kraken() -> tuple[Callable[[], Any], Callable[[str], list[FeedEvent]], list[str]]:
    def sync_of() -> KrakenSync:
        sync = KrakenSync(books=True, precisions={"BTC/USD": (1, 8)}, resubscribe=lambda symbol: [])
        sync.on_subscribed(["BTC/USD"])
        return sync

    return sync_of, decode_kraken, _frames("kraken/book_v2_snapshot_and_updates.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for venue, build in (("binance", _binance), ("coinbase", _coinbase), ("kraken", _kraken)):
        sync_of, decode, frames = build()
        messages = len(frames) * args.rounds

        def kernel() -> float:
            start = time.perf_counter()
            for _ in range(args.rounds):
                _round(sync_of, decode, frames)  # noqa: B023 - called within this iteration
            return time.perf_counter() - start

        def raw() -> float:
            start = time.perf_counter()
            for _ in range(args.rounds):
                for frame in frames:  # noqa: B023 - called within this iteration
                    json.loads(frame)
            return time.perf_counter() - start

        kernel_rate = messages / median_of(args.repeats, kernel)
        raw_rate = messages / median_of(args.repeats, raw)
        emit(
            {
                "bench": "feed.venue_book",
                "venue": venue,
                "messages": messages,
                "kernel_msgs_per_s": round(kernel_rate),
                "raw_msgs_per_s": round(raw_rate),
                "ratio": round(kernel_rate / raw_rate, 3),
            }
        )


if __name__ == "__main__":
    main()
