"""An increase sized to the margin the venue says is available, through real ccxt on both venues.

The loopback venue refuses an order whose margin exceeds the available balance (Binance -2019,
Bybit 110007 through the simulated exchange behind it). A 3x isolated long whose price rose
20 % wants more than the wallet has free (its profit is not available in isolated margin):
the live bot reads the available balance from the venue's balance answer and sends an
increase the venue accepts. Without the margin step the same tick's increase came back
``binanceusdm {"code": -2019, "msg": "Margin is insufficient."}`` and ``bybit {"retCode":
110007, ...}``, every tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import EventKind
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import (
    ROOT,
    hourly_rows,
    live_config_text,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import LoopbackServer

BTC = "BTC/USDT:USDT"
KEY, SECRET = "margin-key-7c2a", "margin-secret-e41f09"
SERVERS: dict[str, type[LoopbackBinance] | type[LoopbackBybit]] = {
    "binanceusdm": LoopbackBinance,
    "bybit": LoopbackBybit,
}


@pytest.fixture(params=sorted(SERVERS))
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(venue: str) -> SimulatedExchange:
    return venue_account(venue)


def serve(server: LoopbackServer, account: SimulatedExchange, scale: Decimal) -> None:
    """The last 400 bundled BTC hours, every price times ``scale``; the mark at the last close."""
    rows = [
        (ts, o * scale, h * scale, lo * scale, c * scale, v)
        for ts, o, h, lo, c, v in hourly_rows(400)
    ]
    server.set_candles(BTC, "trade", rows)
    server.set_candles(BTC, "mark", rows)
    inst = account.book.instruments[BTC]
    account.set_mark(BTC, inst.floor_price(rows[-1][4]))


@pytest.fixture
def server(backend: SimulatedExchange, venue: str) -> Iterator[LoopbackServer]:
    srv = SERVERS[venue](backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve(srv, backend, Decimal(1))
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def runner(tmp_path: Path, server: LoopbackServer, venue: str) -> Iterator[tuple[Runner, SqlStore]]:
    # static 3x with a 1 % stop: the loss budget (5 % a day) leaves the 3x whole
    policy = tmp_path / "static_3x_tight.toml"
    text = (ROOT / "policies" / "static_3x.toml").read_text()
    policy.write_text(text.replace("distance = 5", "distance = 1"))
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="mrg",
            venue=venue,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            policy_file=policy,
        )
    )
    built, store = start_live(path, KEY, SECRET)
    yield built, store
    stop_live(built, store)


def test_the_live_bot_sizes_an_increase_to_the_venues_available_balance(
    runner: tuple[Runner, SqlStore], backend: SimulatedExchange, server: LoopbackServer
) -> None:
    run, store = runner
    first = run.tick()
    assert first is not None
    held = backend.fetch_positions([BTC])[BTC]
    assert held.qty > 0
    serve(server, backend, Decimal("1.2"))
    result = run.tick()
    assert result is not None
    [d] = result.decisions
    assert "margin: available" in d.reason
    assert result.rejected == 0
    refused = [
        e.reason
        for e in store.recent_events(100)
        if e.kind is EventKind.REJECTED and "insufficient" in e.reason.lower()
    ]
    assert refused == []
    pos = backend.fetch_positions([BTC])[BTC]
    assert held.qty < pos.qty == d.target_qty
    free = backend.fetch_balance().available
    assert free is not None
    assert free >= 0
