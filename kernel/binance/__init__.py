"""Binance spot: the pure parts of the live execution client.

* ``signing``: HMAC-SHA256 / Ed25519 request signers and ``signed_params``.
* ``clock``: ``ServerClock``, Binance's clock offset from round-trip samples.
* ``errors``: ``BinanceError`` (a ``VenueError``) and its families, ``error_of``.
* ``wire``: msgspec structs of the WebSocket API responses and user data events.
* ``reports``: Binance reports in our venue types, with the status mapping tables as data.
* ``ratelimits``: reading ``rateLimits``, 429/418 back-off, local order counting.

Nothing here does I/O or reads a clock; the client (``kernel.binance.client``) does.
"""
