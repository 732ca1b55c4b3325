"""A Binance stop that fired is read through the order it placed, and never as a fill of 0.

A conditional (algo) order that fired is ``algoStatus`` FINISHED with an ``actualOrderId`` and
no executed quantity (Query Algo Order; exchange-facts 2): ccxt reads it as filled 0 at no
price. The bot recorded every Binance stop-out so ("filled 0 at None", no fill row, its loss
missing from the journal). The executed quantity and average price are on the order it placed,
``GET /fapi/v1/order?orderId=<actualOrderId>``. An answer of either that cannot be read leaves
the outcome unknown (the account unreadable, read again at the next job), never filled 0.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

import pytest

from bot import errors
from bot.domain.enums import OrderStatus
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract import test_ccxt_loopback as loop
from tests.fakes.binance_loopback import Fault, LoopbackBinance

# the loopback contract test's fixtures: a simulated account behind the venue, the adapter
sim, server, clock, adapter = loop.sim, loop.server, loop.clock, loop.adapter
BTC = loop.BTC
ALGO, ORDER = "/fapi/v1/algoOrder", "/fapi/v1/order"
DAY_MS = 86_400_000


def fire_stop(adapter: CcxtExchange, sim: SimulatedExchange) -> str:
    """An entry of 0.01 and its stop at 55,000; the mark falls through it: the venue fills it."""
    adapter.place_order(loop.entry())
    adapter.place_order(loop.stop())
    sim.set_mark(BTC, D(54000))
    venue = sim.fetch_order(BTC, loop.stop().client_id)
    assert venue is not None
    assert venue.status is OrderStatus.FILLED
    return loop.stop().client_id


def test_the_fill_of_a_fired_stop_is_read_from_the_order_it_placed(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    cid = fire_stop(adapter, sim)
    venue = sim.fetch_order(BTC, cid)
    assert venue is not None
    found = adapter.fetch_order(BTC, cid)
    assert found is not None
    assert (found.status, found.filled, found.average_price) == (
        OrderStatus.FILLED,
        D("0.01"),
        venue.average_price,
    )
    # one request more than before (weight 1): the order the algo order names, by its id
    [algo] = server.calls(ALGO, "GET")
    [placed] = server.calls(ORDER, "GET")
    assert algo.params["clientAlgoId"] == cid
    raw = adapter.exchange.fetch_order(None, BTC, {"clientOrderId": cid, "trigger": True})
    assert raw["info"]["algoStatus"] == "FINISHED"
    assert placed.params["orderId"] == raw["info"]["actualOrderId"]


def test_a_stop_that_has_not_fired_costs_no_second_request(
    adapter: CcxtExchange, server: LoopbackBinance
) -> None:
    adapter.place_order(loop.entry())
    adapter.place_order(loop.stop())
    found = adapter.fetch_order(BTC, loop.stop().client_id)
    assert found is not None
    assert found.status is OrderStatus.OPEN
    assert server.calls(ORDER, "GET") == []


def _set(key: str, value: object) -> Callable[[Any], Any]:
    def edit(reply: Any) -> Any:
        if value is _DROP:
            reply.pop(key, None)
        else:
            reply[key] = value
        return reply

    return edit


_DROP = object()

# The placed order's answer, garbled: each must leave the outcome unknown, none read as 0.
PLACED_GARBLED: dict[str, Callable[[Any], Any]] = {
    "executedQty null": _set("executedQty", None),
    "executedQty missing": _set("executedQty", _DROP),
    "executedQty not a number": _set("executedQty", "abc"),
    "executedQty negative": _set("executedQty", "-0.01"),
    "executedQty above the stop": _set("executedQty", "0.02"),
    "avgPrice null": _set("avgPrice", None),
    "avgPrice 0": _set("avgPrice", "0"),
    "status unknown": _set("status", "WHATEVER"),
    "filled, executedQty 0": _set("executedQty", "0"),
    "another order": _set("orderId", 1),
}


@pytest.mark.parametrize("name", sorted(PLACED_GARBLED))
def test_a_garbled_answer_of_the_placed_order_is_unknown_never_zero(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange, name: str
) -> None:
    cid = fire_stop(adapter, sim)
    server.inject(Fault(ORDER, "GET", kind="edit", edit=PLACED_GARBLED[name], times=50))
    with pytest.raises(errors.AccountUnreadable, match=cid):
        adapter.fetch_order(BTC, cid)
    # the next job's lookup, on a venue answering cleanly again, reads the fill
    server.clear_faults()
    found = adapter.fetch_order(BTC, cid)
    assert found is not None
    assert (found.status, found.filled) == (OrderStatus.FILLED, D("0.01"))


@pytest.mark.parametrize(
    "kind", ["garbled_json", "html_200", "json_string", "empty_list", "missing_fields"]
)
def test_an_unreadable_answer_of_the_placed_order_is_unknown(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange, kind: str
) -> None:
    cid = fire_stop(adapter, sim)
    server.inject(Fault(ORDER, "GET", kind=kind, times=50))  # type: ignore[arg-type]
    with pytest.raises(errors.AccountUnreadable):
        adapter.fetch_order(BTC, cid)


@pytest.mark.parametrize("value", ["", None, _DROP, "abc", "0", True])
def test_a_fired_stop_that_names_no_placed_order_is_unknown(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange, value: object
) -> None:
    cid = fire_stop(adapter, sim)
    server.inject(Fault(ALGO, "GET", kind="edit", edit=_set("actualOrderId", value), times=50))
    with pytest.raises(errors.AccountUnreadable, match="actualOrderId"):
        adapter.fetch_order(BTC, cid)
    assert server.calls(ORDER, "GET") == []


def _not_found(reply: Any) -> Any:
    return {"code": -2013, "msg": "Order does not exist."}


def _fired_days_ago(days: int) -> Callable[[Any], Any]:
    def edit(reply: Any) -> Any:
        reply["triggerTime"] = int(reply["triggerTime"]) - days * DAY_MS
        return reply

    return edit


def test_a_placed_order_the_venue_does_not_find_yet_is_unknown(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    """Its query can trail the matching engine: not found is not "traded nothing"."""
    cid = fire_stop(adapter, sim)
    server.inject(Fault(ORDER, "GET", kind="edit", edit=_not_found, times=50))
    with pytest.raises(errors.AccountUnreadable, match="does not find the order it placed"):
        adapter.fetch_order(BTC, cid)


def test_a_placed_order_gone_past_the_venues_keeping_traded_nothing(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    """Binance keeps an order that ended without a fill 3 days (Query Order): one not found 4
    days after the stop fired traded nothing; the stop is cancelled, not a fill of 0 and not
    an account unreadable for ever."""
    cid = fire_stop(adapter, sim)
    server.inject(Fault(ALGO, "GET", kind="edit", edit=_fired_days_ago(4)))
    server.inject(Fault(ORDER, "GET", kind="edit", edit=_not_found))
    found = adapter.fetch_order(BTC, cid)
    assert found is not None
    assert (found.status, found.filled, found.average_price) == (OrderStatus.CANCELED, D(0), None)


def test_a_fired_stop_whose_time_cannot_be_read_is_unknown_when_its_order_is_not_found(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    cid = fire_stop(adapter, sim)
    server.inject(Fault(ALGO, "GET", kind="edit", edit=_set("triggerTime", 0)))
    server.inject(Fault(ORDER, "GET", kind="edit", edit=_not_found))
    with pytest.raises(errors.AccountUnreadable, match="triggerTime"):
        adapter.fetch_order(BTC, cid)
