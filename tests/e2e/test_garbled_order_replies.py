"""A live tick whose order POST gets a garbled answer: no crash, no duplicate, resolved by id.

``bot run --live --once`` against the loopback venue. The entry order is accepted by the venue but
its answer is a bare JSON string (ccxt then fails with ``'str' object has no attribute 'get'``)
and the look-ups of that tick are garbled too: the tick must finish with the order recorded as
unknown; the next tick resolves it by its client id and never places it again.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from bot.bootstrap import open_store
from bot.config.loader import load_config
from bot.domain.enums import OrderPurpose, OrderStatus
from bot.sim.exchange import SimulatedExchange
from tests.e2e import test_live_loopback as live
from tests.fakes.binance_loopback import Fault, LoopbackBinance

pytestmark = pytest.mark.slow
BTC = live.BTC
# the live loopback test's fixtures: a simulated account behind the loopback venue, a config
backend, server, config_path = live.backend, live.server, live.config_path


@pytest.fixture
def venue() -> live.Venue:
    """This scenario speaks Binance's paths: the live fixtures on the Binance server only."""
    return live.VENUES["binanceusdm"]


def test_a_garbled_entry_answer_is_unknown_then_resolved_by_client_id(
    config_path: Path, server: LoopbackBinance, backend: SimulatedExchange, tmp_path: Path
) -> None:
    with (tmp_path / "console.txt").open("w") as out:
        run(config_path, server, backend, Console(file=out, width=200))


def run(
    config_path: Path, server: LoopbackBinance, backend: SimulatedExchange, console: Console
) -> None:
    server.inject(Fault("/fapi/v1/order", "POST", kind="json_string"))
    server.inject(Fault("/fapi/v1/order", "GET", kind="json_string", times=5))
    assert live.tick(config_path, console) == 0  # no crash

    entries = [o for o in backend.orders.values() if o.purpose is OrderPurpose.ENTRY]
    assert len(entries) == 1  # the venue took it once
    cid = entries[0].client_id
    store = open_store(load_config(config_path), create=True)
    recorded = {o.client_id: o for o in store.recent_orders(100)}
    store.close()
    assert recorded[cid].status is OrderStatus.UNKNOWN  # not "rejected": nothing invites a resend

    server.clear_faults()  # the venue answers properly again
    assert live.tick(config_path, console) == 0
    store = open_store(load_config(config_path), create=True)
    assert store.unresolved_orders() == []
    recorded = {o.client_id: o for o in store.recent_orders(100)}
    store.close()
    assert recorded[cid].status is OrderStatus.FILLED
    assert [o.client_id for o in backend.orders.values()].count(cid) == 1
    posted = [r.params["newClientOrderId"] for r in server.calls("/fapi/v1/order", "POST")]
    assert posted.count(cid) == 1
    assert len([o for o in backend.orders.values() if o.purpose is OrderPurpose.ENTRY]) == 1
    pos = backend.fetch_positions([BTC])[BTC]
    stops = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert [s.amount for s in stops] == [pos.qty]  # and the position is protected
