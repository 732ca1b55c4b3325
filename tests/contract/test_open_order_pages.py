"""Open-order lists beyond one page: Bybit pages them, Binance does not.

Bybit: the adapter reads every page, or refuses the list.

``GET /v5/order/realtime`` answers at most ``limit`` rows (default 20, at most 50), newest first,
with a ``nextPageCursor`` (https://bybit-exchange.github.io/docs/v5/order/open-order). The real
ccxt ``bybit`` class talks to the loopback server, which pages exactly so.

The many resting orders are placed straight on the simulated account behind the server, as a
user's orders placed elsewhere: through the wire the server keeps Bybit's cap of 10 conditional
orders per symbol, and the simulated account rests conditional orders only (a user's limit
orders would do the same to the unfiltered list).

Binance: ``GET /fapi/v1/openOrders`` and ``GET /fapi/v1/openAlgoOrders`` take neither a limit
nor a cursor and list every open order of the symbol
(https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Current-All-Algo-Open-Orders):
one call per book, whatever the number.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal as D

import ccxt
import pytest

from bot import errors
from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from tests.contract.test_ccxt_loopback import (
    ACCOUNT,
    BTC,
    KEY,
    SECRET,
    RecordingClock,
    btc_instrument,
    entry,
    stop,
)
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit, point_ccxt_at
from tests.fakes.live_setup import loopback_adapter

REALTIME = "/v5/order/realtime"


def foreign_orders(sim: SimulatedExchange, n: int) -> set[str]:
    """``n`` resting buy stops far above the market, not the bot's (no account prefix)."""
    base = int(sim.fetch_mark_price(BTC) * D("1.5"))
    ids = set()
    for k in range(n):
        cid = f"user-ladder-{k}"
        sim.place_order(
            OrderRequest(
                client_id=cid,
                symbol=BTC,
                side=OrderSide.BUY,
                type=OrderType.STOP_MARKET,
                purpose=OrderPurpose.ENTRY,
                amount=D("0.001"),
                reduce_only=False,
                trigger_price=D(base + 10 * k),
            )
        )
        ids.add(cid)
    return ids


@pytest.fixture
def sim() -> SimulatedExchange:
    ex = SimulatedExchange(
        {BTC: btc_instrument()},
        LiveClock(),
        starting_balance=D(10000),
        margin_mode=MarginMode.CROSS,
    )
    ex.set_mark(BTC, D(60000))
    return ex


@pytest.fixture
def server(sim: SimulatedExchange) -> Iterator[LoopbackBybit]:
    with LoopbackBybit(
        sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]
    ) as srv:
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


@pytest.fixture
def raw(server: LoopbackBybit) -> Iterator[ccxt.bybit]:
    ex = ccxt.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False, "timeout": 1500})
    ex.has["fetchCurrencies"] = False
    point_ccxt_at(ex, server.base_url)
    yield ex
    ex.close()


def test_server_pages_like_bybit(raw: ccxt.bybit, sim: SimulatedExchange) -> None:
    """Default 20 rows, newest first; following the cursor lists every order once; the last
    page's cursor is empty."""
    placed = foreign_orders(sim, 45)
    answers = []
    cursor = None
    while True:
        params = {"category": "linear", "symbol": "BTCUSDT"}
        if cursor:
            params["cursor"] = cursor
        answer = raw.privateGetV5OrderRealtime(params)["result"]
        answers.append(answer)
        cursor = answer["nextPageCursor"]
        if not cursor:
            break
    assert [len(a["list"]) for a in answers] == [20, 20, 5]
    links = [row["orderLinkId"] for a in answers for row in a["list"]]
    assert set(links) == placed
    assert len(links) == len(placed)
    # newest first: the ladder was placed in order, so its numbers fall
    numbers = [int(link.rsplit("-", 1)[1]) for link in links]
    assert numbers == sorted(numbers, reverse=True)
    assert answers[0]["nextPageCursor"].count(",") == 1  # "orderId:createdTime,orderId:..."
    big = raw.privateGetV5OrderRealtime({"category": "linear", "symbol": "BTCUSDT", "limit": 50})
    assert len(big["result"]["list"]) == 45
    assert big["result"]["nextPageCursor"] == ""


def test_every_open_order_is_read_beyond_the_first_page(
    adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    adapter.place_order(entry())
    adapter.place_order(stop())  # the bot's stop, now the oldest resting order
    ladder = foreign_orders(sim, 70)
    start = len(server.calls(REALTIME, "GET"))
    seen = {o.client_id: o for o in adapter.fetch_open_orders(BTC)}
    assert set(seen) == ladder | {stop().client_id}
    assert seen[stop().client_id].purpose is OrderPurpose.STOP_LOSS
    lists = server.calls(REALTIME, "GET")[start:]
    # two lists (all orders, then orderFilter=StopOrder), two pages of 50 each
    assert [r.params.get("limit") for r in lists] == ["50"] * 4
    assert [r.params.get("orderFilter") for r in lists] == [None, None, "StopOrder", "StopOrder"]
    assert "cursor" not in lists[0].params
    assert lists[1].params["cursor"]


@pytest.mark.parametrize("fault", ["repeat", "endless"])
def test_a_list_that_never_ends_is_unreadable(
    fault: str, adapter: CcxtExchange, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    foreign_orders(sim, 3)
    server.cursor_fault = fault  # type: ignore[assignment]
    with pytest.raises(errors.AccountUnreadable) as raised:
        adapter.fetch_open_orders(BTC)
    message = str(raised.value)
    assert "open orders of BTC/USDT:USDT" in message
    pages = len(server.calls(REALTIME, "GET"))
    if fault == "repeat":
        assert "already read" in message
        assert pages == 2
    else:
        assert "20 pages of 50" in message
        assert pages == 20


def test_binance_lists_every_open_order_in_one_answer(sim: SimulatedExchange) -> None:
    ladder = foreign_orders(sim, 60)
    with LoopbackBinance(
        sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC]
    ) as server:
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
            assert {o.client_id for o in adapter.fetch_open_orders(BTC)} == ladder
        finally:
            adapter.exchange.close()
        lists = [*server.calls("/fapi/v1/openOrders"), *server.calls("/fapi/v1/openAlgoOrders")]
        assert len(lists) == 2
        assert all("limit" not in r.params and "cursor" not in r.params for r in lists)
        assert server.errors == []
