"""Signing Binance requests: HMAC-SHA256 and Ed25519 signers and ``signed_params``.

A SIGNED request carries ``apiKey``, ``timestamp``, ``recvWindow`` and ``signature``; the signature
is computed over every other parameter sorted by name and joined as ``k=v&k=v`` (no percent
encoding), UTF-8 encoded. HMAC signatures are lowercase hex, Ed25519 signatures base64.

Values are rendered as Binance reads them: ``Decimal`` in plain notation (``format(v, "f")``, never
an exponent), bools ``true``/``false``, ints in decimal, strings as they are. Floats are refused
(money is never a float). The secret never appears in a repr or a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from kernel.binance.errors import BinanceKeyError, BinanceParamError

if TYPE_CHECKING:
    from kernel.config.secret import Secret

DEFAULT_RECV_WINDOW_MS = 5000
"""Binance's default ``recvWindow`` (and ours)."""
MAX_RECV_WINDOW_MS = 60000
"""The largest ``recvWindow`` Binance accepts."""
SIGNATURE = "signature"
ParamValue = str | int | bool | Decimal
"""What a request parameter may hold before signing."""


class Signer(Protocol):
    """Something that signs a payload: ``sign(payload) -> signature text``."""

    def sign(self, payload: str) -> str:
        """The signature of ``payload``'s UTF-8 bytes, as Binance expects it in ``signature``."""
        ...


class HmacSigner:
    """Signs with HMAC-SHA256 keyed by the API secret; the signature is lowercase hex."""

    __slots__ = ("_key",)

    def __init__(self, secret: Secret | str) -> None:
        """``secret``: the API secret (a ``Secret`` is revealed here, once). Raises ``BinanceKeyError`` when empty."""
        value = secret if isinstance(secret, str) else secret.reveal()
        if not value:
            raise BinanceKeyError("the HMAC secret is empty")
        self._key = value.encode()

    def sign(self, payload: str) -> str:
        """Lowercase hex HMAC-SHA256 of ``payload``."""
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "HmacSigner(<secret>)"


class Ed25519Signer:
    """Signs with an Ed25519 private key (PKCS#8 PEM); the signature is base64."""

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: bytes, password: bytes | None = None) -> None:
        """Load the key. Raises ``BinanceKeyError`` when the PEM does not load or is not an Ed25519 key."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(private_key_pem, password=password)
        except (ValueError, TypeError) as exc:
            # The library's message never includes the key material.
            raise BinanceKeyError(f"the Ed25519 private key does not load: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise BinanceKeyError(f"the private key is not an Ed25519 key ({type(key).__name__})")
        self._key = key

    def sign(self, payload: str) -> str:
        """Base64 (standard alphabet, padded) Ed25519 signature of ``payload``."""
        return base64.b64encode(self._key.sign(payload.encode())).decode("ascii")

    def __repr__(self) -> str:
        return "Ed25519Signer(<private key>)"


def render(name: str, value: object) -> str:
    """``value`` as it appears in the signature payload. Raises ``BinanceParamError`` for a float,
    ``None`` or any other type (the message names ``name``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise BinanceParamError(f"parameter {name}: not a finite decimal")
        return format(value, "f")
    if isinstance(value, int | str):
        return str(value)
    raise BinanceParamError(f"parameter {name}: cannot sign a {type(value).__name__} (use Decimal, int, bool or str)")


def payload(params: Mapping[str, object]) -> str:
    """The signature payload: every parameter but ``signature``, sorted by name, ``k=v`` joined by ``&``."""
    return "&".join(f"{name}={render(name, params[name])}" for name in sorted(params) if name != SIGNATURE)


def signed_params(
    params: Mapping[str, ParamValue],
    api_key: str,
    signer: Signer,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> dict[str, str | int | bool]:
    """``params`` with ``apiKey``, ``timestamp``, ``recvWindow`` and ``signature`` added, ready to
    go as a request's JSON ``params`` (Decimals become their plain text; ints and bools stay JSON
    numbers and booleans). Raises ``BinanceParamError`` for an unsignable value or a
    ``recv_window_ms`` outside 1..60000."""
    if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
        raise BinanceParamError(f"recvWindow must be 1..{MAX_RECV_WINDOW_MS} ms, got {recv_window_ms}")
    out: dict[str, str | int | bool] = {}
    for name, value in params.items():
        if name == SIGNATURE:
            continue
        text = render(name, value)
        out[name] = text if isinstance(value, Decimal) else value
    out["apiKey"] = api_key
    out["timestamp"] = timestamp_ms
    out["recvWindow"] = recv_window_ms
    out[SIGNATURE] = signer.sign(payload(out))
    return out
