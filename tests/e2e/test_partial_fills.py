"""An order that ends after trading part of its amount is a fill, on both venues.

A market order can end "expired" (Binance: its price limit reached) or "Cancelled" (Bybit)
with part of it executed. The bot read such an entry as cancelled: its fill was never recorded,
so the position the bot had just opened counted as "not opened by this bot" from the next tick
on, and was left alone: never re-protected, never de-levered, never flattened by a halt.

The loopback venue fills the order (the simulated account holds the position); the answer the
bot reads says the order ended expired/cancelled with that executed quantity, as the venue would
after a partial execution.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.clock import LiveClock
from bot.domain.enums import OrderPurpose
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import Fault, LoopbackServer

BTC = "BTC/USDT:USDT"
KEY, SECRET = "partial-key-3c9e", "partial-secret-71d0a4"


def _binance_expired(reply: Any) -> Any:
    # POST /fapi/v1/order answers the order itself (newOrderRespType=RESULT)
    if "-en-" in str(reply.get("clientOrderId")):
        reply["status"] = "EXPIRED"
    return reply


def _bybit_cancelled(reply: Any) -> Any:
    # the create answer carries only ids: the bot reads the order back from the list by id
    for row in reply["result"]["list"]:
        if "-en-" in row["orderLinkId"]:
            row["orderStatus"] = "Cancelled"
    return reply


ENDED = {
    "binanceusdm": (
        LoopbackBinance,
        Fault("/fapi/v1/order", "POST", kind="edit", edit=_binance_expired),
    ),
    "bybit": (
        LoopbackBybit,
        Fault("/v5/order/realtime", "GET", kind="edit", edit=_bybit_cancelled, times=1000),
    ),
}


@pytest.fixture(params=sorted(ENDED))
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(venue: str) -> SimulatedExchange:
    return venue_account(venue)


@pytest.fixture
def server(backend: SimulatedExchange, venue: str) -> Iterator[LoopbackServer]:
    server_class, _ = ENDED[venue]
    srv = server_class(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def runner(tmp_path: Path, server: LoopbackServer, venue: str) -> Iterator[tuple[Runner, SqlStore]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="part",
            venue=venue,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    built, store = start_live(path, KEY, SECRET)
    yield built, store
    stop_live(built, store)


def test_an_entry_that_ended_partly_executed_is_the_bots_position(
    venue: str,
    runner: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
) -> None:
    run, store = runner
    server.inject(ENDED[venue][1])
    for _ in range(3):
        result = run.tick()
        assert result is not None
    qty = backend.fetch_positions([BTC])[BTC].qty
    assert qty > 0
    # the fill of the entry is recorded with what traded ...
    entries = [f for f in store.recent_fills(10) if f.purpose is OrderPurpose.ENTRY]
    assert [f.qty for f in entries] == [qty]
    # ... and the position is the bot's: managed and protected, not "left alone"
    reasons = [e.reason for e in store.recent_events(50)]
    assert not any("not opened by this bot" in r for r in reasons), reasons
    assert BTC not in run.engine.reconciler.foreign
    stops = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert len(stops) == 1
