"""The loopback Binance USD-M server, driven by the real ccxt ``binanceusdm`` class over HTTP.

Every test runs ccxt's own request building, HMAC signing, HTTP and parsing against
``127.0.0.1``; the server is backed by the project's :class:`SimulatedExchange`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.clock import LiveClock
from bot.domain.enums import ForcedKind, MarginMode, OrderStatus
from bot.domain.instrument import Bracket, Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import ForcedClose
from bot.sim.exchange import SimulatedExchange

from .binance_loopback import Fault, LoopbackBinance, point_ccxt_at

KEY, SECRET = "test-api-key-3f9a", "test-api-secret-77c1d0"
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
D = Decimal


def _instrument(symbol: str, tick: str, min_notional: str) -> Instrument:
    base = symbol.split("/")[0]
    brackets = (
        Bracket(D(0), D(50000), D(125), D("0.004"), D(0)),
        Bracket(D(50000), D(250000), D(100), D("0.005"), D(50)),
        Bracket(D(250000), D(10) ** 9, D(50), D("0.01"), D(1300)),
    )
    return Instrument(
        symbol, base, "USDT", D(tick), D("0.001"), D("0.001"), D(min_notional), brackets,
        D("0.0002"), D("0.0005"), D("0.0125"),
    )  # fmt: skip


@pytest.fixture
def sim() -> SimulatedExchange:
    instruments = {BTC: _instrument(BTC, "0.1", "100"), ETH: _instrument(ETH, "0.01", "20")}
    ex = SimulatedExchange(
        instruments, LiveClock(), starting_balance=D(10000), margin_mode=MarginMode.CROSS
    )
    ex.set_mark(BTC, D(60000))
    ex.set_mark(ETH, D(3000))
    return ex


@pytest.fixture
def server(sim: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH]
    )
    srv.timeout_hold_s = 1.5  # beyond the client's 1 s timeout, short enough for a fast suite
    with srv:
        yield srv
    assert srv.errors == []


def _ccxt(server: LoopbackBinance, **config: Any) -> Any:
    ex = ccxt.binanceusdm(
        {
            "apiKey": KEY,
            "secret": SECRET,
            "enableRateLimit": False,
            "timeout": 1000,
            "options": {"fetchCurrencies": False},
            **config,
        }
    )
    point_ccxt_at(ex, server.base_url)
    return ex


@pytest.fixture
def ex(server: LoopbackBinance) -> Iterator[Any]:
    client = _ccxt(server)
    client.load_markets()
    yield client
    client.close()


def _code(exc: BaseException) -> int:
    text = str(exc)
    return int(text[text.index('"code": ') + 8 :].split(",")[0])


def _entry(ex: Any, qty: float = 0.01, cid: str = "bot-en-0001") -> dict[str, Any]:
    order: dict[str, Any] = ex.create_order(BTC, "market", "buy", qty, None, {"clientOrderId": cid})
    return order


def _stop(ex: Any, trigger: float, cid: str = "bot-sl-0001", **extra: Any) -> dict[str, Any]:
    params = {"stopLossPrice": trigger, "reduceOnly": True, "workingType": "MARK_PRICE"}
    order: dict[str, Any] = ex.create_order(
        BTC, "market", "sell", 0.01, None, {**params, "clientOrderId": cid, **extra}
    )
    return order


# -- markets, account, settings ------------------------------------------------------------


def test_load_markets_uses_only_exchange_info_and_the_instrument_filters(
    server: LoopbackBinance,
) -> None:
    client = _ccxt(server)
    markets = client.load_markets()
    market = markets[BTC]
    assert (market["type"], market["linear"], market["settle"]) == ("swap", True, "USDT")
    assert market["precision"]["amount"] == 0.001
    assert market["precision"]["price"] == 0.1
    assert market["limits"]["amount"]["min"] == 0.001
    assert market["limits"]["cost"]["min"] == 100
    assert markets[ETH]["precision"]["price"] == 0.01
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/fapi/v1/exchangeInfo")]


def test_fetch_balance_reports_wallet_available_and_unrealised_pnl(
    ex: Any, sim: SimulatedExchange
) -> None:
    assert ex.fetch_balance()["USDT"] == {"free": 10000.0, "used": 0.0, "total": 10000.0}
    ex.set_leverage(5, BTC)
    _entry(ex)
    sim.set_mark(BTC, D(61000))
    usdt = ex.fetch_balance()["USDT"]
    balance = sim.fetch_balance()
    assert usdt["total"] == float(balance.wallet + D("10"))  # 0.01 BTC up 1000 USDT
    assert usdt["free"] == float(balance.available or "nan")
    assert usdt["used"] == pytest.approx(usdt["total"] - usdt["free"])


def test_set_leverage_reaches_the_backend_and_reads_back(ex: Any, sim: SimulatedExchange) -> None:
    reply = ex.set_leverage(7, BTC)
    assert reply["leverage"] == 7
    assert sim.fetch_leverage(BTC) == 7
    assert ex.fetch_leverage(BTC)["longLeverage"] == 7
    with pytest.raises(ccxt.BadRequest) as info:
        ex.fapiPrivatePostLeverage({"symbol": "BTCUSDT", "leverage": 126})
    assert _code(info.value) == -4028


def test_symbol_config_lists_every_symbol_unless_one_is_asked_for(
    ex: Any, sim: SimulatedExchange
) -> None:
    """GET /fapi/v1/symbolConfig: ``symbol`` is optional; the answer is a list of rows."""
    ex.set_leverage(7, BTC)
    ex.set_leverage(3, ETH)
    rows = ex.fapiPrivateGetSymbolConfig({})
    assert [(r["symbol"], r["leverage"], r["marginType"]) for r in rows] == [
        ("BTCUSDT", 7, "CROSSED"),
        ("ETHUSDT", 3, "CROSSED"),
    ]
    assert rows[0]["isAutoAddMargin"] == "false"
    assert [r["symbol"] for r in ex.fapiPrivateGetSymbolConfig({"symbol": "ETHUSDT"})] == [
        "ETHUSDT"
    ]
    leverages = ex.fetch_leverages([BTC, ETH])  # one request, every symbol's row
    assert {s: row["longLeverage"] for s, row in leverages.items()} == {BTC: 7, ETH: 3}


def test_set_margin_mode_twice_raises_margin_mode_already_set(
    ex: Any, sim: SimulatedExchange
) -> None:
    ex.set_margin_mode("isolated", BTC)
    with pytest.raises(ccxt.MarginModeAlreadySet):
        ex.set_margin_mode("isolated", BTC)
    assert ex.fetch_margin_mode(BTC)["marginMode"] == "isolated"
    _entry(ex)
    assert sim.fetch_positions([BTC])[BTC].margin_mode is MarginMode.ISOLATED
    with pytest.raises(ccxt.OperationRejected) as info:  # Binance: not with an open position
        ex.set_margin_mode("cross", BTC)
    assert _code(info.value) == -4048


def test_position_mode_is_one_way_and_hedge_mode_refuses_orders(ex: Any) -> None:
    assert ex.fetch_position_mode()["hedged"] is False
    with pytest.raises(ccxt.OperationRejected) as info:
        ex.set_position_mode(False)
    assert _code(info.value) == -4059
    ex.set_position_mode(True)
    assert ex.fetch_position_mode()["hedged"] is True
    with pytest.raises(ccxt.OperationRejected) as info:
        _entry(ex)
    assert _code(info.value) == -4061


def test_positions_v3_and_v2_parse_completely(ex: Any, server: LoopbackBinance) -> None:
    ex.set_leverage(5, BTC)
    _entry(ex)
    (pos,) = ex.fetch_positions([BTC])
    assert (pos["side"], pos["contracts"], pos["entryPrice"]) == ("long", 0.01, 60000.0)
    assert (pos["marginMode"], pos["notional"], pos["hedged"]) == ("cross", 600.0, False)
    assert pos["maintenanceMargin"] == pytest.approx(2.4)
    assert pos["leverage"] is None  # v3 dropped the field, as on Binance
    client = _ccxt(server)
    client.options["fetchPositionsRisk"] = {"useV2": True}  # v2 still carries leverage
    (pos_v2,) = client.fetch_positions([BTC])
    assert (pos_v2["leverage"], pos_v2["contracts"], pos_v2["marginMode"]) == (5, 0.01, "cross")
    assert server.calls("/fapi/v2/positionRisk")
    client.close()


def test_leverage_tiers_funding_and_api_restrictions(ex: Any, sim: SimulatedExchange) -> None:
    tiers = ex.fetch_leverage_tiers([BTC])[BTC]
    assert [(t["maxLeverage"], t["maxNotional"]) for t in tiers[:2]] == [
        (125, 50000),
        (100, 250000),
    ]
    assert tiers[1]["info"]["cum"] == 50.0
    sim.set_funding(BTC, FundingInfo(D("0.0001"), D(4), 1_900_000_000_000))
    funding = ex.fetch_funding_rate(BTC)
    assert (funding["fundingRate"], funding["markPrice"]) == (0.0001, 60000.0)
    assert funding["fundingTimestamp"] == 1_900_000_000_000
    assert ex.fetch_funding_intervals([BTC])[BTC]["interval"] == "4h"
    sim.set_mark(BTC, D(60500))
    assert ex.fetch_ticker(BTC)["last"] == 60500.0  # the mark stands in for the last price
    restrictions = ex.sapi_get_account_apirestrictions()
    assert (restrictions["enableFutures"], restrictions["enableWithdrawals"]) == (True, False)


def test_ohlcv_serves_the_candles_it_was_given(ex: Any, server: LoopbackBinance) -> None:
    hour = 3_600_000
    rows = [(i * hour, D(100 + i), D(102 + i), D(99 + i), D(101 + i), D(5)) for i in range(3)]
    server.set_candles(BTC, "trade", rows)
    server.set_candles(BTC, "mark", [(r[0], r[1], r[2], r[3], r[4], D(0)) for r in rows])
    assert ex.fetch_ohlcv(BTC, "1h", limit=2) == [
        [hour, 101.0, 103.0, 100.0, 102.0, 5.0],
        [2 * hour, 102.0, 104.0, 101.0, 103.0, 5.0],
    ]
    assert ex.fetch_ohlcv(BTC, "1h", since=hour, limit=1, params={"price": "mark"}) == [
        [hour, 101.0, 103.0, 100.0, 102.0, 0.0]
    ]
    assert ex.fetch_ohlcv(ETH, "1h") == []
    with pytest.raises(ccxt.BadRequest):  # 1h rows asked for as 5m
        ex.fetch_ohlcv(BTC, "5m")


def test_force_orders_answer_a_week_of_the_last_90_days(
    ex: Any, sim: SimulatedExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No start: the 7 days before the end (or now), as the page says; a start alone the 7 days
    after it and a start and an end more than 7 days apart refused (the page promises no more
    than a week); nothing older than 90 days."""
    day, now = 86_400_000, LiveClock().now_ms()
    times = [now - 100 * day, now - 9 * day, now - 3_600_000]
    closes = [ForcedClose(BTC, ForcedKind.LIQUIDATION, D("0.001"), t) for t in times]
    monkeypatch.setattr(
        sim, "fetch_forced_closes", lambda s, since: [c for c in closes if c.timestamp_ms >= since]
    )

    def read(**window: int) -> list[int]:
        rows = ex.fapiPrivateGetForceOrders({"symbol": "BTCUSDT", **window})
        return [int(r["updateTime"]) for r in rows]

    assert read() == [times[2]]
    assert read(endTime=now - 8 * day) == [times[1]]
    assert read(startTime=now - 10 * day) == [times[1]]
    assert read(startTime=now - 10 * day, endTime=now - 3 * day) == [times[1]]
    assert read(startTime=now - 101 * day, endTime=now - 95 * day) == []
    with pytest.raises(ccxt.BadRequest) as refused:
        read(startTime=now - 10 * day, endTime=now)
    assert _code(refused.value) == -1127


# -- orders ----------------------------------------------------------------------------------


def test_market_order_with_client_id_fills_on_the_backend(
    ex: Any, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    order = _entry(ex, cid="bot-en-0001")
    assert (order["clientOrderId"], order["status"], order["type"]) == (
        "bot-en-0001",
        "closed",
        "market",
    )
    assert (order["filled"], order["average"], order["amount"]) == (0.01, 60000.0, 0.01)
    (sent,) = server.calls("/fapi/v1/order", "POST")
    assert sent.params["newClientOrderId"] == "bot-en-0001"
    assert sent.params["newOrderRespType"] == "RESULT"
    assert sim.fetch_positions([BTC])[BTC].qty == D("0.01")
    again = ex.fetch_order(None, BTC, {"clientOrderId": "bot-en-0001"})
    assert (again["id"], again["status"], again["filled"]) == (order["id"], "closed", 0.01)
    assert ex.fetch_order(order["id"], BTC)["clientOrderId"] == "bot-en-0001"


def test_stop_loss_goes_to_the_algo_api_and_lists_only_as_a_trigger_order(
    ex: Any, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    _entry(ex)
    stop = _stop(ex, 55000, "bot-sl-0001")
    assert (stop["status"], stop["triggerPrice"], stop["reduceOnly"]) == ("open", 55000.0, True)
    (sent,) = server.calls("/fapi/v1/algoOrder", "POST")
    assert {k: sent.params[k] for k in ("algoType", "type", "triggerPrice", "workingType")} == {
        "algoType": "CONDITIONAL",
        "type": "STOP_MARKET",
        "triggerPrice": "55000",
        "workingType": "MARK_PRICE",
    }
    assert sent.params["clientAlgoId"] == "bot-sl-0001"
    listed = ex.fetch_open_orders(BTC, params={"trigger": True})
    assert [(o["clientOrderId"], o["triggerPrice"]) for o in listed] == [("bot-sl-0001", 55000.0)]
    assert listed[0]["info"]["workingType"] == "MARK_PRICE"
    assert ex.fetch_open_orders(BTC) == []  # the regular book does not see stops
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, BTC, {"clientOrderId": "bot-sl-0001"})
    assert [o.client_id for o in sim.fetch_open_orders(BTC)] == ["bot-sl-0001"]


def test_triggered_stop_finishes_and_its_market_order_can_be_read(
    ex: Any, sim: SimulatedExchange
) -> None:
    _entry(ex)
    _stop(ex, 55000, "bot-sl-0002")
    sim.set_mark(BTC, D(54000))
    algo = ex.fetch_order(None, BTC, {"clientOrderId": "bot-sl-0002", "trigger": True})
    assert (algo["status"], algo["info"]["algoStatus"]) == ("closed", "FINISHED")
    actual = ex.fetch_order(algo["info"]["actualOrderId"], BTC)
    assert (actual["status"], actual["filled"], actual["info"]["origType"]) == (
        "closed",
        0.01,
        "STOP_MARKET",
    )
    assert ex.fetch_positions([BTC]) == []


def test_cancel_stop_by_client_id_then_reuse_the_id(ex: Any, sim: SimulatedExchange) -> None:
    _entry(ex)
    _stop(ex, 55000, "bot-sl-0003")
    with pytest.raises(ccxt.InvalidOrder) as info:  # -4116 among open orders
        _stop(ex, 54000, "bot-sl-0003")
    assert _code(info.value) == -4116
    ex.cancel_order(None, BTC, {"clientOrderId": "bot-sl-0003", "trigger": True})
    cancelled = sim.fetch_order(BTC, "bot-sl-0003")
    assert cancelled is not None
    assert cancelled.status is OrderStatus.CANCELED
    with pytest.raises(ccxt.OrderNotFound) as info:
        ex.cancel_order(None, BTC, {"clientOrderId": "bot-sl-0003", "trigger": True})
    assert _code(info.value) == -2011
    assert _stop(ex, 54000, "bot-sl-0003")["status"] == "open"


def test_stop_market_on_the_order_endpoint_is_rejected_with_4120(
    ex: Any, sim: SimulatedExchange
) -> None:
    params = {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET", "quantity": "0.01"}
    with pytest.raises(ccxt.InvalidOrder) as info:
        ex.fapiPrivatePostOrder({**params, "stopPrice": "55000", "newClientOrderId": "x-1"})
    assert _code(info.value) == -4120
    assert sim.fetch_order(BTC, "x-1") is None


def test_stop_that_would_trigger_at_once_is_rejected(ex: Any) -> None:
    _entry(ex)
    with pytest.raises(ccxt.OrderImmediatelyFillable) as info:
        _stop(ex, 61000)
    assert _code(info.value) == -2021


def test_reduce_only_that_would_increase_is_rejected(ex: Any) -> None:
    with pytest.raises(ccxt.InvalidOrder) as info:
        ex.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})
    assert _code(info.value) == -2022


def test_margin_shortfall_is_insufficient_funds(ex: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds) as info:
        _entry(ex, qty=100)
    assert _code(info.value) == -2019


def test_limit_orders_are_refused_by_the_simulated_backend(ex: Any) -> None:
    with pytest.raises(ccxt.BadRequest) as info:
        ex.create_order(BTC, "limit", "buy", 0.01, 59000, {"timeInForce": "GTC"})
    assert _code(info.value) == -1116


@pytest.mark.parametrize(
    ("params", "code", "error"),
    [
        ({"quantity": "0.0015"}, -1111, ccxt.BadRequest),  # finer than the step
        ({"quantity": "0"}, -4003, ccxt.BadRequest),
        ({"quantity": "0.001"}, -4164, ccxt.InvalidOrder),  # 60 USDT < 100 minimum notional
        ({"type": "LIMIT", "price": "60000.05", "timeInForce": "GTC"}, -1111, ccxt.BadRequest),
        ({"newClientOrderId": "has space"}, -4015, ccxt.BadRequest),
        ({"symbol": "DOGEUSDT"}, -1121, ccxt.BadSymbol),
        ({"positionSide": "LONG"}, -4061, ccxt.OperationRejected),
    ],
)
def test_symbol_filters_and_parameter_checks(
    ex: Any, params: dict[str, str], code: int, error: type[Exception]
) -> None:
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
    with pytest.raises(error) as info:
        ex.fapiPrivatePostOrder({**base, **params})
    assert _code(info.value) == code


@settings(max_examples=20)
@given(steps=st.integers(min_value=2, max_value=500), extra=st.integers(1, 9))
def test_quantities_on_the_step_pass_and_finer_ones_fail(steps: int, extra: int) -> None:
    sim = SimulatedExchange(
        {ETH: _instrument(ETH, "0.01", "5")},
        LiveClock(),
        starting_balance=D(10**7),
        margin_mode=MarginMode.CROSS,
    )
    sim.set_mark(ETH, D(3000))
    with LoopbackBinance(
        sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[ETH]
    ) as server:
        client = _ccxt(server)
        base = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "newOrderRespType": "RESULT"}
        on_step = f"{D(steps) / 1000:.3f}"
        reply = client.fapiPrivatePostOrder({**base, "quantity": on_step})
        assert D(reply["executedQty"]) == D(on_step)
        with pytest.raises(ccxt.BadRequest) as info:
            client.fapiPrivatePostOrder({**base, "quantity": f"{on_step}{extra}"})
        assert _code(info.value) == -1111
        client.close()


def test_unknown_orders_are_order_not_found(ex: Any) -> None:
    with pytest.raises(ccxt.OrderNotFound) as info:
        ex.fetch_order(None, BTC, {"clientOrderId": "nope"})
    assert _code(info.value) == -2013
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, BTC, {"clientOrderId": "nope", "trigger": True})
    filled = _entry(ex)
    with pytest.raises(ccxt.OrderNotFound) as info:  # a filled order cannot be cancelled
        ex.cancel_order(filled["id"], BTC)
    assert _code(info.value) == -2011


# -- authentication and clock --------------------------------------------------------------


def test_bad_signature_and_bad_key_are_authentication_errors(
    server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    for config, code in (({"secret": "wrong-secret"}, -1022), ({"apiKey": "wrong-key"}, -2015)):
        client = _ccxt(server, **config)
        client.load_markets()
        with pytest.raises(ccxt.AuthenticationError) as info:
            client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "bad-1"})
        assert _code(info.value) == code
        client.close()
    assert sim.fetch_order(BTC, "bad-1") is None
    assert [r.status for r in server.calls("/fapi/v1/order")] == [400, 401]


@pytest.mark.parametrize("offset_ms", [20_000, -5_000])
def test_clock_drift_is_invalid_nonce_until_ccxt_resyncs(
    server: LoopbackBinance, offset_ms: int
) -> None:
    server.server_time_offset_ms = offset_ms  # 20 s behind the server, or 5 s ahead of it
    client = _ccxt(server)
    client.load_markets()
    with pytest.raises(ccxt.InvalidNonce) as info:
        client.fetch_balance()
    assert _code(info.value) == -1021
    client.load_time_difference()  # GET /fapi/v1/time, as after an InvalidNonce
    assert client.fetch_balance()["USDT"]["total"] == 10000.0
    client.close()


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("timeout", ccxt.RequestTimeout),
        ("http_500", ccxt.ExchangeNotAvailable),
        ("http_503", ccxt.ExchangeNotAvailable),
        ("rate_limit", ccxt.DDoSProtection),
        ("ip_ban", ccxt.DDoSProtection),  # 418
        ("timestamp", ccxt.InvalidNonce),
    ],
)
def test_faults_that_are_not_processed(
    ex: Any, server: LoopbackBinance, sim: SimulatedExchange, kind: Any, error: type[Exception]
) -> None:
    server.inject(Fault("/fapi/v1/order", kind=kind, retry_after=3))
    with pytest.raises(error):
        _entry(ex, cid="bot-en-fault")
    assert sim.fetch_order(BTC, "bot-en-fault") is None
    if kind in ("rate_limit", "ip_ban"):
        assert ex.last_response_headers["Retry-After"] == "3"
    assert _entry(ex, cid="bot-en-fault")["status"] == "closed"  # the fault was used up
    assert [r.fault for r in server.calls("/fapi/v1/order")] == [kind, None]


def test_accept_then_drop_leaves_exactly_one_order_found_by_client_id(
    ex: Any, server: LoopbackBinance, sim: SimulatedExchange
) -> None:
    server.inject(Fault("/fapi/v1/order", kind="accept_then_drop"))
    with pytest.raises(ccxt.NetworkError):
        _entry(ex, cid="bot-en-drop")
    assert [o.client_id for o in sim.orders.values()] == ["bot-en-drop"]
    assert sim.fetch_positions([BTC])[BTC].qty == D("0.01")
    found = ex.fetch_order(None, BTC, {"clientOrderId": "bot-en-drop"})
    assert (found["status"], found["filled"]) == ("closed", 0.01)
    assert server.calls("/fapi/v1/order", "POST")[0].status is None


def test_fault_matches_method_and_path_and_counts_down(ex: Any, server: LoopbackBinance) -> None:
    server.inject(Fault("/fapi/v3/account", method="GET", kind="http_503", times=2))
    server.inject(Fault("/fapi/v3/account", method="POST", kind="http_500"))
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.fetch_balance()
    assert ex.fetch_balance()["USDT"]["total"] == 10000.0


def test_a_held_request_does_not_block_others(server: LoopbackBinance) -> None:
    server.timeout_hold_s = 0.6
    server.inject(Fault("/fapi/v1/order", kind="timeout"))
    url = server.base_url + "/fapi/v1/order"
    outcome: list[str] = []

    def held() -> None:
        try:
            requests.post(url, timeout=5)
            outcome.append("answered")
        except requests.ConnectionError:
            outcome.append("dropped")

    worker = threading.Thread(target=held)
    worker.start()
    clock = LiveClock()
    started = clock.monotonic()
    while not server.calls("/fapi/v1/order"):  # wait until the held request arrived
        clock.sleep(0.01)
    assert requests.get(server.base_url + "/fapi/v1/time", timeout=1).status_code == 200
    assert clock.monotonic() - started < 0.5  # answered while the other was held
    worker.join()
    assert outcome == ["dropped"]


def test_fault_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault("/fapi/v1/order", kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        Fault("/fapi/v1/order", kind="timeout", times=0)


# -- request log, routing, async ----------------------------------------------------------


def test_request_log_redacts_the_signature_and_holds_no_secret(
    ex: Any, server: LoopbackBinance
) -> None:
    ex.fetch_balance()
    _entry(ex)
    signed = [r for r in server.requests if "signature" in r.params]
    assert len(signed) == 2
    assert {r.params["signature"] for r in signed} == {"<redacted>"}
    text = repr(server.requests)
    assert SECRET not in text
    assert KEY not in text


def test_unimplemented_route_fails_loudly_not_as_a_network_error(ex: Any) -> None:
    with pytest.raises(ccxt.ExchangeError) as info:
        ex.fapiPrivateGetIncome()
    assert not isinstance(info.value, ccxt.OperationFailed)
    assert _code(info.value) == -5000


def test_async_ccxt_works_against_the_same_server(server: LoopbackBinance) -> None:
    async def scenario() -> tuple[float, str]:
        client = ccxt_async.binanceusdm(
            {"apiKey": KEY, "secret": SECRET, "options": {"fetchCurrencies": False}}
        )
        point_ccxt_at(client, server.base_url)
        try:
            await client.load_markets()
            order = await client.create_order(BTC, "market", "buy", 0.01, None)
            with pytest.raises(ccxt.InsufficientFunds):
                await client.create_order(BTC, "market", "buy", 100, None)
            balance = await client.fetch_balance()
            return balance["USDT"]["total"], order["status"]
        finally:
            await client.close()

    total, status = asyncio.run(scenario())
    assert total == pytest.approx(10000 - 0.3)  # taker fee 0.05 % of 600
    assert status == "closed"
