"""A change of the trading state and the event that says so are one write: a process killed
at that moment leaves neither, and the restarted bot makes the change again and records it
(the runner alerts a state change from its event: a halt saved without one was never told)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, TradingState
from bot.ports.store import RiskEvent, RiskMemory
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR_MS = 3_600_000


class Killed(BaseException):
    """Stands for kill -9: nothing catches it."""


class DiesAtTheHalt(SqlStore):
    """The process dies as it saves a move to ``halted``: the write is never committed."""

    def save_risk_memory(self, memory: RiskMemory, event: RiskEvent | None = None) -> None:
        if memory.state is TradingState.HALTED:
            raise Killed(memory.state_reason)
        super().save_risk_memory(memory, event)


def test_a_halt_cut_short_by_a_kill_is_made_and_recorded_after_the_restart(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, contracts=1))
    open_store(config, create=True).close()
    store = DiesAtTheHalt.open(config.runtime.database_url)
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    symbols = list(runner.engine.symbols)
    assert paper.sim.fetch_positions(symbols), "nothing opened"
    clock.advance_to(START + HOUR_MS)
    paper.sim.book.wallet -= paper.sim.book.wallet * Decimal("0.3")  # past the 25 % drawdown
    with pytest.raises(Killed):
        runner.guard()
    before = store.load_risk_memory()
    assert before is not None
    assert before.state is TradingState.ACTIVE  # nothing of the halt was written
    assert store.recent_events(100, kinds=(EventKind.STATE,)) == []
    store.close()
    store = open_store(config, create=True)  # the restart, on the state the kill left
    try:
        clock = SimClock(START + HOUR_MS + 60_000)
        runner, restarted = build_paper(config, store, replay=config.data.dir, clock=clock)
        runner.guard()
        memory = store.load_risk_memory()
        assert memory is not None
        assert (memory.state, memory.sticky) == (TradingState.HALTED, True)
        [event] = store.recent_events(100, kinds=(EventKind.STATE,))
        assert event.state is TradingState.HALTED
        assert "drawdown" in event.reason
        assert not restarted.sim.fetch_positions(symbols)  # and flattened
    finally:
        store.close()


class DiesAtAHaltEventOfItsOwn(SqlStore):
    """The process dies if a halt's event is written on its own, after the memory."""

    def record_event(self, event: RiskEvent) -> None:
        if event.kind is EventKind.STATE and event.state is TradingState.HALTED:
            raise Killed(event.reason)
        super().record_event(event)


def test_a_halts_event_is_not_a_write_of_its_own(tmp_path: Path) -> None:
    """Before, the memory was saved and the event recorded in two writes: a kill between them
    left the account halted (and flattened at the restart) with no event, no alert."""
    config = load_config(write_config(tmp_path, contracts=1))
    open_store(config, create=True).close()
    store = DiesAtAHaltEventOfItsOwn.open(config.runtime.database_url)
    try:
        clock = SimClock(START)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        assert runner.tick() is not None
        clock.advance_to(START + HOUR_MS)
        paper.sim.book.wallet -= paper.sim.book.wallet * Decimal("0.3")
        runner.guard()  # no separate write to die at
        memory = store.load_risk_memory()
        assert memory is not None
        assert memory.state is TradingState.HALTED
        [event] = store.recent_events(100, kinds=(EventKind.STATE,))
        assert event.state is TradingState.HALTED
    finally:
        store.close()


def test_the_memory_and_its_event_are_saved_together(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    try:
        memory = RiskMemory(
            state=TradingState.REDUCING,
            state_reason="why",
            peak_equity=Decimal(100),
            day_start_ms=0,
            day_start_equity=Decimal(90),
            sticky=False,
        )
        event = RiskEvent(
            ts_ms=5, kind=EventKind.STATE, symbol=None, state=memory.state, reason="why"
        )
        store.save_risk_memory(memory, event)
        assert store.load_risk_memory() == memory
        assert store.recent_events(10) == [event]
    finally:
        store.close()
