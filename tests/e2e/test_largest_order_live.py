"""The venue's largest market order, through the real ccxt path on both venues.

The loopback venue publishes the limit (Binance ``MARKET_LOT_SIZE.maxQty``, Bybit
``lotSizeFilter.maxMktOrderQty``) and refuses a larger market or stop-market order itself
(Binance -4005, Bybit 10001), reduce-only ones too. The live bot reads the limit from the
markets, never builds a position above it, and cuts one added by hand back to it in orders the
venue accepts, with one stop sized to what is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
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
from tests.fakes.loopback_core import LoopbackServer

BTC = "BTC/USDT:USDT"
KEY, SECRET = "largest-key-5d1f", "largest-secret-0b9e77"
LARGEST = Decimal("0.02")  # BTC: far below what the policy wants for 10,000 USDT
SERVERS: dict[str, type[LoopbackBinance] | type[LoopbackBybit]] = {
    "binanceusdm": LoopbackBinance,
    "bybit": LoopbackBybit,
}


@pytest.fixture(params=sorted(SERVERS))
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(venue: str) -> SimulatedExchange:
    account = venue_account(venue)
    account.book.instruments[BTC] = replace(account.book.instruments[BTC], max_order_qty=LARGEST)
    return account


@pytest.fixture
def server(backend: SimulatedExchange, venue: str) -> Iterator[LoopbackServer]:
    srv = SERVERS[venue](backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def runner(tmp_path: Path, server: LoopbackServer, venue: str) -> Iterator[tuple[Runner, SqlStore]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="big",
            venue=venue,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    built, store = start_live(path, KEY, SECRET)
    yield built, store
    stop_live(built, store)


def _stops(backend: SimulatedExchange) -> list[Decimal | None]:
    return [o.amount for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]


def test_positions_stay_within_one_order_and_a_hand_added_excess_is_cut_back(
    runner: tuple[Runner, SqlStore], backend: SimulatedExchange
) -> None:
    run, _store = runner
    assert run.engine.instruments[BTC].max_order_qty == LARGEST  # read from the venue
    result = run.tick()
    assert result is not None
    assert "above the exchange's largest market order" in result.decisions[0].reason
    assert backend.fetch_positions([BTC])[BTC].qty == LARGEST
    assert _stops(backend) == [LARGEST]
    for n in range(2):  # the trader adds twice the limit by hand, in orders the venue accepts
        backend.place_order(
            OrderRequest(
                f"hand-{n}",
                BTC,
                OrderSide.BUY,
                OrderType.MARKET,
                OrderPurpose.ENTRY,
                LARGEST,
                False,
            )
        )
    result = run.tick()
    assert result is not None
    assert result.rejected == 0
    assert backend.fetch_positions([BTC])[BTC].qty == LARGEST
    assert _stops(backend) == [LARGEST]
    cuts = [
        o for o in backend.orders.values() if o.purpose is OrderPurpose.REDUCE and o.reduce_only
    ]
    assert [o.amount for o in cuts] == [LARGEST, LARGEST]  # 0.04 in two orders within the limit
