"""``tradekernel pnl``: realized and unrealized P&L, fees, trades, win rate and drawdown.

The position math is ``machines.positions.Position.apply`` (average cost), folded over the
journal's fills in journal order; nothing here re-derives a cost or a realized amount.

* **mark**: the journal holds no market prices, so an open position is marked at the price of its
  instrument's last fill (``mark_source`` says so in the JSON).
* **trades**: the fills of the instrument. A *closing* trade is a fill that reduces (or closes, or
  flips) an open position; it *wins* when the realized P&L it books is positive (before fees).
  ``win_rate`` = wins / closing trades (``None`` with no closing trade).
* **equity curve**: after each fill, ``realized + unrealized - fees`` (``Position.total_pnl``; for
  the total, summed over every instrument, each marked at its own last fill price), starting at 0
  before the first fill. ``max_drawdown`` is the largest fall from a running peak of that curve
  (0 when it never falls).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from kernel.display import Precision
from machines.positions import ZERO, Fill, Position

HEADERS = ("instrument", "position", "mark", "realized", "unrealized", "fees", "total", "trades", "win rate",
           "max drawdown")  # fmt: skip
"""The columns of the P&L table (``pnl`` and the HTML page)."""
MARK_SOURCE = "last_fill"
"""Where unrealized P&L takes its mark from: the last fill price of each instrument."""


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """The equity after one fill (``instrument``'s), at journal time ``ts_ns``."""

    ts_ns: int
    seq: int
    instrument: str
    price: Decimal
    side: str
    equity: Decimal
    """Of the instrument (``Summary.curve`` of one instrument) or of all (``PnlReport.curve``)."""


@dataclass(slots=True)
class Summary:
    """The P&L of one instrument (or of all of them: ``position`` is then ``None``)."""

    position: Position | None = None
    mark: Decimal | None = None
    realized: Decimal = ZERO
    unrealized: Decimal = ZERO
    fees: Decimal = ZERO
    trades: int = 0
    closing_trades: int = 0
    wins: int = 0
    max_drawdown: Decimal = ZERO
    curve: list[CurvePoint] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        """Realized + unrealized - fees."""
        return self.realized + self.unrealized - self.fees

    @property
    def win_rate(self) -> Decimal | None:
        """Wins / closing trades; ``None`` with no closing trade."""
        return Decimal(self.wins) / Decimal(self.closing_trades) if self.closing_trades else None

    def as_json(self) -> dict[str, Any]:
        """Decimals as plain strings (every digit kept); counts as ints."""
        out: dict[str, Any] = {}
        if self.position is not None:
            out["position"] = _text(self.position.qty)
            out["avg_px"] = _text(self.position.avg_px)
            out["mark"] = _text(self.mark)
        out.update(
            realized=_text(self.realized),
            unrealized=_text(self.unrealized),
            fees=_text(self.fees),
            total=_text(self.total),
            trades=self.trades,
            closing_trades=self.closing_trades,
            wins=self.wins,
            win_rate=_text(self.win_rate),
            max_drawdown=_text(self.max_drawdown),
        )
        return out


@dataclass(slots=True)
class PnlReport:
    """Per instrument and in total; ``curve`` is the total equity after each fill."""

    instruments: dict[str, Summary]
    total: Summary

    def as_json(self) -> dict[str, Any]:
        """The ``pnl --json`` document."""
        return {
            "mark_source": MARK_SOURCE,
            "instruments": {name: s.as_json() for name, s in sorted(self.instruments.items())},
            "total": self.total.as_json(),
        }


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _drawdown(equities: Iterable[Decimal]) -> Decimal:
    """The largest fall from a running peak, the curve starting at 0."""
    peak = worst = ZERO
    for equity in equities:
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    return worst


def compute(fills: Sequence[dict[str, Any]]) -> PnlReport:
    """The report of ``fills`` (``AuditReader.fills`` rows, in journal order).

    Sums run with 60 significant digits (as ``machines.positions`` does), so they are exact."""
    with localcontext() as context:
        context.prec = 60
        return _compute(fills)


def _compute(fills: Sequence[dict[str, Any]]) -> PnlReport:
    positions: dict[str, Position] = {}
    marks: dict[str, Decimal] = {}
    summaries: dict[str, Summary] = {}
    total = Summary()
    for row in fills:
        instrument = row["instrument"]
        fill = Fill(instrument, row["side"], row["qty"], row["price"], row["fee"], row["trade_id"])
        before = positions.get(instrument) or Position(instrument)
        after = before.apply(fill)
        positions[instrument] = after
        marks[instrument] = fill.price
        summary = summaries.setdefault(instrument, Summary())
        summary.trades += 1
        if before.qty and (before.qty > 0) != (fill.signed_qty > 0):
            summary.closing_trades += 1
            summary.wins += after.realized_pnl > before.realized_pnl
        where = (row["ts_ns"], row["seq"], instrument, fill.price, fill.side)
        summary.curve.append(CurvePoint(*where, equity=after.total_pnl(fill.price)))
        equity = sum((p.total_pnl(marks[name]) for name, p in positions.items()), ZERO)
        total.curve.append(CurvePoint(*where, equity=equity))
    for instrument, summary in summaries.items():
        position, mark = positions[instrument], marks[instrument]
        summary.position, summary.mark = position, mark
        summary.realized, summary.fees = position.realized_pnl, position.fees
        summary.unrealized = position.unrealized_pnl(mark)
        summary.max_drawdown = _drawdown(p.equity for p in summary.curve)
        total.realized += summary.realized
        total.unrealized += summary.unrealized
        total.fees += summary.fees
        total.trades += summary.trades
        total.closing_trades += summary.closing_trades
        total.wins += summary.wins
    total.max_drawdown = _drawdown(p.equity for p in total.curve)
    return PnlReport(summaries, total)


def table_rows(report: PnlReport) -> list[list[object]]:
    """``pnl`` for people (``HEADERS``): money to the quote currency, prices to the tick, quantities
    to the lot; a total row when there is not exactly one instrument."""
    rows: list[list[object]] = []
    for name, s in sorted(report.instruments.items()):
        shown = Precision.of(name)
        qty = s.position.qty if s.position is not None else None
        rows.append([name, shown.qty(qty), shown.price(s.mark), *money_cells(s, shown)])
    if len(report.instruments) > 1:
        currencies = {Precision.of(name).money_places for name in report.instruments}
        shown = Precision(0, 0, max(currencies, default=2))
        rows.append(["total", "", "", *money_cells(report.total, shown)])
    return rows


def money_cells(s: Summary, shown: Precision) -> list[str]:
    """The table cells of a summary: realized, unrealized, fees, total, trades, win rate, drawdown."""
    rate = s.win_rate
    win = "-" if rate is None else f"{(rate * 100).quantize(Decimal('0.1'))} % ({s.wins}/{s.closing_trades})"
    money = [shown.money(v) for v in (s.realized, s.unrealized, s.fees, s.total)]
    return [*money, str(s.trades), win, shown.money(s.max_drawdown)]
