"""``tradekernel venue``: run the paper venue in the foreground, or list what it holds.

    tradekernel venue --port 8765 --db venue.db [--data FILE.csv ...] [--speed 0] [--balance USDT=100000] ...
    tradekernel venue orders --db venue.db [--account NAME] [--json]
    tradekernel venue account add|list|revoke ... --db venue.db     (``kernel.cli.venue_accounts``)

The venue prints ``venue listening on ws://HOST:PORT`` once bound and runs until SIGINT or SIGTERM
(clean stop, exit 0). It binds to loopback only unless ``--allow-remote``. Clients must authenticate
(``hello`` signed with an account's key and secret, see docs/venue-protocol.md) unless ``--open``;
browser pages (a WebSocket ``Origin`` header) are refused unless ``--allow-origin`` names them. Exit status: 0 ok, 2 bad
arguments, an unusable venue database or data file, or an address that cannot be bound.

The simulator (``kernel.venue``) and its store are imported only by the command that uses them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kernel.cli import venue_accounts, venue_check
from kernel.cli.common import usage_error
from kernel.cli.table import format_table
from kernel.exits import EXIT_OK
from kernel.net import is_loopback
from machines.decimals import DecimalError, Sign, parse_decimal

if TYPE_CHECKING:
    from kernel.venue.server import VenueConfig
    from storage.venue_store import StoredOrder

DEFAULT_PORT = 8765


def _non_negative_decimal(text: str) -> Decimal:
    try:
        return parse_decimal(text, "the value", sign=Sign.non_negative)
    except DecimalError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _balance(text: str) -> tuple[str, Decimal]:
    asset, sep, amount = text.partition("=")
    if not sep or not asset.strip():
        raise argparse.ArgumentTypeError(f"expected ASSET=AMOUNT (e.g. USDT=100000), got {text!r}")
    return asset.strip(), _non_negative_decimal(amount)


def _arguments(parser: argparse.ArgumentParser) -> None:
    """Add the venue's arguments (and its ``orders`` sub-command) to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--db", metavar="VENUE.db", help="the venue's own SQLite file (created if missing)")
    parser.add_argument(
        "--data", metavar="CSV", nargs="+", action="extend", default=[], help="market data files to replay"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed: 1 real time, 0 as fast as possible")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random walk and random rejects/cancels")
    parser.add_argument(
        "--fee-bps", type=_non_negative_decimal, default=Decimal(0), metavar="F", help="fee, bps of notional"
    )
    parser.add_argument(
        "--slippage-bps", type=_non_negative_decimal, default=Decimal(0), metavar="S", help="market order slippage"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="L", help="delay before answering orders")
    parser.add_argument("--reject-rate", type=float, default=0.0, metavar="R", help="probability of a random reject")
    parser.add_argument(
        "--unsolicited-cancel-rate", type=float, default=0.0, metavar="R", help="per market event and resting order"
    )
    parser.add_argument(
        "--balance",
        type=_balance,
        action="append",
        default=[],
        metavar="ASSET=AMOUNT",
        help="every account's starting balance of ASSET (repeat per asset; an asset not named starts at 1e9)",
    )
    parser.add_argument("--loop", action="store_true", help="replay the data again when it ends")
    limits = parser.add_argument_group("limits (0 turns one off; docs/venue-protocol.md, Limits)")
    limits.add_argument("--max-connections", type=int, default=256, metavar="N", help="connections open at once")
    limits.add_argument(
        "--max-connections-per-account", type=int, default=16, metavar="N", help="connections per account"
    )
    limits.add_argument("--max-open-orders", type=int, default=10_000, metavar="N", help="open orders per account")
    limits.add_argument("--order-rate", type=int, default=100, metavar="N", help="order requests/s per account")
    limits.add_argument("--order-burst", type=int, default=200, metavar="N", help="order requests at once")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    parser.add_argument(
        "--open",
        action="store_true",
        help="no authentication: every client acts for the 'local' account (tests and local tools only)",
    )
    parser.add_argument(
        "--allow-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="accept WebSocket connections from this browser Origin (default: refuse any Origin)",
    )
    sub = parser.add_subparsers(dest="venue_command", metavar="orders|account|check")
    orders = sub.add_parser(
        "orders",
        help="list the orders a venue database holds",
        description="List the orders (with fills and duplicate submits) of a venue database; safe while it runs.",
    )
    orders.add_argument("--db", dest="orders_db", metavar="VENUE.db", required=True, help="the venue's SQLite file")
    orders.add_argument("--account", metavar="NAME", help="only this account's orders (default: every account's)")
    orders.add_argument("--json", action="store_true", help="print a JSON list (decimals as strings)")
    venue_accounts.add_parser(sub)
    venue_check.add_parser(sub)
    parser.set_defaults(run=run)


def add_parser(commands: Any) -> None:
    """Register ``venue`` on the top-level subparsers."""
    venue = commands.add_parser(
        "venue",
        help="run the paper venue (a simulated exchange on a loopback WebSocket)",
        description="Run the paper venue in the foreground until SIGINT/SIGTERM (clients authenticate with an "
        "account's API key unless --open), list its orders, or manage its accounts. "
        "Exit status: 0 ok, 2 bad arguments or an unusable database or data file.",
    )
    _arguments(venue)


def _usage(message: str) -> int:
    return usage_error(message, "venue")


def run(args: argparse.Namespace) -> int:
    """Serve (or, for ``orders``, list); the exit status."""
    if args.venue_command == "orders":
        return _orders(args.orders_db, as_json=args.json, account=args.account)
    if args.venue_command == "account":
        return venue_accounts.run_account(args)
    if args.venue_command == "check":
        return venue_check.run(args)
    if not args.db:
        return _usage("--db VENUE.db is required")
    if not is_loopback(args.host) and not args.allow_remote:
        return _usage(f"refusing to bind {args.host}: the paper venue listens on loopback only (use --allow-remote)")
    if not 0 <= args.port <= 65535:
        return _usage(f"--port must be between 0 and 65535, got {args.port}")
    from kernel.venue.server import VenueConfig  # the simulator, only when serving

    try:
        config = VenueConfig(
            data_paths=tuple(args.data),
            speed=args.speed,
            seed=args.seed,
            fee_bps=args.fee_bps,
            slippage_bps=args.slippage_bps,
            latency_ms=args.latency_ms,
            reject_rate=args.reject_rate,
            unsolicited_cancel_rate=args.unsolicited_cancel_rate,
            loop=args.loop,
            balances=dict(args.balance),
            authenticate=not args.open,
            allowed_origins=tuple(args.allow_origin),
            max_connections=args.max_connections,
            max_connections_per_account=args.max_connections_per_account,
            max_open_orders=args.max_open_orders,
            order_rate=args.order_rate,
            order_burst=args.order_burst,
        )
    except ValueError as exc:
        return _usage(str(exc))
    return asyncio.run(_serve(args.db, config, args.host, args.port))


async def _serve(db: str, config: VenueConfig, host: str, port: int) -> int:
    from kernel.venue.marketdata import MarketDataError
    from kernel.venue.server import PaperVenue
    from storage.venue_store import VenueStoreError

    venue = PaperVenue(db, config)
    try:
        await venue.start(host, port)
    except (VenueStoreError, MarketDataError) as exc:
        return _usage(str(exc))
    except OSError as exc:
        return _usage(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        print(f"venue listening on {venue.url}", flush=True)
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await venue.stop()
    print("venue stopped", flush=True)
    return EXIT_OK


def order_json(order: StoredOrder) -> dict[str, object]:
    """An order as a JSON-ready object (decimals as strings)."""
    return {
        "account": order.account,
        "client_order_id": order.client_order_id,
        "venue_order_id": order.venue_order_id,
        "instrument": order.instrument,
        "side": order.side,
        "order_type": order.order_type,
        "tif": order.tif,
        "qty": str(order.qty),
        "price": None if order.price is None else str(order.price),
        "status": order.status,
        "cum_qty": str(order.cum_qty),
        "leaves_qty": str(order.leaves_qty),
        "reason": order.reason,
        "duplicate_submits": order.duplicate_submits,
        "created_ts_ms": order.created_ts_ms,
        "fills": [
            {
                "fill_seq": f.fill_seq,
                "trade_id": f.trade_id,
                "qty": str(f.qty),
                "price": str(f.price),
                "fee": str(f.fee),
                "liquidity": f.liquidity,
                "ts_ms": f.ts_ms,
            }
            for f in order.fills
        ],
    }


def _orders(db: str, *, as_json: bool, account: str | None = None) -> int:
    from storage.venue_store import VenueStoreError, read_orders  # the venue's store, read-only

    try:
        orders = [o for o in read_orders(db) if account is None or o.account == account]
    except VenueStoreError as exc:
        return _usage(str(exc))
    if as_json:
        print(json.dumps([order_json(o) for o in orders], indent=2))
        return EXIT_OK
    headers = "account client_order_id venue_id instrument side type tif qty price status cum_qty leaves fills dups"
    headers += " reason"
    rows = [
        (
            o.account,
            o.client_order_id,
            o.venue_order_id,
            o.instrument,
            o.side,
            o.order_type,
            o.tif,
            o.qty,
            o.price,
            o.status,
            o.cum_qty,
            o.leaves_qty,
            len(o.fills),
            o.duplicate_submits,
            o.reason,
        )
        for o in orders
    ]
    print(format_table(headers.split(), rows))
    print(f"{len(orders)} order(s)")
    return EXIT_OK
