"""The asyncio shell of tradekernel: CLI, process lifecycle, sockets, clocks, paper venue.

It moves bytes and calls ``machines``; ``storage`` is its only way to the journal.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """``kernel.__version__``, read from the installed package's metadata when first asked for
    (importing the package stays cheap for commands that never need it)."""
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("tradekernel")
        except metadata.PackageNotFoundError:  # running from a source tree that is not installed
            return "0+unknown"
    raise AttributeError(f"module 'kernel' has no attribute {name!r}")
