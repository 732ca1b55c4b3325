"""A loss limit acts only on an equity read twice: one garbled answer that passed the adapter's
checks (a wallet read ten times too low or too high) must not halt the account and sell the book,
while a real loss still halts it in the same tick."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal as D

import pytest

from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.domain.position import Balance
from bot.engine.tick import Engine
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
