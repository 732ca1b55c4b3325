"""An account whose loss budget has no room for any position says so, and a person can reset it.

Within a hair of its drawdown limit (or its daily-loss limit), a flat account's loss budget,
which sizes every position so its stop cannot take the account past the limit, cut every
position the policy wanted to nothing. The account stopped trading for good with no limit
reached: its state read ``active``, no alert said why, and ``bot resume`` reset nothing (it
resets only a limit breached). Found on the conservative policy's one-run walk-forward: idle for
eight months at 9.997 % of a 10 % drawdown limit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import numpy as np

from bot.backtest.operator import resume_if_due
from bot.clock import SimClock
from bot.domain.decision import Decision
from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.engine.tick import Engine
from bot.ports.store import RiskEvent, RiskMemory
from bot.risk.loss_budget import BUDGET_EXHAUSTED, loss_at_stop, no_room_to_open
from bot.risk.state import DAY_MS, initial_memory, update
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0
from tests.unit.test_engine import BTC, HOUR, LIMITS, FakeMarket, build


def _decision(qty: str, stop: str | None = "58000", allow: bool = True) -> Decision:
    return Decision(
        symbol=BTC,
        direction=1 if D(qty) > 0 else 0,
        target_leverage=D(1),
        target_qty=D(qty),
        stop_loss=D(stop) if stop is not None else None,
        take_profit=None,
        reason="policy",
        allow_increase=allow,
    )


def test_no_room_only_when_flat_and_every_wanted_position_was_cut_to_nothing() -> None:
    want, cut, kept = _decision("0.1"), _decision("0"), _decision("0.05")
    assert no_room_to_open([want], [cut], flat=True) is True
    assert no_room_to_open([want], [kept], flat=True) is False  # ample: half its size or more
    # a sliver fits: neither (no flapping on the odd minimum order 0.005 % above the floor)
    assert no_room_to_open([want], [_decision("0.049")], flat=True) is None
    assert no_room_to_open([want, want], [cut, kept], flat=True) is None
    assert no_room_to_open([want], [cut], flat=False) is None  # held: not idle
    assert no_room_to_open([_decision("0")], [_decision("0")], flat=True) is None  # nothing wanted
    # a position without a stop, or one the gate or a cooldown holds back, is not the budget's
    assert no_room_to_open([_decision("0.1", None)], [cut], flat=True) is None
    assert no_room_to_open([_decision("0.1", allow=False)], [cut], flat=True) is None
    assert no_room_to_open([], [], flat=True) is None


class _UntilTheNextDay(FakeMarket):
    """Hourly candles until T0 + 10 h, each seen once it has closed."""

    def __init__(self) -> None:
        super().__init__()
        self.ts = self.ts + 10 * HOUR

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        k = int(np.searchsorted(self.ts, now_ms - HOUR, side="right")) - 1
        return D(f"{self.close[k]:.1f}"), int(self.ts[k]) + HOUR


def _flat_just_above(
    instruments: dict[str, Instrument], *, daily: bool
) -> tuple[Engine, SimulatedExchange, MemoryStore, SimClock]:
    """A flat account 0.001 % above its drawdown floor (or its daily-loss floor); its market
    has candles until the next UTC day (T0 is 15:00 UTC)."""
    engine, ex, store = build(instruments, _UntilTheNextDay())
    clock = engine.clock
    assert isinstance(clock, SimClock)
    equity = ex.fetch_balance().wallet
    memory = initial_memory(equity, clock.now_ms())
    limit = LIMITS.daily_loss if daily else LIMITS.max_drawdown
    above = equity / (1 - limit + D("0.00001"))  # the equity is 0.001 % above that floor
    if daily:
        memory = replace(memory, day_start_equity=above)
    else:
        memory = replace(memory, peak_equity=above, day_start_equity=equity)
    store.save_risk_memory(memory)
    return engine, ex, store, clock


def _memory(store: MemoryStore) -> RiskMemory:
    memory = store.load_risk_memory()
    assert memory is not None
    return memory


def _states(store: MemoryStore) -> list[str]:
    return [e.reason for e in store.events if e.kind == EventKind.STATE]


def test_a_flat_account_just_above_its_drawdown_floor_reduces_and_says_why(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, clock = _flat_just_above(instruments, daily=False)
    engine.tick()
    memory = _memory(store)
    assert ex.fetch_positions([BTC]) == {}  # nothing fits the budget: nothing opened
    # Before: state active, no event; the account idle for good.
    assert memory.state is TradingState.REDUCING
    assert memory.state_reason.startswith(BUDGET_EXHAUSTED)
    assert "drawdown floor" in memory.state_reason
    assert "bot resume" in memory.state_reason
    assert memory.sticky  # a new UTC day does not lift it (the floor has not moved)
    assert len(_states(store)) == 1
    clock.advance(timedelta(hours=9))
    engine.tick()  # the next UTC day, still no room: still reducing, no second event
    assert _memory(store).state is TradingState.REDUCING
    assert len(_states(store)) == 1
    # A higher limit (a restart with a new configuration) gives room: active, and it trades.
    engine.limits = replace(LIMITS, max_drawdown=D("0.5"))
    clock.advance(timedelta(hours=1))
    engine.tick()
    assert _memory(store).state is TradingState.ACTIVE
    assert _states(store)[-1].startswith("reducing -> active: the loss budget has room again")
    assert ex.fetch_positions([BTC])[BTC].qty > 0


def test_a_flat_account_just_above_its_daily_floor_trades_again_the_next_day(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store, clock = _flat_just_above(instruments, daily=True)
    engine.tick()
    memory = _memory(store)
    assert memory.state is TradingState.REDUCING
    assert "daily-loss floor" in memory.state_reason
    assert "next UTC day" in memory.state_reason
    assert not memory.sticky
    assert ex.fetch_positions([BTC]) == {}
    assert T0 % DAY_MS == 15 * HOUR
    clock.advance_to(T0 - T0 % DAY_MS + DAY_MS)  # the next UTC day
    engine.tick()
    assert _memory(store).state is TradingState.ACTIVE
    assert ex.fetch_positions([BTC])[BTC].qty > 0


def test_where_a_daily_loss_only_reduces_the_daily_floor_still_holds_until_the_next_day(
    instruments: dict[str, Instrument],
) -> None:
    """``on_daily_loss = "reducing"``: the exhausted budget's reducing is not a daily loss, so
    the budget still measures from the daily floor while in it. Before, a reducing with that
    setting measured from the drawdown floor alone: at the next tick the budget had ample room,
    the account went back to ``active`` and opened the policy's full size a hair above the
    daily floor (a 300 USDT account 3 USDT above it bought a position whose stop lost 32.7)."""
    engine, ex, store, clock = _flat_just_above(instruments, daily=True)
    engine.limits = replace(LIMITS, on_daily_loss="reducing")
    engine.tick()
    memory = _memory(store)
    assert memory.state is TradingState.REDUCING
    assert memory.state_reason.startswith(BUDGET_EXHAUSTED)
    assert not memory.sticky
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        engine.tick()
        assert _memory(store).state is TradingState.REDUCING
        assert ex.fetch_positions([BTC]) == {}
    assert len(_states(store)) == 1  # no "reducing -> active" within the day
    clock.advance_to(T0 - T0 % DAY_MS + DAY_MS)  # the next UTC day: lifted, and it trades
    engine.tick()
    memory = _memory(store)
    assert memory.state is TradingState.ACTIVE
    held = ex.fetch_positions([BTC])[BTC]
    assert held.qty > 0
    # within what the new day's limit leaves if its stop fires
    stop = next(o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS)
    assert stop.trigger_price is not None
    mark = ex.fetch_mark_price(BTC)
    loss = loss_at_stop(held.qty, mark, stop.trigger_price, D(0), instruments[BTC])
    assert loss <= memory.day_start_equity * LIMITS.daily_loss


def test_a_held_position_under_a_tight_budget_is_not_idle(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    engine.tick()  # opens a position with its stop
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    clock = engine.clock
    assert isinstance(clock, SimClock)
    memory = _memory(store)
    equity = ex.fetch_balance().wallet
    tight = equity / (1 - LIMITS.max_drawdown + D("0.00001"))
    store.save_risk_memory(replace(memory, peak_equity=max(memory.peak_equity, tight)))
    clock.advance(timedelta(hours=1))
    engine.tick()  # the budget cuts the position; held, the account is not idle
    assert _memory(store).state is TradingState.ACTIVE
    assert not any(BUDGET_EXHAUSTED in r for r in _states(store))


def test_the_simulations_operator_resumes_an_exhausted_budget_as_a_halt() -> None:
    # `[simulation] resume_after_halt` models a person who runs `bot resume` that long after
    # the alert; an exhausted budget under the drawdown floor asks for the same.
    store = MemoryStore()
    memory = replace(initial_memory(D(10000), 0), peak_equity=D(11170), state=TradingState.REDUCING)
    reason = f"{BUDGET_EXHAUSTED}: equity 10054 is 0.55 above the drawdown floor ..."
    store.save_risk_memory(replace(memory, state_reason=reason, sticky=True))
    store.record_event(
        RiskEvent(
            ts_ms=0,
            kind=EventKind.STATE,
            symbol=None,
            state=TradingState.REDUCING,
            reason=f"active -> reducing: {reason}",
        )
    )
    assert not resume_if_due(store, 71 * HOUR, D(10054), 72 * HOUR)
    assert resume_if_due(store, 72 * HOUR, D(10054), 72 * HOUR)
    after = _memory(store)
    assert after.state is TradingState.ACTIVE
    assert after.peak_equity == D(10054)
    assert "after the loss budget ran out" in after.state_reason
    # a reducing of another cause is not the operator's to resume
    other = replace(after, state=TradingState.REDUCING, state_reason="stale market data: BTC")
    store.save_risk_memory(replace(other, sticky=True))
    assert not resume_if_due(store, 200 * HOUR, D(10054), 72 * HOUR)


def test_a_daily_loss_from_an_exhausted_budget_halts_for_the_day_only() -> None:
    # The exhausted budget's reducing is sticky (under the drawdown floor); a daily-loss halt
    # from it (a hedge or a foreign position moved the equity) lasts the UTC day, as from any
    # other state, not until a person resumes it.
    limits = replace(LIMITS, on_daily_loss="halted")
    memory = replace(
        initial_memory(D(10000), 0),
        state=TradingState.REDUCING,
        state_reason=f"{BUDGET_EXHAUSTED}: ...",
        sticky=True,
    )
    halted, moved = update(memory, D(9400), 60_000, limits, [])
    assert moved is not None
    assert halted.state is TradingState.HALTED
    assert not halted.sticky
    assert "until the next UTC day" in halted.state_reason
    next_day, _ = update(halted, D(9400), DAY_MS + 60_000, limits, [])
    assert next_day.state is TradingState.ACTIVE
