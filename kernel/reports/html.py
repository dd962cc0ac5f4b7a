"""``tradekernel report --html``: one self-contained page about a journal.

The page holds the P&L summary, the P&L curve, the fills on the price line (buy and sell markers),
the trading-state timeline and the table of halts and trading-state changes. Charts are drawn by
matplotlib to SVG and inlined; the page has no script and no reference to anything outside itself,
so it opens offline and can be mailed or archived as one file. matplotlib is imported here only,
when a page is made (it costs start-up time no other command should pay).
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from kernel.reports.pnl import HEADERS, MARK_SOURCE, PnlReport, compute, table_rows
from storage.audit import AuditReader, iso_time

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STATE_COLOURS = {"active": "#2e9e4f", "reducing": "#e0b000", "halting": "#f08020", "halted": "#d03030"}
"""The colour of each trading state on the timeline."""
HALT_TRIGGERS = frozenset({"halt", "risk_breach", "health_unhealthy", "journal_failed", "timeout"})
"""Trading triggers that start, record or end a halt: their rows are marked in the table."""
BUY, SELL = "#1f6fd0", "#d03030"


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the page shows, read from the journal."""

    path: str
    fills: list[dict[str, Any]]
    pnl: PnlReport
    trading: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    first_ns: int | None
    last_ns: int | None


def gather(reader: AuditReader) -> ReportData:
    """Read what the page needs from ``reader``'s journal."""
    fills = reader.fills()
    last = reader.tail(1)
    first = next(reader.export(), None)
    return ReportData(
        path=reader.path,
        fills=fills,
        pnl=compute(fills),
        trading=reader.timeline("kernel", machine="trading"),
        runs=sorted(reader.entities(machine="run"), key=lambda r: int(r["entity"])),
        first_ns=first["ts_ns"] if first else None,
        last_ns=last[0]["ts_ns"] if last else None,
    )


def render(data: ReportData) -> str:
    """The page, as one HTML string."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "tradekernel", "timezone": "UTC", "font.size": 9}):
        charts = [
            ("P&L curve", _pnl_chart(data)),
            ("Fills on the price line", _price_chart(data)),
            ("Trading state", _trading_chart(data)),
        ]
    span = f"{_time(data.first_ns)} .. {_time(data.last_ns)}" if data.first_ns is not None and data.last_ns else "empty"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>tradekernel report: {_e(data.path)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>tradekernel report</h1><p class=meta>journal <code>{_e(data.path)}</code>; "
        f"{len(data.runs)} run(s); {len(data.fills)} fill(s); {_e(span)} (UTC)</p>",
        "<h2>P&amp;L</h2>",
        _pnl_table(data.pnl),
        f"<p class=note>Unrealized P&amp;L is marked at each instrument's last fill price ({MARK_SOURCE}); "
        "the journal holds no market prices.</p>",
    ]
    for title, svg in charts:
        parts.append(f'<h2>{_e(title)}</h2><div class="chart">{svg}</div>')
    parts += ["<h2>Halts and trading-state changes</h2>", _halt_table(data.trading)]
    parts += ["<h2>Runs</h2>", _runs_table(data.runs), "</body></html>"]
    return "\n".join(parts) + "\n"


_CSS = (
    "body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:.2em .6em;text-align:right}"
    "td.l,th.l{text-align:left}tr.halt td{background:#fde8e8}"
    ".meta,.note{color:#555}.chart svg{max-width:100%;height:auto}"
)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _time(ts_ns: int | None) -> str:
    return "-" if ts_ns is None else iso_time(ts_ns)[:23] + "Z"


def _when(ts_ns: int) -> float:
    """Nanoseconds since the epoch as matplotlib's date number (days since its default epoch, 1970)."""
    return ts_ns / 86_400e9


# -- tables -------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[tuple[str, list[str]]], left: int = 1) -> str:
    """An HTML table; ``rows`` are ``(css class, cells)``; the first ``left`` columns align left."""

    def cell(tag: str, i: int, value: str) -> str:
        return f"<{tag}{' class=l' if i < left else ''}>{_e(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = []
    for css, cells in rows:
        tds = "".join(cell("td", i, c) for i, c in enumerate(cells))
        body.append(f"<tr{f' class={css}' if css else ''}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _pnl_table(report: PnlReport) -> str:
    if not report.instruments:
        return "<p>No fills in this journal.</p>"
    return _table(list(HEADERS), [("", [str(cell) for cell in row]) for row in table_rows(report)])


def halt_reason(trigger: str, data: dict[str, Any]) -> str:
    """What a trading transition says of its cause, in words."""
    reason = str(data.get("reason") or "")
    if trigger == "risk_breach":
        breach = f"{data.get('limit')} {data.get('value')} beyond {data.get('threshold')}"
        return f"{breach}: {reason}" if reason else breach
    if trigger == "health_unhealthy":
        component = f"{data.get('component')} unhealthy"
        return f"{component}: {reason}" if reason else component
    return reason


def _halt_table(trading: list[dict[str, Any]]) -> str:
    changes = [t for t in trading if t["trigger"] != "create"]
    if not changes:
        return "<p>The trading state never changed: no halt, reduce or arm.</p>"
    rows = []
    for t in changes:
        data = t["data"]
        flatten = "yes" if data.get("flatten") else ""
        cells = [t["ts"][:23] + "Z", str(t["run"] or "operator"), t["trigger"], f"{t['source']} → {t['dest']}"]
        rows.append(
            ("halt" if t["trigger"] in HALT_TRIGGERS else "", [*cells, halt_reason(t["trigger"], data), flatten])
        )
    return _table(["time (UTC)", "run", "trigger", "state", "reason", "flatten"], rows, left=6)


def _runs_table(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "<p>No kernel run in this journal.</p>"
    rows = []
    for r in runs:
        data = r["data"]
        started, ended = data.get("started_ns"), data.get("ended_ns")
        rows.append(("", [r["entity"], r["state"], _time(started), _time(ended), str(data.get("pid") or "")]))
    return _table(["run", "state", "started (UTC)", "ended (UTC)", "pid"], rows, left=5)


# -- charts -------------------------------------------------------------------------------------


def _figure(height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(11, height), layout="constrained")


def _svg(figure: Figure) -> str:
    """The figure as inline SVG: no XML prolog, DOCTYPE, metadata block or namespace URLs."""
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    # Inline SVG in HTML needs no namespace declarations (the HTML parser supplies them): dropped,
    # the page names no URL at all.
    return re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text, count=2)


def _time_axis(axes: Axes) -> None:
    from matplotlib import dates

    axes.xaxis_date(tz=UTC)
    locator = dates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_xlabel("time (UTC)")
    axes.grid(True, alpha=0.3)


def _empty(figure: Figure, text: str) -> str:
    figure.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#666")
    return _svg(figure)


def _pnl_chart(data: ReportData) -> str:
    figure = _figure(3.2)
    curve = data.pnl.total.curve
    if not curve:
        return _empty(figure, "no fills: no P&L curve")
    axes = figure.add_subplot()
    times = [_when(curve[0].ts_ns), *(_when(p.ts_ns) for p in curve)]
    equity = [0.0, *(float(p.equity) for p in curve)]  # floats for plotting only
    axes.step(times, equity, where="post", color="#333", marker=".", label="total P&L (net of fees)")
    axes.axhline(0, color="#999", linewidth=0.8)
    axes.set_ylabel(f"P&L ({_currency(data)})")
    axes.legend(loc="upper left")
    _time_axis(axes)
    return _svg(figure)


def _currency(data: ReportData) -> str:
    from kernel.display import quote_currency

    quotes = {quote_currency(name) or "quote" for name in data.pnl.instruments}
    return "/".join(sorted(quotes))


def _price_chart(data: ReportData) -> str:
    instruments = sorted({f["instrument"] for f in data.fills})
    figure = _figure(2.8 * max(1, len(instruments)))
    if not instruments:
        return _empty(figure, "no fills")
    for row, instrument in enumerate(instruments, start=1):
        axes = figure.add_subplot(len(instruments), 1, row)
        mine = [f for f in data.fills if f["instrument"] == instrument]
        axes.plot([_when(f["ts_ns"]) for f in mine], [float(f["price"]) for f in mine], color="#888",
                  linewidth=1, label="fill price")  # fmt: skip
        for side, colour, marker in (("buy", BUY, "^"), ("sell", SELL, "v")):
            these = [f for f in mine if f["side"] == side]
            if these:
                axes.scatter([_when(f["ts_ns"]) for f in these], [float(f["price"]) for f in these], color=colour,
                             marker=marker, s=40, zorder=3, label=f"{side} ({len(these)})")  # fmt: skip
        axes.set_ylabel(f"{instrument} price")
        axes.ticklabel_format(axis="y", useOffset=False, style="plain")
        axes.legend(loc="upper left")
        _time_axis(axes)
    return _svg(figure)


def _trading_chart(data: ReportData) -> str:
    figure = _figure(2.0)
    if not data.trading or data.last_ns is None:
        return _empty(figure, "no trading state journaled")
    axes = figure.add_subplot()
    from matplotlib.patches import Patch

    end = max(data.last_ns, data.trading[-1]["ts_ns"])
    for here, after in zip(data.trading, [*data.trading[1:], None], strict=True):
        start_ns, stop_ns = here["ts_ns"], after["ts_ns"] if after else end
        start = _when(start_ns)
        width = max((_when(stop_ns)) - start, 1e-9)
        axes.broken_barh([(start, width)], (1.1, 0.8), color=STATE_COLOURS.get(here["dest"], "#999"))
    for run in data.runs:
        started, ended = run["data"].get("started_ns"), run["data"].get("ended_ns") or end
        if started:
            start = _when(started)
            axes.broken_barh([(start, max((_when(ended)) - start, 1e-9))], (0.1, 0.8), color="#6a8caf")
    axes.set_yticks([0.5, 1.5], ["kernel runs", "trading state"])
    axes.set_ylim(0, 2)
    handles = [Patch(color=c, label=s) for s, c in STATE_COLOURS.items()]
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=4, frameon=False)
    _time_axis(axes)
    return _svg(figure)
