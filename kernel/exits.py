"""Process exit statuses, the same for every ``tradekernel`` command."""

from __future__ import annotations

EXIT_OK = 0
"""Done, nothing needs attention."""
EXIT_FAILED = 1
"""Ran, but the result needs attention (a check failed, a stop left orders open, a refused command)."""
EXIT_USAGE = 2
"""Could not run: a bad argument or config, a locked or missing journal, an address refused."""
