"""Recorded market-data sessions a stand-in replays: read from a recording file, or built from the
real samples in ``tests/data/exchange_samples`` (see its SOURCES.md).

A recording file (``tradekernel market watch --record FILE``) is JSON lines: a header
``{"kind": "header", "venue", "instruments", "recorded_by"}``, then ``{"t_ns", "kind": "ws",
"frame"}`` per WebSocket text frame as received, and ``{"t_ns", "kind": "rest", "path", "status",
"body"}`` per REST answer. Frames keep their exact text (Kraken's numbers are JSON numbers whose text
matters to its checksum: nothing here parses and re-serialises a frame).

The builders below take each sample element's exact text out of the sample file. What they add
that is not in a capture is named in their docstring and in ``tests/data/sessions/SOURCES.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.standins.reference import BinanceLocalBook

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "exchange_samples"
SESSIONS_DIR = Path(__file__).resolve().parent.parent / "data" / "sessions"


@dataclass(frozen=True)
class WsFrame:
    """One WebSocket text frame and when it was received (ns since the epoch)."""

    t_ns: int
    text: str


@dataclass(frozen=True)
class RestAnswer:
    """One REST answer: the request's path (with query) and the response."""

    t_ns: int
    path: str
    status: int
    body: str


@dataclass(frozen=True)
class RecordedSession:
    """A venue's frames in the order received, and its REST answers."""

    venue: str
    instruments: tuple[str, ...]
    frames: tuple[WsFrame, ...]
    rest: tuple[RestAnswer, ...] = ()
    recorded_by: str = "tests.standins.sessions"
    notes: str = field(default="", compare=False)

    @classmethod
    def load(cls, path: str | Path) -> RecordedSession:
        """Read a recording file (format above); ``ValueError`` if it has no header first."""
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"{path}: empty recording")
        header = json.loads(lines[0])
        if header.get("kind") != "header":
            raise ValueError(f"{path}: the first line is not a header")
        frames: list[WsFrame] = []
        rest: list[RestAnswer] = []
        for number, line in enumerate(lines[1:], start=2):
            entry = json.loads(line)
            if entry.get("kind") == "ws":
                frames.append(WsFrame(int(entry["t_ns"]), str(entry["frame"])))
            elif entry.get("kind") == "rest":
                rest.append(RestAnswer(int(entry["t_ns"]), entry["path"], int(entry["status"]), entry["body"]))
            else:
                raise ValueError(f"{path}:{number}: unknown kind {entry.get('kind')!r}")
        return cls(
            header["venue"],
            tuple(header["instruments"]),
            tuple(frames),
            tuple(rest),
            header.get("recorded_by", ""),
            header.get("notes", ""),
        )

    def dump(self, path: str | Path) -> None:
        """Write the session as a recording file."""
        Path(path).write_text("".join(line + "\n" for line in self.lines()), encoding="utf-8")

    def lines(self) -> list[str]:
        """The recording's JSON lines, header first, then frames and answers in time order."""
        header: dict[str, Any] = {
            "kind": "header",
            "venue": self.venue,
            "instruments": list(self.instruments),
            "recorded_by": self.recorded_by,
        }
        if self.notes:
            header["notes"] = self.notes
        entries: list[tuple[int, int, dict[str, Any]]] = [
            (
                answer.t_ns,
                0,
                {
                    "t_ns": answer.t_ns,
                    "kind": "rest",
                    "path": answer.path,
                    "status": answer.status,
                    "body": answer.body,
                },
            )
            for answer in self.rest
        ]
        entries += [(frame.t_ns, 1, {"t_ns": frame.t_ns, "kind": "ws", "frame": frame.text}) for frame in self.frames]
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        return [json.dumps(header)] + [json.dumps(entry) for _, _, entry in entries]

    def rest_answer(self, prefix: str) -> RestAnswer | None:
        """The first REST answer whose path starts with ``prefix``."""
        return next((answer for answer in self.rest if answer.path.startswith(prefix)), None)


def json_elements(text: str) -> list[str]:
    """The exact text of each element of a JSON list (whitespace between elements dropped)."""
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    elements: list[str] = []
    while True:
        while text[index] in " \t\r\n,":
            index += 1
        if text[index] == "]":
            return elements
        _, end = decoder.raw_decode(text, index)
        elements.append(text[index:end])
        index = end


def sample_elements(relative: str) -> list[str]:
    """``json_elements`` of one sample file (``binance/bookTicker.json``), each ``compact``."""
    return [compact(text) for text in json_elements((SAMPLES / relative).read_text(encoding="utf-8"))]


def iso_ns(text: str) -> int:
    """An ISO-8601 UTC time (``2021-04-17T16:43:37.083117Z``) in ns since the epoch."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def compact(text: str) -> str:
    """A JSON text without insignificant whitespace (strings and numbers kept as written)."""
    out: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif char not in " \t\r\n":
            out.append(char)
    return "".join(out)


# -- Binance ------------------------------------------------------------------------------------

BINANCE_RULES: dict[str, tuple[str, str, str, str, str]] = {
    # symbol: (base, quote, tickSize, stepSize, minNotional): chosen to fit the recorded prices and
    # sizes (NKNUSDT prices on 0.0001 and whole-unit sizes; LRCBTC on 1 satoshi), not read off a capture.
    "NKNUSDT": ("NKN", "USDT", "0.00010000", "1.00000000", "5.00000000"),
    "LRCBTC": ("LRC", "BTC", "0.00000001", "1.00000000", "0.00010000"),
}


def binance_exchange_info(symbols: Iterable[str]) -> str:
    """A ``GET /api/v3/exchangeInfo`` answer (documented shape) for ``symbols`` of ``BINANCE_RULES``."""
    entries = []
    for symbol in symbols:
        base, quote, tick, step, notional = BINANCE_RULES[symbol]
        entries.append(
            {
                "symbol": symbol,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "isSpotTradingAllowed": True,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000.00000000", "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "90000000.00000000", "stepSize": step},
                    {
                        "filterType": "NOTIONAL",
                        "minNotional": notional,
                        "applyMinToMarket": True,
                        "maxNotional": "9000000.00000000",
                        "applyMaxToMarket": False,
                        "avgPriceMins": 5,
                    },
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
        )
    body = {
        "timezone": "UTC",
        "serverTime": 1633998512000,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": entries,
    }
    return json.dumps(body, separators=(",", ":"))


def _event_ms(text: str) -> int:
    body = json.loads(text)
    data = body.get("data", body)
    return int(data.get("E") or data.get("T") or 0)


def _binance(symbol: str, snapshot_file: str, depth_file: str, *, book_ticker: bool, trades: bool) -> RecordedSession:
    snapshot_text = (SAMPLES / snapshot_file).read_text(encoding="utf-8")
    depth = sample_elements(depth_file)
    local = BinanceLocalBook(json.loads(snapshot_text))
    tickers: dict[int, list[str]] = {}
    if book_ticker:
        for text in sample_elements("binance/bookTicker.json"):
            data = json.loads(text)["data"]
            if data["s"] == symbol:
                tickers.setdefault(int(data["u"]), []).append(text)
    frames: list[WsFrame] = []
    first_ms = _event_ms(depth[0])
    for text in depth:
        t_ns = _event_ms(text) * 1_000_000
        frames.append(WsFrame(t_ns, text))
        data = json.loads(text)["data"]
        local.apply(data)
        # A bookTicker whose u is this event's last id shows the book as it is now (checked).
        for ticker in tickers.get(int(data["u"]), []):
            quote = json.loads(ticker)["data"]
            top = local.book.top()
            if (Decimal(quote["b"]), Decimal(quote["B"]), Decimal(quote["a"]), Decimal(quote["A"])) == tuple(top):
                frames.append(WsFrame(t_ns, ticker))
    if trades:
        for text in sample_elements("binance/aggTrade.json"):
            data = json.loads(text)["data"]
            if data["s"] != symbol:
                continue
            frames.append(WsFrame(int(data["E"]) * 1_000_000, text))
            frames.append(WsFrame(int(data["E"]) * 1_000_000, _trade_from_agg(data)))
    rest = (
        RestAnswer(
            (first_ms - 1) * 1_000_000, f"/api/v3/exchangeInfo?symbol={symbol}", 200, binance_exchange_info([symbol])
        ),
        RestAnswer(first_ms * 1_000_000 + 1, f"/api/v3/depth?symbol={symbol}&limit=1000", 200, compact(snapshot_text)),
    )
    frames.sort(key=lambda frame: frame.t_ns)  # stable: the recorded order within one time
    return RecordedSession("binance", (symbol,), tuple(frames), rest)


def _trade_from_agg(data: dict[str, Any]) -> str:
    """The ``<symbol>@trade`` event of a single-trade ``aggTrade`` (``f == l``): same price, size,
    time and side, trade id ``f`` (derived, not captured)."""
    trade = {
        "e": "trade",
        "E": data["E"],
        "s": data["s"],
        "t": data["f"],
        "p": data["p"],
        "q": data["q"],
        "T": data["T"],
        "m": data["m"],
        "M": data["M"],
    }
    return json.dumps({"stream": f"{data['s'].lower()}@trade", "data": trade}, separators=(",", ":"))


def binance_nknusdt(*, book_ticker: bool = True, trades: bool = True) -> RecordedSession:
    """NKNUSDT, 2021-10-12: the REST depth snapshot (top 20 per side, lastUpdateId 499869752) and
    the 40 ``depthUpdate`` events after it (the first is covered by the snapshot). Also: the
    ``bookTicker`` events whose ``u`` closes a depth event (5 of 15; each equals the book there),
    the one NKNUSDT ``aggTrade`` and a ``trade`` derived from it, and a constructed
    ``exchangeInfo`` (``BINANCE_RULES``)."""
    return _binance(
        "NKNUSDT",
        "binance/depth_snapshot_rest.json",
        "binance/depthUpdate_sequence.json",
        book_ticker=book_ticker,
        trades=trades,
    )


def binance_lrcbtc() -> RecordedSession:
    """LRCBTC, 2021-10-12: the REST depth snapshot (lastUpdateId 259345543) and 15 ``depthUpdate``
    events starting before it (the first two are covered by the snapshot), ``exchangeInfo`` as
    above. The LRCBTC ``aggTrade`` is recorded after the depth events."""
    return _binance(
        "LRCBTC",
        "binance/depth_snapshot_rest_lrcbtc.json",
        "binance/depthUpdate_lrcbtc_buffered.json",
        book_ticker=False,
        trades=True,
    )


def binance_nknusdt_paper(
    *, rounds: int = 12, every_ms: int = 500, start_after_ms: int = 2500, qty: str = "20000.00000000"
) -> RecordedSession:
    """``binance_nknusdt`` for paper trading: after the recorded events, ``rounds`` **synthetic**
    ``trade`` events every ``every_ms`` (from ``start_after_ms`` after the last recorded event),
    alternating a taker sell at 0.3500 and a taker buy at 0.3550 (each ``qty``): prices 0.0021
    below the recorded best bid and 0.0026 above the best ask, so they trade through any quote a
    market maker rests inside or near the recorded spread (0.3521 / 0.3524)."""
    base = binance_nknusdt(book_ticker=True, trades=True)
    last_ns = base.frames[-1].t_ns
    first_ms = last_ns // 1_000_000 + start_after_ms
    extra: list[WsFrame] = []
    for number in range(rounds):
        t_ms = first_ms + number * every_ms
        sell = number % 2 == 0
        trade = {
            "e": "trade",
            "E": t_ms,
            "s": "NKNUSDT",
            "t": 900_000_000 + number,
            "p": "0.35000000" if sell else "0.35500000",
            "q": qty,
            "T": t_ms,
            "m": sell,  # buyer is maker: the taker sold
            "M": True,
        }
        extra.append(
            WsFrame(t_ms * 1_000_000, json.dumps({"stream": "nknusdt@trade", "data": trade}, separators=(",", ":")))
        )
    return replace(base, frames=base.frames + tuple(extra))


# -- Coinbase -----------------------------------------------------------------------------------


def coinbase_band_gbp() -> RecordedSession:
    """BAND-GBP, 2021-04-17: its ``ticker`` (the last trade before the book, 16:43:30), the level2
    ``snapshot`` (152 bids / 166 asks) and the 30 ``l2update`` after it. No BAND-GBP ``match`` was
    captured; the snapshot carries no time and is placed 1 ms before the first update."""
    ticker = [text for text in sample_elements("coinbase/ticker.json") if '"BAND-GBP"' in text]
    updates = sample_elements("coinbase/l2update_sequence.json")
    first_ns = iso_ns(json.loads(updates[0])["time"])
    snapshot = compact((SAMPLES / "coinbase/level2_snapshot.json").read_text(encoding="utf-8"))
    frames = [WsFrame(iso_ns(json.loads(text)["time"]), text) for text in ticker]
    frames.append(WsFrame(first_ns - 1_000_000, snapshot))
    frames += [WsFrame(iso_ns(json.loads(text)["time"]), text) for text in updates]
    return RecordedSession("coinbase", ("BAND-GBP",), tuple(frames))


# -- Kraken -------------------------------------------------------------------------------------


def kraken_btc_usd() -> RecordedSession:
    """BTC/USD, 2023-07-30 (Kraken v2, depth 10): the ``book`` snapshot and its first 30 updates,
    every checksum valid. The snapshot carries no time and is placed 1 ms before the first update."""
    messages = sample_elements("kraken/book_v2_snapshot_and_updates.json")
    times = [json.loads(text)["data"][0].get("timestamp") for text in messages]
    first_ns = iso_ns(next(t for t in times if t))
    frames = [
        WsFrame(first_ns - 1_000_000 if t is None else iso_ns(t), text) for text, t in zip(messages, times, strict=True)
    ]
    return RecordedSession("kraken", ("BTC/USD",), tuple(frames))


SESSIONS: dict[str, Callable[[], RecordedSession]] = {
    "binance_nknusdt": binance_nknusdt,
    "binance_lrcbtc": binance_lrcbtc,
    "binance_nknusdt_paper": binance_nknusdt_paper,
    "coinbase_band_gbp": coinbase_band_gbp,
    "kraken_btc_usd": kraken_btc_usd,
}
"""The sessions built from the samples, by name."""


def session(name_or_path: str) -> RecordedSession:
    """A session by name (``SESSIONS``), else read from the recording file at that path."""
    builder = SESSIONS.get(name_or_path)
    return builder() if builder is not None else RecordedSession.load(name_or_path)
