"""The live view (``kernel/live_view.py``, ``StatusView``): frames that fit the terminal by dropping
detail, the final ``stopped`` frame, log lines printed once above the region, and the lines and
JSON modes. The pseudo-terminal test of a whole run is ``test_live_view_tmux.py``."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import pytest
from rich.console import Console

from kernel.live_view import frame
from kernel.status import StatusView
from tests.kernel.test_live_view_numbers import STATUS

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
CORE = ("kernel ", "health ", "trading ", "feed ", "P&L ")


def order(n: int) -> dict[str, Any]:
    return {**STATUS["open_orders"][0], "client_order_id": f"o-{n}"}


def many_orders(count: int) -> dict[str, Any]:
    return {**STATUS, "open_orders": [order(n) for n in range(1, count + 1)]}


def drawn(status: dict[str, Any], width: int, height: int, **options: Any) -> list[str]:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    console.print(frame(status, width=width, height=height, **options))
    return [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]


def test_at_80x24_thirty_orders_are_cut_to_what_fits() -> None:
    lines = drawn(many_orders(30), 80, 24)
    assert len(lines) == 23  # one row stays free: a redraw never scrolls
    assert [line.split()[0] for line in lines[:7]] == [
        "kernel",
        "health",
        "trading",
        "feed",
        "P&L",
        "orders",
        "position",
    ]
    assert lines[5] == "orders   30 open"
    assert lines[7].split() == ["order", "side", "leaves/qty", "price", "instrument", "state"]  # no tag below 100
    assert [line.split()[0] for line in lines[8:22]] == [f"o-{n}" for n in range(1, 15)]
    assert lines[22] == "... and 16 more"
    assert all(len(line) <= 80 for line in lines)


def test_a_small_terminal_keeps_the_five_core_lines() -> None:
    lines = drawn(many_orders(3), 40, 6)
    assert [line.split()[0] for line in lines] == ["kernel", "health", "trading", "feed", "P&L"]
    assert all(len(line) <= 40 for line in lines)
    tiny = drawn(many_orders(3), 30, 3)  # smaller than the core: the core still comes whole
    assert [line.split()[0] for line in tiny] == ["kernel", "health", "trading", "feed", "P&L"]


def test_with_room_to_spare_every_order_and_the_key_hint_show() -> None:
    lines = drawn(many_orders(2), 120, 40)
    assert [line.split()[0] for line in lines[8:10]] == ["o-1", "o-2"]
    assert lines[7].split()[-1] == "tag"
    assert lines[-1] == "Ctrl-C to stop (twice: without waiting for cancel acks)"
    assert len(lines) == 11


def test_the_final_frame_says_stopped_and_drops_the_key_hint() -> None:
    lines = drawn(many_orders(1), 100, 24, stopped="Ctrl-C")
    assert lines[0] == "kernel   stopped (Ctrl-C)  run 3  pid 4242  journal ./k.db"
    assert not any("Ctrl-C to stop" in line for line in lines)


class Kernel:
    def __init__(self) -> None:
        self.current: dict[str, Any] = STATUS

    def status(self) -> dict[str, Any]:
        return self.current


def test_the_status_view_redraws_in_place_and_ends_with_a_stopped_frame() -> None:
    out = io.StringIO()
    view = StatusView("live", out=out)
    kernel = Kernel()
    for _ in range(3):
        view(kernel)
    kernel.current = {**STATUS, "open_orders": []}
    view.close(kernel, "--duration 5 s elapsed")
    view.close(kernel, "again")  # idempotent
    text = ESCAPES.sub("", out.getvalue())
    assert text.count("kernel   running  run 3") == 3
    assert text.count("kernel   stopped (--duration 5 s elapsed)  run 3") == 1
    assert "again" not in text
    assert "\x1b[2K" in out.getvalue()
    assert "\x1b[1A" in out.getvalue()
    assert [line.rstrip() for line in text.splitlines()[-2:]] == [
        "orders   0 open",
        "position BTCUSDT -0.00300 @ 39472.88  realized 0.00  unrealized -0.02  fees 0.01",
    ]


def test_log_records_print_once_above_the_view_and_to_the_stream_when_it_is_not_shown() -> None:
    out, err = io.StringIO(), io.StringIO()
    view = StatusView("live", out=out)
    original = logging.StreamHandler(err)
    original.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler = view.capture(original)
    logger = logging.getLogger("tests.live_view")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("before the view")
        view(Kernel())
        logger.warning("while shown")
        view(Kernel())
        view.close(Kernel(), "done")
        logger.warning("after the view")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert err.getvalue() == "WARNING before the view\nWARNING after the view\n"
    text = ESCAPES.sub("", out.getvalue())
    assert text.count("WARNING while shown") == 1
    assert text.index("WARNING while shown") < text.index("kernel   stopped (done)")


def test_lines_and_json_modes_write_one_line_per_interval() -> None:
    out = io.StringIO()
    view = StatusView("lines", out=out)
    view(Kernel())
    view.close(Kernel(), "done")  # nothing to close in this mode
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z health=healthy .* pnl=-0\.28 fills=3", line)

    out = io.StringIO()
    StatusView("lines", out=out, json_lines=True)(Kernel())
    assert json.loads(out.getvalue())["status"]["pnl"]["total_pnl"] == "-0.28307565598800000000"  # exact


@pytest.mark.parametrize("mode", ["auto", "lines"])
def test_auto_on_a_file_is_the_lines_view(mode: str) -> None:
    assert StatusView(mode, out=io.StringIO()).live is False


def test_narrow_terminals_drop_order_columns_before_cutting_numbers() -> None:
    long_id = {**STATUS, "open_orders": [{**order(1), "client_order_id": "oomo7e2nw-1-000001"}]}
    at_70 = drawn(long_id, 70, 24)
    assert at_70[7].split() == ["order", "side", "leaves/qty", "price", "state"]
    assert at_70[8].split() == ["oomo7e2nw-1-000001", "buy", "0.00000/0.00100", "39413.58", "accepted"]
    at_59 = drawn(long_id, 59, 24)
    assert at_59[7].split() == ["side", "leaves/qty", "price"]
    assert at_59[8].split() == ["buy", "0.00000/0.00100", "39413.58"]
