"""A loss limit acts only on an equity read twice: one garbled answer that passed the adapter's
checks (a wallet read ten times too low or too high) must not halt the account and sell the book,
while a real loss still halts it in the same tick."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.domain.position import Balance
from bot.engine.tick import Engine
from bot.risk.state import DAY_MS
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.unit.test_engine import BTC, build


class GarbledOnce:
    """Wraps the simulated exchange's balance read: the ``at``-th read (counted from the moment
    it is armed) reports the wallet times ``factor``; every other read is the true one."""

    def __init__(self, ex: SimulatedExchange) -> None:
        self.ex = ex
        self.true_read = ex.fetch_balance
        self.reads = 0
        self.at: int | None = None
        self.factor = D(1)
        ex.fetch_balance = self.read  # type: ignore[method-assign]

    def arm(self, factor: str, at: int = 1) -> None:
        self.reads, self.at, self.factor = 0, at, D(factor)

    def read(self) -> Balance:
        self.reads += 1
        true = self.true_read()
        if self.reads == self.at:
            return replace(true, wallet=true.wallet * self.factor)
        return true


def stops(ex: SimulatedExchange) -> list[object]:
    return [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]


@dataclass
class Opened:
    """An engine whose first tick opened a protected long, its balance read wrapped."""

    engine: Engine
    ex: SimulatedExchange
    store: MemoryStore
    garble: GarbledOnce
    held: D


@pytest.fixture
def opened(instruments: dict[str, Instrument]) -> Opened:
    engine, ex, store = build(instruments)
    garble = GarbledOnce(ex)
    engine.tick()
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    return Opened(engine, ex, store, garble, held)


def test_one_wallet_read_far_too_low_neither_halts_nor_sells(opened: Opened) -> None:
    ex, store, garble = opened.ex, opened.store, opened.garble
    garble.arm("0.1")  # a 90 % loss on the first read of the next tick, true on the second
    result = opened.engine.tick()
    assert garble.reads >= 2  # read again before acting
    assert result.state is TradingState.ACTIVE
    assert ex.fetch_positions([BTC])[BTC].qty == opened.held
    assert len(stops(ex)) == 1
    assert not [e for e in store.events if e.kind is EventKind.STATE]


def test_one_guard_read_far_too_low_neither_halts_nor_sells(opened: Opened) -> None:
    opened.garble.arm("0.1")
    opened.engine.guard()
    mem = opened.store.load_risk_memory()
    assert mem is not None
    assert mem.state is TradingState.ACTIVE
    assert opened.ex.fetch_positions([BTC])[BTC].qty == opened.held


def test_one_wallet_read_far_too_high_does_not_become_the_peak(opened: Opened) -> None:
    """Kept, a tenfold wallet would be the peak, and the true equity read next a 90 % drawdown."""
    opened.garble.arm("10")
    opened.engine.tick()
    mem = opened.store.load_risk_memory()
    assert mem is not None
    assert mem.peak_equity < 2 * D(10000)
    result = opened.engine.tick()
    assert result.state is TradingState.ACTIVE
    assert opened.ex.fetch_positions([BTC])[BTC].qty == opened.held


def test_a_loss_read_twice_halts_in_the_same_tick(opened: Opened) -> None:
    ex, store, garble = opened.ex, opened.store, opened.garble
    # The wallet really is gone (both readings agree): the drawdown halt flattens at once.
    ex.book.wallet = ex.book.wallet * D("0.1")
    garble.arm("1")
    result = opened.engine.tick()
    assert garble.reads >= 2
    assert result.state is TradingState.HALTED
    assert ex.fetch_positions([BTC]).get(BTC) is None
    [moved] = [e for e in store.events if e.kind is EventKind.STATE]
    assert "drawdown" in moved.reason


def test_an_ordinary_tick_reads_the_balance_once(opened: Opened) -> None:
    opened.garble.arm("1", at=0)
    opened.engine.tick()
    opened.engine.tick()
    assert opened.garble.reads == 2


def _next_day(engine: Engine) -> None:
    clock = engine.clock
    assert isinstance(clock, SimClock)
    now = clock.now_ms()
    clock.advance_to(now - now % DAY_MS + DAY_MS + 30_000)


@pytest.mark.parametrize("factor", ["0.85", "1.15"])
def test_the_reading_that_starts_a_new_day_is_read_twice(opened: Opened, factor: str) -> None:
    """It becomes the day's start: garbled low (not past any limit), a real loss that day would
    not count; garbled high, the true equity read next would be a loss never made."""
    engine, ex, store = opened.engine, opened.ex, opened.store
    _next_day(engine)
    true_equity = engine.reconcile(engine.clock.now_ms()).equity()
    opened.garble.arm(factor)
    engine.guard()
    mem = store.load_risk_memory()
    assert mem is not None
    assert opened.garble.reads >= 2
    assert abs(mem.day_start_equity - true_equity) < true_equity * D("0.001")
    assert mem.state is TradingState.ACTIVE
    # a real loss of 10 % that day (daily limit 5 %, drawdown 25 %) halts
    ex.book.wallet -= true_equity * D("0.10")
    engine.clock.advance_to(engine.clock.now_ms() + 60_000)  # type: ignore[attr-defined]
    engine.guard()
    mem = store.load_risk_memory()
    assert mem is not None
    assert mem.state is TradingState.HALTED
    assert "daily loss" in mem.state_reason


def test_a_restart_on_a_new_day_reads_the_days_start_twice(opened: Opened) -> None:
    """Down over midnight, 20 % below the peak (limit 25 %): the restarted engine's first
    reading, 15 % high but still below the recorded peak, must not become the day's start (the
    true equity read next would be a 13 % daily loss and sell the book)."""
    engine, ex, store = opened.engine, opened.ex, opened.store
    equity = engine.reconcile(engine.clock.now_ms()).equity()
    mem = store.load_risk_memory()
    assert mem is not None
    store.save_risk_memory(replace(mem, peak_equity=equity / D("0.8")))
    _next_day(engine)
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
    opened.garble.arm("1.15")
    restarted.guard()
    engine.clock.advance_to(engine.clock.now_ms() + 60_000)  # type: ignore[attr-defined]
    restarted.guard()
    after = store.load_risk_memory()
    assert after is not None
    assert after.state is TradingState.ACTIVE, after.state_reason
    assert ex.fetch_positions([BTC])[BTC].qty == opened.held
