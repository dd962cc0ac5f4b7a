"""``[venue] kind = "binance"``: its keys, defaults and refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.config import ConfigError, load

ENV = {"BN_KEY": "key", "BN_SECRET": "secret"}


def _write(tmp_path: Path, venue: str, market: str = "") -> str:
    path = tmp_path / "kernel.toml"
    path.write_text(f"[venue]\n{venue}\n{market}", encoding="utf-8")
    return str(path)


BINANCE = 'kind = "binance"\napi_key_env = "BN_KEY"\napi_secret_env = "BN_SECRET"\n'


def test_binance_defaults_to_the_testnet(tmp_path: Path) -> None:
    config = load(_write(tmp_path, BINANCE + 'instruments = ["BTCUSDT"]'), environ=ENV)
    venue = config.venue
    assert venue.testnet is True
    assert venue.is_live is False
    assert venue.is_embedded is False
    assert venue.recv_window_ms == 5000
    assert venue.binance_ws_api_url == "wss://ws-api.testnet.binance.vision/ws-api/v3"
    assert venue.api_key.reveal() == "key"


def test_production_endpoint_and_override(tmp_path: Path) -> None:
    config = load(_write(tmp_path, BINANCE + 'instruments = ["BTCUSDT"]\ntestnet = false'), environ=ENV)
    assert config.venue.is_live is True
    assert config.venue.binance_ws_api_url == "wss://ws-api.binance.com:443/ws-api/v3"
    local = BINANCE + 'instruments = ["BTCUSDT"]\nws_api_url = "ws://127.0.0.1:9/ws-api/v3"'
    assert load(_write(tmp_path, local), environ=ENV).venue.binance_ws_api_url == "ws://127.0.0.1:9/ws-api/v3"


@pytest.mark.parametrize("instruments", ["[]", '["BTCUSDT", "ETHUSDT"]'])
def test_exactly_one_instrument(tmp_path: Path, instruments: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_write(tmp_path, BINANCE + f"instruments = {instruments}"), environ=ENV)
    assert "venue.instruments" in str(caught.value)
    assert "exactly one instrument" in str(caught.value)


def test_no_instruments_key_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one instrument"):
        load(_write(tmp_path, BINANCE), environ=ENV)


def test_keys_are_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(_write(tmp_path, 'kind = "binance"\ninstruments = ["BTCUSDT"]'), environ={})
    text = str(caught.value)
    assert "venue.api_key_env" in text
    assert "venue.api_secret_env" in text


def test_unset_variables_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BN_SECRET is not set"):
        load(_write(tmp_path, BINANCE + 'instruments = ["BTCUSDT"]'), environ={"BN_KEY": "k"})


def test_private_key_file_instead_of_secret(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    venue = f'kind = "binance"\napi_key_env = "BN_KEY"\ninstruments = ["BTCUSDT"]\nprivate_key_file = "{pem}"'
    assert load(_write(tmp_path, venue), environ=ENV).venue.private_key_file == str(pem)
    missing = venue.replace(str(pem), str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="no such file"):
        load(_write(tmp_path, missing), environ=ENV)


def test_binance_keys_refused_for_the_paper_venue(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'venue\.testnet is only used with kind = "binance"'):
        load(_write(tmp_path, "testnet = false"), environ={})


def test_recv_window_bounds(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recv_window_ms"):
        load(_write(tmp_path, BINANCE + 'instruments = ["BTCUSDT"]\nrecv_window_ms = 60001'), environ=ENV)


def test_market_source_must_be_binance(tmp_path: Path) -> None:
    market = '[market]\nsource = "coinbase"\ninstruments = ["BTC-USD"]\n'
    with pytest.raises(ConfigError, match="takes its market data from Binance"):
        load(_write(tmp_path, BINANCE + 'instruments = ["BTCUSDT"]', market), environ=ENV)
    ok = '[market]\nsource = "binance"\ninstruments = ["BTCUSDT"]\n'
    assert load(_write(tmp_path, BINANCE + 'instruments = ["BTCUSDT"]', ok), environ=ENV).market.source == "binance"


def test_an_ed25519_key_file_signs(tmp_path: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kernel.binance.signing import Ed25519Signer, HmacSigner
    from kernel.wiring import binance_signer

    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    venue = f'kind = "binance"\napi_key_env = "BN_KEY"\ninstruments = ["BTCUSDT"]\nprivate_key_file = "{pem}"'
    signer = binance_signer(load(_write(tmp_path, venue), environ=ENV))
    assert isinstance(signer, Ed25519Signer)
    key.public_key().verify(base64.b64decode(signer.sign("a=1&b=2")), b"a=1&b=2")  # raises when wrong
    hmac_config = load(_write(tmp_path, BINANCE + 'instruments = ["BTCUSDT"]'), environ=ENV)
    assert isinstance(binance_signer(hmac_config), HmacSigner)
