"""The simulated exchange's fill rules, each against numbers worked out by hand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal as D

import pytest

from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Instrument, MarginModel
from bot.domain.margin import liquidation_price_isolated
from bot.domain.orders import OrderRequest
from bot.domain.position import Position
from bot.errors import (
    DuplicateClientId,
    InsufficientMargin,
    InvalidQuantity,
    OrderRejected,
    ReduceOnlyRejected,
)
from bot.sim.triggers import process_bar, settle_funding
from tests.conftest import make_exchange

BTC = "BTC/USDT:USDT"


def market(cid: str, side: OrderSide, amount: str, *, reduce: bool = False) -> OrderRequest:
    purpose = OrderPurpose.REDUCE if reduce else OrderPurpose.ENTRY
    return OrderRequest(cid, BTC, side, OrderType.MARKET, purpose, D(amount), reduce)


def stop(cid: str, side: OrderSide, amount: str, trigger: str, *, tp: bool = False) -> OrderRequest:
    otype = OrderType.TAKE_PROFIT_MARKET if tp else OrderType.STOP_MARKET
    purpose = OrderPurpose.TAKE_PROFIT if tp else OrderPurpose.STOP_LOSS
    return OrderRequest(cid, BTC, side, otype, purpose, D(amount), True, trigger_price=D(trigger))


def bar(ex, o: str, h: str, low: str, c: str) -> None:
    process_bar(ex, BTC, ex.clock.now_ms(), D(o), D(h), D(low), D(c))


@pytest.fixture
def long_btc(instruments: dict[str, Instrument]):
    ex, _ = make_exchange(instruments, slippage_bps="10")
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 5)
    ex.place_order(market("e1", OrderSide.BUY, "0.1"))
    return ex


def test_market_fill_pays_taker_fee_and_slippage(long_btc) -> None:
    fill = long_btc.fills[0]
    # 10 bps against a buyer: 60000 * 1.001 = 60060; fee 0.1 * 60060 * 0.0005 = 3.003
    assert fill.price == D("60060.000")
    assert fill.fee == D("3.0030000")
    assert long_btc.book.wallet == D(10000) - D("3.003")
    pos = long_btc.fetch_positions([BTC])[BTC]
    assert pos.qty == D("0.1")
    # isolated margin = notional / leverage = 6006 / 5
    assert pos.isolated_margin == D("1201.2")


def test_reduce_only_never_increases(long_btc) -> None:
    with pytest.raises(ReduceOnlyRejected) as err:
        long_btc.place_order(market("r1", OrderSide.BUY, "0.05", reduce=True))
    assert err.value.code == -2022
    # A reduce-only sell larger than the position is capped at the position: flat, not short.
    long_btc.place_order(market("r2", OrderSide.SELL, "0.5", reduce=True))
    assert long_btc.fetch_positions([BTC]) == {}


def test_filters_reject_like_the_exchange(instruments) -> None:
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    with pytest.raises(InvalidQuantity, match="step"):
        ex.place_order(market("a", OrderSide.BUY, "0.0015"))
    with pytest.raises(InvalidQuantity, match="minimum"):
        ex.place_order(market("b", OrderSide.BUY, "0.001"))  # 60 USDT < 100 min notional
    with pytest.raises(InsufficientMargin):
        ex.place_order(market("c", OrderSide.BUY, "1"))  # 60000 at 1x > 10000


@pytest.mark.parametrize("model", [MarginModel.BINANCE_USDM, MarginModel.BYBIT_UTA])
def test_reduce_only_orders_below_the_minimum_quantity_are_refused(
    instruments: dict[str, Instrument], model: MarginModel
) -> None:
    """As Binance's LOT_SIZE filter refuses them (only MIN_NOTIONAL exempts reduce-only
    orders); Bybit's minOrderQty is assumed to (not verified): a simulation never counts on a
    reduction the venue may refuse."""
    inst = replace(instruments[BTC], min_qty=D("0.05"), margin_model=model)
    ex, _ = make_exchange({BTC: inst})
    ex.set_mark(BTC, D(60000))
    ex.place_order(market("e1", OrderSide.BUY, "0.08"))
    with pytest.raises(InvalidQuantity, match=r"below minimum 0\.05") as refused:
        ex.place_order(market("r1", OrderSide.SELL, "0.03", reduce=True))
    assert refused.value.code == -4004  # Binance QTY_LESS_THAN_MIN_QTY (-4003 is "<= 0")
    with pytest.raises(InvalidQuantity, match=r"below minimum 0\.05"):
        ex.place_order(stop("sl", OrderSide.SELL, "0.03", "55000"))
    ex.place_order(market("r2", OrderSide.SELL, "0.08", reduce=True))  # the whole position
    assert ex.fetch_positions([BTC]) == {}


def test_duplicate_client_id_among_open_orders(long_btc) -> None:
    long_btc.place_order(stop("sl", OrderSide.SELL, "0.1", "55000"))
    with pytest.raises(DuplicateClientId):
        long_btc.place_order(stop("sl", OrderSide.SELL, "0.1", "54000"))


def test_stop_fills_at_trigger_within_the_bar(long_btc) -> None:
    long_btc.place_order(stop("sl", OrderSide.SELL, "0.1", "58000"))
    bar(long_btc, "59000", "59500", "57000", "57500")
    assert long_btc.orders["sl"].status is OrderStatus.FILLED
    # trigger 58000, 10 bps slippage against a seller
    assert long_btc.fills[-1].price == D("57942.000")


def test_gap_fills_at_the_open_not_the_trigger(long_btc) -> None:
    long_btc.place_order(stop("sl", OrderSide.SELL, "0.1", "58000"))
    bar(long_btc, "56000", "56500", "55000", "56000")
    assert long_btc.fills[-1].price == D("56000") * D("0.999")


def test_same_bar_stop_before_take_profit(long_btc) -> None:
    long_btc.place_order(stop("sl", OrderSide.SELL, "0.1", "58000"))
    long_btc.place_order(stop("tp", OrderSide.SELL, "0.1", "62000", tp=True))
    bar(long_btc, "60000", "63000", "57000", "61000")  # both inside the bar
    assert long_btc.orders["sl"].status is OrderStatus.FILLED
    # the take-profit then triggers with nothing to reduce and expires
    assert long_btc.orders["tp"].status is OrderStatus.CANCELED
    assert [e.kind for e in long_btc.events] == ["stop_loss", "expired"]


def test_gap_through_take_profit_fills_take_profit_first(long_btc) -> None:
    long_btc.place_order(stop("sl", OrderSide.SELL, "0.1", "58000"))
    long_btc.place_order(stop("tp", OrderSide.SELL, "0.1", "62000", tp=True))
    bar(long_btc, "63000", "63000", "57000", "61000")  # opens beyond the TP
    assert long_btc.orders["tp"].status is OrderStatus.FILLED
    assert long_btc.fills[-1].price == D("63000") * D("0.999")


def test_liquidation_uses_brackets_and_charges_the_fee(instruments, btc) -> None:
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e", OrderSide.BUY, "0.1"))
    pos = ex.book.positions[BTC]
    liq = liquidation_price_isolated(btc, pos.qty, pos.entry_price, pos.isolated_margin)
    assert liq is not None
    margin = pos.isolated_margin  # 0.1 x 60000 / 20 = 300
    assert margin == D(300)
    wallet_before = ex.book.wallet
    bar(ex, "60000", "60000", str(liq - 1), "58000")
    assert ex.book.positions[BTC].qty == 0
    kinds = [e.kind for e in ex.events]
    assert kinds == ["liquidation"]
    # isolated: the loss is the whole margin at most
    assert wallet_before - ex.book.wallet == margin


def test_stop_fires_before_liquidation_when_nearer(instruments) -> None:
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e", OrderSide.BUY, "0.1"))
    ex.place_order(stop("sl", OrderSide.SELL, "0.1", "58500"))
    bar(ex, "60000", "60000", "50000", "51000")  # crosses both
    assert [e.kind for e in ex.events] == ["stop_loss"]


def test_funding_settles_on_the_position(long_btc) -> None:
    wallet = long_btc.book.wallet
    settle_funding(long_btc, BTC, 0, D("0.0001"), D(61000))
    # long 0.1 x 61000 x 0.0001 = 0.61 paid
    assert long_btc.book.wallet == wallet - D("0.61")
    assert long_btc.funding_paid == D("0.61")


def test_cross_margin_liquidation_takes_the_account(instruments) -> None:
    ex, _ = make_exchange(instruments, balance="1000", mode=MarginMode.CROSS)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e", OrderSide.BUY, "0.2"))  # 12000 notional on 1000
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq is not None
    assert D(55000) < liq < D(60000)
    bar(ex, "60000", "60000", "50000", "50000")
    assert ex.book.positions[BTC].qty == 0
    assert ex.book.wallet >= 0


def test_conditional_order_that_would_trigger_at_once_is_rejected(long_btc) -> None:
    from bot.errors import OrderRejected

    with pytest.raises(OrderRejected) as err:
        long_btc.place_order(stop("sl", OrderSide.SELL, "0.1", "61000"))  # above the mark
    assert err.value.code == -2021
    with pytest.raises(OrderRejected):
        long_btc.place_order(stop("tp", OrderSide.SELL, "0.1", "59000", tp=True))


def test_gap_through_liquidation_and_a_stop_beyond_it_liquidates(instruments) -> None:
    # The stop sits beyond the liquidation price: a gap from 60000 to 54000 crosses the
    # liquidation first, so the position is liquidated and loses its margin, no more.
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e", OrderSide.BUY, "0.5"))
    margin = ex.book.positions[BTC].isolated_margin
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq is not None
    assert liq > D(57000)
    ex.place_order(stop("sl", OrderSide.SELL, "0.5", "57000"))
    wallet = ex.book.wallet
    bar(ex, "54000", "54500", "53500", "54000")
    assert [e.kind for e in ex.events][:1] == ["liquidation"]
    assert wallet - ex.book.wallet == margin


def assert_money_adds_up(ex, balance: str) -> None:
    """The identity every output relies on, exactly: wallet = start + realised PnL - the fills'
    fees - funding + what the insurance fund took; the fees the wallet paid are the fills' fees
    less what the insurance fund paid of them."""
    realized = sum((f.realized_pnl for f in ex.fills), D(0))
    fees = sum((f.fee for f in ex.fills), D(0))
    assert ex.book.wallet == D(balance) + realized - fees - ex.funding_paid + ex.insurance_shortfall
    assert D(0) <= fees - ex.fees_paid <= ex.insurance_shortfall


def test_an_isolated_liquidation_past_bankruptcy_is_the_insurance_funds_not_a_negative_fee(
    instruments,
) -> None:
    # Long 0.1 BTC @ 60,000 at 20x: margin 300, bankruptcy at 57,000, liquidation near 57,229.
    # A candle gaps open at 50,000: the liquidation fills there and loses 1,000. The margin
    # pays 300 of it and nothing is left for the liquidation fee (1.25 % x 5,000 = 62.50): the
    # fee is 0 and the insurance fund takes the other 700. (Before: a fee of -700, which
    # lowered fees_paid and hid the insurance fund's part.)
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e", OrderSide.BUY, "0.1"))
    margin = ex.book.positions[BTC].isolated_margin
    assert margin == D(300)
    wallet = ex.book.wallet
    bar(ex, "50000", "50500", "49500", "50000")
    assert ex.book.positions[BTC].qty == 0
    fill = ex.fills[-1]
    assert fill.liquidation
    assert (fill.price, fill.realized_pnl) == (D(50000), D(-1000))
    assert fill.fee == 0
    assert ex.fees_paid == D(3)  # the entry's taker fee only
    assert wallet - ex.book.wallet == margin
    assert ex.insurance_shortfall == D(700)
    insurance = [e for e in ex.events if e.kind == "insurance"]
    assert [(e.symbol, e.amount) for e in insurance] == [(BTC, D(700))]
    assert BTC in insurance[0].detail
    assert "700.00" in insurance[0].detail
    assert [e.kind for e in ex.events] == ["liquidation", "insurance"]
    assert_money_adds_up(ex, "10000")


def test_an_isolated_liquidation_fee_is_what_the_margin_still_holds(instruments) -> None:
    # The same position gapped to 57,100: between the liquidation price and the bankruptcy
    # price. The loss of 290 leaves 10 of the margin: the fee is those 10 (not the 71.375 of
    # the fee rate); nothing is the insurance fund's.
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e", OrderSide.BUY, "0.1"))
    wallet = ex.book.wallet
    bar(ex, "57100", "57100", "57000", "57050")
    fill = ex.fills[-1]
    assert fill.liquidation
    assert (fill.realized_pnl, fill.fee) == (D(-290), D(10))
    assert ex.fees_paid == D(13)
    assert wallet - ex.book.wallet == D(300)
    assert ex.insurance_shortfall == 0
    assert [e.kind for e in ex.events] == ["liquidation"]
    assert_money_adds_up(ex, "10000")


def test_a_cross_liquidation_past_the_wallet_keeps_the_money_adding_up(instruments) -> None:
    # Cross, 320 USDT, the same long: after the entry's fee of 3 the wallet holds 317. The gap
    # to 50,000 loses 1,000: the wallet pays 317, the insurance fund the 683 beyond it. Nothing
    # is left for the liquidation fee (62.50 at 1.25 %), so none is charged.
    ex, _ = make_exchange(instruments, balance="320", mode=MarginMode.CROSS)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e", OrderSide.BUY, "0.1"))
    bar(ex, "50000", "50500", "49500", "50000")
    fill = ex.fills[-1]
    assert fill.liquidation
    assert (fill.realized_pnl, fill.fee) == (D(-1000), D(0))
    assert ex.book.wallet == 0
    assert ex.insurance_shortfall == D(683)
    assert ex.fees_paid == D(3)
    assert [e.amount for e in ex.events if e.kind == "insurance"] == [D(683)]
    assert_money_adds_up(ex, "320")


def test_reported_liquidation_follows_every_change_of_an_isolated_position(long_btc) -> None:
    """The book remembers an isolated position's liquidation price; every change that moves it
    (an add, a partial close, funding paid from the isolated margin, a new leverage setting)
    gives the price solved afresh from the new position."""

    def fresh() -> D | None:
        p = long_btc.book.positions[BTC]
        inst = long_btc.book.instruments[BTC]
        return liquidation_price_isolated(inst, p.qty, p.entry_price, p.isolated_margin)

    seen = [long_btc.book.liquidation_price(BTC, long_btc.marks)]
    assert seen[-1] == fresh()
    assert long_btc.book.liquidation_price(BTC, long_btc.marks) is seen[-1]  # nothing changed
    # (change, whether it moves the price: closing part of an isolated position releases its
    # margin in proportion and leaves the price where it was)
    changes: list[tuple[Callable[[], object], bool]] = [
        (lambda: long_btc.set_mark(BTC, D(61000)), False),
        (lambda: long_btc.place_order(market("e2", OrderSide.BUY, "0.1")), True),
        (lambda: long_btc.place_order(market("r1", OrderSide.SELL, "0.05", reduce=True)), False),
        (lambda: settle_funding(long_btc, BTC, 0, D("0.01"), D(60000)), True),
        (lambda: long_btc.set_leverage(BTC, 8), True),  # (raised: Binance refuses lowering)
    ]
    for change, moves in changes:
        change()
        liq = long_btc.book.liquidation_price(BTC, long_btc.marks)
        assert liq == fresh()
        assert (liq != seen[-1]) is moves
        seen.append(liq)
    reported = long_btc.fetch_positions([BTC])[BTC].liquidation_price
    assert reported == long_btc.book.instruments[BTC].ceil_price(seen[-1])


def test_a_reported_position_is_rebuilt_whenever_anything_in_it_changes(long_btc) -> None:
    """fetch_positions reports an unchanged position as the same object, and any change (size,
    entry, margin, leverage setting, liquidation price) as a new one with the new values."""

    def expected() -> Position:
        book = long_btc.book
        p = book.positions[BTC]
        inst = book.instruments[BTC]
        liq = liquidation_price_isolated(inst, p.qty, p.entry_price, p.isolated_margin)
        assert liq is not None
        return Position(
            BTC,
            p.qty,
            p.entry_price,
            book.leverage[BTC],
            book.margin_mode,
            p.isolated_margin,
            inst.ceil_price(liq),
        )

    first = long_btc.fetch_positions([BTC])[BTC]
    assert first == expected()
    assert long_btc.fetch_positions([BTC])[BTC] is first
    changes: list[Callable[[], object]] = [
        lambda: long_btc.set_leverage(BTC, 8),  # (raised: Binance refuses lowering)
        lambda: long_btc.book.leverage.__setitem__(BTC, D(2)),  # the setting alone
        lambda: settle_funding(long_btc, BTC, 0, D("0.001"), D(60000)),
        lambda: long_btc.place_order(market("e2", OrderSide.BUY, "0.1")),
        lambda: long_btc.place_order(market("r1", OrderSide.SELL, "0.05", reduce=True)),
    ]
    before = first
    for change in changes:
        change()
        now = long_btc.fetch_positions([BTC])[BTC]
        assert now == expected()
        assert now != before
        before = now


def test_a_cross_position_reports_a_new_leverage_setting_and_a_new_liquidation_price(
    instruments: dict[str, Instrument],
) -> None:
    """In cross margin a new leverage setting changes nothing else in the position, and the
    liquidation price moves with the wallet: each is reported."""
    ex, _ = make_exchange(instruments, mode=MarginMode.CROSS, balance="2000")
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 5)
    ex.place_order(market("e1", OrderSide.BUY, "0.1"))
    first = ex.fetch_positions([BTC])[BTC]
    assert first.liquidation_price is not None
    assert ex.fetch_positions([BTC])[BTC] == first
    ex.set_leverage(BTC, 4)
    second = ex.fetch_positions([BTC])[BTC]
    assert second.leverage == D(4)
    assert (second.qty, second.liquidation_price) == (first.qty, first.liquidation_price)
    settle_funding(ex, BTC, 0, D("0.01"), D(60000))
    third = ex.fetch_positions([BTC])[BTC]
    assert third.liquidation_price is not None
    assert third.liquidation_price > first.liquidation_price  # less wallet: liquidated sooner
    assert (third.qty, third.leverage) == (second.qty, second.leverage)


@pytest.mark.parametrize("mode", [MarginMode.ISOLATED, MarginMode.CROSS])
def test_a_stop_filling_beyond_the_bankruptcy_price_loses_no_more_than_backs_it(
    instruments: dict[str, Instrument], mode: MarginMode
) -> None:
    # Found on XRP's 2023-07-13 candle (+70 % that day): a 20x short's stop triggered on the
    # mark while the last price was already past the bankruptcy price, and filled there plus
    # the candle's slippage: an isolated position lost 2.3 times its margin and the wallet
    # ended at -16,346 USDT. What backs the position (its margin; a cross wallet once nothing
    # is open) is all it can lose; the insurance fund takes the rest, as in a liquidation.
    balance = "10000" if mode is MarginMode.ISOLATED else "320"
    ex, _ = make_exchange(instruments, balance=balance, mode=mode)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 20)
    ex.place_order(market("e1", OrderSide.BUY, "0.1"))
    ex.place_order(stop("s1", OrderSide.SELL, "0.1", "58500"))
    held = ex.book.positions[BTC].isolated_margin if mode is MarginMode.ISOLATED else ex.book.wallet
    before = ex.book.wallet
    # The mark falls 10 % inside the bar, the last price 40 %: when the mark crosses the stop
    # (a quarter of its fall) the last price is 10 % down, past the bankruptcy price (-5 %).
    process_bar(
        ex,
        BTC,
        ex.clock.now_ms(),
        D(60000),
        D(60000),
        D(54000),
        D(55000),
        last=(D(60000), D(60000), D(36000)),
    )
    fill = ex.fills[-1]
    assert fill.purpose is OrderPurpose.STOP_LOSS
    assert fill.price == D(54000)
    assert ex.book.positions[BTC].qty == 0
    assert before - ex.book.wallet == held
    assert ex.book.wallet >= 0
    loss = -fill.realized_pnl + fill.fee
    assert ex.insurance_shortfall == loss - held
    realized = sum((f.realized_pnl for f in ex.fills), D(0))
    fees = sum((f.fee for f in ex.fills), D(0))
    assert ex.book.wallet == D(balance) + realized - fees + ex.insurance_shortfall
    assert [e.amount for e in ex.events if e.kind == "insurance"] == [loss - held]
    # the wallet paid the entry's fee only: the loss took all that backed the stop, its fee is
    # the insurance fund's (fees_paid counted it whole)
    assert ex.fees_paid == ex.fills[0].fee
    assert_money_adds_up(ex, balance)


def test_a_market_order_past_the_last_price_of_the_history_is_refused(long_btc) -> None:
    # A last price from history is the close of a candle; past the close of the next one the
    # data has a hole in every series (a venue in maintenance): the order is refused, not filled
    # at a close hours old. Before that, and with a price of the moment (set_mark), it fills.
    now = long_btc.clock.now_ms()
    long_btc.set_last(BTC, D(60000), as_of_ms=now, until_ms=now + 300_000)
    long_btc.clock.advance_to(now + 299_999)
    long_btc.place_order(market("r1", OrderSide.SELL, "0.01", reduce=True))
    long_btc.clock.advance_to(now + 300_000)
    since = r"no price for BTC/USDT:USDT since \d{4}-\d\d-\d\d \d\d:\d\d UTC"
    with pytest.raises(OrderRejected, match=since):
        long_btc.place_order(market("r2", OrderSide.SELL, "0.01", reduce=True))
    with pytest.raises(OrderRejected, match="no price"):
        long_btc.place_order(market("e2", OrderSide.BUY, "0.01"))
    assert [f.client_id for f in long_btc.fills] == ["e1", "r1"]
    assert "r2" not in long_btc.orders
    long_btc.set_mark(BTC, D(59000))  # a live price: no age
    long_btc.place_order(market("r3", OrderSide.SELL, "0.01", reduce=True))
    assert long_btc.fills[-1].client_id == "r3"
