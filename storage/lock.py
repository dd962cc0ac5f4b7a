"""One writer per journal: an exclusive ``flock`` on ``PATH.lock`` held for the writer's life.

SQLite's own locks only serialise transactions; two kernels could still interleave batches into one
journal. An OS lock on a side file is released by the kernel when the process dies (even by
SIGKILL), so a crash never leaves a stale lock behind, and it does not interact with the POSIX
locks SQLite takes on the database file itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket

from storage.errors import JournalLocked, JournalOpenError


def lock_path(db_path: str) -> str:
    """The lock file that guards ``db_path``."""
    return db_path + ".lock"


def writer_active(db_path: str) -> bool:
    """True while some process holds the writer lock of ``db_path`` (a kernel has it open).

    Probes with a shared, non-blocking ``flock`` held for an instant; a missing lock file means
    no writer.
    """
    try:
        fd = os.open(lock_path(db_path), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class WriterLock:
    """Holds the exclusive writer lock of one journal until ``release()``."""

    def __init__(self, db_path: str) -> None:
        self.path = lock_path(db_path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JournalOpenError(
                f"cannot create lock file {self.path}: {exc.strerror} "
                "(the journal's directory must exist and be writable)"
            ) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self._read_holder()
            os.close(self._fd)
            self._fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JournalLocked(db_path, holder) from exc
            raise JournalOpenError(f"cannot lock {self.path}: {exc.strerror}") from exc
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())

    def _read_holder(self) -> str:
        assert self._fd is not None
        try:
            text = os.pread(self._fd, 200, 0).decode(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    @property
    def held(self) -> bool:
        """True until ``release()``."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). The file stays: unlinking it would race a new writer."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
