"""``tradekernel venue check``: can this configuration trade on Binance? Read-only, nothing is placed.

    tradekernel venue check [--config kernel.toml] [--timeout S]

Connects to the configured WebSocket API (``[venue] kind = "binance"``; the testnet unless
``testnet = false``) and checks, one line each: the connection and the server clock's offset (a
warning past half of ``recv_window_ms``), that the API key and its signature are accepted
(``account.status``), that the account may trade (``canTrade``), that the key cannot withdraw (a
warning when the account reports ``canWithdraw``), and the instrument's status and rules (tick,
step, minimum notional).

Exit status: 0 every check passed (warnings allowed); 1 a check failed, or Binance could not be
reached (one line, no traceback); 2 a configuration that is not a Binance one, or unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from kernel.cli.common import usage_error
from kernel.config import ConfigError, load
from kernel.config.live import banner
from kernel.config.schema import Config
from kernel.exits import EXIT_FAILED, EXIT_OK

FILTER_FIELDS = (("PRICE_FILTER", "tickSize", "tick"), ("LOT_SIZE", "stepSize", "step"))


def add_parser(sub: Any) -> None:
    """Register ``check`` on ``tradekernel venue``'s subparsers."""
    check = sub.add_parser(
        "check",
        help="check a Binance configuration: keys, trading permission, clock, instrument rules",
        description="Connect to the Binance WebSocket API of the configuration and check the API key, the "
        "account's trading permission (and warn when the key may withdraw), the server clock offset and the "
        "instrument's rules. Read-only: nothing is placed. Exit status: 0 ok, 1 a check failed or Binance "
        "could not be reached, 2 not a Binance configuration.",
    )
    check.add_argument("--config", dest="check_config", metavar="PATH", help="the kernel's TOML configuration")
    check.add_argument(
        "--timeout", dest="check_timeout", type=float, default=10.0, metavar="S", help="seconds to wait for Binance"
    )


def run(args: argparse.Namespace) -> int:
    """``venue check``; the exit status."""
    try:
        config = load(args.check_config)
    except ConfigError as exc:
        return usage_error(str(exc), "venue check")
    if config.venue.kind != "binance":
        return usage_error('venue check needs [venue] kind = "binance"', "venue check")
    print(banner(config))
    # The checks say what failed, one line each: the client's retry warnings would only repeat it.
    logging.getLogger("kernel.binance").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(check(config, args.check_timeout, _line))
    except KeyboardInterrupt:
        return EXIT_FAILED


def _line(mark: str, text: str) -> None:
    print(f"{mark:<5} {text}", file=sys.stdout if mark != "FAIL" else sys.stderr)


async def check(config: Config, timeout: float, say: Any) -> int:
    """Run every check of ``config``'s Binance account, telling each with ``say(mark, text)``
    (mark: ``ok``, ``warn``, ``FAIL``); the exit status."""
    from kernel.binance.connection import BinanceConnection
    from kernel.binance.errors import BinanceAuthError, BinanceError
    from kernel.execution import VenueError
    from kernel.wiring import binance_signer

    venue = config.venue
    try:
        signer = binance_signer(config)
    except (BinanceError, OSError) as exc:
        say("FAIL", f"signing key: {exc}")
        return EXIT_FAILED
    connection = BinanceConnection(
        venue.binance_ws_api_url,
        venue.instruments[0],
        venue.api_key.reveal(),
        signer,
        recv_window_ms=venue.recv_window_ms,
        request_timeout=timeout,
        subscribe=False,
        session_options={"backoff": 0.2, "backoff_max": 1.0, "jitter": 0.1},
    )
    failed = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await connection.connect()
        except TimeoutError:
            why = connection.ws_api.last_error or "no answer"
            say("FAIL", f"connection: no session with {venue.binance_ws_api_url} within {timeout:g} s: {why}")
            return EXIT_FAILED
        offset, round_trip = connection.clock.offset_ms, connection.clock.round_trip_ms
        mark = "warn" if abs(offset) > venue.recv_window_ms // 2 else "ok"
        say(
            mark,
            f"server clock: offset {offset:+d} ms (round trip {round_trip} ms; recvWindow {venue.recv_window_ms} ms)",
        )
        try:
            account = await connection.account_status()
        except BinanceAuthError as exc:
            say("FAIL", f"API key: refused by Binance ({exc})")
            return EXIT_FAILED
        say("ok", f"API key: accepted (account type {account.account_type or '?'})")
        if account.can_trade:
            say("ok", "trading: canTrade = true")
        else:
            say("FAIL", "trading: canTrade = false: this key's account may not trade")
            failed = True
        if account.can_withdraw:
            say(
                "warn",
                "withdrawals: the account reports canWithdraw = true: trade with a key that has no "
                "withdrawal permission",
            )
        elif account.can_withdraw is None:
            say("ok", "withdrawals: not reported")
        else:
            say("ok", "withdrawals: canWithdraw = false")
        failed = not _rules(await connection.symbol_info(), connection.symbol, say) or failed
    except (VenueError, OSError) as exc:
        say("FAIL", f"Binance: {exc}")
        return EXIT_FAILED
    finally:
        await connection.close()
    return EXIT_FAILED if failed else EXIT_OK


def _rules(info: Any, symbol: str, say: Any) -> bool:
    if info is None:
        say("FAIL", f"{symbol}: not listed by Binance")
        return False
    parts = []
    filters = {f.get("filterType"): f for f in info.filters}
    for kind, field, name in FILTER_FIELDS:
        if field in filters.get(kind, {}):
            parts.append(f"{name} {filters[kind][field]}")
    notional = filters.get("NOTIONAL", filters.get("MIN_NOTIONAL", {})).get("minNotional")
    if notional is not None:
        parts.append(f"min notional {notional} {info.quote_asset}")
    rules = ", ".join(parts) or "no price/lot filters reported"
    if info.status != "TRADING":
        say("FAIL", f"{symbol}: status {info.status} (not TRADING); {rules}")
        return False
    say("ok", f"{symbol}: TRADING ({info.base_asset}/{info.quote_asset}), {rules}")
    return True
