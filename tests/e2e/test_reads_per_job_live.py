"""How often a live job asks the venue for each thing, with eight contracts (real ccxt, loopback).

A decision tick that opens every contract reads the positions again after each contract's orders
(its stop is sized on the position the venue holds). Each positions read asked for the setting
the rows lack once per position held: Binance's leverage (v3 positionRisk has none:
``GET /fapi/v1/symbolConfig``, weight 5, which answers every symbol's row at once), Bybit's
margin mode (``GET /v5/account/info``, the account's one mode). The tick made N(N+1)/2 + N such
reads: 495 for 30 contracts, 153 s on Binance's request weight, the minute guard held off that
long and the last contracts sized on prices minutes old. Now one per positions read.

And each guard read the whole account twice: the runner read it again for its alert conditions
(every contract's open orders and mark, the positions, the balance). The guard's own reading,
kept in step with its orders, serves them now.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose
from bot.domain.instrument import Instrument
from bot.instruments import load_instruments
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import HOUR, ROOT, start_live, stop_live
from tests.fakes.loopback_core import LoopbackServer

N = 8
KEY, SECRET = "reads-key-5c1a", "reads-secret-9e07f2"
SERVERS: dict[str, type[LoopbackServer]] = {"binanceusdm": LoopbackBinance, "bybit": LoopbackBybit}
BASES = ("BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "SUI", "ADA")
SYMBOLS = [f"{b}/USDT:USDT" for b in BASES]
# The account-wide positions read; the setting its rows lack; the balance.
POSITIONS = {"binanceusdm": "/fapi/v3/positionRisk", "bybit": "/v5/position/list"}
SETTINGS = {"binanceusdm": "/fapi/v1/symbolConfig", "bybit": "/v5/account/info"}
BALANCE = {"binanceusdm": "/fapi/v3/account", "bybit": "/v5/account/wallet-balance"}
SIGNING = frozenset({"timestamp", "signature", "recvWindow"})


def _instruments(venue: str) -> dict[str, Instrument]:
    """Eight contracts: the venue's bundled ones (Bybit bundles four: the others are copies of
    them under other names, which the loopback venue lists like any other)."""
    bundled = load_instruments(venue)
    models = [bundled[s] for s in SYMBOLS if s in bundled]
    out = {i.symbol: i for i in models}
    for b, sym in zip(BASES, SYMBOLS, strict=True):
        if sym not in out:
            out[sym] = dataclasses.replace(models[len(out) % len(models)], symbol=sym, base=b)
    assert list(out) == SYMBOLS
    return out


def _hours(i: int, price: D) -> list[tuple[int, D, D, D, D, D]]:
    """400 bundled hours (BTC, ETH or SOL; a different stretch for each contract), scaled so
    the last close is ``price``, moved so the last one closed this hour."""
    stem = ("BTC", "ETH", "SOL")[i % 3] + "_USDT_USDT"
    with gzip.open(ROOT / "data" / "sample" / f"{stem}-1h.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()[1:]
    end = len(lines) - (i // 3) * 500
    rows = [line.split(",") for line in lines[end - 400 : end]]
    scale = price / D(rows[-1][4])
    now = LiveClock().now_ms()
    shift = now - now % HOUR - HOUR - int(rows[-1][0])
    return [
        (
            int(r[0]) + shift,
            D(r[1]) * scale,
            D(r[2]) * scale,
            D(r[3]) * scale,
            D(r[4]) * scale,
            D(r[5]) / scale,
        )
        for r in rows
    ]


@pytest.fixture(params=sorted(SERVERS))
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(venue: str) -> Iterator[LoopbackServer]:
    instruments = _instruments(venue)
    backend = SimulatedExchange(
        instruments, LiveClock(), starting_balance=D(100000), margin_mode=MarginMode.ISOLATED
    )
    srv = SERVERS[venue](
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=list(instruments)
    )
    for i, (sym, inst) in enumerate(instruments.items()):
        rows = _hours(i, (inst.tick_size * 20000).normalize())
        srv.set_candles(sym, "trade", rows)
        srv.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def runner(tmp_path: Path, server: LoopbackServer, venue: str) -> Iterator[tuple[Runner, SqlStore]]:
    contracts = "".join(f'[[contracts]]\nsymbol = "{s}"\ndirection = "long"\n\n' for s in SYMBOLS)
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[account]
name = "reads"
starting_balance = 100000
margin_mode = "isolated"

{contracts}
[data]
dir = "{ROOT / "data" / "sample"}"

[policy]
file = "{ROOT / "policies" / "vol_target.toml"}"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 6
max_notional_per_contract = 50000
daily_loss_limit = 0.05
max_drawdown = 0.25
stale_data_seconds = 7200
max_orders_per_minute = 1000

[simulation]
slippage_bps = 2

[exchange]
name = "{venue}"
demo = false
api_url = "{server.base_url}"
ccxt_options = {{ enableRateLimit = false, timeout = 10000 }}
hedge_reads_after_ms = 0

[runtime]
database_url = "sqlite:///{tmp_path / "state.db"}"
log_dir = "{tmp_path / "logs"}"
"""
    )
    built, store = start_live(path, KEY, SECRET)
    yield built, store
    stop_live(built, store)


def _positions_reads(server: LoopbackServer, venue: str, since: int) -> int:
    """The account's positions reads since request ``since`` (Bybit: by settle coin; its reads
    of one symbol's row are the flat probe and the leverage of a flat contract)."""
    return sum(
        1
        for r in server.requests[since:]
        if r.method == "GET"
        and r.path == POSITIONS[venue]
        and (venue != "bybit" or "settleCoin" in r.params)
    )


def _gets(server: LoopbackServer, since: int) -> Counter[str]:
    return Counter(r.path for r in server.requests[since:] if r.method == "GET")


def _settings_reads(server: LoopbackServer, venue: str, since: int) -> int:
    """The reads of the setting the positions rows lack since request ``since``. (ccxt's bybit
    client also asks /v5/account/info the first time it checks that the account is unified,
    with /v5/user/query-api: once per client, and a thread of the request pool has one.)"""
    gets = _gets(server, since)
    return gets[SETTINGS[venue]] - (gets["/v5/user/query-api"] if venue == "bybit" else 0)


def test_a_tick_that_opens_every_contract_reads_the_settings_once_per_positions_read(
    runner: tuple[Runner, SqlStore], server: LoopbackServer, venue: str
) -> None:
    run, _ = runner
    first = len(server.requests)  # (after the start's reads)
    assert run.tick() is not None
    backend = server.backend
    held = backend.fetch_positions(SYMBOLS)
    assert len(held) == N  # every contract opened...
    for sym in held:  # ...and protected
        assert any(o.purpose is OrderPurpose.STOP_LOSS for o in backend.fetch_open_orders(sym))
    reads = _positions_reads(server, venue, first)
    settings = _settings_reads(server, venue, first)
    # The reconcile's read and one after each contract's orders.
    assert reads == N + 1
    # One settings read per positions read that holds a position (N(N+1)/2 before: 36), and
    # on Binance each flat contract's setting read before its first order (ccxt asks
    # symbolConfig for it; Bybit answers it in the contract's position row).
    flat_setting_reads = N if venue == "binanceusdm" else 0
    assert settings <= reads + flat_setting_reads, f"{settings} settings reads for {reads}"


def test_a_guard_reads_the_account_once(
    runner: tuple[Runner, SqlStore], server: LoopbackServer, venue: str
) -> None:
    run, _ = runner
    assert run.tick() is not None
    first = len(server.requests)
    run.guard()
    gets = _gets(server, first)
    assert _positions_reads(server, venue, first) == 1
    assert _settings_reads(server, venue, first) == 1  # (2 x 8 before: one per position, twice)
    assert gets[BALANCE[venue]] == 1
    # no read is asked twice: every contract's open orders and mark once
    asked = Counter(
        (r.path, tuple(sorted((k, v) for k, v in r.params.items() if k not in SIGNING)))
        for r in server.requests[first:]
        if r.method == "GET"
    )
    if venue == "bybit":
        asked[(SETTINGS[venue], ())] -= gets["/v5/user/query-api"]  # (a new client's: above)
    assert [read for read, n in asked.items() if n > 1] == []
