"""The fleet store's reader views (migration ``m003_reader_views``): the journal's ``fills``,
``orders``, ``positions`` and ``trading_states`` (``storage/views.py``, docs/audit.md) for
PostgreSQL, with the same column names plus ``kernel_id``.

Times follow the journal's views: ``time`` (``*_time``) is ``YYYY-MM-DDTHH:MM:SS.mmmZ`` UTC, cut
to the millisecond, next to the raw nanoseconds (``ts_ns``); decimals are the exact text the
journal holds (``->>`` of the ``jsonb`` copy), never cast to a float.

The store holds transitions, not the journal's current-state tables, so ``orders`` and
``positions`` are computed from transitions: the state is the ``dest`` of the entity's last
transition (``DISTINCT ON``), the terms come from its ``create`` row and later ``replace`` rows,
and the sums (``cum_qty``, ``fees``, ``qty``, ``cash``, ``fills``) are ``numeric`` sums of the
de-duplicated fills, printed as text (an order that ended has ``leaves_qty`` 0). What only the
machine's fold knows — an order's ``avg_px``
and ``reason``, a position's average-cost ``cost`` and ``realized_pnl`` — is NULL here:
``tradekernel audit entities --db postgresql://...`` replays the machines and shows them exactly.
"""

from __future__ import annotations


def iso(ns: str) -> str:
    """SQL for the ISO-8601 UTC time (millisecond, cut) of the integer nanoseconds ``ns``."""
    return (
        f"to_char(TIMESTAMP '1970-01-01' + (({ns}) / 1000000) * INTERVAL '1 millisecond',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')'
    )


def _numeric_text(expression: str) -> str:
    # trim_scale (PostgreSQL 13+) drops the zeros a sum may add; the journal's decimals are text.
    return f"trim_scale({expression})::text"


# One row per applied fill; a repeated trade_id on one order is listed once, at its first seq.
FILLS = f"""
SELECT kernel_id, seq, time, ts_ns, run, client_order_id, instrument, side, qty, price, fee, liquidity,
       trade_id, venue_time, trigger
FROM (
    SELECT t.kernel_id,
           t.seq,
           {iso("t.ts")} AS time,
           t.ts AS ts_ns,
           t.run,
           t.entity AS client_order_id,
           c.data_json->>'instrument' AS instrument,
           c.data_json->>'side' AS side,
           t.data_json->>'qty' AS qty,
           t.data_json->>'price' AS price,
           COALESCE(t.data_json->>'fee', '0') AS fee,
           t.data_json->>'liquidity' AS liquidity,
           t.data_json->>'trade_id' AS trade_id,
           CASE WHEN (t.data_json->>'ts_ms')::bigint > 0
                THEN {iso("(t.data_json->>'ts_ms')::bigint * 1000000")} END AS venue_time,
           t.trigger,
           row_number() OVER (
               PARTITION BY t.kernel_id, t.entity, t.data_json->>'trade_id' ORDER BY t.seq
           ) AS nth
    FROM transitions AS t
    LEFT JOIN transitions AS c
           ON c.kernel_id = t.kernel_id AND c.machine = 'order' AND c.entity = t.entity AND c.trigger = 'create'
    WHERE t.machine = 'order' AND t.trigger IN ('fill', 'reconcile_fill')
) AS f
WHERE nth = 1
"""

_TERMINAL_ORDER_STATES = "('filled', 'canceled', 'rejected', 'expired', 'denied')"

ORDERS = f"""
WITH last AS (
    SELECT DISTINCT ON (kernel_id, entity) kernel_id, entity, dest, seq, ts
    FROM transitions WHERE machine = 'order'
    ORDER BY kernel_id, entity, seq DESC
), terms AS (
    SELECT DISTINCT ON (kernel_id, entity) kernel_id, entity,
           data_json->>'qty' AS qty, data_json->>'price' AS price
    FROM transitions
    WHERE machine = 'order' AND trigger IN ('create', 'replace', 'reconcile_replace')
    ORDER BY kernel_id, entity, seq DESC
), venue AS (
    SELECT DISTINCT ON (kernel_id, entity) kernel_id, entity, data_json->>'venue_order_id' AS venue_order_id
    FROM transitions
    WHERE machine = 'order' AND data_json ? 'venue_order_id' AND trigger <> 'replace'
    ORDER BY kernel_id, entity, seq DESC
), filled AS (
    SELECT kernel_id, client_order_id AS entity, sum(qty::numeric) AS cum_qty, sum(fee::numeric) AS fees
    FROM fills GROUP BY kernel_id, client_order_id
)
SELECT l.kernel_id,
       l.entity AS client_order_id,
       l.dest AS state,
       CASE WHEN l.dest IN {_TERMINAL_ORDER_STATES} THEN 0 ELSE 1 END AS live,
       c.data_json->>'instrument' AS instrument,
       c.data_json->>'side' AS side,
       c.data_json->>'type' AS type,
       c.data_json->>'tif' AS tif,
       terms.qty,
       terms.price,
       {_numeric_text("COALESCE(filled.cum_qty, 0)")} AS cum_qty,
       CASE WHEN l.dest IN {_TERMINAL_ORDER_STATES} THEN '0'
            ELSE {_numeric_text("terms.qty::numeric - COALESCE(filled.cum_qty, 0)")} END AS leaves_qty,
       NULL::text AS avg_px,
       {_numeric_text("COALESCE(filled.fees, 0)")} AS fees,
       venue.venue_order_id,
       c.data_json->>'tag' AS tag,
       COALESCE(c.data_json->>'origin', 'kernel') AS origin,
       NULL::text AS reason,
       {iso("c.ts")} AS created_time,
       c.ts AS created_ts_ns,
       l.seq AS last_seq,
       {iso("l.ts")} AS last_time,
       l.ts AS last_ts_ns
FROM last AS l
LEFT JOIN transitions AS c
       ON c.kernel_id = l.kernel_id AND c.machine = 'order' AND c.entity = l.entity AND c.trigger = 'create'
LEFT JOIN terms ON terms.kernel_id = l.kernel_id AND terms.entity = l.entity
LEFT JOIN venue ON venue.kernel_id = l.kernel_id AND venue.entity = l.entity
LEFT JOIN filled ON filled.kernel_id = l.kernel_id AND filled.entity = l.entity
"""

POSITIONS = f"""
WITH last AS (
    SELECT DISTINCT ON (kernel_id, entity) kernel_id, entity, dest, seq, ts
    FROM transitions WHERE machine = 'position'
    ORDER BY kernel_id, entity, seq DESC
), applied AS (
    SELECT kernel_id, entity,
           sum(CASE data_json->>'side' WHEN 'buy' THEN 1 ELSE -1 END * (data_json->>'qty')::numeric) AS qty,
           sum(COALESCE((data_json->>'fee')::numeric, 0)) AS fees,
           sum(CASE data_json->>'side' WHEN 'buy' THEN -1 ELSE 1 END
               * (data_json->>'qty')::numeric * (data_json->>'price')::numeric
               - COALESCE((data_json->>'fee')::numeric, 0)) AS cash,
           count(*) AS fills,
           (array_agg(data_json->>'trade_id' ORDER BY seq DESC))[1] AS last_trade_id
    FROM transitions WHERE machine = 'position' AND trigger <> 'create'
    GROUP BY kernel_id, entity
)
SELECT l.kernel_id,
       l.entity AS instrument,
       l.dest AS state,
       {_numeric_text("COALESCE(a.qty, 0)")} AS qty,
       NULL::text AS cost,
       NULL::text AS realized_pnl,
       {_numeric_text("COALESCE(a.fees, 0)")} AS fees,
       {_numeric_text("COALESCE(a.cash, 0)")} AS cash,
       COALESCE(a.fills, 0) AS fills,
       a.last_trade_id,
       l.seq AS last_seq,
       {iso("l.ts")} AS last_time,
       l.ts AS last_ts_ns
FROM last AS l
LEFT JOIN applied AS a ON a.kernel_id = l.kernel_id AND a.entity = l.entity
"""

# The reason as the trading machine records it (as storage/views.py composes it for the journal).
_TRADING_REASON = """
CASE trigger
    WHEN 'risk_breach' THEN 'risk breach: ' || (data_json->>'limit') || ' ' || (data_json->>'value')
        || COALESCE(' > ' || (data_json->>'threshold'), '')
        || COALESCE('; ' || (data_json->>'reason'), '')
    WHEN 'health_unhealthy' THEN (data_json->>'component') || ' unhealthy'
        || COALESCE(': ' || (data_json->>'reason'), '')
    WHEN 'journal_failed' THEN 'journal failed: ' || (data_json->>'reason')
    ELSE data_json->>'reason'
END"""

TRADING_STATES = f"""
SELECT kernel_id, seq, {iso("ts")} AS time, ts AS ts_ns, run, source, dest, trigger,
       {_TRADING_REASON} AS reason,
       (data_json->>'flatten')::boolean AS flatten
FROM transitions
WHERE machine = 'trading'
"""

VIEWS: dict[str, str] = {
    "fills": FILLS,
    "orders": ORDERS,
    "positions": POSITIONS,
    "trading_states": TRADING_STATES,
}
"""The views migration 3 creates (name → SELECT), in dependency order (``orders`` reads ``fills``)."""

MIGRATION_SQL = (
    "CREATE INDEX transitions_trading ON transitions (kernel_id, seq) WHERE machine = 'trading';\n"
    "CREATE INDEX transitions_creates ON transitions (kernel_id, machine, entity) WHERE trigger = 'create';\n"
    + "".join(f"CREATE VIEW {name} AS {select.strip()};\n" for name, select in VIEWS.items())
)
"""Migration ``m003_reader_views``: two partial indexes and the views."""
