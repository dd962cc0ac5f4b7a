"""The Datasette metadata shipped for a journal: descriptions of its tables, views and columns, and
canned queries (``metadata.yml``, package data). ``tradekernel audit serve`` passes it to Datasette.

The file names the database ``tradekernel`` (a journal named ``tradekernel.db``); Datasette names a
database after its file, so ``metadata_for`` files the same metadata under another journal's name.
Reading it needs PyYAML, which comes with Datasette (the ``tradekernel[ui]`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

METADATA_PATH = Path(__file__).with_name("metadata.yml")
"""The shipped metadata (YAML)."""
DATABASE = "tradekernel"
"""The database name the shipped metadata is written for."""


def database_name(journal: str) -> str:
    """The name Datasette gives the database at path ``journal``: its file name without the suffix."""
    return Path(os.path.basename(journal)).stem


def load_metadata() -> dict[str, Any]:
    """The shipped metadata as a mapping (PyYAML required)."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    loaded: dict[str, Any] = yaml.safe_load(METADATA_PATH.read_text(encoding="utf-8"))
    return loaded


def metadata_for(journal: str) -> dict[str, Any]:
    """The shipped metadata with its database entry filed under the name of ``journal``."""
    metadata = load_metadata()
    databases = metadata["databases"]
    databases[database_name(journal)] = databases.pop(DATABASE)
    return metadata


def canned_queries() -> dict[str, dict[str, Any]]:
    """The canned queries (name → ``title``, ``description``, ``sql``)."""
    queries: dict[str, dict[str, Any]] = load_metadata()["databases"][DATABASE]["queries"]
    return queries
