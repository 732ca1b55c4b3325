"""The scheduler when something below it fails: a job the scheduler itself cannot run (before
the runner's own error handling is reached, as an out-of-range setting once did) stops the bot
with a clear error instead of leaving it idle as if it traded; a venue that does not answer the
funding planner only skips that round's planning."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.clock import SimClock
from bot.errors import TransientExchangeError
from bot.runtime.scheduler import (
    ClockWatch,
    SchedulerFailed,
    Stopper,
    _schedule_funding,
    realign,
    run_scheduled,
)
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


# --- the wall clock steps back ------------------------------------------------------------------


class SteppedWall:
    """A wall clock whose time and monotonic seconds a test moves by hand."""

    def __init__(self) -> None:
        self.ms = 1_750_000_000_000
        self.mono = 100.0

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.mono

    def run(self, seconds: float, wall_step_s: float = 0.0) -> None:
        self.mono += seconds
        self.ms += int((seconds + wall_step_s) * 1000)


def test_a_step_back_of_the_wall_clock_is_noticed_and_small_ones_are_not() -> None:
    wall = SteppedWall()
    watch = ClockWatch(wall)  # type: ignore[arg-type]
    wall.run(0.2)
    assert watch.stepped_back() is None  # time as usual
    wall.run(0.2, wall_step_s=-2)
    assert watch.stepped_back() is None  # an NTP slew of 2 s: within the tolerance
    wall.run(0.2, wall_step_s=3600)
    assert watch.stepped_back() is None  # forward (a resume): APScheduler handles misfires
    wall.run(0.2, wall_step_s=-3600)
    back = watch.stepped_back()
    assert back is not None
    assert back == pytest.approx(3600, abs=0.01)


def test_jobs_planned_on_the_old_time_are_brought_back_on_their_grid() -> None:
    now = datetime(2026, 12, 4, 10, 30, 0, tzinfo=UTC)
    sched = BackgroundScheduler(timezone=UTC)
    sched.start(paused=True)
    try:
        tick = sched.add_job(
            print,
            "interval",
            hours=1,
            start_date=datetime(2026, 12, 4, 0, 0, 5, tzinfo=UTC),
            id="tick",
        )
        guard = sched.add_job(print, "interval", seconds=60, id="guard")
        rollover = sched.add_job(print, "cron", hour=0, minute=0, second=10, id="rollover")
        # As planned before the clock went back 3 h: every run is 3 h further than it should be.
        tick.modify(next_run_time=datetime(2026, 12, 4, 14, 0, 5, tzinfo=UTC))
        guard.modify(next_run_time=datetime(2026, 12, 4, 13, 31, 0, tzinfo=UTC))
        realign(sched, now, 3 * 3600)
        jobs = {j.id: j.next_run_time for j in sched.get_jobs()}
        assert jobs["tick"] == datetime(2026, 12, 4, 11, 0, 5, tzinfo=UTC)  # on the candle grid
        assert now <= jobs["guard"] <= now + timedelta(seconds=60)
        assert jobs["rollover"] == rollover.next_run_time  # already right: left alone
    finally:
        sched.shutdown(wait=False)
