"""The process's logs (``kernel/cli/run.py``): UTC with the date in both formats; JSON lines carry
the structured fields of a transition (``run``, ``machine``, ``entity``, ``trigger``, ``source``,
``dest``) given with ``extra=`` (``kernel/log_fields.py``), and ``run`` on every record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from kernel.cli.run import JsonFormatter, RunField, configure_logging
from kernel.log_fields import transition_fields
from machines.base import Transition

# 2026-12-03T02:51:07.123Z
CREATED = 1_796_266_267.123


def record(message: str = "feed %s: %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("kernel.feed.client", logging.INFO, __file__, 1, message, args or ("f-r1", "up"), None)
    made.created, made.msecs = CREATED, 123.0
    made.__dict__.update(extra)
    return made


def test_a_json_line_carries_the_transition_fields() -> None:
    transition = Transition("feed", "feed-r2", "connected", "connecting", "subscribing", {})
    line = JsonFormatter().format(record(**transition_fields(transition, 2)))
    assert json.loads(line) == {
        "ts": "2026-12-03T02:51:07.123Z",
        "level": "info",
        "logger": "kernel.feed.client",
        "message": "feed f-r1: up",
        "run": 2,
        "machine": "feed",
        "entity": "feed-r2",
        "trigger": "connected",
        "source": "connecting",
        "dest": "subscribing",
    }


def test_a_json_line_leaves_out_the_fields_a_record_does_not_have() -> None:
    create = Transition("order", "o-1", "create", None, "new", {})
    assert json.loads(JsonFormatter().format(record(**transition_fields(create, 1)))) == {
        "ts": "2026-12-03T02:51:07.123Z",
        "level": "info",
        "logger": "kernel.feed.client",
        "message": "feed f-r1: up",
        "run": 1,
        "machine": "order",
        "entity": "o-1",
        "trigger": "create",
        "dest": "new",
    }
    assert set(json.loads(JsonFormatter().format(record()))) == {"ts", "level", "logger", "message"}


def test_every_record_gets_the_run_once_the_journal_is_open() -> None:
    run: list[int | None] = [None]
    fields = RunField(lambda: run[0])
    before = record()
    assert fields.filter(before)
    assert before.run is None  # type: ignore[attr-defined]
    run[0] = 7
    after, own = record(), record(run=6)
    assert fields.filter(after)
    assert fields.filter(own)
    assert (after.run, own.run) == (7, 6)  # type: ignore[attr-defined]
    assert json.loads(JsonFormatter().format(after))["run"] == 7


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "2026-12-03T02:51:07.123Z INFO    kernel.feed.client: feed f-r1: up"),
        ("json", '{"ts": "2026-12-03T02:51:07.123Z", "level": "info", "logger": "kernel.feed.client", '
                 '"message": "feed f-r1: up"}'),
    ],
)  # fmt: skip
def test_both_formats_write_utc_with_the_date(fmt: str, expected: str) -> None:
    configure_logging(fmt, "info")
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(io.StringIO())
    assert handler.format(record()) == expected
