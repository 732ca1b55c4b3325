"""One contract suite, three implementations: the simulated exchange (simulation and paper) and
the ccxt adapter on the loopback Binance USD-M and Bybit v5 servers (live). The same behaviours
must hold on all of them, so the simulation cannot drift away from what the live path does and
Bybit is held to exactly what Binance is."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D

import pytest

from bot import errors
from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.market import FundingInfo
from bot.domain.orders import OrderRequest
from bot.ports.exchange import ExchangePort
from bot.sim.exchange import SimulatedExchange
from tests.contract.test_ccxt_loopback import KEY, SECRET, RecordingClock, btc_instrument
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter

BTC = "BTC/USDT:USDT"
ACCOUNT = "acct1"


def _sim() -> SimulatedExchange:
    ex = SimulatedExchange(
        {BTC: btc_instrument()},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.ISOLATED,
    )
    ex.set_mark(BTC, D(60000))
    ex.set_funding(BTC, FundingInfo(D("0.0001"), D(8), 1_700_000_000_000))
    return ex


SERVERS = {"binanceusdm": LoopbackBinance, "bybit": LoopbackBybit}


@pytest.fixture(params=["simulated", "binanceusdm", "bybit"])
def port(request: pytest.FixtureRequest) -> Iterator[ExchangePort]:
    sim = _sim()
    if request.param == "simulated":
        yield sim
        return
    server_cls = SERVERS[request.param]
    srv = server_cls(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    with srv:
        adapter = loopback_adapter(
            request.param,
            srv.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
            timeout_ms=3000,
        )
        yield adapter
        assert srv.errors == []


def cid(purpose: OrderPurpose, n: int) -> str:
    return f"{ACCOUNT}-{purpose.value}-BTC-c-{n}"


def market(n: int, side: OrderSide, amount: str, *, reduce: bool = False) -> OrderRequest:
    purpose = OrderPurpose.REDUCE if reduce else OrderPurpose.ENTRY
    return OrderRequest(cid(purpose, n), BTC, side, OrderType.MARKET, purpose, D(amount), reduce)


def conditional(n: int, purpose: OrderPurpose, trigger: str, amount: str = "0.1") -> OrderRequest:
    otype = (
        OrderType.STOP_MARKET
        if purpose is OrderPurpose.STOP_LOSS
        else (OrderType.TAKE_PROFIT_MARKET)
    )
    return OrderRequest(
        cid(purpose, n),
        BTC,
        OrderSide.SELL,
        otype,
        purpose,
        D(amount),
        True,
        trigger_price=D(trigger),
    )


def test_market_order_opens_a_position(port: ExchangePort) -> None:
    port.set_leverage(BTC, 5)
    order = port.place_order(market(1, OrderSide.BUY, "0.1"))
    assert order.status is OrderStatus.FILLED
    assert order.filled == D("0.1")
    pos = port.fetch_positions([BTC])[BTC]
    assert pos.qty == D("0.1")
    assert pos.liquidation_price is not None
    assert pos.liquidation_price < D(60000)
    assert port.fetch_leverage(BTC) == 5


def test_protective_orders_rest_and_cancel(port: ExchangePort) -> None:
    port.set_leverage(BTC, 5)
    port.place_order(market(1, OrderSide.BUY, "0.1"))
    port.place_order(conditional(2, OrderPurpose.STOP_LOSS, "55000"))
    port.place_order(conditional(3, OrderPurpose.TAKE_PROFIT, "70000"))
    resting = {o.client_id: o for o in port.fetch_open_orders(BTC)}
    assert set(resting) == {cid(OrderPurpose.STOP_LOSS, 2), cid(OrderPurpose.TAKE_PROFIT, 3)}
    sl = resting[cid(OrderPurpose.STOP_LOSS, 2)]
    assert sl.purpose is OrderPurpose.STOP_LOSS
    assert sl.reduce_only
    assert sl.trigger_price == D(55000)
    assert sl.amount == D("0.1")
    found = port.fetch_order(BTC, sl.client_id)
    assert found is not None
    assert found.status is OrderStatus.OPEN
    port.cancel_order(BTC, sl.client_id)
    port.cancel_order(BTC, sl.client_id)  # already gone: not an error
    assert [o.client_id for o in port.fetch_open_orders(BTC)] == [cid(OrderPurpose.TAKE_PROFIT, 3)]


def test_rejections_are_typed(port: ExchangePort) -> None:
    with pytest.raises(errors.ReduceOnlyRejected):
        port.place_order(market(1, OrderSide.SELL, "0.1", reduce=True))  # nothing to reduce
    with pytest.raises(errors.InsufficientMargin):
        port.place_order(market(2, OrderSide.BUY, "1"))  # 60000 notional at 1x on 10000
    with pytest.raises(errors.InvalidQuantity):
        port.place_order(market(3, OrderSide.BUY, "0.0015"))  # off the 0.001 step
    port.set_leverage(BTC, 5)
    port.place_order(market(4, OrderSide.BUY, "0.1"))
    with pytest.raises(errors.OrderRejected):
        port.place_order(conditional(5, OrderPurpose.STOP_LOSS, "61000"))  # would trigger now
    port.place_order(conditional(6, OrderPurpose.STOP_LOSS, "55000"))
    with pytest.raises(errors.DuplicateClientId):
        port.place_order(conditional(6, OrderPurpose.STOP_LOSS, "54000"))


def test_settings_are_idempotent(port: ExchangePort) -> None:
    port.set_margin_mode(BTC, MarginMode.ISOLATED)
    port.set_margin_mode(BTC, MarginMode.ISOLATED)
    port.set_leverage(BTC, 3)
    port.set_leverage(BTC, 3)
    assert port.fetch_leverage(BTC) == 3
    assert port.fetch_balance().wallet == D(10000)
    assert port.fetch_mark_price(BTC) == D(60000)
    assert port.fetch_funding(BTC).rate == D("0.0001")


def test_reduce_only_is_capped_at_the_position(port: ExchangePort) -> None:
    port.set_leverage(BTC, 5)
    port.place_order(market(1, OrderSide.BUY, "0.1"))
    port.place_order(market(2, OrderSide.SELL, "0.04", reduce=True))
    assert port.fetch_positions([BTC])[BTC].qty == D("0.06")


@pytest.fixture(params=["simulated", "binanceusdm", "bybit"])
def port_and_account(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[ExchangePort, SimulatedExchange]]:
    """The port and the simulated account behind it (a test drives the market on it)."""
    sim = _sim()
    if request.param == "simulated":
        yield sim, sim
        return
    srv = SERVERS[request.param](
        sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]
    )
    with srv:
        adapter = loopback_adapter(
            request.param,
            srv.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
            timeout_ms=3000,
        )
        yield adapter, sim
        adapter.exchange.close()
        assert srv.errors == []


def test_a_liquidation_is_in_the_venues_record_of_forced_closes(
    port_and_account: tuple[ExchangePort, SimulatedExchange],
) -> None:
    """What the engine names an exit by: a liquidation the venue made is read back as one,
    on every implementation; the account's own trades are not forced closes."""
    port, sim = port_and_account
    since = LiveClock().now_ms() - 1000
    port.set_leverage(BTC, 20)
    port.place_order(market(1, OrderSide.BUY, "0.1"))
    port.place_order(market(2, OrderSide.SELL, "0.02", reduce=True))
    assert port.fetch_forced_closes(BTC, since) == []
    liq = port.fetch_positions([BTC])[BTC].liquidation_price
    assert liq is not None
    sim.set_mark(BTC, liq * D("0.99"))
    assert port.fetch_positions([BTC]) == {}
    got = port.fetch_forced_closes(BTC, since)
    assert got is not None
    assert [(c.kind.value, c.qty) for c in got] == [("liquidation", D("0.08"))]
    assert port.fetch_forced_closes(BTC, LiveClock().now_ms() + 60_000) == []


def test_a_stop_that_fired_is_looked_up_with_what_it_traded(
    port_and_account: tuple[ExchangePort, SimulatedExchange],
) -> None:
    """A stop the mark passed is filled on the venue; looked up by its client id (as reconcile
    settles an order the open list no longer shows) it reads filled with the quantity and the
    average price the venue executed, on every implementation. A Binance algo order that fired
    says neither itself (ccxt read it as filled 0 at no price: the stop-out's fill and its loss
    were never recorded): the order it placed does."""
    port, sim = port_and_account
    port.set_leverage(BTC, 5)
    port.place_order(market(1, OrderSide.BUY, "0.1"))
    stop = conditional(2, OrderPurpose.STOP_LOSS, "55000")
    port.place_order(stop)
    sim.set_mark(BTC, D(54000))
    venue = sim.fetch_order(BTC, stop.client_id)
    assert venue is not None
    assert venue.status is OrderStatus.FILLED
    assert venue.average_price is not None
    found = port.fetch_order(BTC, stop.client_id)
    assert found is not None
    assert (found.status, found.filled, found.average_price) == (
        OrderStatus.FILLED,
        D("0.1"),
        venue.average_price,
    )
    assert (found.client_id, found.purpose, found.trigger_price) == (
        stop.client_id,
        OrderPurpose.STOP_LOSS,
        D(55000),
    )
    assert port.fetch_positions([BTC]) == {}


def test_cancelling_a_stop_that_fired_returns_what_it_traded(
    port_and_account: tuple[ExchangePort, SimulatedExchange],
) -> None:
    """A cancel that comes after the stop fired (the bot moving it on a read from before) is
    no error, and returns the order as it ended, filled: the engine records the fill, not a
    cancel. A cancel of a resting order returns None."""
    port, sim = port_and_account
    port.set_leverage(BTC, 5)
    port.place_order(market(1, OrderSide.BUY, "0.1"))
    take = conditional(2, OrderPurpose.TAKE_PROFIT, "70000")
    port.place_order(take)
    assert port.cancel_order(BTC, take.client_id) is None
    stop = conditional(3, OrderPurpose.STOP_LOSS, "55000")
    port.place_order(stop)
    sim.set_mark(BTC, D(54000))
    ended = port.cancel_order(BTC, stop.client_id)
    assert ended is not None
    assert (ended.client_id, ended.status, ended.filled) == (
        stop.client_id,
        OrderStatus.FILLED,
        D("0.1"),
    )
