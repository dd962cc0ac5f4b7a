"""Wiring: build the kernel's parts from a ``Config`` (the strategy, the embedded paper venue, the
venue session, the order manager, the feed, the endpoints).

The paper venue simulator (``kernel.venue.server``) is imported only by ``start_embedded_venue``,
so a kernel trading against a venue URL never loads it. With a live ``[market]`` source the embedded
venue follows that venue's market data (``kernel.venue.live``), its feed journaled in the kernel's
journal as ``market-rRUN``, and ``limits_with_rules`` gives the risk limits the instruments' tick
and lot sizes where ``[risk]`` sets none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kernel.binance.client import BinanceExecutionClient
from kernel.binance.signing import Signer
from kernel.clock import wall_ms
from kernel.config import Config
from kernel.control import ControlServer, Handler
from kernel.execution import VenueClient
from kernel.feed.client import FeedClient
from kernel.feed.events import FeedEvent
from kernel.feed.paper_source import PaperMarketData
from kernel.feed.source import MarketDataSource
from kernel.orders import OrderManager
from kernel.paper_defaults import TradingRules
from kernel.paper_session import Credentials
from kernel.strategy import Strategy, load_strategy_class
from machines.risk_limits import InstrumentLimits, Limits
from storage import Journal

if TYPE_CHECKING:
    from kernel.venue.auth import Gate


class EmbeddedVenue(Protocol):
    """What the kernel needs of the in-process paper venue: its URL, and stopping it."""

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` once started."""
        ...

    @property
    def rules(self) -> Mapping[str, TradingRules]:
        """Each instrument's tick and lot size the venue enforces (empty: none)."""
        ...

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        ...

    @property
    def gate(self) -> Gate | None:
        """Its authentication: ``gate.local_credentials`` are handed to the in-process kernel."""
        ...


def strategy_of(config: Config, strategy: Strategy | None = None) -> Strategy:
    """``strategy``, or the configured one built with its params (raises ``StrategyError``)."""
    if strategy is not None:
        return strategy
    cls = load_strategy_class(config.strategy.name)
    return cls(config.strategy.params)


def timer_interval_ms(config: Config, strategy: Strategy) -> int | None:
    """How often ``on_timer`` runs: ``[strategy] timer_interval_ms``, else the strategy's own."""
    return config.strategy.timer_interval_ms or type(strategy).timer_interval_ms


def uses_embedded_venue(config: Config) -> bool:
    """``venue.url = "embedded"`` with the paper venue: the kernel runs it in-process."""
    return config.venue.is_embedded


async def start_embedded_venue(config: Config, journal: Journal | None = None) -> EmbeddedVenue:
    """Start the paper venue of ``[venue.embedded]``, on the market data of ``[market]`` (a live
    source journals its feed in ``journal``). Raises ``OSError`` (address in use), the venue's
    ``SimulatorError``s (a bad data file, rules that cannot be fetched, no journal for a live source)."""
    from kernel.venue.server import PaperVenue  # the simulator: only when the embedded venue runs
    from kernel.venue.settings import LiveMarketSettings

    embedded, market = config.venue.embedded, config.market
    if not market.is_live:
        settings = dataclasses.replace(embedded.venue_config(tuple(config.venue.instruments)), authenticate=True)
        venue = PaperVenue(embedded.store_path, settings)
    else:
        live = LiveMarketSettings(
            source=market.source,
            instruments=market.instruments,
            ws_url=market.ws_url,
            rest_url=market.rest_url,
            rules={symbol: rules.trading_rules() for symbol, rules in market.rules.items()},
            policy=config.feed.policy(),
        )
        settings = dataclasses.replace(
            embedded.venue_config(market.instruments), data_paths=(), live=live, authenticate=True
        )
        entity = f"market-r{journal.run_id}" if journal is not None else "market"
        venue = PaperVenue(embedded.store_path, settings, journal=journal, live_entity=entity)
    await venue.start(embedded.host, embedded.port)
    return venue


def limits_with_rules(limits: Limits, rules: Mapping[str, TradingRules]) -> Limits:
    """``limits`` with each instrument's ``tick_size``, ``lot_size`` and ``min_notional`` from
    ``rules`` where ``[risk]`` sets none (for it or by default)."""
    overrides = dict(limits.per_instrument)
    for instrument, rule in rules.items():
        effective = limits.for_instrument(instrument)
        override = overrides.get(instrument, InstrumentLimits())
        completed = dataclasses.replace(
            override,
            tick_size=rule.tick_size if effective.tick_size is None else override.tick_size,
            lot_size=rule.lot_size if effective.lot_size is None else override.lot_size,
            min_notional=rule.min_notional if effective.min_notional is None else override.min_notional,
        )
        if completed != override:
            overrides[instrument] = completed
    return dataclasses.replace(limits, per_instrument=overrides) if overrides != dict(limits.per_instrument) else limits


def venue_credentials(config: Config, venue: EmbeddedVenue | None) -> Credentials | None:
    """The account credentials the kernel's venue sessions sign ``hello`` with: the embedded venue's
    ``local`` account (handed over in memory, never printed), else those of ``[venue] api_key_env``
    and ``api_secret_env`` (``None`` when either is unset: fine against a venue run ``--open``)."""
    if venue is not None and venue.gate is not None:
        api_key, secret = venue.gate.local_credentials(wall_ms())
        return Credentials(api_key, secret, "the embedded venue")
    key, secret_ = config.venue.api_key, config.venue.api_secret
    if not (key.is_set and secret_.is_set):
        return None
    return Credentials(key.reveal(), secret_.reveal(), f"environment variables {key.env} and {secret_.env}")


def venue_client(url: str, credentials: Credentials | None = None) -> VenueClient:
    """The venue session: it reconnects forever (0.2 s doubling to a 2 s cap, plus up to 0.5 s of
    jitter); a venue outage pauses order entry, and halts only by ``[health] venue_outage_halt_s``."""
    return VenueClient(url, attempts=None, backoff=0.2, backoff_max=2.0, jitter=0.5, credentials=credentials)


KernelClient = VenueClient | BinanceExecutionClient
"""The execution clients the kernel runs: the paper venue's, or Binance spot's."""

BINANCE_STREAMS: dict[bool, tuple[str, str]] = {
    True: ("wss://stream.testnet.binance.vision", "https://testnet.binance.vision"),
    False: ("wss://stream.binance.com:9443", "https://api.binance.com"),
}
"""Binance's public market data endpoints (WebSocket, REST), by ``venue.testnet``."""


def binance_signer(config: Config) -> Signer:
    """What signs ``[venue]``'s Binance requests: the Ed25519 key of ``private_key_file`` (with the
    password of ``private_key_password_env``), else the HMAC secret of ``api_secret_env``.
    Raises ``BinanceKeyError`` for a key that cannot be used, ``OSError`` for an unreadable key file."""
    from kernel.binance.signing import Ed25519Signer, HmacSigner

    venue = config.venue
    if venue.private_key_file:
        with open(venue.private_key_file, "rb") as pem:
            password = venue.private_key_password
            return Ed25519Signer(pem.read(), password.reveal().encode() if password.is_set else None)
    return HmacSigner(venue.api_secret)


def binance_client(config: Config) -> BinanceExecutionClient:
    """The Binance spot execution client of ``[venue]`` (``kind = "binance"``) for its one
    instrument (``binance_signer``); it reconnects forever (0.2 s doubling to a 2 s cap, plus up to
    0.5 s of jitter). Raises as ``binance_signer``."""
    venue = config.venue
    return BinanceExecutionClient(
        venue.binance_ws_api_url,
        venue.instruments[0],
        venue.api_key.reveal(),
        binance_signer(config),
        recv_window_ms=venue.recv_window_ms,
        session_options={"backoff": 0.2, "backoff_max": 2.0, "jitter": 0.5},
    )


def execution_client(config: Config, url: str, credentials: Credentials | None = None) -> KernelClient:
    """The order session of ``[venue]``: Binance's (``kind = "binance"``) or the paper venue's at ``url``."""
    if config.venue.kind == "binance":
        return binance_client(config)
    return venue_client(url, credentials)


def binance_market_urls(config: Config) -> tuple[str, str]:
    """Where a Binance kernel's market data comes from: ``[market] ws_url``/``rest_url``, else the
    public endpoints of the testnet or production (by ``venue.testnet``)."""
    ws_url, rest_url = BINANCE_STREAMS[config.venue.testnet]
    return config.market.ws_url or ws_url, config.market.rest_url or rest_url


async def binance_rules(config: Config) -> dict[str, TradingRules]:
    """The instruments' tick, lot and minimum notional from Binance's ``exchangeInfo`` (REST).
    Raises ``RulesError``."""
    from kernel.feed.rules import fetch_binance_rules

    _, rest_url = binance_market_urls(config)
    rules = await fetch_binance_rules(rest_url, list(config.venue.instruments))
    return {s: TradingRules(r.tick_size, r.lot_size, r.min_notional) for s, r in rules.items()}


@runtime_checkable
class RemembersOrders(Protocol):
    """A venue client that wants each resumed live order's first venue order id (Binance: an order
    replaced in an earlier run has later legs, and the journal's ``venue_order_id`` names its first)."""

    def remember_order(self, client_order_id: str, first_venue_order_id: str) -> None:
        """``client_order_id`` is live; the venue first accepted it as ``first_venue_order_id``."""


def resume_orders(journal: Journal, client: KernelClient, **options: Any) -> OrderManager:
    """``OrderManager.resume``, then each live order with a venue order id told to the client when it
    wants them (``RemembersOrders``)."""
    manager = OrderManager.resume(journal, client, **options)
    if isinstance(client, RemembersOrders):
        for client_order_id, order in manager.orders.items():
            venue_order_id = order.data.get("venue_order_id")
            if isinstance(venue_order_id, str) and venue_order_id:
                client.remember_order(client_order_id, venue_order_id)
    return manager


def order_manager(journal: Journal, client: KernelClient, config: Config) -> OrderManager:
    """The order manager, resuming every live order of the journal."""
    return resume_orders(journal, client, status_timeout=config.venue.status_timeout_s)


def feed_client(
    config: Config,
    url: str,
    instruments: list[str],
    journal: Journal,
    entity_id: str,
    *,
    now_ms: Callable[[], int],
    on_event: Callable[[FeedEvent], None],
    on_state: Callable[[str], None],
    credentials: Credentials | None = None,
) -> FeedClient:
    """The market-data feed of ``instruments``, with the ``[feed]`` policy (from the paper venue at
    ``url``, its ``hello`` signed with ``credentials``; with ``venue.kind = "binance"``, from Binance's
    public streams, ``binance_market_urls``)."""
    source: MarketDataSource
    if config.venue.kind == "binance":
        from kernel.feed.binance_source import BinanceMarketData

        ws_url, rest_url = binance_market_urls(config)
        source = BinanceMarketData(ws_url, rest_url, instruments)
        url = source.url
    else:
        source = PaperMarketData(url, credentials=credentials)
    return FeedClient(
        url,
        instruments,
        journal,
        entity_id,
        config.feed.policy(),
        now_ms=now_ms,
        on_event=on_event,
        on_state=on_state,
        source=source,
    )


async def start_control(config: Config, handler: Handler) -> ControlServer:
    """The control socket, listening (raises ``ControlError``)."""
    control = ControlServer(config.kernel.control_socket_path, handler)
    await control.start()
    return control


__all__ = [
    "EmbeddedVenue",
    "KernelClient",
    "binance_client",
    "binance_market_urls",
    "binance_rules",
    "binance_signer",
    "execution_client",
    "feed_client",
    "limits_with_rules",
    "order_manager",
    "resume_orders",
    "start_control",
    "start_embedded_venue",
    "strategy_of",
    "timer_interval_ms",
    "uses_embedded_venue",
    "venue_client",
    "venue_credentials",
]
