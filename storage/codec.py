"""Canonical encoding of journal rows and the hash chain that links them.

Data is stored as canonical JSON (keys sorted, no spaces, ``Decimal`` as a string) so that the same
transition always encodes to the same bytes. Each row's hash is
``sha256(previous row's hash + header + data)`` where ``header`` is the canonical JSON array
``[seq, ts, run, machine, entity, trigger, source, dest]``; the header is self-delimiting, so no
two different rows hash the same input. Editing, inserting or deleting any row breaks the chain
from that row on; the journal head (last seq and hash, kept in the same transaction) catches a
deleted tail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from storage.errors import JournalEncodeError

GENESIS_HASH = "0" * 64
"""The 'previous hash' of the first row."""


def _enc_hook(value: Any) -> Any:
    # Transition.data is a read-only MappingProxyType, which msgspec does not know.
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise JournalEncodeError(f"cannot journal a value of type {type(value).__name__}")


_encoder = msgspec.json.Encoder(order="sorted", enc_hook=_enc_hook)
_decoder = msgspec.json.Decoder()

encode = _encoder.encode
"""Canonical JSON bytes of a value (``Decimal`` as string, keys sorted)."""


def encode_text(value: Mapping[str, Any]) -> str:
    """Canonical JSON text of a mapping, as stored in ``data`` columns."""
    return _encoder.encode(value).decode()


def decode(text: str | bytes) -> Any:
    """Parse JSON text from a ``data`` column (decimals come back as strings)."""
    return _decoder.decode(text)


Header = tuple[int, int, int, str, str, str, "str | None", str]
"""``(seq, ts, run, machine, entity, trigger, source, dest)``: a row's columns before ``data``."""


def row_hash(prev_hash: str, header: Header, data: bytes) -> str:
    """The chained hash of one ``transitions`` row (hex), from its header columns and data bytes."""
    return hashlib.sha256(prev_hash.encode() + _encoder.encode(header) + data).hexdigest()


def state_digest(machine: str, entity_id: str, state: str, seq: int, data_text: str) -> str:
    """Fingerprint of a current-state row (``live_entities``/``ended_entities``), written with it.

    On open each live row is checked against it and against the transition at its ``seq``, so a
    row edited outside the journal is refused in O(live entities) (``audit verify`` replays all)."""
    return hashlib.blake2b(
        _encoder.encode((machine, entity_id, state, seq)) + data_text.encode(), digest_size=16
    ).hexdigest()
