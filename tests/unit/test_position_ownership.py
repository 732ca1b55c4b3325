"""Ownership is per position, not per contract history (bot.engine.reconcile, Reconciler.judge).

A position the trader opens by hand on a contract the bot once traded is not the bot's: left
alone and reported (``foreign``) until it is flat again (``foreign_gone``). One the trader adds
to is the bot's still, reported (``added``). One the bot opened is its own even when the state
database is restored from a copy that never recorded it (its own stop rests on it).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

from bot.clock import SimClock
from bot.domain.enums import (
    EventKind,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
)
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.ports.client_ids import make_client_id
from bot.risk.state import set_state
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from bot.store.sql import SqlStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, HOUR, LIMITS, FakeMarket, build
from tests.unit.test_stopped_while_down import engine_on, stop_out

MIN = 60_000


def at(ex: SimulatedExchange, ms: int) -> None:
    """Move the simulated clock the engine and the venue share to ``ms``."""
    clock = ex.clock
    assert isinstance(clock, SimClock)
    clock.advance_to(ms)


def hand(ex: SimulatedExchange, side: OrderSide, qty: D, cid: str, *, reduce: bool = False) -> None:
    """The trader's market order, placed in the venue's app (a client id not the bot's)."""
    purpose = OrderPurpose.CLOSE if reduce else OrderPurpose.ENTRY
    ex.place_order(OrderRequest(cid, BTC, side, OrderType.MARKET, purpose, qty, reduce))


def bot_orders_since(store: MemoryStore, n: int) -> list[str]:
    return list(store.orders)[n:]


def kinds(store: MemoryStore, kind: EventKind) -> list[str]:
    return [e.reason for e in store.events if e.kind is kind]


def without_cooldown(engine: Engine) -> None:
    engine.cooldowns.cooldown_ms = 0


def test_a_hand_short_after_a_hand_close_is_left_alone_and_reported(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    without_cooldown(engine)  # (with it the bot closed the short; without, it reversed it)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    hand(ex, OrderSide.SELL, held, "web-close-1", reduce=True)
    at(ex, T0 + MIN)
    engine.guard()
    assert BTC not in ex.fetch_positions([BTC])
    hand(ex, OrderSide.SELL, D("0.05"), "web-short-1")
    n = len(store.orders)
    at(ex, T0 + 2 * MIN)
    engine.guard()
    at(ex, T0 + HOUR + 10_000)
    result = engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty == D("-0.05")  # neither closed nor reversed
    assert bot_orders_since(store, n) == []  # no stop, no close, no entry of the bot's
    assert [d for d in result.decisions if d.symbol == BTC] == []
    assert engine.foreign == {BTC}
    [reported] = kinds(store, EventKind.FOREIGN)  # once, not at every job
    assert "-0.050 was not opened by this bot" in reported


def test_a_hand_reversal_of_the_bots_position_is_not_the_bots(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    hand(ex, OrderSide.SELL, held + D("0.05"), "web-flip-1")
    n = len(store.orders)
    at(ex, T0 + MIN)
    engine.guard()
    assert ex.fetch_positions([BTC])[BTC].qty == D("-0.05")
    assert engine.foreign == {BTC}
    [reported] = kinds(store, EventKind.FOREIGN)
    assert "reversed outside the bot" in reported
    assert bot_orders_since(store, n) == []  # no stop of the bot's on the trader's short


def test_a_foreign_position_closed_gives_the_contract_back(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    without_cooldown(engine)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    hand(ex, OrderSide.SELL, held, "web-close-1", reduce=True)
    at(ex, T0 + MIN)
    engine.guard()
    hand(ex, OrderSide.SELL, D("0.05"), "web-short-1")
    at(ex, T0 + 2 * MIN)
    engine.guard()
    assert engine.foreign == {BTC}
    hand(ex, OrderSide.BUY, D("0.05"), "web-close-2", reduce=True)
    at(ex, T0 + HOUR + 10_000)
    engine.tick()
    assert engine.foreign == set()
    assert len(kinds(store, EventKind.FOREIGN_GONE)) == 1
    assert ex.fetch_positions([BTC])[BTC].qty > 0  # the bot's own entry again, protected
    assert OrderPurpose.STOP_LOSS in {o.purpose for o in ex.fetch_open_orders(BTC)}


def test_a_hand_addition_is_reported_and_the_whole_position_managed(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    hand(ex, OrderSide.BUY, held, "web-add-1")
    at(ex, T0 + MIN)
    engine.guard()
    [added] = kinds(store, EventKind.ADDED)
    assert f"{held} -> {held * 2}: added outside the bot" in added
    assert "manages the whole position" in added
    assert engine.foreign == set()
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.amount == held * 2  # its stop covers all of it
    at(ex, T0 + 2 * MIN)
    engine.guard()
    assert len(kinds(store, EventKind.ADDED)) == 1  # reported once per addition


def test_a_restored_database_keeps_the_bots_own_position(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    backup = copy.deepcopy(store)  # taken before the bot's first entry
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    restarted = Engine(
        clock=ex.clock,
        exchange=ex,
        market=FakeMarket(),
        store=backup,
        policy=engine.policy,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
        margin_mode=engine.margin_mode,
    )
    at(ex, T0 + MIN)
    restarted.guard()
    assert restarted.foreign == set()
    assert kinds(backup, EventKind.FOREIGN) == []
    memory = backup.load_risk_memory()
    assert memory is not None
    backup.save_risk_memory(
        set_state(memory, TradingState.HALTED, "bot halt --flatten", sticky=True)
    )
    at(ex, T0 + 2 * MIN)
    restarted.guard()
    assert BTC not in ex.fetch_positions([BTC])  # the halt's flatten closed it


def test_a_restart_keeps_a_foreign_position_foreign_without_reporting_it_again(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    hand(ex, OrderSide.SELL, held, "web-close-1", reduce=True)
    at(ex, T0 + MIN)
    engine.guard()
    hand(ex, OrderSide.BUY, D("0.05"), "web-long-1")  # the same side as the bot's was
    at(ex, T0 + 2 * MIN)
    engine.tick()
    assert engine.foreign == {BTC}
    restarted = Engine(
        clock=ex.clock,
        exchange=ex,
        market=FakeMarket(),
        store=store,
        policy=engine.policy,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
        margin_mode=engine.margin_mode,
    )
    n = len(store.orders)
    at(ex, T0 + HOUR + 10_000)
    restarted.tick()
    assert restarted.foreign == {BTC}
    assert len(kinds(store, EventKind.FOREIGN)) == 1
    assert bot_orders_since(store, n) == []
    assert ex.fetch_positions([BTC])[BTC].qty == D("0.05")


def test_a_position_the_bot_has_never_seen_is_judged_at_start(
    instruments: dict[str, Instrument],
) -> None:
    """A hand position on a contract the bot once entered, opened while the bot was down and
    flat by the last run's record: not the bot's (before, any filled entry ever adopted it)."""
    engine, ex, store = build(instruments)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    hand(ex, OrderSide.SELL, held, "web-close-1", reduce=True)
    at(ex, T0 + HOUR + 10_000)
    engine.tick()  # records the contract flat
    assert BTC not in ex.fetch_positions([BTC])
    hand(ex, OrderSide.SELL, D("0.05"), "web-short-1")
    restarted = Engine(
        clock=ex.clock,
        exchange=ex,
        market=FakeMarket(),
        store=store,
        policy=engine.policy,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
        margin_mode=engine.margin_mode,
    )
    at(ex, T0 + 2 * HOUR + 10_000)
    restarted.tick()
    assert restarted.foreign == {BTC}
    assert ex.fetch_positions([BTC])[BTC].qty == D("-0.05")


def test_a_hand_position_opened_after_the_bots_stop_filled_while_it_was_down_is_not_the_bots(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """The last run recorded the bot's long; its stop filled while no bot ran, and the trader
    then bought by hand on the same side. The start took the position for the bot's (the last
    run held that side), rested its stop on it, and the restart's daily-loss halt closed it:
    the fills the start learns (the stop's) close the recorded position, so the one found was
    opened after it, by hand."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    stop_out(ex)  # while down: the bot's stop fills
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    hand(ex, OrderSide.BUY, D("0.01"), "myhand-1")
    clock.advance(timedelta(hours=1))
    engine_on(store, ex, clock).tick()
    assert ex.fetch_positions([BTC])[BTC].qty == D("0.01"), "the hand position was closed"
    bots = [o.client_id for o in ex.fetch_open_orders(BTC) if o.purpose is not None]
    assert bots == [], "the bot rested its orders on the trader's position"
    foreign = [e for e in store.recent_events(50) if e.kind is EventKind.FOREIGN]
    assert len(foreign) == 1


def test_a_hand_position_after_a_hand_partial_close_and_the_stops_fill_is_not_the_bots(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """While no bot ran the trader sold part of the bot's long, the bot's stop (reduce-only)
    filled what was left, and the trader bought by hand: the stop found filled at the start
    closed the recorded position whatever its quantity, so the position found is the trader's."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    hand(ex, OrderSide.SELL, (held / 2).quantize(D("0.001")), "myhand-0", reduce=True)
    stop_out(ex)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    hand(ex, OrderSide.BUY, D("0.01"), "myhand-1")
    clock.advance(timedelta(hours=1))
    engine_on(store, ex, clock).tick()
    assert ex.fetch_positions([BTC])[BTC].qty == D("0.01"), "the hand position was changed"
    assert [o.client_id for o in ex.fetch_open_orders(BTC) if o.purpose is not None] == []
    assert len(kinds_of(store, EventKind.FOREIGN)) == 1


def test_a_database_restored_from_before_a_stop_out_and_re_entry_keeps_the_bots_position(
    instruments: dict[str, Instrument],
) -> None:
    """The database is restored from a copy taken while the bot held its first long. The
    running bot was then stopped out and re-entered, its new stop never recorded in the copy.
    The start learns the first stop's fill (the recorded position closed), and the new stop of
    the bot's resting on the position proves it the bot's: kept, its stop kept. A first
    version of the orphan rule disowned it and cancelled that stop."""
    wide = replace(LIMITS, daily_loss=D("0.2"), max_drawdown=D("0.5"))
    engine, ex, live_store = build(instruments, limits=wide)
    engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    backup = copy.deepcopy(live_store)  # the copy a restore brings back
    without_cooldown(engine)
    stop_out(ex)
    for _ in range(2):  # the running bot learns the stop and enters again
        if BTC in ex.fetch_positions([BTC]):
            break
        ex.clock.advance(timedelta(minutes=2))  # type: ignore[attr-defined]
        ex.set_mark(BTC, FakeMarket().last_price(BTC, ex.clock.now_ms())[0])  # type: ignore[index]
        engine.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    restored = Engine(
        clock=ex.clock,
        exchange=ex,
        market=FakeMarket(),
        store=backup,
        policy=engine.policy,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=wide,
        account="t",
        margin_mode=engine.margin_mode,
    )
    ex.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    restored.guard()
    assert restored.foreign == set(), "the bot's own position was judged not the bot's"
    stops = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stops, "the bot's stop on its own position was cancelled"


def test_a_take_profit_on_part_of_the_position_filled_while_down_leaves_the_rest_the_bots(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """The venue made the step coarser: the bot protects its 0.165 with a close-position stop
    and a take-profit on the step part (0.16). That take-profit fills while no bot runs: the
    0.005 left is the bot's own, under its close-position stop. Only a protective order sized to
    all of the recorded position closes it; a first version of the rule took any for that,
    disowned the rest and cancelled the stop."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    coarse = replace(ex.book.instruments[BTC], step_size=D("0.01"))
    assert held % coarse.step_size != 0, "the position is on the coarser step: proves nothing"
    ex.book.instruments[BTC] = coarse
    clock.advance(timedelta(minutes=5))
    ex.set_mark(BTC, FakeMarket().last_price(BTC, clock.now_ms())[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()  # a close-position stop and a take-profit on the step
    (take,) = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.TAKE_PROFIT]
    assert take.trigger_price is not None
    clock.advance(timedelta(minutes=5))
    ex.set_mark(BTC, take.trigger_price + 100)  # while down: the take-profit fills
    assert 0 < ex.fetch_positions([BTC])[BTC].qty < held
    clock.advance(timedelta(minutes=5))
    engine = engine_on(store, ex, clock)
    engine.tick()
    assert engine.foreign == set(), "the bot's own rest was judged not the bot's"
    stops = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stops, "the bot's stop on its own position was cancelled"


def kinds_of(store: SqlStore, kind: EventKind) -> list[str]:
    return [e.reason for e in store.recent_events(50) if e.kind is kind]


def test_a_position_grown_by_hand_while_the_bot_was_down_is_reported_added(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """The trader doubled the bot's long while no bot ran: the start takes the position for the
    bot's (its stop rests on it) and reports the addition, as one between two jobs is (before,
    it was taken whole without a word)."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    hand(ex, OrderSide.BUY, held, "myhand-add-1")
    clock.advance(timedelta(minutes=5))
    ex.set_mark(BTC, FakeMarket().last_price(BTC, clock.now_ms())[0])  # type: ignore[index]
    engine = engine_on(store, ex, clock)
    engine.guard()
    assert engine.foreign == set()
    [added] = kinds_of(store, EventKind.ADDED)
    assert f"position {held} -> {held * 2}: added outside the bot while no bot ran" in added
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.amount == held * 2  # its stop covers all of it
    clock.advance(timedelta(minutes=1))
    engine_on(store, ex, clock).guard()  # a later restart: nothing added since
    assert len(kinds_of(store, EventKind.ADDED)) == 1


def test_the_bots_own_entry_recorded_before_a_kill_is_no_addition_at_restart(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """A job of the bot's added to its long, recorded the entry filled, and died before
    recording its positions: the restart finds the position larger than recorded, explained
    by the bot's own fill. No ``added``; and a restart with nothing changed reports none."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine_on(store, ex, clock).tick()
    clock.advance(timedelta(minutes=5))
    now = clock.now_ms()
    request = OrderRequest(
        make_client_id("t", OrderPurpose.ENTRY, BTC, now, 1),
        BTC,
        OrderSide.BUY,
        OrderType.MARKET,
        OrderPurpose.ENTRY,
        D("0.01"),
        False,
    )
    store.save_intent(request, now)
    filled = ex.place_order(request)
    assert filled.status is OrderStatus.FILLED
    first = engine_on(store, ex, clock)
    fill = first.reconciler.fill_of(filled, None, now)
    store.update_order(request.client_id, OrderStatus.FILLED, now, order=filled, fill=fill)
    # ... killed here; started again
    clock.advance(timedelta(minutes=1))
    engine_on(store, ex, clock).guard()
    clock.advance(timedelta(minutes=1))
    engine_on(store, ex, clock).guard()
    assert kinds_of(store, EventKind.ADDED) == []
    assert kinds_of(store, EventKind.FOREIGN) == []
