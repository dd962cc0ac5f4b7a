"""Status for people: the text of ``tradekernel status``, the one-line view, and the pieces the live
view (``kernel/live_view.py``) is built from.

Every decimal is shown through ``kernel.display``: prices to the instrument's tick, quantities to
its lot, P&L and fees to its quote currency. ``rules`` are the instruments' trading rules when the
kernel knows them (a running kernel); without them (a journal read offline) the defaults apply.
The JSON forms of status keep the exact strings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from kernel.clock import wall_ms
from kernel.display import Precision, quote_currency
from kernel.paper_defaults import TradingRules

Rules = Mapping[str, TradingRules]


def rules_in(status: Mapping[str, Any]) -> dict[str, TradingRules]:
    """The trading rules a running kernel's status carries (``"rules"``: tick and lot size per
    instrument, as exact strings); empty for a journal's status or before the venue's rules."""
    known = status.get("rules") or {}
    return {i: TradingRules(Decimal(r["tick_size"]), Decimal(r["lot_size"])) for i, r in known.items()}


def precision(instrument: str, rules: Rules | None = None) -> Precision:
    """How ``instrument``'s numbers are shown: from its rules when known, else the defaults."""
    return Precision.of(instrument, None if rules is None else rules.get(instrument))


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def instruments_of(status: Mapping[str, Any]) -> list[str]:
    """Every instrument ``status`` mentions (positions, feed, open orders), sorted."""
    feed = status.get("feed") or {}
    named = {*(status.get("positions") or {}), *(feed.get("instruments") or ()), *(feed.get("last_trade") or {})}
    named.update(order["instrument"] for order in status.get("open_orders") or ())
    return sorted(named)


def money_precision(status: Mapping[str, Any], rules: Rules | None = None) -> tuple[Precision, str]:
    """The precision of the P&L totals and their currency (``""`` when instruments quote in
    several, or none is known): the finest money precision among ``status``'s instruments
    (2 places when it names none)."""
    instruments = instruments_of(status)
    if not instruments:
        return Precision(0, 0, 2), ""
    finest = max((precision(i, rules) for i in instruments), key=lambda p: p.money_places)
    currencies = {quote_currency(i) for i in instruments}
    return finest, currencies.pop() if len(currencies) == 1 else ""


def trade_prices(status: Mapping[str, Any], rules: Rules | None = None) -> list[tuple[str, str]]:
    """``("BTCUSDT", "39433.60")``: each instrument's last trade price, to the tick."""
    trades = (status.get("feed") or {}).get("last_trade") or {}
    return [(i, precision(i, rules).price(_decimal(t["price"]))) for i, t in trades.items()]


def order_text(order: Mapping[str, Any], rules: Rules | None = None) -> tuple[str, str, str]:
    """An open order's ``leaves/qty``, price (``market``) and instrument, quantized."""
    shown = precision(order["instrument"], rules)
    size = f"{shown.qty(_decimal(order['leaves_qty']))}/{shown.qty(_decimal(order['qty']))}"
    price = "market" if order.get("price") is None else shown.price(_decimal(order["price"]))
    return size, price, order["instrument"]


def position_text(instrument: str, position: Mapping[str, Any], rules: Rules | None = None) -> str:
    """``BTCUSDT -0.00300 @ 39456.80  realized 0.00  unrealized -0.01  fees 0.01``."""
    shown = precision(instrument, rules)
    avg = "" if position.get("avg_px") is None else f" @ {shown.price(_decimal(position['avg_px']))}"
    return (
        f"{instrument} {shown.qty(_decimal(position['qty']))}{avg}  "
        f"realized {shown.money(_decimal(position['realized_pnl']))}  "
        f"unrealized {shown.money(_decimal(position['unrealized_pnl']))}  "
        f"fees {shown.money(_decimal(position['fees']))}"
    )


def pnl_text(status: Mapping[str, Any], rules: Rules | None = None) -> str:
    """``total -0.02 USDT  realized 0.00  unrealized -0.01  fees 0.01  (fills 3)``."""
    pnl = status.get("pnl") or {}
    shown, currency = money_precision(status, rules)
    unit = f" {currency}" if currency else ""
    return (
        f"total {shown.money(_decimal(pnl.get('total_pnl')))}{unit}  "
        f"realized {shown.money(_decimal(pnl.get('realized_pnl')))}  "
        f"unrealized {shown.money(_decimal(pnl.get('unrealized_pnl')))}  "
        f"fees {shown.money(_decimal(pnl.get('fees')))}  (fills {status.get('fills')})"
    )


def render_text(status: Mapping[str, Any], log_lines: Sequence[str] = (), rules: Rules | None = None) -> str:
    """A few lines for a terminal (``tradekernel status``): what an operator looks at first (then
    ``log_lines``, if any). Decimals are quantized (``rules``: the instruments' trading rules;
    default: those the status carries)."""
    rules = rules_in(status) if rules is None else rules
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
        prices = "  ".join(f"{i} last {price}" for i, price in trade_prices(status, rules))
        if not prices and "last_trade" in feed:
            prices = "no trade yet"
        lines.append(f"feed       {feed.get('state')}  {prices}".rstrip())
    orders = status.get("open_orders") or []
    lines.append(f"open       {len(orders)} order(s)")
    for order in orders[:10]:
        size, price, instrument = order_text(order, rules)
        lines.append(
            f"           {order['client_order_id']}  {order['side']:<4} {size} {instrument} @ {price}  {order['state']}"
        )
    if len(orders) > 10:
        lines.append(f"           ... and {len(orders) - 10} more")
    for instrument, pos in (status.get("positions") or {}).items():
        lines.append(f"position   {position_text(instrument, pos, rules)}")
    if status.get("pnl"):
        lines.append(f"pnl        {pnl_text(status, rules)}")
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


def utc_stamp(ms: int) -> str:
    """Milliseconds since the epoch as ``2026-12-03T02:51:07.123Z`` (what log lines start with)."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def status_line(status: Mapping[str, Any], rules: Rules | None = None, *, now_ms: int | None = None) -> str:
    """One line, stamped in UTC (``now_ms``, default now): for logs and non-terminal output."""
    rules = rules_in(status) if rules is None else rules
    feed = status.get("feed") or {}
    last = " ".join(f"{i}={price}" for i, price in trade_prices(status, rules)) or "-"
    positions = (
        " ".join(
            f"{i}:{precision(i, rules).qty(_decimal(p['qty']))}" for i, p in (status.get("positions") or {}).items()
        )
        or "flat"
    )
    total = (status.get("pnl") or {}).get("total_pnl")
    shown, _ = money_precision(status, rules)
    return (
        f"{utc_stamp(wall_ms() if now_ms is None else now_ms)} health={(status.get('health') or {}).get('status')} "
        f"feed={feed.get('state')} last={last} entry={(status.get('trading') or {}).get('order_entry')} "
        f"open={len(status.get('open_orders') or [])} pos={positions} "
        f"pnl={shown.money(_decimal(total))} fills={status.get('fills')}"
    )
