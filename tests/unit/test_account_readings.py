"""A guard records the account it read (positions, equity), as a reading that is not a
decision, when it tells something new: the status surfaces read the newest record, so a record
made by the decision tick alone showed, between two ticks, a position its stop had closed as
still open beside the guard's orders since (no stop: a false critical page; the loss not
counted). See bot/engine/readings.py."""

from __future__ import annotations

from decimal import Decimal as D

from bot.clock import SimClock
from bot.domain.enums import MarginMode, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.readings import REFRESH_MS, reading_of, worth_recording
from bot.sim.triggers import process_bar
from tests.conftest import T0
from tests.unit.test_engine import BTC, build, protective

MINUTE = 60_000
LIMIT = D("0.05")  # the smallest loss limit: a move of 0.5 % of the equity is recorded at once


def _acct(qty: str = "1", wallet: str = "10000", mark: str = "100") -> AccountView:
    pos = Position(BTC, D(qty), D(100), D(2), MarginMode.ISOLATED, liquidation_price=D(50))
    return AccountView(D(wallet), {BTC: pos} if D(qty) else {}, {}, {BTC: D(mark)})


def test_a_reading_is_recorded_when_it_tells_something_new() -> None:
    last = reading_of(_acct(), T0, TradingState.ACTIVE)

    def worth(acct: AccountView, after_ms: int = MINUTE, state: str = "active") -> bool:
        now = reading_of(acct, T0 + after_ms, TradingState(state))
        return worth_recording(last, now, LIMIT)

    assert worth_recording(None, last, LIMIT)  # nothing recorded by this process yet
    assert not worth(_acct())  # the same account a minute later
    assert worth(_acct(qty="0"))  # closed (its stop filled, a flatten)
    assert worth(_acct(qty="2"))  # added to
    assert worth(_acct(wallet="9990"))  # a fee, a realised loss, a funding payment
    assert worth(_acct(), state="halted")
    # the unrealised PnL: at once from a tenth of the smallest loss limit (0.5 % of 10000)
    assert not worth(_acct(mark="149"))  # +49
    assert worth(_acct(mark="150"))  # +50: the daily loss shown moves by a tenth of its limit
    assert worth(_acct(mark="50"))
    # otherwise every REFRESH_MS (the marks, the liquidation prices of cross positions)
    assert not worth(_acct(mark="101"), REFRESH_MS - 1)
    assert worth(_acct(mark="101"), REFRESH_MS)


def test_a_cross_liquidation_price_moving_alone_is_no_change() -> None:
    """A cross position's liquidation price moves with every mark of the account: taken as a
    change, the guard would record every minute."""
    before = _acct()
    moved = AccountView(
        before.wallet,
        {BTC: Position(BTC, D(1), D(100), D(2), MarginMode.CROSS, liquidation_price=D(51))},
        {},
        dict(before.marks),
    )
    cross = AccountView(
        before.wallet,
        {BTC: Position(BTC, D(1), D(100), D(2), MarginMode.CROSS, liquidation_price=D(50))},
        {},
        dict(before.marks),
    )
    last = reading_of(cross, T0, TradingState.ACTIVE)
    assert not worth_recording(last, reading_of(moved, T0 + MINUTE, TradingState.ACTIVE), LIMIT)


def test_a_guard_records_the_stop_out_it_found_and_nothing_when_nothing_changed(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, store = build(instruments)
    clock = ex.clock
    assert isinstance(clock, SimClock)
    engine.tick()
    [tick_equity] = store.equity
    held = store.latest_positions()
    assert held is not None
    assert held[1]
    engine.guard()  # the account as the tick left it: nothing recorded
    assert len(store.equity) == len(store.positions) == 1
    # the stop fills between two ticks
    [sl] = protective(ex)[OrderPurpose.STOP_LOSS]
    assert sl.trigger_price is not None
    low = sl.trigger_price - 100
    process_bar(ex, BTC, T0 + 1, ex.marks[BTC], ex.marks[BTC], low, low)
    clock.advance_to(T0 + MINUTE)
    engine.guard()
    assert store.latest_positions() == (T0 + MINUTE, [])
    reading = store.equity[-1]
    assert (reading.ts_ms, reading.wallet) == (T0 + MINUTE, ex.fetch_balance().wallet)
    assert reading.wallet < tick_equity.wallet  # the stop's loss
    assert not reading.decision  # a guard's reading: not a tick
    assert [r.decision.symbol for r in store.decisions] == [BTC]  # no decision recorded
