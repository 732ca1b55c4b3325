"""A stop that fills between two decision ticks shows on every status surface at the next guard.

A live bot (real ccxt) over the loopback Binance venue opens BTC with its stop; the mark falls
through the stop and the venue fills it; the guard a minute later settles the fill. The
dashboard, ``/metrics`` and ``bot status`` read the state database: they showed the long still
open, its stop "NONE" (``bot_position_without_stop`` 1: a critical page for a flat contract),
the equity before the loss and a daily loss of 0.07 % (4.9 % of a 5 % limit, hidden from
``DailyLossNearLimit``) until the next decision tick, because only the tick recorded positions
and equity while the guard's orders (the stop filled, its take-profit cancelled) were current.
The guard now records what it read (bot/engine/readings.py); "last tick" stays the tick's.

The same fresher record keeps a start right: a restart after that guard found the position
gone a second time and named it "closed outside the bot", with a day's re-entry cooldown.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.cli.reports import status_data
from bot.clock import LiveClock, SimClock
from bot.config.loader import load_config
from bot.dashboard.account import AccountSource
from bot.dashboard.app import create_app
from bot.dashboard.security import Guard
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus
from bot.sim.exchange import SimulatedExchange
from bot.store import views
from tests.dashboard.test_metrics import close, scrape
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)

BTC = "BTC/USDT:USDT"
ZERO = Decimal(0)
KEY, SECRET = "reading-key-8d2a", "reading-secret-4e61b0"


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("binanceusdm")


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def config_path(tmp_path: Path, server: LoopbackBinance) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="reading",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    return path


def test_a_stop_filled_between_ticks_shows_flat_with_its_loss_on_every_surface(
    config_path: Path, server: LoopbackBinance, backend: SimulatedExchange
) -> None:
    config = load_config(config_path)
    run, store = start_live(config_path, KEY, SECRET)
    try:
        assert run.tick() is not None
        tick = store.latest_equity()
        assert tick is not None
        run.guard()  # nothing changed since the tick: nothing recorded (the store's growth)
        assert len(views.equity_series(store)) == 1
        [stop] = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
        assert stop.trigger_price is not None
        below = stop.trigger_price - 1
        with server.lock:  # the mark passes the stop: the venue fills it
            backend.set_mark(BTC, below, last=below * Decimal("0.97"))
        assert BTC not in backend.fetch_positions([BTC])  # the venue is flat
        run.guard()
        order = store.get_order(stop.client_id)
        assert order is not None
        assert order.status is OrderStatus.FILLED
        wallet = backend.fetch_balance().wallet
        assert wallet < tick.wallet
        now = LiveClock().now_ms()

        data = status_data(config, store, now)
        [row] = data["contracts"]
        assert row["position"] == "0"
        assert row["unprotected_qty"] is None
        assert Decimal(data["equity"]) == wallet  # flat: the equity is the wallet after the loss
        assert data["last_tick"] is not None
        assert data["positions_as_of"] == data["as_of"]  # the guard's reading

        source = AccountSource(config, store)
        ov = source.overview(now)
        [btc] = ov.contracts
        assert (btc.qty, btc.unprotected, btc.notional) == (ZERO, False, ZERO)
        assert ov.equity == wallet
        assert ov.daily_loss is not None
        assert ov.daily_loss > Decimal("0.04")  # the stop's loss: near the 5 % limit
        assert ov.last_tick_ms == tick.ts_ms  # the last decision, not the guard
        assert ov.positions_ms is not None
        assert ov.positions_ms > tick.ts_ms
        assert ov.as_of_ms == ov.positions_ms

        app = create_app(
            {config.account.name: source}, store=store, guard=Guard(None), clock=SimClock(now)
        )
        m = scrape(TestClient(app, base_url="http://127.0.0.1"))
        assert m[("bot_position_without_stop", (("symbol", BTC),))] == 0
        assert m[("bot_position_notional", (("symbol", BTC),))] == 0
        assert close(m[("bot_equity", ())], wallet)
        assert close(m[("bot_daily_loss_ratio", ())], ov.daily_loss)
        exits = store.recent_events(100, kinds=(EventKind.EXIT, EventKind.COOLDOWN))
    finally:
        stop_live(run, store)

    # A restart: the last record is the guard's (flat), so nothing is found gone again.
    run, store = start_live(config_path, KEY, SECRET)
    try:
        run.guard()
        assert store.recent_events(100, kinds=(EventKind.EXIT, EventKind.COOLDOWN)) == exits
    finally:
        stop_live(run, store)
