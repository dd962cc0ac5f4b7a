"""Waiting for a condition in a test: poll it with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

POLL_S = 0.005


async def eventually(condition: Callable[[], bool], what: str = "the condition", timeout: float = 5.0) -> None:
    """Poll ``condition`` every few ms until it holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_S)
