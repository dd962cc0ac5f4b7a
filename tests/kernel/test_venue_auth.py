"""Accounts and authentication of the paper venue, on a real venue process over loopback.

Accounts are made with the CLI (``tradekernel venue account add``, a subprocess) in the venue's own
database; a raw ``websockets`` client then speaks the handshake by hand: ``hello`` with the key, the
venue's ``challenge``, a ``hello`` signed with HMAC-SHA256 over its nonce, and the ``welcome`` or the
``error`` answering it. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import REPO, add_venue_account, run_cli
from tests.poll import eventually

LIMIT_S = 10.0
DATA = REPO / "tests" / "data"
TRADES, QUOTES = str(DATA / "binance_btcusdt_trades_20210108.csv"), str(DATA / "binance_btcusdt_quotes_20210108.csv")


class VenueProcess:
    """``tradekernel venue`` in a subprocess on a free loopback port (authentication on)."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str, db: str) -> None:
        self.proc, self.url, self.db = proc, url, db


@pytest_asyncio.fixture
async def venue(tmp_path: Path) -> AsyncIterator[VenueProcess]:
    db = str(tmp_path / "venue.db")
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kernel", "venue", "--port", "0", "--db", db, "--data", TRADES, QUOTES),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(LIMIT_S):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("venue listening on ws://127.0.0.1:"), line
        yield VenueProcess(proc, line.split()[-1], db)
    finally:
        if proc.returncode is None:
            proc.terminate()
            async with asyncio.timeout(LIMIT_S):
                await proc.wait()


def signature(secret: str, nonce: str, api_key: str) -> str:
    """The documented signature, written out here (docs/venue-protocol.md, Authentication)."""
    key = hashlib.sha256(secret.encode()).hexdigest().encode()
    return hmac.new(key, f"{nonce}\n{api_key}".encode(), hashlib.sha256).hexdigest()


async def recv(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a heartbeat."""
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] != "heartbeat":
            return message


async def challenge(ws: ClientConnection, api_key: str) -> str:
    """Say hello with ``api_key``: the nonce of the venue's challenge."""
    await ws.send(json.dumps({"type": "hello", "version": 1, "api_key": api_key}))
    message = await recv(ws)
    assert message["type"] == "challenge", message
    nonce = message["nonce"]
    assert isinstance(nonce, str)
    assert len(nonce) >= 24
    return nonce


async def hello(ws: ClientConnection, api_key: str, secret: str, nonce: str | None = None) -> dict[str, Any]:
    """Answer the challenge with a hello signed by ``secret``; the venue's answer."""
    challenged = await challenge(ws, api_key)
    sent_nonce = challenged if nonce is None else nonce
    frame = {"type": "hello", "version": 1, "api_key": api_key, "nonce": sent_nonce}
    frame["signature"] = signature(secret, sent_nonce, api_key)
    await ws.send(json.dumps(frame))
    return await recv(ws)


async def closed(ws: ClientConnection) -> None:
    """The venue closes the connection (nothing else comes)."""
    with pytest.raises(ConnectionClosed):
        await recv(ws)


@pytest.mark.asyncio
async def test_a_good_key_is_welcomed_with_its_account_name(venue: VenueProcess) -> None:
    api_key, secret = add_venue_account(venue.db, "alice")
    async with asyncio.timeout(LIMIT_S), connect(venue.url) as ws:
        welcome = await hello(ws, api_key, secret)
        assert (welcome["type"], welcome["account"]) == ("welcome", "alice"), welcome
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        assert await recv(ws) == {"type": "pong", "id": "p1"}


@pytest.mark.asyncio
async def test_requests_before_an_authenticated_hello_are_refused(venue: VenueProcess) -> None:
    async with asyncio.timeout(LIMIT_S), connect(venue.url) as ws:
        order = {"type": "new_order", "client_order_id": "x1", "instrument": "BTCUSDT", "side": "buy", "qty": "1"}
        for request in ({"type": "open_orders", "id": "q1"}, order, {"type": "ping", "id": "p1"}):
            await ws.send(json.dumps(request))
            refused = await recv(ws)
            assert (refused["type"], refused["code"]) == ("error", "not_authenticated"), refused
            assert "authenticated hello" in refused["message"]
        await ws.send(json.dumps({"type": "hello", "version": 1}))  # no key at all
        refused = await recv(ws)
        assert (refused["code"], refused["ref"]) == ("auth_failed", "hello")
        assert "requires authentication" in refused["message"]
        assert "no api_key" in refused["message"]
        await closed(ws)
    assert run_cli("venue", "orders", "--db", venue.db, "--json").stdout.strip() == "[]"


@pytest.mark.asyncio
async def test_an_unknown_key_and_a_wrong_signature_are_refused_and_closed(venue: VenueProcess) -> None:
    api_key, secret = add_venue_account(venue.db, "bob")
    async with asyncio.timeout(LIMIT_S):
        async with connect(venue.url) as ws:
            refused = await hello(ws, "no-such-key-0123456789abcdef", secret)
            assert (refused["type"], refused["code"]) == ("error", "auth_failed")
            assert refused["message"] == "unknown api_key: no account holds this key"
            await closed(ws)
        async with connect(venue.url) as ws:
            refused = await hello(ws, api_key, secret + "x")
            assert (refused["type"], refused["code"]) == ("error", "auth_failed")
            assert refused["message"] == "wrong signature for the api_key of account 'bob' (is the secret right?)"
            await closed(ws)
        async with connect(venue.url) as ws:  # a signature over another nonce (a replayed hello)
            refused = await hello(ws, api_key, secret, nonce="an-old-nonce-from-another-connection")
            assert refused["code"] == "auth_failed"
            assert "wrong nonce" in refused["message"]
            await closed(ws)


@pytest.mark.asyncio
async def test_a_revoked_key_is_refused(venue: VenueProcess) -> None:
    api_key, secret = add_venue_account(venue.db, "carol")
    async with asyncio.timeout(LIMIT_S):
        async with connect(venue.url) as ws:
            assert (await hello(ws, api_key, secret))["type"] == "welcome"
        revoked = run_cli("venue", "account", "revoke", "carol", "--db", venue.db)
        assert (revoked.returncode, revoked.stdout.strip()) == (0, "account carol is now revoked"), revoked
        async with connect(venue.url) as ws:
            refused = await hello(ws, api_key, secret)
            assert (refused["code"], refused["message"]) == ("auth_failed", "the api_key of account 'carol' is revoked")
            await closed(ws)


@pytest.mark.asyncio
async def test_a_browser_origin_is_refused(venue: VenueProcess) -> None:
    async with asyncio.timeout(LIMIT_S):
        for origin in ("http://evil.example", "http://127.0.0.1:8765", "null"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(venue.url, origin=origin)  # type: ignore[arg-type]
            assert refused.value.response.status_code == 403
        async with connect(venue.url) as ws:  # no Origin: a kernel or a tool
            await challenge(ws, "any-key")


def test_account_add_list_revoke_never_show_or_store_the_secret(tmp_path: Path) -> None:
    db = str(tmp_path / "venue.db")
    api_key, secret = add_venue_account(db, "dave")
    assert len(api_key) >= 24
    assert len(secret) >= 32
    assert api_key != secret
    again = run_cli("venue", "account", "add", "dave", "--db", db)
    assert again.returncode == 2
    assert "account 'dave' already exists" in again.stderr
    add_venue_account(db, "erin")
    listing = run_cli("venue", "account", "list", "--db", db)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["name", "api_key", "created", "revoked"]
    assert [line.split()[0] for line in lines[2:4]] == ["dave", "erin"]
    assert lines[-1] == "2 account(s)"
    assert api_key in lines[2]
    assert secret not in listing.stdout
    assert run_cli("venue", "account", "revoke", "dave", "--db", db).returncode == 0
    again = run_cli("venue", "account", "revoke", "dave", "--db", db)
    assert again.returncode == 0
    assert again.stdout.strip() == "account dave was already revoked"
    unknown = run_cli("venue", "account", "revoke", "zed", "--db", db)
    assert unknown.returncode == 2
    assert "no account 'zed'" in unknown.stderr
    dave = run_cli("venue", "account", "list", "--db", db).stdout.splitlines()[2].split()
    assert len(dave) == 4
    assert dave[0] == "dave"
    bad = run_cli("venue", "account", "add", "bad name", "--db", db)
    assert bad.returncode == 2
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT secret_hash FROM accounts WHERE name = 'dave'").fetchone()[0]
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def kernel_run(db: str, url: str, environ: dict[str, str], seconds: int) -> subprocess.CompletedProcess[str]:
    """``tradekernel run`` against ``url`` for ``seconds``, the credentials' names in ``[venue]``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **environ}
    env |= {
        "TRADEKERNEL_VENUE__API_KEY_ENV": "TK_TEST_VENUE_KEY",
        "TRADEKERNEL_VENUE__API_SECRET_ENV": "TK_TEST_VENUE_SECRET",
    }
    command = ("run", "--db", db, "--venue", url, "--duration", str(seconds), "--status-view", "lines")
    return subprocess.run(
        [sys.executable, "-m", "kernel", *command],
        capture_output=True, text=True, timeout=60, cwd=str(REPO), env=env, check=False,
    )  # fmt: skip


@pytest.mark.asyncio
async def test_the_kernel_trades_with_env_credentials_and_never_shows_the_secret(
    venue: VenueProcess, tmp_path: Path
) -> None:
    api_key, secret = add_venue_account(venue.db, "kernel-a")
    db = str(tmp_path / "k.db")
    credentials = {"TK_TEST_VENUE_KEY": api_key, "TK_TEST_VENUE_SECRET": secret}
    result = await asyncio.to_thread(kernel_run, db, venue.url, credentials, 6)
    assert result.returncode == 0, result.stderr[-3000:]
    orders = json.loads(run_cli("venue", "orders", "--db", venue.db, "--json").stdout)
    assert orders, "the kernel placed no order at the authenticating venue"
    assert all(order["status"] in ("filled", "canceled") for order in orders), orders  # none left open at stop
    status = run_cli("status", "--db", db, "--json")
    assert status.returncode == 0, status.stderr
    config = run_cli("config", "show", "--db", db)
    shown = result.stdout + result.stderr + status.stdout + config.stdout + config.stderr
    assert secret not in shown
    assert api_key not in shown
    for path in tmp_path.iterdir():  # the journal, the venue DB (and their WAL files)
        assert secret.encode() not in path.read_bytes(), path


@pytest.mark.asyncio
async def test_the_kernel_without_credentials_names_the_variables_to_set(venue: VenueProcess, tmp_path: Path) -> None:
    env = {"TRADEKERNEL_VENUE__API_KEY_ENV": "", "TRADEKERNEL_VENUE__API_SECRET_ENV": ""}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "kernel", "run", "--db", str(tmp_path / "k.db"), "--venue", venue.url,
         "--duration", "2", "--status-view", "off"],
        capture_output=True, text=True, timeout=60, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip
    assert "the venue requires authentication and no API key is configured" in result.stderr, result.stderr[-3000:]
    assert "api_key_env and api_secret_env" in result.stderr
    assert json.loads(run_cli("venue", "orders", "--db", venue.db, "--json").stdout) == []


def test_credentials_and_a_signed_hello_never_show_the_secret_or_signature() -> None:
    from kernel.paper_session import Credentials

    credentials = Credentials("KEY-visible", "SECRET-hidden", "environment variables A and B")
    shown = repr(credentials) + str(credentials)
    assert "SECRET-hidden" not in shown
    assert "KEY-visible" not in shown
    hello = credentials.signed_hello("test", "nonce-1")
    assert hello.signature == signature("SECRET-hidden", "nonce-1", "KEY-visible")
    assert hello.signature not in repr(hello)


@pytest.mark.asyncio
async def test_the_embedded_venue_authenticates_and_its_kernel_trades_without_set_up(tmp_path: Path) -> None:
    """``tradekernel run`` with no credentials anywhere: the embedded venue refuses a stranger, and
    its own kernel (handed the ``local`` account's credentials in memory) trades."""
    db = str(tmp_path / "k.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "kernel", "run", "--db", db, "--duration", "8", "--status-view", "off"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env=env,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            seen = b""
            while b"paper venue listening on " not in seen:  # the kernel's log names the embedded venue's url
                line = await proc.stderr.readline()
                assert line, f"the kernel ended before its venue listened: {seen.decode()[-2000:]}"
                seen = line
            url = seen.decode().split("paper venue listening on ")[1].split()[0]
            ws = await connect(url)
            async with ws:
                await ws.send(json.dumps({"type": "open_orders", "id": "q1"}))
                assert (await recv(ws))["code"] == "not_authenticated"
                await ws.send(json.dumps({"type": "hello", "version": 1}))
                assert (await recv(ws))["code"] == "auth_failed"
                await closed(ws)
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    orders = json.loads(run_cli("venue", "orders", "--db", f"{db}.venue.db", "--json").stdout)
    assert orders, "the embedded venue's kernel placed no order"
    listing = run_cli("venue", "account", "list", "--db", f"{db}.venue.db").stdout.splitlines()
    assert listing[2].split()[0] == "local"
    assert listing[-1] == "1 account(s)"


@pytest.mark.asyncio
async def test_a_connection_that_never_authenticates_is_closed_after_the_hello_timeout(tmp_path: Path) -> None:
    from kernel.venue.server import PaperVenue, VenueConfig

    config = VenueConfig(instruments=("BTCUSDT",), autoplay=False, authenticate=True, hello_timeout_s=0.3)
    async with PaperVenue(str(tmp_path / "venue.db"), config) as paper:
        async with connect(paper.url) as silent, connect(paper.url) as speaking:
            await speaking.send(json.dumps({"type": "ping", "id": "p"}))  # not a hello: refused, still silent
            assert (await recv(speaking))["code"] == "not_authenticated"
            async with asyncio.timeout(LIMIT_S):
                for ws in (silent, speaking):
                    with pytest.raises(ConnectionClosed) as gone:
                        await ws.recv()
                    assert gone.value.rcvd is not None
                    assert (gone.value.rcvd.code, gone.value.rcvd.reason) == (
                        1008,
                        "no authenticated hello within 0.3 s",
                    )
        await eventually(lambda: not paper._connections, "the slots to be free again", LIMIT_S)
