"""Kernel sockets to a loopback venue negotiate no permessage-deflate (issue 17); others offer it."""

from __future__ import annotations

import pytest
from websockets.asyncio.server import ServerConnection, serve

from kernel import paper_session
from kernel.paper_session import SocketOptions, open_socket


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("ws://127.0.0.1:8765", True),
        ("ws://127.1.2.3/x", True),
        ("ws://localhost:8765", True),
        ("ws://[::1]:8765/feed", True),
        ("wss://stream.binance.com:9443/stream", False),
        ("ws://10.0.0.5:8765", False),
        ("ws://[::1", False),  # not a URL: websockets refuses it with its own error
    ],
)
def test_which_hosts_are_loopback(url: str, loopback: bool) -> None:
    assert paper_session._loopback(url) is loopback


async def _echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.asyncio
async def test_a_loopback_connection_is_not_compressed_though_the_server_offers_it() -> None:
    async with serve(_echo, "127.0.0.1", 0, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        ws = await open_socket(f"ws://127.0.0.1:{port}", SocketOptions())
        try:
            assert ws.protocol.extensions == []
            assert "Sec-WebSocket-Extensions" not in ws.request.headers  # type: ignore[union-attr]
            await ws.send("ping")
            assert await ws.recv() == "ping"
        finally:
            await ws.close()
