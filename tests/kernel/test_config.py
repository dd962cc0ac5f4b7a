"""``kernel.config``: defaults, a full file, every validation error naming its key, overrides,
the TOML round trip, secrets kept out of every output, and ``tradekernel config show``."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from kernel import config as cfg
from kernel import strategy as strategy_module
from kernel.config import (
    Config,
    ConfigError,
    EmbeddedVenueSection,
    FeedSection,
    HealthSection,
    HttpSection,
    KernelSection,
    RiskSection,
    Secret,
    StrategySection,
    VenueSection,
    json_schema,
    load,
    parse_listen,
    to_json,
    to_toml,
)
from kernel.config.errors import problems_of
from kernel.config.show import Unrepresentable, differs, jsonable, toml_value
from kernel.paper_defaults import BUNDLED_DATA as PAPER_BUNDLED_DATA
from kernel.strategy import Strategy
from kernel.venue.marketdata import BUNDLED_DATA
from kernel.venue.server import VenueConfig
from machines.errors import InvalidData, StateMachineError, TradekernelError
from machines.feed import DEFAULTS as FEED_DEFAULTS
from machines.feed import FEED, check_backoff
from machines.health import HealthError, Thresholds
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
TRADES = str(REPO / "tests" / "data" / "binance_btcusdt_trades_20210108.csv")
QUOTES = str(REPO / "tests" / "data" / "binance_btcusdt_quotes_20210108.csv")
SENTINEL_KEY = "sentinel-key-3f9a1c7e"
SENTINEL_SECRET = "sentinel-secret-b82d40aa"
ENV = {"TK_TEST_KEY": SENTINEL_KEY, "TK_TEST_SECRET": SENTINEL_SECRET}
THIS = "tests.kernel.test_config"


class ParamStrategy(Strategy):
    """A strategy with one parameter of each kind ``build_params`` knows, and two it does not."""

    name: ClassVar[str] = "param_test"
    timer_interval_ms: ClassVar[int | None] = 500

    @dataclass(frozen=True)
    class Params:
        instrument: str = "BTCUSDT"
        qty: Decimal = Decimal("0.001")
        levels: int = 2
        post_only: bool = True
        ratio: float = 0.5
        note: str | None = None
        tags: tuple[str, ...] = field(default_factory=tuple)

        def __post_init__(self) -> None:
            if self.qty <= 0:
                raise ValueError(f"qty must be positive, got {self.qty}")


class NeedsParams(Strategy):
    """A strategy with a required parameter."""

    @dataclass(frozen=True)
    class Params:
        instrument: str


def write(tmp_path: Path, text: str, name: str = "kernel.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_text(tmp_path: Path, text: str, **kwargs: Any) -> Config:
    kwargs.setdefault("environ", {})
    return load(write(tmp_path, text), **kwargs)


FULL = f"""
[kernel]
db = "run/kernel.db"
durability = "normal"
log_format = "json"
log_level = "debug"
control_socket = "run/ctl.sock"
status_view = "lines"
status_interval_s = 2.5
cancel_on_stop = false
stop_timeout_s = 3
duration_s = 60.5

[venue]
url = "wss://venue.example.net:8765/v1"
instruments = ["BTCUSDT", "ETHUSDT"]
api_key_env = "TK_TEST_KEY"
api_secret_env = "TK_TEST_SECRET"
status_timeout_s = 2

[venue.embedded]
data = [{json.dumps(TRADES)}, {json.dumps(QUOTES)}]
speed = 0
loop = false
seed = 42
fee_bps = 0.75
slippage_bps = "1.5"
latency_ms = 12.5
reject_rate = 0.25
host = "::1"
port = 8765
store = "run/venue.db"

[feed]
stale_after_ms = 1500
backoff_initial_ms = 100
backoff_max_ms = 5000
backoff_multiplier = 3
jitter_ms = 0
healthy_after_ms = 0
max_attempts = 10

[strategy]
name = "{THIS}:ParamStrategy"
timer_interval_ms = 250

[strategy.params]
instrument = "ETHUSDT"
qty = "0.25"
levels = 5
post_only = false
ratio = 0.125
note = "a \\"quoted\\" note"
tags = ["x", "y"]

[http]
listen = "[::]:8080"
allow_remote = true

[health]
loop_lag_degraded_ms = 100
loop_lag_unhealthy_ms = 1000
commit_latency_degraded_ms = 50
strategy_errors_unhealthy = 3
"""


# -- defaults and a full file ---------------------------------------------------------------------


def test_defaults_without_a_file() -> None:
    config = load(environ={})
    assert config == load(None, {}, environ={}) == Config()
    k = config.kernel
    assert (k.db, k.durability, k.log_format, k.log_level) == ("tradekernel.db", "full", "text", "info")
    assert (k.control_socket, k.control_socket_path) == ("", "tradekernel.db.sock")
    assert (k.status_view, k.status_interval_s, k.cancel_on_stop, k.stop_timeout_s) == ("auto", 1.0, True, 5.0)
    assert k.duration_s is None
    v = config.venue
    assert (v.url, v.is_embedded, v.instruments, v.status_timeout_s) == ("embedded", True, (), 5.0)
    assert (v.api_key, v.api_secret) == (Secret(), Secret())
    e = v.embedded
    assert (e.data, e.data_paths) == ((), BUNDLED_DATA)
    assert (e.speed, e.loop, e.seed, e.latency_ms, e.reject_rate) == (1.0, True, 0, 0.0, 0.0)
    assert (e.fee_bps, e.slippage_bps) == (Decimal("1"), Decimal("0"))
    assert type(e.fee_bps) is Decimal
    assert (e.host, e.port, e.store, e.store_path) == ("127.0.0.1", 0, "", "tradekernel.db.venue.db")
    assert config.feed.policy() == {k: v for k, v in FEED_DEFAULTS.items() if k != "seed"}
    s = config.strategy
    assert (s.name, s.timer_interval_ms) == ("market_maker", None)
    assert s.strategy_class.name == "market_maker"
    assert s.effective_timer_interval_ms == s.strategy_class.timer_interval_ms
    assert s.params == s.strategy_class.Params()
    assert (config.http.listen, config.http.allow_remote, config.http.address) == ("", False, None)
    h = config.health
    assert (h.loop_lag_degraded_ms, h.loop_lag_unhealthy_ms, h.commit_latency_degraded_ms) == (250, 2000, 250)
    assert h.strategy_errors_unhealthy == 5


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_text(tmp_path, "") == load(environ={})


def test_a_full_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL, environ=ENV)
    k = config.kernel
    assert (k.db, k.durability, k.log_format, k.log_level) == ("run/kernel.db", "normal", "json", "debug")
    assert (k.control_socket, k.control_socket_path) == ("run/ctl.sock", "run/ctl.sock")
    assert (k.status_view, k.status_interval_s, k.cancel_on_stop) == ("lines", 2.5, False)
    assert (k.stop_timeout_s, k.duration_s) == (3.0, 60.5)
    assert type(k.stop_timeout_s) is float
    v = config.venue
    assert (v.url, v.is_embedded, v.instruments) == ("wss://venue.example.net:8765/v1", False, ("BTCUSDT", "ETHUSDT"))
    assert (v.api_key.reveal(), v.api_secret.reveal()) == (SENTINEL_KEY, SENTINEL_SECRET)
    assert (v.api_key_env, v.api_secret_env, v.status_timeout_s) == ("TK_TEST_KEY", "TK_TEST_SECRET", 2.0)
    e = v.embedded
    assert (e.data, e.data_paths) == ((TRADES, QUOTES), (TRADES, QUOTES))
    assert (e.speed, e.loop, e.seed, e.latency_ms, e.reject_rate) == (0.0, False, 42, 12.5, 0.25)
    assert (e.fee_bps, e.slippage_bps) == (Decimal("0.75"), Decimal("1.5"))
    assert (e.host, e.port, e.store, e.store_path) == ("::1", 8765, "run/venue.db", "run/venue.db")
    assert config.feed.policy() == {
        "stale_after_ms": 1500,
        "backoff_initial_ms": 100,
        "backoff_max_ms": 5000,
        "backoff_multiplier": 3,
        "jitter_ms": 0,
        "healthy_after_ms": 0,
        "max_attempts": 10,
    }
    s = config.strategy
    assert (s.name, s.strategy_class, s.timer_interval_ms, s.effective_timer_interval_ms) == (
        f"{THIS}:ParamStrategy",
        ParamStrategy,
        250,
        250,
    )
    assert s.params == ParamStrategy.Params(
        instrument="ETHUSDT",
        qty=Decimal("0.25"),
        levels=5,
        post_only=False,
        ratio=0.125,
        note='a "quoted" note',
        tags=["x", "y"],  # type: ignore[arg-type]  # build_params passes unknown kinds through
    )
    assert s.params_table["qty"] == "0.25"
    assert (config.http.listen, config.http.allow_remote, config.http.address) == ("[::]:8080", True, ("::", 8080))
    h = config.health
    assert (h.loop_lag_degraded_ms, h.loop_lag_unhealthy_ms) == (100, 1000)
    assert (h.commit_latency_degraded_ms, h.strategy_errors_unhealthy) == (50, 3)


def test_the_example_in_the_docs_loads(tmp_path: Path) -> None:
    text = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    assert blocks, "docs/config.md has no ```toml example"
    for index, block in enumerate(blocks):
        config = load(write(tmp_path, block, f"example{index}.toml"), environ={})
        assert config != load(environ={})  # it does set something
        assert round_trip(tmp_path, config, {}) == config


def test_the_docs_name_every_key() -> None:
    text = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    for section in cfg.SECTIONS.values():
        for f in section.file_keys():
            assert f"| `{f}` |" in text, f
    for f in EmbeddedVenueSection.file_keys():
        assert f"| `{f}` |" in text, f


def test_feed_section_mirrors_the_feed_machine_policy() -> None:
    assert FeedSection.file_keys() == [k for k in FEED_DEFAULTS if k != "seed"]
    policy = FeedSection().policy()
    entity, _ = FEED.create("paper", url="ws://127.0.0.1:1", instruments=["BTCUSDT"], **policy)
    assert {k: entity.data[k] for k in policy} == policy


def test_numbers_are_decimals_never_binary_floats(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[venue.embedded]\nfee_bps = 0.1\nslippage_bps = 3\n")
    assert config.venue.embedded.fee_bps == Decimal("0.1")
    assert config.venue.embedded.slippage_bps == Decimal(3)


def test_embedded_venue_config(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL.replace("wss://venue.example.net:8765/v1", "embedded"), environ=ENV)
    venue = config.venue.embedded.venue_config(config.venue.instruments)
    assert isinstance(venue, VenueConfig)
    assert venue.instruments == ("BTCUSDT", "ETHUSDT")
    assert venue.data_paths == (TRADES, QUOTES)
    assert (venue.speed, venue.seed, venue.loop, venue.latency_ms, venue.reject_rate) == (0.0, 42, False, 12.5, 0.25)
    assert (venue.fee_bps, venue.slippage_bps) == (Decimal("0.75"), Decimal("1.5"))
    assert EmbeddedVenueSection().venue_config().data_paths == BUNDLED_DATA


def test_the_store_follows_the_journal_when_built_directly() -> None:
    config = Config(kernel=KernelSection(db="elsewhere.db"))
    assert config.venue.embedded.store_path == "elsewhere.db.venue.db"
    assert config.venue.embedded.journal_db == "elsewhere.db"
    assert Config(kernel=KernelSection(db="a.db")) == load(None, {"kernel.db": "a.db"}, environ={})


# -- every error names its key --------------------------------------------------------------------

ERRORS: list[tuple[str, str, str]] = [
    # unknown keys, at every level
    (
        "[kernal]\n",
        "kernal",
        "unknown key kernal (known: kernel, venue, market, feed, strategy, http, health, ship, risk)",
    ),
    ("db = 'x'\n", "db", "unknown key db"),
    ("[kernel]\ndbb = 'x'\n", "kernel.dbb", "unknown key kernel.dbb (known: db, durability,"),
    ("[venue]\nurll = 'x'\n", "venue.urll", "unknown key venue.urll (known: url, instruments,"),
    ("[venue.embedded]\nsped = 1\n", "venue.embedded.sped", "unknown key venue.embedded.sped (known: data,"),
    ("[venue.embedded.more]\n", "venue.embedded.more", "unknown key venue.embedded.more"),
    ("[feed]\nseed = 1\n", "feed.seed", "unknown key feed.seed (known: stale_after_ms,"),
    ("[strategy]\nnam = 'x'\n", "strategy.nam", "unknown key strategy.nam (known: name, timer_interval_ms, params)"),
    ("[http]\nport = 1\n", "http.port", "unknown key http.port (known: listen, allow_remote)"),
    ("[health]\nlag = 1\n", "health.lag", "unknown key health.lag"),
    ("[strategy.params]\nbogus = 1\n", "strategy.params.bogus", "unknown parameter"),
    # a table where a table belongs
    ("kernel = 5\n", "kernel", "kernel: expected a table, got integer 5"),
    ("[venue]\nembedded = 3\n", "venue.embedded", "venue.embedded: expected a table, got integer 3"),
    ("[strategy]\nparams = 'x'\n", "strategy.params", "strategy.params: expected a table, got string 'x'"),
    # wrong types
    ("[kernel]\ndb = 5\n", "kernel.db", "kernel.db: expected a string, got integer 5"),
    ("[kernel]\ndb = 1979-05-27\n", "kernel.db", "expected a string, got date 1979-05-27"),
    ("[kernel]\ndb = 1979-05-27T07:32:00Z\n", "kernel.db", "got datetime 1979-05-27T07:32:00+00:00"),
    ("[kernel]\ndb = {a = 1}\n", "kernel.db", "expected a string, got table"),
    ("[kernel]\ndb = ['a']\n", "kernel.db", "expected a string, got array ['a']"),
    ("[kernel]\ncancel_on_stop = 'yes'\n", "kernel.cancel_on_stop", "expected true or false, got string 'yes'"),
    ("[kernel]\ncancel_on_stop = 1\n", "kernel.cancel_on_stop", "expected true or false, got integer 1"),
    ("[feed]\njitter_ms = true\n", "feed.jitter_ms", "expected an integer, got boolean true"),
    ("[feed]\njitter_ms = 1.5\n", "feed.jitter_ms", "expected an integer, got float 1.5"),
    ("[venue.embedded]\nport = '80'\n", "venue.embedded.port", "expected an integer, got string '80'"),
    ("[kernel]\nstatus_interval_s = '1'\n", "kernel.status_interval_s", "expected a number, got string '1'"),
    ("[kernel]\nstatus_interval_s = false\n", "kernel.status_interval_s", "expected a number, got boolean false"),
    ("[kernel]\nstop_timeout_s = inf\n", "kernel.stop_timeout_s", "must be a finite number, got Infinity"),
    ("[kernel]\nduration_s = nan\n", "kernel.duration_s", "must be a finite number"),
    ("[venue.embedded]\nfee_bps = true\n", "venue.embedded.fee_bps", "expected a decimal number"),
    ("[venue.embedded]\nfee_bps = [1]\n", "venue.embedded.fee_bps", "expected a decimal number"),
    ("[venue.embedded]\nfee_bps = 'abc'\n", "venue.embedded.fee_bps", "expected a decimal number, got string 'abc'"),
    ("[venue.embedded]\nfee_bps = 'NaN'\n", "venue.embedded.fee_bps", "must be a finite number, got NaN"),
    ("[venue.embedded]\nslippage_bps = -inf\n", "venue.embedded.slippage_bps", "must be a finite number"),
    ("[venue]\ninstruments = 'BTCUSDT'\n", "venue.instruments", "expected an array of strings, got string 'BTCUSDT'"),
    ("[venue]\ninstruments = ['A', 1]\n", "venue.instruments", "expected an array of strings, got array ['A', 1]"),
    ("[venue.embedded]\ndata = 'a.csv'\n", "venue.embedded.data", "expected an array of strings"),
    ("[strategy]\ntimer_interval_ms = 0.5\n", "strategy.timer_interval_ms", "expected an integer, got float 0.5"),
    ("[strategy]\nname = 1\n", "strategy.name", "expected a string, got integer 1"),
    ("[http]\nallow_remote = 'true'\n", "http.allow_remote", "expected true or false"),
    ("[health]\nloop_lag_degraded_ms = 1.0\n", "health.loop_lag_degraded_ms", "expected an integer"),
    # empty, repeated
    ("[kernel]\ndb = ''\n", "kernel.db", "kernel.db: must not be empty"),
    ("[strategy]\nname = ''\n", "strategy.name", "must not be empty"),
    ("[venue]\ninstruments = ['A', '']\n", "venue.instruments", "must not contain an empty string"),
    ("[venue]\ninstruments = ['A', 'B', 'A']\n", "venue.instruments", "must not repeat a value, got 'A' more"),
    ("[venue.embedded]\ndata = ['']\n", "venue.embedded.data", "must not contain an empty string"),
    # out of range
    ("[kernel]\nstatus_interval_s = 0\n", "kernel.status_interval_s", "must be greater than 0, got 0.0"),
    ("[kernel]\nstop_timeout_s = -1\n", "kernel.stop_timeout_s", "must be greater than 0"),
    ("[kernel]\nduration_s = 0\n", "kernel.duration_s", "must be greater than 0"),
    ("[venue]\nstatus_timeout_s = 0\n", "venue.status_timeout_s", "must be greater than 0"),
    ("[venue.embedded]\nspeed = -1\n", "venue.embedded.speed", "must be at least 0, got -1.0"),
    ("[venue.embedded]\nlatency_ms = -0.5\n", "venue.embedded.latency_ms", "must be at least 0"),
    ("[venue.embedded]\nreject_rate = 1.5\n", "venue.embedded.reject_rate", "must be between 0 and 1, got 1.5"),
    ("[venue.embedded]\nport = 65536\n", "venue.embedded.port", "must be between 0 and 65535, got 65536"),
    ("[venue.embedded]\nport = -1\n", "venue.embedded.port", "must be between 0 and 65535"),
    ("[venue.embedded]\nseed = -1\n", "venue.embedded.seed", "must be between 0 and"),
    ("[venue.embedded]\nfee_bps = -0.5\n", "venue.embedded.fee_bps", "must be at least 0, got -0.5"),
    ("[venue.embedded]\nslippage_bps = '-1'\n", "venue.embedded.slippage_bps", "must be at least 0"),
    ("[feed]\nstale_after_ms = 0\n", "feed.stale_after_ms", "must be between 1 and 86400000, got 0"),
    ("[feed]\nbackoff_multiplier = 17\n", "feed.backoff_multiplier", "must be between 1 and 16, got 17"),
    ("[feed]\nmax_attempts = -1\n", "feed.max_attempts", "must be between 0 and 1000000"),
    (
        "[feed]\nbackoff_max_ms = 100\n",
        "feed.backoff_max_ms",
        "backoff_max_ms (100) must be at least backoff_initial_ms (250)",
    ),
    ("[strategy]\ntimer_interval_ms = 0\n", "strategy.timer_interval_ms", "must be greater than 0, got 0"),
    ("[health]\nloop_lag_degraded_ms = 0\n", "health.loop_lag_degraded_ms", "must be at least 1, got 0"),
    ("[health]\nstrategy_errors_unhealthy = -5\n", "health.strategy_errors_unhealthy", "must be at least 1"),
    (
        "[health]\nloop_lag_unhealthy_ms = 250\n",
        "health.loop_lag_unhealthy_ms",
        "loop_lag_unhealthy_ms (250) must be above loop_lag_degraded_ms (250)",
    ),
    # enums
    (
        "[kernel]\ndurability = 'fast'\n",
        "kernel.durability",
        "kernel.durability: must be one of full, normal, got 'fast'",
    ),
    ("[kernel]\nlog_format = 'xml'\n", "kernel.log_format", "must be one of text, json, got 'xml'"),
    ("[kernel]\nlog_level = 'trace'\n", "kernel.log_level", "must be one of debug, info, warning, error"),
    ("[kernel]\nstatus_view = 'fancy'\n", "kernel.status_view", "must be one of auto, live, lines, off"),
    # http
    ("[http]\nlisten = '0.0.0.0:8080'\n", "http.listen", "0.0.0.0 is not a loopback address: pass --allow-remote"),
    ("[http]\nlisten = 'example.com:80'\n", "http.listen", "example.com is not a loopback address"),
    ("[http]\nlisten = '[::]:80'\n", "http.listen", ":: is not a loopback address"),
    ("[http]\nlisten = '8080'\n", "http.listen", 'expected "HOST:PORT" (IPv6 as "[::1]:PORT"), got \'8080\''),
    ("[http]\nlisten = ':8080'\n", "http.listen", 'expected "HOST:PORT"'),
    ("[http]\nlisten = 'local host:80'\n", "http.listen", 'expected "HOST:PORT"'),
    ("[http]\nlisten = '::1:8080'\n", "http.listen", "put an IPv6 address in brackets"),
    ("[http]\nlisten = '[localhost]:80'\n", "http.listen", "'localhost' is not an IPv6 address"),
    ("[http]\nlisten = 'localhost:65536'\n", "http.listen", "the port must be 0 to 65535"),
    ("[http]\nlisten = 'localhost:http'\n", "http.listen", "the port must be 0 to 65535"),
    ("[http]\nlisten = 'localhost:-1'\n", "http.listen", "the port must be 0 to 65535"),
    # the venue
    ("[venue]\nurl = 'http://x:1'\n", "venue.url", 'must be "embedded" or a ws:// or wss:// URL'),
    ("[venue]\nurl = 'Embedded'\n", "venue.url", 'must be "embedded" or a ws:// or wss:// URL'),
    ("[venue]\nurl = 'ws://'\n", "venue.url", "(no host or port)"),
    ("[venue]\nurl = 'ws://:80'\n", "venue.url", "(no host or port)"),
    ("[venue]\nurl = 'ws://host:'\n", "venue.url", "(no host or port)"),
    ("[venue]\nurl = 'ws://host:99999'\n", "venue.url", "(bad port)"),
    ("[venue]\nurl = 'ws://u:hunter2@host:1'\n", "venue.url", "must not contain credentials"),
    ("[venue]\napi_key_env = 'sk-live-hunter2'\n", "venue.api_key_env", "must be the NAME of an environment variable"),
    ("[venue]\napi_secret_env = '1ABC'\n", "venue.api_secret_env", "must be the NAME of an environment variable"),
    (
        "[venue]\nurl = 'ws://127.0.0.1:1'\napi_key_env = 'TK_UNSET'\n",
        "venue.api_key_env",
        "environment variable TK_UNSET is not set (or empty); venue ws://127.0.0.1:1 needs it",
    ),
    (
        "[venue]\nurl = 'ws://127.0.0.1:1'\napi_secret_env = 'TK_EMPTY'\n",
        "venue.api_secret_env",
        "environment variable TK_EMPTY is not set (or empty)",
    ),
    ("[venue.embedded]\nhost = '0.0.0.0'\n", "venue.embedded.host", "must be a loopback address"),
    ("[venue.embedded]\ndata = ['no/such.csv']\n", "venue.embedded.data", "no such file: 'no/such.csv'"),
    (f"[venue.embedded]\ndata = [{json.dumps(TRADES)}, 'gone.csv']\n", "venue.embedded.data", "'gone.csv' (item 2)"),
    # the strategy
    ("[strategy]\nname = 'nope'\n", "strategy.name", "unknown strategy 'nope': use one of idle, market_maker"),
    ("[strategy]\nname = 'no_such_module_xyz:Foo'\n", "strategy.name", "cannot import 'no_such_module_xyz'"),
    ("[strategy]\nname = 'json:loads'\n", "strategy.name", "is not a Strategy subclass"),
    (f"[strategy]\nname = '{THIS}:ParamStrategy'\n[strategy.params]\nbogus = 1\n", "strategy.params.bogus", "unknown"),
    (
        f"[strategy]\nname = '{THIS}:ParamStrategy'\n[strategy.params]\nqty = true\n",
        "strategy.params.qty",
        "strategy.params.qty: expected a decimal number, got bool True",
    ),
    (
        f"[strategy]\nname = '{THIS}:ParamStrategy'\n[strategy.params]\nlevels = '2'\n",
        "strategy.params.levels",
        "integer",
    ),
    (
        f"[strategy]\nname = '{THIS}:ParamStrategy'\n[strategy.params]\npost_only = 1\n",
        "strategy.params.post_only",
        "expected true or false",
    ),
    (
        f"[strategy]\nname = '{THIS}:ParamStrategy'\n[strategy.params]\nqty = 0\n",
        "strategy.params",
        "qty must be positive",
    ),
    (f"[strategy]\nname = '{THIS}:NeedsParams'\n", "strategy.params", "missing 1 required positional argument"),
]


@pytest.mark.parametrize(("text", "key", "message"), ERRORS, ids=[f"{i}-{e[1]}" for i, e in enumerate(ERRORS)])
def test_every_error_names_the_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={"TK_EMPTY": ""})
    error = caught.value
    assert error.key == key
    assert error.source == path
    assert str(error).startswith(f"{path}: ")
    assert key in str(error)
    assert message in str(error)
    assert "hunter2" not in str(error)


def test_a_remote_venue_with_its_secrets_set_is_fine(tmp_path: Path) -> None:
    text = "[venue]\nurl = 'ws://127.0.0.1:1'\napi_key_env = 'TK_TEST_KEY'\napi_secret_env = 'TK_TEST_SECRET'\n"
    config = load_text(tmp_path, text, environ=ENV)
    assert config.venue.api_key.is_set
    assert config.venue.api_secret.is_set


def test_unset_secrets_and_missing_data_are_fine_when_not_used(tmp_path: Path) -> None:
    embedded = load_text(tmp_path, "[venue]\napi_key_env = 'TK_UNSET'\n")
    assert embedded.venue.api_key == Secret("TK_UNSET")
    assert not embedded.venue.api_key.is_set
    remote = load_text(tmp_path, "[venue]\nurl = 'ws://localhost:9'\n[venue.embedded]\ndata = ['gone.csv']\n")
    assert remote.venue.embedded.data == ("gone.csv",)


def test_http_beyond_loopback_needs_allow_remote(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[http]\nlisten = '0.0.0.0:8080'\nallow_remote = true\n")
    assert config.http.address == ("0.0.0.0", 8080)
    flagged = load_text(tmp_path, "[http]\nlisten = '0.0.0.0:8080'\n", overrides={"http.allow_remote": True})
    assert flagged.http.allow_remote
    for listen, address in [("127.0.0.2:0", ("127.0.0.2", 0)), ("localhost:80", ("localhost", 80))]:
        assert load(None, {"http.listen": listen}, environ={}).http.address == address
    assert load(None, {"http.listen": "[::1]:8080"}, environ={}).http.address == ("::1", 8080)


def test_a_strategy_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_strategy_mod.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load(None, {"strategy.name": "broken_strategy_mod:X"}, environ={})
    assert caught.value.key == "strategy.name"
    assert caught.value.source == "--strategy"
    assert "importing 'broken_strategy_mod:X' failed: RuntimeError: boom" in str(caught.value)


def test_a_default_that_fails_has_no_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(strategy_module.BUILTIN, "market_maker", "no_such_module_xyz:MarketMaker")
    with pytest.raises(ConfigError) as caught:
        load(environ={})
    assert (caught.value.key, caught.value.source) == ("strategy.name", None)
    assert str(caught.value).startswith("strategy.name: strategy 'market_maker': cannot import")


# -- files that cannot be used --------------------------------------------------------------------


def test_not_valid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[kernel]\ndb = \n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert (caught.value.key, caught.value.source) == (None, path)
    assert str(caught.value).startswith(f"{path}: not valid TOML: ")
    assert "line 2" in str(caught.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "kernel.toml"
    path.write_bytes(b"[kernel]\ndb = '\xff'\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: not UTF-8 text \(invalid start byte at byte 15\)"):
        load(str(path))


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"
    assert (caught.value.key, caught.value.source) == (None, path)


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        load(str(tmp_path))


# -- overrides ------------------------------------------------------------------------------------


def test_overrides_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    overrides = {
        "kernel.db": "other.db",
        "venue.url": "embedded",
        "strategy.name": "idle",
        "kernel.duration_s": 5,
        "kernel.log_format": "text",
        "kernel.control_socket": "other.sock",
        "http.listen": "127.0.0.1:9000",
        "http.allow_remote": True,
        "strategy.params": {},
        "feed.jitter_ms": 7,
    }
    config = load(path, overrides, environ=ENV)
    assert (config.kernel.db, config.kernel.duration_s, config.kernel.log_format) == ("other.db", 5.0, "text")
    assert config.kernel.control_socket_path == "other.sock"
    assert config.venue.url == "embedded"
    assert config.venue.embedded.store_path == "run/venue.db"
    assert (config.strategy.name, config.strategy.params) == ("idle", Strategy.Params())
    assert config.http.address == ("127.0.0.1", 9000)
    assert config.feed.jitter_ms == 7
    assert config.kernel.durability == "normal"  # the file's, where no override
    unset = load(path, {**overrides, "kernel.duration_s": None}, environ=ENV)
    assert unset.kernel.duration_s is None


@pytest.mark.parametrize(
    ("overrides", "source", "key", "message"),
    [
        ({"kernel.log_format": "xml"}, "--log-format", "kernel.log_format", "must be one of text, json, got 'xml'"),
        ({"kernel.duration_s": -1.0}, "--duration", "kernel.duration_s", "must be greater than 0, got -1.0"),
        ({"kernel.duration_s": float("inf")}, "--duration", "kernel.duration_s", "must be a finite number, got inf"),
        ({"venue.url": "tcp://x"}, "--venue", "venue.url", 'must be "embedded" or a ws://'),
        ({"strategy.name": "nope"}, "--strategy", "strategy.name", "unknown strategy 'nope'"),
        ({"http.listen": "0.0.0.0:80"}, "--http", "http.listen", "pass --allow-remote"),
        ({"kernel.db": ""}, "--db", "kernel.db", "must not be empty"),
        ({"kernel.db": None}, "--db", "kernel.db", "expected a string, got nothing"),
        ({"kernel.control_socket": 1.5}, "--control-socket", "kernel.control_socket", "got float 1.5"),
        ({"kernel.db": object()}, "--db", "kernel.db", "expected a string, got object <object object at"),
        ({"venue.instruments": ("A", "A")}, "override venue.instruments", "venue.instruments", "must not repeat"),
        ({"kernel.dbx": "x"}, "override kernel.dbx", "kernel.dbx", "unknown key kernel.dbx"),
        ({"kernel..db": "x"}, "override kernel..db", "kernel..db", "not a dotted key: 'kernel..db'"),
        ({"kernel.db.path": "x"}, "override kernel.db.path", "kernel.db", "kernel.db: expected a string, got table"),
        ({"feed.backoff_initial_ms": 40000}, "override feed.backoff_initial_ms", "feed.backoff_max_ms", "at least"),
        (
            {"health.loop_lag_degraded_ms": 5000},
            "override health.loop_lag_degraded_ms",
            "health.loop_lag_unhealthy_ms",
            "",
        ),
        ({"strategy.params.bogus": 1}, "override strategy.params.bogus", "strategy.params.bogus", "unknown"),
    ],
)
def test_errors_from_overrides_name_the_flag(overrides: dict[str, Any], source: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, overrides, environ={})
    assert (caught.value.source, caught.value.key) == (source, key)
    assert str(caught.value).startswith(f"{source}: ")
    assert message in str(caught.value)


def test_an_override_inside_a_key_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "kernel = 5\n")
    with pytest.raises(ConfigError) as caught:
        load(path, {"kernel.db": "x"})
    assert str(caught.value) == "--db: kernel: expected a table, got integer 5"
    assert caught.value.key == "kernel"


def test_a_params_table_of_another_strategy_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, f"[strategy]\nname = '{THIS}:ParamStrategy'\n[strategy.params]\nlevels = 3\n")
    with pytest.raises(ConfigError) as caught:
        load(path, {"strategy.name": "idle"})
    assert caught.value.key == "strategy.params.levels"
    assert caught.value.source == path


# -- writing it out -------------------------------------------------------------------------------


def round_trip(tmp_path: Path, config: Config, environ: Mapping[str, str]) -> Config:
    return load(write(tmp_path, to_toml(config), "round-trip.toml"), environ=environ)


def test_to_toml_round_trip_of_the_defaults(tmp_path: Path) -> None:
    config = load(environ={})
    text = to_toml(config)
    assert round_trip(tmp_path, config, {}) == config
    for section in ("[kernel]", "[venue]", "[venue.embedded]", "[feed]", "[strategy]", "[strategy.params]"):
        assert f"\n{section}\n" in text
    assert 'control_socket = ""  # -> "tradekernel.db.sock"' in text
    assert 'store = ""  # -> "tradekernel.db.venue.db"' in text
    assert "# duration_s: not set (run until stopped)" in text
    assert "timer_interval_ms: not set (the strategy's own:" in text
    for path in BUNDLED_DATA:
        assert f"#   {json.dumps(path)}" in text
    assert "default:" not in text
    assert text.count(" = ") == sum(
        len(t.file_keys()) for t in (*cfg.SECTIONS.values(), EmbeddedVenueSection)
    ) - 4 + len(dataclasses.fields(config.strategy.params))  # every key but the four unset ones


def test_to_toml_round_trip_of_a_full_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL, environ=ENV)
    text = to_toml(config)
    assert round_trip(tmp_path, config, ENV) == config
    assert 'durability = "normal"  # default: "full"' in text
    assert "duration_s = 60.5  # default: not set" in text
    assert 'control_socket = "run/ctl.sock"  # default: ""' in text
    assert "slippage_bps = 1.5  # default: 0" in text
    assert 'api_key_env = "TK_TEST_KEY"  # set; default: ""' in text
    assert f'name = "{THIS}:ParamStrategy"  # -> {THIS}:ParamStrategy; default: "market_maker"' in text
    assert "timer_interval_ms = 250  # default: not set" in text
    assert 'note = "a \\"quoted\\" note"  # default: not set' in text
    assert 'tags = ["x", "y"]  # default: []' in text
    assert "qty = 0.25  # default: 0.001" in text


def test_to_toml_of_a_strategy_with_defaults_toml_cannot_hold(tmp_path: Path) -> None:
    config = load(None, {"strategy.name": f"{THIS}:ParamStrategy"}, environ={})
    text = to_toml(config)
    assert "# note: None (not a TOML value)" in text
    assert "# tags = []  # the strategy's default" in text
    assert '# instrument = "BTCUSDT"  # the strategy\'s default' in text
    assert "# timer_interval_ms: not set (the strategy's own: 500)" in text
    assert round_trip(tmp_path, config, {}) == config
    idle = load(None, {"strategy.name": "idle"}, environ={})
    assert "not set (the strategy's own: none, on_timer is never called)" in to_toml(idle)
    assert round_trip(tmp_path, idle, {}) == idle


def test_to_toml_of_odd_strings_and_unset_secrets(tmp_path: Path) -> None:
    overrides = {
        "kernel.db": 'we"ird\\path\n\t\x01\x7fé.db',
        "venue.url": "ws://localhost:1",
        "venue.api_key_env": "TK_TEST_KEY",
        "strategy.name": "idle",
    }
    config = load(None, overrides, environ={"TK_TEST_KEY": SENTINEL_KEY})
    assert round_trip(tmp_path, config, {"TK_TEST_KEY": SENTINEL_KEY}) == config
    assert 'api_key_env = "TK_TEST_KEY"  # set' in to_toml(config)
    unset = load(None, {**overrides, "venue.url": "embedded"}, environ={})  # an unused venue's secret may be unset
    assert unset.venue.api_key == Secret("TK_TEST_KEY")
    assert 'api_key_env = "TK_TEST_KEY"  # not set' in to_toml(unset)


@pytest.mark.parametrize(
    "value",
    [
        Decimal("0.001"),
        Decimal("1E+3"),
        Decimal("-0"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        1e-7,
        1e16,
        -2.5,
        True,
        "",
        'a\\b"c\n\b\f\r\t\x00\x1f\x7f',
        [1, "x", [Decimal("1.5")]],
        (),
        {"a": 1, "b c": {"d": "e"}},
        {},
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.date(2024, 1, 2),
        datetime.time(3, 4, 5),
    ],
)
def test_toml_values_read_back_equal(value: Any) -> None:
    read = tomllib.loads(f"v = {toml_value(value)}", parse_float=Decimal)["v"]
    if isinstance(value, float):
        assert float(read) == value
    else:
        assert read == (list(value) if isinstance(value, tuple) else value)


def test_toml_values_nan_and_the_unrepresentable() -> None:
    assert tomllib.loads(f"v = {toml_value(Decimal('NaN'))}", parse_float=Decimal)["v"].is_nan()
    with pytest.raises(Unrepresentable):
        toml_value(object())
    with pytest.raises(Unrepresentable):
        toml_value(None)
    assert differs(1, dataclasses.MISSING) == []
    assert differs(1, object())[0].startswith("default: <object object")


def test_to_json(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL, environ=ENV)
    data = to_json(config)
    assert json.loads(json.dumps(data)) == data
    assert data["kernel"]["control_socket_path"] == "run/ctl.sock"
    assert data["kernel"]["duration_s"] == 60.5
    assert data["venue"]["api_key"] == {"env": "TK_TEST_KEY", "set": True}
    assert data["venue"]["embedded"]["fee_bps"] == "0.75"
    assert data["venue"]["embedded"]["data_paths"] == [TRADES, QUOTES]
    assert data["venue"]["embedded"]["store_path"] == "run/venue.db"
    assert data["feed"] == config.feed.policy()
    assert data["strategy"]["strategy_class"] == f"{THIS}:ParamStrategy"
    assert data["strategy"]["effective_timer_interval_ms"] == 250
    assert data["strategy"]["params"]["qty"] == "0.25"
    assert data["strategy"]["params"]["tags"] == ["x", "y"]
    assert data["http"] == {"listen": "[::]:8080", "allow_remote": True, "host": "::", "port": 8080}
    assert data["health"]["loop_lag_unhealthy_ms"] == 1000
    defaults = to_json(load(environ={}))
    assert defaults["http"]["host"] is None
    assert defaults["kernel"]["duration_s"] is None
    assert defaults["venue"]["api_secret"] == {"env": "", "set": False}


def test_json_of_odd_parameter_values() -> None:
    @dataclass(frozen=True)
    class Inner:
        x: Decimal

    values = [float("inf"), float("nan"), {"k": Decimal(1)}, Inner(Decimal("2")), object]
    assert jsonable(values) == ["inf", "nan", {"k": "1"}, {"x": "2"}, str(object)]


# -- secrets --------------------------------------------------------------------------------------


def test_secrets_never_leave_the_process(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL, environ=ENV)
    outputs = [
        to_toml(config),
        json.dumps(to_json(config)),
        repr(config),
        str(config),
        repr(config.venue),
        f"{config.venue.api_key} {config.venue.api_secret!s} {config.venue.api_key!r}",
    ]
    for output in outputs:
        assert SENTINEL_KEY not in output
        assert SENTINEL_SECRET not in output
    assert repr(config.venue.api_key) == "Secret(env='TK_TEST_KEY', set)"
    assert str(config.venue.api_secret) == "Secret(env='TK_TEST_SECRET', set)"
    assert config.venue.api_key.reveal() == SENTINEL_KEY


def test_secrets_never_reach_config_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TK_TEST_KEY", SENTINEL_KEY)
    monkeypatch.setenv("TK_TEST_SECRET", SENTINEL_SECRET)
    path = write(tmp_path, FULL)
    for extra in ([], ["--json"]):
        assert show("--config", path, *extra) == 0
        out, err = capsys.readouterr()
        assert "TK_TEST_KEY" in out
        assert SENTINEL_KEY not in out + err
        assert SENTINEL_SECRET not in out + err


def test_secret_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    assert repr(Secret()) == "Secret(env='', not set)"
    assert repr(Secret("TK_X")) == "Secret(env='TK_X', not set)"
    assert not Secret("TK_X", "").is_set
    with pytest.raises(ConfigError, match="no environment variable is configured"):
        Secret().reveal()
    with pytest.raises(ConfigError, match=r"^environment variable TK_X is not set \(or empty\)$"):
        Secret("TK_X").reveal()
    assert Secret("A", "v") == Secret("A", "v") != Secret("A", "w")
    assert Secret("A", "v") != "v"
    assert len({Secret("A", "v"), Secret("A", "v"), Secret("B")}) == 2
    monkeypatch.setenv("TK_X", "value")
    assert Secret.from_env("TK_X").reveal() == "value"
    assert Secret.from_env("TK_X", {}) == Secret("TK_X")
    assert Secret.from_env("", {"": "x"}) == Secret()
    built = VenueSection(api_key_env="TK_X", api_secret_env="TK_NOT_THERE")
    assert built.api_key.reveal() == "value"
    assert built.api_secret == Secret("TK_NOT_THERE")
    given = VenueSection.model_validate({"api_key_env": "TK_X"}, context={"environ": {"TK_X": "given"}})
    assert given.api_key.reveal() == "given"


# -- the sections built directly ------------------------------------------------------------------


def test_strategy_section_built_directly() -> None:
    idle = StrategySection(name="idle")
    assert idle.params == Strategy.Params()
    assert idle.effective_timer_interval_ms is None
    given = StrategySection(name=f"{THIS}:ParamStrategy", params=ParamStrategy.Params(levels=9))
    assert given.params.levels == 9
    assert given.effective_timer_interval_ms == 500
    from_table = StrategySection(name=f"{THIS}:ParamStrategy", params={"levels": 4})
    assert from_table.params.levels == 4
    assert from_table.params_table == {"levels": 4}
    with pytest.raises(ValidationError) as caught:
        StrategySection(name=f"{THIS}:ParamStrategy", params=Strategy.Params())
    assert [str(p) for p in problems_of(caught.value, StrategySection, {}, ("strategy",))] == [
        "strategy.params: expected ParamStrategy.Params, got Params"
    ]
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        StrategySection(name="nope")


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:65535") == ("::1", 65535)
    assert HttpSection(listen="localhost:1").address == ("localhost", 1)
    for bad in ("", "x", "x:", "[::1:80", "x]:80", "x:٣"):
        with pytest.raises(ValueError, match="expected"):
            parse_listen(bad)


# -- tradekernel config show ----------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tradekernel")
    commands = top.add_subparsers(dest="command", required=True)
    cfg.add_parser(commands)
    return top


def show(*argv: str) -> int:
    args = parser().parse_args(["config", "show", *argv])
    code: int = args.run(args)
    return code


def test_config_show_prints_toml_that_loads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, FULL.replace("wss://venue.example.net:8765/v1", "embedded"))
    assert show("--config", path, "--db", "flag.db", "--duration", "30", "--allow-remote") == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"# from: defaults < {path} < --db < --duration < --allow-remote\n")
    assert 'db = "flag.db"' in out
    shown = load(write(tmp_path, out, "shown.toml"), environ={})
    assert shown == load(
        path, {"kernel.db": "flag.db", "kernel.duration_s": 30.0, "http.allow_remote": True}, environ={}
    )


def test_config_show_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert show() == 0
    out, _ = capsys.readouterr()
    assert out.startswith("# from: defaults\n")
    assert 'name = "market_maker"' in out


def test_config_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--strategy", "idle", "--venue", "ws://127.0.0.1:9", "--log-format", "json", "--http", "[::1]:0"]
    assert show(*flags, "--control-socket", "c.sock", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["strategy"]["name"] == "idle"
    assert data["venue"]["url"] == "ws://127.0.0.1:9"
    assert data["kernel"]["log_format"] == "json"
    assert data["kernel"]["control_socket_path"] == "c.sock"
    assert (data["http"]["host"], data["http"]["port"]) == ("::1", 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-format", "xml"], "tradekernel: error: --log-format: kernel.log_format: must be one of text, json"),
        (["--http", "0.0.0.0:80"], "tradekernel: error: --http: http.listen: 0.0.0.0 is not a loopback address"),
        (["--config", "/nonexistent/kernel.toml"], "tradekernel: error: /nonexistent/kernel.toml: cannot read:"),
        (["--duration", "0", "--json"], "tradekernel: error: --duration: kernel.duration_s: must be greater than 0"),
    ],
)
def test_config_show_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert show(*argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_bad_flag_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["config", "show", "--duration", "soon"])
    assert caught.value.code == 2
    assert "not a number of seconds: 'soon'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["config"])


def test_overrides_from_args_maps_only_the_flags_given() -> None:
    run = argparse.ArgumentParser()
    cfg.add_override_arguments(run)
    assert cfg.overrides_from_args(run.parse_args([])) == {}
    args = run.parse_args(
        [
            *("--config", "k.toml", "--db", "a.db", "--venue", "embedded", "--strategy", "idle", "--duration", "1.5"),
            *("--log-format", "json", "--control-socket", "s", "--http", "localhost:1", "--allow-remote"),
            *("--market", "binance:BTCUSDT,ETHUSDT"),
        ]
    )
    assert args.config == "k.toml"
    assert cfg.overrides_from_args(args) == {
        "kernel.db": "a.db",
        "venue.url": "embedded",
        "market.source": "binance",
        "market.instruments": ["BTCUSDT", "ETHUSDT"],
        "strategy.name": "idle",
        "kernel.duration_s": 1.5,
        "kernel.log_format": "json",
        "kernel.control_socket": "s",
        "http.listen": "localhost:1",
        "http.allow_remote": True,
    }
    assert set(cfg.overrides_from_args(args)) == set(cfg.OVERRIDE_FLAGS)
    assert cfg.overrides_from_args(argparse.Namespace(db="x")) == {"kernel.db": "x"}
    assert cfg.main_show(argparse.Namespace(strategy="idle")) == 0


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["config", "show", "--help"])
    out = capsys.readouterr().out
    for flag in ("--config", *cfg.OVERRIDE_FLAGS.values(), "--json"):
        assert flag in out


# -- every problem at once ------------------------------------------------------------------------

MISTAKES = """
[kernel]
dbb = "x"

[venue.embedded]
port = "80"

[feed]
stale_after_ms = 0

[health]
loop_lag_degraded_ms = 500
loop_lag_unhealthy_ms = 400

[risk]
max_open_orders = 0
"""
"""An unknown key, a wrong type, an out-of-range value, a cross-field violation, a bad risk limit."""


def expected_mistakes(path: str) -> list[tuple[str, str, str]]:
    return [
        ("kernel.dbb", path, "unknown key kernel.dbb (known: db, durability, log_format, log_level, control_socket,"),
        ("venue.embedded.port", path, "venue.embedded.port: expected an integer, got string '80'"),
        ("feed.stale_after_ms", path, "feed.stale_after_ms: must be between 1 and 86400000, got 0"),
        (
            "health.loop_lag_unhealthy_ms",
            path,
            "health.loop_lag_unhealthy_ms: loop_lag_unhealthy_ms (400) must be above loop_lag_degraded_ms (500)",
        ),
        ("risk.max_open_orders", path, "risk.max_open_orders: must be a positive int or None, got 0"),
    ]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, MISTAKES)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    error = caught.value
    assert isinstance(error, TradekernelError)
    assert isinstance(error, ValueError)
    expected = expected_mistakes(path)
    assert len(error.problems) == len(expected)
    for problem, (key, source, message) in zip(error.problems, expected, strict=True):
        assert (problem.key, problem.source) == (key, source)
        assert problem.message.startswith(message)
        assert str(problem) == f"{source}: {problem.message}"
    assert (error.key, error.source) == ("kernel.dbb", path)  # the first, for callers that read one
    lines = str(error).splitlines()
    assert lines[0] == "5 problems in the configuration:"
    assert lines[1:] == [f"  {problem}" for problem in error.problems]


def test_config_show_reports_every_problem_in_a_real_process(tmp_path: Path) -> None:
    path = write(tmp_path, MISTAKES)
    result = run_cli("config", "show", "--config", path, "--duration", "0")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "tradekernel: error: 6 problems in the configuration:"
    assert lines[1] == "  --duration: kernel.duration_s: must be greater than 0, got 0.0"
    for line, (_, source, message) in zip(lines[2:], expected_mistakes(path), strict=True):
        assert line.startswith(f"  {source}: {message}")
    assert len(lines) == 7
    assert "Traceback" not in result.stderr


def test_problems_in_several_sections_and_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "[venue]\nurl = 'ws://127.0.0.1:1'\napi_key_env = 'TK_UNSET'\n[strategy]\nname = 'nope'\n")
    with pytest.raises(ConfigError) as caught:
        load(path, {"http.listen": "0.0.0.0:80", "feed.backoff_initial_ms": 40000}, environ={})
    found = [(p.key, p.source) for p in caught.value.problems]
    assert found == [
        ("venue.api_key_env", path),
        ("feed.backoff_max_ms", "override feed.backoff_initial_ms"),
        ("strategy.name", path),
        ("http.listen", "--http"),
    ]


def test_a_risk_limit_of_an_instrument_names_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[risk.instruments.BTCUSDT]\nmax_order_qty = -1\n")
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert (caught.value.key, caught.value.source) == ("risk.instruments.BTCUSDT.max_order_qty", path)
    assert str(caught.value) == (f"{path}: risk.instruments.BTCUSDT.max_order_qty: must be positive and finite, got -1")
    with pytest.raises(ConfigError) as caught:
        load(None, {"risk.instruments": 5}, environ={})
    assert str(caught.value) == (
        "override risk.instruments: risk.instruments: must be a table of instrument tables, got 5"
    )
    with pytest.raises(ConfigError, match=r"^override risk: risk: expected a table, got integer 5$"):
        load(None, {"risk": 5}, environ={})
    limits = load(write(tmp_path, "[risk]\nmax_open_orders = 3\n", "ok.toml"), environ={}).risk.limits
    assert limits.max_open_orders == 3


def test_the_machines_own_the_cross_field_checks() -> None:
    with pytest.raises(InvalidData, match=r"^backoff_max_ms \(100\) must be at least backoff_initial_ms \(250\)$"):
        check_backoff(250, 100)
    check_backoff(250, 250)
    with pytest.raises(HealthError) as caught:
        Thresholds(loop_lag_degraded_ms=500, loop_lag_unhealthy_ms=400)
    assert caught.value.fields == ("loop_lag_unhealthy_ms", "loop_lag_degraded_ms")
    assert isinstance(caught.value, StateMachineError)
    assert isinstance(caught.value, ValueError)
    assert HealthSection(loop_lag_degraded_ms=1, loop_lag_unhealthy_ms=2).thresholds() == Thresholds(
        loop_lag_degraded_ms=1, loop_lag_unhealthy_ms=2
    )


# -- the environment ------------------------------------------------------------------------------


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[kernel]\ndb = 'file.db'\nlog_format = 'json'\n[feed]\njitter_ms = 3\n")
    environ = {
        "TRADEKERNEL_KERNEL__DB": "env/kernel.db",  # not a TOML value: taken as a string
        "TRADEKERNEL_KERNEL__LOG_FORMAT": '"text"',
        "TRADEKERNEL_FEED__JITTER_MS": "7",
        "TRADEKERNEL_VENUE__EMBEDDED__FEE_BPS": "0.1",
        "TRADEKERNEL_VENUE__INSTRUMENTS": '["BTCUSDT", "ETHUSDT"]',
        "TRADEKERNEL_HTTP__ALLOW_REMOTE": "true",
        "TRADEKERNEL_RISK__INSTRUMENTS__BTCUSDT__MAX_POSITION": "2",
        "TRADEKERNEL_CRASH_AT": "not:config",  # no "__": not a config key
        "OTHER__THING": "x",
    }
    config = load(path, {"kernel.log_format": "json"}, environ=environ)
    assert config.kernel.db == "env/kernel.db"  # the environment beats the file
    assert config.kernel.log_format == "json"  # a flag beats the environment
    assert config.feed.jitter_ms == 7
    assert config.venue.embedded.fee_bps == Decimal("0.1")
    assert type(config.venue.embedded.fee_bps) is Decimal
    assert config.venue.instruments == ("BTCUSDT", "ETHUSDT")
    assert config.http.allow_remote is True
    assert config.risk.table == {"instruments": {"BTCUSDT": {"max_position": 2}}}
    assert config.risk.limits.per_instrument["BTCUSDT"].max_position == Decimal(2)


@pytest.mark.parametrize(
    ("name", "value", "key", "message"),
    [
        ("TRADEKERNEL_KERNEL__DBB", "x", "kernel.dbb", "unknown key kernel.dbb (known: db,"),
        ("TRADEKERNEL_FEED__JITTER_MS", "soon", "feed.jitter_ms", "expected an integer, got string 'soon'"),
        ("TRADEKERNEL_KERNEL__DURATION_S", "0", "kernel.duration_s", "must be greater than 0, got 0.0"),
        ("TRADEKERNEL_VENUE__EMBEDDED__FEE_BPS", "1e400x", "venue.embedded.fee_bps", "expected a decimal number"),
        ("TRADEKERNEL_NOPE__X", "1", "nope", "unknown key nope (known: kernel, venue,"),
    ],
)
def test_environment_errors_name_the_variable(name: str, value: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ={name: value})
    assert (caught.value.key, caught.value.source) == (key, f"env {name}")
    assert str(caught.value).startswith(f"env {name}: ")
    assert message in str(caught.value)


def test_config_show_names_the_environment() -> None:
    env_run = subprocess_env({"TRADEKERNEL_FEED__JITTER_MS": "9"})
    result = run_in(env_run, "config", "show", "--db", "x.db")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# from: defaults < env TRADEKERNEL_FEED__JITTER_MS < --db\n")
    assert "jitter_ms = 9  # default: 250" in result.stdout


def subprocess_env(extra: Mapping[str, str]) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRADEKERNEL_")},
        **extra,
        "PYTHONPATH": str(REPO),
    }


def run_in(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel", *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


# -- the JSON Schema ------------------------------------------------------------------------------


def test_json_schema_describes_every_key() -> None:
    schema = json_schema()
    assert schema["title"] == "tradekernel configuration"
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == [
        "kernel",
        "venue",
        "market",
        "feed",
        "strategy",
        "http",
        "health",
        "ship",
        "risk",
    ]
    defs = schema["$defs"]
    for name, section in [*cfg.SECTIONS.items(), ("venue.embedded", EmbeddedVenueSection)]:
        table = defs[section.__name__]
        assert table["additionalProperties"] is False, name
        for key in section.file_keys():
            assert table["properties"][key]["description"], f"{name}.{key}"
    kernel = defs["KernelSection"]["properties"]
    assert kernel["durability"]["enum"] == ["full", "normal"]
    assert kernel["status_interval_s"]["exclusiveMinimum"] == 0
    assert kernel["db"]["minLength"] == 1
    port = defs["EmbeddedVenueSection"]["properties"]["port"]
    assert (port["type"], port["minimum"], port["maximum"]) == ("integer", 0, 65535)
    feed = defs["FeedSection"]["properties"]
    assert (feed["backoff_multiplier"]["minimum"], feed["backoff_multiplier"]["maximum"]) == (1, 16)
    assert defs["VenueSection"]["properties"]["instruments"]["uniqueItems"] is True
    assert "api_key" not in defs["VenueSection"]["properties"]  # secrets are never keys of the file
    assert "journal_db" not in defs["EmbeddedVenueSection"]["properties"]
    risk = schema["properties"]["risk"]
    assert risk["additionalProperties"] is False
    assert {"max_open_orders", "max_order_qty", "instruments"} <= set(risk["properties"])


def test_config_schema_command_in_a_real_process() -> None:
    result = run_cli("config", "schema")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(json_schema()))


def test_config_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["config", "schema"])
    assert args.run(args) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "tradekernel configuration"


# -- importing the config -------------------------------------------------------------------------


def test_importing_the_config_imports_no_simulator_module() -> None:
    code = (
        "import kernel.config, sys; "
        "print(sorted(m for m in sys.modules if m.startswith(('kernel.venue','storage.venue_store'))))"
    )
    env = subprocess_env({})
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_the_bundled_data_is_the_simulators() -> None:
    assert PAPER_BUNDLED_DATA == BUNDLED_DATA
    assert all(Path(path).is_file() for path in PAPER_BUNDLED_DATA)


def test_to_toml_round_trip_of_risk_limits(tmp_path: Path) -> None:
    text = (
        "[risk]\nmax_open_orders = 4\nmax_order_qty = 0.5\nreduce_only = false\n"
        "[risk.instruments.BTCUSDT]\nmax_position = 0.25\n[risk.instruments.'ETH/USD']\nlot_size = 1\n"
    )
    config = load_text(tmp_path, text)
    shown = to_toml(config)
    assert "\n[risk]\nmax_open_orders = 4\nmax_order_qty = 0.5\nreduce_only = false\n" in shown
    assert '\n[risk.instruments."BTCUSDT"]\nmax_position = 0.25\n' in shown
    assert '\n[risk.instruments."ETH/USD"]\nlot_size = 1\n' in shown
    assert round_trip(tmp_path, config, {}) == config
    assert config.risk.limits.per_instrument["ETH/USD"].lot_size == Decimal(1)


def test_sections_built_directly_compare_by_value() -> None:
    risk = load(None, {"risk.max_open_orders": 2}, environ={}).risk
    limits = RiskSection(table={"max_open_orders": 2}, limits=risk.limits)
    assert Config(risk=limits) == load(None, {"risk.max_open_orders": 2}, environ={})
    assert StrategySection(name="idle") != "idle"
    assert StrategySection(name="idle") == StrategySection(name="idle", params={})


# -- [market] and --market (issue 13) ------------------------------------------------------------

MARKET = """
[market]
source = "binance"
instruments = ["BTCUSDT", "ETHUSDT"]
ws_url = "ws://127.0.0.1:9443"
rest_url = "http://127.0.0.1:9444"

[market.rules.ETHUSDT]
tick_size = "0.05"
lot_size = 0.001
min_notional = 5
"""


def test_market_defaults_to_the_replay_with_nothing_to_follow() -> None:
    market = load(environ={}).market
    assert (market.source, market.instruments, market.ws_url, market.rest_url, market.rules) == (
        "replay",
        (),
        None,
        None,
        {},
    )
    assert market.is_live is False


def test_a_live_market_from_the_file_with_rules(tmp_path: Path) -> None:
    market = load_text(tmp_path, MARKET).market
    assert market.is_live
    assert (market.source, market.instruments) == ("binance", ("BTCUSDT", "ETHUSDT"))
    assert (market.ws_url, market.rest_url) == ("ws://127.0.0.1:9443", "http://127.0.0.1:9444")
    rules = market.rules["ETHUSDT"]
    assert (rules.tick_size, rules.lot_size, rules.min_notional) == (D("0.05"), D("0.001"), D("5"))
    assert list(market.rules) == ["ETHUSDT"]


def test_every_market_problem_at_once_with_its_key_and_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[market]
source = "binance"
instruments = ["BTCUSDT", "BTCUSDT", ""]
ws_url = "https://example.com"
rest_url = "wss://example.com"

[market.rules.ETHUSDT]
tick_size = 0
lot = 1
""",
    )
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    found = {(problem.key, problem.source, problem.message) for problem in caught.value.problems}
    assert found == {
        (
            "market.instruments",
            path,
            "market.instruments: must not contain an empty string, got ['BTCUSDT', 'BTCUSDT', '']",
        ),
        ("market.ws_url", path, "market.ws_url: must be a ws:// or wss:// URL, got 'https://example.com'"),
        ("market.rest_url", path, "market.rest_url: must be a http:// or https:// URL, got 'wss://example.com'"),
        ("market.rules.ETHUSDT.tick_size", path, "market.rules.ETHUSDT.tick_size: must be greater than 0, got 0"),
        (
            "market.rules.ETHUSDT.lot",
            path,
            "unknown key market.rules.ETHUSDT.lot (known: tick_size, lot_size, min_notional)",
        ),
    }


def test_a_live_source_needs_instruments_and_paper_an_endpoint(tmp_path: Path) -> None:
    path = write(tmp_path, '[market]\nsource = "paper"\n')
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert [(p.key, p.source) for p in caught.value.problems] == [
        ("market.instruments", path),
        ("market.ws_url", path),
    ]
    assert "set market.instruments" in caught.value.problems[0].message
    assert "a paper market source has no public endpoint" in caught.value.problems[1].message


def test_the_replay_refuses_what_only_a_live_source_uses(tmp_path: Path) -> None:
    path = write(tmp_path, '[market]\ninstruments = ["BTCUSDT"]\nws_url = "wss://x.example"\n')
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert [p.key for p in caught.value.problems] == ["market.instruments", "market.ws_url"]
    assert all("only used with a live market.source, not 'replay'" in p.message for p in caught.value.problems)


def test_rules_must_name_a_followed_instrument(tmp_path: Path) -> None:
    text = '[market]\nsource = "kraken"\ninstruments = ["BTC/USD"]\n\n[market.rules."ETH/USD"]\ntick_size = 0.1\n'
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    assert caught.value.key == "market.rules.ETH/USD"
    assert "which market.instruments does not list" in str(caught.value)


def test_a_live_market_needs_the_embedded_venue_and_covers_its_instruments(tmp_path: Path) -> None:
    remote = '[venue]\nurl = "ws://127.0.0.1:8765"\n[market]\nsource = "coinbase"\ninstruments = ["BTC-USD"]\n'
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, remote)
    assert caught.value.key == "market.source"
    assert 'set venue.url = "embedded"' in str(caught.value)
    narrower = '[venue]\ninstruments = ["ETH-USD"]\n[market]\nsource = "coinbase"\ninstruments = ["BTC-USD"]\n'
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, narrower)
    assert caught.value.key == "venue.instruments"
    assert "ETH-USD not in market.instruments" in str(caught.value)


def test_the_market_flag_sets_source_and_instruments() -> None:
    from kernel.config.market import parse_market_flag

    assert parse_market_flag("binance:BTCUSDT,ETHUSDT") == {
        "market.source": "binance",
        "market.instruments": ["BTCUSDT", "ETHUSDT"],
    }
    assert parse_market_flag("Kraken:BTC/USD") == {"market.source": "kraken", "market.instruments": ["BTC/USD"]}
    assert parse_market_flag("replay") == {"market.source": "replay", "market.instruments": []}
    config = load(overrides=parse_market_flag("coinbase:BTC-USD"), environ={})
    assert (config.market.source, config.market.instruments) == ("coinbase", ("BTC-USD",))


def test_market_flag_errors_name_the_flag(tmp_path: Path) -> None:
    result = run_cli("config", "show", "--market", "nyse:IBM")
    assert result.returncode == 2
    assert "--market: market.source: must be one of replay, paper, binance, coinbase, kraken, got 'nyse'" in (
        result.stderr
    )
    result = run_cli("config", "show", "--market", "binance")
    assert result.returncode == 2
    assert "--market: market.instruments: market.source 'binance' needs the symbols to follow" in result.stderr


def test_config_show_prints_the_market_and_reads_it_back(tmp_path: Path) -> None:
    path = write(tmp_path, MARKET)
    result = run_cli("config", "show", "--config", path, "--market", "binance:BTCUSDT,ETHUSDT")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"# from: defaults < {path} < --market"
    assert '\n[market]\nsource = "binance"  # default: "replay"\ninstruments = ["BTCUSDT", "ETHUSDT"]' in result.stdout
    assert "\n[market.rules.ETHUSDT]\ntick_size = 0.05  # default: 0.01\n" in result.stdout
    config = load(path, environ={})
    assert round_trip(tmp_path, config, {}) == config
    data = json.loads(run_cli("config", "show", "--config", path, "--json").stdout)
    assert data["market"] == {
        "source": "binance",
        "instruments": ["BTCUSDT", "ETHUSDT"],
        "ws_url": "ws://127.0.0.1:9443",
        "rest_url": "http://127.0.0.1:9444",
        "rules": {"ETHUSDT": {"tick_size": "0.05", "lot_size": "0.001", "min_notional": "5"}},
    }


def test_json_schema_describes_the_market() -> None:
    defs = json_schema()["$defs"]
    market = defs["MarketSection"]["properties"]
    assert market["source"]["enum"] == ["replay", "paper", "binance", "coinbase", "kraken"]
    assert market["instruments"]["uniqueItems"] is True
    assert market["rules"]["additionalProperties"] == {"$ref": "#/$defs/InstrumentRulesSection"}
    assert defs["InstrumentRulesSection"]["properties"]["tick_size"]["exclusiveMinimum"] == 0
    assert defs["InstrumentRulesSection"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://user:pw@example.com", "market.ws_url: must not contain credentials"),
        (
            "ws://example.com:99999",
            "market.ws_url: must be a ws:// or wss:// URL, got 'ws://example.com:99999' (bad port)",
        ),
        ("ws://:80", "market.ws_url: must be a ws:// or wss:// URL, got 'ws://:80' (no host)"),
    ],
)
def test_market_urls_are_checked(url: str, message: str) -> None:
    overrides = {"market.source": "coinbase", "market.instruments": ["BTC-USD"], "market.ws_url": url}
    with pytest.raises(ConfigError) as caught:
        load(overrides=overrides, environ={})
    assert str(caught.value) == f"override market.ws_url: {message}"
    assert "user:pw" not in str(caught.value)


def test_configured_rules_become_the_venues_trading_rules() -> None:
    from kernel.config.market import InstrumentRulesSection
    from kernel.paper_defaults import TradingRules

    assert InstrumentRulesSection().trading_rules() == TradingRules(D("0.01"), D("0.00001"), None)
    section = InstrumentRulesSection(tick_size=D("0.5"), lot_size=D(2), min_notional=D(10))
    assert section.trading_rules() == TradingRules(D("0.5"), D(2), D(10))


def test_the_environment_sets_market_keys_and_rules_by_symbol_as_written() -> None:
    environ = {
        "TRADEKERNEL_MARKET__SOURCE": "kraken",
        "TRADEKERNEL_MARKET__INSTRUMENTS": '["XBTUSDT"]',
        "TRADEKERNEL_MARKET__RULES__XBTUSDT__TICK_SIZE": '"0.1"',
    }
    market = load(environ=environ).market
    assert (market.source, market.instruments) == ("kraken", ("XBTUSDT",))
    assert market.rules["XBTUSDT"].tick_size == D("0.1")
