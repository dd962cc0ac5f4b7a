"""The Binance API stand-in's pure parts: signature checks (the docs' HMAC example vector reproduced;
Ed25519 with a generated key) and the exchange's bookkeeping under seeded random trading."""

from __future__ import annotations

import base64
import random
from decimal import Decimal as D
from typing import Any

import pytest

from tests.standins.binance_api_engine import ApiError, Exchange
from tests.standins.binance_api_methods import Methods, signature_payload

# The docs' "SIGNED request example (HMAC)" (web-socket-api.md): key, secret, params and signature.
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PARAMS: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "side": "SELL",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.01000000",
    "price": "52000.00",
    "recvWindow": 100,
    "timestamp": 1645423376532,
    "apiKey": DOC_KEY,
}
DOC_PAYLOAD = (
    "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=52000.00&quantity=0.01000000"
    "&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
)
DOC_SIGNATURE = "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"


# The same section's second example: a symbol of non-ASCII characters (UTF-8 in the payload).
DOC_PARAMS_UTF8: dict[str, Any] = dict(
    DOC_PARAMS, symbol="１２３４５６", side="BUY", quantity="1.00000000", price="0.10000000", recvWindow=5000
)
DOC_SIGNATURE_UTF8 = "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"


# -- signatures -----------------------------------------------------------------------------------


def methods() -> Methods:
    return Methods(Exchange(), {DOC_KEY: DOC_SECRET}, {}, dict)


def test_the_docs_hmac_example_payload_and_signature_are_accepted() -> None:
    assert signature_payload(DOC_PARAMS) == DOC_PAYLOAD
    now = 1645423376532 + 60
    assert methods().verify(dict(DOC_PARAMS, signature=DOC_SIGNATURE), now) == DOC_KEY
    assert methods().verify(dict(DOC_PARAMS, signature=DOC_SIGNATURE.upper()), now) == DOC_KEY  # HMAC: any case


def test_the_docs_non_ascii_hmac_example_is_accepted() -> None:
    assert signature_payload(DOC_PARAMS_UTF8) == (
        "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=0.10000000&quantity=1.00000000"
        "&recvWindow=5000&side=BUY&symbol=１２３４５６&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
    )
    assert methods().verify(dict(DOC_PARAMS_UTF8, signature=DOC_SIGNATURE_UTF8), 1645423376532 + 4000) == DOC_KEY


@pytest.mark.parametrize(
    ("change", "now_delta", "code"),
    [
        ({"signature": "ab" + DOC_SIGNATURE[2:]}, 60, -1022),
        ({"price": "52000.01"}, 60, -1022),
        ({}, 101, -1021),  # recvWindow 100 passed
        ({}, -1000, -1021),  # 1 s ahead of the server
        ({"apiKey": "unknownkey"}, 60, -2015),
        ({"apiKey": "bad key!"}, 60, -2014),
        ({"recvWindow": 60001}, 60, -1131),
    ],
)
def test_signature_key_and_timing_refusals(change: dict[str, Any], now_delta: int, code: int) -> None:
    params = dict(DOC_PARAMS, signature=DOC_SIGNATURE) | change
    with pytest.raises(ApiError) as caught:
        methods().verify(params, 1645423376532 + now_delta)
    assert caught.value.code == code


def test_ed25519_signatures_are_verified_with_the_public_key() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    checker = Methods(Exchange(), {}, {"EdKey": pem}, dict)
    params = {"apiKey": "EdKey", "timestamp": 1000, "symbol": "BTCUSDT"}
    good = base64.b64encode(private.sign(b"apiKey=EdKey&symbol=BTCUSDT&timestamp=1000")).decode()
    assert checker.verify(dict(params, signature=good), 1500) == "EdKey"
    other = base64.b64encode(private.sign(b"apiKey=EdKey&symbol=ETHUSDT&timestamp=1000")).decode()
    with pytest.raises(ApiError) as caught:
        checker.verify(dict(params, signature=other), 1500)
    assert caught.value.code == -1022


# -- the engine's books balance ---------------------------------------------------------------------


def test_random_trading_keeps_locked_funds_and_balances_consistent() -> None:
    """Invariants checked after every action of a seeded random session (market steps included):
    locked USDT = price x remaining of open buys, locked BTC = remaining of open sells, and each
    asset's total = start + what the trades moved - the commissions paid in it."""
    x = Exchange(seed=7, levels=4)
    x.balance("BTC")[0], x.balance("USDT")[0] = D(2), D(100000)
    rng = random.Random(11)
    refusals: set[int] = set()
    for n in range(600):
        roll = rng.random()
        try:
            if roll < 0.45:
                side = rng.choice(("BUY", "SELL"))
                kind = rng.choice(("LIMIT", "LIMIT", "MARKET", "LIMIT_MAKER"))
                price = x.mid + x.tick * rng.randint(-6, 6) if kind != "MARKET" else D(0)
                qty = x.step * rng.randint(100, 30000)
                tif = rng.choice(("GTC", "GTC", "IOC", "FOK")) if kind == "LIMIT" else "GTC"
                x.place(client_order_id=f"c{n}", side=side, order_type=kind, tif=tif, price=price, qty=qty, now_ms=n)
            elif roll < 0.6:
                open_orders = [o for o in x.orders.values() if o.open]
                if open_orders:
                    x.cancel(rng.choice(open_orders), f"k{n}", n)
            elif roll < 0.7:
                open_orders = [o for o in x.orders.values() if o.open and o.remaining > x.step]
                if open_orders:
                    order = rng.choice(open_orders)
                    x.amend(order, order.qty - x.step * rng.randint(1, int(order.remaining / x.step) - 1), f"a{n}", n)
            else:
                x.step_market(n)
        except ApiError as exc:
            refusals.add(exc.code)
        opened = [o for o in x.orders.values() if o.open]
        assert x.balance("USDT")[1] == sum((o.price * o.remaining for o in opened if o.side == "BUY"), D(0))
        assert x.balance("BTC")[1] == sum((o.remaining for o in opened if o.side == "SELL"), D(0))
        for asset, start in (("BTC", D(2)), ("USDT", D(100000))):
            moved = D(0)
            for t in x.trades:
                base, quote = D(t["qty"]), D(t["quoteQty"])
                moved += (base if t["isBuyer"] else -base) if asset == "BTC" else (-quote if t["isBuyer"] else quote)
                if t["commissionAsset"] == asset:
                    moved -= D(t["commission"])
            assert sum(x.balance(asset)) == start + moved, (n, asset)
    assert refusals <= {-2010, -1013}
    assert len(x.trades) > 50
    assert any(t["isMaker"] for t in x.trades)
