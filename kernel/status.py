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
import time
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from machines.positions import Fill, Position, Positions
from storage.audit import AuditReader, iso_time

if TYPE_CHECKING:  # the views (and the feed package behind them) only when a kernel answers
    from kernel.views import KernelSnapshot

ZERO = Decimal(0)


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


# -- rendering ------------------------------------------------------------------------------------


def _short(text: str | None, places: int = 8) -> str:
    """A decimal string cut to ``places`` decimals for reading (the JSON keeps every digit)."""
    if text is None:
        return "-"
    value = Decimal(text)
    if value.as_tuple().exponent < -places:  # type: ignore[operator]
        value = value.quantize(Decimal(1).scaleb(-places))
    return format(value, "f")


def render_text(status: Mapping[str, Any], log_lines: Sequence[str] = ()) -> str:
    """A few lines for a terminal: what an operator looks at first (then ``log_lines``, if any)."""
    health = status.get("health") or {}
    trading = status.get("trading") or {}
    feed = status.get("feed") or {}
    lines = []
    run = status.get("run_id")
    head = f"running (run {run}, pid {status.get('pid')})" if status.get("running") else "not running"
    lines.append(f"kernel     {head}  journal {status.get('db')}")
    reason = f"  ({health.get('reason')})" if health.get("reason") else ""
    lines.append(f"health     {health.get('status')}{reason}")
    if trading.get("state"):
        why = f" ({trading.get('reason')})" if trading.get("reason") else ""
        lines.append(f"trading    {trading.get('state')}{why}")
    entry = trading.get("order_entry")
    blocked = trading.get("entry_reason") or (None if trading.get("state") else trading.get("reason"))
    lines.append(f"orders     entry {entry}" + (f" ({blocked})" if blocked else ""))
    if feed:
        prices = "  ".join(f"{i} last {t['price']}" for i, t in (feed.get("last_trade") or {}).items())
        if not prices and "last_trade" in feed:
            prices = "no trade yet"
        lines.append(f"feed       {feed.get('state')}  {prices}".rstrip())
    orders = status.get("open_orders") or []
    lines.append(f"open       {len(orders)} order(s)")
    for order in orders[:10]:
        price = order["price"] or "market"
        lines.append(
            f"           {order['client_order_id']}  {order['side']:<4} {order['leaves_qty']}/{order['qty']} "
            f"{order['instrument']} @ {price}  {order['state']}"
        )
    if len(orders) > 10:
        lines.append(f"           ... and {len(orders) - 10} more")
    for instrument, pos in (status.get("positions") or {}).items():
        lines.append(
            f"position   {instrument} {pos['qty']} @ {_short(pos['avg_px'])}  realized {_short(pos['realized_pnl'])}  "
            f"unrealized {_short(pos['unrealized_pnl'])}  fees {_short(pos['fees'])}"
        )
    pnl = status.get("pnl") or {}
    if pnl:
        lines.append(f"pnl        total {_short(pnl.get('total_pnl'))} (fills {status.get('fills')})")
    ship = status.get("ship")
    if ship:
        error = f"  ({ship['error']})" if ship.get("error") else ""
        lag = f"lag {ship.get('lag_rows', 0)} rows / {ship.get('lag_s', 0)} s"
        lines.append(f"ship       {ship['state']}, {lag}{error}")
    last_run = status.get("last_run")
    if last_run:
        clean = "clean" if last_run.get("clean") else "NOT clean"
        lines.append(
            f"last run   {last_run['run_id']} {last_run['state']} ({clean}), ended {last_run.get('ended') or '-'}"
        )
    if log_lines:
        lines.append("")
        lines.extend(log_lines)
    return "\n".join(lines)


def status_line(status: Mapping[str, Any]) -> str:
    """One line: for logs and non-terminal output."""
    feed = status.get("feed") or {}
    trades = feed.get("last_trade") or {}
    last = " ".join(f"{i}={t['price']}" for i, t in trades.items()) or "-"
    positions = " ".join(f"{i}:{p['qty']}" for i, p in (status.get("positions") or {}).items()) or "flat"
    return (
        f"{time.strftime('%H:%M:%S')} health={(status.get('health') or {}).get('status')} "
        f"feed={feed.get('state')} last={last} entry={(status.get('trading') or {}).get('order_entry')} "
        f"open={len(status.get('open_orders') or [])} pos={positions} "
        f"pnl={(status.get('pnl') or {}).get('total_pnl')} fills={status.get('fills')}"
    )


class LogTail(logging.Handler):
    """Keeps the last ``size`` formatted log lines, for the live view."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record)[:200])


class HasStatus(Protocol):
    """Anything with a status snapshot (a running ``Kernel``)."""

    def status(self) -> dict[str, Any]:
        """The JSON-ready status."""
        ...


class StatusView:
    """Prints the kernel's status every interval: redrawn in place on a terminal, else one line.

    Redrawn in place, the view would wipe log lines written to the same terminal, so ``capture``
    shows the latest of them inside the view instead (``log_tail``).
    """

    def __init__(self, mode: str = "auto", out: TextIO | None = None, json_lines: bool = False) -> None:
        self.out = out or sys.stdout
        self.live = mode == "live" or (mode == "auto" and self.out.isatty())
        self.json_lines = json_lines
        self.log_tail: LogTail | None = None

    def capture(self, handler: logging.Handler) -> LogTail:
        """Show the records ``handler`` would print inside the view; return the tail handler."""
        tail = LogTail()
        tail.setFormatter(handler.formatter)
        self.log_tail = tail
        return tail

    def __call__(self, kernel: HasStatus) -> None:
        status = kernel.status()
        if self.live:
            tail = list(self.log_tail.lines) if self.log_tail is not None else []
            self.out.write("\x1b[H\x1b[2J" + render_text(status, tail) + "\n\n(Ctrl-C to stop)\n")
        elif self.json_lines:
            self.out.write(json.dumps({"status": status}, default=str) + "\n")
        else:
            self.out.write(status_line(status) + "\n")
        self.out.flush()
