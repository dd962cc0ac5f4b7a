"""The paper venue on live market data: ``LiveMarket`` follows a live venue's stream.

With ``VenueConfig.live`` set, the paper venue replays no file: a ``FeedClient`` on the live
venue's source (``kernel.feed.venues.make_source``) streams its trades and quotes, and each one is
handed to the venue exactly as a replayed event is (``PaperVenue._market``: matched, committed,
broadcast to the venue's subscribers in the paper protocol). The kernel's own feed, which still
talks to the paper venue, and its strategy therefore see the live market, and resting orders fill
on the live trades.

The live feed is a ``feed`` entity of the journal it is given (the kernel's, entity
``market-rRUN``), so reaching ``streaming``, reconnects and gaps are journaled like the kernel's own
feed. Where the source keeps an order book (``source.book(instrument)``), taking orders walk it
(``kernel.venue.depth``); else they fill at the top of book. ``venue_rules`` gives each instrument's
tick and lot size: Binance's fetched from the venue at start, the others' from ``[market.rules]``
or the defaults of ``kernel.paper_defaults``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal

from kernel.clock import monotonic_ms, wall_ms
from kernel.feed.binance_source import BINANCE_REST
from kernel.feed.client import FeedClient
from kernel.feed.events import FeedEvent, QuoteEvent, TradeEvent
from kernel.feed.rules import fetch_binance_rules
from kernel.feed.source import MarketDataSource
from kernel.feed.venues import make_source
from kernel.paper_defaults import DEFAULT_LOT, DEFAULT_TICK, TradingRules
from kernel.venue.depth import Depth
from kernel.venue.errors import SimulatorError
from kernel.venue.marketdata import MarketEvent, MarketQuote, MarketTrade
from kernel.venue.settings import LiveMarketSettings
from storage.journal import Journal

log = logging.getLogger(__name__)


class LiveMarketError(SimulatorError, OSError):
    """The live market cannot be followed (its instrument rules could not be fetched). Also an
    ``OSError``, so ``tradekernel run`` reports it as one line ("cannot start: ...")."""


class LiveMarket:
    """A live venue's market data for the paper venue: each trade and quote of ``settings.instruments``
    is passed to ``market`` as a ``MarketTrade``/``MarketQuote``.

    ``run()`` streams (reconnecting as the feed machine says) until ``stop()``. Raises what
    ``make_source`` and ``FeedClient`` raise for a bad source, URL or journal."""

    def __init__(
        self,
        settings: LiveMarketSettings,
        journal: Journal,
        entity_id: str,
        market: Callable[[MarketEvent], object],
        *,
        clock: Callable[[], int] = wall_ms,
        now_ms: Callable[[], int] = monotonic_ms,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._market = market
        self._clock = clock
        self._instruments = frozenset(settings.instruments)
        self.source: MarketDataSource = make_source(
            settings.source,
            ws_url=settings.ws_url,
            rest_url=settings.rest_url,
            instruments=settings.instruments,
        )
        self.client = FeedClient(
            self.source.url,
            settings.instruments,
            journal,
            entity_id,
            settings.policy,
            now_ms=now_ms,
            on_event=self._on_event,
            on_state=on_state,
            source=self.source,
            client_name="tradekernel-paper-venue",
        )
        self.events = 0
        """Live trades and quotes handed to the venue."""

    @property
    def state(self) -> str:
        """The live feed's state (``streaming`` when data flows)."""
        return self.client.state

    def book(self, instrument: str) -> Depth | None:
        """``instrument``'s live book when the source keeps one (and it is whole), else ``None``."""
        return self.source.book(instrument)

    async def run(self) -> None:
        """Stream until ``stop()`` (the feed ends ``closed``) or a fatal error (``failed``)."""
        await self.client.run()

    def stop(self) -> None:
        """Ask ``run()`` to close the connection. Idempotent."""
        self.client.stop()

    def _on_event(self, event: FeedEvent) -> None:
        converted = to_market_event(event, self._clock)
        if converted is None or converted.instrument not in self._instruments:
            return
        self.events += 1
        self._market(converted)


def to_market_event(event: FeedEvent, clock: Callable[[], int]) -> MarketEvent | None:
    """A live ``TradeEvent``/``QuoteEvent`` as the venue's ``MarketTrade``/``MarketQuote`` (others:
    ``None``). A quote without sizes (Coinbase ``ticker``) is marked ``sizes_known=False`` and sent
    on with sizes 0; a quote without a time gets ``clock()``."""
    if isinstance(event, TradeEvent):
        return MarketTrade(
            instrument=event.instrument,
            trade_id=event.trade_id,
            price=event.price,
            qty=event.qty,
            taker_side=event.taker_side,
            ts_ms=event.ts_ms,
        )
    if isinstance(event, QuoteEvent):
        known = event.bid_qty is not None and event.ask_qty is not None
        return MarketQuote(
            instrument=event.instrument,
            bid=event.bid,
            bid_qty=event.bid_qty if event.bid_qty is not None else DEFAULT_SIZE,
            ask=event.ask,
            ask_qty=event.ask_qty if event.ask_qty is not None else DEFAULT_SIZE,
            ts_ms=clock() if event.ts_ms is None else event.ts_ms,
            sizes_known=known,
        )
    return None


DEFAULT_SIZE = Decimal(0)
"""The size sent on for a quote whose venue sends none (0: unknown)."""


async def venue_rules(settings: LiveMarketSettings) -> dict[str, TradingRules]:
    """Each instrument's tick and lot size: Binance's own (``GET /api/v3/exchangeInfo``, when
    ``fetch_rules``), else ``settings.rules``, else the defaults. Raises ``LiveMarketError``."""
    rules = dict(settings.rules)
    if settings.source == "binance" and settings.fetch_rules:
        fetched = await _fetch_binance_rules(settings.rest_url or BINANCE_REST, settings.instruments)
        rules.update(fetched)
    for instrument in settings.instruments:
        rules.setdefault(instrument, TradingRules(DEFAULT_TICK, DEFAULT_LOT))
    return rules


async def _fetch_binance_rules(rest_url: str, instruments: tuple[str, ...]) -> dict[str, TradingRules]:
    try:
        fetched = await fetch_binance_rules(rest_url, list(instruments))
    except Exception as exc:  # the venue's answer, the network: say which, and do not start half-informed
        raise LiveMarketError(f"cannot fetch binance instrument rules from {rest_url}: {exc}") from exc
    missing = [i for i in instruments if i not in fetched]
    if missing:
        raise LiveMarketError(f"binance has no instrument rules for {', '.join(missing)} ({rest_url})")
    return {
        symbol: TradingRules(rules.tick_size, rules.lot_size, rules.min_notional)
        for symbol, rules in fetched.items()
        if symbol in instruments
    }
