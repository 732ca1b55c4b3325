"""Which resting orders count as a position's stop-loss (bot.risk.coverage): the bot's own, and an
order placed by hand only when it protects as the bot's would: a stop-market, reduce-only or
close-position, triggered on the mark price as the venue's reply says. The verification
(protection_gap) and the alerts count the same way."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderStatus, OrderType, TriggerBy
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.protection import close_position_stops, protection_gap
from bot.risk.coverage import (
    by_hand_shortfall,
    coverage,
    holds_close_position_slot,
    is_stop,
    resting_stops,
    uncounted_by_hand,
)
from tests.unit.test_engine import BTC

HAND = Order(
    "web_1",
    "7",
    BTC,
    OrderSide.SELL,
    OrderType.STOP_MARKET,
    None,  # not the bot's client id
    D("0.3"),
    D(0),
    OrderStatus.OPEN,
    True,
    trigger_price=D(55000),
    trigger_by=TriggerBy.MARK,
)


def test_a_mark_price_reduce_only_stop_market_by_hand_counts() -> None:
    assert by_hand_shortfall(HAND) is None
    assert is_stop(HAND)
    whole = replace(HAND, amount=None, reduce_only=False, close_position=True)
    assert is_stop(whole)
    assert coverage(D("0.3"), resting_stops([HAND])).complete


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"trigger_by": TriggerBy.LAST}, "triggered on the last price, not the mark"),
        ({"trigger_by": TriggerBy.INDEX}, "triggered on the index price, not the mark"),
        ({"trigger_by": None}, "does not say which price triggers it"),
        ({"type": OrderType.STOP_LIMIT, "price": D(54900)}, "a stop-limit order"),
        ({"type": OrderType.TAKE_PROFIT_MARKET}, "a take-profit-market order"),
        ({"type": OrderType.TRAILING_STOP_MARKET}, "a trailing-stop-market order"),
        ({"reduce_only": False}, "not reduce-only or close-position"),
    ],
)
def test_an_order_by_hand_that_does_not_protect_as_the_bots_does_not_count(
    changes: dict[str, object], why: str
) -> None:
    order = replace(HAND, **changes)  # type: ignore[arg-type]
    shortfall = by_hand_shortfall(order)
    assert shortfall is not None
    assert why in shortfall
    assert not is_stop(order)
    cover = coverage(D("0.3"), resting_stops([order]))
    assert (cover.stops, cover.complete) == (0, False)


def test_the_bots_own_stop_counts_as_the_bot_placed_it() -> None:
    """The bot sends every stop-loss on the mark (capabilities mark_trigger_params); a terse
    acknowledgement that does not repeat it is still the bot's stop."""
    own = replace(HAND, client_id="t-sl-BTC-1", purpose=OrderPurpose.STOP_LOSS, trigger_by=None)
    assert is_stop(own)


def test_uncounted_stops_by_hand_are_named_on_the_closing_side_only() -> None:
    last = replace(HAND, trigger_by=TriggerBy.LAST)
    take = replace(HAND, client_id="web_2", type=OrderType.TAKE_PROFIT_MARKET)  # no stop
    other_side = replace(last, client_id="web_3", side=OrderSide.BUY)
    ours = replace(last, client_id="t-sl-1", purpose=OrderPurpose.STOP_LOSS)
    named = uncounted_by_hand([HAND, last, take, other_side, ours], OrderSide.SELL)
    assert [(o.client_id, why) for o, why in named] == [
        ("web_1", "triggered on the last price, not the mark")
    ]


def test_a_close_position_stop_by_hand_that_does_not_count_holds_the_slot() -> None:
    whole = replace(HAND, amount=None, reduce_only=False, close_position=True)
    assert not holds_close_position_slot([whole], OrderSide.SELL)  # it counts: no gap to fill
    last = replace(whole, trigger_by=TriggerBy.LAST)
    assert holds_close_position_slot([last], OrderSide.SELL)
    assert not holds_close_position_slot([last], OrderSide.BUY)
    pos = Position(BTC, D("0.3"), D(60000), D(3), MarginMode.ISOLATED, liquidation_price=D(40000))
    assert close_position_stops(True, pos, [HAND])
    assert not close_position_stops(True, pos, [last])
    assert not close_position_stops(False, pos, [HAND])


def test_the_verification_finds_a_gap_beside_a_last_price_stop_by_hand(
    instruments: dict[str, Instrument],
) -> None:
    """Counted, a last-price stop by hand let the verification pass with no stop of the bot's
    resting: the position rode on a trigger a wick of the traded price fires."""
    inst = instruments[BTC]
    pos = Position(BTC, D("0.3"), D(60000), D(3), MarginMode.ISOLATED, liquidation_price=D(40000))
    acct = AccountView(positions={BTC: pos}, resting={}, wallet=D(10000), marks={BTC: D(60000)})
    assert protection_gap(inst, pos, acct, instruments, [HAND]) is None
    gap = protection_gap(inst, pos, acct, instruments, [replace(HAND, trigger_by=TriggerBy.LAST)])
    assert gap == "no resting stop-loss"


def test_the_bot_sends_only_the_types_it_places() -> None:
    """A stop-limit is read on the venue, never sent by the bot."""
    with pytest.raises(ValueError, match="does not send stop_limit orders"):
        OrderRequest(
            "t-sl-1",
            BTC,
            OrderSide.SELL,
            OrderType.STOP_LIMIT,
            OrderPurpose.STOP_LOSS,
            D("0.3"),
            True,
            trigger_price=D(55000),
            price=D(54900),
        )


OWN = replace(HAND, client_id="t-sl-BTC-1", purpose=OrderPurpose.STOP_LOSS)


@pytest.mark.parametrize(
    ("trigger_by", "counts"),
    [(TriggerBy.MARK, True), (None, True), (TriggerBy.LAST, False), (TriggerBy.INDEX, False)],
)
def test_the_bots_own_stop_counts_only_while_it_triggers_on_the_mark(
    trigger_by: TriggerBy | None, counts: bool
) -> None:
    """The bot sends every stop triggered on the mark; a venue that reports one of them on
    another price (Bybit amends ``triggerBy``: changed outside the bot) no longer counts, and
    the planner replaces it. A reply that does not say is taken as sent."""
    own = replace(OWN, trigger_by=trigger_by)
    assert is_stop(own) is counts
    assert coverage(D("0.3"), resting_stops([own])).complete is counts
