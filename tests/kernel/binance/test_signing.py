"""Request signing: the example vectors published in the Binance spot API docs, reproduced exactly.

Sources (the official docs, checked out at /work/binance-docs):
* HMAC: web-socket-api.md, "SIGNED request example (HMAC)": the example apiKey/secretKey, the two
  payloads and their signatures ``aa1b5712...`` (ASCII) and ``b33892ae...`` (non-ASCII symbol).
* Ed25519: the WebSocket API's Ed25519 example does not publish its private key, so its signatures
  cannot be reproduced; fix-api.md ("Logon" signature example) publishes an Ed25519 private key and
  the signature ``4MHXelVV...`` of its payload, which is reproduced here.
"""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from kernel.binance.errors import BinanceError, BinanceKeyError, BinanceParamError
from kernel.binance.signing import Ed25519Signer, HmacSigner, payload, render, signed_params
from kernel.config.errors import ConfigError
from kernel.config.secret import Secret

DOCS_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOCS_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOCS_ASCII_PAYLOAD = (
    "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=52000.00&quantity=0.01000000"
    "&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
)
DOCS_UNICODE_PAYLOAD = (
    "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=0.10000000&quantity=1.00000000"
    "&recvWindow=5000&side=BUY&symbol=１２３４５６&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
)
DOCS_FIX_ED25519_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u\n"
    b"-----END PRIVATE KEY-----\n"
)
DOCS_FIX_PAYLOAD = "\x01".join(["A", "EXAMPLE", "SPOT", "1", "20240627-11:17:25.223"])
DOCS_FIX_SIGNATURE = "4MHXelVVcpkdwuLbl6n73HQUXUf1dse2PCgT1DYqW9w8AVZ1RACFGM+5UdlGPrQHrgtS3CvsRURC1oj73j8gCA=="


def test_hmac_docs_vector_ascii_through_signed_params() -> None:
    params = signed_params(
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": Decimal("0.01000000"),
            "price": Decimal("52000.00"),
        },
        DOCS_API_KEY,
        HmacSigner(DOCS_SECRET),
        timestamp_ms=1645423376532,
        recv_window_ms=100,
    )
    assert payload(params) == DOCS_ASCII_PAYLOAD
    assert params == {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "apiKey": DOCS_API_KEY,
        "timestamp": 1645423376532,
        "recvWindow": 100,
        "signature": "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24",
    }


def test_hmac_docs_vector_non_ascii_symbol() -> None:
    params = signed_params(
        {
            "symbol": "１２３４５６",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": Decimal("1.00000000"),
            "price": Decimal("0.10000000"),
        },
        DOCS_API_KEY,
        HmacSigner(Secret("TK_TEST_SECRET", DOCS_SECRET)),
        timestamp_ms=1645423376532,
    )
    assert payload(params) == DOCS_UNICODE_PAYLOAD
    assert params["recvWindow"] == 5000
    assert params["signature"] == "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"


def test_hmac_signature_is_lowercase_hex_and_secret_not_shown() -> None:
    signer = HmacSigner(DOCS_SECRET)
    assert signer.sign(DOCS_ASCII_PAYLOAD) == "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    assert DOCS_SECRET not in repr(signer)


def test_hmac_refuses_an_empty_or_unset_secret() -> None:
    with pytest.raises(BinanceKeyError, match="empty"):
        HmacSigner("")
    with pytest.raises(ConfigError):
        HmacSigner(Secret("TK_UNSET_FOR_TEST", None))


def test_ed25519_docs_vector_from_the_fix_api_example() -> None:
    signer = Ed25519Signer(DOCS_FIX_ED25519_PEM, None)
    assert signer.sign(DOCS_FIX_PAYLOAD) == DOCS_FIX_SIGNATURE
    assert "PRIVATE" not in repr(signer)


def test_ed25519_signed_params_signature_verifies_with_the_public_key() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    params = signed_params({"symbol": "BTCUSDT"}, "K", Ed25519Signer(pem, b"pw"), timestamp_ms=7, recv_window_ms=5000)
    signed = "apiKey=K&recvWindow=5000&symbol=BTCUSDT&timestamp=7"
    key.public_key().verify(base64.b64decode(str(params["signature"])), signed.encode())


def test_ed25519_refuses_wrong_password_garbage_and_other_key_types() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    locked = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(BinanceKeyError):
        Ed25519Signer(locked, b"wrong")
    with pytest.raises(BinanceKeyError):
        Ed25519Signer(locked, None)
    with pytest.raises(BinanceKeyError):
        Ed25519Signer(b"not a pem", None)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(BinanceKeyError, match="not an Ed25519 key"):
        Ed25519Signer(other, None)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.01000000"), "0.01000000"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("1E+2"), "100"),
        (Decimal("-2.5"), "-2.5"),
        (True, "true"),
        (False, "false"),
        (5000, "5000"),
        ("GTC", "GTC"),
    ],
)
def test_render_writes_values_as_binance_reads_them(value: object, text: str) -> None:
    assert render("x", value) == text


@pytest.mark.parametrize("value", [0.1, None, [1, 2], Decimal("NaN"), Decimal("Infinity")])
def test_render_refuses_floats_and_other_types(value: object) -> None:
    with pytest.raises(BinanceParamError, match="parameter x"):
        render("x", value)


def test_signed_params_keeps_json_types_and_ignores_a_given_signature() -> None:
    params = signed_params(
        {"newOrderRespType": "ACK", "returnRateLimits": False, "orderId": 42, "signature": "stale"},
        "K",
        HmacSigner("s"),
        timestamp_ms=1,
        recv_window_ms=60000,
    )
    assert params["returnRateLimits"] is False
    assert params["orderId"] == 42
    assert params["signature"] == HmacSigner("s").sign(
        "apiKey=K&newOrderRespType=ACK&orderId=42&recvWindow=60000&returnRateLimits=false&timestamp=1"
    )


@pytest.mark.parametrize("window", [0, -1, 60001])
def test_signed_params_refuses_a_recv_window_out_of_range(window: int) -> None:
    with pytest.raises(BinanceParamError, match="recvWindow"):
        signed_params({}, "K", HmacSigner("s"), timestamp_ms=1, recv_window_ms=window)


def test_signing_errors_are_binance_errors() -> None:
    assert issubclass(BinanceKeyError, BinanceError)
    assert issubclass(BinanceParamError, BinanceError)
