"""Positions no order can carry: off the venue's quantity step (opened by hand at a finer step, or
before the venue made its step coarser) or below its minimum. Engine against the simulated
exchange (Binance rules, and the same with close-position stops switched off, as on Bybit);
the venue's closePosition rules in the simulated exchange; the planner's sizes."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.enums import (
    EventKind,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TriggerBy,
)
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.errors import OrderRejected
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket

HELD = D("0.123")  # opened at the old step 0.001
COARSE_STEP = D("0.01")


def coarse(inst: Instrument) -> Instrument:
    """The contract after the venue made its quantity step (and minimum) ten times coarser."""
    return replace(inst, step_size=COARSE_STEP, min_qty=COARSE_STEP)


def off_step_account(
    instruments: dict[str, Instrument], *, close_position_stops: bool = True, qty: D = HELD
) -> tuple[Engine, SimulatedExchange, MemoryStore, SimClock]:
    """A long of ``qty`` BTC opened at the step 0.001, then the venue's step became 0.01; the
    bot manages it (direction ``follow``) and starts after the change."""
    ex, clock = make_exchange({BTC: instruments[BTC]})
    market = FakeMarket()
    px, _ = market.last_price(BTC, T0) or (D(0), 0)
    ex.set_mark(BTC, px)
    ex.set_leverage(BTC, 3)
    ex.place_order(
        OrderRequest("hand-1", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, qty, False)
    )
    ex.book.instruments[BTC] = coarse(instruments[BTC])
    ex.close_position_stops = close_position_stops
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "follow", D(125))],
        limits=LIMITS,
        account="t",
    )
    return engine, ex, store, clock


def stops(ex: SimulatedExchange) -> list[tuple[D | None, bool, bool]]:
    return [
        (o.amount, o.close_position, o.reduce_only)
        for o in ex.fetch_open_orders(BTC)
        if o.purpose is OrderPurpose.STOP_LOSS
    ]


def rejected(store: MemoryStore) -> list[str]:
    return [e.reason for e in store.events if e.kind == EventKind.REJECTED]


# -- Binance rules: a close-position stop protects the whole position -------------------------


def test_off_step_position_gets_a_close_position_stop(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, clock = off_step_account(instruments)
    for _ in range(3):
        result = engine.tick()
        assert result.unprotected == []
        clock.advance_to(clock.now_ms() + 60_000)
    assert ex.book.positions[BTC].qty == HELD  # kept, not closed
    assert stops(ex) == [(None, True, False)]  # closePosition, no quantity, not reduce-only
    # the take-profit (no protection) is sized to the part on the step: it never competes
    # with the stop for the one close-position order per side
    [take] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.TAKE_PROFIT]
    assert (take.amount, take.close_position, take.reduce_only) == (D("0.12"), False, True)
    assert rejected(store) == []
    assert [e for e in store.events if e.kind == EventKind.UNPROTECTED] == []
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state.value == "active"
    assert engine.protection_failures == 0


def test_close_position_stop_fires_and_closes_the_whole_off_step_position(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _store, _clock = off_step_account(instruments)
    engine.tick()
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price - 1)
    assert ex.book.positions[BTC].qty == 0  # all 0.123, not 0.12
    assert ex.orders[stop.client_id].status is OrderStatus.FILLED


def test_moving_a_close_position_stop_keeps_the_step_part_covered_through_the_swap(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, _clock = off_step_account(instruments)
    engine.tick()
    [old] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert old.trigger_price is not None
    placed: list[OrderRequest] = []
    cancelled: list[str] = []
    real_place, real_cancel = ex.place_order, ex.cancel_order

    def place(request: OrderRequest) -> Order:
        # what rests when each order arrives: never a moment without a stop
        assert any(o.purpose is OrderPurpose.STOP_LOSS for o in ex.fetch_open_orders(BTC))
        placed.append(request)
        return real_place(request)

    def cancel(symbol: str, client_id: str) -> None:
        cancelled.append(client_id)
        real_cancel(symbol, client_id)
        left = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
        assert left, f"no stop rests after cancelling {client_id}"

    ex.place_order = place  # type: ignore[method-assign]
    ex.cancel_order = cancel  # type: ignore[method-assign]
    acct = engine.reconcile(clock_ms := T0)
    new_stop = old.trigger_price + 100
    engine.protect(BTC, acct, new_stop, None, clock_ms, tolerance=D(0))
    assert [(r.amount, r.close_position) for r in placed] == [(D("0.12"), False), (None, True)]
    assert cancelled[0] == old.client_id  # the old close-position stop went before the new one
    assert stops(ex) == [(None, True, False)]
    [now] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert now.trigger_price == new_stop
    assert rejected(store) == []  # no -4130


# -- a venue without close-position stops: the step part is protected, the rest is named ------


def test_without_close_position_stops_the_step_part_is_protected_and_the_rest_named(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, clock = off_step_account(instruments, close_position_stops=False)
    for _ in range(3):
        result = engine.tick()
        assert result.unprotected == []  # nothing closed: closing cannot help the remainder
        clock.advance_to(clock.now_ms() + 60_000)
    assert ex.book.positions[BTC].qty == HELD
    assert stops(ex) == [(D("0.12"), False, True)]
    assert rejected(store) == []
    incidents = [e.reason for e in store.events if e.kind == EventKind.UNPROTECTED]
    assert len(incidents) == 1  # recorded once, not every tick
    assert "partly unprotected" in incidents[0]
    assert "0.003 unprotected" in incidents[0]
    # the trader reads a time, not epoch milliseconds
    assert re.search(r"unprotected since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", incidents[0])
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state.value == "active"
    # once the remainder is gone (closed by hand on the venue), the incident is over
    ex.book.trade(BTC, D("-0.003"), ex.marks[BTC], D(0))
    engine.tick()
    assert [e.kind for e in store.events if e.kind in ("unprotected", "protected")] == [
        EventKind.UNPROTECTED,
        EventKind.PROTECTED,
    ]


def test_below_the_minimum_on_a_venue_without_close_position_stops_is_named_not_looped(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, _clock = off_step_account(
        instruments, close_position_stops=False, qty=D("0.004")
    )
    engine.tick()
    engine.tick()
    assert ex.book.positions[BTC].qty == D("0.004")
    assert stops(ex) == []  # no order can carry 0.004 at the step 0.01
    assert rejected(store) == []
    [incident] = [e.reason for e in store.events if e.kind == EventKind.UNPROTECTED]
    assert "0.004 unprotected" in incident
    assert engine.protection_failures == 0


# -- closing and reducing: the step part, the remainder named -----------------------------------


def test_halt_with_flatten_closes_the_step_part_without_a_rejection(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, _clock = off_step_account(instruments)
    engine.tick()
    acct = engine.reconcile(T0)
    memory = store.load_risk_memory()
    assert memory is not None
    engine.flatten(acct, T0, replace(memory, state_reason="test"))
    assert ex.book.positions[BTC].qty == D("0.003")
    assert rejected(store) == []
    # the close-position stop still rests and covers what is left
    assert stops(ex) == [(None, True, False)]


# -- the simulated exchange's closePosition rules ----------------------------------------------


def cp_stop(cid: str, trigger: D, **kw: object) -> OrderRequest:
    fields: dict[str, object] = {
        "client_id": cid,
        "symbol": BTC,
        "side": OrderSide.SELL,
        "type": OrderType.STOP_MARKET,
        "purpose": OrderPurpose.STOP_LOSS,
        "amount": None,
        "reduce_only": False,
        "trigger_price": trigger,
        "close_position": True,
    }
    fields.update(kw)
    return OrderRequest(**fields)  # type: ignore[arg-type]


def test_sim_close_position_rules(instruments: dict[str, Instrument]) -> None:
    ex, _clock = make_exchange({BTC: instruments[BTC]})
    ex.set_mark(BTC, D(60000))
    ex.place_order(
        OrderRequest("e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, HELD, False)
    )
    with pytest.raises(OrderRejected) as both:
        ex.place_order(cp_stop("both", D(55000), reduce_only=True))
    assert both.value.code == -1106
    with pytest.raises(OrderRejected) as sized:
        ex.place_order(cp_stop("sized", D(55000), amount=D("0.1")))
    assert sized.value.code == -1106
    ex.place_order(cp_stop("one", D(55000)))
    with pytest.raises(OrderRejected) as second:
        ex.place_order(cp_stop("two", D(54000)))
    assert second.value.code == -4130
    # a take-profit with closePosition is another type: it may rest beside the stop
    ex.place_order(
        cp_stop("tp", D(70000), type=OrderType.TAKE_PROFIT_MARKET, purpose=OrderPurpose.TAKE_PROFIT)
    )
    # flat: the close-position orders go with the position
    ex.place_order(
        OrderRequest("x", BTC, OrderSide.SELL, OrderType.MARKET, OrderPurpose.CLOSE, HELD, True)
    )
    assert ex.fetch_open_orders(BTC) == []
    assert ex.orders["one"].status is OrderStatus.CANCELED


def test_a_close_position_stop_placed_by_hand_is_counted_not_fought(
    instruments: dict[str, Instrument],
) -> None:
    """The trader protected the whole position by hand with a closePosition stop: Binance takes
    one per side (-4130), so the bot does not try to place its own, and counts the trader's."""
    from dataclasses import replace as with_

    engine, ex, store, _clock = off_step_account(instruments)
    mark = ex.marks[BTC]
    trigger = ex.instrument(BTC).stop_price(mark * D("0.9"), 1)
    ex.place_order(
        OrderRequest(
            "web_1",
            BTC,
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            OrderPurpose.STOP_LOSS,
            None,
            False,
            trigger_price=trigger,
            close_position=True,
        )
    )
    # as a venue lists an order without the bot's client id: no purpose
    ex.resting[BTC]["web_1"] = ex.orders["web_1"] = with_(ex.orders["web_1"], purpose=None)
    for _ in range(2):
        assert engine.tick().unprotected == []
    assert rejected(store) == []  # no -4130: the bot did not try
    assert [o.client_id for o in ex.fetch_open_orders(BTC) if o.type is OrderType.STOP_MARKET] == [
        "web_1"
    ]
    assert [e for e in store.events if e.kind == EventKind.UNPROTECTED] == []
    assert engine.protection_failures == 0


# -- moving a close-position stop the venue then refuses ----------------------------------------


def refuse_new_close_position_stops(
    ex: SimulatedExchange, keep: D | None = None
) -> list[OrderRequest]:
    """The venue refuses every close-position stop but one at ``keep`` (say the mark moved onto
    the new trigger: Binance -2021 "Order would immediately trigger"). Returns the refused."""
    refused: list[OrderRequest] = []
    real_place = ex.place_order

    def place(request: OrderRequest) -> Order:
        if request.close_position and request.trigger_price != keep:
            refused.append(request)
            raise OrderRejected("Order would immediately trigger.", code=-2021)
        return real_place(request)

    ex.place_order = place  # type: ignore[method-assign]
    return refused


def test_a_refused_move_of_a_close_position_stop_below_the_minimum_leaves_the_stop_resting(
    instruments: dict[str, Instrument],
) -> None:
    """0.004 BTC at the step 0.01: no order can carry any part of it, so nothing bridges the
    swap of its close-position stop. The stop that still protects is kept: the venue refusing
    a new one can no longer leave the position naked and have it closed at market."""
    below = D("0.004")
    engine, ex, store, clock = off_step_account(instruments, qty=below)
    assert engine.tick().unprotected == []
    [old] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert (old.close_position, old.trigger_price is not None) == (True, True)
    assert old.trigger_price is not None
    refused = refuse_new_close_position_stops(ex)  # any, the old trigger too
    acct = engine.reconcile(clock.now_ms())
    engine.protect(BTC, acct, old.trigger_price + 100, None, clock.now_ms(), tolerance=D(0))
    for _ in range(2):  # the verification and the next ticks, the venue still refusing
        clock.advance_to(clock.now_ms() + 60_000)
        assert engine.tick().unprotected == []
    assert ex.book.positions[BTC].qty == below  # not closed at market
    assert [o.client_id for o in ex.fetch_open_orders(BTC)] == [old.client_id]
    assert refused == []  # no new stop was even tried: nothing to refuse
    assert [e for e in store.events if e.kind == EventKind.UNPROTECTED] == []
    assert any(
        f"{old.client_id} kept at {old.trigger_price}" in e.reason
        for e in store.events
        if e.kind == EventKind.RECONCILE
    )


def test_a_stop_kept_where_it_is_is_noted_once_while_it_lasts(
    instruments: dict[str, Instrument],
) -> None:
    """The protection check runs every guard interval: a stop kept where it is (no order can
    bridge the swap) is one lasting condition, recorded when it starts and again only after
    it ended, not once a minute with the wanted price of the moment."""
    engine, ex, store, clock = off_step_account(instruments, qty=D("0.004"))
    assert engine.tick().unprotected == []
    [old] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert old.trigger_price is not None
    refuse_new_close_position_stops(ex)

    def check(offset: int) -> None:
        clock.advance_to(clock.now_ms() + 60_000)
        acct = engine.reconcile(clock.now_ms())
        assert old.trigger_price is not None
        engine.protect(BTC, acct, old.trigger_price + offset, None, clock.now_ms(), tolerance=D(0))

    def kept_notes() -> int:
        return sum(
            f"{old.client_id} kept at" in e.reason
            for e in store.events
            if e.kind == EventKind.RECONCILE
        )

    for offset in (100, 110, 120):  # the wanted stop moves with the mark; the stop stays
        check(offset)
    assert kept_notes() == 1
    check(0)  # wanted where it rests: nothing to keep, the condition ended
    assert kept_notes() == 1
    check(100)  # and came back: said again
    assert kept_notes() == 2
    assert [o.client_id for o in ex.fetch_open_orders(BTC)] == [old.client_id]


def test_a_refused_move_of_a_bridged_close_position_stop_puts_the_old_trigger_back(
    instruments: dict[str, Instrument],
) -> None:
    """0.123 BTC at the step 0.01: a stop on 0.12 bridges the swap; when the venue refuses the
    new close-position stop, the old trigger (still valid) is put back at once, so the whole
    position is protected again before the verification, not only its part on the step."""
    engine, ex, store, clock = off_step_account(instruments)
    engine.tick()
    [old] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert old.trigger_price is not None
    refused = refuse_new_close_position_stops(ex, keep=old.trigger_price)
    acct = engine.reconcile(clock.now_ms())
    engine.protect(BTC, acct, old.trigger_price + 100, None, clock.now_ms(), tolerance=D(0))
    assert [r.trigger_price for r in refused] == [old.trigger_price + 100]
    resting = sorted(stops(ex), key=str)
    assert resting == sorted([(D("0.12"), False, True), (None, True, False)], key=str)
    [back] = [o for o in ex.fetch_open_orders(BTC) if o.close_position]
    assert back.trigger_price == old.trigger_price
    assert back.client_id != old.client_id  # a new order at the old trigger
    assert len(rejected(store)) == 1  # the refused move, recorded
    assert engine.ensure_protected(acct, clock.now_ms()) == []
    assert ex.book.positions[BTC].qty == HELD


def test_a_naked_position_below_the_minimum_is_named_not_a_failed_tick(
    instruments: dict[str, Instrument],
) -> None:
    """The venue refuses every close-position stop for 0.004 BTC at the step 0.01, and no order
    can close any of it: the verification records the incident and the tick completes (the
    close built an order of size 0, and the tick raised)."""
    engine, ex, store, _clock = off_step_account(instruments, qty=D("0.004"))
    refuse_new_close_position_stops(ex)
    assert engine.tick().unprotected == [BTC]
    assert ex.book.positions[BTC].qty == D("0.004")
    [incident] = [e.reason for e in store.events if e.kind == EventKind.UNPROTECTED]
    assert "closing the position" in incident
    assert any(
        "closing 0 of 0.004" in e.reason for e in store.events if e.kind == EventKind.RECONCILE
    )


def test_a_last_price_close_position_stop_by_hand_is_left_and_the_step_part_protected(
    instruments: dict[str, Instrument],
) -> None:
    """The trader's close-position stop triggers on the last price: no protection by the bot's
    rule, yet it holds the venue's one close-position stop on this side (-4130) and the bot
    never cancels an order placed by hand. The bot protects the part on the step beside it
    and names the rest as an open incident, rather than defer to the trader's stop (before)."""
    engine, ex, store, _clock = off_step_account(instruments)
    trigger = ex.instrument(BTC).stop_price(ex.marks[BTC] * D("0.9"), 1)
    ex.place_order(cp_stop("web_1", trigger))
    # as a venue lists an order without the bot's client id, on the last price
    by_hand = replace(ex.orders["web_1"], purpose=None, trigger_by=TriggerBy.LAST)
    ex.resting[BTC]["web_1"] = ex.orders["web_1"] = by_hand
    for _ in range(2):
        assert engine.tick().unprotected == []
    assert ex.book.positions[BTC].qty == HELD  # not closed
    assert ex.orders["web_1"].is_open  # left alone
    assert stops(ex) == [(D("0.12"), False, True)]  # the bot's, beside it
    assert rejected(store) == []  # no -4130: no close-position stop of the bot's tried
    [incident] = [e.reason for e in store.events if e.kind == EventKind.UNPROTECTED]
    assert "0.003 unprotected" in incident
    assert "placed by hand that does not count" in incident


def test_an_invalid_close_position_stop_in_a_database_outage_is_reported(
    instruments: dict[str, Instrument],
) -> None:
    """A position off the step (no sized stop can carry it) whose close-position stop the
    liquidation price passed during a database outage: only a cancel first could mend it, which
    waits for the database. Nothing was said (the outage path found nothing to place and took
    the position for protected); it is now reported, so the runner alerts it."""
    engine, ex, _store, clock = off_step_account(instruments, qty=D("0.005"))
    engine.tick()
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.close_position
    assert stop.trigger_price is not None
    for _ in range(1000):  # funding drains the isolated margin until liquidation passes it
        pos = ex.fetch_positions([BTC])[BTC]
        if pos.liquidation_price is not None and pos.liquidation_price >= stop.trigger_price:
            break
        ex.book.pay_funding(BTC, D("0.5"))
    clock.advance_to(clock.now_ms() + 60_000)
    done = engine.protect_without_store()
    assert "act on the exchange by hand" in done[BTC]
    assert [o.client_id for o in ex.fetch_open_orders(BTC)] == [stop.client_id]  # nothing sent
