"""What a restart restores from the recorded events (re-entry cooldowns, the unreadable-read
streak) and what a job alerts (state changes, incidents) is found however many other events were
recorded after it: weeks of unattended running, an exchange outage's unreadable reads every
minute, a denial on every tick of forty contracts.

The store is SQLite on a temporary file, so a rebuilt engine reads what was written before.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal as D

from bot.alerts import AlertRules, Notifier
from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.enums import EventKind, TradingState
from bot.domain.position import Position
from bot.engine.contracts import ContractSpec
from bot.engine.read_streak import unreadable_reason
from bot.engine.reentry import Cooldowns
from bot.engine.tick import Engine
from bot.errors import TransientExchangeError
from bot.ports.store import RiskEvent
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.conftest import T0, make_exchange
from tests.fakes.alert_outbox import Outbox
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket

HOUR = 3_600_000
MANY = 2_000  # far more than any fixed window of recent events


def event(ts_ms: int, kind: EventKind, reason: str, symbol: str | None = None) -> RiskEvent:
    return RiskEvent(
        ts_ms=ts_ms, kind=kind, symbol=symbol, state=TradingState.ACTIVE, reason=reason
    )


def engine_on(
    store: SqlStore,
    clock: SimClock,
    instruments: dict[str, object],
    ex: SimulatedExchange | None = None,
) -> Engine:
    """An engine over ``store``; on ``ex`` (the exchange outlives the bot), else a new one."""
    if ex is None:
        ex, _ = make_exchange(instruments)  # type: ignore[arg-type]
        ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    policy = load_policy(ROOT / "policies" / "vol_target.toml")
    assert policy.reentry.cooldown_ms == 24 * HOUR
    return Engine(
        clock=clock,
        exchange=ex,
        market=FakeMarket(),
        store=store,
        policy=policy,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
    )


def test_a_cooldown_and_the_unreadable_streak_survive_many_later_events(
    store: SqlStore, instruments: dict[str, object]
) -> None:
    end = T0 + 24 * HOUR
    store.record_event(
        event(T0, EventKind.COOLDOWN, Cooldowns.describe(BTC, end, "stop-loss"), BTC)
    )
    store.record_event(event(T0 + 1, EventKind.UNREADABLE, unreadable_reason(2, "garbled")))
    for i in range(MANY):  # e.g. a denial on every job since
        store.record_event(event(T0 + 2 + i, EventKind.DENIED, f"t-e-BTC-{i}: not now", BTC))
    clock = SimClock(T0 + 6 * HOUR)
    engine = engine_on(store, clock, instruments)  # the restart
    active = engine.cooldowns.active(BTC, clock.now_ms())
    assert active is not None, "the re-entry cooldown was forgotten by the restart"
    assert active[0] == end
    assert engine.unreadable_streak == 2


def test_a_jobs_state_change_is_alerted_after_many_other_events(
    store: SqlStore, instruments: dict[str, object]
) -> None:
    clock = SimClock(T0)
    engine = engine_on(store, clock, instruments)
    notifier = Notifier(store, clock, None, AlertRules(), account="t")
    out = Outbox().serve(notifier)
    runner = Runner(engine=engine, store=store, clock=clock, notifier=notifier, rules=AlertRules())

    def busy_job() -> None:
        # the state changes first, then the job records many other events
        store.record_event(
            RiskEvent(
                ts_ms=clock.now_ms(),
                kind=EventKind.STATE,
                symbol=None,
                state=TradingState.HALTED,
                reason="active -> halted: daily loss",
            )
        )
        for i in range(200):
            store.record_event(event(clock.now_ms(), EventKind.DENIED, f"t-e-BTC-{i}", BTC))

    runner._job("guard", busy_job)
    assert any(t.startswith("[t] critical: state:halted@") for t in out.titles), out.titles


def test_a_guards_state_change_is_alerted_when_the_venue_stops_answering(
    store: SqlStore, instruments: dict[str, object]
) -> None:
    clock = SimClock(T0)
    engine = engine_on(store, clock, instruments)
    notifier = Notifier(store, clock, None, AlertRules(), account="t")
    out = Outbox().serve(notifier)
    runner = Runner(engine=engine, store=store, clock=clock, notifier=notifier, rules=AlertRules())

    def halting_guard() -> None:
        store.record_event(
            RiskEvent(
                ts_ms=clock.now_ms(),
                kind=EventKind.STATE,
                symbol=None,
                state=TradingState.HALTED,
                reason="active -> halted: daily loss",
            )
        )

        def down(symbols: Sequence[str]) -> dict[str, Position]:  # the venue stops answering
            raise TransientExchangeError("503 Service Unavailable")

        engine.exchange.fetch_positions = down  # type: ignore[method-assign]

    runner._job("guard", halting_guard)  # the alert step reads the account again: it fails
    assert any(t.startswith("[t] critical: state:halted@") for t in out.titles), out.titles


def test_the_loss_limits_and_a_halt_survive_a_kill(
    store: SqlStore, instruments: dict[str, object]
) -> None:
    clock = SimClock(T0)
    first = engine_on(store, clock, instruments)
    first.tick()  # opens BTC with its stop
    ex = first.exchange
    assert isinstance(ex, SimulatedExchange)
    assert ex.fetch_positions([BTC]), "nothing opened; the test would prove nothing"
    before = store.load_risk_memory()
    assert before is not None
    # The account loses 6 % of the day's equity (above the stop: the position stays).
    equity = ex.equity()
    pos = ex.fetch_positions([BTC])[BTC]
    ex.book.wallet -= equity * D("0.06")
    clock.advance_to(T0 + 60_000)
    first.guard()  # daily loss: halted with flatten
    halted = store.load_risk_memory()
    assert halted is not None
    assert halted.state is TradingState.HALTED
    assert "daily loss" in halted.state_reason
    # kill -9: nothing of `first` is used again. The restart reads the memory back.
    clock.advance_to(T0 + 120_000)
    second = engine_on(store, clock, instruments, ex)
    result = second.tick()
    memory = store.load_risk_memory()
    assert memory is not None
    assert result.state is TradingState.HALTED
    assert memory.state is TradingState.HALTED
    assert memory.day_start_ms == before.day_start_ms
    assert memory.day_start_equity == before.day_start_equity
    assert memory.peak_equity == before.peak_equity
    assert BTC not in ex.fetch_positions([BTC]) or abs(ex.fetch_positions([BTC])[BTC].qty) <= abs(
        pos.qty
    )  # halted: nothing added
