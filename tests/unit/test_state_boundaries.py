"""Boundaries of the trading state machine (bot/risk/state.py) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.domain.enums import TradingState
from bot.risk.guard import equity_floor
from bot.risk.limits import RiskLimits
from bot.risk.state import DAY_MS, daily_loss_reducing, initial_memory, set_state, update

LIMITS = RiskLimits(
    max_leverage_per_contract=D(5),
    max_gross_leverage=D(6),
    max_notional_per_contract=D(50000),
    daily_loss=D("0.05"),
    max_drawdown=D("0.2"),
    stale_data_ms=7_200_000,
    max_orders_per_minute=3,
)
DAY = 20_000 * DAY_MS


def test_drawdown_exactly_at_the_limit_halts_as_the_guard_floor_says() -> None:
    """Mutant s_dd_ge (``drawdown > max_drawdown``): the guard's floor is the equity "at or
    below which update changes the state" (risk/guard.py equity_floor), and the simulation runs
    the guard on the first candle at or below it; at exactly -20 % the state must halt."""
    limits = replace(LIMITS, daily_loss=D("0.5"))  # only the drawdown acts
    mem = initial_memory(D(10000), DAY)
    assert equity_floor(mem, limits) == D(8000)
    mem, t = update(mem, D(8000), DAY + 1, limits)
    assert t is not None
    assert mem.state is TradingState.HALTED
    assert mem.sticky
    assert mem.flatten


def test_stale_data_does_not_take_over_the_daily_loss_reducing() -> None:
    """Mutant s_stale_only_active (stale data re-labels any non-halted state): the daily
    loss's reducing (on_daily_loss = "reducing") must last the UTC day. Re-labelled "stale
    market data", the next fresh reading lifts it to active within the day the limit was
    reached, after the equity bounced above the daily floor."""
    reduces = replace(LIMITS, on_daily_loss="reducing")
    mem = initial_memory(D(10000), DAY)
    mem, _ = update(mem, D(9500), DAY + 1, reduces)  # -5 %: the daily loss's reducing
    assert daily_loss_reducing(mem)
    mem, _ = update(mem, D(9800), DAY + 2, reduces, stale=["BTC/USDT:USDT"])  # bounce, stale
    assert daily_loss_reducing(mem)
    mem, _ = update(mem, D(9800), DAY + 3, reduces, stale=[])  # fresh again, same day
    assert mem.state is TradingState.REDUCING
    assert daily_loss_reducing(mem)


def test_a_daily_loss_under_a_persons_hold_halt_keeps_the_halt_past_midnight() -> None:
    """Mutant s_dl_sticky (``sticky=False`` in the daily-loss branch): a person's plain
    ``bot halt`` (sticky, holding) that a daily loss turns into a flatten must stay halted at
    the next UTC day ("the halt stays until `bot resume`")."""
    mem = initial_memory(D(10000), DAY)
    mem = set_state(mem, TradingState.HALTED, "bot halt", sticky=True, flatten=False)
    mem, t = update(mem, D(9400), DAY + 1, LIMITS)
    assert t is not None
    assert t.flattens
    assert mem.state is TradingState.HALTED
    assert mem.flatten
    mem, _ = update(mem, D(9400), DAY + DAY_MS + 1, LIMITS)
    assert mem.state is TradingState.HALTED  # only `bot resume` lifts a person's halt


def test_a_daily_loss_set_to_reduce_leaves_a_persons_halt_a_halt() -> None:
    """Mutant s_moves_held (``or held`` instead of ``or (held and on_daily_loss == "halted")``):
    with on_daily_loss = "reducing", a daily loss under a person's halt would turn the halt
    into a reducing (a lower state) the person never asked for."""
    reduces = replace(LIMITS, on_daily_loss="reducing")
    mem = initial_memory(D(10000), DAY)
    mem = set_state(mem, TradingState.HALTED, "bot halt", sticky=True, flatten=False)
    mem, _ = update(mem, D(9400), DAY + 1, reduces)
    assert mem.state is TradingState.HALTED
