"""Notifications (kernel/notify): the [notify] section, the bounded queue, the sender against a real
loopback HTTP server (webhook and Telegram bodies, retries, failures, drops, the token kept out of
logs), and the notices read off journal rows."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Mapping
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel.config import ConfigError, load
from kernel.config.sections import NotifySection
from kernel.config.show import to_json, to_toml
from kernel.display import Precision
from kernel.notify import Notice, Notifier, notices_of, utc_iso
from machines import HEALTH, ORDER, POSITION, TRADING
from storage import Journal
from tests.kernel.notify_server import loopback_server

TOKEN = "123456:SECRET-bot-token"
ENV = {"TK_BOT": TOKEN}


def section(**keys: Any) -> NotifySection:
    return NotifySection.model_validate(keys, context={"environ": ENV})


def notice(kind: str = "fill", text: str = "one") -> Notice:
    return Notice(kind, "2026-12-03T02:34:31.000Z", text, {"n": text})


class Sleeps:
    """tenacity's sleep in these tests: records each wait, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def sent(notifier: Notifier, *notices: Notice) -> None:
    """Run the sender until every notice is handled, then stop it."""
    task = asyncio.create_task(notifier.run())
    for item in notices:
        notifier.notify(item)
    try:
        await notifier.drain(10.0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the section ----------------------------------------------------------------------------------


def test_defaults_are_off_with_every_kind() -> None:
    notify = NotifySection()
    assert not notify.enabled
    assert notify.events == ("fill", "halt", "arm", "health", "stop")
    assert (notify.queue_size, notify.telegram_api_url) == (1000, "https://api.telegram.org")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"webhook_urls": ["ftp://example.net/x"]}, "must be an http:// or https:// URL with a host"),
        ({"webhook_urls": ["https://user:pw@example.net/"]}, "must not contain credentials"),
        ({"webhook_urls": ["https://a.example/", "https://a.example/"]}, "must not repeat a value"),
        ({"events": ["fill", "fills"]}, "must name kinds among fill, halt, arm, health, stop, got 'fills'"),
        ({"queue_size": 0}, "must be between 1 and 1000000, got 0"),
        ({"telegram_chat_id": "42"}, "telegram_chat_id needs the bot token: name its variable"),
        ({"telegram_token_env": "TK_BOT"}, "telegram_token_env needs a telegram_chat_id"),
        ({"telegram_chat_id": "42", "telegram_token_env": "TK_NOPE"}, "environment variable TK_NOPE is not set"),
        ({"telegram_chat_id": "42", "telegram_token_env": TOKEN}, "must be the NAME of an environment variable"),
    ],
)
def test_bad_values_are_refused_with_the_key(tmp_path: Path, keys: Mapping[str, Any], message: str) -> None:
    lines = ["[notify]", *(f"{key} = {json.dumps(value)}" for key, value in keys.items())]
    path = tmp_path / "kernel.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load(str(path), environ=ENV)
    assert message in str(caught.value)
    assert "notify." in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_config_show_names_the_token_variable_never_the_token(tmp_path: Path) -> None:
    path = tmp_path / "kernel.toml"
    path.write_text(
        '[notify]\nwebhook_urls = ["http://127.0.0.1:9/hook"]\ntelegram_chat_id = "-10042"\n'
        'telegram_token_env = "TK_BOT"\nevents = ["fill", "stop"]\n',
        encoding="utf-8",
    )
    config = load(str(path), environ=ENV)
    assert config.notify.enabled
    assert config.notify.telegram_token.reveal() == TOKEN
    text = to_toml(config)
    assert 'telegram_token_env = "TK_BOT"  # set; default: ""' in text
    assert TOKEN not in text
    shown = to_json(config)["notify"]
    assert shown["telegram_token"] == {"env": "TK_BOT", "set": True}
    assert TOKEN not in json.dumps(shown)
    # what config show prints loads back to the same configuration
    again = tmp_path / "again.toml"
    again.write_text(text, encoding="utf-8")
    assert load(str(again), environ=ENV) == config


# -- the queue: O(1), never blocks ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    notifier = Notifier(section(webhook_urls=[f"http://127.0.0.1:{free_port()}/"], queue_size=2))
    for text in ("a", "b", "c", "d"):
        notifier.notify(notice(text=text))  # returns at once: no sender runs, the queue is full after "b"
    assert notifier.counts == {"queued": 4, "sent": 0, "failed": 0, "dropped": 2}
    assert [notifier.queue.get_nowait().text for _ in range(2)] == ["c", "d"]


@pytest.mark.asyncio
async def test_kinds_not_configured_are_not_queued() -> None:
    notifier = Notifier(section(webhook_urls=["http://127.0.0.1:9/"], events=["stop"]))
    notifier.notify(notice("fill"))
    notifier.notify(notice("stop"))
    with notifier.muted():
        notifier.notify(notice("stop"))
    assert notifier.queue.qsize() == 1
    assert notifier.counts["queued"] == 1


# -- sending to a real loopback server ------------------------------------------------------------


@pytest.mark.asyncio
async def test_webhook_and_telegram_get_their_bodies() -> None:
    with loopback_server() as server:
        notifier = Notifier(
            section(
                webhook_urls=[f"{server.url}/hook/abc"],
                telegram_chat_id="-10042",
                telegram_token_env="TK_BOT",
                telegram_api_url=server.url,
            )
        )
        await sent(notifier, notice("fill", "Filled buy"), notice("stop", "Kernel run 1 stopping"))
        assert server.bodies("/hook/abc") == [
            {"kind": "fill", "time": "2026-12-03T02:34:31.000Z", "text": "Filled buy", "data": {"n": "Filled buy"}},
            {
                "kind": "stop",
                "time": "2026-12-03T02:34:31.000Z",
                "text": "Kernel run 1 stopping",
                "data": {"n": "Kernel run 1 stopping"},
            },
        ]
        assert server.bodies(f"/bot{TOKEN}/sendMessage") == [
            {"chat_id": "-10042", "text": "Filled buy"},
            {"chat_id": "-10042", "text": "Kernel run 1 stopping"},
        ]
    assert notifier.counts == {"queued": 2, "sent": 4, "failed": 0, "dropped": 0}
    assert notifier.status()["targets"] == [f"webhook {server.url}", "telegram chat -10042"]


@pytest.mark.asyncio
async def test_two_500s_then_200_delivers_once_after_retries() -> None:
    sleeps = Sleeps()
    with loopback_server() as server:
        server.statuses[:] = [500, 500]
        notifier = Notifier(section(webhook_urls=[f"{server.url}/hook"]), sleep=sleeps)
        await sent(notifier, notice("halt", "Trading halted"))
        assert [body["text"] for body in server.bodies()] == ["Trading halted"] * 3
    assert notifier.counts == {"queued": 1, "sent": 1, "failed": 0, "dropped": 0}
    assert sleeps.waits == [0.5, 1.0]  # exponential backoff between the three attempts


@pytest.mark.asyncio
async def test_a_4xx_is_not_retried_and_counts_failed(caplog: pytest.LogCaptureFixture) -> None:
    sleeps = Sleeps()
    with loopback_server() as server:
        server.statuses[:] = [403]
        notifier = Notifier(section(webhook_urls=[f"{server.url}/hook/SECRETPATH"]), sleep=sleeps)
        with caplog.at_level(logging.WARNING, logger="kernel.notify"):
            await sent(notifier, notice("arm"), notice("stop"))
        assert len(server.bodies()) == 2  # the refused one once, then the next
    assert notifier.counts == {"queued": 2, "sent": 1, "failed": 1, "dropped": 0}
    assert sleeps.waits == []
    assert "refused by webhook http://127.0.0.1" in caplog.text
    assert "SECRETPATH" not in caplog.text


@pytest.mark.asyncio
async def test_an_unreachable_server_fails_after_the_attempts_and_never_logs_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = Sleeps()
    api = f"http://127.0.0.1:{free_port()}"
    notifier = Notifier(
        section(telegram_chat_id="42", telegram_token_env="TK_BOT", telegram_api_url=api, attempts=3),
        sleep=sleeps,
    )
    with caplog.at_level(logging.DEBUG):
        await sent(notifier, notice("fill"))
    assert notifier.counts == {"queued": 1, "sent": 0, "failed": 1, "dropped": 0}
    assert sleeps.waits == [0.5, 1.0]
    assert "notification fill to telegram chat 42 failed after 3 attempts" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.asyncio
async def test_httpx_request_log_lines_have_the_token_redacted(caplog: pytest.LogCaptureFixture) -> None:
    with loopback_server() as server:
        notifier = Notifier(section(telegram_chat_id="42", telegram_token_env="TK_BOT", telegram_api_url=server.url))
        with caplog.at_level(logging.INFO, logger="httpx"):
            await sent(notifier, notice("fill"))
        assert len(server.bodies()) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any(f"POST {server.url}/*** " in line for line in lines), lines  # the path carries the token
    assert TOKEN not in caplog.text


@pytest.mark.asyncio
async def test_httpx_log_lines_hide_a_webhook_path(caplog: pytest.LogCaptureFixture) -> None:
    with loopback_server() as server:
        notifier = Notifier(section(webhook_urls=[f"{server.url}/services/T000/B000/XXXXSECRET"]))
        with caplog.at_level(logging.INFO, logger="httpx"):
            await sent(notifier, notice("fill"))
        assert server.bodies("/services/T000/B000/XXXXSECRET") == [notice("fill").body()]
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any(f"POST {server.url}/*** " in line for line in lines), lines
    assert "XXXXSECRET" not in caplog.text


@pytest.mark.asyncio
async def test_unreachable_with_a_full_queue_drops_counts_and_stop_gives_up() -> None:
    release = asyncio.Event()

    async def stuck(seconds: float) -> None:  # the backoff of the first notice never ends
        await release.wait()

    notifier = Notifier(section(webhook_urls=[f"http://127.0.0.1:{free_port()}/"], queue_size=3), sleep=stuck)
    task = asyncio.create_task(notifier.run())
    notifier.notify(notice(text="first"))
    await until(lambda: notifier.queue.empty())  # the sender holds "first", retrying
    for text in ("a", "b", "c", "d", "e"):
        notifier.notify(notice(text=text))  # put_nowait on a full queue: returns at once, counted
    assert notifier.counts["dropped"] == 2
    assert notifier.queue.qsize() == 3
    await notifier.drain(0.05)  # the stop's bound: what is left is dropped
    assert notifier.counts["dropped"] == 5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert notifier.counts == {"queued": 6, "sent": 0, "failed": 0, "dropped": 6}  # "first" too, cut off


@pytest.mark.asyncio
async def test_an_unexpected_error_counts_failed_and_the_sender_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content)["text"])
        if len(calls) == 1:
            raise ValueError(f"a bug in a transport, about {request.url}")
        return httpx.Response(200)

    notifier = Notifier(
        section(telegram_chat_id="9", telegram_token_env="TK_BOT", telegram_api_url="http://127.0.0.1:1"),
        transport=httpx.MockTransport(answer),
    )
    with caplog.at_level(logging.ERROR, logger="kernel.notify"):
        await sent(notifier, notice(text="first"), notice(text="second"))
    assert calls == ["first", "second"]
    assert notifier.counts == {"queued": 2, "sent": 1, "failed": 1, "dropped": 0}
    assert "notification fill to telegram chat 9 failed: ValueError" in caplog.text
    assert TOKEN not in caplog.text


# -- notices read off journal rows ----------------------------------------------------------------


def committed(journal: Journal) -> list[Notice]:
    rows, entities = journal.last_batch
    return notices_of(rows, entities, lambda instrument: Precision.of(instrument))


def test_notices_of_a_fill_a_halt_an_arm_and_health(db_path: str, clock: Any) -> None:
    with Journal.open(db_path, clock=clock) as journal:
        order, created = ORDER.create(
            "o-1", instrument="BTCUSDT", side="buy", qty=D("0.002"), price=D("39472.879"), type="limit"
        )
        journal.append(created, order)
        journal.fire(ORDER, order, "submit")
        journal.fire(ORDER, order, "accept", venue_order_id="v1")
        journal.commit()
        assert committed(journal) == []
        journal.fire(
            ORDER, order, "fill", qty=D("0.001"), price=D("39472.87961448"), trade_id="t1", fee=D("0.0394728796")
        )
        position, created = POSITION.create("BTCUSDT")
        journal.append(created, position)
        journal.fire(POSITION, position, "fill", side="buy", qty=D("0.001"), price=D("39472.87961448"),
                     fee=D("0.0394728796"), trade_id="t1", client_order_id="o-1")  # fmt: skip
        journal.fire(ORDER, order, "fill", qty=D("0.001"), price=D("39472.87961448"), trade_id="t1")  # a repeat
        journal.commit()
        (fill,) = committed(journal)
        assert fill.kind == "fill"
        assert (
            fill.text
            == "Filled buy 0.00100 BTCUSDT at 39472.88, fee 0.04 USDT (order o-1: 0.00100 of 0.00200, partially_filled)"
        )
        assert fill.data["price"] == "39472.87961448"
        assert fill.data["fee"] == "0.0394728796"
        assert (fill.data["order"], fill.data["cum_qty"], fill.data["order_qty"]) == ("o-1", "0.001", "0.002")
        assert fill.time.endswith("Z")

        trading, created = TRADING.create("kernel", now_ms=1)
        journal.append(created, trading)
        journal.fire(TRADING, trading, "halt", now_ms=2, reason="operator: test halt")
        journal.commit()
        (halt,) = committed(journal)
        assert (halt.kind, halt.text) == ("halt", "Trading halting (from active, halt): operator: test halt")
        assert halt.data["reason"] == "operator: test halt"

        health, created = HEALTH.create("kernel-r1", now_ms=1)
        journal.append(created, health)
        journal.fire(HEALTH, health, "ok", now_ms=2)
        journal.commit()
        assert [(n.kind, n.text) for n in committed(journal)] == [("health", "Kernel health starting -> healthy")]
        component, created = HEALTH.create("feed-r1", now_ms=1)
        journal.append(created, component)
        journal.fire(HEALTH, component, "ok", now_ms=2)
        journal.fire(HEALTH, health, "stop", now_ms=3, reason="SIGTERM received")
        journal.commit()
        assert [(n.kind, n.text) for n in committed(journal)] == [("stop", "Kernel run 1 stopping: SIGTERM received")]


def test_utc_iso() -> None:
    assert utc_iso(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123Z"


def test_telegram_is_called_at_its_bot_url_named_without_the_token() -> None:
    # the expected URL shape, written by hand: {api}/bot{token}/sendMessage
    from kernel.notify import targets_of

    ((target, chat),) = targets_of(section(telegram_chat_id="7", telegram_token_env="TK_BOT",
                                           telegram_api_url="http://127.0.0.1:1/"))  # fmt: skip
    assert (target.url, chat, target.name) == (f"http://127.0.0.1:1/bot{TOKEN}/sendMessage", "7", "telegram chat 7")
    assert target.redact(f"error at {target.url}") == "error at telegram chat 7"
