"""A stop placed by hand on the last price, through the real ccxt classes and the live adapter
against the loopback Binance and Bybit servers: it is no protection (the venue's reply says
``workingType`` CONTRACT_PRICE, ``triggerBy`` LastPrice), so the engine rests its own
mark-price stop beside it, even after the venue refused its first one, and never cancels the
trader's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from bot.clock import LiveClock
from bot.config.loader import load_policy
from bot.domain.enums import EventKind, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import Order, OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.errors import OrderRejected
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.contract.test_ccxt_loopback import ACCOUNT, BTC, KEY, SECRET, RecordingClock, btc_account
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter
from tests.fakes.loopback_core import LoopbackServer
from tests.unit.test_engine import LIMITS, ROOT, FakeMarket

D = Decimal
HELD = D("0.1")
HAND = "web_hand_1"  # a client id the trader's app chose: not the bot's


@pytest.fixture(params=["binanceusdm", "bybit"])
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim() -> SimulatedExchange:
    """A 0.1 BTC long opened by hand (the bot manages it: direction ``follow``)."""
    ex = btc_account()
    ex.set_leverage(BTC, 3)
    ex.place_order(
        OrderRequest(
            "hand-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, HELD, False
        )
    )
    return ex


@pytest.fixture
def running(venue: str, sim: SimulatedExchange) -> Iterator[tuple[LoopbackServer, CcxtExchange]]:
    cls = LoopbackBinance if venue == "binanceusdm" else LoopbackBybit
    with cls(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]) as server:
        adapter = loopback_adapter(
            venue,
            server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            yield server, adapter
        finally:
            adapter.exchange.close()
        assert server.errors == []


def refuse_the_bots_first_stop(sim: SimulatedExchange) -> list[str]:
    """The venue refuses the bot's first stop-loss (a passing refusal); the rest pass."""
    refused: list[str] = []
    real_place = sim.place_order

    def place(request: OrderRequest) -> Order:
        ours = request.client_id.startswith(f"{ACCOUNT}-sl-")
        if ours and not refused:
            refused.append(request.client_id)
            raise OrderRejected("Order would immediately trigger.", code=-2021)
        return real_place(request)

    sim.place_order = place  # type: ignore[method-assign]
    return refused


def test_a_last_price_stop_by_hand_gets_the_bots_mark_price_stop_beside_it(
    venue: str,
    sim: SimulatedExchange,
    running: tuple[LoopbackServer, CcxtExchange],
) -> None:
    server, adapter = running
    # The trader's stop, through ccxt as an app would send it: no trigger-price type, so the
    # venue's default, the last price (Binance CONTRACT_PRICE, Bybit LastPrice).
    adapter.exchange.create_order(
        BTC,
        "market",
        "sell",
        float(HELD),
        None,
        {"stopLossPrice": 54000, "reduceOnly": True, "clientOrderId": HAND},
    )
    [hand] = [o for o in adapter.fetch_open_orders(BTC) if o.client_id == HAND]
    assert (hand.purpose, hand.type, hand.trigger_by) == (None, OrderType.STOP_MARKET, "last")
    refused = refuse_the_bots_first_stop(sim)
    store = MemoryStore()
    engine = Engine(
        clock=LiveClock(),
        exchange=adapter,
        market=FakeMarket(),
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "follow", D(125))],
        limits=LIMITS,
        account=ACCOUNT,
    )
    now = LiveClock().now_ms()
    acct = engine.reconcile(now)
    engine.protect(BTC, acct, D(56000), None, now)  # the venue refuses the bot's stop
    assert [o.client_id for o in adapter.fetch_open_orders(BTC)] == [HAND]
    # The verification: the trader's last-price stop is no protection, so the bot retries
    # with a fresh mark rather than leave the position on it (counted, it did nothing)
    assert engine.ensure_protected(acct, now) == []
    assert len(refused) == 1
    listed = adapter.fetch_open_orders(BTC)
    [own] = [o for o in listed if o.purpose is OrderPurpose.STOP_LOSS]
    assert (own.amount, own.reduce_only, own.trigger_by) == (HELD, True, "mark")
    assert HAND in {o.client_id for o in listed}  # the trader's stop stays
    assert sim.book.positions[BTC].qty == HELD  # not closed
    assert engine.tick().unprotected == []  # and a whole tick leaves both as they are
    assert {o.client_id for o in adapter.fetch_open_orders(BTC)} >= {HAND, own.client_id}
    if venue == "binanceusdm":
        cancels = server.calls("/fapi/v1/algoOrder", "DELETE")
        assert all(HAND not in c.params.values() for c in cancels)
    else:
        cancels = server.calls("/v5/order/cancel", "POST")
        assert all(HAND not in c.params.values() for c in cancels)
    assert [e for e in store.events if e.kind == EventKind.UNPROTECTED] == []
