"""Status: a JSON-ready snapshot of a kernel, from the running process or from its journal.

``running_status(snapshot)`` (a running kernel's ``KernelSnapshot``) is what ``/status``, the
control socket and the live view show.
``journal_status(db)`` answers ``tradekernel status`` when no kernel runs: it reads the journal
(read-only) for the last run, the last health and feed states, the open orders and the positions
folded from the journaled fills. Both have the same keys: ``running``, ``health``, ``trading``,
``feed``, ``open_orders``, ``positions``, ``pnl`` and ``last_run`` (with ``clean``).

Decimals are strings in the JSON (exact), times ISO 8601 UTC.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from kernel.paper_defaults import TradingRules
from kernel.status_text import Rules, render_text, status_line
from machines.positions import Fill, Position, Positions
from storage.audit import AuditReader, iso_time

if TYPE_CHECKING:  # the views (and the feed package behind them) only when a kernel answers
    from kernel.live_view import LiveView
    from kernel.views import KernelSnapshot

ZERO = Decimal(0)
log = logging.getLogger(__name__)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _position(position: Position, mark: Decimal | None) -> dict[str, Any]:
    unrealized = position.unrealized_pnl(mark) if mark is not None and position.qty else ZERO
    return {
        "qty": _text(position.qty),
        "avg_px": _text(position.avg_px),
        "mark": _text(mark),
        "realized_pnl": _text(position.realized_pnl),
        "unrealized_pnl": _text(unrealized),
        "fees": _text(position.fees),
        "total_pnl": _text(position.realized_pnl + unrealized - position.fees),
        "fills": position.fills,
    }


def _pnl(positions: Mapping[str, dict[str, Any]]) -> dict[str, str | None]:
    def total(key: str) -> Decimal:
        return sum((Decimal(p[key]) for p in positions.values()), ZERO)

    return {key: _text(total(key)) for key in ("realized_pnl", "unrealized_pnl", "fees", "total_pnl")}


def _order(data: Mapping[str, Any], client_order_id: str, state: str) -> dict[str, Any]:
    return {
        "client_order_id": client_order_id,
        "instrument": data["instrument"],
        "side": data["side"],
        "type": data["type"],
        "state": state,
        "qty": _text(Decimal(data["qty"])),
        "price": None if data.get("price") is None else _text(Decimal(data["price"])),
        "cum_qty": _text(Decimal(data["cum_qty"])),
        "leaves_qty": _text(Decimal(data["leaves_qty"])),
        "tag": data.get("tag") or "",
    }


def running_status(snapshot: KernelSnapshot) -> dict[str, Any]:
    """The status of a running kernel, from its snapshot (``Kernel.snapshot()``)."""
    marks = {i: t.price for i, t in snapshot.last_trade.items()}
    positions = {i: _position(p, marks.get(i)) for i, p in sorted(snapshot.positions.items())}
    block = snapshot.entry_block
    feed = snapshot.feed
    return {
        "running": True,
        "pid": snapshot.pid,
        "db": snapshot.db,
        "run_id": snapshot.run_id,
        "started": iso_time(snapshot.started_ms * 1_000_000),
        "health": dict(snapshot.health),
        "trading": {
            **snapshot.trading,
            "order_entry": "open" if block is None else "paused",
            "entry_reason": block,
        },
        "feed": None
        if feed is None
        else {
            "entity": feed.entity,
            "state": feed.state,
            "url": feed.url,
            "instruments": list(feed.instruments),
            "gaps": feed.gaps,
            "reconnects": feed.reconnects,
            "last_trade": {
                i: {"price": _text(t.price), "ts_ms": t.ts_ms} for i, t in sorted(snapshot.last_trade.items())
            },
            "last_quote": {
                i: {"bid": _text(q.bid), "ask": _text(q.ask), "ts_ms": q.ts_ms}
                for i, q in sorted(snapshot.last_quote.items())
            },
        },
        "venue": {
            "url": snapshot.venue_url,
            "embedded": snapshot.venue_embedded,
            "connected": snapshot.venue_connected,
            "session": snapshot.venue_session,
            "balances": None
            if snapshot.venue_balances is None
            else {b.asset: {"total": _text(b.total), "available": _text(b.available)} for b in snapshot.venue_balances},
        },
        "strategy": {
            "name": snapshot.strategy_name,
            "errors": snapshot.strategy_errors,
            "intents": dict(snapshot.intents),
            "denied": snapshot.denied,
        },
        "open_orders": [_order(o.data, o.client_order_id, o.state) for o in snapshot.open_orders],
        "positions": positions,
        "pnl": _pnl(positions),
        "fills": snapshot.fills,
        "endpoints": {"control_socket": snapshot.control_socket, "http": snapshot.http_url},
        "last_run": None if snapshot.last_run is None else dict(snapshot.last_run),
        "reconciliation": None if snapshot.reconciliation is None else dict(snapshot.reconciliation),
        "healthy": snapshot.healthy,
        "ship": None if snapshot.ship is None else dict(snapshot.ship),
        "rules": {
            i: {"tick_size": str(r.tick_size), "lot_size": str(r.lot_size)} for i, r in sorted(snapshot.rules.items())
        },
    }


def run_summary(run: Mapping[str, Any] | None, *, live: bool) -> dict[str, Any] | None:
    """A run as status shows it; ``live``: its process is known to be running."""
    if run is None:
        return None
    state = run["state"]
    return {
        "run_id": int(run["entity"]),
        "state": state if not (state == "running" and not live) else "crashed (not yet detected)",
        "clean": state == "stopped",
        "started": run.get("started"),
        "ended": run.get("ended"),
        "pid": run.get("pid"),
    }


def journal_runs(reader: AuditReader) -> list[dict[str, Any]]:
    """Every run of the journal, oldest first, with ISO times."""
    runs = []
    for row in reader.entities(machine="run"):
        data = row["data"]
        runs.append(
            {
                "entity": row["entity"],
                "state": row["state"],
                "started": iso_time(data["started_ns"]) if data.get("started_ns") else None,
                "ended": iso_time(data["ended_ns"]) if data.get("ended_ns") else None,
                "pid": data.get("pid"),
            }
        )
    return sorted(runs, key=lambda r: int(r["entity"]))


def journal_status(db_path: str) -> dict[str, Any]:
    """The snapshot of a kernel that is not running, read from its journal (read-only).

    Raises ``JournalError`` subclasses when the journal cannot be read.
    """
    with AuditReader(db_path) as reader:
        runs = journal_runs(reader)
        last = runs[-1] if runs else None
        health_rows = list(reader.entities(machine="health"))
        feed_rows = reader.entities(machine="feed")
        open_orders = [
            _order(r["data"], r["entity"], r["state"]) for r in reader.entities(machine="order", live_only=True)
        ]
        fills = reader.fills()
        trading_row = next(iter(reader.entities(machine="trading")), None)
    positions = Positions.rebuild(
        Fill(f["instrument"], f["side"], f["qty"], f["price"], f["fee"], f["trade_id"]) for f in fills
    )
    last_price = {f["instrument"]: f["price"] for f in fills}  # marks: the last fill price (no feed)
    by_instrument = {i: _position(p, last_price.get(i)) for i, p in sorted(positions.snapshot().items())}
    run_suffix = f"-r{last['entity']}" if last else None
    kernel_health = next((r for r in health_rows if run_suffix and r["entity"] == f"kernel{run_suffix}"), None)
    feed = next((r for r in feed_rows if run_suffix and r["entity"] == f"feed{run_suffix}"), None)
    return {
        "running": False,
        "db": db_path,
        "health": {
            "status": "stopped" if kernel_health is None else kernel_health["state"],
            "reason": None if kernel_health is None else kernel_health["data"].get("reason"),
            "components": {
                r["entity"].removesuffix(run_suffix or ""): {"state": r["state"], "reason": r["data"].get("reason")}
                for r in health_rows
                if run_suffix and r["entity"].endswith(run_suffix) and r["entity"] != f"kernel{run_suffix}"
            },
        },
        "trading": {
            "state": None if trading_row is None else trading_row["state"],
            "reason": None if trading_row is None else trading_row["data"].get("reason"),
            "order_entry": "closed",
            "entry_reason": "no kernel running",
        },
        "feed": None
        if feed is None
        else {"entity": feed["entity"], "state": feed["state"], "url": feed["data"].get("url")},
        "open_orders": open_orders,
        "positions": by_instrument,
        "pnl": _pnl(by_instrument),
        "fills": len(fills),
        "last_run": run_summary(last, live=False),
        "runs": len(runs),
    }


def rules_of(kernel: object) -> dict[str, TradingRules]:
    """The tick and lot of each instrument a running kernel knows (its risk limits take them from
    the venue's rules at start: ``kernel.wiring.limits_with_rules``); empty before that."""
    limits = getattr(kernel, "limits", None)
    instruments = getattr(kernel, "instruments", None) or ()
    if limits is None:
        return {}
    known = {}
    for instrument in {*instruments, *getattr(limits, "per_instrument", {})}:
        own = limits.for_instrument(instrument)
        if own.tick_size is not None and own.lot_size is not None:
            known[instrument] = TradingRules(own.tick_size, own.lot_size)
    return known


class HasStatus(Protocol):
    """Anything with a status snapshot (a running ``Kernel``)."""

    def status(self) -> dict[str, Any]:
        """The JSON-ready status."""
        ...


class ViewLog(logging.Handler):
    """Prints log records above the live view while it is shown, else to ``stream``: each record
    appears once, and never inside a frame."""

    def __init__(self, view: StatusView, stream: TextIO) -> None:
        super().__init__()
        self.view = view
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            live = self.view.live_view
            if live is not None and live.started and not live.stopped:
                live.log(line)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()
        except Exception:
            self.handleError(record)


class StatusView:
    """Shows the kernel's status every interval: a ``rich`` live region redrawn in place on a
    terminal (``kernel/live_view.py``), else one line (or one JSON object) per interval.

    ``mode``: ``live`` (redraw in place, even when ``out`` is not a terminal), ``lines``, or
    ``auto`` (live when ``out`` is a terminal). ``close`` draws the live view's final frame.
    """

    def __init__(self, mode: str = "auto", out: TextIO | None = None, json_lines: bool = False) -> None:
        self.out = out or sys.stdout
        self.live = mode == "live" or (mode == "auto" and self.out.isatty())
        self.force_terminal = True if mode == "live" else None
        self.json_lines = json_lines
        self.live_view: LiveView | None = None
        self.last_status: dict[str, Any] | None = None
        self.rules: dict[str, TradingRules] = {}

    def capture(self, handler: logging.Handler) -> logging.Handler:
        """A handler to use instead of ``handler`` (same formatter and stream) while the view is
        shown: its records print above the live region."""
        stream = getattr(handler, "stream", None) or sys.stderr
        printer = ViewLog(self, stream)
        printer.setFormatter(handler.formatter)
        printer.setLevel(handler.level)
        for kept in handler.filters:
            printer.addFilter(kept)
        return printer

    def _live_view(self) -> LiveView:
        if self.live_view is None:
            from kernel.live_view import LiveView

            self.live_view = LiveView(self.out, force_terminal=self.force_terminal)
        return self.live_view

    def __call__(self, kernel: HasStatus) -> None:
        status = kernel.status()
        self.last_status = status
        self.rules = rules_of(kernel) or self.rules
        if self.live:
            self._live_view().show(status, self.rules)
            return
        if self.json_lines:
            self.out.write(json.dumps({"status": status}, default=str) + "\n")
        else:
            self.out.write(status_line(status, self.rules) + "\n")
        self.out.flush()

    def close(self, kernel: HasStatus | None = None, reason: str = "stopped") -> None:
        """The live view's final frame, from ``kernel``'s last status (or the last one shown),
        saying ``stopped (reason)``; the region then stays on screen. Nothing in the other modes."""
        if not self.live or self.live_view is None:
            return
        status = self.last_status
        if kernel is not None:
            try:
                status = kernel.status()
            except Exception:  # the kernel is gone: keep the last status shown
                log.debug("no final status from the kernel", exc_info=True)
        self.live_view.stop(status or {}, self.rules, reason)


__all__ = ["HasStatus", "Rules", "StatusView", "journal_status", "render_text", "running_status", "status_line"]
