"""``python -m tests.standins VENUE --session FILE|NAME [--port 0] [--pace X] [--fault ...]``.

``python -m tests.standins binance-api --port 0 --api-key K --api-secret S [...]`` runs the Binance
WebSocket API stand-in instead (``binance_api_cli``: it prints ``ws_api_url=… stream_url=… rest_url=…``).

Prints ``ws_url=... rest_url=...`` as its first stdout line (flushed), then serves on 127.0.0.1
until SIGTERM/SIGINT or ``--max-seconds``. Faults: ``drop_frame=N``, ``corrupt_checksum=N``,
``close_after=N``, ``shutdown_after=N``, ``stall_after=N``, ``stall_seconds=S``, ``rest_delay=S``,
``rest_429=N`` (repeat ``--fault``). On exit it prints one JSON line of what it served.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys

from tests.standins import STANDINS, Faults, session


def parse_faults(items: list[str]) -> Faults:
    """``name=value`` items as ``Faults``; ``SystemExit(2)`` for an unknown name or a bad value."""
    fields = {field.name: field for field in dataclasses.fields(Faults)}
    values: dict[str, object] = {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in fields or not text:
            raise SystemExit(f"--fault {item!r}: expected one of {', '.join(fields)} as name=value")
        kind = float if "float" in str(fields[name].type) else int
        try:
            values[name] = None if text == "none" else kind(text)
        except ValueError:
            raise SystemExit(f"--fault {item!r}: not a number") from None
    return Faults(**values)  # type: ignore[arg-type]


async def main(argv: list[str] | None = None) -> int:
    """Run one stand-in until a signal or ``--max-seconds`` (``binance-api``: ``binance_api_cli``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["binance-api"]:
        from tests.standins import binance_api_cli

        return await binance_api_cli.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tests.standins", description=__doc__.split("\n")[0])
    parser.add_argument("venue", choices=sorted(STANDINS))
    parser.add_argument(
        "--session", required=True, help="a recording file, or a session name (tests.standins.sessions.SESSIONS)"
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--pace", type=float, default=None, help="speed-up of the recorded gaps (default: as fast as possible)"
    )
    parser.add_argument("--max-gap", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--max-connections", type=int, default=50)
    parser.add_argument("--fault", action="append", default=[])
    args = parser.parse_args(argv)
    standin = STANDINS[args.venue](
        session(args.session),
        faults=parse_faults(args.fault),
        pace=args.pace,
        max_gap=args.max_gap,
        port=args.port,
        max_connections=args.max_connections,
        max_seconds=args.max_seconds,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with standin:
        print(f"ws_url={standin.ws_url} rest_url={standin.rest_url}", flush=True)
        await standin.serve_until(stop)
    summary = {
        "connections": standin.connections,
        "frames_sent": standin.frames_sent,
        "high_water": standin.high_water,
        "fired": sorted(standin.fired),
        "closes": standin.closes,
        "rest": [[path, status] for _, path, status in standin.rest_log],
        "log": standin.log,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
