"""The loopback Bybit v5 server, driven by the real ccxt ``bybit`` class over HTTP.

Every test runs ccxt's own request building, ``X-BAPI-*`` signing, HTTP and parsing against
``127.0.0.1``; the server is backed by the project's :class:`SimulatedExchange`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import pytest
import requests

from bot.clock import LiveClock
from bot.domain.enums import ForcedKind, MarginMode, OrderStatus
from bot.domain.instrument import Bracket, Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import ForcedClose
from bot.sim.exchange import SimulatedExchange

from .bybit_loopback import Fault, LoopbackBybit, point_ccxt_at

KEY, SECRET = "bybit-key-91c2", "bybit-secret-4e7a10"
BTC = "BTC/USDT:USDT"
D = Decimal
H = 3_600_000


def _instrument() -> Instrument:
    brackets = (
        Bracket(D(0), D(2000000), D(100), D("0.005"), D(0)),
        Bracket(D(2000000), D(4000000), D("97.5"), D("0.0075"), D(5000)),
    )
    return Instrument(
        BTC, "BTC", "USDT", D("0.1"), D("0.001"), D("0.001"), D(5), brackets,
        D("0.0002"), D("0.00055"), D("0.00055"),
    )  # fmt: skip


@pytest.fixture
def sim() -> SimulatedExchange:
    ex = SimulatedExchange(
        {BTC: _instrument()}, LiveClock(), starting_balance=D(10000), margin_mode=MarginMode.CROSS
    )
    ex.set_mark(BTC, D(60000))
    ex.set_funding(BTC, FundingInfo(D("0.0001"), D(8), 1_900_000_000_000))
    return ex


@pytest.fixture
def server(sim: SimulatedExchange) -> Iterator[LoopbackBybit]:
    srv = LoopbackBybit(sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    srv.timeout_hold_s = 1.5
    with srv:
        yield srv
    assert srv.errors == []


def client(server: LoopbackBybit, key: str = KEY, secret: str = SECRET) -> Any:
    ex = ccxt.bybit(
        {
            "apiKey": key,
            "secret": secret,
            "enableRateLimit": False,
            "timeout": 1000,
            "options": {"fetchCurrencies": False},
        }
    )
    ex.has["fetchCurrencies"] = False
    point_ccxt_at(ex, server.base_url)
    return ex


@pytest.fixture
def ex(server: LoopbackBybit) -> Any:
    exchange = client(server)
    exchange.load_markets()
    return exchange


def stop_params(link: str, **extra: Any) -> dict[str, Any]:
    return {"clientOrderId": link, "stopLossPrice": 55000, "triggerBy": "MarkPrice", **extra}


# -- signing and time ------------------------------------------------------------------------


def test_markets_come_from_instruments_info(ex: Any) -> None:
    market = ex.market(BTC)
    assert (market["id"], market["linear"], market["swap"]) == ("BTCUSDT", True, True)
    assert (market["precision"]["amount"], market["precision"]["price"]) == (0.001, 0.1)
    assert market["limits"]["cost"]["min"] == 5
    assert market["limits"]["leverage"]["max"] == 100


def test_instruments_info_filters_by_the_documented_statuses(
    ex: Any, server: LoopbackBybit
) -> None:
    """Trading contracts only unless a ``status`` is given; the filter takes one of the
    documented statuses (https://bybit-exchange.github.io/docs/v5/enum#status)."""

    def listed(status: str | None) -> list[str]:
        params = {"category": "linear"} | ({"status": status} if status else {})
        reply = ex.publicGetV5MarketInstrumentsInfo(params)
        return [row["symbol"] for row in reply["result"]["list"]]

    assert listed(None) == ["BTCUSDT"]
    server.market_status[BTC] = "Delivering"
    assert listed(None) == []
    assert listed("Delivering") == ["BTCUSDT"]
    assert listed("Closed") == []
    with pytest.raises(ccxt.BadRequest, match="10001"):
        listed("Settling")


def test_a_delisted_contract_is_listed_at_no_status_and_unknown_to_every_request(
    ex: Any, server: LoopbackBybit
) -> None:
    """The venue no longer lists it at all: no instruments-info row whatever the status asked,
    and the linear category's parameter error to any request naming it (10001 "params error:
    symbol invalid", which ccxt raises as a plain BadRequest)."""
    server.delisted.add(BTC)
    for status in (None, "Trading", "Delivering", "Closed"):
        params = {"category": "linear"} | ({"status": status} if status else {})
        assert ex.publicGetV5MarketInstrumentsInfo(params)["result"]["list"] == []
    with pytest.raises(ccxt.BadRequest, match=r"10001.*symbol invalid"):
        ex.fetch_open_orders(BTC)
    with pytest.raises(ccxt.BadRequest, match=r"10001.*symbol invalid"):
        ex.fetch_funding_rate(BTC)
    with pytest.raises(ccxt.BadRequest, match=r"10001.*symbol invalid"):
        ex.privateGetV5PositionList({"category": "linear", "symbol": "BTCUSDT"})
    rows = ex.privateGetV5PositionList({"category": "linear", "settleCoin": "USDT"})
    assert rows["result"]["list"] == []


def test_wrong_key_and_wrong_secret_are_authentication_errors(server: LoopbackBybit) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="10003"):
        client(server, key="other-key").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="10004"):
        client(server, secret="other-secret").fetch_balance()


def test_tampered_body_fails_the_signature(server: LoopbackBybit) -> None:
    ts, window = str(LiveClock().now_ms()), "5000"
    signed = json.dumps({"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "2"})
    sign = hmac.new(SECRET.encode(), (ts + KEY + window + signed).encode(), hashlib.sha256)
    headers = {
        "X-BAPI-API-KEY": KEY,
        "X-BAPI-TIMESTAMP": ts,
        "X-BAPI-RECV-WINDOW": window,
        "X-BAPI-SIGN": sign.hexdigest(),
        "Content-Type": "application/json",
    }
    url = server.base_url + "/v5/position/set-leverage"
    sent = signed.replace('"2"', '"20"')
    reply = requests.post(url, data=sent, headers=headers, timeout=5).json()
    assert reply["retCode"] == 10004
    ok = requests.post(url, data=signed, headers=headers, timeout=5).json()
    assert ok["retCode"] == 10001  # signature fine; sellLeverage is missing


def test_timestamp_outside_recv_window_is_invalid_nonce(ex: Any, server: LoopbackBybit) -> None:
    server.server_time_offset_ms = -30_000
    with pytest.raises(ccxt.InvalidNonce, match="10002"):
        ex.fetch_balance()
    server.server_time_offset_ms = 0
    assert ex.fetch_balance()["USDT"]["total"] == 10000


# -- settings: "not modified" ----------------------------------------------------------------


def test_not_modified_settings_have_their_codes(ex: Any, server: LoopbackBybit) -> None:
    ex.set_leverage(5, BTC)
    with pytest.raises(ccxt.BadRequest, match="110043"):
        ex.set_leverage(5, BTC)
    with pytest.raises(ccxt.NoChange, match="110025"):
        ex.set_position_mode(False, BTC)
    with pytest.raises(ccxt.PermissionDenied, match="100028"):  # unified account
        ex.privatePostV5PositionSwitchIsolated(
            {"category": "linear", "symbol": "BTCUSDT", "tradeMode": 1}
        )
    server.unified_margin_status = 1  # a classic account switches per symbol
    body = {"category": "linear", "symbol": "BTCUSDT", "tradeMode": 1, "buyLeverage": "5"}
    ex.privatePostV5PositionSwitchIsolated(body)
    with pytest.raises(ccxt.MarginModeAlreadySet, match="110026"):
        ex.privatePostV5PositionSwitchIsolated(body)


def test_position_mode_is_kept_per_symbol_and_per_coin(ex: Any, server: LoopbackBybit) -> None:
    ex.set_position_mode(True, BTC)  # by symbol
    assert server.hedged(BTC)
    rows = ex.fetch_positions([BTC])
    assert sorted((r["hedged"], r["side"]) for r in rows) == [(True, "long"), (True, "short")]
    with pytest.raises(ccxt.BadRequest, match="position idx not match"):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-h"})
    ex.set_position_mode(False)  # by coin: every symbol one-way
    assert not server.hedged(BTC)
    [row] = ex.fetch_positions([BTC])
    assert row["hedged"] is False


def test_margin_mode_is_account_wide(ex: Any, sim: SimulatedExchange) -> None:
    assert ex.fetch_margin_mode(BTC)["marginMode"] == "cross"
    ex.set_margin_mode("isolated", BTC)
    assert ex.fetch_margin_mode(BTC)["marginMode"] == "isolated"
    assert sim.book.margin_mode is MarginMode.ISOLATED
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    with pytest.raises(ccxt.ExchangeError, match="3400045"):
        ex.set_margin_mode("cross", BTC)  # not with a position open


# -- orders ----------------------------------------------------------------------------------


def test_duplicate_order_link_id_is_110072_even_when_filled(ex: Any) -> None:
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="110072"):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "dup-1"})


def test_trigger_direction_is_checked_against_the_mark(ex: Any) -> None:
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    with pytest.raises(ccxt.InvalidOrder, match="110093"):  # a falling stop above the mark
        ex.create_order(BTC, "market", "sell", 0.01, None, {**stop_params("s-1"),
                                                            "stopLossPrice": 61000})  # fmt: skip
    with pytest.raises(ccxt.InvalidOrder, match="110092"):  # a rising take-profit below it
        ex.create_order(BTC, "market", "sell", 0.01, None,
                        {"clientOrderId": "t-1", "takeProfitPrice": 59000})  # fmt: skip


def test_at_most_ten_conditional_orders_per_symbol(ex: Any) -> None:
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    for n in range(10):
        ex.create_order(BTC, "market", "sell", 0.001, None, stop_params(f"s-{n}"))
    with pytest.raises(ccxt.InvalidOrder, match="110009"):
        ex.create_order(BTC, "market", "sell", 0.001, None, stop_params("s-10"))


def test_mark_triggered_stop_fills_and_books_closed_pnl(
    ex: Any, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    ex.create_order(BTC, "market", "sell", 0.01, None, stop_params("s-1"))
    [resting] = ex.fetch_open_orders(BTC, None, None, {"trigger": True})
    info = resting["info"]
    assert (info["orderStatus"], info["triggerBy"], info["triggerDirection"]) == (
        "Untriggered",
        "MarkPrice",
        2,
    )
    assert resting["stopLossPrice"] == 55000
    with server.lock:
        sim.set_mark(BTC, D(54000))
    assert sim.fetch_positions([BTC]) == {}
    [done] = ex.fetch_open_orders(BTC, None, None, {"orderLinkId": "s-1", "trigger": True})
    assert (done["status"], done["info"]["orderStatus"]) == ("closed", "Filled")
    pnl = ex.privateGetV5PositionClosedPnl({"category": "linear", "symbol": "BTCUSDT"})
    [row] = pnl["result"]["list"]
    assert (row["side"], row["closedSize"], row["avgEntryPrice"]) == ("Sell", "0.01", "60000")
    assert D(row["closedPnl"]) == (D(row["avgExitPrice"]) - D(60000)) * D("0.01")


def test_close_on_trigger_with_qty_zero_closes_the_position(
    ex: Any, sim: SimulatedExchange
) -> None:
    ex.create_order(BTC, "market", "buy", 0.02, None, {"clientOrderId": "e-1"})
    body = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Sell",
        "orderType": "Market",
        "qty": "0",
        "reduceOnly": True,
        "closeOnTrigger": True,
        "triggerPrice": "55000",
        "triggerDirection": 2,
        "triggerBy": "MarkPrice",
        "orderLinkId": "close-1",
    }
    ex.privatePostV5OrderCreate(body)
    order = sim.fetch_order(BTC, "close-1")
    assert order is not None
    assert (order.close_position, order.amount) == (True, None)
    with pytest.raises(ccxt.InvalidOrder, match="110072"):
        ex.privatePostV5OrderCreate(body)


def test_amend_keeps_the_order_id_and_moves_the_trigger(
    ex: Any, server: LoopbackBybit, sim: SimulatedExchange
) -> None:
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    placed = ex.create_order(BTC, "market", "sell", 0.01, None, stop_params("s-1"))
    ex.edit_order(placed["id"], BTC, "market", "sell", None, None, {"triggerPrice": 56000})
    [resting] = ex.fetch_open_orders(BTC, None, None, {"trigger": True})
    assert (resting["id"], resting["clientOrderId"]) == (placed["id"], "s-1")
    assert resting["triggerPrice"] == 56000
    assert [o.trigger_price for o in sim.fetch_open_orders(BTC)] == [D(56000)]
    with pytest.raises(ccxt.BadRequest, match="10001"):  # nothing to change
        ex.edit_order(placed["id"], BTC, "market", "sell", None, None, {"triggerPrice": 56000})


def test_cancel_unknown_or_finished_order_is_110001(ex: Any) -> None:
    with pytest.raises(ccxt.OrderNotFound, match="110001"):
        ex.cancel_order(None, BTC, {"orderLinkId": "never"})
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    with pytest.raises(ccxt.OrderNotFound, match="110001"):
        ex.cancel_order(None, BTC, {"orderLinkId": "e-1"})  # filled


def test_history_lists_finished_orders_by_link_id(ex: Any) -> None:
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    ex.create_order(BTC, "market", "sell", 0.01, None, stop_params("s-1"))
    ex.cancel_order(None, BTC, {"orderLinkId": "s-1"})
    reply = ex.privateGetV5OrderHistory({"category": "linear", "symbol": "BTCUSDT"})
    statuses = {r["orderLinkId"]: r["orderStatus"] for r in reply["result"]["list"]}
    assert statuses == {"e-1": "Filled", "s-1": "Deactivated"}
    only = ex.privateGetV5OrderHistory(
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "s-1"}
    )
    assert [r["orderLinkId"] for r in only["result"]["list"]] == ["s-1"]


def test_trading_stop_full_and_partial(ex: Any, sim: SimulatedExchange) -> None:
    ex.create_order(BTC, "market", "buy", 0.02, None, {"clientOrderId": "e-1"})
    base = {"category": "linear", "symbol": "BTCUSDT", "positionIdx": 0}
    ex.privatePostV5PositionTradingStop({**base, "stopLoss": "55000", "slTriggerBy": "MarkPrice"})
    ex.privatePostV5PositionTradingStop({**base, "stopLoss": "54000"})  # replaces the first
    ex.privatePostV5PositionTradingStop(
        {**base, "tpslMode": "Partial", "takeProfit": "70000", "tpSize": "0.01"}
    )
    rows = ex.privateGetV5OrderRealtime({**base, "orderFilter": "tpslOrder"})["result"]["list"]
    kinds = sorted((r["stopOrderType"], r["triggerPrice"], r["qty"]) for r in rows)
    assert kinds == [("PartialTakeProfit", "70000", "0.01"), ("StopLoss", "54000", "0")]
    resting = sorted((o.close_position, o.trigger_price) for o in sim.fetch_open_orders(BTC))
    assert resting == [(False, D(70000)), (True, D(54000))]
    ex.privatePostV5PositionTradingStop({**base, "stopLoss": "0"})  # cancels the full SL
    assert [o.trigger_price for o in sim.fetch_open_orders(BTC)] == [D(70000)]


def test_positions_balance_and_leverage(ex: Any, sim: SimulatedExchange) -> None:
    flat = ex.fetch_position(BTC)
    assert (flat["contracts"], flat["hedged"], flat["leverage"]) == (0.0, False, 1.0)
    ex.set_leverage(4, BTC)
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    [pos] = ex.fetch_positions([BTC])
    assert (pos["side"], pos["contracts"], pos["leverage"]) == ("long", 0.01, 4.0)
    assert pos["entryPrice"] == 60000
    balance = ex.fetch_balance()
    assert balance["USDT"]["total"] == float(sim.fetch_balance().wallet)
    assert balance["USDT"]["free"] == float(sim.fetch_balance().available or "nan")


# -- market data -----------------------------------------------------------------------------


def test_klines_and_funding_history(ex: Any, server: LoopbackBybit) -> None:
    now = LiveClock().now_ms()
    current = now - now % H
    rows = [(current - k * H, D(100), D(110), D(90), D(105 + k), D(2)) for k in (2, 1, 0)]
    server.set_candles(BTC, "trade", rows)
    server.set_candles(BTC, "mark", rows)
    raw = ex.publicGetV5MarketKline({"category": "linear", "symbol": "BTCUSDT", "interval": "60"})
    assert [int(r[0]) for r in raw["result"]["list"]] == [current, current - H, current - 2 * H]
    assert [c[0] for c in ex.fetch_ohlcv(BTC, "1h", None, 2)] == [current - H, current]
    assert ex.fetch_mark_ohlcv(BTC, "1h", None, 1)[0][4] == 105
    with pytest.raises(ccxt.BadRequest, match="10001"):
        ex.fetch_ohlcv(BTC, "2d")  # no such Bybit interval reaches the server as "2d"
    settlements = [(1_700_000_000_000 + i * 8 * H, D("0.0001") * (i + 1)) for i in range(3)]
    server.set_funding_history(BTC, settlements)
    history = ex.fetch_funding_rate_history(BTC, 1_700_000_000_000)
    assert [(h["timestamp"], h["fundingRate"]) for h in history] == [
        (ts, float(rate)) for ts, rate in settlements
    ]
    with pytest.raises(ccxt.BadRequest, match="endTime"):
        ex.publicGetV5MarketFundingHistory(
            {"category": "linear", "symbol": "BTCUSDT", "startTime": 1_700_000_000_000}
        )


def test_executions_answer_bybits_seven_day_window(
    ex: Any, sim: SimulatedExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start alone answers "range between startTime and startTime+7 days"; an end alone, the
    7 days before it; neither, the last 7 days; both more than 7 days apart, a params error
    (https://bybit-exchange.github.io/docs/v5/order/execution)."""
    day, now = 86_400_000, LiveClock().now_ms()
    times = [now - 9 * day, now - H]
    closes = [ForcedClose(BTC, ForcedKind.LIQUIDATION, D("0.001"), t) for t in times]
    monkeypatch.setattr(
        sim, "fetch_forced_closes", lambda s, since: [c for c in closes if c.timestamp_ms >= since]
    )

    def read(**window: int) -> list[int]:
        raw = ex.privateGetV5ExecutionList({"category": "linear", "symbol": "BTCUSDT", **window})
        return [int(r["execTime"]) for r in raw["result"]["list"]]

    assert read() == [times[1]]
    assert read(startTime=now - 10 * day) == [times[0]]
    assert read(endTime=now - 8 * day) == [times[0]]
    assert read(startTime=now - 7 * day, endTime=now) == [times[1]]
    with pytest.raises(ccxt.BadRequest, match="10001"):
        read(startTime=now - 10 * day, endTime=now)


def test_risk_limits_are_the_brackets(ex: Any) -> None:
    [first, second] = ex.fetch_leverage_tiers([BTC])[BTC]
    assert (first["minNotional"], first["maxNotional"], first["maxLeverage"]) == (0, 2e6, 100)
    assert (second["maintenanceMarginRate"], second["info"]["mmDeduction"]) == (0.0075, "5000")


# -- faults ----------------------------------------------------------------------------------


def test_faults_reach_ccxt_as_their_classes(ex: Any, server: LoopbackBybit) -> None:
    server.inject(Fault("/v5/account/wallet-balance", "GET", kind="http_503"))
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_balance()
    server.inject(Fault("/v5/order/create", kind="rate_limit"))
    with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    server.inject(Fault("/v5/order/create", kind="accept_then_drop"))
    with pytest.raises(ccxt.NetworkError):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-2"})
    server.inject(Fault("/v5/order/create", kind="timeout"))
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-3"})
    assert [o.client_id for o in server.backend.fetch_open_orders(BTC)] == []
    filled = {r.params["orderLinkId"]: r.fault for r in server.calls("/v5/order/create")}
    assert filled == {"e-1": "rate_limit", "e-2": "accept_then_drop", "e-3": "timeout"}


def test_an_ip_ban_is_a_403_that_names_no_end(ex: Any, server: LoopbackBybit) -> None:
    server.ban_ip(times=1)
    before = len(server.requests)
    with pytest.raises(ccxt.RateLimitExceeded, match="403"):
        ex.fetch_balance()
    assert not any(k.lower().startswith("x-bapi") for k in ex.last_response_headers)
    assert "retry-after" not in {k.lower() for k in ex.last_response_headers}
    assert [(r.status, r.fault) for r in server.requests[before:]] == [(403, "ip_ban")]
    server.clear_faults()
    ex.fetch_balance()  # answered again


def test_unknown_route_is_loud(ex: Any, server: LoopbackBybit) -> None:
    with pytest.raises(ccxt.ExchangeError, match="not implemented"):
        ex.privateGetV5AssetTransferQueryAssetInfo()
    assert server.requests[-1].code == 10017


def test_order_status_after_fill_is_closed(ex: Any, sim: SimulatedExchange) -> None:
    placed = ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-1"})
    assert placed["id"]
    assert placed["clientOrderId"] == "e-1"
    [found] = ex.fetch_open_orders(BTC, None, None, {"orderLinkId": "e-1"})
    assert (found["status"], found["filled"], found["average"]) == ("closed", 0.01, 60000)
    assert sim.fetch_order(BTC, "e-1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_async_ccxt_works_against_the_same_server(server: LoopbackBybit) -> None:
    async def scenario() -> tuple[float, str]:
        client = ccxt_async.bybit(
            {
                "apiKey": KEY,
                "secret": SECRET,
                "enableRateLimit": False,
                "options": {"fetchCurrencies": False},
            }
        )
        client.has["fetchCurrencies"] = False
        point_ccxt_at(client, server.base_url)
        try:
            balance = await client.fetch_balance()
            await client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "a-1"})
            [order] = await client.fetch_open_orders(BTC, None, None, {"orderLinkId": "a-1"})
            return balance["USDT"]["total"], order["status"]
        finally:
            await client.close()

    assert asyncio.run(scenario()) == (10000, "closed")
