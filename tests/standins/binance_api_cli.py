"""``python -m tests.standins binance-api --port 0 --api-key K --api-secret S [...]``.

Prints ``ws_api_url=… stream_url=… rest_url=…`` as its first stdout line (flushed), serves on
127.0.0.1 until SIGTERM/SIGINT or ``--max-seconds``, then prints one JSON line: requests served,
faults fired, open orders and trades. ``--api-key``/``--api-secret`` pair up in order (repeat for more
keys); ``--ed25519-key KEY=PEMFILE`` adds an Ed25519 key; ``--balance ASSET=AMOUNT`` (repeat) sets
the starting balances; ``--fault name=value`` sets an ``ApiFaults`` field (repeat); ``--state-path``
keeps the venue's state across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
from decimal import Decimal
from pathlib import Path

from tests.standins.binance_api import ApiFaults, BinanceApiStandIn


def parse_api_faults(items: list[str]) -> ApiFaults:
    """``name=value`` items as ``ApiFaults``; ``SystemExit`` for an unknown name or a bad value."""
    fields = {field.name: field for field in dataclasses.fields(ApiFaults)}
    values: dict[str, object] = {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in fields or not text:
            raise SystemExit(f"--fault {item!r}: expected one of {', '.join(fields)} as name=value")
        kind = str(fields[name].type)
        try:
            values[name] = text if "str" in kind else float(text) if "float" in kind else int(text)
        except ValueError:
            raise SystemExit(f"--fault {item!r}: not a number") from None
    return ApiFaults(**values)  # type: ignore[arg-type]


def pairs(items: list[str], option: str) -> dict[str, str]:
    """``A=B`` items as a mapping; ``SystemExit`` for an item without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"{option} {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


async def main(argv: list[str]) -> int:
    """Run the Binance WebSocket API stand-in until a signal or ``--max-seconds``."""
    parser = argparse.ArgumentParser(prog="python -m tests.standins binance-api", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", action="append", default=[])
    parser.add_argument("--api-secret", action="append", default=[])
    parser.add_argument("--ed25519-key", action="append", default=[])
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--start-price", default="30000")
    parser.add_argument("--tick", default="0.01")
    parser.add_argument("--step", default="0.00001")
    parser.add_argument("--min-notional", default="5")
    parser.add_argument("--balance", action="append", default=[])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pace-ms", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--state-path", default=None)
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args(argv)
    if len(args.api_key) != len(args.api_secret):
        raise SystemExit("--api-key and --api-secret must come in pairs")
    ed25519 = {key: Path(path).read_bytes() for key, path in pairs(args.ed25519_key, "--ed25519-key").items()}
    balances = {asset: Decimal(amount) for asset, amount in pairs(args.balance, "--balance").items()}
    venue = BinanceApiStandIn(
        args.symbol,
        api_keys=dict(zip(args.api_key, args.api_secret, strict=True)),
        ed25519_keys=ed25519,
        balances=balances or None,
        start_price=Decimal(args.start_price),
        tick=Decimal(args.tick),
        step=Decimal(args.step),
        min_notional=Decimal(args.min_notional),
        seed=args.seed,
        pace_ms=args.pace_ms,
        max_seconds=args.max_seconds,
        faults=parse_api_faults(args.fault),
        port=args.port,
        state_path=args.state_path,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with venue:
        print(f"ws_api_url={venue.ws_api_url} stream_url={venue.stream_url} rest_url={venue.rest_url}", flush=True)
        await venue.serve_until(stop)
    summary = {
        "requests": len(venue.requests),
        "fired": sorted(venue.fired),
        "open_orders": sorted(o.order_id for o in venue.exchange.orders.values() if o.open),
        "trades": len(venue.exchange.trades),
    }
    print(json.dumps(summary), flush=True)
    return 0
