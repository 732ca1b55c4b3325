"""End to end: the venue delists one of two contracts under a live bot (loopback Binance USD-M).

ETH goes to status SETTLING (listed, not trading: its orders refused with -1122), the venue
settles its position, then ETH leaves exchangeInfo (-1121 to every request naming it). BTC has
nothing wrong with it: it keeps its decisions and its stop, the catalogue refresh keeps
succeeding past ``catalogue_max_age_hours``, and ETH is withdrawn alone: no order that adds
exposure, no order at all once the venue refused one, one event and one alert per change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.errors import ConfigError
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.instruments import load_instruments
from bot.runtime.catalogue_keeper import CatalogueKeeper
from bot.runtime.preflight import preflight
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store import views
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import hourly_rows, live_config_text, start_live, stop_live

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "delist-key-5d1c9a7e3f", "delist-secret-8a2f6c0e4b9d17"
HOUR = 3_600_000
DAY = 24 * HOUR


@dataclass
class AheadClock(LiveClock):
    """The catalogue keeper's clock: the host's, moved ahead (days pass for the refresh
    and the catalogue's maximum age while the venue's candles stay fresh for the engine)."""

    ahead_ms: int = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.ahead_ms


@pytest.fixture
def backend() -> SimulatedExchange:
    specs = load_instruments("binanceusdm")
    return SimulatedExchange(
        {BTC: specs[BTC], ETH: specs[ETH]},
        LiveClock(),
        starting_balance=D(20000),
        margin_mode=MarginMode.ISOLATED,
    )


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH]
    )
    for sym in (BTC, ETH):
        rows = hourly_rows(400, sym)
        srv.set_candles(sym, "trade", rows)
        srv.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    with srv:
        yield srv


@pytest.fixture
def config_path(tmp_path: Path, server: LoopbackBinance) -> Path:
    """BTC and ETH, long, on the loopback Binance."""
    text = live_config_text(
        name="delist",
        venue="binanceusdm",
        base_url=server.base_url,
        database=tmp_path / "state.db",
        log_dir=tmp_path / "logs",
        starting_balance=20000,
    )
    eth = f'[[contracts]]\nsymbol = "{ETH}"\ndirection = "long"\n\n[data]'
    text = text.replace("[data]", eth, 1)
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
def bot(config_path: Path) -> Iterator[tuple[Runner, SqlStore]]:
    run, store = start_live(config_path, KEY, SECRET)
    yield run, store
    stop_live(run, store)


def _keeper(run: Runner) -> CatalogueKeeper:
    owners = [getattr(check, "__self__", None) for check in run.before_tick]
    [keeper] = [k for k in owners if isinstance(k, CatalogueKeeper)]
    return keeper


def _stops(backend: SimulatedExchange, sym: str) -> list[D]:
    return [
        o.amount
        for o in backend.fetch_open_orders(sym)
        if o.purpose is OrderPurpose.STOP_LOSS and o.amount is not None
    ]


def _eth_order_posts(server: LoopbackBinance) -> int:
    paths = ("/fapi/v1/order", "/fapi/v1/algoOrder")
    return sum(
        1 for p in paths for r in server.calls(p, "POST") if r.params.get("symbol") == "ETHUSDT"
    )


def _settle(backend: SimulatedExchange, sym: str) -> None:
    """What the venue does at the settlement: every order of the contract cancelled, the
    position closed."""
    for order in backend.fetch_open_orders(sym):
        backend.cancel_order(sym, order.client_id)
    held = backend.fetch_positions([sym])[sym]
    side = OrderSide.SELL if held.qty > 0 else OrderSide.BUY
    backend.place_order(
        OrderRequest(
            client_id="venue-settlement",
            symbol=sym,
            side=side,
            type=OrderType.MARKET,
            amount=abs(held.qty),
            purpose=OrderPurpose.CLOSE,
            reduce_only=True,
        )
    )


def test_a_delisted_contract_is_withdrawn_alone(
    bot: tuple[Runner, SqlStore], server: LoopbackBinance, backend: SimulatedExchange
) -> None:
    run, store = bot
    keeper = _keeper(run)
    clock = AheadClock()
    keeper._clock = clock  # days pass for the keeper alone (the venue's candles stay fresh)
    assert run.tick() is not None
    for sym in (BTC, ETH):
        held = backend.fetch_positions([sym])[sym]
        assert held.qty > 0, sym
        assert _stops(backend, sym) == [held.qty], sym

    # The venue stops trading ETH: listed, status SETTLING; its resting stop is gone (the
    # venue refuses a new one with -1122).
    with server.lock:
        server.market_status[ETH] = "SETTLING"
        for order in backend.fetch_open_orders(ETH):
            backend.cancel_order(ETH, order.client_id)
    eth_held = backend.fetch_positions([ETH])[ETH].qty
    clock.ahead_ms = DAY + HOUR  # the daily refresh is due
    posts = _eth_order_posts(server)
    result = run.tick()
    assert result is not None
    assert keeper.read_at_ms is not None
    assert keeper.read_at_ms > LiveClock().now_ms() + DAY
    assert [d.symbol for d in result.decisions] == [BTC]
    assert _eth_order_posts(server) == posts + 1  # one stop, refused: nothing more
    for _ in range(3):
        run.guard()
    assert run.tick() is not None
    assert _eth_order_posts(server) == posts + 1
    assert backend.fetch_positions([ETH])[ETH].qty == eth_held  # neither closed nor added to
    btc = backend.fetch_positions([BTC])[BTC]
    assert _stops(backend, BTC) == [btc.qty]
    unprotected = [
        e for e in store.recent_events(500, kinds=(EventKind.UNPROTECTED,)) if e.symbol == ETH
    ]
    assert len(unprotected) == 1
    assert "withdrawn by the venue (status SETTLING)" in unprotected[0].reason

    # The venue settles ETH, then no longer lists it; two days have passed for the catalogue.
    with server.lock:
        _settle(backend, ETH)
    run.guard()  # the bot reads ETH flat while the venue still lists it
    with server.lock:
        server.delisted.add(ETH)
    clock.ahead_ms = 2 * DAY + 2 * HOUR  # past catalogue_max_age_hours (48) since the start
    result = run.tick()
    assert result is not None, "the tick refused to run: the catalogue went stale"
    assert result.unreadable is None
    assert keeper.read_at_ms is not None
    assert keeper.read_at_ms > LiveClock().now_ms() + 2 * DAY  # read, not stale
    assert [d.symbol for d in result.decisions] == [BTC]
    run.guard()
    btc = backend.fetch_positions([BTC])[BTC]
    assert btc.qty > 0
    assert _stops(backend, BTC) == [btc.qty]
    assert _eth_order_posts(server) == posts + 1

    catalogue = [
        e.reason for e in store.recent_events(500, kinds=(EventKind.CATALOGUE,)) if e.symbol == ETH
    ]
    assert len(catalogue) == 2, catalogue
    assert "withdrawn by the venue (the venue lists no such market)" in catalogue[0]
    assert "withdrawn by the venue (status SETTLING)" in catalogue[1]
    alerts = [a for a in views.recent_alerts(store, 200) if a.key.startswith(f"catalogue:{ETH}")]
    assert [a.severity for a in alerts] == ["critical", "critical"]
    failed = store.recent_events(500, kinds=(EventKind.TICK_FAILED,))
    assert failed == [], [e.reason for e in failed]


@pytest.fixture
def settling_soon(server: LoopbackBinance) -> int:
    """The venue announced ETH's delisting: its perpetual settles 10 hours from now."""
    when = LiveClock().now_ms() + 10 * HOUR
    server.delivery_dates[ETH] = when
    return when


def test_a_scheduled_settlement_is_said_once_and_the_contract_is_reduce_only_from_the_lead(
    settling_soon: int,
    bot: tuple[Runner, SqlStore],
    server: LoopbackBinance,
    backend: SimulatedExchange,
) -> None:
    run, store = bot
    assert run.tick() is not None
    result = run.tick()
    assert result is not None
    assert backend.fetch_positions([BTC])[BTC].qty > 0  # BTC trades as before
    assert ETH not in backend.fetch_positions([ETH])  # within the 24 h lead: no entry
    [eth] = [d for d in result.decisions if d.symbol == ETH]
    assert not eth.allow_increase
    assert "the venue settles this perpetual at" in eth.reason
    [event] = [e for e in store.recent_events(500, kinds=(EventKind.CATALOGUE,))]
    assert event.symbol == ETH
    assert "the venue settles this perpetual at" in event.reason
    assert "does not close it" in event.reason
    alerts = [a for a in views.recent_alerts(store, 200) if a.key.startswith(f"catalogue:{ETH}")]
    assert [a.severity for a in alerts] == ["warning"]
    assert _eth_order_posts(server) == 0


def test_at_start_an_unlisted_symbol_stops_the_bot_and_one_not_trading_starts_withdrawn(
    config_path: Path, server: LoopbackBinance
) -> None:
    server.delisted.add(ETH)
    with pytest.raises(ConfigError, match=r"contracts\[1\]\.symbol = 'ETH/USDT:USDT'"):
        start_live(config_path, KEY, SECRET)  # a typo (or a contract long gone) does not start
    server.delisted.clear()
    server.market_status[ETH] = "SETTLING"
    run, store = start_live(config_path, KEY, SECRET)
    try:
        assert run.engine.restricted[ETH].withdrawn
        exchange = run.engine.exchange
        assert isinstance(exchange, CcxtExchange)
        report = preflight(exchange, load_config(config_path), store, [ETH])
        assert report.ok, report.problems
        assert any("ETH/USDT:USDT: withdrawn by the venue" in w for w in report.warnings)
        result = run.tick()
        assert result is not None
        assert [d.symbol for d in result.decisions] == [BTC]
        assert ETH not in server.backend.fetch_positions([ETH])
        [event] = store.recent_events(50, kinds=(EventKind.CATALOGUE,))
        assert "withdrawn by the venue (status SETTLING)" in event.reason
    finally:
        stop_live(run, store)


def test_a_contract_the_venue_no_longer_lists_is_not_read_and_stays_as_last_read(
    bot: tuple[Runner, SqlStore], server: LoopbackBinance, backend: SimulatedExchange
) -> None:
    """The venue drops ETH from exchangeInfo while the bot still holds it (it answers -1121
    to any request naming ETH): the reads of the account go on for BTC, and ETH's position is
    shown as last read, never as flat."""
    run, store = bot
    clock = AheadClock()
    _keeper(run)._clock = clock  # days pass for the keeper alone (the candles stay fresh)
    assert run.tick() is not None
    eth = backend.fetch_positions([ETH])[ETH]
    with server.lock:
        server.delisted.add(ETH)
    clock.ahead_ms = DAY + HOUR
    result = run.tick()
    assert result is not None
    assert result.unreadable is None
    asked = len(server.requests)
    run.guard()
    result = run.tick()
    assert result is not None
    assert [d.symbol for d in result.decisions] == [BTC]
    named = [r.path for r in server.requests[asked:] if r.params.get("symbol") == "ETHUSDT"]
    assert named == []  # nothing asked of ETH once the venue no longer lists it
    latest = store.latest_positions()
    assert latest is not None
    held = {p.symbol: p.qty for p in latest[1]}
    assert held[ETH] == eth.qty  # as last read: unknown, never flat
    assert held[BTC] == backend.fetch_positions([BTC])[BTC].qty
    assert store.recent_events(100, kinds=(EventKind.TICK_FAILED, EventKind.UNREADABLE)) == []


def _eth_news(store: SqlStore) -> tuple[list[str], list[str]]:
    """ETH's catalogue events (newest first) and the severities of its catalogue alerts."""
    events = [
        e.reason for e in store.recent_events(500, kinds=(EventKind.CATALOGUE,)) if e.symbol == ETH
    ]
    alerts = [a for a in views.recent_alerts(store, 200) if a.key.startswith(f"catalogue:{ETH}")]
    return events, [a.severity for a in alerts]


def test_a_restart_repeats_no_alert_and_no_order_the_venue_refused(
    config_path: Path, server: LoopbackBinance, backend: SimulatedExchange
) -> None:
    """A crash loop (or a redeploy) while the venue does not trade ETH: each start sent the
    same critical alert again and one more ETH order the venue refused (-1122); what was
    reported and refused lived in memory only. A change (ETH trading again) is still said, and
    its orders sent again."""
    run, store = start_live(config_path, KEY, SECRET)
    try:
        assert run.tick() is not None  # ETH and BTC held, each with its stop
    finally:
        stop_live(run, store)
    with server.lock:
        server.market_status[ETH] = "SETTLING"
        for order in backend.fetch_open_orders(ETH):
            backend.cancel_order(ETH, order.client_id)
    eth_held = backend.fetch_positions([ETH])[ETH].qty
    posts = _eth_order_posts(server)
    for start in range(3):
        run, store = start_live(config_path, KEY, SECRET)
        try:
            assert run.engine.restricted[ETH].withdrawn
            assert run.tick() is not None
            run.guard()
            events, alerts = _eth_news(store)
            assert len(events) == 1, (start, events)
            assert "withdrawn by the venue (status SETTLING)" in events[0]
            assert alerts == ["critical"], start
        finally:
            stop_live(run, store)
        assert _eth_order_posts(server) == posts + 1, start  # the one refused, at the first
    assert backend.fetch_positions([ETH])[ETH].qty == eth_held
    server.market_status.clear()  # the venue trades ETH again
    run, store = start_live(config_path, KEY, SECRET)
    try:
        assert ETH not in run.engine.restricted
        assert run.tick() is not None
        events, alerts = _eth_news(store)
        assert len(events) == 2
        assert "the venue trades this contract again" in events[0]
        assert alerts == ["critical", "critical"]
        held = backend.fetch_positions([ETH])[ETH].qty
        assert _stops(backend, ETH) == [held]  # its stop sent again, taken
    finally:
        stop_live(run, store)


def test_a_scheduled_settlement_is_said_once_across_restarts_and_again_when_moved(
    settling_soon: int, config_path: Path, server: LoopbackBinance
) -> None:
    for _ in range(3):
        run, store = start_live(config_path, KEY, SECRET)
        try:
            assert run.tick() is not None
            events, alerts = _eth_news(store)
            assert len(events) == 1, events
            assert alerts == ["warning"]
        finally:
            stop_live(run, store)
    server.delivery_dates[ETH] = settling_soon + 2 * HOUR  # the venue moves it
    run, store = start_live(config_path, KEY, SECRET)
    try:
        assert run.tick() is not None
        events, alerts = _eth_news(store)
        assert len(events) == 2
        assert alerts == ["warning", "warning"]
    finally:
        stop_live(run, store)
