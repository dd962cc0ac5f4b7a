"""The outage mark: ``PATH.outage``, written beside a journal while its commits fail.

What a kernel fires during a journal outage (its ``journal_failed`` halt first) reaches the journal
only with the next good commit. If the process is killed before that, the mark is what tells the
next start that trading was halted (docs/recovery.md). Creating an empty file usually works on a
full disk (an inode, no block); on a read-only filesystem nothing can be written: logged, once.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def mark_path(path: str) -> str:
    """Where the mark of the journal at ``path`` is: ``path + ".outage"``."""
    return f"{path}.outage"


def mark(path: str, reason: str) -> None:
    """Create the mark (mode 0600) holding ``reason`` (best effort: an empty mark still marks)."""
    try:
        fd = os.open(mark_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        log.error("cannot mark the journal outage beside %s: %s", path, exc.strerror or exc)
        return
    try:
        os.write(fd, f"{reason}\n".encode())
    except OSError:
        pass  # the empty file is the mark; the reason is a courtesy
    finally:
        os.close(fd)


def read(path: str) -> str | None:
    """The reason a mark holds (possibly empty), or ``None`` when there is no mark."""
    try:
        with open(mark_path(path), encoding="utf-8", errors="replace") as marker:
            return marker.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:  # there, but unreadable: still a mark
        return f"(unreadable: {exc.strerror or exc})"


def clear(path: str) -> None:
    """Remove the mark (idempotent; a mark that cannot be removed is logged and left)."""
    try:
        os.unlink(mark_path(path))
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.error("cannot remove the journal outage mark %s: %s", mark_path(path), exc.strerror or exc)
