"""The trading state machine and the risk gate."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.domain.enums import OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.orders import OrderRequest
from bot.risk.gate import Approved, Denied, OrderContext, RiskGate
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


def test_daily_loss_halts_until_the_next_utc_day() -> None:
    mem = initial_memory(D(10000), DAY + 1000)
    mem, t = update(mem, D(9600), DAY + 2000, LIMITS)
    assert t is None
    assert mem.state is TradingState.ACTIVE
    mem, t = update(mem, D(9500), DAY + 3000, LIMITS)  # -5.00 %: at the limit
    assert t is not None
    assert mem.state is TradingState.HALTED
    assert not mem.sticky
    mem, t = update(mem, D(9500), DAY + DAY_MS + 1, LIMITS)
    assert mem.state is TradingState.ACTIVE
    assert mem.day_start_equity == D(9500)


def test_drawdown_is_measured_from_the_peak_and_sticky() -> None:
    mem = initial_memory(D(10000), DAY)
    mem, _ = update(mem, D(13000), DAY + 1, LIMITS)  # new peak (+30 %)
    for day in range(1, 5):  # small daily losses, each below the daily limit
        mem, _ = update(mem, D(13000) - D(700) * day, DAY + day * DAY_MS, LIMITS)
    # 13000 -> 10200 is -21.5 % from the peak although still +2 % from the start
    assert mem.state is TradingState.HALTED
    assert mem.sticky
    mem, _ = update(mem, D(10200), DAY + 9 * DAY_MS, LIMITS)
    assert mem.state is TradingState.HALTED  # a new day does not release a drawdown halt
    mem = set_state(mem, TradingState.ACTIVE, "resumed by a person", sticky=False)
    assert mem.state is TradingState.ACTIVE


def req(reduce: bool, amount: str = "0.1", side: OrderSide = OrderSide.BUY) -> OrderRequest:
    purpose = OrderPurpose.REDUCE if reduce else OrderPurpose.ENTRY
    return OrderRequest("c", "BTC/USDT:USDT", side, OrderType.MARKET, purpose, D(amount), reduce)


def ctx(
    state: TradingState = TradingState.ACTIVE,
    age: int = 0,
    qty: str = "0",
    now: int = 0,
    mono: int | None = None,
) -> OrderContext:
    """``mono``: the clock's monotonic ms (default: ``now``, a clock that never stepped)."""
    return OrderContext(
        state=state,
        now_ms=now,
        monotonic_ms=now if mono is None else mono,
        data_age_ms=age,
        price=D(60000),
        position_qty=D(qty),
        sleeve_equity=D(5000),
        equity=D(10000),
        gross_notional_other=D(0),
        max_leverage_contract=D(125),
    )


def test_reducing_and_halted_pass_only_reduce_only() -> None:
    gate = RiskGate(LIMITS)
    for state in (TradingState.REDUCING, TradingState.HALTED):
        verdict = gate.check(req(False), ctx(state))
        assert isinstance(verdict, Denied)
        assert state.value in verdict.reason
        assert isinstance(
            gate.check(req(True, side=OrderSide.SELL), ctx(state, qty="0.2")), Approved
        )


def test_a_contract_the_venue_restricts_passes_only_reduce_only() -> None:
    gate = RiskGate(LIMITS)
    why = "BTC/USDT:USDT: withdrawn by the venue (status SETTLING)"
    restricted = replace(ctx(qty="0.2"), restricted=why)
    entry = gate.check(req(False), restricted)
    assert isinstance(entry, Denied)
    assert entry.reason == f"{why}: only reduce-only orders pass"
    assert isinstance(gate.check(req(True, side=OrderSide.SELL), restricted), Approved)
    assert isinstance(gate.check(req(False), ctx(qty="0.2")), Approved)  # another contract


def test_leverage_notional_stale_and_rate_limits() -> None:
    gate = RiskGate(LIMITS)
    assert isinstance(gate.check(req(False, "0.4"), ctx()), Approved)  # 24000 / 5000 = 4.8x
    lev = gate.check(req(False, "0.5"), ctx())  # 6x > 5
    assert isinstance(lev, Denied)
    assert "leverage 6.00" in lev.reason
    stale = gate.check(req(False), ctx(age=7_300_000))
    assert isinstance(stale, Denied)
    assert "old" in stale.reason
    gate2 = RiskGate(LIMITS)
    verdicts = [gate2.check(req(False, "0.01"), ctx(now=i)) for i in range(4)]
    assert [type(v).__name__ for v in verdicts] == ["Approved"] * 3 + ["Denied"]
    # reduce-only orders always pass the rate limit: a position is never left unprotected
    assert isinstance(gate2.check(req(True, side=OrderSide.SELL), ctx(qty="0.1", now=5)), Approved)
    assert isinstance(gate2.check(req(False, "0.01"), ctx(now=61_000)), Approved)


def test_the_order_rate_counts_on_monotonic_time_whatever_the_wall_clock_does() -> None:
    # Counted on wall time, a clock stepped back an hour kept the last minute's orders "in the
    # last minute" for an hour (entries refused), and one stepped forward forgot them.
    t0, m0 = 1_750_000_000_000, 5_000_000
    gate = RiskGate(LIMITS)  # 3 orders a minute
    for i in range(3):
        assert isinstance(gate.check(req(False, "0.01"), ctx(now=t0 + i, mono=m0 + i)), Approved)
    # 10 s later, the wall clock stepped forward an hour: still the same minute.
    ahead = gate.check(req(False, "0.01"), ctx(now=t0 + 3_610_000, mono=m0 + 10_000))
    assert isinstance(ahead, Denied)
    assert "order rate: 3 orders in the last minute" in ahead.reason
    # 61 s after the orders, the wall clock stepped back an hour: the minute is over.
    back = gate.check(req(False, "0.01"), ctx(now=t0 - 3_539_000, mono=m0 + 61_000))
    assert isinstance(back, Approved)


def test_per_contract_notional_cap_is_the_tighter_one() -> None:
    gate = RiskGate(LIMITS)
    c = ctx()
    tight = OrderContext(
        **{**{f: getattr(c, f) for f in c.__slots__}, "max_notional_contract": D(5000)}
    )
    verdict = gate.check(req(False, "0.1"), tight)  # 6000 > 5000
    assert isinstance(verdict, Denied)
    assert "limit 5000" in verdict.reason


def test_stale_data_moves_to_reducing_and_back() -> None:
    mem = initial_memory(D(10000), DAY)
    mem, t = update(mem, D(10000), DAY + 1, LIMITS, stale=["BTC/USDT:USDT"])
    assert t is not None
    assert mem.state is TradingState.REDUCING
    assert "stale market data: BTC/USDT:USDT" in mem.state_reason
    mem, t = update(mem, D(10000), DAY + 2, LIMITS)  # not known in this call: unchanged
    assert mem.state is TradingState.REDUCING
    mem, t = update(mem, D(10000), DAY + 3, LIMITS, stale=[])
    assert mem.state is TradingState.ACTIVE
    assert t is not None


def test_a_daily_loss_that_reduces_takes_over_a_reducing_of_another_cause() -> None:
    """With ``on_daily_loss = "reducing"`` a daily loss reached in a reducing entered for
    another reason (here stale data) makes the reducing the daily loss's: it lasts the UTC day
    and the loss budget measures from the drawdown floor alone. Before, the state was already
    ``reducing`` (the same severity) and kept its cause: fresh data lifted it within the day,
    with the daily limit reached, and the budget still measured from the daily floor."""
    reduces = replace(LIMITS, on_daily_loss="reducing")
    mem = initial_memory(D(10000), DAY)
    mem, _ = update(mem, D(10000), DAY + 1, reduces, stale=["BTC/USDT:USDT"])
    assert mem.state is TradingState.REDUCING
    assert not daily_loss_reducing(mem)
    assert equity_floor(mem, reduces) == D(9500)  # the daily floor is still watched
    mem, t = update(mem, D(9500), DAY + 2, reduces)  # -5 %: at the daily limit
    assert t is not None
    assert (t.before, t.after, t.recaused, t.worse) == (
        TradingState.REDUCING,
        TradingState.REDUCING,
        True,
        True,
    )
    assert daily_loss_reducing(mem)
    assert mem.state_reason.startswith("daily loss 5.00% >= limit 5.00%")
    assert not mem.sticky
    assert equity_floor(mem, reduces) == D(8000)  # only the drawdown halt is left today
    mem, t = update(mem, D(9500), DAY + 3, reduces, stale=[])  # data fresh again
    assert t is None
    assert mem.state is TradingState.REDUCING  # the daily loss's: not lifted by fresh data
    mem, t = update(mem, D(9400), DAY + 4, reduces)  # further down: nothing new
    assert t is None
    mem, t = update(mem, D(9400), DAY + DAY_MS, reduces, stale=[])  # the next UTC day
    assert t is not None
    assert mem.state is TradingState.ACTIVE


def test_a_daily_loss_reducing_is_not_taken_over_again() -> None:
    reduces = replace(LIMITS, on_daily_loss="reducing")
    mem = initial_memory(D(10000), DAY)
    mem, t = update(mem, D(9500), DAY + 1, reduces)
    assert t is not None
    assert (t.before, t.after, t.recaused) == (TradingState.ACTIVE, TradingState.REDUCING, False)
    assert daily_loss_reducing(mem)
    mem, t = update(mem, D(9000), DAY + 2, reduces)
    assert t is None
    # A memory saved by an older version (the same reason, no other field) reads the same.
    older = replace(mem, state_reason="daily loss 6.20% >= limit 5.00% (until the next UTC day)")
    assert daily_loss_reducing(older)
    assert not daily_loss_reducing(replace(older, state=TradingState.HALTED))


def test_a_clock_stepping_back_over_midnight_keeps_the_days_loss_and_halt() -> None:
    # A wall clock corrected backwards (NTP, a bad RTC after a suspend) across 00:00 UTC must
    # not start "a new day": the loss of the real day would be forgotten and its halt lifted.
    mem = initial_memory(D(10000), DAY + 60_000)  # 00:01 UTC
    mem, t = update(mem, D(9500), DAY + 120_000, LIMITS)  # -5 %: halted for the day
    assert t is not None
    assert mem.state is TradingState.HALTED
    mem, t = update(mem, D(9500), DAY - 60_000, LIMITS)  # the clock reads 23:59 yesterday
    assert t is None
    assert mem.state is TradingState.HALTED
    assert mem.day_start_ms == DAY
    assert mem.day_start_equity == D(10000)
    mem, t = update(mem, D(9500), DAY + 180_000, LIMITS)  # back on time: still the same day
    assert t is None
    assert mem.state is TradingState.HALTED
    assert mem.day_start_equity == D(10000)
    mem, _ = update(mem, D(9500), DAY + DAY_MS, LIMITS)  # the real next day
    assert mem.state is TradingState.ACTIVE
    assert mem.day_start_equity == D(9500)


def test_a_drawdown_crossed_under_a_daily_loss_halt_makes_it_a_persons_to_lift() -> None:
    """The daily halt's closes refused (a crash), the positions fall on past the drawdown
    floor: the halt becomes the drawdown's, sticky, and says so; the next UTC day keeps it."""
    mem = initial_memory(D(10000), DAY + 1000)
    mem, t = update(mem, D(9400), DAY + 2000, LIMITS)  # -6 %: daily halt
    assert t is not None
    assert (mem.state, mem.sticky) == (TradingState.HALTED, False)
    mem, t = update(mem, D(7900), DAY + 3000, LIMITS)  # -21 % from the peak: limit 20 %
    assert t is not None
    assert (t.before, t.after, t.sticks, t.worse) == (
        TradingState.HALTED,
        TradingState.HALTED,
        True,
        True,
    )
    assert "drawdown" in t.reason
    assert (mem.state, mem.sticky, mem.flatten) == (TradingState.HALTED, True, True)
    mem, t = update(mem, D(8100), DAY + 4000, LIMITS)  # back above the floor: nothing new
    assert t is None
    mem, t = update(mem, D(8100), DAY + DAY_MS + 1000, LIMITS)  # the next UTC day
    assert t is None
    assert mem.state is TradingState.HALTED


def test_a_day_start_of_zero_is_taken_from_the_first_reading() -> None:
    """A memory started at 0 (a `bot halt` applied before the first job) gets its day's start
    from the first reading: the daily limit counts from it the same day."""
    mem = replace(initial_memory(D(0), DAY + 1000), state=TradingState.ACTIVE)
    mem, t = update(mem, D(10000), DAY + 2000, LIMITS)
    assert t is None
    assert (mem.day_start_equity, mem.peak_equity) == (D(10000), D(10000))
    mem, t = update(mem, D(9400), DAY + 3000, LIMITS)
    assert t is not None
    assert mem.state is TradingState.HALTED
    assert "daily loss" in mem.state_reason
