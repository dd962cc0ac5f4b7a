"""The asyncio shell of tradekernel: CLI, process lifecycle, sockets, clocks, paper venue.

It moves bytes and calls ``machines``; ``storage`` is its only way to the journal.
"""

from importlib import metadata

try:
    __version__ = metadata.version("tradekernel")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
