"""The bot's Bybit stops and take-profits are carried out whatever the free margin at trigger
time, through real ccxt against the loopback Bybit v5 server.

Bybit's create-order docs: a conditional order "does not occupy the margin. If the margin is
insufficient after the conditional order is triggered, the order will be cancelled", and
``closeOnTrigger`` "can be used to ensure your stop loss reduces your position regardless of
current available margin" (https://bybit-exchange.github.io/docs/v5/order/create-order). The
bot sizes increases into the available balance (0.1 % kept free, risk/margin_cap.py), so a stop
firing on a losing, fully allocated account is that case: sent without the flag, it was
cancelled when it triggered and the position was naked until the next guard.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from bot.clock import LiveClock
from bot.domain.enums import OrderPurpose, OrderStatus, OrderType, TriggerBy
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_account,
    entry,
    stop,
    take_profit,
)
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter

D = Decimal
CREATE = "/v5/order/create"


@pytest.fixture
def sim() -> SimulatedExchange:
    return btc_account()


@pytest.fixture
def server(sim: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def adapter(server: LoopbackBybit) -> Iterator[CcxtExchange]:
    exchange = loopback_adapter(
        "bybit",
        server.base_url,
        RecordingClock(),
        key=KEY,
        secret=SECRET,
        account=ACCOUNT,
        symbols=[BTC],
    )
    yield exchange
    exchange.exchange.close()


def test_stops_and_take_profits_go_out_close_on_trigger_and_read_back_sized(
    adapter: CcxtExchange, server: LoopbackBybit
) -> None:
    adapter.place_order(entry())
    adapter.place_order(stop())
    adapter.place_order(take_profit())
    sent = [r.params for r in server.calls(CREATE, "POST")]
    assert "closeOnTrigger" not in sent[0]  # the entry: an opening order
    for params in sent[1:]:
        assert (params["closeOnTrigger"], params["reduceOnly"]) == ("true", "true"), params
        assert params["qty"] == "0.01"  # sized: not Bybit's qty "0" close-whole order
        assert params["triggerBy"] == "MarkPrice"
    resting = {o.client_id: o for o in adapter.fetch_open_orders(BTC)}
    sl = resting[stop().client_id]
    # the flag with a size is a sized stop (the venue trims it to the position at trigger
    # time), not a close-position one: coverage counts 0.01, as sent
    assert (sl.type, sl.amount, sl.close_position) == (OrderType.STOP_MARKET, D("0.01"), False)
    assert (sl.reduce_only, sl.trigger_by) == (True, TriggerBy.MARK)
    tp = resting[take_profit().client_id]
    assert (tp.type, tp.amount, tp.close_position) == (
        OrderType.TAKE_PROFIT_MARKET,
        D("0.01"),
        False,
    )


@pytest.mark.parametrize("flagged", [True, False], ids=["bot-stop", "stop-without-flag"])
def test_a_stop_that_triggers_while_the_margin_is_short_still_closes_the_position(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange, flagged: bool
) -> None:
    """The loopback cancels a triggered conditional order placed without ``closeOnTrigger``
    when the margin is short, as Bybit documents: the bot's stop fires all the same; one sent
    as before (``stop-without-flag``, the request the bot used to send) is cancelled and the
    position stays open."""
    adapter.place_order(entry())
    if flagged:
        adapter.place_order(stop())
    else:
        adapter.exchange.create_order(
            BTC,
            "market",
            "sell",
            0.01,
            None,
            {
                "clientOrderId": stop().client_id,
                "reduceOnly": True,
                "stopLossPrice": 55000.0,
                "triggerBy": "MarkPrice",
            },
        )
    assert ("closeOnTrigger" in server.calls(CREATE, "POST")[-1].params) is flagged
    server.move_mark(BTC, D(54000), margin_short=True)
    found = adapter.fetch_order(BTC, stop().client_id)
    assert found is not None
    position = sim.fetch_positions([BTC]).get(BTC)
    if flagged:
        assert found.status is OrderStatus.FILLED
        assert position is None or position.qty == 0
    else:
        assert found.status is OrderStatus.CANCELED
        assert position is not None
        assert position.qty == D("0.01")


def test_binance_stops_are_unchanged() -> None:
    """Binance has no such flag: its stops go out as before (reduce-only, mark trigger)."""
    sim = btc_account()
    with LoopbackBinance(
        sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]
    ) as srv:
        adapter = loopback_adapter(
            "binanceusdm",
            srv.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=[BTC],
        )
        try:
            adapter.place_order(entry())
            adapter.place_order(stop())
            adapter.place_order(take_profit())
        finally:
            adapter.exchange.close()
        algo = [r.params for r in srv.calls("/fapi/v1/algoOrder", "POST")]
    assert len(algo) == 2
    for params in algo:
        assert (params["reduceOnly"], params["workingType"]) == ("true", "MARK_PRICE")
        assert "closeOnTrigger" not in params
        assert "closePosition" not in params
    assert {o.purpose for o in sim.fetch_open_orders(BTC)} == {
        OrderPurpose.STOP_LOSS,
        OrderPurpose.TAKE_PROFIT,
    }
