"""The scheduler when something below it fails: a job the scheduler itself cannot run (before
the runner's own error handling is reached, as an out-of-range setting once did) stops the bot
with a clear error instead of leaving it idle as if it traded; a venue that does not answer the
funding planner only skips that round's planning, and one contract it cannot read costs only
that contract its pre-funding tick."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.clock import SimClock
from bot.domain.market import FundingInfo
from bot.errors import AccountUnreadable, TransientExchangeError
from bot.exchange.mapping import UnexpectedResponse
from bot.runtime.scheduler import (
    ClockWatch,
    SchedulerFailed,
    Stopper,
    VenueSchedule,
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
    clock = SimClock(0)
    _schedule_funding(
        sched,
        SimpleNamespace(engine=engine),  # type: ignore[arg-type]
        VenueSchedule(clock, clock.now_ms),
        120,
        stopper.event,
    )
    assert sched.get_jobs() == []
    assert not stopper.event.is_set()


NOW = 1_750_000_000_000
SETTLE = NOW + 10 * 60_000  # ten minutes away: the pre-funding tick is planned this round
BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"


@dataclass
class FundingVenue:
    """Every contract long 0.5 and paying (rate > 0) at ``SETTLE``, unless a read of it fails:
    ``bad_funding`` names the contracts whose funding read raises, ``positions_down`` makes the
    account's positions read raise :class:`AccountUnreadable` (about the whole answer)."""

    bad_funding: frozenset[str] = frozenset()
    positions_down: bool = False
    position_reads: list[list[str]] = field(default_factory=list)

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        if symbol in self.bad_funding:
            # CcxtExchange.fetch_funding (mapping.check_funding_rate): a rate beyond the cap
            raise UnexpectedResponse(f"{symbol} fundingRate 0.0300 is outside -0.02..0.02")
        return FundingInfo(Decimal("0.0005"), Decimal(8), SETTLE)

    def fetch_positions(self, symbols: list[str]) -> dict[str, Any]:
        self.position_reads.append(list(symbols))
        if self.positions_down:
            raise AccountUnreadable("positions: positionAmt is null")
        return {s: SimpleNamespace(qty=Decimal("0.5")) for s in symbols}


def _planned(venue: FundingVenue, symbols: tuple[str, ...]) -> list[tuple[str, set[str]]]:
    engine = SimpleNamespace(
        symbols=symbols,
        withdrawn=frozenset(),
        market=venue,
        policy=SimpleNamespace(funding=SimpleNamespace(lookback=3)),
        exchange=venue,
    )
    runner = SimpleNamespace(
        engine=engine,
        before_funding=lambda symbols: None,
        hold_for_funding=lambda settles_ms, from_ms, symbols: None,
    )
    sched = BackgroundScheduler()
    clock = SimClock(NOW)
    plan = VenueSchedule(clock, clock.now_ms)  # (the venue's clock in step with the host's)
    _schedule_funding(sched, runner, plan, 120, Stopper().event)  # type: ignore[arg-type]
    return [(job.id, *job.args) for job in sched.get_jobs()]


def test_one_contracts_failed_funding_read_costs_no_other_its_pre_funding_tick() -> None:
    # SOL's funding read is refused (its rate beyond the cap); BTC's long pays in ten minutes.
    # The planner read every contract in one loop: SOL's failure planned nothing this round,
    # and BTC paid its settlement without the tick that adds no exposure before it.
    venue = FundingVenue(bad_funding=frozenset({SOL}))
    planned = _planned(venue, (SOL, BTC))
    # BTC's tick is planned. SOL gets none of its own (its settlement is unknown), and takes no
    # increase in BTC's: it may settle then too and pay (unknown, never "does not pay").
    assert planned == [(f"funding-{SETTLE}", {BTC, SOL})]
    assert venue.position_reads == [[BTC]]


def test_unreadable_positions_hold_back_every_contract_due() -> None:
    # The positions are one account read: an unreadable answer is the whole account's. Unknown
    # is never flat: every contract with a settlement due is held back, not left to grow.
    venue = FundingVenue(positions_down=True)
    assert _planned(venue, (ETH, BTC)) == [(f"funding-{SETTLE}", {BTC, ETH})]
    assert venue.position_reads == [[BTC, ETH]]  # once for all, not once per contract
    # Every contract's funding unreadable (the venue down): nothing planned, nothing raised.
    down = FundingVenue(bad_funding=frozenset({ETH, BTC}))
    assert _planned(down, (ETH, BTC)) == []
    assert down.position_reads == []


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
