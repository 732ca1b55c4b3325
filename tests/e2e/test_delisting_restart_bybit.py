"""End to end: a live bot on Bybit restarted while the venue settles one of its contracts
(loopback Bybit v5, through real ccxt).

Bybit's instruments-info lists Trading contracts only unless asked for a ``status``
(https://bybit-exchange.github.io/docs/v5/market/instrument): a contract settling is absent from
ccxt's markets. A restart then refused to start, as for a typo ("contracts[1].symbol ... lists
no such market"), leaving the position it held without a running bot. Binance keeps such a
contract listed (status SETTLING) and the bot starts it withdrawn: so does Bybit now, the
position kept and its stop resting; a symbol the venue does not know still stops the start.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import EventKind, MarginMode, OrderPurpose
from bot.errors import ConfigError
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import hourly_rows, live_config_text, start_live, stop_live

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "bybit-delist-key-71c0", "bybit-delist-secret-4e9a2d"


@pytest.fixture
def backend() -> SimulatedExchange:
    specs = load_instruments("bybit")
    return SimulatedExchange(
        {BTC: specs[BTC], ETH: specs[ETH]},
        LiveClock(),
        starting_balance=D(20000),
        margin_mode=MarginMode.ISOLATED,
    )


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH]
    )
    for sym in (BTC, ETH):
        rows = hourly_rows(400, sym)
        srv.set_candles(sym, "trade", rows)
        srv.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    with srv:
        yield srv


def _config(tmp_path: Path, server: LoopbackBybit, second: str) -> Path:
    """BTC and ``second``, long, on the loopback Bybit."""
    text = live_config_text(
        name="bybit-delist",
        venue="bybit",
        base_url=server.base_url,
        database=tmp_path / "state.db",
        log_dir=tmp_path / "logs",
        starting_balance=20000,
    )
    extra = f'[[contracts]]\nsymbol = "{second}"\ndirection = "long"\n\n[data]'
    path = tmp_path / f"config-{second.split('/')[0]}.toml"
    path.write_text(text.replace("[data]", extra, 1))
    return path


def _stops(backend: SimulatedExchange, sym: str) -> list[D]:
    return [
        o.amount
        for o in backend.fetch_open_orders(sym)
        if o.purpose is OrderPurpose.STOP_LOSS and o.amount is not None
    ]


def test_a_restart_during_a_settlement_starts_the_contract_withdrawn(
    tmp_path: Path, server: LoopbackBybit, backend: SimulatedExchange
) -> None:
    config = _config(tmp_path, server, ETH)
    run, store = start_live(config, KEY, SECRET)
    try:
        assert run.tick() is not None
    finally:
        stop_live(run, store)
    eth = backend.fetch_positions([ETH])[ETH].qty
    assert eth > 0
    assert _stops(backend, ETH) == [eth]

    server.market_status[ETH] = "Delivering"  # the venue delists ETH: Trading lists lack it
    run, store = start_live(config, KEY, SECRET)  # refused before: "lists no such market"
    try:
        restriction = run.engine.restricted[ETH]
        assert restriction.withdrawn
        assert restriction.listed
        assert "withdrawn by the venue (status Delivering)" in restriction.reason
        result = run.tick()
        assert result is not None
        assert [d.symbol for d in result.decisions] == [BTC]
        run.guard()
        assert backend.fetch_positions([ETH])[ETH].qty == eth  # kept, not closed nor added to
        assert _stops(backend, ETH) == [eth]  # its stop rests on
        latest = store.latest_positions()
        assert latest is not None
        assert {p.symbol: p.qty for p in latest[1]}[ETH] == eth
        [event] = store.recent_events(50, kinds=(EventKind.CATALOGUE,))
        assert "withdrawn by the venue (status Delivering)" in event.reason
        assert store.recent_events(50, kinds=(EventKind.TICK_FAILED,)) == []
    finally:
        stop_live(run, store)


def test_a_symbol_bybit_does_not_know_still_stops_the_start(
    tmp_path: Path, server: LoopbackBybit
) -> None:
    server.market_status[ETH] = "Delivering"
    typo = "ETC/USDT:USDT"
    unknown = r"contracts\[1\]\.symbol = 'ETC/USDT:USDT': bybit lists no such market"
    with pytest.raises(ConfigError, match=unknown):
        start_live(_config(tmp_path, server, typo), KEY, SECRET)
