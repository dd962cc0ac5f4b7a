"""The market-data feed's error family: ``FeedError`` under ``TradekernelError``.

``DecodeError`` (a frame that is not a valid message, in ``events``) and ``Invalid`` (its cause
inside a decoder, in ``_common``) belong to it too. Each error also subclasses the builtin callers
caught before the family existed, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from machines.errors import TradekernelError


class FeedError(TradekernelError):
    """Base class of every error the feed package raises for its own conditions."""


class BookMisuse(FeedError, ValueError):
    """A book or sequence keeper given an event it cannot take (another instrument, missing ids)."""


class FeedMisuse(FeedError, RuntimeError):
    """A feed client used out of order (``run()`` twice)."""
