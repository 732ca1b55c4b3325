"""The count of unreadable account reads in a row survives a restart.

A bot that a supervisor restarts after each garbled answer must still reach
``risk.max_unreadable_reads`` and move to ``reducing``; a readable read ends the run, also for
the next run. Engines rebuilt over one SQLite store on a temporary file, against the simulated
exchange with a hand-written fault (a positions answer without the held position).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.enums import EventKind, TradingState
from bot.domain.instrument import Instrument
from bot.engine.contracts import ContractSpec
from bot.engine.read_streak import restored_streak
from bot.engine.tick import Engine
from bot.ports.store import RiskEvent
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket
from tests.unit.test_fail_safe import OmittingExchange

LIMIT = 3


def engine_on(store: SqlStore, ex: SimulatedExchange, clock: SimClock) -> Engine:
    assert LIMITS.max_unreadable_reads == LIMIT
    return Engine(
        clock=clock,
        exchange=ex,
        market=FakeMarket(),
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
    )


def state_of(store: SqlStore) -> TradingState:
    memory = store.load_risk_memory()
    assert memory is not None
    return memory.state


@pytest.fixture
def garbled(instruments: dict[str, Instrument]) -> tuple[OmittingExchange, SimClock]:
    """An account holding a protected position, whose positions answer then omits it."""
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    ex.__class__ = OmittingExchange
    assert isinstance(ex, OmittingExchange)
    return ex, clock


def test_the_limit_is_reached_across_restarts(
    store: SqlStore, garbled: tuple[OmittingExchange, SimClock]
) -> None:
    ex, clock = garbled
    engine_on(store, ex, clock).tick()  # opens and protects BTC
    assert ex.fetch_positions([BTC])
    ex.omit = True

    first = engine_on(store, ex, clock)
    for _ in range(LIMIT - 1):
        clock.advance(timedelta(minutes=1))
        assert first.tick().unreadable is not None
    assert state_of(store) is TradingState.ACTIVE

    second = engine_on(store, ex, clock)  # the supervisor restarts the bot
    assert second.unreadable_streak == LIMIT - 1
    clock.advance(timedelta(minutes=1))
    result = second.tick()
    assert result.unreadable is not None
    assert result.state is TradingState.REDUCING
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.REDUCING
    assert f"{LIMIT} reads in a row" in memory.state_reason

    # readable again after yet another restart: the run ends and reducing is lifted
    ex.omit = False
    third = engine_on(store, ex, clock)
    assert third.unreadable_streak == LIMIT
    clock.advance(timedelta(minutes=1))
    assert third.tick().unreadable is None
    assert state_of(store) is TradingState.ACTIVE
    readable = [e for e in store.recent_events(20) if e.kind is EventKind.READABLE]
    assert [e.reason for e in readable] == [
        f"account readable again after {LIMIT} unreadable read(s) in a row"
    ]

    # the next run starts from zero: one garbled read is one, not LIMIT + 1
    ex.omit = True
    fourth = engine_on(store, ex, clock)
    assert fourth.unreadable_streak == 0
    clock.advance(timedelta(minutes=1))
    assert fourth.tick().state is TradingState.ACTIVE
    assert fourth.unreadable_streak == 1


def test_the_streak_is_read_from_the_newest_events() -> None:
    def event(kind: EventKind, reason: str) -> RiskEvent:
        return RiskEvent(ts_ms=T0, kind=kind, symbol=None, state=TradingState.ACTIVE, reason=reason)

    unreadable = event(EventKind.UNREADABLE, "account unreadable (2 in a row): garbled; ...")
    readable = event(EventKind.READABLE, "account readable again after 2 unreadable read(s)")
    other = event(EventKind.RECONCILE, "account unreadable (9 in a row) quoted elsewhere")
    assert restored_streak([other, unreadable, readable]) == 2
    assert restored_streak([readable, unreadable]) == 0
    assert restored_streak([other]) == 0
    assert restored_streak([]) == 0
