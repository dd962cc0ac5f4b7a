"""The paper venue's per-account balances: pure bookkeeping, no I/O (the engine owns one ``Ledger``).

Every account holds an amount of each asset; an asset the account has never touched starts at the
venue's starting balance for it (``VenueConfig.balances``, else ``default_balance``). A fill moves
the instrument's base and quote assets (``assets``): a buy pays ``qty * price + fee`` in quote and
gets ``qty`` in base, a sell gives ``qty`` in base and gets ``qty * price - fee`` in quote. Fees
are always paid in the quote asset. The changed amounts are kept for the store (``take_changed``).

What an open order *reserves* (``reservation``) is what it may still spend: a buy its
``leaves_qty * price`` plus the fee on it in quote, a sell its ``leaves_qty`` in base. An order is
covered when its reservation fits in the balance less what the account's other open orders reserve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TypeAlias

from kernel.paper_protocol import Side

ZERO = Decimal(0)
BPS = Decimal(10_000)
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "GBP", "JPY", "BTC", "ETH", "BNB")
"""Quote assets recognised at the end of an instrument name without a separator ("BTCUSDT")."""
INSUFFICIENT = "insufficient balance"
"""The reason of an order the account's balance cannot cover."""


def assets(instrument: str) -> tuple[str, str]:
    """The (base, quote) assets of ``instrument``: "BTCUSDT" -> ("BTC", "USDT"), "BTC-USD" or
    "XBT/USD" split at the separator; an unknown name is its own base, quoted in "USD"."""
    for separator in ("-", "/", "_"):
        if separator in instrument:
            base, _, quote = instrument.partition(separator)
            return base, quote
    for quote in QUOTE_ASSETS:
        if instrument.endswith(quote) and len(instrument) > len(quote):
            return instrument[: -len(quote)], quote
    return instrument, "USD"


def reservation(side: Side, leaves_qty: Decimal, price: Decimal, fee_bps: Decimal) -> tuple[int, Decimal]:
    """What an order of ``leaves_qty`` at ``price`` may still spend: ``(0, base)`` for a sell,
    ``(1, quote)`` with fee headroom for a buy (the index into ``assets``)."""
    if side == "sell":
        return 0, leaves_qty
    notional = leaves_qty * price
    return 1, notional + notional * fee_bps / BPS


Held: TypeAlias = tuple[str, Side, Decimal, Decimal]
"""An order's (instrument, side, leaves_qty, price), for ``Ledger.covers``."""


class Ledger:
    """Balances of every account, per asset. Amounts are ``Decimal``; never float."""

    def __init__(self, starting: Mapping[str, Decimal], default: Decimal) -> None:
        self._starting = dict(starting)
        self._default = default
        self._amounts: dict[tuple[str, str], Decimal] = {}
        self._changed: dict[tuple[str, str], Decimal] = {}
        self._held: dict[tuple[str, str], tuple[str, Decimal]] = {}  # (account, order) -> (asset, amount)
        self._reserved: dict[tuple[str, str], Decimal] = {}  # (account, asset) -> what its orders hold
        self._holders: dict[tuple[str, str], int] = {}  # (account, asset) -> how many orders hold some

    def restore(self, rows: Iterable[tuple[str, str, Decimal]]) -> None:
        """Load ``(account, asset, amount)`` rows saved earlier."""
        for account, asset, amount in rows:
            self._amounts[(account, asset)] = amount

    def amount(self, account: str, asset: str) -> Decimal:
        """The account's amount of ``asset`` (its starting balance until something moved it)."""
        found = self._amounts.get((account, asset))
        if found is not None:
            return found
        return self._starting.get(asset, self._default)

    def hold(self, account: str, order_id: str, order: Held | None, fee_bps: Decimal) -> None:
        """Record what ``account``'s order ``order_id`` reserves now (``None``: nothing, e.g. it is
        done). Kept as running totals per asset, so a check costs the same with 10,000 open orders
        as with one; a total whose last order lets go is dropped, so it never drifts."""
        previous = self._held.pop((account, order_id), None)
        if previous is not None:
            slot = (account, previous[0])
            holders = self._holders[slot] - 1
            if holders:
                self._holders[slot] = holders
                self._reserved[slot] -= previous[1]
            else:
                del self._holders[slot], self._reserved[slot]
        if order is None:
            return
        instrument, side, leaves, price = order
        index, amount = reservation(side, leaves, price, fee_bps)
        slot = (account, assets(instrument)[index])
        total = self._reserved.get(slot, ZERO) + amount  # may raise (numbers off the bounds): nothing changed yet
        self._held[(account, order_id)] = (slot[1], amount)
        self._reserved[slot] = total
        self._holders[slot] = self._holders.get(slot, 0) + 1

    def reserved(self, account: str, asset: str, excluding: str | None = None) -> Decimal:
        """What ``account``'s open orders reserve of ``asset`` (leaving out order ``excluding``)."""
        total = self._reserved.get((account, asset), ZERO)
        mine = None if excluding is None else self._held.get((account, excluding))
        return total - mine[1] if mine is not None and mine[0] == asset else total

    def covers(self, account: str, order: Held, fee_bps: Decimal, excluding: str | None = None) -> bool:
        """True when ``account`` can cover ``order`` on top of what its other open orders reserve
        (the order held as ``excluding``, e.g. the one being replaced, left out)."""
        instrument, side, leaves, price = order
        index, need = reservation(side, leaves, price, fee_bps)
        asset = assets(instrument)[index]
        return need + self.reserved(account, asset, excluding) <= self.amount(account, asset)

    def report(self, account: str, instruments: Iterable[str]) -> list[tuple[str, Decimal, Decimal]]:
        """``(asset, total, available)`` of every asset of ``instruments`` and any the account holds a
        row of, by name; available is total less what the account's open orders reserve."""
        listed = {asset for instrument in instruments for asset in assets(instrument)}
        listed |= {asset for (owner, asset) in self._amounts if owner == account}
        rows = []
        for asset in sorted(listed):
            total = self.amount(account, asset)
            rows.append((asset, total, total - self.reserved(account, asset)))
        return rows

    def _move(self, account: str, asset: str, delta: Decimal) -> None:
        amount = self.amount(account, asset) + delta
        self._amounts[(account, asset)] = amount
        self._changed[(account, asset)] = amount

    def settle(self, account: str, instrument: str, side: Side, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        """Debit and credit one fill."""
        base, quote = assets(instrument)
        notional = qty * price
        if side == "buy":
            self._move(account, quote, -(notional + fee))
            self._move(account, base, qty)
        else:
            self._move(account, base, -qty)
            self._move(account, quote, notional - fee)

    def take_changed(self) -> dict[tuple[str, str], Decimal]:
        """The amounts changed since the last call, by (account, asset) (then forgets them)."""
        changed = dict(self._changed)
        self._changed.clear()
        return changed
