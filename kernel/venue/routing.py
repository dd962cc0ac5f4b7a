"""Who gets the paper venue's execution reports (``kernel.venue.server``): never another account.

The reports of a request go to the connection that sent it, which becomes the order's owner; reports
caused by market data or the venue itself go to the owner while it is connected, else to every open
connection of the order's account (a reconnecting kernel must not miss fills), never to another's.
A connection that asked for its balances once (``watch``) is also sent a ``balances_report`` (``id``
empty) after each step that moved its account's balances, as a user-data stream would.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from kernel.paper_protocol import Balance, BalancesReport, Execution
from kernel.venue.connection import Connection


class Router:
    """The owner connection of each (account, client_order_id), and the sending of reports."""

    def __init__(self, connections: set[Connection]) -> None:
        self._connections = connections
        self._owners: dict[tuple[str, str], Connection] = {}
        self._watchers: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._moved: set[str] = set()

    def watch(self, conn: Connection) -> None:
        """Send ``conn`` its account's balances whenever they move from now on."""
        self._watchers.add(conn)

    def moved(self, accounts: Iterable[str]) -> None:
        """These accounts' balances changed in the step just committed."""
        self._moved.update(accounts)

    def push_balances(self, balances_of: Callable[[str], list[Balance]]) -> None:
        """Send the balances that moved to the watching connections of their accounts."""
        for account in sorted(self._moved):
            watching = [c for c in self._watchers if c.open and c.account == account]
            if watching:
                report = BalancesReport(balances=balances_of(account))
                for conn in watching:
                    conn.send(report)
        self._moved.clear()

    def own(self, account: str, client_order_id: str, conn: Connection) -> None:
        """``conn`` (of ``account``) is now the owner of the account's order."""
        self._owners[(account, client_order_id)] = conn

    def route(
        self, requester: Connection | None, reports: list[Execution], account_of: Callable[[str], str | None]
    ) -> None:
        """Send each report; ``account_of`` names the account of a venue order id (``None``: unknown)."""
        for report in reports:
            account = account_of(report.venue_order_id) if report.venue_order_id else None
            if requester is not None:  # its own order (looked up by the requester's account), or unknown
                if account is not None:
                    self.own(account, report.client_order_id, requester)
                requester.send(report)
            elif account is not None:
                owner = self._owners.get((account, report.client_order_id))
                if owner is not None and owner.open and owner.account == account:
                    owner.send(report)
                else:
                    for conn in self._connections:
                        if conn.open and conn.account == account:
                            conn.send(report)
