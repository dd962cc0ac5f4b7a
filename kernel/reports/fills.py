"""``tradekernel fills``: every fill in the journal, as a table for people, JSON or CSV for scripts.

The rows come from ``AuditReader.fills`` (one per applied fill, in journal order). JSON and CSV
keep each decimal exactly as the journal holds it; the table rounds prices to the tick, quantities
to the lot and fees to the quote currency (``kernel.display``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kernel.display import MISSING, Precision

FIELDS: tuple[str, ...] = (
    "seq",
    "time",
    "run",
    "client_order_id",
    "instrument",
    "side",
    "qty",
    "price",
    "fee",
    "liquidity",
    "trade_id",
    "fill_seq",
    "venue_time",
    "trigger",
)
"""The keys of a fill in ``fills --json`` and the columns of ``--csv``, in order."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_since(text: str) -> int:
    """``--since``: an ISO-8601 date or time (UTC unless it names a zone) as nanoseconds since the
    epoch; ``ValueError`` when it is neither."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def fields(fills: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """``FIELDS``, after ``kernel_id`` when the fills come from the fleet store (many kernels)."""
    return ("kernel_id", *FIELDS) if fills and "kernel_id" in fills[0] else FIELDS


def public(fill: dict[str, Any]) -> dict[str, Any]:
    """One fill as ``fills --json`` prints it: decimals as the journal's exact strings (and the
    ``kernel_id`` of a fleet store's fill first)."""
    names = ("kernel_id", *FIELDS) if "kernel_id" in fill else FIELDS
    return {name: str(fill[name]) if isinstance(fill[name], Decimal) else fill[name] for name in names}


def csv_text(fills: Sequence[dict[str, Any]]) -> str:
    """``fills --csv``: a header line, then one line per fill (an empty cell for ``None``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = fields(fills)
    writer.writerow(names)
    for fill in fills:
        row = public(fill)
        writer.writerow(["" if row[name] is None else row[name] for name in names])
    return out.getvalue()


TABLE_HEADERS = ("time (UTC)", "order", "instrument", "side", "qty", "price", "fee", "liquidity")
"""The columns of ``fills`` for people."""


def table_headers(fills: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """``TABLE_HEADERS``, after a ``kernel`` column when the fills come from the fleet store."""
    return ("kernel", *TABLE_HEADERS) if fills and "kernel_id" in fills[0] else TABLE_HEADERS


def table_rows(fills: Sequence[dict[str, Any]]) -> list[list[object]]:
    """``fills`` for people (``table_headers``): time to the millisecond, numbers to the
    instrument's precision."""
    precision: dict[str, Precision] = {}
    rows: list[list[object]] = []
    for fill in fills:
        shown = precision.setdefault(fill["instrument"], Precision.of(fill["instrument"]))
        rows.append(
            [
                *([fill["kernel_id"]] if "kernel_id" in fill else []),
                fill["time"][:23] + "Z",
                fill["client_order_id"],
                fill["instrument"],
                fill["side"],
                shown.qty(fill["qty"]),
                shown.price(fill["price"]),
                shown.money(fill["fee"]),
                fill["liquidity"] or MISSING,
            ]
        )
    return rows
