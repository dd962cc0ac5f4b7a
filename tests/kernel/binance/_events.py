"""An ``executionReport`` as the user data stream sends it, for the report tests."""

from __future__ import annotations

from typing import Any

import msgspec

from kernel.binance.wire import ExecutionReportEvent, decode_event

OURS = "o7-1-000001"


def event(**changes: Any) -> ExecutionReportEvent:
    """A limit buy of 1 BTC at 100 as the user data stream sends it, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "e": "executionReport",
        "E": 1_700_000_000_100,
        "s": "BTCUSDT",
        "c": OURS,
        "S": "BUY",
        "o": "LIMIT",
        "f": "GTC",
        "q": "1.00000000",
        "p": "100.00000000",
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": "",
        "x": "NEW",
        "X": "NEW",
        "r": "NONE",
        "i": 555,
        "l": "0.00000000",
        "z": "0.00000000",
        "L": "0.00000000",
        "n": "0",
        "N": None,
        "T": 1_700_000_000_000,
        "t": -1,
        "I": 9,
        "w": True,
        "m": False,
        "M": False,
        "O": 1_700_000_000_000,
        "Z": "0.00000000",
        "Y": "0.00000000",
        "Q": "0.00000000",
        "V": "NONE",
    }
    fields.update(changes)
    decoded = decode_event(msgspec.json.encode(fields))
    assert isinstance(decoded, ExecutionReportEvent)
    return decoded
