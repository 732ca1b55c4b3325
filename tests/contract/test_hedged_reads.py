"""Hedged reads against the loopback venue: a lost read answer costs the hedge delay, not ccxt's
timeout; orders and cancels are never sent twice this way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract import test_ccxt_loopback as loop
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.live_setup import loopback_adapter

pytestmark = pytest.mark.slow
# the loopback contract test's fixtures: a simulated account behind the venue, a clock
sim, server, clock = loop.sim, loop.server, loop.clock


@pytest.fixture
def hedged(server: LoopbackBinance, clock: loop.RecordingClock) -> Iterator[CcxtExchange]:
    exchange = loopback_adapter(
        "binanceusdm",
        server.base_url,
        clock,
        key=loop.KEY,
        secret=loop.SECRET,
        account=loop.ACCOUNT,
        symbols=[loop.BTC],
        hedge_reads_after=0.2,
    )
    yield exchange
    exchange.exchange.close()


def test_a_lost_read_is_answered_by_its_copy(
    hedged: CcxtExchange, server: LoopbackBinance, clock: loop.RecordingClock
) -> None:
    server.inject(Fault("/fapi/v3/account", "GET", kind="timeout"))
    balance = hedged.fetch_balance()
    assert balance.wallet == 10000
    calls = server.calls("/fapi/v3/account", "GET")
    assert [c.fault for c in calls] == ["timeout", None]
    assert clock.sleeps == []  # answered by the copy, not by a retry after the timeout


def test_a_cancel_is_not_hedged(
    hedged: CcxtExchange,
    server: LoopbackBinance,
    sim: SimulatedExchange,
    clock: loop.RecordingClock,
) -> None:
    hedged.place_order(loop.entry())
    hedged.place_order(loop.stop())
    server.inject(Fault("/fapi/v1/algoOrder", "DELETE", kind="timeout"))
    hedged.cancel_order(loop.BTC, loop.stop().client_id)
    deletes = server.calls("/fapi/v1/algoOrder", "DELETE")
    # the second DELETE is the retry after ccxt's timeout and a backoff, not a hedge copy
    assert [d.fault for d in deletes] == ["timeout", None]
    assert clock.sleeps
    assert not [o for o in sim.fetch_open_orders(loop.BTC) if o.client_id == loop.stop().client_id]


def test_an_order_is_not_hedged(
    hedged: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    hedged.place_order(loop.entry())
    server.inject(Fault("/fapi/v1/order", "POST", kind="timeout"))
    hedged.place_order(loop.close())  # (reduce-only: resent when the lookup does not find it)
    assert len(server.calls("/fapi/v1/order", "POST")) == 3  # sent, looked up, resent once
    assert len(loop.orders_with(sim, loop.close().client_id)) == 1
