"""The live view of ``tradekernel run`` on a terminal: one ``rich.live.Live`` region, redrawn in place.

``frame(status, width, height)`` builds what one redraw shows. It always fits the terminal: the
kernel, health, trading, feed and P&L lines come first and are never dropped; below them, while
rows remain, the open-order count, the positions, the open orders (a table) and the key hint.
Every cell is one row (``no_wrap``, cut with an ellipsis), so a frame is never taller than its
row count and a redraw never scrolls. Log records are printed above the region (``LiveView.log``),
once; on stop ``LiveView.stop`` draws a last frame that says ``stopped``.

Imported only when a live view is shown: ``rich`` stays out of ``tradekernel status``'s imports.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kernel.status_text import Rules, order_text, pnl_text, position_text, trade_prices

LABEL_WIDTH = 8
WIDE = 100
"""From this width the order table also shows each order's tag ..."""
NARROW = 80
"""... from this one its instrument ..."""
TINY = 60
"""... and from this one its id and state (below: side, size and price)."""


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(min_width=LABEL_WIDTH, no_wrap=True, style="bold")
    grid.add_column(no_wrap=True, overflow="ellipsis")
    return grid


def _kernel_line(status: Mapping[str, Any], stopped: str | None) -> Text:
    run = f"run {status.get('run_id')}  pid {status.get('pid')}  journal {status.get('db')}"
    if stopped is not None:
        return Text.assemble(("stopped", "bold red"), f" ({stopped})  {run}")
    if status.get("running"):
        return Text.assemble(("running", "bold green"), f"  {run}")
    return Text(f"not running  journal {status.get('db')}")


def _why(text: str, reason: Any) -> str:
    return f"{text} ({reason})" if reason else text


def core_rows(status: Mapping[str, Any], rules: Rules | None, stopped: str | None) -> list[tuple[str, Text]]:
    """The five lines every frame shows: kernel, health, trading (with order entry), feed, P&L."""
    health = status.get("health") or {}
    trading = status.get("trading") or {}
    feed = status.get("feed") or {}
    state = health.get("status")
    health_style = {"healthy": "green", "degraded": "yellow", "unhealthy": "bold red"}.get(str(state), "")
    entry = _why(f"entry {trading.get('order_entry')}", trading.get("entry_reason"))
    prices = "  ".join(f"{i} {price}" for i, price in trade_prices(status, rules)) or "no trade yet"
    return [
        ("kernel", _kernel_line(status, stopped)),
        ("health", Text(_why(str(state), health.get("reason")), style=health_style)),
        ("trading", Text(f"{_why(str(trading.get('state')), trading.get('reason'))}  {entry}")),
        ("feed", Text(f"{feed.get('state')}  {prices}" if feed else "none")),
        ("P&L", Text(pnl_text(status, rules))),
    ]


def _orders_table(orders: list[Mapping[str, Any]], rules: Rules | None, width: int) -> Table:
    """The open orders, with the columns ``width`` has room for: numbers are never cut (the order
    id is, first); below 80 columns the instrument goes, below 60 the order id and state too."""
    rows = []
    for order in orders:
        size, price, instrument = order_text(order, rules)
        rows.append({
            "order": order["client_order_id"], "side": order["side"], "leaves/qty": size, "price": price,
            "instrument": instrument, "state": order["state"], "tag": order.get("tag") or "",
        })  # fmt: skip
    names = ["order", "side", "leaves/qty", "price", "instrument", "state", "tag"]
    if width < WIDE:
        names.remove("tag")
    if width < NARROW:
        names.remove("instrument")
    if width < TINY:
        names = ["side", "leaves/qty", "price"]
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold", expand=False)
    for name in names:
        numeric = name in ("leaves/qty", "price")
        longest = max([len(name), *(len(row[name]) for row in rows)])
        table.add_column(
            name,
            justify="right" if numeric else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=longest if numeric or name == "side" else None,
        )
    for row in rows:
        table.add_row(*(row[name] for name in names))
    return table


def frame(
    status: Mapping[str, Any],
    *,
    width: int,
    height: int,
    rules: Rules | None = None,
    stopped: str | None = None,
) -> RenderableType:
    """One redraw of the view for a ``width`` x ``height`` terminal: at most ``height - 1`` rows
    (the last row stays free), details dropped first. ``stopped``: the reason of a final frame."""
    budget = max(height - 1, 5)
    grid = _grid()
    rows = core_rows(status, rules, stopped)
    for label, value in rows:
        grid.add_row(label, value)
    left = budget - len(rows)
    orders = list(status.get("open_orders") or [])
    if left > 0:
        grid.add_row("orders", Text(f"{len(orders)} open"))
        left -= 1
    for instrument, position in (status.get("positions") or {}).items():
        if left <= 0:
            break
        grid.add_row("position", Text(position_text(instrument, position, rules)))
        left -= 1
    parts: list[RenderableType] = [grid]
    if orders and left >= 2:  # a header and at least one row
        room = left - 1
        shown = orders if len(orders) <= room else orders[: room - 1]  # keep a row for "... and N more"
        if shown:
            parts.append(_orders_table(shown, rules, width))
            left -= len(shown) + 1
            if len(shown) < len(orders):
                parts.append(Text(f"... and {len(orders) - len(shown)} more", no_wrap=True, overflow="ellipsis"))
                left -= 1
    if stopped is None and left >= 1:
        parts.append(
            Text(
                "Ctrl-C to stop (twice: without waiting for cancel acks)",
                style="dim",
                no_wrap=True,
                overflow="ellipsis",
            )
        )
    return Group(*parts)


class LiveView:
    """The ``rich`` live region on ``out``: ``show`` redraws it, ``log`` prints a line above it,
    ``stop`` draws the final frame and leaves it on screen. No refresh thread: each ``show``
    draws once."""

    def __init__(self, out: TextIO, *, force_terminal: bool | None = None) -> None:
        self.console = Console(file=out, force_terminal=force_terminal, highlight=False, soft_wrap=False)
        # Stray writes to the terminal (not log records: ``StatusView.capture`` prints those) would
        # break the block; rich prints them above it. Only a stream that is the terminal is taken.
        on_terminal = self.console.is_terminal and out.isatty()
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=on_terminal,
            redirect_stderr=on_terminal and sys.stderr.isatty(),
            vertical_overflow="crop",
        )
        self.started = False
        self.stopped = False

    def _frame(self, status: Mapping[str, Any], rules: Rules | None, stopped: str | None) -> RenderableType:
        width, height = self.console.size
        return frame(status, width=width, height=height, rules=rules, stopped=stopped)

    def show(self, status: Mapping[str, Any], rules: Rules | None = None) -> None:
        """Redraw the region with ``status`` (started on the first call)."""
        if self.stopped:
            return
        if not self.started:
            self._live.start()
            self.started = True
        self._live.update(self._frame(status, rules, None), refresh=True)

    def log(self, line: str) -> None:
        """Print ``line`` above the region (as plain text: no markup, no highlighting)."""
        self.console.print(Text(line), soft_wrap=True)

    def stop(self, status: Mapping[str, Any], rules: Rules | None, reason: str) -> None:
        """Draw the final frame (``stopped (reason)``) and end the region; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        if not self.started:
            self._live.start()
            self.started = True
        self._live.update(self._frame(status, rules, reason or "-"), refresh=False)
        self._live.stop()  # draws it, in place of the last frame
