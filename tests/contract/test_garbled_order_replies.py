"""Garbled answers to an order POST are "outcome unknown", settled by a lookup by client id.

The venue may have accepted the order whatever the answer looks like: bad JSON, an HTML page
with status 200, a bare JSON string, an object without its fields or with nulls, an empty list.
None may crash the caller, resend the order blind, or place it twice.
"""

from __future__ import annotations

import pytest

from bot import errors
from bot.domain.enums import OrderStatus
from bot.domain.orders import OrderRequest
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract import test_ccxt_loopback as loop
from tests.fakes.binance_loopback import Fault, LoopbackBinance

# the loopback contract test's fixtures: a simulated account behind the venue, the adapter
sim, server, clock, adapter = loop.sim, loop.server, loop.clock, loop.adapter
GARBLED = ["garbled_json", "html_200", "json_string", "missing_fields", "null_fields", "empty_list"]
BTC = loop.BTC


def place_garbled(
    adapter: CcxtExchange, server: LoopbackBinance, kind: str, conditional: bool
) -> tuple[OrderRequest, str]:
    if conditional:
        adapter.place_order(loop.entry(99))  # a stop needs a position
        request, path = loop.stop(), "/fapi/v1/algoOrder"
    else:
        request, path = loop.entry(), "/fapi/v1/order"
    server.inject(Fault(path, "POST", kind=kind))  # type: ignore[arg-type]
    return request, path


@pytest.mark.parametrize("conditional", [False, True], ids=["market", "stop"])
@pytest.mark.parametrize("kind", GARBLED)
def test_a_garbled_answer_is_settled_by_client_id(
    adapter: CcxtExchange,
    server: LoopbackBinance,
    sim: SimulatedExchange,
    kind: str,
    conditional: bool,
) -> None:
    request, path = place_garbled(adapter, server, kind, conditional)
    order = adapter.place_order(request)
    assert order.client_id == request.client_id
    assert order.status is (OrderStatus.OPEN if conditional else OrderStatus.FILLED)
    assert [r.fault for r in server.calls(path, "POST")][-1] == kind
    assert len([r for r in server.calls(path, "POST") if r.params.get("side") == "SELL"]) == (
        1 if conditional else 0
    )
    assert len(loop.orders_with(sim, request.client_id)) == 1  # never placed twice
    if kind in ("garbled_json", "html_200", "json_string"):
        assert server.calls(path, "GET"), "the outcome was looked up by client id"


@pytest.mark.parametrize("kind", ["json_string", "html_200"])
def test_garbled_answers_to_the_post_and_the_lookup_are_unknown_then_resolved(
    adapter: CcxtExchange, server: LoopbackBinance, sim: SimulatedExchange, kind: str
) -> None:
    request, path = place_garbled(adapter, server, kind, conditional=True)
    server.inject(Fault(path, "GET", kind=kind, times=50))  # type: ignore[arg-type]
    # Either way the caller learns "unknown", never "rejected" (which would invite a new order):
    # an answer ccxt parses into an empty order is reported UNKNOWN; one it cannot parse at all
    # is OutcomeUnknown once the lookups fail too.
    if kind == "json_string":
        assert adapter.place_order(request).status is OrderStatus.UNKNOWN
    else:
        with pytest.raises(errors.OutcomeUnknown, match=request.client_id):
            adapter.place_order(request)
    assert len([r for r in server.calls(path, "POST") if r.params.get("side") == "SELL"]) == 1
    # the next look-up by client id (the next tick's) settles it: there is exactly one
    server.clear_faults()
    found = adapter.fetch_order(BTC, request.client_id)
    assert found is not None
    assert found.status is OrderStatus.OPEN
    assert len(loop.orders_with(sim, request.client_id)) == 1


def test_a_garbled_answer_to_a_lookup_is_a_typed_error_not_a_crash(
    adapter: CcxtExchange, server: LoopbackBinance
) -> None:
    adapter.place_order(loop.entry())
    server.inject(Fault("/fapi/v1/order", "GET", kind="json_string", times=50))
    # not AttributeError: an unreadable account (the reconcile settles orders with this lookup:
    # nothing is sent on an account whose orders cannot be settled), asked again next tick
    with pytest.raises(errors.AccountUnreadable, match="could not be read"):
        adapter.fetch_order(BTC, loop.entry().client_id)
    server.clear_faults()
    found = adapter.fetch_order(BTC, loop.entry().client_id)
    assert found is not None
    assert found.status is OrderStatus.FILLED
