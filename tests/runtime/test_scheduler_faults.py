"""The scheduler when something below it fails: a job the scheduler itself cannot run (before
the runner's own error handling is reached, as an out-of-range setting once did) stops the bot
with a clear error instead of leaving it idle as if it traded; a venue that does not answer the
funding planner only skips that round's planning."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.clock import SimClock
from bot.errors import TransientExchangeError
from bot.runtime.scheduler import SchedulerFailed, Stopper, _schedule_funding, run_scheduled
from tests.runtime.test_crash_only import WALL

HOUR_MS = 3_600_000


@dataclass
class BrokenRunner:
    """Its tick raises out of the job, as only the scheduler's own machinery could."""

    calls: int = 0
    ticks_done: int = 0
    replay_end_ms: int | None = None
    on_tick: list[object] = field(default_factory=list)

    def tick(self) -> None:
        self.calls += 1
        raise OverflowError("Python int too large to convert to C int")


def test_a_job_the_scheduler_cannot_run_stops_the_bot_loudly() -> None:
    runner = BrokenRunner()
    started = WALL.monotonic()
    with pytest.raises(SchedulerFailed, match="OverflowError: Python int too large"):
        run_scheduled(
            runner,  # type: ignore[arg-type]
            clock=SimClock(0),
            tf_ms=HOUR_MS,
            speed=36000,
            max_ticks=5,
            stopper=Stopper(),
            live_time=False,
        )
    assert runner.calls >= 1
    assert WALL.monotonic() - started < 10  # it did not idle on


def test_a_funding_planner_whose_reads_fail_plans_nothing_and_raises_nothing() -> None:
    def down(*args: Any) -> Any:
        raise TransientExchangeError("503 Service Unavailable")

    engine = SimpleNamespace(
        symbols=("BTC/USDT:USDT",),
        market=SimpleNamespace(funding=down),
        policy=SimpleNamespace(funding=SimpleNamespace(lookback=3)),
        exchange=SimpleNamespace(fetch_positions=down),
    )
    sched = BackgroundScheduler()
    stopper = Stopper()
    _schedule_funding(
        sched,
        SimpleNamespace(engine=engine),  # type: ignore[arg-type]
        SimClock(0),
        120,
        stopper.event,
    )
    assert sched.get_jobs() == []
    assert not stopper.event.is_set()
