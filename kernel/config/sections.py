"""The plain sections of the configuration as pydantic models: every key, its type, default and rule.

Each section is a frozen model refusing unknown keys; a field's docstring is its description in
the JSON Schema. Checks of several keys together are the machines' own: the feed backoff
(``machines.feed.check_backoff``) and the health thresholds (``machines.health.Thresholds``); a
section translates their errors into problems under its keys. ``schema`` adds ``[strategy]``,
``[risk]`` and the whole ``Config``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from kernel.config.secret import Secret
from kernel.config.values import (
    EMBEDDED,
    Key,
    Problems,
    check_env_name,
    check_listen,
    check_loopback,
    check_url,
    invalid,
    parse_listen,
)
from kernel.net import is_loopback
from kernel.paper_defaults import BUNDLED_DATA, EMBEDDED_HOST
from machines.errors import InvalidData
from machines.feed import BOUNDS as FEED_BOUNDS
from machines.feed import DEFAULTS as FEED_DEFAULTS
from machines.feed import check_backoff
from machines.health import HealthError, Thresholds

if TYPE_CHECKING:  # the simulator is imported only by venue_config, when it is used
    from kernel.venue.server import VenueConfig


class Section(BaseModel):
    """A ``[table]`` of the file: frozen, unknown keys refused, every problem reported at once.

    Built directly, a section raises pydantic's ``ValidationError`` (a ``ValueError``) listing them;
    ``load`` reports them as one ``ConfigError`` with each key's source."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    section: ClassVar[str] = ""
    """The dotted name of the table (its keys' prefix)."""
    subtables: ClassVar[tuple[str, ...]] = ()
    """The fields that are tables of their own, not values."""

    @classmethod
    def file_keys(cls) -> list[str]:
        """The names of the section's values, in file order (sub-tables left out)."""
        return [name for name in cls.model_fields if name not in cls.subtables]


def _environ(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context if isinstance(info.context, Mapping) else {}
    environ = context.get("environ")
    return os.environ if environ is None else environ


class KernelSection(Section):
    """``[kernel]``: the process itself."""

    section: ClassVar[str] = "kernel"
    db: Annotated[str, Key(nonempty=True)] = "tradekernel.db"
    """The journal: an SQLite file, created 0600."""
    durability: Annotated[Literal["full", "normal"], Key()] = "full"
    """SQLite synchronous level of commits that precede a send."""
    log_format: Annotated[Literal["text", "json"], Key()] = "text"
    """Format of the log lines on stderr."""
    log_level: Annotated[Literal["debug", "info", "warning", "error"], Key()] = "info"
    """The least severe log level written."""
    control_socket: Annotated[str, Key()] = ""
    """The control socket's path (empty: DB.sock)."""
    status_view: Annotated[Literal["auto", "live", "lines", "off"], Key()] = "auto"
    """How the status is shown on the terminal."""
    status_interval_s: Annotated[float, Key(above=0)] = 1.0
    """Seconds between status updates."""
    cancel_on_stop: Annotated[bool, Key()] = True
    """Cancel open orders when stopping."""
    stop_timeout_s: Annotated[float, Key(above=0)] = 5.0
    """Seconds a stop waits for cancels to be acknowledged."""
    duration_s: Annotated[float | None, Key(above=0)] = None
    """Stop after this many seconds (unset: run until stopped)."""

    @property
    def control_socket_path(self) -> str:
        """The control socket: ``control_socket``, or ``DB.sock`` when that is empty."""
        return self.control_socket or f"{self.db}.sock"


class EmbeddedVenueSection(Section):
    """``[venue.embedded]``: the paper venue the kernel runs in-process when ``venue.url = "embedded"``."""

    section: ClassVar[str] = "venue.embedded"
    data: Annotated[tuple[str, ...], Key(nonempty=True)] = ()
    """Market data files to replay (empty: the bundled Binance BTCUSDT data)."""
    speed: Annotated[float, Key(low=0)] = 1.0
    """Replay speed: 1 real time, 0 as fast as possible."""
    loop: Annotated[bool, Key()] = True
    """Start the data over when it ends."""
    seed: Annotated[int, Key(low=0, high=2**63 - 1)] = 0
    """Seed of the venue's random choices (rejects, latency)."""
    fee_bps: Annotated[Decimal, Key(low=0)] = Decimal(1)
    """Fee in basis points of the notional (a decimal number, never a binary float)."""
    slippage_bps: Annotated[Decimal, Key(low=0)] = Decimal(0)
    """Slippage in basis points against the taker."""
    latency_ms: Annotated[float, Key(low=0)] = 0.0
    """Delay before the venue answers, in ms."""
    reject_rate: Annotated[float, Key(low=0, high=1)] = 0.0
    """Probability that an order is rejected."""
    host: Annotated[str, Key(check=check_loopback)] = EMBEDDED_HOST
    """The loopback address the venue listens on."""
    port: Annotated[int, Key(low=0, high=65535)] = 0
    """Its port (0: any free port)."""
    store: Annotated[str, Key()] = ""
    """The venue's own SQLite file (empty: KERNEL_DB.venue.db)."""
    max_connections: Annotated[int, Key(low=0)] = 256
    """Connections open at once (0: no limit; docs/venue-protocol.md, Limits)."""
    max_connections_per_account: Annotated[int, Key(low=0)] = 16
    """Connections of one account at once (0: no limit)."""
    max_open_orders: Annotated[int, Key(low=0)] = 10_000
    """Orders not done per account (0: no limit)."""
    order_rate: Annotated[int, Key(low=0)] = 100
    """Order requests (new, cancel, replace) per second per account (0: no limit)."""
    order_burst: Annotated[int, Key(low=1)] = 200
    """Order requests an account may send at once."""
    _journal_db: str = PrivateAttr(default="tradekernel.db")

    @property
    def journal_db(self) -> str:
        """``kernel.db``, which ``Config`` hands down: the default store is named after it."""
        return self._journal_db

    @property
    def data_paths(self) -> tuple[str, ...]:
        """The market data files replayed: ``data``, or the bundled Binance BTCUSDT data."""
        return self.data or BUNDLED_DATA

    @property
    def store_path(self) -> str:
        """The venue's own SQLite file: ``store``, or ``KERNEL_DB.venue.db``."""
        return self.store or f"{self._journal_db}.venue.db"

    def with_journal(self, db: str) -> EmbeddedVenueSection:
        """This section for a kernel whose journal is ``db``."""
        copy = self.model_copy()
        copy._journal_db = db
        return copy

    def venue_config(self, instruments: tuple[str, ...] = ()) -> VenueConfig:
        """The ``PaperVenue`` settings of this section (``instruments`` empty: those of the data).

        Imports the simulator: only the embedded venue's users call this."""
        from kernel.venue.server import VenueConfig

        return VenueConfig(
            instruments=instruments,
            data_paths=self.data_paths,
            speed=self.speed,
            seed=self.seed,
            fee_bps=self.fee_bps,
            slippage_bps=self.slippage_bps,
            latency_ms=self.latency_ms,
            reject_rate=self.reject_rate,
            loop=self.loop,
            max_connections=self.max_connections,
            max_connections_per_account=self.max_connections_per_account,
            max_open_orders=self.max_open_orders,
            order_rate=self.order_rate,
            order_burst=self.order_burst,
        )


def check_ws_api_url(url: str) -> None:
    """Empty, or a ws:// or wss:// URL with a host and no credentials (Binance's WebSocket API, or a stand-in)."""
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise invalid(f"must be a ws:// or wss:// URL with a host, got {url!r}")
    if "@" in parts.netloc:
        raise invalid("must not contain credentials")


BINANCE_WS_API: dict[bool, str] = {
    True: "wss://ws-api.testnet.binance.vision/ws-api/v3",
    False: "wss://ws-api.binance.com:443/ws-api/v3",
}
"""Binance's spot WebSocket API, by ``testnet``."""


class VenueSection(Section):
    """``[venue]``: where orders go, and the credentials for a remote venue.

    ``kind = "paper"`` trades on the paper venue (``url``: embedded or a ``tradekernel venue``);
    ``kind = "binance"`` on Binance spot over its WebSocket API (testnet unless ``testnet = false``,
    which ``tradekernel run`` also wants ``--live`` for), exactly one instrument.
    ``api_key``/``api_secret`` are read from the variables named by ``api_key_env``/``api_secret_env``
    (``load`` passes its ``environ``; built directly, ``os.environ``)."""

    section: ClassVar[str] = "venue"
    subtables: ClassVar[tuple[str, ...]] = ("embedded",)
    url: Annotated[str, Key(check=check_url)] = EMBEDDED
    """"embedded" (the paper venue, in-process) or the ws:// or wss:// URL of a venue."""
    instruments: Annotated[tuple[str, ...], Key(nonempty=True, distinct=True)] = ()
    """Instruments to trade (empty: the venue's own)."""
    api_key_env: Annotated[str, Key(check=check_env_name)] = ""
    """The NAME of the environment variable holding the API key."""
    api_secret_env: Annotated[str, Key(check=check_env_name)] = ""
    """The NAME of the environment variable holding the API secret."""
    status_timeout_s: Annotated[float, Key(above=0)] = 5.0
    """Seconds to wait for an order status answer."""
    kind: Annotated[Literal["paper", "binance"], Key()] = "paper"
    """"paper" (the paper venue) or "binance" (Binance spot, testnet by default)."""
    testnet: Annotated[bool, Key()] = True
    """With kind = "binance": the testnet (false: production, real money; needs --live)."""
    private_key_file: Annotated[str, Key()] = ""
    """With kind = "binance": an Ed25519 private key (PEM) signing requests instead of api_secret_env."""
    private_key_password_env: Annotated[str, Key(check=check_env_name)] = ""
    """The NAME of the environment variable holding the private key's password (unset: none)."""
    ws_api_url: Annotated[str, Key(check=check_ws_api_url)] = ""
    """With kind = "binance": the WebSocket API endpoint (empty: testnet's or production's)."""
    recv_window_ms: Annotated[int, Key(low=1, high=60000)] = 5000
    """With kind = "binance": how long after its timestamp a signed request is valid, in ms."""
    embedded: EmbeddedVenueSection = Field(default_factory=EmbeddedVenueSection)
    """The in-process paper venue."""
    _api_key: Secret = PrivateAttr(default_factory=Secret)
    _api_secret: Secret = PrivateAttr(default_factory=Secret)
    _key_password: Secret = PrivateAttr(default_factory=Secret)

    @model_validator(mode="after")
    def _secrets_and_files(self, info: ValidationInfo) -> VenueSection:
        environ = _environ(info)
        self._api_key = Secret.from_env(self.api_key_env, environ)
        self._api_secret = Secret.from_env(self.api_secret_env, environ)
        self._key_password = Secret.from_env(self.private_key_password_env, environ)
        problems = Problems("venue")
        if self.kind == "binance":
            self._binance_needs(problems)
        else:
            for name in ("ws_api_url", "private_key_file", "testnet"):
                value = getattr(self, name)
                if value != "" and value is not True:
                    message = f'venue.{name} is only used with kind = "binance"'
                    problems.add((name,), message, value, blame=("kind",))
        if self.is_embedded:  # only the venue in use needs its files
            for index, path in enumerate(self.embedded.data):
                if not os.path.isfile(path):
                    item = f" (item {index + 1})" if len(self.embedded.data) > 1 else ""
                    problems.add(("embedded", "data"), f"no such file: {path!r}{item}", path)
        for name, secret in (("api_key_env", self._api_key), ("api_secret_env", self._api_secret)):
            if self.kind == "paper" and not self.is_embedded and secret.env and not secret.is_set:
                message = f"environment variable {secret.env} is not set (or empty); venue {self.url} needs it"
                problems.add((name,), message, secret.env, blame=("url",))
        problems.raise_any()
        return self

    def _binance_needs(self, problems: Problems) -> None:
        if len(self.instruments) != 1:
            message = (
                f'kind = "binance" trades exactly one instrument (its fills cursor is that symbol\'s trade id), '
                f'got {len(self.instruments)}: set venue.instruments = ["BTCUSDT"]'
            )
            problems.add(("instruments",), message, list(self.instruments), blame=("kind",))
        if not self.api_key_env:
            problems.add(("api_key_env",), 'kind = "binance" needs the API key: name its variable', "", blame=("kind",))
        if self.private_key_file:
            if not os.path.isfile(self.private_key_file):
                problems.add(("private_key_file",), f"no such file: {self.private_key_file!r}", self.private_key_file)
        elif not self.api_secret_env:
            message = 'kind = "binance" needs api_secret_env (HMAC key) or private_key_file (Ed25519 key)'
            problems.add(("api_secret_env",), message, "", blame=("kind",))
        for name, secret in (
            ("api_key_env", self._api_key),
            ("api_secret_env", self._api_secret),
            ("private_key_password_env", self._key_password),
        ):
            if secret.env and not secret.is_set:
                message = f"environment variable {secret.env} is not set (or empty); Binance needs it"
                problems.add((name,), message, secret.env, blame=("kind",))

    @property
    def binance_ws_api_url(self) -> str:
        """The Binance WebSocket API endpoint: ``ws_api_url``, else testnet's or production's."""
        return self.ws_api_url or BINANCE_WS_API[self.testnet]

    @property
    def is_live(self) -> bool:
        """True when orders go to Binance's production venue: real money."""
        return self.kind == "binance" and not self.testnet

    @property
    def private_key_password(self) -> Secret:
        """The Ed25519 private key's password (``private_key_password_env``'s value)."""
        return self._key_password

    @property
    def api_key(self) -> Secret:
        """The API key (``api_key_env``'s value), shown only as the variable's name."""
        return self._api_key

    @property
    def api_secret(self) -> Secret:
        """The API secret (``api_secret_env``'s value), shown only as the variable's name."""
        return self._api_secret

    @property
    def is_embedded(self) -> bool:
        """True when the kernel runs the paper venue in-process."""
        return self.kind == "paper" and self.url == EMBEDDED


def _feed_key(name: str) -> Key:
    low, high = FEED_BOUNDS[name]
    return Key(low=low, high=high)


class FeedSection(Section):
    """``[feed]``: the feed policy (see the ``feed`` machine): ``machines.feed.DEFAULTS`` but ``seed``."""

    section: ClassVar[str] = "feed"
    stale_after_ms: Annotated[int, _feed_key("stale_after_ms")] = FEED_DEFAULTS["stale_after_ms"]
    """An instrument without data this long is stale."""
    backoff_initial_ms: Annotated[int, _feed_key("backoff_initial_ms")] = FEED_DEFAULTS["backoff_initial_ms"]
    """The first wait before reconnecting."""
    backoff_max_ms: Annotated[int, _feed_key("backoff_max_ms")] = FEED_DEFAULTS["backoff_max_ms"]
    """The longest wait (at least backoff_initial_ms)."""
    backoff_multiplier: Annotated[int, _feed_key("backoff_multiplier")] = FEED_DEFAULTS["backoff_multiplier"]
    """Each failed attempt multiplies the wait by this."""
    jitter_ms: Annotated[int, _feed_key("jitter_ms")] = FEED_DEFAULTS["jitter_ms"]
    """Up to this much is added to each wait."""
    healthy_after_ms: Annotated[int, _feed_key("healthy_after_ms")] = FEED_DEFAULTS["healthy_after_ms"]
    """Streaming this long resets the attempt count."""
    max_attempts: Annotated[int, _feed_key("max_attempts")] = FEED_DEFAULTS["max_attempts"]
    """Give up after this many attempts in a row (0: never)."""

    @model_validator(mode="after")
    def _backoff(self) -> FeedSection:
        problems = Problems("feed")
        try:
            check_backoff(self.backoff_initial_ms, self.backoff_max_ms)
        except InvalidData as exc:
            problems.add(("backoff_max_ms",), str(exc), self.backoff_max_ms, blame=("backoff_initial_ms",))
        problems.raise_any()
        return self

    def policy(self) -> dict[str, int]:
        """The policy fields to pass to ``FEED.create`` (or ``FeedClient(policy=...)``)."""
        return self.model_dump()


class HttpSection(Section):
    """``[http]``: the status endpoint; off when ``listen`` is empty."""

    section: ClassVar[str] = "http"
    listen: Annotated[str, Key(check=check_listen)] = ""
    """HOST:PORT to serve status on (IPv6 as [::1]:PORT; empty: off)."""
    allow_remote: Annotated[bool, Key()] = False
    """Allow a listen address beyond this machine."""

    @model_validator(mode="after")
    def _loopback(self) -> HttpSection:
        problems = Problems("http")
        address = self.address
        if address is not None and not self.allow_remote and not is_loopback(address[0]):
            message = (
                f"{address[0]} is not a loopback address: pass --allow-remote "
                "(or set http.allow_remote = true) to serve status beyond this machine"
            )
            problems.add(("listen",), message, self.listen)
        problems.raise_any()
        return self

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to listen on (IPv6 without brackets), or ``None`` when off."""
        return parse_listen(self.listen) if self.listen else None


class HealthSection(Section):
    """``[health]``: thresholds of the health machine (``machines.health.Thresholds`` checks them)."""

    section: ClassVar[str] = "health"
    loop_lag_degraded_ms: Annotated[int, Key(low=1)] = 250
    """Event-loop lag that makes the loop degraded."""
    loop_lag_unhealthy_ms: Annotated[int, Key(low=1)] = 2000
    """Event-loop lag that makes it unhealthy (above loop_lag_degraded_ms)."""
    commit_latency_degraded_ms: Annotated[int, Key(low=1)] = 250
    """Journal commit latency that makes the journal degraded."""
    strategy_errors_unhealthy: Annotated[int, Key(low=1)] = 5
    """Strategy errors in a row that make the strategy unhealthy."""
    venue_outage_halt_s: Annotated[float, Key(low=0, high=86400)] = 0.0
    """A venue outage this long halts trading (``tradekernel arm`` to resume); 0: never, an outage
    only pauses order entry while the kernel reconnects, then it reconciles and resumes by itself."""

    @model_validator(mode="after")
    def _thresholds(self) -> HealthSection:
        problems = Problems("health")
        try:
            self.thresholds()
        except HealthError as exc:
            field, *related = exc.fields or ("",)
            problems.add((field,) if field else (), str(exc), getattr(self, field, None), blame=tuple(related))
        problems.raise_any()
        return self

    def thresholds(self) -> Thresholds:
        """The health machine's ``Thresholds`` of this section."""
        values = self.model_dump()
        outage_s = values.pop("venue_outage_halt_s")
        return Thresholds(**values, venue_outage_halt_ms=math.ceil(outage_s * 1000))


def check_postgresql_url(url: str) -> None:
    """Empty (off) or a postgresql:// URL with a host, no password (libpq reads ``PGPASSWORD`` or ~/.pgpass)."""
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise invalid(f"must be empty (off) or a postgresql:// URL of the fleet store, got {url!r}")
    if parts.password is not None:
        # Do not echo it: it holds a password.
        raise invalid("must not contain a password: set PGPASSWORD or use ~/.pgpass (libpq reads both)")
    if not parts.hostname:
        raise invalid(f"must name a host: postgresql://USER@HOST:PORT/DATABASE, got {url!r}")


class ShipSection(Section):
    """``[ship]``: ship the journal to the fleet store (PostgreSQL) while the kernel runs (docs/fleet.md).

    Off while ``url`` is empty; ``TRADEKERNEL_SHIP__URL`` sets it from the environment."""

    section: ClassVar[str] = "ship"
    url: Annotated[str, Key(check=check_postgresql_url)] = ""
    """The fleet store, postgresql://USER@HOST:PORT/DATABASE (empty: no shipping)."""
    batch_rows: Annotated[int, Key(low=1, high=100_000)] = 2000
    """Rows per batch (one transaction each); bounds the shipper's memory."""
    interval_s: Annotated[float, Key(above=0, high=3600)] = 1.0
    """Seconds between two looks at the journal once caught up."""
    max_backoff_s: Annotated[float, Key(above=0, high=3600)] = 30.0
    """The longest wait between two attempts while the store is down."""
    stop_timeout_s: Annotated[float, Key(low=0, high=600)] = 5.0
    """How long a stopping kernel waits for the shipper's last batch."""
