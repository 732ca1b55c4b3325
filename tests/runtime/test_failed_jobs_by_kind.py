"""Failed jobs are counted per kind: decision ticks (pre-funding ticks too) and guards (the
day's rollover too). Only a success of the same kind ends a run.

Defect: any job that completed ended the run of failures. A decision tick that fails every time
(a stale contract catalogue: ``CatalogueKeeper.check`` is a ``before_tick`` hook) while the
minute guard between ticks succeeds therefore never counted past 1: the account stayed
``active`` however many ticks failed (the runbook: "A stale contract catalogue ... fails every
decision tick with a tick_failed alert naming it, and so goes to reducing"), and each failed
tick was a new incident, alerted again within the dedup window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import EventKind, TradingState
from bot.ports.store import RiskEvent
from bot.runtime.catalogue_keeper import StaleCatalogue
from bot.runtime.runner import Runner, failed_in_a_row
from bot.store.sql import SqlStore
from tests.fakes.alert_outbox import Outbox
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE


def stale() -> None:
    raise StaleCatalogue("contract specifications last read 49 h ago: not trading")


class Broken(RuntimeError):
    pass


def broken() -> None:
    raise Broken("the guard's dependency is down")


@dataclass
class Bot:
    config: BotConfig
    clock: SimClock
    store: SqlStore
    runner: Runner
    out: Outbox

    def state(self) -> TradingState:
        memory = self.store.load_risk_memory()
        assert memory is not None
        return memory.state

    def later(self, ms: int) -> None:
        self.clock.advance_to(self.clock.now_ms() + ms)

    def restart(self) -> None:
        """The process is gone; a new one starts on the same database."""
        self.store.close()
        self.store = open_store(self.config, create=True)
        self.runner, _paper = build_paper(
            self.config, self.store, replay=self.config.data.dir, clock=self.clock
        )
        self.out.serve(self.runner.notifier)


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    clock = SimClock(START)
    runner, _paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    out = Outbox().serve(runner.notifier)
    b = Bot(config, clock, store, runner, out)
    assert b.runner.tick() is not None  # a healthy start
    assert b.runner.max_failures == 3, "the tests below count to the default limit"
    yield b
    b.store.close()


def test_ticks_that_fail_between_successful_guards_reach_reducing(bot: Bot) -> None:
    bot.runner.before_tick.append(stale)  # as bootstrap.build_live hooks CatalogueKeeper.check
    for hour in range(1, 4):
        bot.later(HOUR)
        assert bot.runner.tick() is None
        for _ in range(3):  # the minute guard between ticks succeeds
            bot.later(MINUTE)
            bot.runner.guard()
        assert bot.runner.failures_of("tick") == hour
        expected = TradingState.REDUCING if hour == 3 else TradingState.ACTIVE
        assert bot.state() is expected, f"hour {hour}"
    failed = bot.store.recent_events(10, kinds=(EventKind.TICK_FAILED,))
    assert [e.reason.rsplit("(", 1)[1] for e in reversed(failed)] == [
        "1 failed tick job in a row)",
        "2 failed tick jobs in a row)",
        "3 failed tick jobs in a row)",
    ]
    assert bot.store.recent_events(10, kinds=(EventKind.JOBS_OK,)) == []  # no tick succeeded
    memory = bot.store.load_risk_memory()
    assert memory is not None
    assert memory.state_reason.startswith("3 failed tick jobs in a row")
    assert sum(": state:reducing@" in t for t in bot.out.titles) == 1


def test_a_tick_failure_that_goes_on_is_alerted_once_per_dedup_window(bot: Bot) -> None:
    assert bot.config.runtime.alert_dedup_minutes == 60
    bot.runner.before_tick.append(stale)
    for _ in range(6):  # one hour: a failed tick every 10 min, the minute guards between
        bot.later(MINUTE)
        assert bot.runner.tick() is None
        for _ in range(9):
            bot.later(MINUTE)
            bot.runner.guard()
    assert bot.out.count("tick_failed:tick") == 1
    bot.runner.before_tick.remove(stale)  # the catalogue is read again: the run ends
    bot.later(MINUTE)
    assert bot.runner.tick() is not None
    [ok] = bot.store.recent_events(1, kinds=(EventKind.JOBS_OK,))
    assert ok.reason == "tick done after 6 failed tick job(s) in a row"
    bot.runner.before_tick.append(stale)  # and comes back: a new incident, sent at once
    bot.later(MINUTE)
    assert bot.runner.tick() is None
    assert bot.out.count("tick_failed:tick") == 2


def test_guards_that_fail_between_successful_ticks_reach_reducing(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.runner.engine, "guard", broken)
    for n in range(1, 4):
        bot.later(MINUTE)
        bot.runner.guard()
        bot.later(MINUTE)
        assert bot.runner.tick() is not None  # the decision tick succeeds between them
        assert bot.runner.failures_of("guard") == n
    assert bot.state() is TradingState.REDUCING
    assert bot.out.count("tick_failed:guard") == 1
    assert bot.out.count("tick_failed:tick") == 0


def test_a_pre_funding_tick_and_the_rollover_count_with_their_kind(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot.runner.before_tick.append(stale)
    bot.later(MINUTE)
    assert bot.runner.tick() is None
    bot.later(MINUTE)
    assert bot.runner.before_funding({"BTC/USDT:USDT"}) is None  # a tick as any other
    assert bot.runner.failures_of("tick") == 2
    monkeypatch.setattr(bot.runner.engine, "guard", broken)
    bot.later(MINUTE)
    bot.runner.rollover()  # the day's guard
    assert bot.runner.failures_of("guard") == 1
    monkeypatch.undo()
    bot.later(MINUTE)
    bot.runner.guard()  # ends the guards' run only
    assert bot.runner.failures_of("guard") == 0
    assert bot.runner.failures_of("tick") == 2
    bot.later(MINUTE)
    assert bot.runner.before_funding({"BTC/USDT:USDT"}) is None
    assert bot.state() is TradingState.REDUCING


def test_each_kinds_count_survives_a_restart(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    bot.runner.before_tick.append(stale)
    for _ in range(2):
        bot.later(HOUR)
        assert bot.runner.tick() is None
        bot.later(MINUTE)
        bot.runner.guard()  # succeeds: ends no run of the ticks
    with monkeypatch.context() as m:
        m.setattr(bot.runner.engine, "guard", broken)
        bot.later(MINUTE)
        bot.runner.guard()
    bot.later(MINUTE)
    bot.runner.guard()  # the guards' run ends (a jobs_ok event)
    bot.later(MINUTE)
    with monkeypatch.context() as m:
        m.setattr(bot.runner.engine, "guard", broken)
        bot.runner.guard()
    bot.restart()
    assert bot.runner.failures_of("tick") == 2
    assert bot.runner.failures_of("guard") == 1
    bot.runner.before_tick.append(stale)  # still stale after the restart
    bot.later(HOUR)
    assert bot.runner.tick() is None
    assert bot.state() is TradingState.REDUCING


def event(kind: EventKind, reason: str) -> RiskEvent:
    return RiskEvent(ts_ms=START, kind=kind, symbol=None, state=TradingState.ACTIVE, reason=reason)


def test_counts_restore_from_an_older_bots_events() -> None:
    """An older bot counted every job together ("(2 failed jobs in a row)"), its ``jobs_ok``
    ending every run: a restart onto its events counts its last run for the kind that failed,
    and nothing before a ``jobs_ok`` of its."""
    failed, ok = EventKind.TICK_FAILED, EventKind.JOBS_OK
    newest_first = [
        event(failed, "funding: Broken: down (3 failed jobs in a row)"),
        event(failed, "guard: Broken: down (2 failed jobs in a row)"),
        event(failed, "tick: Broken: down (1 failed job in a row)"),
        event(ok, "guard done after 4 failed job(s) in a row"),
        event(failed, "rollover: Broken: down (4 failed jobs in a row)"),
    ]
    assert failed_in_a_row(newest_first) == {"tick": 3, "guard": 2}
    assert failed_in_a_row(newest_first[3:]) == {}
    mixed = [  # a new bot's events after an older bot's
        event(failed, "guard: Broken: down (1 failed guard job in a row)"),
        event(ok, "tick done after 2 failed tick job(s) in a row"),
        event(failed, "tick: StaleCatalogue: old (2 failed tick jobs in a row)"),
        event(failed, "guard: Broken: down (5 failed jobs in a row)"),
        event(ok, "tick done after 1 failed job(s) in a row"),
        event(failed, "guard: Broken: down (9 failed jobs in a row)"),
    ]
    assert failed_in_a_row(mixed) == {"guard": 1}
    assert failed_in_a_row(mixed[1:]) == {"guard": 5}
