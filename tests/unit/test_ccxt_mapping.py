"""ccxt dicts -> domain types (bot.exchange.mapping), from hand-written fixtures of ccxt's shapes.

Fixtures follow what ccxt 4.5.90 returns for Binance USD-M and Bybit (see
/work/shared/notes/exchange-facts.md §3.5-§4.5): unified keys plus the raw answer in ``info``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot.domain.enums import (
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TriggerBy,
)
from bot.domain.margin import maintenance_margin
from bot.domain.orders import OrderRequest
from bot.errors import NotSupported
from bot.exchange import ccxt_orders, mapping
from bot.exchange.capabilities import BINANCE_USDM, BYBIT
from bot.exchange.mapping import Candle, UnexpectedResponse

SYM = "BTC/USDT:USDT"
H = 3_600_000


def binance_market(**over: Any) -> dict[str, Any]:
    market: dict[str, Any] = {
        "id": "BTCUSDT",
        "symbol": SYM,
        "base": "BTC",
        "quote": "USDT",
        "settle": "USDT",
        "type": "swap",
        "swap": True,
        "linear": True,
        "contract": True,
        "contractSize": 1.0,
        "taker": 0.0005,
        "maker": 0.0002,
        "precision": {"amount": 0.001, "price": 0.1},
        "limits": {
            "amount": {"min": 0.001, "max": 1000.0},
            "price": {"min": 556.8, "max": 4529764.0},
            "cost": {"min": 100.0, "max": None},
        },
        "info": {"symbol": "BTCUSDT", "liquidationFee": "0.012500"},
    }
    market.update(over)
    return market


def binance_tiers(with_cum: bool = True) -> list[dict[str, Any]]:
    rows = [
        (1, 0.0, 50000.0, 0.004, 125.0, 0.0),
        (2, 50000.0, 500000.0, 0.005, 100.0, 50.0),
        (3, 500000.0, 8000000.0, 0.01, 50.0, 2550.0),
    ]
    out = []
    for tier, lo, hi, mmr, lev, cum in rows:
        info: dict[str, Any] = {
            "bracket": tier,
            "initialLeverage": lev,
            "notionalCap": hi,
            "notionalFloor": lo,
            "maintMarginRatio": mmr,
        }
        if with_cum:
            info["cum"] = cum
        out.append(
            {
                "tier": float(tier),
                "symbol": SYM,
                "currency": "USDT",
                "minNotional": lo,
                "maxNotional": hi,
                "maintenanceMarginRate": mmr,
                "maxLeverage": lev,
                "info": info,
            }
        )
    return out


# -- numbers and client ids ------------------------------------------------------------------


def test_to_decimal_goes_through_str_not_binary_float() -> None:
    assert mapping.to_decimal(0.1, "x") == Decimal("0.1")
    assert mapping.to_decimal("65000.10", "x") == Decimal("65000.10")


@pytest.mark.parametrize("bad", [None, True, "abc", float("nan"), "inf"])
def test_to_decimal_names_the_field_and_value(bad: object) -> None:
    with pytest.raises(UnexpectedResponse, match=r"BTC/USDT:USDT markPrice: expected"):
        mapping.to_decimal(bad, "BTC/USDT:USDT markPrice")


def test_positive_or_none_treats_zero_as_unknown() -> None:
    assert mapping.positive_or_none("0", "liq") is None
    assert mapping.positive_or_none(None, "liq") is None
    assert mapping.positive_or_none("30123.4", "liq") == Decimal("30123.4")


@pytest.mark.parametrize(
    ("cid", "purpose"),
    [
        ("acct1-sl-BTC-s8xk2-0", OrderPurpose.STOP_LOSS),
        ("acct1-tp-BTC-s8xk2-1", OrderPurpose.TAKE_PROFIT),
        ("acct1-en-BTC-s8xk2-0", OrderPurpose.ENTRY),
        ("acct1-rd-ETH-s8xk2-0", OrderPurpose.REDUCE),
        ("acct1-cl-ETH-s8xk2-0", OrderPurpose.CLOSE),
        ("x-cvBPrNm9ad2a0e1f2b3c4d5e6f7a8b", None),  # ccxt's generated id
        ("web_12345", None),
        ("acct1-zz-BTC-1-0", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_purpose_generic(cid: str | None, purpose: OrderPurpose | None) -> None:
    assert mapping.parse_purpose(cid) is purpose


def test_parse_purpose_with_account_rejects_other_prefixes() -> None:
    assert mapping.parse_purpose("acct1-sl-BTC-1-0", "acct1") is OrderPurpose.STOP_LOSS
    assert mapping.parse_purpose("other-sl-BTC-1-0", "acct1") is None


# -- instruments -----------------------------------------------------------------------------


def test_instrument_from_binance_market_and_tiers() -> None:
    inst = mapping.instrument_from_market(
        binance_market(),
        binance_tiers(),
        liquidation_fee=BINANCE_USDM.liquidation_fee,
        liquidation_fee_key=BINANCE_USDM.liquidation_fee_key,
    )
    assert (inst.symbol, inst.base, inst.quote) == (SYM, "BTC", "USDT")
    assert inst.tick_size == Decimal("0.1")
    assert inst.step_size == Decimal("0.001")
    assert inst.min_qty == Decimal("0.001")
    assert inst.min_notional == Decimal("100")
    assert (inst.taker_fee, inst.maker_fee) == (Decimal("0.0005"), Decimal("0.0002"))
    assert inst.liquidation_fee == Decimal("0.0125")
    assert inst.max_leverage == Decimal("125")
    assert [b.maint_amount for b in inst.brackets] == [Decimal(0), Decimal(50), Decimal(2550)]
    assert inst.brackets[1].notional_floor == Decimal(50000)


def test_maintenance_margin_uses_cum_unlike_ccxt_position() -> None:
    # ccxt's position maintenanceMargin is rate x notional = 291.52; Binance says 241.52.
    inst = mapping.instrument_from_market(
        binance_market(), binance_tiers(), liquidation_fee=Decimal(0)
    )
    assert maintenance_margin(inst, Decimal("58304")) == Decimal("241.52")


def test_missing_cum_is_derived_to_keep_maintenance_margin_continuous() -> None:
    derived = mapping.brackets_from_tiers(SYM, binance_tiers(with_cum=False))
    assert [b.maint_amount for b in derived] == [Decimal(0), Decimal(50), Decimal(2550)]


def test_tiers_are_sorted_by_floor() -> None:
    brackets = mapping.brackets_from_tiers(SYM, list(reversed(binance_tiers())))
    assert [b.notional_floor for b in brackets] == [Decimal(0), Decimal(50000), Decimal(500000)]


def test_default_liquidation_fee_when_market_has_none() -> None:
    market = binance_market(info={"symbol": "BTCUSDT"})
    inst = mapping.instrument_from_market(
        market,
        binance_tiers(),
        liquidation_fee=Decimal("0.0125"),
        liquidation_fee_key="liquidationFee",
    )
    assert inst.liquidation_fee == Decimal("0.0125")
    bybit = mapping.instrument_from_market(
        market, binance_tiers(), liquidation_fee=BYBIT.liquidation_fee, liquidation_fee_key=None
    )
    assert bybit.liquidation_fee == Decimal("0.00055")


def test_decimal_places_precision_mode() -> None:
    market = binance_market(precision={"amount": 3, "price": 1})
    inst = mapping.instrument_from_market(
        market, binance_tiers(), liquidation_fee=Decimal(0), precision_is_digits=True
    )
    assert (inst.step_size, inst.tick_size) == (Decimal("0.001"), Decimal("0.1"))


def test_contract_size_other_than_one_is_not_supported() -> None:
    with pytest.raises(NotSupported, match=r"BTC/USDT:USDT: amounts are contracts of 0.01"):
        mapping.instrument_from_market(
            binance_market(contractSize=0.01), binance_tiers(), liquidation_fee=Decimal(0)
        )


def test_inverse_or_spot_market_is_not_supported() -> None:
    with pytest.raises(NotSupported, match="linear perpetual"):
        mapping.instrument_from_market(
            binance_market(linear=False, inverse=True), binance_tiers(), liquidation_fee=Decimal(0)
        )


def test_no_tiers_is_an_error_naming_the_symbol() -> None:
    with pytest.raises(UnexpectedResponse, match="BTC/USDT:USDT: the exchange returned no"):
        mapping.instrument_from_market(binance_market(), [], liquidation_fee=Decimal(0))


# -- orders ----------------------------------------------------------------------------------


def binance_market_fill() -> dict[str, Any]:
    return {
        "id": "1002",
        "clientOrderId": "acct1-en-BTC-s8xk2-0",
        "timestamp": 1700000000000,
        "symbol": SYM,
        "type": "market",
        "side": "buy",
        "price": 0.0,
        "triggerPrice": None,
        "takeProfitPrice": None,
        "stopLossPrice": None,
        "amount": 0.01,
        "filled": 0.01,
        "average": 60012.3,
        "status": "closed",
        "reduceOnly": False,
        "info": {
            "orderId": 1002,
            "clientOrderId": "acct1-en-BTC-s8xk2-0",
            "status": "FILLED",
            "type": "MARKET",
            "origType": "MARKET",
            "closePosition": False,
        },
    }


def binance_algo_stop(
    cid: str = "acct1-sl-BTC-s8xk2-1", order_type: str = "STOP_MARKET"
) -> dict[str, Any]:
    # ccxt parses an algo order: clientOrderId from clientAlgoId, type 'market', triggerPrice
    return {
        "id": "3358",
        "clientOrderId": cid,
        "timestamp": 1700000000500,
        "symbol": SYM,
        "type": "market",
        "side": "sell",
        "price": 0.0,
        "triggerPrice": 55000.0,
        "takeProfitPrice": 70000.0 if order_type.startswith("TAKE") else None,
        "stopLossPrice": None,
        "amount": 0.01,
        "filled": 0.0,
        "average": None,
        "status": "open",
        "reduceOnly": True,
        "info": {
            "algoId": 3358,
            "clientAlgoId": cid,
            "algoType": "CONDITIONAL",
            "orderType": order_type,
            "algoStatus": "NEW",
            "triggerPrice": "55000",
            "closePosition": False,
            "workingType": "MARK_PRICE",
        },
    }


def test_binance_market_fill() -> None:
    order = ccxt_orders.order_from_ccxt(binance_market_fill())
    assert order.client_id == "acct1-en-BTC-s8xk2-0"
    assert order.exchange_id == "1002"
    assert (order.type, order.side, order.status) == (
        OrderType.MARKET,
        OrderSide.BUY,
        OrderStatus.FILLED,
    )
    assert order.purpose is OrderPurpose.ENTRY
    assert (order.amount, order.filled) == (Decimal("0.01"), Decimal("0.01"))
    assert order.average_price == Decimal("60012.3")
    assert order.price is None  # Binance sends "0" for a market order
    assert order.timestamp_ms == 1700000000000


def test_binance_algo_stop_keeps_client_algo_id_and_type() -> None:
    raw = binance_algo_stop()
    raw["clientOrderId"] = None  # only the raw clientAlgoId carries it
    order = ccxt_orders.order_from_ccxt(raw)
    assert order.client_id == "acct1-sl-BTC-s8xk2-1"
    assert order.type is OrderType.STOP_MARKET
    assert order.purpose is OrderPurpose.STOP_LOSS
    assert order.trigger_price == Decimal("55000")
    assert order.status is OrderStatus.OPEN
    assert order.reduce_only is True


def test_binance_algo_take_profit_type_comes_from_raw_order_type() -> None:
    order = ccxt_orders.order_from_ccxt(binance_algo_stop("foreign-1", "TAKE_PROFIT_MARKET"))
    assert order.type is OrderType.TAKE_PROFIT_MARKET
    assert order.purpose is None


def test_close_position_flag_read_from_raw() -> None:
    raw = binance_algo_stop()
    raw["info"]["closePosition"] = True
    raw["amount"] = None
    order = ccxt_orders.order_from_ccxt(raw)
    assert order.close_position is True
    assert order.amount is None


def test_bybit_plain_conditional_order_type_comes_from_our_purpose() -> None:
    raw: dict[str, Any] = {
        "id": "5c9f",
        "clientOrderId": "acct1-tp-BTC-s8xk2-2",
        "symbol": SYM,
        "type": "market",
        "side": "sell",
        "triggerPrice": 70000.0,
        "amount": 0.01,
        "filled": 0.0,
        "status": "open",
        "reduceOnly": True,
        "info": {
            "orderLinkId": "acct1-tp-BTC-s8xk2-2",
            "orderType": "Market",
            "stopOrderType": "Stop",
        },
    }
    assert ccxt_orders.order_from_ccxt(raw).type is OrderType.TAKE_PROFIT_MARKET
    raw["clientOrderId"] = raw["info"]["orderLinkId"] = "acct1-sl-BTC-s8xk2-2"
    assert ccxt_orders.order_from_ccxt(raw).type is OrderType.STOP_MARKET


def test_bybit_close_on_trigger_with_a_quantity_is_a_sized_stop() -> None:
    """closeOnTrigger trims a sized order to the position at trigger time; it does not make a
    stop of 0.1 protect a position of 0.3. Only without a quantity (a whole-position TP/SL,
    qty "0") does it close the whole position."""
    raw: dict[str, Any] = {
        "id": "7a1e",
        "clientOrderId": "",
        "symbol": SYM,
        "type": "market",
        "side": "sell",
        "triggerPrice": 55000.0,
        "amount": 0.1,
        "filled": 0.0,
        "status": "open",
        "reduceOnly": True,
        "info": {"orderLinkId": "", "orderType": "Market", "closeOnTrigger": True},
    }
    sized = ccxt_orders.order_from_ccxt(raw)
    assert (sized.close_position, sized.amount) == (False, Decimal("0.1"))
    raw["amount"] = 0.0
    whole = ccxt_orders.order_from_ccxt(raw)
    assert (whole.close_position, whole.amount) == (True, None)


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        (True, True),
        (False, False),
        ("true", True),  # (the string, should a reply carry one)
        ("False", False),
        ("missing", None),  # the row does not say: unknown, not "without it"
        (None, None),
        (0, None),
        ("", None),
        ("yes", None),
    ],
    ids=["true", "false", "text true", "text False", "missing", "null", "0", "empty", "yes"],
)
def test_bybit_close_on_trigger_is_read_back_as_the_venue_says_it(
    value: object, flag: bool | None
) -> None:
    """Whether an order carries the profile's closing params (Bybit closeOnTrigger, a JSON
    boolean in its order rows) is read back, for the engine to replace an older version's
    stops placed without it; a field missing or garbled is unknown (None). A venue whose
    profile sends none (Binance) carries None whatever the row says."""
    info: dict[str, Any] = {"orderLinkId": "acct1-sl-BTC-s8xk2-2", "orderType": "Market"}
    if value != "missing":
        info["closeOnTrigger"] = value
    raw: dict[str, Any] = {
        "id": "7a1e",
        "clientOrderId": "acct1-sl-BTC-s8xk2-2",
        "symbol": SYM,
        "type": "market",
        "side": "sell",
        "triggerPrice": 55000.0,
        "amount": 0.1,
        "filled": 0.0,
        "status": "open",
        "reduceOnly": True,
        "info": info,
    }
    bybit = ccxt_orders.order_from_ccxt(raw, closing_params=BYBIT.closing_trigger_params)
    assert bybit.close_on_trigger is flag
    binance = BINANCE_USDM.closing_trigger_params
    assert ccxt_orders.order_from_ccxt(raw, closing_params=binance).close_on_trigger is None
    assert ccxt_orders.order_from_ccxt(raw).close_on_trigger is None
    entry = {**raw, "triggerPrice": None, "clientOrderId": "", "info": {**info, "orderLinkId": ""}}
    # an order without a trigger: no conditional order, no flag to say
    assert (
        ccxt_orders.order_from_ccxt(
            entry, closing_params=BYBIT.closing_trigger_params
        ).close_on_trigger
        is None
    )


@pytest.mark.parametrize(
    ("ccxt_status", "status"),
    [
        ("open", OrderStatus.OPEN),
        ("canceling", OrderStatus.OPEN),  # Binance PENDING_CANCEL: resting until cancelled
        ("closed", OrderStatus.FILLED),
        ("canceled", OrderStatus.CANCELED),
        ("expired", OrderStatus.CANCELED),
        ("rejected", OrderStatus.REJECTED),
        (None, OrderStatus.UNKNOWN),
    ],
)
def test_order_status_mapping(ccxt_status: str | None, status: OrderStatus) -> None:
    raw = binance_market_fill()
    raw["status"] = ccxt_status
    raw["filled"] = 0.0  # nothing traded (an order that traded is below)
    assert ccxt_orders.order_from_ccxt(raw).status is status


@pytest.mark.parametrize("ccxt_status", ["canceled", "expired"])
def test_an_order_that_ended_partly_executed_is_filled(ccxt_status: str) -> None:
    raw = binance_market_fill()  # executed 0.01 of 0.01 ...
    raw.update(status=ccxt_status, amount=0.02)  # ... of 0.02, then expired on its price limit
    order = ccxt_orders.order_from_ccxt(raw)
    assert (order.status, order.filled, order.amount) == (
        OrderStatus.FILLED,
        Decimal("0.01"),
        Decimal("0.02"),
    )


def test_terse_acknowledgement_is_completed_from_the_request() -> None:
    request = OrderRequest(
        client_id="acct1-sl-BTC-s8xk2-3",
        symbol=SYM,
        side=OrderSide.SELL,
        type=OrderType.STOP_MARKET,
        purpose=OrderPurpose.STOP_LOSS,
        amount=Decimal("0.01"),
        reduce_only=True,
        trigger_price=Decimal("55000"),
    )
    ack = {"id": "77", "clientOrderId": "acct1-sl-BTC-s8xk2-3", "info": {}}  # Bybit create answer
    order = ccxt_orders.order_from_ccxt(ack, fallback=request)
    assert (order.exchange_id, order.symbol, order.side) == ("77", SYM, OrderSide.SELL)
    assert order.type is OrderType.STOP_MARKET
    assert order.trigger_price == Decimal("55000")
    assert order.amount == Decimal("0.01")
    assert order.status is OrderStatus.UNKNOWN


def test_order_without_side_names_the_order() -> None:
    raw = binance_market_fill()
    raw["side"] = None
    with pytest.raises(UnexpectedResponse, match=r"order acct1-en-BTC-s8xk2-0 \(BTC/USDT:USDT\)"):
        ccxt_orders.order_from_ccxt(raw)


# -- positions -------------------------------------------------------------------------------


def binance_position(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "symbol": SYM,
        "side": "long",
        "contracts": 0.01,
        "contractSize": 1.0,
        "entryPrice": 60000.0,
        "markPrice": 61000.0,
        "liquidationPrice": 30123.4,
        "leverage": None,  # Binance v3 positionRisk
        "marginMode": "cross",
        "hedged": False,
        "info": {"symbol": "BTCUSDT", "positionAmt": "0.010", "isolatedWallet": "0"},
    }
    row.update(over)
    return row


def test_binance_v3_position_takes_leverage_from_the_setting() -> None:
    pos = mapping.position_from_ccxt(binance_position(), leverage=Decimal(5))
    assert (pos.qty, pos.entry_price, pos.leverage) == (Decimal("0.01"), Decimal(60000), Decimal(5))
    assert pos.margin_mode is MarginMode.CROSS
    assert pos.liquidation_price == Decimal("30123.4")
    assert pos.isolated_margin == 0


def test_position_without_any_leverage_is_an_error() -> None:
    with pytest.raises(UnexpectedResponse, match="BTC/USDT:USDT: position has no leverage"):
        mapping.position_from_ccxt(binance_position())


def test_zero_liquidation_price_is_unknown_not_a_price() -> None:
    pos = mapping.position_from_ccxt(binance_position(liquidationPrice=0.0, leverage=3.0))
    assert pos.liquidation_price is None
    pos = mapping.position_from_ccxt(binance_position(liquidationPrice=None, leverage=3.0))
    assert pos.liquidation_price is None


def test_short_isolated_position() -> None:
    row = binance_position(
        side="short",
        liquidationPrice=91000.0,  # a short is liquidated above its mark
        marginMode="isolated",
        leverage=10.0,
        info={"positionAmt": "-0.020", "isolatedWallet": "121.5"},
        contracts=0.02,
    )
    pos = mapping.position_from_ccxt(row)
    assert pos.qty == Decimal("-0.02")
    assert pos.margin_mode is MarginMode.ISOLATED
    assert pos.isolated_margin == Decimal("121.5")


def test_rows_are_matched_by_side_not_by_index() -> None:
    empty_long = binance_position(side="long", contracts=0.0, info={})
    short = binance_position(side="short", contracts=0.5, leverage=2.0, info={})
    other = binance_position(symbol="ETH/USDT:USDT", contracts=1.0)
    row = mapping.select_position_row(SYM, [empty_long, other, short])
    assert row is short
    assert mapping.select_position_row(SYM, [empty_long]) is None


def test_positions_on_both_sides_are_refused() -> None:
    rows = [binance_position(), binance_position(side="short", contracts=0.5)]
    with pytest.raises(UnexpectedResponse, match="one-way mode"):
        mapping.select_position_row(SYM, rows)


def test_side_from_signed_amount_when_ccxt_gives_none() -> None:
    row = binance_position(
        side=None, leverage=2.0, liquidationPrice=91000.0, info={"positionAmt": "-0.010"}
    )
    assert mapping.position_from_ccxt(row).qty == Decimal("-0.01")


# -- balance ---------------------------------------------------------------------------------


def test_binance_wallet_excludes_unrealised_pnl() -> None:
    balance = {
        "USDT": {"free": 9949.0, "used": 61.0, "total": 10010.0},  # total = marginBalance
        "info": {
            "assets": [{"asset": "USDT", "walletBalance": "10000.0", "marginBalance": "10010.0"}]
        },
    }
    bal = mapping.balance_from_ccxt(balance, "USDT")
    assert (bal.asset, bal.wallet, bal.available) == ("USDT", Decimal("10000.0"), Decimal("9949.0"))


def test_an_available_balance_the_answer_does_not_give_is_unknown_not_zero() -> None:
    """Sizing increases on a zero would send none; on a guess, orders the venue refuses. The
    engine sends no increase on an unknown available balance and says why."""
    row = {"asset": "USDT", "walletBalance": "10000.0", "marginBalance": "10010.0"}
    for unified in ({"used": 61.0, "total": 10010.0}, {"free": None, "total": 10010.0}):
        balance = {"USDT": unified, "info": {"assets": [row]}}
        bal = mapping.balance_from_ccxt(balance, "USDT")
        assert (bal.wallet, bal.available) == (Decimal("10000.0"), None)
    assert (
        mapping.balance_from_ccxt({"info": {"other": 1}, "USDT": {"total": 2.0}}, "USDT").available
        is None
    )
    zero = {
        "USDT": {"free": 0.0, "total": 10.0},
        "info": {"assets": [row | {"marginBalance": "10000.0"}]},
    }
    assert mapping.balance_from_ccxt(zero, "USDT").available == 0


def test_bybit_wallet_from_coin_list() -> None:
    balance = {
        "USDT": {"free": 900.0, "used": 100.0, "total": 1005.0},
        "info": {"result": {"list": [{"coin": [{"coin": "USDT", "walletBalance": "1000"}]}]}},
    }
    assert mapping.balance_from_ccxt(balance, "USDT").wallet == Decimal(1000)


def test_bybit_available_is_the_accounts_when_positions_are_at_a_loss() -> None:
    """ccxt's Bybit ``free`` is the wallet less initial margin; the unified account's margin
    check (110007) uses its available balance, which counts the unrealised loss."""
    coin = {"coin": "USDT", "walletBalance": "1000", "totalPositionIM": "100", "locked": "0"}
    info = {"result": {"list": [{"totalAvailableBalance": "700", "coin": [coin]}]}}
    balance = {"USDT": {"free": 900.0, "used": 100.0, "total": 1000.0}, "info": info}
    bal = mapping.balance_from_ccxt(balance, "USDT")
    assert (bal.wallet, bal.available) == (Decimal(1000), Decimal(700))
    # in profit ccxt's figure is the smaller one: kept
    info["result"]["list"][0]["totalAvailableBalance"] = "1100"
    assert mapping.balance_from_ccxt(balance, "USDT").available == Decimal(900)
    # an account row without the figure: ccxt's
    del info["result"]["list"][0]["totalAvailableBalance"]
    assert mapping.balance_from_ccxt(balance, "USDT").available == Decimal(900)


def test_balance_falls_back_to_unified_total_and_zero() -> None:
    raw = {"info": {"other": 1}, "USDT": {"free": 1.0, "total": 2.0}}
    assert mapping.balance_from_ccxt(raw, "USDT").wallet == 2
    # An answer that lists its asset rows without the settlement asset's is unreadable, no
    # longer a zero wallet: a garbled or renamed row halted the account on a 100 % drawdown
    # and sold every position.
    listed: list[dict[str, Any]] = [
        {"assets": []},
        {"assets": [{"asset": "BNB", "walletBalance": "1"}]},
    ]
    for info in listed:
        with pytest.raises(UnexpectedResponse, match="lists no USDT row"):
            mapping.balance_from_ccxt({"info": info}, "USDT")
    bybit = {"info": {"result": {"list": [{"coin": [{"coin": "USDC", "walletBalance": "5"}]}]}}}
    with pytest.raises(UnexpectedResponse, match="lists no USDT row"):
        mapping.balance_from_ccxt(bybit, "USDT")


@pytest.mark.parametrize(
    "raw",
    [
        {"USDT": {"free": 1.0, "total": 2.0}},  # no venue answer behind the unified view
        {"info": [], "USDT": {"total": 0}},  # an empty list where the account belongs
        {"info": {"assets": [{"asset": "USDT", "walletBalance": None}]}},  # a null wallet
        {"info": "<html>maintenance</html>"},
    ],
)
def test_unreadable_balance_is_unknown_not_zero(raw: dict[str, object]) -> None:
    with pytest.raises(mapping.UnexpectedResponse):
        mapping.balance_from_ccxt(raw, "USDT")


def test_null_position_size_is_unknown_not_flat() -> None:
    row: dict[str, Any] = {"symbol": "BTC/USDT:USDT", "contracts": None, "side": "long", "info": {}}
    with pytest.raises(mapping.UnexpectedResponse):
        mapping.select_position_row("BTC/USDT:USDT", [row])


def test_require_rows_and_probe_sizes() -> None:
    mapping.require_rows([{"info": {}}], "positions")
    for bad in ("<html>", [{"info": "x"}], ["a"], None):
        with pytest.raises(mapping.UnexpectedResponse):
            mapping.require_rows(bad, "positions")
    rows = [{"symbol": "BTCUSDT", "positionAmt": "0"}, {"symbol": "ETHUSDT", "positionAmt": "1"}]
    assert mapping.probe_sizes(rows, "", "positionAmt", "BTCUSDT") == [Decimal(0)]
    assert mapping.probe_sizes(rows, "", "positionAmt", "XRPUSDT") == []
    bybit = {"result": {"list": [{"symbol": "BTCUSDT", "size": "0"}]}}
    assert mapping.probe_sizes(bybit, "result.list", "size", "BTCUSDT") == [Decimal(0)]
    with pytest.raises(mapping.UnexpectedResponse):
        mapping.probe_sizes(
            [{"symbol": "BTCUSDT", "positionAmt": None}], "", "positionAmt", "BTCUSDT"
        )
    with pytest.raises(mapping.UnexpectedResponse):
        mapping.probe_sizes({"result": None}, "result.list", "size", "BTCUSDT")


# -- funding and candles ---------------------------------------------------------------------


def test_funding_interval_from_row_or_history() -> None:
    assert mapping.funding_interval_hours({"interval": "4h"}) == Decimal(4)
    assert mapping.funding_interval_hours({"interval": None}) is None
    history = [{"timestamp": 0}, {"timestamp": 8 * H + 3}, {"timestamp": 16 * H + 1}]
    assert mapping.interval_from_history(history) == Decimal(8)
    assert mapping.interval_from_history(history[:1]) is None


def test_closed_candles_drop_the_forming_bar() -> None:
    rows = [[0, 1, 2, 0.5, 1.5, 10], [H, 1.5, 2, 1, 1.8, 11], [2 * H, 1.8, 1.9, 1.7, 1.75, 3]]
    now = 2 * H + 5 * 60_000  # five minutes into the third hour
    candles = mapping.closed_candles(rows, H, now)
    assert candles == [Candle(0, 1.0, 2.0, 0.5, 1.5, 10.0), Candle(H, 1.5, 2.0, 1.0, 1.8, 11.0)]
    assert len(mapping.closed_candles(rows, H, 3 * H)) == 3  # closed exactly at its end


def test_closed_candles_reject_bad_rows() -> None:
    with pytest.raises(UnexpectedResponse, match="OHLCV row 1: time 0 not after 0"):
        mapping.closed_candles([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]], H, 10 * H)
    with pytest.raises(UnexpectedResponse, match="OHLCV row 0"):
        mapping.closed_candles([[0, 1, None, 1, 1, 1]], H, 10 * H)


# -- create_order arguments ------------------------------------------------------------------


def request(type_: OrderType, purpose: OrderPurpose, **over: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "client_id": f"acct1-{purpose.value}-BTC-s8xk2-0",
        "symbol": SYM,
        "side": OrderSide.SELL,
        "type": type_,
        "purpose": purpose,
        "amount": Decimal("0.01"),
        "reduce_only": purpose is not OrderPurpose.ENTRY,
    }
    fields.update(over)
    return OrderRequest(**fields)


def test_reduce_only_market_order_args() -> None:
    args = ccxt_orders.create_order_args(
        request(OrderType.MARKET, OrderPurpose.REDUCE),
        amount="0.01",
        price=None,
        trigger=None,
        mark_trigger_params=BINANCE_USDM.mark_trigger_params,
    )
    assert args == ccxt_orders.CreateOrderArgs(
        SYM,
        "market",
        "sell",
        0.01,
        None,
        {"clientOrderId": "acct1-rd-BTC-s8xk2-0", "reduceOnly": True},
    )


def test_entry_limit_order_args() -> None:
    req = request(OrderType.LIMIT, OrderPurpose.ENTRY, side=OrderSide.BUY, price=Decimal("65000.1"))
    args = ccxt_orders.create_order_args(
        req, amount="0.01", price="65000.1", trigger=None, mark_trigger_params={}
    )
    assert (args.type, args.side, args.price) == ("limit", "buy", 65000.1)
    assert args.params == {"clientOrderId": "acct1-en-BTC-s8xk2-0", "timeInForce": "GTC"}


def test_stop_loss_args_trigger_on_mark_price() -> None:
    req = request(OrderType.STOP_MARKET, OrderPurpose.STOP_LOSS, trigger_price=Decimal("55000"))
    args = ccxt_orders.create_order_args(
        req,
        amount="0.01",
        price=None,
        trigger="55000",
        mark_trigger_params=BINANCE_USDM.mark_trigger_params,
    )
    assert args.type == "market"
    assert args.params == {
        "clientOrderId": "acct1-sl-BTC-s8xk2-0",
        "reduceOnly": True,
        "stopLossPrice": 55000.0,
        "workingType": "MARK_PRICE",
    }


def test_take_profit_args_on_bybit_use_trigger_by() -> None:
    req = request(
        OrderType.TAKE_PROFIT_MARKET, OrderPurpose.TAKE_PROFIT, trigger_price=Decimal("70000")
    )
    args = ccxt_orders.create_order_args(
        req,
        amount="0.01",
        price=None,
        trigger="70000",
        mark_trigger_params=BYBIT.mark_trigger_params,
    )
    assert args.params["takeProfitPrice"] == 70000.0
    assert args.params["triggerBy"] == "MarkPrice"
    assert "stopLossPrice" not in args.params


@pytest.mark.parametrize(
    ("type_", "purpose"),
    [
        (OrderType.STOP_MARKET, OrderPurpose.STOP_LOSS),
        (OrderType.TAKE_PROFIT_MARKET, OrderPurpose.TAKE_PROFIT),
    ],
)
def test_bybit_protective_orders_go_out_close_on_trigger(
    type_: OrderType, purpose: OrderPurpose
) -> None:
    """Bybit cancels a triggered conditional order the free margin cannot carry unless it was
    placed closeOnTrigger (create-order docs; capabilities.BYBIT): sized and reduce-only too."""
    req = request(type_, purpose, trigger_price=Decimal("55000"))
    args = ccxt_orders.create_order_args(
        req,
        amount="0.01",
        price=None,
        trigger="55000",
        mark_trigger_params=BYBIT.mark_trigger_params,
        closing_trigger_params=BYBIT.closing_trigger_params,
    )
    assert args.amount == 0.01
    assert (args.params["reduceOnly"], args.params["closeOnTrigger"]) == (True, True)
    assert args.params["triggerBy"] == "MarkPrice"


def test_close_on_trigger_is_for_reduce_only_conditional_orders_alone() -> None:
    """A market reduction needs no trigger flag; an opening conditional order must not become
    a closing one."""
    reduce = ccxt_orders.create_order_args(
        request(OrderType.MARKET, OrderPurpose.REDUCE),
        amount="0.01",
        price=None,
        trigger=None,
        mark_trigger_params=BYBIT.mark_trigger_params,
        closing_trigger_params=BYBIT.closing_trigger_params,
    )
    opening = ccxt_orders.create_order_args(
        request(
            OrderType.STOP_MARKET,
            OrderPurpose.ENTRY,
            side=OrderSide.BUY,
            trigger_price=Decimal("70000"),
        ),
        amount="0.01",
        price=None,
        trigger="70000",
        mark_trigger_params=BYBIT.mark_trigger_params,
        closing_trigger_params=BYBIT.closing_trigger_params,
    )
    assert "closeOnTrigger" not in reduce.params
    assert "closeOnTrigger" not in opening.params
    assert BINANCE_USDM.closing_trigger_params == {}


def test_close_position_stop_has_no_amount_and_no_reduce_only() -> None:
    req = request(
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        amount=None,
        close_position=True,
        reduce_only=False,
        trigger_price=Decimal("54000"),
    )
    args = ccxt_orders.create_order_args(
        req, amount=None, price=None, trigger="54000", mark_trigger_params={}
    )
    assert args.amount is None
    assert args.params["closePosition"] is True
    assert "reduceOnly" not in args.params


@pytest.mark.parametrize("value", ["1e400", "-1e309", Decimal("1e301"), "1e30", "-1e20", 1e20])
def test_a_number_beyond_what_the_store_holds_is_not_a_number_a_venue_sends(value: object) -> None:
    # Decimal takes "1e400"; ccxt reads it as inf; a wallet of 1e400 would size every order.
    # 1e30 passed before: a position's isolated margin of 1e30 failed every job at its record
    # (NUMERIC(38, 18) holds 20 integer digits), a leverage of 1e30 after its orders were sent.
    with pytest.raises(UnexpectedResponse, match=r"USDT walletBalance: .*below 1e\+20"):
        mapping.to_decimal(str(value), "USDT walletBalance")


def test_the_largest_number_the_store_holds_is_read() -> None:
    largest = Decimal("99999999999999999999.999999999999999999")
    assert mapping.to_decimal(str(largest), "v") == largest
    assert mapping.to_decimal("-99999999999999999999", "v") == Decimal("-99999999999999999999")


def test_position_fields_that_contradict_each_other_are_refused() -> None:
    # ccxt: size from |positionAmt|, side from the sign of notional
    short_by_notional = binance_position(side="short", leverage=2.0)
    with pytest.raises(UnexpectedResponse, match=r"positionAmt is 0\.010"):
        mapping.position_from_ccxt(short_by_notional)
    bybit_row = binance_position(leverage=2.0, info={"side": "Sell", "size": "0.01"})
    with pytest.raises(UnexpectedResponse, match="side is 'Sell'"):
        mapping.position_from_ccxt(bybit_row)
    with pytest.raises(UnexpectedResponse, match="entryPrice: must be > 0"):
        mapping.position_from_ccxt(binance_position(leverage=2.0, entryPrice=-1.0))
    with pytest.raises(UnexpectedResponse, match="leverage must be > 0"):
        mapping.position_from_ccxt(binance_position(), leverage=Decimal(0))


# Documented rows, as ccxt 4.5 parses them. Binance positionRisk (portfolio-margin example of
# ccxt binance.py parse_position_risk): 0.01 x (45464.1735922 - 44525.0) = 9.39173592,
# 0.01 x 45464.1735922 = 454.64173592. Bybit v5 position list (ccxt bybit.py parse_position,
# unified account): 100 x (0.3432 - 0.3615) = -1.83; positionValue 100 x 0.3615 = 36.15, the
# entry's value, not the mark's.
def binance_documented_row(**info: str) -> dict[str, Any]:
    raw: dict[str, str] = {
        "symbol": "BTCUSDT",
        "positionAmt": "0.01",
        "entryPrice": "44525.0",
        "markPrice": "45464.1735922",
        "unRealizedProfit": "9.39173592",
        "liquidationPrice": "38007.16308568",
        "notional": "454.64173592",
        "isolatedWallet": "0",
    } | info
    amount = Decimal(raw["positionAmt"])
    return {
        "symbol": SYM,
        "side": "long" if Decimal(raw["notional"]) > 0 else "short",
        "contracts": float(abs(amount)),
        "contractSize": 1.0,
        "entryPrice": float(raw["entryPrice"]),
        "markPrice": float(raw["markPrice"]),
        "notional": abs(float(raw["notional"])),
        "unrealizedPnl": float(raw["unRealizedProfit"]),
        "liquidationPrice": float(raw["liquidationPrice"]),
        "leverage": None,
        "marginMode": "cross",
        "info": raw,
    }


def bybit_documented_row(**info: str) -> dict[str, Any]:
    raw: dict[str, str] = {
        "symbol": "XRPUSDT",
        "side": "Buy",
        "size": "100",
        "avgPrice": "0.3615",
        "positionValue": "36.15",
        "markPrice": "0.3432",
        "unrealisedPnl": "-1.83",
        "liqPrice": "0.0001",
        "leverage": "10",
    } | info
    upnl = Decimal(raw["unrealisedPnl"]) if raw["unrealisedPnl"] else Decimal(0)
    return {
        "symbol": "XRP/USDT:USDT",
        "side": "long" if raw["side"] == "Buy" else "short",
        "contracts": float(raw["size"]),
        "contractSize": 1.0,
        "entryPrice": float(raw["avgPrice"]),
        "markPrice": float(raw["markPrice"]),
        "notional": float(raw["positionValue"]),
        "unrealizedPnl": float(upnl) or None,  # ccxt omits a zero
        "liquidationPrice": float(raw["liqPrice"]),
        "leverage": float(raw["leverage"]),
        "marginMode": "cross",
        "info": raw,
    }


def test_documented_position_rows_meet_their_own_figures() -> None:
    pos = mapping.position_from_ccxt(binance_documented_row(), leverage=Decimal(5))
    assert (pos.qty, pos.entry_price) == (Decimal("0.01"), Decimal("44525.0"))
    pos = mapping.position_from_ccxt(bybit_documented_row())
    assert (pos.qty, pos.entry_price) == (Decimal(100), Decimal("0.3615"))
    # a figure the row leaves empty is not checked (Bybit's unified-margin rows: "")
    assert mapping.position_from_ccxt(bybit_documented_row(unrealisedPnl="")).qty == 100
    # the venue's rounding of each printed figure passes
    rounded = binance_documented_row(unRealizedProfit="9.39", notional="454.65")
    assert mapping.position_from_ccxt(rounded, leverage=Decimal(5)).qty == Decimal("0.01")


@pytest.mark.parametrize(
    ("row", "named"),
    [
        # the entry price read at half (its own PnL says otherwise): a phantom gain of 67 % of
        # the equity, an increase on it, then a drawdown halt that sold the book
        (
            binance_documented_row(entryPrice="22262.5"),
            r"Binance positionRisk row's unRealizedProfit 9\.39173592 is not",
        ),
        (
            binance_documented_row(entryPrice="445250"),
            r"Binance positionRisk row's unRealizedProfit",
        ),
        # the size read 10 times over, the row's notional still the position's: closed
        (
            binance_documented_row(positionAmt="0.1"),
            r"Binance positionRisk row's unRealizedProfit",
        ),
        (
            binance_documented_row(positionAmt="0.1", unRealizedProfit="93.9173592"),
            r"Binance positionRisk row's notional 454\.64173592 is not positionAmt x markPrice",
        ),
        (
            bybit_documented_row(avgPrice="0.18075"),
            r"Bybit position list row's unrealisedPnl -1\.83 is not",
        ),
        (
            bybit_documented_row(avgPrice="0.18075", unrealisedPnl="16.245"),
            r"Bybit position list row's positionValue 36\.15 is not size x avgPrice",
        ),
        (bybit_documented_row(size="1000"), r"Bybit position list row's unrealisedPnl"),
        # the mark is a row's own figure too (a liquidation price is checked against it)
        (
            bybit_documented_row(markPrice="3.432"),
            r"XRP/USDT:USDT: Bybit position list row's unrealisedPnl",
        ),
    ],
)
def test_a_position_row_that_contradicts_itself_is_unreadable(
    row: dict[str, Any], named: str
) -> None:
    with pytest.raises(UnexpectedResponse, match=named):
        mapping.position_from_ccxt(row, leverage=Decimal(5))


def test_bybit_coin_row_wallet_must_be_its_equity_less_its_unrealised_pnl() -> None:
    """Bybit's coin row: equity = walletBalance + unrealisedPnl - spotBorrow. A wallet of 5000
    on a coin whose equity says 9992.66 (unrealisedPnl 0) put the account in a 50 % drawdown
    halt that sold the book (Binance's twin was refused already)."""
    coin = {
        "coin": "USDT",
        "walletBalance": "10000.5",
        "equity": "10010.25",
        "unrealisedPnl": "9.75",
        "spotBorrow": "0",
        "bonus": "0",
    }
    balance = {
        "USDT": {"free": 9000.0, "total": 10000.5},
        "info": {"result": {"list": [{"coin": [coin]}]}},
    }
    assert mapping.balance_from_ccxt(balance, "USDT").wallet == Decimal("10000.5")
    coin |= {"walletBalance": "5000"}
    with pytest.raises(
        UnexpectedResponse, match=r"Bybit coin row USDT: walletBalance 5000 .* equity 10010\.25"
    ):
        mapping.balance_from_ccxt(balance, "USDT")
    # manual borrowing: the wallet counts what was borrowed, the equity does not
    coin |= {"walletBalance": "1200.00", "equity": "1000.00", "unrealisedPnl": "0",
             "spotBorrow": "200.00"}  # fmt: skip
    assert mapping.balance_from_ccxt(balance, "USDT").wallet == Decimal("1200.00")
    # a coin row without the figures (a websocket push, an older account) is not checked
    for key in ("equity", "unrealisedPnl"):
        partial = {k: v for k, v in coin.items() if k != key} | {"walletBalance": "5"}
        raw = {"USDT": {"free": 1.0}, "info": {"result": {"list": [{"coin": [partial]}]}}}
        assert mapping.balance_from_ccxt(raw, "USDT").wallet == 5


def test_balance_row_without_an_asset_name_is_unreadable_not_a_zero_wallet() -> None:
    raw = {"info": {"assets": [{"asset": None, "walletBalance": "1000"}]}}
    with pytest.raises(UnexpectedResponse, match="asset row 0 has no asset name"):
        mapping.balance_from_ccxt(raw, "USDT")


@pytest.mark.parametrize(
    "info",
    [
        {"assets": [{"asset": "USDT", "walletBalance": "0"},
                    {"asset": "USDT", "walletBalance": "9997"}]},
        {"result": {"list": [{"coin": [{"coin": "USDT", "walletBalance": "0"}]},
                             {"coin": [{"coin": "USDT", "walletBalance": "9997"}]}]}},
    ],
)  # fmt: skip
def test_a_settlement_asset_listed_twice_is_unreadable_not_one_of_the_two(
    info: dict[str, object],
) -> None:
    """Which row is the account's cannot be known: the wallet came from the first, ccxt's
    available balance from the last, a balance mixed from two rows (here a zero wallet: a
    100 % drawdown halt that sells every position)."""
    raw = {"info": info, "USDT": {"free": "3997", "total": "9997"}}
    with pytest.raises(UnexpectedResponse, match="lists 2 USDT rows"):
        mapping.balance_from_ccxt(raw, "USDT")


def test_a_liquidation_price_on_the_wrong_side_of_the_mark_is_refused() -> None:
    with pytest.raises(UnexpectedResponse, match="long position with liquidationPrice 61000"):
        mapping.position_from_ccxt(binance_position(leverage=2.0, liquidationPrice=61000.0))
    short = binance_position(
        side="short", leverage=2.0, liquidationPrice=60000.0, info={"positionAmt": "-0.010"}
    )
    with pytest.raises(UnexpectedResponse, match="wrong side of its markPrice 61000"):
        mapping.position_from_ccxt(short)


@pytest.mark.parametrize(
    ("info", "floor", "cap"),
    [
        (None, -mapping.FUNDING_RATE_LIMIT, mapping.FUNDING_RATE_LIMIT),  # no row
        ({}, -mapping.FUNDING_RATE_LIMIT, mapping.FUNDING_RATE_LIMIT),  # not published
        ({"up": "0.005", "down": "-0.005"}, Decimal("-0.005"), Decimal("0.005")),
        # a published cap never widens the plausible bound
        ({"up": "3", "down": "-3"}, -mapping.FUNDING_RATE_LIMIT, mapping.FUNDING_RATE_LIMIT),
    ],
)
def test_funding_bounds_are_the_venues_cap_within_the_hard_bound(
    info: object, floor: Decimal, cap: Decimal
) -> None:
    bounds = mapping.funding_bounds(SYM, info, "up", "down")
    assert (bounds.floor, bounds.cap) == (floor, cap)


@pytest.mark.parametrize(
    "info",
    [{"up": "0.005"}, {"up": "abc", "down": "-0.005"}, {"up": "0", "down": "-0.005"}],
    ids=["floor missing", "not a number", "not around 0"],
)
def test_a_garbled_funding_cap_is_unreadable(info: object) -> None:
    with pytest.raises(UnexpectedResponse, match=f"{SYM}.*up"):
        mapping.funding_bounds(SYM, info, "up", "down")


NOW_MS = 1_672_376_496_682
DAY = 86_400_000


@pytest.mark.parametrize(
    "value",
    [None, "", "0", "-5", "12.5", "soon", True, 1e30, NOW_MS + DAY + 1, 10**17],
)
def test_a_price_time_must_be_the_venues(value: object) -> None:
    # 1e17 ms (year 3 million) passed before: the job failed converting it to a date
    with pytest.raises(UnexpectedResponse, match="ticker time"):
        mapping.venue_time(value, f"{SYM} ticker time", now_ms=NOW_MS)


def test_a_price_time_is_read_as_integer_milliseconds() -> None:
    assert mapping.venue_time("1672376496682", "t", now_ms=NOW_MS) == 1672376496682
    assert mapping.venue_time(1672376496682, "t", now_ms=NOW_MS) == 1672376496682
    # a day ahead is still a time (a host clock behind the venue's); an old one too (its age
    # is the engine's stale-data check's to judge)
    assert mapping.venue_time(NOW_MS + DAY, "t", now_ms=NOW_MS) == NOW_MS + DAY
    assert mapping.venue_time(1, "t", now_ms=NOW_MS) == 1
    # a settlement is scheduled ahead: no bound on the clock
    assert mapping.venue_time(NOW_MS + 90 * DAY, "t", now_ms=None) == NOW_MS + 90 * DAY


def test_a_funding_history_time_far_ahead_of_the_clock_is_unreadable() -> None:
    rows = [{"symbol": SYM, "timestamp": NOW_MS - 8 * H, "fundingRate": 0.0001}]
    assert mapping.settled_funding(rows, SYM, NOW_MS) == [(NOW_MS - 8 * H, Decimal("0.0001"))]
    rows.append({"symbol": SYM, "timestamp": NOW_MS + 2 * DAY, "fundingRate": 0.0001})
    with pytest.raises(UnexpectedResponse, match="funding history time"):
        mapping.settled_funding(rows, SYM, NOW_MS)


# -- what a conditional order placed by hand is: its type and the price that triggers it ------


@pytest.mark.parametrize(
    ("working_type", "trigger_by"),
    [("MARK_PRICE", TriggerBy.MARK), ("CONTRACT_PRICE", TriggerBy.LAST), (None, None)],
)
def test_binance_working_type_is_the_price_that_triggers(
    working_type: str | None, trigger_by: TriggerBy | None
) -> None:
    raw = binance_algo_stop("web_hand_1")
    if working_type is None:
        del raw["info"]["workingType"]  # not in the reply: not guessed
    else:
        raw["info"]["workingType"] = working_type
    order = ccxt_orders.order_from_ccxt(raw)
    assert (order.purpose, order.type, order.trigger_by) == (
        None,
        OrderType.STOP_MARKET,
        trigger_by,
    )


@pytest.mark.parametrize(
    ("algo_type", "order_type"),
    [
        ("STOP_MARKET", OrderType.STOP_MARKET),
        ("STOP", OrderType.STOP_LIMIT),  # a limit order once triggered
        ("TAKE_PROFIT_MARKET", OrderType.TAKE_PROFIT_MARKET),
        ("TAKE_PROFIT", OrderType.TAKE_PROFIT_LIMIT),
        ("TRAILING_STOP_MARKET", OrderType.TRAILING_STOP_MARKET),
    ],
)
def test_binance_conditional_types_placed_by_hand(algo_type: str, order_type: OrderType) -> None:
    """A stop-limit placed by hand was read as a stop-market (the fallback for any trigger)."""
    raw = binance_algo_stop("web_hand_2", algo_type)
    assert ccxt_orders.order_from_ccxt(raw).type is order_type


def bybit_conditional(**info: object) -> dict[str, Any]:
    """A Bybit conditional order placed by hand (no orderLinkId), as ccxt parses it."""
    return {
        "id": "9d2b",
        "clientOrderId": None,
        "symbol": SYM,
        "type": str(info.get("orderType", "Market")).lower(),
        "side": "sell",
        "triggerPrice": 55000.0,
        "stopLossPrice": 55000.0,  # ccxt: a reduce-only sell falling to its trigger
        "amount": 0.01,
        "filled": 0.0,
        "status": "open",
        "reduceOnly": True,
        "info": {
            "orderLinkId": "",
            "orderType": "Market",
            "stopOrderType": "Stop",
            "triggerDirection": 2,
            "triggerBy": "MarkPrice",
            **info,
        },
    }


@pytest.mark.parametrize(
    ("trigger_by", "expected"),
    [
        ("MarkPrice", TriggerBy.MARK),
        ("LastPrice", TriggerBy.LAST),
        ("IndexPrice", TriggerBy.INDEX),
        ("UNKNOWN", None),
        ("", None),
    ],
)
def test_bybit_trigger_by_is_the_price_that_triggers(
    trigger_by: str, expected: TriggerBy | None
) -> None:
    order = ccxt_orders.order_from_ccxt(bybit_conditional(triggerBy=trigger_by))
    assert (order.purpose, order.type, order.trigger_by) == (None, OrderType.STOP_MARKET, expected)


def test_bybit_conditional_limit_placed_by_hand_is_a_stop_limit() -> None:
    """Bybit's stopOrderType is "Stop" for any conditional order: its orderType says market
    or limit."""
    order = ccxt_orders.order_from_ccxt(bybit_conditional(orderType="Limit"))
    assert order.type is OrderType.STOP_LIMIT


def test_a_plain_order_has_no_trigger_reference() -> None:
    """Binance lists workingType CONTRACT_PRICE on every regular order, Bybit triggerBy on
    every order: without a trigger price it names nothing."""
    raw = binance_market_fill()
    raw["info"] = {**raw["info"], "workingType": "CONTRACT_PRICE"}
    assert ccxt_orders.order_from_ccxt(raw).trigger_by is None
