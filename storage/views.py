"""The journal's reader views (migration 7): fills, orders, positions and trading states as plain
rows, with ISO-8601 UTC times next to the raw nanosecond columns, for Datasette, sqlite-utils or
any SQLite shell (docs/audit.md lists every column).

A view is part of the schema version that created it: these definitions are what migration 7
writes and must not change under it; a later change is a new migration with its own definitions.

Rules the views keep:

* a time is ``time`` (or ``*_time``): ``YYYY-MM-DDTHH:MM:SS.mmmZ``, UTC, cut (not rounded) to the
  millisecond, computed with integer arithmetic from the raw ``ts`` column shown beside it as
  ``ts_ns`` (nanoseconds since the Unix epoch);
* decimals stay the exact TEXT the journal holds (``"0.001"``), never CAST to REAL;
* the machines' monotonic-clock values (``now_ms``, ``since_ms``, ``deadline_ms``, ...) are left
  out: they count from an arbitrary point of one process and mean nothing to an auditor. (The
  ``entities`` view of migration 2 is left as it is: ``AuditReader.entities`` and the commands
  built on it read the machines' data through it, whole.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

MONOTONIC_KEYS = (
    "now_ms",
    "since_ms",
    "deadline_ms",
    "connected_ms",
    "subscribed_ms",
    "streaming_since_ms",
    "started_ms",
    "ended_ms",
    "timer.due_ms",
)
"""Keys of transition and entity data that hold monotonic-clock instants: removed in the views."""

HALT_TRIGGERS = ("halt", "risk_breach", "health_unhealthy", "journal_failed")
"""The trading machine's triggers that start a halt (or are recorded while one is under way)."""


def iso(ns: str) -> str:
    """SQL for the ISO-8601 UTC time (millisecond, cut) of the integer nanoseconds ``ns``."""
    return (
        f"strftime('%Y-%m-%dT%H:%M:%S', ({ns}) / 1000000000, 'unixepoch')"
        f" || printf('.%03dZ', (({ns}) / 1000000) % 1000)"
    )


def iso_ms(ms: str) -> str:
    """SQL for the ISO-8601 UTC time of the integer milliseconds since the epoch ``ms``."""
    return f"strftime('%Y-%m-%dT%H:%M:%S', ({ms}) / 1000, 'unixepoch') || printf('.%03dZ', ({ms}) % 1000)"


def _without_monotonic(data: str) -> str:
    paths = ", ".join(f"'$.{key}'" for key in MONOTONIC_KEYS)
    return f"json_remove({data}, {paths})"


def _field(data: str, name: str) -> str:
    return f"json_extract({data}, '$.{name}') AS {name}"


TRANSITION_LOG_V7 = f"""
SELECT seq, {iso("ts")} AS time, ts AS ts_ns, run, machine, entity, trigger, source, dest,
       {_without_monotonic("data")} AS data
FROM transitions
"""

RUNS_V7 = f"""
SELECT CAST(entity AS INTEGER) AS run,
       state,
       {iso("json_extract(data, '$.started_ns')")} AS started,
       json_extract(data, '$.started_ns') AS started_ns,
       {iso("json_extract(data, '$.ended_ns')")} AS ended,
       json_extract(data, '$.ended_ns') AS ended_ns,
       json_extract(data, '$.pid') AS pid,
       json_extract(data, '$.host') AS host,
       json_extract(data, '$.version') AS version,
       json_extract(data, '$.detected_by_run') AS crash_detected_by_run,
       seq AS last_seq
FROM (SELECT entity, state, seq, data FROM live_entities WHERE machine = 'run'
      UNION ALL
      SELECT entity, state, seq, data FROM ended_entities WHERE machine = 'run')
ORDER BY run
"""

ANOMALY_LOG_V7 = f"""
SELECT id, {iso("ts")} AS time, ts AS ts_ns, run, source, kind, reason, sample
FROM anomalies
"""

# One row per applied fill. The order's terms come from its current-state row (one primary-key
# lookup in each table); a repeated trade_id on one order (a duplicate report the order machine
# recorded without applying it) is listed once, at its first seq, as AuditReader.fills does.
FILLS_V7 = f"""
SELECT seq, time, ts_ns, run, client_order_id, instrument, side, qty, price, fee, liquidity,
       trade_id, venue_time, trigger
FROM (
    SELECT t.seq,
           {iso("t.ts")} AS time,
           t.ts AS ts_ns,
           t.run,
           t.entity AS client_order_id,
           json_extract(COALESCE(l.data, e.data), '$.instrument') AS instrument,
           json_extract(COALESCE(l.data, e.data), '$.side') AS side,
           json_extract(t.data, '$.qty') AS qty,
           json_extract(t.data, '$.price') AS price,
           COALESCE(json_extract(t.data, '$.fee'), '0') AS fee,
           json_extract(t.data, '$.liquidity') AS liquidity,
           json_extract(t.data, '$.trade_id') AS trade_id,
           CASE WHEN json_extract(t.data, '$.ts_ms') > 0
                THEN {iso_ms("json_extract(t.data, '$.ts_ms')")} END AS venue_time,
           t.trigger,
           row_number() OVER (
               PARTITION BY t.entity, json_extract(t.data, '$.trade_id') ORDER BY t.seq
           ) AS nth
    FROM transitions AS t
    LEFT JOIN live_entities AS l ON l.machine = 'order' AND l.entity = t.entity
    LEFT JOIN ended_entities AS e ON e.machine = 'order' AND e.entity = t.entity
    WHERE t.machine = 'order' AND t.trigger IN ('fill', 'reconcile_fill')
)
WHERE nth = 1
ORDER BY seq
"""

_ORDER_FIELDS = (
    "instrument",
    "side",
    "type",
    "tif",
    "qty",
    "price",
    "cum_qty",
    "leaves_qty",
    "avg_px",
    "fees",
    "venue_order_id",
    "tag",
    "origin",
    "reason",
)

# The create row of each order is found through the partial index transitions_creates.
ORDERS_V7 = f"""
SELECT o.entity AS client_order_id,
       o.state,
       o.live,
       {", ".join(_field("o.data", name) for name in _ORDER_FIELDS)},
       {iso("c.ts")} AS created_time,
       c.ts AS created_ts_ns,
       o.seq AS last_seq,
       {iso("t.ts")} AS last_time,
       t.ts AS last_ts_ns
FROM (SELECT entity, state, seq, 1 AS live, data FROM live_entities WHERE machine = 'order'
      UNION ALL
      SELECT entity, state, seq, 0 AS live, data FROM ended_entities WHERE machine = 'order') AS o
LEFT JOIN transitions AS t ON t.seq = o.seq
LEFT JOIN transitions AS c
       ON c.trigger = 'create' AND c.machine = 'order' AND c.entity = o.entity
"""

POSITIONS_V7 = f"""
SELECT p.entity AS instrument,
       p.state,
       {", ".join(_field("p.data", name) for name in ("qty", "cost", "realized_pnl", "fees", "cash", "fills"))},
       json_extract(p.data, '$.last_trade_id') AS last_trade_id,
       p.seq AS last_seq,
       {iso("t.ts")} AS last_time,
       t.ts AS last_ts_ns
FROM (SELECT entity, state, seq, data FROM live_entities WHERE machine = 'position'
      UNION ALL
      SELECT entity, state, seq, data FROM ended_entities WHERE machine = 'position') AS p
LEFT JOIN transitions AS t ON t.seq = p.seq
"""

# The reason as the trading machine records it (machines/trading.py ``_CAUSES``): a halt cause
# journals its parts (a risk breach: limit, value, threshold), the reason is composed from them.
_TRADING_REASON = """
CASE trigger
    WHEN 'risk_breach' THEN 'risk breach: ' || json_extract(data, '$.limit') || ' '
        || json_extract(data, '$.value')
        || COALESCE(' > ' || json_extract(data, '$.threshold'), '')
        || COALESCE('; ' || json_extract(data, '$.reason'), '')
    WHEN 'health_unhealthy' THEN json_extract(data, '$.component') || ' unhealthy'
        || COALESCE(': ' || json_extract(data, '$.reason'), '')
    WHEN 'journal_failed' THEN 'journal failed: ' || json_extract(data, '$.reason')
    ELSE json_extract(data, '$.reason')
END"""

TRADING_STATES_V7 = f"""
SELECT seq, {iso("ts")} AS time, ts AS ts_ns, run, source, dest, trigger,
       {_TRADING_REASON} AS reason,
       json_extract(data, '$.flatten') AS flatten
FROM transitions
WHERE machine = 'trading'
"""

VIEWS_V7: dict[str, str] = {
    "transition_log": TRANSITION_LOG_V7,
    "runs": RUNS_V7,
    "anomaly_log": ANOMALY_LOG_V7,
    "fills": FILLS_V7,
    "orders": ORDERS_V7,
    "positions": POSITIONS_V7,
    "trading_states": TRADING_STATES_V7,
}
"""Every view migration 7 creates or replaces (name → SELECT). ``entities`` stays as migration 2
made it: the audit reader's API reads the machines' data through it, as they hold it."""


def create_views_v7(db: sqlite_utils.Database) -> None:
    """Migration 7: two small partial indexes and the views (existing ones replaced).

    ``transitions_creates`` finds an entity's ``create`` row (one index entry per entity, for the
    ``orders`` view's ``created_time``); ``transitions_trading`` the trading machine's rows (a few
    per run, for ``trading_states``): neither view reads the rest of the history."""
    db.execute("CREATE INDEX transitions_creates ON transitions (machine, entity) WHERE trigger = 'create'")
    db.execute("CREATE INDEX transitions_trading ON transitions (seq) WHERE machine = 'trading'")
    for name, select in VIEWS_V7.items():
        db.execute(f"DROP VIEW IF EXISTS {name}")
        db.execute(f"CREATE VIEW {name} AS {select.strip()}")
