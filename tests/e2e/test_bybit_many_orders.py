"""A live engine on Bybit with more resting orders on its contract than one page holds.

Bybit lists open orders 20 to a page by default, newest first
(https://bybit-exchange.github.io/docs/v5/order/open-order). The bot's stop, placed first,
ends up behind a user's later orders. Through the real ccxt path (loopback Bybit v5 server) the
engine must still see it: no second stop, no "unreadable" tick, and a restart on an empty store
(which knows nothing of the stop) must find it rather than protect the position again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import OrderPurpose
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.contract.test_open_order_pages import foreign_orders
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)

BTC = "BTC/USDT:USDT"
KEY, SECRET = "pages-key-3c81", "pages-secret-77a0e1"
CREATE = "/v5/order/create"


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("bybit")


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


RunnerFactory = Callable[[str, str], Runner]


@pytest.fixture
def make_runner(tmp_path: Path, server: LoopbackBybit) -> Iterator[RunnerFactory]:
    built: list[tuple[Runner, SqlStore]] = []

    def make(db: str, direction: str) -> Runner:
        path = tmp_path / f"{db}.toml"
        path.write_text(
            live_config_text(
                name="pages",
                venue="bybit",
                base_url=server.base_url,
                database=tmp_path / db,
                log_dir=tmp_path / "logs",
                direction=direction,
            )
        )
        runner, store = start_live(path, KEY, SECRET)
        built.append((runner, store))
        return runner

    yield make
    for runner, store in built:
        stop_live(runner, store)


def bot_stops(backend: SimulatedExchange) -> list[str]:
    return [
        o.client_id
        for o in backend.fetch_open_orders(BTC)
        if o.client_id.startswith("pages") and o.purpose is OrderPurpose.STOP_LOSS
    ]


def stop_posts(server: LoopbackBybit, start: int) -> list[dict[str, str]]:
    return [r.params for r in server.calls(CREATE, "POST")[start:] if "triggerPrice" in r.params]


def test_stop_behind_sixty_later_orders_is_seen_not_duplicated(
    make_runner: RunnerFactory, server: LoopbackBybit, backend: SimulatedExchange
) -> None:
    first = make_runner("state.db", "long")
    assert first.tick() is not None
    assert backend.fetch_positions([BTC])[BTC].qty > 0
    stops = bot_stops(backend)
    assert len(stops) == 1
    ladder = foreign_orders(backend, 60)  # the user's orders, newer than the stop
    start = len(server.calls(CREATE, "POST"))

    # the same engine: every resting order is listed, its stop among them
    result = first.tick()
    assert result is not None
    assert result.unreadable is None
    assert stop_posts(server, start) == []
    listed = {o.client_id for o in first.engine.exchange.fetch_open_orders(BTC)}
    assert listed >= ladder | set(stops)

    # a restart on an empty store, adopting the position: the stop is found, not placed again
    fresh = make_runner("fresh.db", "follow")
    again = fresh.tick()
    assert again is not None
    assert again.unreadable is None
    assert stop_posts(server, start) == []
    assert bot_stops(backend) == stops
