"""Boundaries of the guard between ticks (bot/engine/tick.py Engine.guard, update_risk_state,
_needs_second_reading, flatten, protect_without_decision) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)"""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.enums import OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.engine.tick import Engine
from bot.risk.state import set_state
from tests.unit.test_engine import BTC, build
from tests.unit.test_second_reading import GarbledOnce


def _opened(instruments: dict[str, Instrument]):
    engine, ex, store = build(instruments)
    garble = GarbledOnce(ex)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    return engine, ex, store, garble, held


def test_the_guard_acts_on_the_lower_equity_the_account_had_since_the_last_check(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants g_observed (guard passes ``observed=None``) and s2_observed2 (the second reading
    drops ``observed``): the simulation runs the guard at the close of the candle whose WORST
    equity reached the loss limits' floor (backtest/replay.py _Guard.advance, README "Fail
    safe": the limits act on every mark, as the minute guard does live). A drawdown past the
    limit inside the candle that the close recovered must halt all the same. Any move to a
    worse state is read twice, so dropping ``observed`` on the second reading alone already
    lets the whole crash pass unhalted: the simulation report then shows a bot that rode
    through a 50 % intra-candle drawdown with a 25 % limit."""
    engine, _ex, store, _garble, _held = _opened(instruments)
    equity = engine.reconcile(engine.clock.now_ms()).equity()
    engine.clock.advance_to(engine.clock.now_ms() + 60_000)
    engine.guard(observed_equity=equity * D("0.5"))  # limit: 25 % drawdown
    mem = store.load_risk_memory()
    assert mem is not None
    assert mem.state is TradingState.HALTED, mem.state_reason
    assert "drawdown" in mem.state_reason


def test_a_restarts_first_reading_far_too_high_does_not_become_the_peak(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant s2_last_peak (the first reading after a start compared with itself instead of
    the recorded peak): a restarted engine has no last reading; a garbled first wallet read
    (x10) was taken as it was and became the peak, and the true equity read at the next guard
    was a 90 % drawdown: halt and flatten of a book that lost nothing (docstring of
    _needs_second_reading: "the first reading after a start is compared with the recorded
    peak")."""
    engine, ex, store, garble, held = _opened(instruments)
    restarted = Engine(
        clock=engine.clock,
        exchange=ex,
        market=engine.market,
        store=store,
        policy=engine.policy,
        contracts=engine.contracts,
        limits=engine.limits,
        account="t",
    )
    garble.arm("10")
    restarted.guard()
    mem = store.load_risk_memory()
    assert mem is not None
    assert mem.peak_equity < 2 * D(10000)
    engine.clock.advance_to(engine.clock.now_ms() + 60_000)
    restarted.guard()
    after = store.load_risk_memory()
    assert after is not None
    assert after.state is TradingState.ACTIVE, after.state_reason
    assert ex.fetch_positions([BTC])[BTC].qty == held


def test_a_reading_a_little_more_than_the_smallest_limit_above_the_last_is_read_again(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants s2_jump_max (``max`` of the limits) and s2_jump_ge (threshold doubled): a jump of
    8 % (daily limit 5 %, drawdown 25 %) must be read again. Taken as it is, a garbled +8 %
    becomes the peak for good: the drawdown halt (which flattens) then acts on a real loss of
    19 % instead of the configured 25 %, and the loss budget sizes every position on 6 points
    of room fewer."""
    engine, _ex, store, garble, _held = _opened(instruments)
    true_equity = engine.reconcile(engine.clock.now_ms()).equity()
    engine.clock.advance_to(engine.clock.now_ms() + 60_000)
    garble.arm("1.08")
    engine.guard()
    assert garble.reads >= 2
    mem = store.load_risk_memory()
    assert mem is not None
    assert mem.peak_equity < true_equity * D("1.01")


def test_a_flattening_halt_closes_a_position_larger_than_one_order_in_one_guard(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant f_first_only (Engine.flatten sends only the first of the split closes): a
    position three times the venue's largest market order (added by hand) needs three
    reduce-only orders; a halt that flattens must send them all in the guard that flattens
    (README: "a move to halted with flatten closes every position at once"), not one per
    minute while the market runs against the rest."""
    from tests.unit.test_largest_order import capped_engine

    c = capped_engine(instruments)
    c.engine.tick()
    c.add_by_hand(2)
    assert c.ex.fetch_positions([BTC])[BTC].qty == 3 * c.most
    memory = c.store.load_risk_memory()
    assert memory is not None
    c.store.save_risk_memory(set_state(memory, TradingState.HALTED, "test", sticky=True))
    c.engine.clock.advance_to(c.engine.clock.now_ms() + 60_000)  # type: ignore[attr-defined]
    c.engine.guard()
    assert c.ex.fetch_positions([BTC]).get(BTC) is None


def test_the_guards_stop_for_a_naked_position_is_the_policys_not_the_fallback(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant pw_fallback_snap (Engine._wanted_stop ignores the last statistics seen): a stop
    cancelled by hand is put back by the guard at the policy's distance around the mark on
    the contract's last statistics (docstring of protect_without_decision, README "Escalation");
    the 5 % fallback is for a contract never decided. The fallback put the stop elsewhere than
    the policy (here further away than the policy's, a larger loss than the budget sized for)."""
    engine, ex, _store, _garble, _held = _opened(instruments)
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.cancel_order(BTC, stop.client_id)  # by hand, the mark unchanged
    engine.clock.advance_to(engine.clock.now_ms() + 60_000)
    engine.guard()
    [again] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert again.trigger_price is not None
    mark = ex.fetch_mark_price(BTC)
    assert abs(again.trigger_price - stop.trigger_price) < mark * D("0.002")
