"""Typed errors of the fleet store and the shipper (the ``ShipError`` family)."""

from __future__ import annotations

from machines.errors import TradekernelError


class ShipError(TradekernelError):
    """Base class of every error of the fleet store (PostgreSQL) and the shipper."""


class StoreUnavailable(ShipError):
    """PostgreSQL cannot be reached or a statement failed for a transient reason (the shipper retries)."""


class StoreVersionError(ShipError):
    """The store's schema has migrations this code does not know (it is never downgraded)."""


class ChainBroken(ShipError):
    """What the local journal holds does not continue what the store holds for this kernel.

    Raised after the incident is committed to the store's ``incidents`` table; the batch was refused
    and nothing of it was merged. ``seq`` is the first row that disagrees, ``expected`` the hash the
    store holds (or the chain requires), ``got`` the local one (empty when the row is missing)."""

    def __init__(self, kernel_id: str, kind: str, seq: int, expected: str, got: str, detail: str) -> None:
        self.kernel_id = kernel_id
        self.kind = kind
        self.seq = seq
        self.expected = expected
        self.got = got
        self.detail = detail
        super().__init__(
            f"kernel {kernel_id}: {kind} at seq {seq}: the store expects hash {expected or '(none)'}, "
            f"the local journal has {got or '(no row)'}; {detail}. Recorded as an incident in the store; "
            "nothing was merged"
        )
