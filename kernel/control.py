"""The control channel: a Unix socket (mode 0600) on which a running kernel answers commands.

One JSON object per line each way: ``{"command": "status"}`` → the status snapshot;
``{"command": "stop", "reason": "..."}`` → ``{"ok": true, "stopping": true}``. An unknown command
or a malformed line gets ``{"ok": false, "error": "..."}`` and the connection stays usable.

The socket path defaults to the journal path plus ``.sock``, so ``--db PATH`` alone finds a
running kernel. Only the owner can connect (mode 0600, set before anyone can connect: the socket
is bound under a restrictive umask). A socket file left by a killed kernel is detected (nobody
answers) and replaced.

A running kernel serves it from its endpoint thread (``kernel/endpoints.py``), so it answers while
the kernel's event loop is blocked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kernel.errors import KernelError

if TYPE_CHECKING:  # the server runs inside the kernel's loop; the client (``request``) needs no asyncio,
    import asyncio  # so ``tradekernel status`` does not pay for importing it

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
"""The longest request line accepted."""

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(KernelError):
    """The control socket cannot be used."""


class NoKernel(ControlError):
    """No kernel answers on the socket (none running, or the socket is stale)."""


def default_socket_path(db_path: str) -> str:
    """Where the kernel running on ``db_path`` listens: ``db_path + ".sock"``."""
    return f"{db_path}.sock"


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class ControlServer:
    """Serves ``handler`` on a Unix socket at ``path``. ``start()`` / ``stop()``."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind (replacing a stale socket file), restrict to the owner, listen.

        Raises ``ControlError`` when another process answers on ``path``, when ``path`` exists and
        is not a socket (it is never deleted), or when it cannot be bound.
        """
        if os.path.exists(self.path):
            if not stat.S_ISSOCK(os.stat(self.path).st_mode):
                raise ControlError(f"{self.path} exists and is not a socket: refusing to replace it")
            if _answers(self.path):
                raise ControlError(f"control socket {self.path} is in use by another process")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if len(os.fsencode(self.path)) >= 104:  # sun_path is 108 bytes on Linux, 104 on macOS
            raise ControlError(f"control socket path too long for a Unix socket: {self.path}")
        import asyncio

        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=MAX_LINE)
        except OSError as exc:
            raise ControlError(f"cannot listen on control socket {self.path}: {exc.strerror or exc}") from exc
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        log.info("control socket listening on %s", self.path)

    async def stop(self) -> None:
        """Stop listening and remove the socket file. Idempotent."""
        import asyncio

        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    return
                if not line:
                    return
                await _send(writer, await self._answer(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # The kernel stopped with a client still connected (``tradekernel stop`` closing its end):
            # end quietly; asyncio 3.11's done callback would log a cancelled handler as a traceback.
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'a request is a JSON object with a "command" string'}
        try:
            return await self.handler(request)
        except Exception as exc:  # one bad request must not take the channel down
            log.exception("control command %r failed", request.get("command"))
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer, default=str).encode() + b"\n")
    await writer.drain()


def request(path: str, command: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
    """Send one command to the kernel listening on ``path`` and return its answer (blocking).

    Raises ``NoKernel`` when nothing answers, ``ControlError`` on a broken or slow answer.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise NoKernel(f"no kernel is listening on {path}") from None
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                raise NoKernel(f"no kernel is listening on {path} (stale socket)") from None
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from exc
        try:
            sock.sendall(json.dumps({"command": command, **fields}).encode() + b"\n")
            chunks: list[bytes] = []
            while not chunks or not chunks[-1].endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            raise ControlError(f"the kernel on {path} did not answer {command!r} within {timeout} s") from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from exc
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ControlError(f"the kernel on {path} sent a malformed answer: {exc}") from exc
    if not isinstance(answer, dict):
        raise ControlError(f"the kernel on {path} sent a malformed answer: {answer!r}")
    return answer
