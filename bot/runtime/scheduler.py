"""APScheduler 3 drives the runner.

Jobs: the start's tick (the funding settlements planned first), the decision ``tick`` at the
policy's cadence (aligned to candle closes, a few seconds after so the candle is final),
``guard`` (loss limits on the marks of the moment, then the protection invariant) between
ticks, also when replaying recorded data, ``funding`` before each contract's next settlement,
``rollover`` at 00:00 UTC, and live only ``clock-resync`` hourly (the host clock's offset to
the venue's, :mod:`bot.runtime.clock_offset`). The candle closes and
the settlements are the venue's times: the ticks and the pre-funding jobs run at them on the
host's clock through the offset last measured, and move when a measurement moves it
(:class:`VenueSchedule`). One worker thread and
``max_instances=1``:
two jobs never overlap; ``coalesce=True``: missed runs collapse into one. On live time a late
decision tick, guard or funding planning still runs (once), a pre-funding tick until its
settlement; a rollover later than the grace period is skipped (APScheduler logs it, routed into
loguru; the next job rolls the day).

A replay of recorded data (:class:`_ReplayJobs`) plans its jobs in replayed time, as ``bot
simulate`` does: a tick at each candle close (the recorded candle is final at its close: no
settle delay, and the tick times, so the client ids, are the simulation's), guards between, each
job run with the replayed clock set to its time and standing still while it runs. ``--speed``
only paces them on the wall clock. A replay faster than the bot can tick runs its jobs late,
never at another replayed time: that is said once, with the fix, and the late ticks are counted
in the last line (:class:`Skips`).

SIGTERM or SIGINT sets a flag; the running job finishes, the scheduler shuts down waiting for it,
the caller persists and exits 0. The main thread only waits.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from loguru import logger

from bot.clock import Clock, LiveClock, SimClock, WallSteps, ms_to_datetime, utc_text
from bot.engine.tick import TickResult
from bot.errors import BotError
from bot.runtime.runner import Runner

WALL = LiveClock()  # APScheduler runs on wall time, even when the bot's clock is replayed
SETTLE_DELAY_S = 5  # seconds after a candle closes (on the venue's clock) before deciding on it
CLOCK_RESYNC_SECONDS = 3600  # live: re-measure the host clock's offset to the venue's
# The venue-timed jobs move once the offset to the venue moved by this much since they were
# planned: less is the noise of one measurement to the next (a request's round trip), and a
# tick that still comes early waits for its candle (Runner.tick_after_close).
REPLAN_TOLERANCE_MS = 1000
# A decision tick due sooner than this when the tick job before it ends is run by that job, at
# once: planned then, APScheduler would start it while the job planning it still runs and skip
# it (``max_instances=1``), or run it, whichever thread came first.
RUN_NOW_MS = 1000


class SchedulerFailed(BotError):
    """A job raised out of the runner: the scheduler could not run it, or the runner must not
    go on (another bot took the state database). Failed jobs are recorded, not raised."""


class Stopper:
    """Set by SIGTERM/SIGINT (or ``--ticks N``); the main thread waits on it.

    Installed for ``bot run --once`` too: a signal during that one tick (which runs on the main
    thread) must not raise ``KeyboardInterrupt`` in the middle of it, between two changes of the
    paper account that the exit then saves half-made; the tick finishes, then the bot exits.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (an embedding program handles them)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            logger.warning(
                "signal {} received again: still finishing the running job (kill -9 is safe "
                "too: the next start recovers)",
                signum,
            )
            return
        logger.warning("signal {} received: finishing the running job, then stopping", signum)
        self.event.set()


class Skips:
    """Scheduled decision ticks that did not run: the previous tick was still running
    (``max_instances``) or the run came later than the grace period (``missed``); and in a
    replay, ticks that ran late.

    Live, each skipped one is a candle the bot did not decide on (APScheduler logs each). A
    replay skips none: a tick that comes late still decides at its candle's close, but late
    means ``--speed`` outruns the bot (a candle lasts less wall time than the jobs take), so
    the run is slower than asked, which a trader timing it must know. The replay says so
    once, with the fix, and counts the late ticks in the last line.
    """

    def __init__(self, *, speed: float, tick_s: float) -> None:
        self.speed, self.tick_s = speed, tick_s
        self.count = 0
        self.late = 0

    def on_event(self, event: JobEvent) -> None:
        if event.job_id != "tick":
            return
        self.count += 1

    def on_late(self, late_s: float) -> None:
        """A replayed tick started ``late_s`` wall seconds after its time at ``speed``."""
        self.late += 1
        if self.late == 1:
            logger.warning(
                "replay at {:g}x outruns the bot: a candle lasts {:.3g} s of wall time and the "
                "jobs before a tick took longer (it started {:.3g} s late), so the replay runs "
                "slower than asked; each tick still decides at its candle's close. Lower "
                "--speed to keep the pace (late ticks are counted when it stops)",
                self.speed,
                self.tick_s,
                late_s,
            )

    def summary(self) -> str:
        parts = []
        if self.count:
            parts.append(f"{self.count} scheduled tick(s) skipped: missed or overlapped")
        if self.late:
            parts.append(
                f"{self.late} tick(s) late: the replay ran slower than --speed {self.speed:g}"
            )
        return f" ({'; '.join(parts)})" if parts else ""


@dataclass(frozen=True)
class ScheduledRun:
    """How a scheduled run went: decision ticks run, scheduled ticks skipped (live) and
    replayed ticks that ran late (slower than ``--speed``)."""

    ticks: int
    skipped: int
    late: int = 0


def next_boundary(now_ms: int, tf_ms: int) -> int:
    return now_ms - now_ms % tf_ms + tf_ms


class VenueSchedule:
    """The jobs planned at the venue's times (candle closes, funding settlements), run by
    APScheduler on the host's: host = venue + the offset the exchange corrects by (measured at
    start, hourly by ``clock-resync``, before a job once the wall clock stepped, after a -1021;
    0 on paper, whose venue is the bot's own clock).

    The decision ticks were planned on the host's clock alone, while a candle counts as closed
    on the venue's (``CcxtExchange.fetch_candles``): a host 8 s ahead of the venue ran every
    tick 3 s before its candle closed there, and each decided without it, a timeframe late (an
    hour on 1h, a day on 1d); a pre-funding tick ran as much before its lead. The planned jobs
    (``tick``, ``funding-<settlement>``) move by as much as the offset moved since they were
    planned (:meth:`follow`: after each tick and each funding planning, and from the
    scheduler's watch loop, so after every measurement within a fraction of a second). Moved,
    not planned again: each run stays the run of its close or settlement. After each decision
    tick the next is planned for the close after the one that tick was for
    (:meth:`plan_tick`, from ``Runner.tick_close_ms``): one tick per close, none skipped, none
    at a time already passed. A job planned and one moved under one lock, so none is planned
    on an offset another has already left.

    ``followed``: the offset is measured again after a wall-clock step (live); the step back
    that :func:`realign` re-plans the other jobs for then leaves these to :meth:`follow`.
    ``known``: whether the venue's time is known (``Runner.venue_time_known``: False while the
    offset could not be measured since the wall clock stepped); a tick planned while it is not
    is planned again for its close once it is (:meth:`plan_tick`)."""

    def __init__(
        self,
        clock: Clock,
        venue_now_ms: Callable[[], int],
        *,
        followed: bool = False,
        known: Callable[[], bool] | None = None,
    ) -> None:
        self._clock, self._venue_now_ms = clock, venue_now_ms
        self.followed = followed
        self._known = known
        # held while jobs are planned or moved (re-entrant: a planning follows first)
        self.lock = threading.RLock()
        self.offset_ms = self.measured_ms()
        # The close (venue ms) of the tick planned while the venue's time was not known: its
        # run time is a stand-in until then (:meth:`plan_tick`, :meth:`follow`).
        self._unplaced_close: int | None = None

    def measured_ms(self) -> int:
        """The host's clock minus the venue's, as the exchange corrects it now (no request)."""
        venue = self._venue_now_ms()
        return self._clock.now_ms() - venue

    def venue_now_ms(self) -> int:
        return self._venue_now_ms()

    def host_time(self, venue_ms: int) -> datetime:
        """When the host's clock reads the venue's ``venue_ms``, on the offset planned with."""
        return ms_to_datetime(venue_ms + self.offset_ms)

    def follow(self, sched: BackgroundScheduler) -> None:
        """Move the venue-timed jobs of ``sched`` by as much as the offset moved since they
        were planned, when that is :data:`REPLAN_TOLERANCE_MS` or more; and a tick planned
        while the venue's time was not known to its close's time, once it is."""
        with self.lock:
            moved = self.measured_ms() - self.offset_ms
            if abs(moved) >= REPLAN_TOLERANCE_MS:
                self._move(sched, moved)
            if self._unplaced_close is not None and self.time_known():
                self._plan_unplaced(sched, self._unplaced_close)

    def time_known(self) -> bool:
        """Whether the venue's time is known (see ``known``)."""
        return self._known is None or self._known()

    def tick_started(self) -> None:
        """The ``tick`` job runs: its plan, a stand-in or not, is used (a run of the job is
        never planned again while it runs: it plans the next itself)."""
        with self.lock:
            self._unplaced_close = None

    def _plan_unplaced(self, sched: BackgroundScheduler, close: int) -> None:
        """The venue's time is known again: the tick for ``close``, planned while it was not,
        at that close's time (at once when that has passed: its run decides the newest close
        then, once)."""
        self._unplaced_close = None
        job = sched.get_job(TICK_JOB)
        if job is None or getattr(job, "next_run_time", None) is None:
            return
        at = max(self.host_time(close) + timedelta(seconds=SETTLE_DELAY_S), self._clock.now())
        _move_tick(job, at)
        logger.info(
            "the venue's time is known again: the decision tick for the candle closing at {} "
            "planned at {}",
            utc_text(close),
            at.isoformat(),
        )

    def _move(self, sched: BackgroundScheduler, moved: int) -> None:
        """Move the venue-timed jobs by ``moved`` ms (the lock held)."""
        self.offset_ms += moved
        by = timedelta(milliseconds=moved)
        for job in sched.get_jobs():
            # (a job of a scheduler not started yet has no run time; paused, None)
            planned: datetime | None = getattr(job, "next_run_time", None)
            if planned is None:
                continue
            if job.id == TICK_JOB:
                _move_tick(job, planned + by)
            elif _funding_settlement(job.id) is not None:
                job.modify(next_run_time=planned + by)
        logger.info(
            "the offset to the venue's clock moved {:+.1f} s: the decision ticks and the "
            "pre-funding ticks move with it",
            moved / 1000,
        )

    def plan_tick(
        self,
        sched: BackgroundScheduler,
        last_close_ms: int | None,
        tf_ms: int,
        *,
        catch_up: bool = True,
        known: bool = True,
    ) -> bool:
        """Plan the ``tick`` job for the first candle close after ``last_close_ms`` (venue ms:
        the close the newest decision tick was for, ``Runner.tick_close_ms``), a settle delay
        after it on the venue's clock: never for a close already decided or tried, never past
        one not yet decided. Planned from the close the runner says its tick was for, not from
        the time the job ran at: a job moved early by a wall-clock step of more than half a
        candle was taken for the tick of the close before, and the close it had been planned
        for got none; and a close named by a tick that ran early was planned again after a
        job that failed before deciding, at a time already passed: run again at once, and
        again, each run a failed tick (``reducing`` within a second).

        When that tick's time is less than :data:`RUN_NOW_MS` ahead (a tick took longer than
        until the next close), nothing is planned and True is returned with ``catch_up``: the
        caller runs the tick now, once; without, the first close whose time is still ahead is
        planned (the closes between get no tick of their own, as missed runs coalesce).

        Not ``known`` (the offset to the venue not measured since the wall clock stepped: the
        host's time of a close is off by as much as the step), the close after
        ``last_close_ms`` is planned at its time on the offset of now when that is ahead,
        else a candle from now (never at once: a failed run would be run again, and again),
        and planned again at its time once the venue's time is known (:meth:`follow`)."""
        if last_close_ms is None:
            return False  # (no decision tick ran yet: the plan stands)
        settle = timedelta(seconds=SETTLE_DELAY_S)
        with self.lock:
            job = sched.get_job(TICK_JOB)
            planned: datetime | None = getattr(job, "next_run_time", None)
            if job is None or planned is None:
                return False
            now = self._clock.now()
            soon = now + timedelta(milliseconds=RUN_NOW_MS)
            close = last_close_ms + tf_ms
            if not known:
                at = self.host_time(close) + settle
                if at < soon:
                    at = now + timedelta(milliseconds=tf_ms)
                self._unplaced_close = close
                if at != planned:
                    _move_tick(job, at)
                logger.warning(
                    "the venue's time is not known (the offset to it not measured since the "
                    "wall clock stepped): the decision tick for the candle closing at {} "
                    "planned at {} for now, at its time once the offset is measured",
                    utc_text(close),
                    at.isoformat(),
                )
                return False
            self._unplaced_close = None
            if self.host_time(close) + settle < soon:
                if catch_up:
                    return True
                passed = close
                while self.host_time(close) + settle < soon:
                    close += tf_ms
                logger.warning(
                    "the decision ticks take longer than a candle: no tick of its own for the "
                    "candle(s) closing from {} to {}; the next tick decides on the newest",
                    utc_text(passed),
                    utc_text(close - tf_ms),
                )
            at = self.host_time(close) + settle
            if at != planned:
                _move_tick(job, at)
                logger.info(
                    "the decision tick for the candle closing at {} planned at {}",
                    utc_text(close),
                    at.isoformat(),
                )
        return False


TICK_JOB = "tick"  # the scheduled decision tick's job id (on the venue's candle closes)


def _move_tick(job: Job, at: datetime) -> None:
    """The interval job ``tick`` next at ``at``, its grid with it (an interval job's next
    runs follow from its last one; its trigger says where the grid starts)."""
    trigger = IntervalTrigger(seconds=job.trigger.interval.total_seconds(), start_date=at)
    job.modify(trigger=trigger, next_run_time=at)


def _funding_settlement(job_id: str) -> int | None:
    """The settlement (venue ms) of a pre-funding tick's job (``funding-<ms>``), else None."""
    prefix, _, settles = job_id.partition("-")
    return int(settles) if prefix == "funding" and settles.isdigit() else None


def replay_first_tick(now_ms: int, tf_ms: int) -> int:
    """A replay's first decision tick from replayed time ``now_ms``: the first candle close at
    or after it, on the grid ``bot simulate`` ticks on (its start is aligned to the timeframe,
    :func:`bot.sim.history.simulation_window`). A restart resumes on that grid; a tick that
    completed moved the resumed time past its close (:func:`bot.bootstrap.build_paper`), so no
    candle is decided twice."""
    return now_ms + (-now_ms) % tf_ms


def replay_runs_guards(guard_seconds: int, speed: float) -> bool:
    """Whether a replay at ``speed`` runs the guard job: every ``guard_seconds`` of replayed
    time, when that is at least half a wall-clock second (a faster replay leaves the limits to
    the ticks: a guard job could not keep up, and the ticks are then its only jobs)."""
    return guard_seconds / speed >= 0.5


def run_scheduled(
    runner: Runner,
    *,
    clock: Clock,
    tf_ms: int,
    speed: float = 1.0,
    guard_seconds: int = 60,
    grace_seconds: int = 120,
    funding_lead_seconds: int = 120,
    max_ticks: int | None = None,
    stopper: Stopper | None = None,
    live_time: bool = True,
) -> ScheduledRun:
    """Run until a signal (or ``max_ticks`` ticks, or the end of the replayed data).
    ``live_time`` False (replay, on a ``clock`` the scheduler moves: a :class:`SimClock`, so a
    :class:`~bot.clock.ReplayClock`): the jobs run at their replayed times, ``speed`` times
    faster than the wall clock (:class:`_ReplayJobs`); the funding and rollover jobs are left
    to the ticks."""
    stopper = stopper or Stopper()
    if max_ticks is not None:

        def count(_r: TickResult) -> None:
            if runner.ticks_done >= max_ticks:
                stopper.event.set()

        runner.on_tick.append(count)

    def unless_stopped(job: Callable[..., object]) -> Callable[..., None]:
        return _unless_stopped(stopper.event, job)

    sched = new_scheduler(grace_seconds)
    tick_s = tf_ms / 1000 / speed
    skips = Skips(speed=speed, tick_s=tick_s)
    replay: _ReplayJobs | None = None
    venue: VenueSchedule | None = None
    if live_time:
        venue = add_live_jobs(
            sched,
            runner,
            clock,
            tf_ms=tf_ms,
            guard_seconds=guard_seconds,
            funding_lead_seconds=funding_lead_seconds,
            stop=stopper.event,
            clock_resync=runner.resync_clock if runner.clock_resync is not None else None,
        )
    else:
        if not isinstance(clock, SimClock):
            raise TypeError(f"a replay runs on a clock the scheduler moves, not {clock!r}")
        # Replayed paper trading keeps its guard job too (the loss limits between ticks).
        guard_ms = guard_seconds * 1000 if replay_runs_guards(guard_seconds, speed) else None
        replay = _ReplayJobs(
            sched,
            runner,
            clock,
            tf_ms=tf_ms,
            guard_ms=guard_ms,
            speed=speed,
            stop=stopper.event,
            skips=skips,
        )
        replay.start()
    failed: list[str] = []

    def on_error(event: JobExecutionEvent) -> None:
        # The runner's jobs record and alert their own failures and never raise: an error here
        # is the scheduler failing to run a job at all. Every job would fail alike, and a bot
        # that cannot run its jobs must stop and say so, not idle as if it traded.
        failed.append(f"{event.job_id}: {type(event.exception).__name__}: {event.exception}")
        logger.critical("job {}: the bot stops", failed[-1])
        stopper.event.set()

    sched.add_listener(on_error, EVENT_JOB_ERROR)
    sched.add_listener(skips.on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
    _run_until_stopped(sched, runner, stopper, tick_s, skips, replay, venue)
    if failed:
        raise SchedulerFailed(f"job {failed[0]}; the bot stopped")
    return ScheduledRun(runner.ticks_done, skips.count, skips.late)


def new_scheduler(grace_seconds: int) -> BackgroundScheduler:
    """One worker, one instance per job, missed runs coalesced into one; a run later than
    ``grace_seconds`` is skipped unless its job says otherwise (see :func:`add_live_jobs`)."""
    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace_seconds},
        timezone=UTC,
    )


def add_live_jobs(
    sched: BackgroundScheduler,
    runner: Runner,
    clock: Clock,
    *,
    tf_ms: int,
    guard_seconds: int,
    funding_lead_seconds: int,
    stop: threading.Event,
    clock_resync: Callable[[], None] | None = None,
) -> VenueSchedule:
    """The jobs of a bot on live time (live or paper trading on live prices); with
    ``clock_resync`` (live trading) the hourly ``clock-resync`` job too. The decision ticks
    and the pre-funding ticks are planned at the venue's times (:class:`VenueSchedule`,
    returned: the scheduler's watch loop makes them follow the offset).

    The decision tick, the guard and the funding planner run however late they come
    (``misfire_grace_time=None``; still coalesced: once, not once per missed run). Skipped for
    being late, a tick that waited behind a slow job or a machine that slept cost the whole
    candle's decision (a day on a 1d policy), a guard queued behind a long tick was dropped and
    a late planning left the settlements of its half hour unplanned; each reads the account
    and the time afresh, so a late run is what a restart does. A pre-funding tick runs until
    its settlement, however late, and never after it.
    """
    venue = VenueSchedule(
        clock,
        runner.venue_now_ms,
        followed=clock_resync is not None,
        # (live: the offset is measured again after a wall-clock step, and may fail)
        known=runner.venue_time_known if clock_resync is not None else None,
    )
    # The candle closes are the venue's: the first one after its time now, on the host's clock.
    first = venue.host_time(next_boundary(venue.venue_now_ms(), tf_ms)) + timedelta(
        seconds=SETTLE_DELAY_S
    )
    # A start is a recovery: one tick at once (the funding settlements planned first, so a
    # start inside a pre-funding window holds its contracts back), then ticks aligned to
    # candle closes.
    sched.add_job(
        _unless_stopped(stop, partial(_start, sched, runner, venue, funding_lead_seconds, stop)),
        "date",
        run_date=WALL.now(),
        id="startup-tick",
        misfire_grace_time=None,
    )
    sched.add_job(
        _unless_stopped(stop, partial(_tick_after_close, sched, runner, venue, tf_ms, stop)),
        "interval",
        seconds=tf_ms / 1000,
        start_date=first,
        id=TICK_JOB,
        misfire_grace_time=None,
    )
    sched.add_job(
        _unless_stopped(stop, runner.guard),
        "interval",
        seconds=guard_seconds,
        id="guard",
        misfire_grace_time=None,
    )
    sched.add_job(
        _unless_stopped(stop, runner.rollover), "cron", hour=0, minute=0, second=10, id="rollover"
    )
    sched.add_job(
        lambda: _schedule_funding(sched, runner, venue, funding_lead_seconds, stop),
        "interval",
        minutes=30,  # (first 30 minutes after the start's, which the start's job made)
        id="funding-planner",
        misfire_grace_time=None,  # a late planning still plans; skipped, a settlement went unseen
    )
    if clock_resync is not None:
        # Live: the offset ccxt signs with, measured at start, re-measured every hour (ccxt
        # refreshes it only when asked). On the one worker, so never during a tick; late, it
        # still runs (once, coalesced): a late measurement is as good as a punctual one.
        sched.add_job(
            _unless_stopped(stop, clock_resync),
            "interval",
            seconds=CLOCK_RESYNC_SECONDS,
            id="clock-resync",
            misfire_grace_time=None,
        )
    return venue


def _start(
    sched: BackgroundScheduler,
    runner: Runner,
    venue: VenueSchedule,
    funding_lead_s: int,
    stop: threading.Event,
) -> None:
    """The start's job: the funding settlements planned (:func:`_schedule_funding`; one whose
    pre-funding window has begun is a hold from now on), then the start's tick. Planned by the
    ``funding-planner`` job alone, after the start's tick or beside it, a start inside a
    pre-funding window (a restart after a crash, a deploy a minute before a settlement) held
    nothing back: the holds are in memory only, and the window had begun. A planning that
    fails costs the start nothing (it is tried again in 30 minutes, as every round)."""
    _schedule_funding(sched, runner, venue, funding_lead_s, stop)
    runner.tick()


def _tick_after_close(
    sched: BackgroundScheduler,
    runner: Runner,
    venue: VenueSchedule,
    tf_ms: int,
    stop: threading.Event | None = None,
) -> None:
    """The ``tick`` job: the runner's tick for the newest candle closed on the venue's clock
    (it waits for one closing within seconds, and decides nothing on a close already decided);
    then the jobs follow an offset the tick measured (a wall-clock step), and the next tick is
    planned for the close after the one this tick was for, decided or not (a failed tick is
    tried again at the next close, not at once; one that failed without knowing the venue's
    time used up no close: its close is planned again, at its time once that is known). A
    next tick already due runs now, once, unless a stop was asked for meanwhile (a signal,
    ``--ticks N`` reached)."""
    settle_ms = SETTLE_DELAY_S * 1000
    venue.tick_started()
    runner.tick_after_close(tf_ms, settle_ms)
    venue.follow(sched)
    if venue.plan_tick(sched, runner.tick_close_ms, tf_ms, known=venue.time_known()):
        if stop is not None and stop.is_set():
            return
        runner.tick_after_close(tf_ms, settle_ms)
        venue.follow(sched)
        venue.plan_tick(
            sched, runner.tick_close_ms, tf_ms, catch_up=False, known=venue.time_known()
        )


def _run_until_stopped(
    sched: BackgroundScheduler,
    runner: Runner,
    stopper: Stopper,
    tick_s: float,
    skips: Skips,
    replay: _ReplayJobs | None,
    venue: VenueSchedule | None = None,
) -> None:
    sched.start()
    logger.info("scheduler started: tick every {:.3g} s", tick_s)
    watch = ClockWatch(WALL)
    # Live, the offset is measured again after a step (before the next job): the venue-timed
    # jobs then follow it, and a re-plan on the host's grid first would move them twice.
    keep = frozenset({TICK_JOB}) if venue is not None and venue.followed else frozenset()
    try:
        while not stopper.event.wait(0.2):
            back = watch.stepped_back()
            if back is not None:
                realign(sched, WALL.now(), back, keep=keep)
                if replay is not None:
                    replay.rewind()
            if venue is not None:
                venue.follow(sched)  # (a measurement of the offset since: the jobs move)
    finally:
        sched.shutdown(wait=True)
        logger.info("scheduler stopped after {} ticks{}", runner.ticks_done, skips.summary())


# A wall clock stepped back by more than this (NTP after a long drift, a wrong clock after a
# suspend, a person) re-plans the jobs; smaller steps only delay a job by as much.
STEP_BACK_TOLERANCE_S = 5.0


class ClockWatch:
    """Notices the wall clock stepping back: APScheduler plans runs on wall time, so after a
    step back of an hour every job (guard included) would wait an hour longer, silently."""

    def __init__(self, wall: LiveClock) -> None:
        self._steps = WallSteps(wall, threshold_s=STEP_BACK_TOLERANCE_S)

    def stepped_back(self) -> float | None:
        """Seconds the wall clock went back since the last call (None if it did not)."""
        step_ms = self._steps.step_ms()
        return -step_ms / 1000 if step_ms < 0 else None


def realign(
    sched: BackgroundScheduler, now: datetime, back_s: float, *, keep: Collection[str] = ()
) -> None:
    """Bring every job planned beyond its own next time as of ``now`` back to it (interval jobs
    on their grid, so the ticks stay on candle closes; the daily rollover at the next 00:00),
    except the jobs named in ``keep`` (live, the ticks: they follow the offset to the venue
    measured again after the step, :meth:`VenueSchedule.follow`)."""
    logger.warning(
        "the system clock went back {:.0f} s: re-planning the jobs on the new time", back_s
    )
    for job in sched.get_jobs():
        planned = job.next_run_time
        if planned is None or planned <= now or job.id in keep:
            continue
        if isinstance(job.trigger, IntervalTrigger):
            # the earliest run on the job's own grid that is still ahead (its start date may
            # lie ahead of the new time: the grid, not the start, is what counts)
            due = planned - job.trigger.interval * ((planned - now) // job.trigger.interval)
        elif isinstance(job.trigger, DateTrigger):
            continue  # one run at a time of its own (a settlement): unchanged
        else:
            due = job.trigger.get_next_fire_time(None, now)
        if due is not None and due < planned:
            job.modify(next_run_time=due)
    sched.wakeup()


# A replayed job that starts later than this after its place at ``--speed`` (and at least a
# quarter of a candle's wall time) is late: more than the scheduler's wake-up latency.
LATE_TOLERANCE_S = 0.05


class _ReplayJobs:
    """The jobs of a replay, planned in replayed time: a tick at each candle close from the
    clock's time on (:func:`replay_first_tick`), a guard every ``guard_ms`` between them
    (none at a close: the tick there reconciles, checks the limits and protects), until the
    replayed data ends (``runner.replay_end_ms``: then the run stops).

    One APScheduler date job at a time, each planning the next once it has run, so two never
    overlap and none is skipped. Each sets the replayed clock to its time and runs there,
    the clock standing still until the next: decisions are made at the close, and market
    orders sent at the prices decided on (the paper venue's quote of a candle expires one
    candle later, :meth:`bot.sim.exchange.SimulatedExchange._last`). On the wall clock a job
    comes ``(its time - the previous job's) / speed`` after the previous one's place; one that
    starts late (the previous job took longer) is counted (:meth:`Skips.on_late`) and the
    pace goes on from it, without a burst to catch up.
    """

    def __init__(
        self,
        sched: BackgroundScheduler,
        runner: Runner,
        clock: SimClock,
        *,
        tf_ms: int,
        guard_ms: int | None,
        speed: float,
        stop: threading.Event,
        skips: Skips,
    ) -> None:
        self._sched, self._runner, self._clock = sched, runner, clock
        self._tf_ms, self._guard_ms, self._speed, self._stop = tf_ms, guard_ms, speed, stop
        self._skips = skips
        now = clock.now_ms()
        self._tick_ms = replay_first_tick(now, tf_ms)
        self._guard_at = next_boundary(now, guard_ms) if guard_ms is not None else None
        self._tolerance_s = max(LATE_TOLERANCE_S, tf_ms / 1000 / speed / 4)
        self._job_id: str | None = None

    def start(self) -> None:
        self._plan(WALL.now(), self._clock.now_ms())

    def rewind(self) -> None:
        """The wall clock stepped back: the planned job would wait as much longer; it runs
        now instead, and the pace goes on from it."""
        if self._job_id is None:
            return
        with suppress(JobLookupError):  # it is running: it plans the next one from now on
            self._sched.modify_job(self._job_id, next_run_time=WALL.now())

    def _next(self) -> tuple[str, int]:
        guard = self._guard_at
        if guard is not None and self._guard_ms is not None:
            if guard < self._tick_ms:
                self._guard_at = guard + self._guard_ms
                return "guard", guard
            if guard == self._tick_ms:
                self._guard_at = guard + self._guard_ms
        tick = self._tick_ms
        self._tick_ms += self._tf_ms
        return "tick", tick

    def _plan(self, base: datetime, base_ms: int) -> None:
        """Plan the next job: on the wall clock, its replayed time's distance from ``base_ms``
        (replayed), at ``speed``, after ``base`` (the wall time ``base_ms`` was placed at)."""
        kind, due = self._next()
        end = self._runner.replay_end_ms
        if end is not None and due >= end:
            logger.info("the replayed data ends here: stopping")
            self._stop.set()
            return
        wait = timedelta(seconds=(due - base_ms) / 1000 / self._speed)
        at = min(base + wait, WALL.now() + wait)  # (the wall clock stepped back meanwhile)
        # Each job its own id: ``max_instances=1`` counts runs per id, and the next job is
        # added while this one still runs; under the same id, due at once (a late replay), it
        # would be skipped as "maximum number of running instances reached" and the chain end
        # (/work notes exchange-facts.md §9). Queued behind this one on the one worker instead.
        self._job_id = f"replay-{kind}-{due}"
        self._sched.add_job(
            self._run,
            "date",
            run_date=at,
            args=[kind, due, at],
            id=self._job_id,
            misfire_grace_time=None,  # late, it runs all the same, at its replayed time
        )

    def _run(self, kind: str, due: int, at: datetime) -> None:
        if self._stop.is_set():
            return  # (a signal, --ticks N, the data's end: nothing more runs)
        now = WALL.now()
        late_s = (now - at).total_seconds()
        if kind == "tick" and late_s > self._tolerance_s:
            self._skips.on_late(late_s)
        # On time, the next job keeps the pace from this one's place (the scheduler's wake-up
        # latency does not add up); late, or early (the wall clock stepped back), from now.
        base = at if abs(late_s) <= self._tolerance_s else now
        # (a job that slept, e.g. for the venue to list a trailing position, moved the clock)
        self._clock.advance_to(max(due, self._clock.now_ms()))
        try:
            if kind == "tick":
                self._runner.tick()
            else:
                self._runner.guard()
        finally:
            if not self._stop.is_set():
                self._plan(base, due)


def start_at_first_tick(clock: Clock, tf_ms: int) -> None:
    """``bot run --replay --once``: its one tick at the first candle close of the replay's
    resumed time, where the scheduler would run it (:func:`replay_first_tick`)."""
    if not isinstance(clock, SimClock):
        raise TypeError(f"a replay runs on a clock the scheduler moves, not {clock!r}")
    clock.advance_to(replay_first_tick(clock.now_ms(), tf_ms))


def _unless_stopped(stop: threading.Event, job: Callable[..., object]) -> Callable[..., None]:
    """A job that does nothing once a stop was asked for: a run already queued in the
    scheduler's worker when ``max_ticks`` is reached (or a signal came) must not trade."""

    def run(*args: object) -> None:
        if not stop.is_set():
            job(*args)

    return run


def _schedule_funding(
    sched: BackgroundScheduler,
    runner: Runner,
    venue: VenueSchedule,
    lead_s: int,
    stop: threading.Event,
) -> None:
    """(Re)plan one pre-funding job per settlement time whose pre-funding tick is in the next
    30 minutes, and the holds of those whose pre-funding window has begun. Each contract's
    funding is read on its own (:func:`_plan_funding`): one that cannot be read costs no other
    contract its tick. When none can be read (the venue down), this round's planning is
    skipped: it is tried again in 30 minutes, and the guard and the ticks run on."""
    try:
        _plan_funding(sched, runner, venue, lead_s, stop)
    except Exception as exc:
        logger.warning("pre-funding ticks not planned this round: {}: {}", type(exc).__name__, exc)


def _plan_funding(
    sched: BackgroundScheduler,
    runner: Runner,
    venue: VenueSchedule,
    lead_s: int,
    stop: threading.Event,
) -> None:
    """A settlement's time is the venue's: its tick is planned ``lead_s`` before it on the
    venue's clock, run on the host's through the offset (:class:`VenueSchedule`), and its
    contracts are held back by every decision tick from then until the settlement
    (``Runner.hold_for_funding``).

    A settlement whose window has begun (``t - lead_s <= now < t``: a start a minute before
    it, a planning that came late) is a hold from now on, without a pre-funding tick of its
    own: the start's tick, or the next decision tick, is held like it; a planned pre-funding
    tick not run yet is left as planned (planned again, one that ran would run twice)."""
    engine = runner.engine
    now = venue.venue_now_ms()
    due: dict[str, tuple[int, Decimal]] = {}  # contract -> (its settlement, its rate)
    unread: dict[str, str] = {}
    read = 0
    for sym in engine.symbols:
        if sym in engine.withdrawn:
            # no decision on it (Engine.restrict), so no tick to plan; and one the venue no
            # longer lists cannot even be read
            continue
        try:
            info = engine.market.funding(sym, now, engine.policy.funding.lookback)
        except Exception as exc:
            # This contract's read alone (a rate beyond the venue's cap, a garbled history row,
            # a read that timed out) costs it its own pre-funding tick and no other contract
            # theirs, as a tick costs only the contract whose market data it cannot read (it
            # once skipped every contract's planning, round after round).
            unread[sym] = f"{type(exc).__name__}: {exc}"
            continue
        read += 1
        t = info.next_settlement_ms
        if t is not None and now < t and t - lead_s * 1000 <= now + 30 * 60_000 and info.rate != 0:
            due[sym] = (t, info.rate)
    if not read and unread:
        logger.warning(
            "pre-funding ticks not planned this round: no contract's funding could be read: {}",
            "; ".join(f"{s}: {why}" for s, why in unread.items()),
        )
        return
    for sym, why in unread.items():
        logger.warning(
            "pre-funding ticks: {} funding not read ({}): no tick planned for its own settlement; "
            "it takes no increase in the ticks planned for the others",
            sym,
            why,
        )
    if not due:
        return
    # Only contracts whose current position would pay at their settlement are held back. The
    # positions are one account read: an unreadable answer (AccountUnreadable) is the whole
    # account's, not one contract's, and unknown is never flat: every contract due is then held
    # back as if it paid (the tick may still cut it; one that does not pay waits for the next
    # regular tick to grow).
    try:
        positions = engine.exchange.fetch_positions(sorted(due))
    except Exception as exc:
        logger.warning(
            "pre-funding ticks: positions not read ({}: {}): every contract due is held back",
            type(exc).__name__,
            exc,
        )
        paying = set(due)
    else:
        paying = {
            s
            for s, (_, rate) in due.items()
            if (p := positions.get(s)) is not None and p.qty * rate > 0
        }
    by_time: dict[int, set[str]] = {}
    for sym in paying:
        by_time.setdefault(due[sym][0], set()).add(sym)
    with venue.lock:
        venue.follow(sched)  # planned on the offset of now, those planned before moved to it
        for t, symbols in by_time.items():
            # A contract whose funding could not be read may settle then too, and pay: unknown,
            # so it takes no increase in this tick either (its data read again there or not).
            _plan_settlement(sched, runner, venue, t, symbols | unread.keys(), now, lead_s, stop)


def _plan_settlement(
    sched: BackgroundScheduler,
    runner: Runner,
    venue: VenueSchedule,
    t: int,
    symbols: set[str],
    now: int,
    lead_s: int,
    stop: threading.Event,
) -> None:
    """The pre-funding tick of the settlement at ``t`` (venue ms) for ``symbols`` and their
    hold from it until ``t``; only the hold when its window has begun at ``now``."""
    start = t - lead_s * 1000
    runner.hold_for_funding(t, start, symbols)
    if start <= now:
        logger.info(
            "funding settlement at {} in {:.0f} s: {} take no increase until then",
            utc_text(t),
            (t - now) / 1000,
            ", ".join(sorted(symbols)),
        )
        return
    run_at = venue.host_time(start)
    sched.add_job(
        _unless_stopped(stop, runner.before_funding),
        "date",
        run_date=run_at,
        args=[symbols],
        id=f"funding-{t}",
        replace_existing=True,
        # late, it still runs until the settlement, never after it
        misfire_grace_time=lead_s,
    )
    logger.info(
        "pre-funding tick at {} for {} (settlement at {})",
        run_at.isoformat(),
        ", ".join(sorted(symbols)),
        utc_text(t),
    )
