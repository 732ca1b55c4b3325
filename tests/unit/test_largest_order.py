"""The venue's largest market order (Binance MARKET_LOT_SIZE maxQty, Bybit maxMktOrderQty).

A market or stop-market order above it is refused (Binance -4005), reduce-only ones too. So the
bot never builds a position one order cannot close and one stop cannot protect, and a larger
position (added by hand, or a limit the venue lowered) is cut and closed in orders within it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.decision import Decision
from bot.domain.enums import EventKind, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.engine.planner import plan_size
from bot.engine.tick import Engine
from bot.errors import InvalidQuantity, OrderRejected, TransientExchangeError
from bot.instruments import load_instruments, parse_instruments
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, FakeMarket, build
from tests.unit.test_market_data_unreadable import BrokenMarket
from tests.unit.test_planner import Ids


def capped(inst: Instrument, most: str) -> Instrument:
    return replace(inst, max_order_qty=D(most))


def decision(qty: str, lev: str = "2") -> Decision:
    return Decision(
        symbol=BTC,
        direction=(D(qty) > 0) - (D(qty) < 0),
        target_leverage=D(lev),
        target_qty=D(qty),
        stop_loss=None,
        take_profit=None,
        reason="test",
    )


# -- splitting an amount ---------------------------------------------------------------------


@given(
    steps=st.integers(min_value=1, max_value=10**7),
    most_steps=st.integers(min_value=1, max_value=10**5),
    step=st.sampled_from([D("0.001"), D("0.1"), D(1), D(10)]),
)
def test_an_amount_is_split_into_the_fewest_near_equal_orders_the_venue_accepts(
    steps: int, most_steps: int, step: D
) -> None:
    base = load_instruments("binanceusdm")[BTC]
    inst = replace(base, step_size=step, min_qty=step, max_order_qty=most_steps * step)
    qty = steps * step
    sizes = inst.order_sizes(qty)
    assert sum(sizes) == qty
    assert len(sizes) == -(-steps // most_steps)  # the fewest orders
    assert all(0 < s <= most_steps * step and s % step == 0 for s in sizes)
    assert max(sizes) - min(sizes) <= step  # near equal: no remainder below the minimum
    if len(sizes) > 1:
        assert min(sizes) * 2 >= most_steps * step - 2 * step


def test_no_limit_or_an_amount_within_it_is_one_order(instruments: dict[str, Instrument]) -> None:
    inst = replace(instruments[BTC], max_order_qty=None)
    assert inst.order_sizes(D("12345.678")) == [D("12345.678")]
    assert capped(inst, "5").order_sizes(D(5)) == [D(5)]


def test_a_limit_off_the_step_grid_counts_as_its_grid_value(
    instruments: dict[str, Instrument],
) -> None:
    inst = capped(instruments[BTC], "2.0005")  # step 0.001: one order carries at most 2.000
    assert inst.largest_order == D("2.000")
    assert inst.order_sizes(D("4.001")) == [D("1.334"), D("1.334"), D("1.333")]


def test_a_limit_below_the_minimum_order_is_refused(instruments: dict[str, Instrument]) -> None:
    with pytest.raises(ValueError, match=r"max_order_qty 0\.0001 is below the minimum order"):
        capped(instruments[BTC], "0.0001")


# -- the bundled catalogue -------------------------------------------------------------------


def test_bundled_binance_contracts_carry_the_market_lot_size_limit() -> None:
    bundled = load_instruments("binanceusdm")
    assert bundled[BTC].max_order_qty == D(1000)  # MARKET_LOT_SIZE.maxQty of 2025-12-24
    with_limit = [i for i in bundled.values() if i.max_order_qty is not None]
    assert len(with_limit) >= 400


def _spec(**extra: str) -> dict[str, object]:
    bracket = {
        "notional_floor": "0",
        "notional_cap": "1000000",
        "max_leverage": "20",
        "maint_margin_rate": "0.01",
        "maint_amount": "0",
    }
    return {
        "exchange": "x",
        "as_of": "2026-01-01",
        "source": "test",
        "instruments": {
            "ABC/USDT:USDT": {
                "base": "ABC",
                "quote": "USDT",
                "tick_size": "0.01",
                "step_size": "1",
                "min_qty": "1",
                "min_notional": "5",
                "maker_fee": "0.0002",
                "taker_fee": "0.0005",
                "liquidation_fee": "0.01",
                "source": "test",
                "brackets": [bracket],
                **extra,
            }
        },
    }


def test_catalogue_limit_is_optional_and_must_be_positive() -> None:
    assert parse_instruments(_spec(), "f.json")["ABC/USDT:USDT"].max_order_qty is None
    assert parse_instruments(_spec(max_order_qty="500"), "f.json")[
        "ABC/USDT:USDT"
    ].max_order_qty == D(500)
    with pytest.raises(ValueError, match=r"f.json: instrument 'ABC/USDT:USDT': max_order_qty"):
        parse_instruments(json.loads(json.dumps(_spec(max_order_qty="0"))), "f.json")
    with pytest.raises(ValueError, match="'max_order_qty' is not a number"):
        parse_instruments(_spec(max_order_qty="lots"), "f.json")


# -- planning --------------------------------------------------------------------------------


def test_closing_a_position_above_the_limit_takes_several_reduce_only_orders(
    instruments: dict[str, Instrument],
) -> None:
    inst = capped(instruments[BTC], "2")
    plan = plan_size(decision("0"), D("5.001"), D(2), inst, D(60000), D("0.1"), Ids())
    assert [o.amount for o in plan.reduce] == [D("1.667"), D("1.667"), D("1.667")]
    assert all(o.reduce_only and o.purpose is OrderPurpose.CLOSE for o in plan.reduce)
    assert all(o.side is OrderSide.SELL for o in plan.reduce)
    assert len({o.client_id for o in plan.reduce}) == 3
    assert not plan.increase


def test_a_position_above_the_limit_is_cut_even_within_the_tolerance(
    instruments: dict[str, Instrument],
) -> None:
    inst = capped(instruments[BTC], "2")
    # 2.1 -> 2 is a 5 % change, under the 10 % tolerance: still cut, one stop cannot cover 2.1
    plan = plan_size(decision("2"), D("2.1"), D(2), inst, D(60000), D("0.1"), Ids())
    assert [(o.amount, o.purpose) for o in plan.reduce] == [(D("0.1"), OrderPurpose.REDUCE)]
    uncapped = plan_size(decision("2"), D("2.1"), D(2), instruments[BTC], D(60000), D("0.1"), Ids())
    assert not uncapped.reduce


def test_a_flip_from_above_the_limit_closes_in_parts_then_opens(
    instruments: dict[str, Instrument],
) -> None:
    inst = capped(instruments[BTC], "2")
    plan = plan_size(decision("-1.5"), D("3"), D(2), inst, D(60000), D("0.1"), Ids())
    assert [o.amount for o in plan.reduce] == [D("1.5"), D("1.5")]
    assert [(o.amount, o.side) for o in plan.increase] == [(D("1.5"), OrderSide.SELL)]


# -- the simulated venue refuses what Binance refuses ----------------------------------------


@pytest.mark.parametrize("reduce_only", [False, True])
def test_simulated_venue_refuses_a_market_order_above_the_limit(
    instruments: dict[str, Instrument], reduce_only: bool
) -> None:
    instruments = {**instruments, BTC: capped(instruments[BTC], "0.01")}
    engine, ex, _store = build(instruments)
    del engine
    ex.place_order(
        OrderRequest(
            "t-open", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.01"), False
        )
    )
    purpose = OrderPurpose.CLOSE if reduce_only else OrderPurpose.ENTRY
    side = OrderSide.SELL if reduce_only else OrderSide.BUY
    with pytest.raises(InvalidQuantity, match=r"greater than max quantity 0\.01") as err:
        ex.place_order(
            OrderRequest("t-big", BTC, side, OrderType.MARKET, purpose, D("0.011"), reduce_only)
        )
    assert err.value.code == -4005
    with pytest.raises(InvalidQuantity, match="greater than max quantity"):
        ex.place_order(
            OrderRequest(
                "t-stop",
                BTC,
                OrderSide.SELL,
                OrderType.STOP_MARKET,
                OrderPurpose.STOP_LOSS,
                D("0.011"),
                True,
                trigger_price=D(1000),
            )
        )


# -- the engine, end to end on the simulated venue -------------------------------------------


@dataclass
class Capped:
    """An engine whose BTC limit is a third of what the policy wants for the account."""

    engine: Engine
    ex: SimulatedExchange
    store: MemoryStore
    most: D

    def add_by_hand(self, times: int) -> None:
        """The trader adds ``times`` the limit, in orders the venue accepts."""
        for n in range(times):
            self.ex.place_order(
                OrderRequest(
                    f"hand-{n}",
                    BTC,
                    OrderSide.BUY,
                    OrderType.MARKET,
                    OrderPurpose.ENTRY,
                    self.most,
                    False,
                )
            )

    def stops(self) -> list[D | None]:
        return [
            o.amount for o in self.ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS
        ]


def capped_engine(instruments: dict[str, Instrument], market: FakeMarket | None = None) -> Capped:
    engine, ex, _store = build(instruments)
    engine.tick()
    wanted = ex.fetch_positions([BTC])[BTC].qty
    most = instruments[BTC].floor_qty(wanted / 3)
    limited = {**instruments, BTC: capped(instruments[BTC], str(most))}
    return Capped(*build(limited, market), most)


def test_the_bot_never_builds_a_position_one_order_cannot_close(
    instruments: dict[str, Instrument],
) -> None:
    c = capped_engine(instruments)
    result = c.engine.tick()
    pos = c.ex.fetch_positions([BTC])[BTC]
    assert pos.qty == c.most
    [d] = result.decisions
    assert "above the exchange's largest market order -> size cut to" in d.reason
    [stop] = [o for o in c.ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.amount == pos.qty
    assert stop.reduce_only
    assert not c.engine.unprotected_since


def test_a_position_added_above_the_limit_by_hand_is_cut_back_and_protected(
    instruments: dict[str, Instrument],
) -> None:
    c = capped_engine(instruments)
    c.engine.tick()
    c.add_by_hand(2)
    assert c.ex.fetch_positions([BTC])[BTC].qty == 3 * c.most
    c.engine.tick()
    pos = c.ex.fetch_positions([BTC])[BTC]
    assert 0 < pos.qty <= c.most
    assert c.stops() == [pos.qty]


def test_without_a_decision_a_position_above_the_limit_is_cut_to_it_not_closed(
    instruments: dict[str, Instrument],
) -> None:
    """The market data is unreadable (no decision this tick) when the trader's addition takes
    the position above the largest order: the stop sized to it is refused, and the position is
    cut to the largest order and protected, instead of sold whole as unprotected."""
    market = BrokenMarket()
    c = capped_engine(instruments, market)
    c.engine.tick()
    c.add_by_hand(2)
    market.error = TransientExchangeError("klines: HTTP 502")
    result = c.engine.tick()
    assert result.decisions == []
    assert c.ex.fetch_positions([BTC])[BTC].qty == c.most
    assert c.stops() == [c.most]
    assert result.unprotected == []
    assert any(
        "above the exchange's largest market order" in e.reason
        for e in c.store.events
        if e.kind is EventKind.RECONCILE
    )


# -- the venue's largest position (the last leverage bracket's cap, Binance -2027) -------------


def test_bundled_binance_contracts_carry_their_largest_position() -> None:
    bundled = load_instruments("binanceusdm")
    for inst in bundled.values():
        if inst.max_position_notional is not None:
            assert inst.max_position_notional == inst.brackets[-1].notional_cap
    assert bundled[BTC].max_position_notional == D(1_800_000_000)
    assert parse_instruments(_spec(max_position_notional="650000"), "f.json")[
        "ABC/USDT:USDT"
    ].max_position_notional == D(650_000)
    with pytest.raises(ValueError, match="max_position_notional must be > 0"):
        parse_instruments(_spec(max_position_notional="-1"), "f.json")


def test_a_target_above_the_largest_position_is_sized_to_it_and_the_venue_refuses_more(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _store = build(instruments)
    engine.tick()
    uncapped = ex.fetch_positions([BTC])[BTC].qty * ex.marks[BTC]
    cap = (uncapped / 3).quantize(D(1))
    limited = {**instruments, BTC: replace(instruments[BTC], max_position_notional=cap)}
    engine, ex, store = build(limited)
    result = engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert 0 < held * ex.marks[BTC] <= cap
    assert f"the exchange's largest position {cap} at last price" in result.decisions[0].reason
    assert not [e for e in store.events if e.kind in (EventKind.DENIED, EventKind.REJECTED)]
    more = instruments[BTC].ceil_qty(cap / ex.marks[BTC])  # a whole cap more
    with pytest.raises(OrderRejected, match="exceeded the maximum allowable position") as err:
        ex.place_order(
            OrderRequest(
                "t-more", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, more, False
            )
        )
    assert err.value.code == -2027
