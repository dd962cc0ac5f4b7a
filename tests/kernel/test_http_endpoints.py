"""The HTTP endpoints (issue 18): ``/healthz`` liveness with the trading state, ``/readyz`` readiness
with its reason, and the HTTP rules (HEAD, 405, Host, gzip, keep-alive), on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kernel import control
from kernel.http import ALLOW, PROMETHEUS_TYPE, HttpEndpoints, RemoteBindRefused, gzip_accepted
from kernel.strategies.market_maker import MarketMaker
from kernel.testing import KernelHarness
from kernel.views import readiness
from tests.poll import eventually

NET = 3.0


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


def parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), headers, body)


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection to 127.0.0.1:``port``; everything read until the server closes."""
    async with asyncio.timeout(NET):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()


async def request(
    port: int, path: str, method: str = "GET", host: str | None = None, headers: tuple[str, ...] = ()
) -> Reply:
    host_line = f"Host: {host or f'127.0.0.1:{port}'}\r\n"
    extra = "".join(f"{h}\r\n" for h in headers)
    raw = f"{method} {path} HTTP/1.1\r\n{host_line}{extra}Connection: close\r\n\r\n".encode()
    return parse(await exchange(port, raw))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text, parsed by the library: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def trading_states(text: str) -> dict[str, float]:
    return {
        dict(labels)["tradekernel_trading_state"]: value
        for (name, labels), value in samples(text).items()
        if name == "tradekernel_trading_state"
    }


# -- a real kernel: halt closes readiness ----------------------------------------------------------


@pytest.mark.asyncio
async def test_halt_makes_readyz_503_with_the_reason_and_the_trading_state_series_halted(tmp_path: Path) -> None:
    config = {"http.listen": "127.0.0.1:0", "http.allowed_hosts": ["kernel.internal"]}
    async with KernelHarness(MarketMaker(), tmp_path, config=config) as kh:
        kernel = kh._kernel()
        assert kernel.http is not None
        assert kernel.control is not None
        port = kernel.http.port
        await kh.quote(D("100.00"), D("100.10"))
        assert (await request(port, "/status", host="kernel.internal:8080")).status == 200  # the config's name
        assert (await request(port, "/status", host="other.internal")).status == 421

        ready = await request(port, "/readyz")
        assert (ready.status, ready.json()) == (
            200,
            {"ready": True, "reason": None, "detail": None, "trading": "active", "health": "healthy"},
        )
        live = await request(port, "/healthz")
        assert live.status == 200
        body = live.json()
        assert (body["status"], body["trading"], body["ready"]) == ("healthy", "active", True)
        metrics = await request(port, "/metrics")
        assert trading_states(metrics.body.decode()) == {"active": 1, "reducing": 0, "halting": 0, "halted": 0}

        # as `tradekernel halt --reason ...` does: a command on the control socket
        answer = await asyncio.to_thread(control.request, kernel.control.path, "halt", NET, reason="maintenance")
        assert answer["ok"], answer
        await eventually(lambda: kernel.trading is not None and kernel.trading.state == "halted", "halted")

        ready = await request(port, "/readyz")
        assert ready.status == 503
        assert ready.json() == {
            "ready": False,
            "reason": "halted",
            "detail": "trading halted: operator: maintenance",
            "trading": "halted",
            "health": "healthy",
        }
        live = await request(port, "/healthz")
        assert live.status == 200  # liveness: the process and its loop work
        body = live.json()
        assert (body["status"], body["trading"], body["ready"]) == ("healthy", "halted", False)
        assert body["trading_reason"] == "operator: maintenance"
        text = (await request(port, "/metrics")).body.decode()
        assert trading_states(text) == {"active": 0, "reducing": 0, "halting": 0, "halted": 1}
        assert samples(text)[("tradekernel_ready", ())] == 0

        armed = await asyncio.to_thread(control.request, kernel.control.path, "arm", NET, reason="done")
        assert armed["ok"], armed
        await eventually(lambda: kernel.entry_block() is None, "order entry to open")
        assert (await request(port, "/readyz")).status == 200


@pytest.mark.asyncio
async def test_readiness_names_the_first_reason_of_the_gate(tmp_path: Path) -> None:
    async with KernelHarness(MarketMaker(), tmp_path) as kh:
        kernel = kh._kernel()
        await kh.quote(D("100.00"), D("100.10"))
        snap = kernel.snapshot()
        assert readiness(snap).ready
        healthy = dict(snap.health)
        unhealthy_feed = {
            **healthy,
            "status": "unhealthy",
            "components": {
                "feed": {"state": "unhealthy", "reason": "feed stale", "pauses_entry": True},
                "venue": {"state": "healthy", "reason": None, "pauses_entry": False},
            },
        }
        journal_down = {
            **healthy,
            "status": "unhealthy",
            "components": {"journal": {"state": "unhealthy", "reason": "disk", "pauses_entry": True}},
        }
        assert snap.feed is not None
        stale = dataclasses.replace(snap.feed, state="stale")
        cases = [
            ({"stopping": True, "entry_block": "kernel stopping"}, "stopping"),
            ({"trading": {"state": "halting", "reason": "x"}, "entry_block": "trading halting: x"}, "halting"),
            ({"entry_block": "not started"}, "starting"),
            ({"entry_block": "starting", "health": {**healthy, "status": "starting"}}, "starting"),
            ({"entry_block": "venue session down", "venue_connected": False}, "venue_down"),
            ({"entry_block": "reconciling with the venue"}, "reconciling"),
            ({"entry_block": "reconcile failed: timeout"}, "reconciling"),
            ({"entry_block": "journal cannot commit: disk"}, "journal_failed"),
            ({"entry_block": "health unhealthy: feed stale", "feed": stale, "health": unhealthy_feed}, "feed_stale"),
            ({"entry_block": "health unhealthy: disk", "health": journal_down}, "journal_unhealthy"),
        ]
        for changes, reason in cases:
            verdict = readiness(dataclasses.replace(snap, **changes))
            assert (verdict.ready, verdict.reason, verdict.detail) == (False, reason, changes["entry_block"]), changes


# -- the HTTP rules, on a bare server ----------------------------------------------------------------


@asynccontextmanager
async def server(**options: Any) -> AsyncIterator[HttpEndpoints]:
    def broken_status() -> dict[str, Any]:
        raise RuntimeError("snapshot bug")

    async def ready() -> tuple[bool, dict[str, Any]]:
        return False, {"ready": False, "reason": "starting"}

    endpoints = HttpEndpoints(
        lambda: (True, {"status": "healthy", "trading": "active"}),
        ready,
        lambda: b"m 1\n" * 100,
        broken_status,
        **options,
    )
    await endpoints.start("127.0.0.1", 0)
    try:
        yield endpoints
    finally:
        await endpoints.stop()


@pytest.mark.asyncio
async def test_head_has_the_headers_of_get_and_no_body() -> None:
    async with server() as endpoints:
        get = await request(endpoints.port, "/healthz")
        head = await request(endpoints.port, "/healthz", "HEAD")
        assert (get.status, head.status) == (200, 200)
        assert get.json() == {"status": "healthy", "trading": "active"}
        assert head.body == b""
        assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
        assert head.headers["content-type"] == "application/json"
        head = await request(endpoints.port, "/metrics", "HEAD")
        assert (head.status, head.headers["content-type"], head.body) == (200, PROMETHEUS_TYPE, b"")
        assert head.headers["content-length"] == "400"


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT", "OPTIONS"])
async def test_other_methods_get_405_with_allow(method: str) -> None:
    async with server() as endpoints:
        reply = await request(endpoints.port, "/healthz", method, headers=("Content-Length: 0",))
        assert reply.status == 405
        assert reply.headers["allow"] == ALLOW == "GET, HEAD"
        assert reply.json() == {"error": f"method {method} not allowed: GET or HEAD"}


@pytest.mark.asyncio
async def test_a_foreign_host_is_refused_and_allowed_hosts_admits_a_name() -> None:
    async with server(allowed_hosts=("kernel.internal", "Status.Example:8443")) as endpoints:
        port = endpoints.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
            assert (await request(port, "/healthz", host=host)).status == 200, host
        assert (await request(port, "/healthz", host=f"kernel.internal:{port}")).status == 200
        assert (await request(port, "/healthz", host="kernel.internal")).status == 200
        assert (await request(port, "/healthz", host="status.example:8443")).status == 200
        for host in ("evil.example", f"evil.example:{port}", "status.example:80", "127.0.0.1:1", "localhost"):
            reply = await request(port, "/status", host=host)
            assert reply.status == 421, host
            assert reply.json() == {
                "error": f"host {host!r} is not served here: ask for http://127.0.0.1:{port} "
                "or add the name to http.allowed_hosts"
            }
        # HTTP/1.0 without a Host header
        reply = parse(await exchange(port, b"GET /status HTTP/1.0\r\n\r\n"))
        assert reply.status == 421


@pytest.mark.asyncio
async def test_the_body_is_gzipped_when_asked_and_vary_is_always_set() -> None:
    async with server() as endpoints:
        port = endpoints.port
        plain = await request(port, "/metrics")
        assert (plain.headers["vary"], "content-encoding" in plain.headers) == ("Accept-Encoding", False)
        zipped = await request(port, "/metrics", headers=("Accept-Encoding: br, gzip;q=0.5",))
        assert (zipped.headers["content-encoding"], zipped.headers["vary"]) == ("gzip", "Accept-Encoding")
        assert int(zipped.headers["content-length"]) == len(zipped.body) < len(plain.body)
        assert gzip.decompress(zipped.body) == plain.body == b"m 1\n" * 100
        refused = await request(port, "/metrics", headers=("Accept-Encoding: gzip;q=0, *",))
        assert "content-encoding" not in refused.headers
        head = await request(port, "/metrics", "HEAD", headers=("Accept-Encoding: gzip",))
        assert (head.headers["content-encoding"], head.headers["content-length"], head.body) == (
            "gzip",
            zipped.headers["content-length"],
            b"",
        )


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        ([b"gzip"], True),
        ([b"deflate, gzip;q=1.0, *;q=0.5"], True),
        ([b"x-gzip"], True),
        ([b"*"], True),
        ([b"gzip;q=0"], False),
        ([b"gzip;q=0.000, *"], False),
        ([b"identity"], False),
        ([b"br", b"GZIP; q=0.2"], True),
        ([b"gzip;q=oops"], False),
        ([], False),
    ],
)
def test_gzip_accepted(values: list[bytes], accepted: bool) -> None:
    assert gzip_accepted(values) is accepted


@pytest.mark.asyncio
async def test_keep_alive_readyz_404_500_and_a_malformed_request() -> None:
    async with server() as endpoints:
        port = endpoints.port
        host = f"Host: 127.0.0.1:{port}\r\n"
        two = f"GET /healthz HTTP/1.1\r\n{host}\r\nGET /readyz HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
        raw = await exchange(port, two.encode())
        first, _, second = raw.partition(b"HTTP/1.1 503")
        assert parse(first).status == 200
        assert b'"reason": "starting"' in second  # the async source is awaited
        reply = await request(port, "/nope?x=1")
        assert (reply.status, reply.json()) == (404, {"error": "no such endpoint: /nope"})
        reply = await request(port, "/status")
        assert (reply.status, reply.json()) == (500, {"error": "RuntimeError: snapshot bug"})
        reply = parse(await exchange(port, b"NOT HTTP\r\n\r\n"))
        assert reply.status == 400
        assert reply.json()["error"].startswith("bad request: ")


@pytest.mark.asyncio
async def test_a_remote_bind_is_refused_unless_allowed_and_stop_is_idempotent() -> None:
    endpoints = HttpEndpoints(lambda: (True, {}), lambda: (True, {}), lambda: b"", dict)
    with pytest.raises(RemoteBindRefused, match=r"non-loopback address '0\.0\.0\.0'"):
        await endpoints.start("0.0.0.0", 0)
    assert endpoints.port == 0
    await endpoints.start("0.0.0.0", 0, allow_remote=True)
    try:
        assert (endpoints.host, endpoints.port > 0) == ("0.0.0.0", True)
        reply = await request(endpoints.port, "/healthz")  # 127.0.0.1:PORT is served on any address
        assert reply.status == 200
        reply = await request(endpoints.port, "/healthz", host=f"0.0.0.0:{endpoints.port}")
        assert reply.status == 200
    finally:
        await endpoints.stop()
    await endpoints.stop()
    with pytest.raises(ConnectionRefusedError):
        await exchange(endpoints.port, b"")


@pytest.mark.asyncio
async def test_a_request_body_is_read_past_an_idle_connection_is_closed_at_stop_and_brackets_match() -> None:
    async with server(allowed_hosts=("[fe80::1]",)) as endpoints:
        port = endpoints.port
        host = f"Host: 127.0.0.1:{port}\r\n"
        with_body = f"GET /healthz HTTP/1.1\r\n{host}Content-Length: 5\r\n\r\nhello"
        raw = await exchange(port, f"{with_body}GET /readyz HTTP/1.1\r\n{host}Connection: close\r\n\r\n".encode())
        assert raw.count(b"HTTP/1.1 ") == 2  # the body was read, the second request answered
        assert (await request(port, "/healthz", host="[fe80::1]:8080")).status == 200
        assert (await request(port, "/healthz", host="[fe80::2]:8080")).status == 421
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write_eof()  # a peer that closes without a request gets nothing
        async with asyncio.timeout(NET):
            assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        # a keep-alive connection left open is closed by stop()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /healthz HTTP/1.1\r\n{host}\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(NET):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    async with asyncio.timeout(NET):
        await reader.read()  # stop() closed it: end of stream
    writer.close()
    await writer.wait_closed()
