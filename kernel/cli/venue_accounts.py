"""``tradekernel venue account``: the paper venue's accounts (API key and secret each).

    tradekernel venue account add NAME --db VENUE.db      # prints the key and secret, ONCE
    tradekernel venue account list --db VENUE.db          # names, keys, created, revoked; never secrets
    tradekernel venue account revoke NAME --db VENUE.db

The venue keeps only ``paper_protocol.secret_key(secret)`` (a SHA-256 of the secret), never the
secret itself: a lost secret cannot be shown again (revoke the account's key and add another
account). Safe while the venue runs. Exit status: 0 ok, 2 bad arguments, an unusable venue
database, a name taken or unknown.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any

from kernel.cli.common import usage_error
from kernel.cli.table import format_table
from kernel.clock import wall_ms
from kernel.exits import EXIT_OK

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _name(text: str) -> str:
    if _NAME.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"an account name is 1 to 64 letters, digits, '.', '_' or '-' (a letter or digit first), not {text!r}"
        )
    return text


def add_parser(sub: Any) -> None:
    """Register ``account`` (``add``, ``list``, ``revoke``) on ``tradekernel venue``'s subparsers."""
    account = sub.add_parser(
        "account",
        help="add, list or revoke the venue's accounts (API key and secret)",
        description="Manage the accounts of a venue database: each has an API key and a secret "
        "(the venue stores only a hash of the secret). Safe while the venue runs.",
    )
    commands = account.add_subparsers(dest="account_command", metavar="add|list|revoke", required=True)
    add = commands.add_parser("add", help="create an account; prints its API key and secret once")
    add.add_argument("name", type=_name, metavar="NAME")
    listing = commands.add_parser("list", help="list the accounts (names, keys, created, revoked; never secrets)")
    revoke = commands.add_parser("revoke", help="revoke an account's key: its sessions can no longer authenticate")
    revoke.add_argument("name", type=_name, metavar="NAME")
    for command in (add, listing, revoke):
        command.add_argument(
            "--db", dest="account_db", metavar="VENUE.db", required=True, help="the venue's SQLite file"
        )


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_account(args: argparse.Namespace) -> int:
    """``venue account add|list|revoke``; the exit status."""
    from kernel.paper_protocol import secret_key
    from storage.venue_accounts import AccountError, VenueAccounts, new_credentials
    from storage.venue_store import VenueStoreError

    def usage(message: str) -> int:
        return usage_error(message, "venue account")

    try:
        accounts = VenueAccounts.open(args.account_db)
    except VenueStoreError as exc:
        return usage(str(exc))
    with accounts:
        try:
            if args.account_command == "add":
                api_key, secret = new_credentials()
                accounts.add(args.name, api_key, secret_key(secret), wall_ms())
                print(f"account {args.name} added to {args.account_db}")
                print(f"api_key: {api_key}")
                print(f"secret:  {secret}")
                print("The secret is shown only now (the venue keeps only a hash of it): store it safely.")
            elif args.account_command == "revoke":
                before = accounts.by_name(args.name)
                account = accounts.revoke(args.name, wall_ms())
                already = before is not None and before.revoked
                print(f"account {account.name} {'was already' if already else 'is now'} revoked")
            else:
                rows = [(a.name, a.api_key, _when(a.created_ms), _when(a.revoked_ms)) for a in accounts.all()]
                print(format_table(["name", "api_key", "created", "revoked"], rows))
                print(f"{len(rows)} account(s)")
        except AccountError as exc:
            return usage(str(exc))
    return EXIT_OK
