"""A position off the venue's quantity step, through the real ccxt classes and the live adapter
against the loopback Binance and Bybit servers: the engine protects it as the venue allows.

Binance takes ``closePosition=true`` STOP_MARKET orders (no quantity, no ``reduceOnly``): one
protects the whole position whatever its size. Bybit is not wired for a close-whole stop here
(its position TP/SL, ``/v5/position/trading-stop`` ``tpslMode=Full``, carries no
``orderLinkId``; a ``qty "0"`` conditional order is not documented as a stop: see the README):
the part on the step gets a reduce-only stop and the remainder is an open, named incident,
never an endless escalation; a resting stop on more of the position is kept while it protects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
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
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_account,
)
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter
from tests.fakes.loopback_core import LoopbackServer
from tests.unit.test_engine import LIMITS, ROOT, FakeMarket

D = Decimal
HELD = D("0.123")


@pytest.fixture
def sim() -> SimulatedExchange:
    """0.123 BTC long opened at the step 0.001; then the venue's step became 0.01."""
    ex = btc_account()
    ex.set_leverage(BTC, 3)
    ex.place_order(
        OrderRequest(
            "hand-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, HELD, False
        )
    )
    inst = ex.book.instruments[BTC]
    ex.book.instruments[BTC] = replace(inst, step_size=D("0.01"), min_qty=D("0.01"))
    return ex


def _serve(venue: str, sim: SimulatedExchange) -> LoopbackServer:
    cls = LoopbackBinance if venue == "binanceusdm" else LoopbackBybit
    return cls(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])


@pytest.fixture(params=["binanceusdm", "bybit"])
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def running(venue: str, sim: SimulatedExchange) -> Iterator[tuple[LoopbackServer, CcxtExchange]]:
    with _serve(venue, sim) as server:
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


def _engine(adapter: CcxtExchange, store: MemoryStore) -> Engine:
    return Engine(
        clock=LiveClock(),
        exchange=adapter,
        market=FakeMarket(),
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "follow", D(125))],
        limits=LIMITS,
        account=ACCOUNT,
    )


def test_off_step_position_is_protected_as_the_venue_allows(
    venue: str,
    sim: SimulatedExchange,
    running: tuple[LoopbackServer, CcxtExchange],
) -> None:
    server, adapter = running
    assert adapter.instrument(BTC).step_size == D("0.01")  # the venue's filters, over the wire
    store = MemoryStore()
    engine = _engine(adapter, store)
    for _ in range(2):
        assert engine.tick().unprotected == []
    assert sim.book.positions[BTC].qty == HELD  # not closed
    [stop] = [o for o in sim.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert [e.reason for e in store.events if e.kind == EventKind.REJECTED] == []
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state.value == "active"
    incidents = [e.reason for e in store.events if e.kind == EventKind.UNPROTECTED]
    if venue == "binanceusdm":
        assert (stop.close_position, stop.amount, stop.reduce_only) == (True, None, False)
        [sent] = [
            c.params
            for c in server.calls("/fapi/v1/algoOrder", "POST")
            if c.params.get("type") == "STOP_MARKET"
        ]
        assert sent["closePosition"] == "true"
        assert "quantity" not in sent
        assert "reduceOnly" not in sent
        assert sent["workingType"] == "MARK_PRICE"
        assert incidents == []
    else:
        assert (stop.close_position, stop.amount, stop.reduce_only) == (False, D("0.12"), True)
        [incident] = incidents
        assert "0.003 unprotected" in incident


def test_binance_refuses_a_second_close_position_stop_with_4130(
    sim: SimulatedExchange,
) -> None:
    with _serve("binanceusdm", sim) as server:
        adapter = loopback_adapter(
            "binanceusdm",
            server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            first, second = (
                OrderRequest(
                    f"{ACCOUNT}-sl-BTC-s8xk2-{n}",
                    BTC,
                    OrderSide.SELL,
                    OrderType.STOP_MARKET,
                    OrderPurpose.STOP_LOSS,
                    None,
                    False,
                    trigger_price=D(trigger),
                    close_position=True,
                )
                for n, trigger in ((1, 55000), (2, 54000))
            )
            adapter.place_order(first)
            from bot import errors

            with pytest.raises(errors.OrderRejected) as refused:
                adapter.place_order(second)
            assert refused.value.code == -4130
        finally:
            adapter.exchange.close()


def test_binance_below_the_minimum_a_valid_close_position_stop_is_kept() -> None:
    """0.004 BTC at the step 0.01 (opened at the step 0.001): its close-position stop still
    protects, so a wanted move is not made through the wire (no DELETE of it, no second stop
    sent), and a venue refusing every new close-position stop cannot leave the position naked
    and closed."""
    below = D("0.004")
    sim = btc_account()
    sim.set_leverage(BTC, 3)
    sim.place_order(
        OrderRequest(
            "hand-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, below, False
        )
    )
    inst = sim.book.instruments[BTC]
    sim.book.instruments[BTC] = replace(inst, step_size=D("0.01"), min_qty=D("0.01"))
    with _serve("binanceusdm", sim) as server:
        adapter = loopback_adapter(
            "binanceusdm",
            server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            store = MemoryStore()
            engine = _engine(adapter, store)
            assert engine.tick().unprotected == []
            [old] = [o for o in adapter.fetch_open_orders(BTC) if o.close_position]
            assert old.trigger_price is not None
            real_place = sim.place_order

            def refuse_close_position(request: OrderRequest) -> Order:
                if request.close_position:
                    raise OrderRejected("Order would immediately trigger.", code=-2021)
                return real_place(request)

            sim.place_order = refuse_close_position  # type: ignore[method-assign]
            posts = len(server.calls("/fapi/v1/algoOrder", "POST"))
            now = LiveClock().now_ms()
            acct = engine.reconcile(now)
            engine.protect(BTC, acct, old.trigger_price + 100, None, now, tolerance=D(0))
            assert engine.ensure_protected(acct, now) == []
            assert [o.client_id for o in adapter.fetch_open_orders(BTC)] == [old.client_id]
            assert server.calls("/fapi/v1/algoOrder", "DELETE") == []
            assert len(server.calls("/fapi/v1/algoOrder", "POST")) == posts
            assert sim.book.positions[BTC].qty == below
            assert [e for e in store.events if e.kind == EventKind.UNPROTECTED] == []
        finally:
            adapter.exchange.close()
        assert server.errors == []


def test_bybit_off_the_step_a_stop_on_the_whole_position_is_kept_over_one_on_the_part() -> None:
    """0.123 BTC with the bot's stop on all of it, placed at the step 0.001; then the venue's
    step became 0.01. A moved stop could cover 0.12 only (Bybit takes no close-position stop
    here): the resting one, which still protects the whole position, stays (no cancel, no
    order sent) and nothing is left unprotected. Replaced by one on 0.12, it left 0.003 with no
    stop at all: an open ``unprotected`` incident the bot had made itself."""
    sim = btc_account()
    sim.set_leverage(BTC, 3)
    sim.place_order(
        OrderRequest(
            "hand-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, HELD, False
        )
    )
    with _serve("bybit", sim) as server:
        before = loopback_adapter(
            "bybit",
            server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            before.place_order(  # the bot's stop, sent while the step was 0.001
                OrderRequest(
                    f"{ACCOUNT}-sl-BTC-s8xk2-1",
                    BTC,
                    OrderSide.SELL,
                    OrderType.STOP_MARKET,
                    OrderPurpose.STOP_LOSS,
                    HELD,
                    True,
                    trigger_price=D(55000),
                )
            )
        finally:
            before.exchange.close()
        inst = sim.book.instruments[BTC]
        sim.book.instruments[BTC] = replace(inst, step_size=D("0.01"), min_qty=D("0.01"))
        adapter = loopback_adapter(
            "bybit",
            server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            assert adapter.instrument(BTC).step_size == D("0.01")
            store = MemoryStore()
            engine = _engine(adapter, store)
            posts = len(server.calls("/v5/order/create"))
            now = LiveClock().now_ms()
            acct = engine.reconcile(now)
            engine.protect(BTC, acct, D(56000), None, now, tolerance=D(0))  # the policy trails
            assert engine.ensure_protected(acct, now) == []
            [stop] = adapter.fetch_open_orders(BTC)
            assert (stop.client_id, stop.amount, stop.trigger_price) == (
                f"{ACCOUNT}-sl-BTC-s8xk2-1",
                HELD,
                D(55000),
            )
            assert server.calls("/v5/order/cancel") == []
            assert len(server.calls("/v5/order/create")) == posts
            assert [e for e in store.events if e.kind == EventKind.UNPROTECTED] == []
            [kept] = [e.reason for e in store.events if "kept at 55000" in e.reason]
            assert "a new one could cover only 0.12 of position 0.123" in kept
        finally:
            adapter.exchange.close()
        assert server.errors == []
