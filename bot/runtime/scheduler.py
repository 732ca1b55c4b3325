"""APScheduler 3 drives the runner.

Jobs: the decision ``tick`` at the policy's cadence (aligned to candle closes, a few seconds after
so the candle is final), ``guard`` (loss limits on the marks of the moment, then the protection
invariant) between ticks, also when replaying recorded data, ``funding`` before each
contract's next settlement, ``rollover`` at 00:00 UTC, and live only ``clock-resync`` hourly (the
host clock's offset to the venue's, :mod:`bot.runtime.clock_offset`). One worker thread and
``max_instances=1``:
two jobs never overlap; ``coalesce=True``: missed runs collapse into one. On live time a late
decision tick, guard or funding planning still runs (once), a pre-funding tick until its
settlement; a rollover later than the grace period is skipped (APScheduler logs it, routed into
loguru; the next job rolls the day). A replay faster than the
bot can tick skips ticks the same way: that is said once, with the fix, and counted in the last
line (:class:`Skips`), instead of one APScheduler line per skipped run.

SIGTERM or SIGINT sets a flag; the running job finishes, the scheduler shuts down waiting for it,
the caller persists and exits 0. The main thread only waits.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from loguru import logger

from bot.clock import Clock, LiveClock, WallSteps, ms_to_datetime
from bot.engine.tick import TickResult
from bot.errors import BotError
from bot.runtime.runner import Runner

WALL = LiveClock()  # APScheduler runs on wall time, even when the bot's clock is replayed
SETTLE_DELAY_S = 5  # seconds after a candle closes before deciding on it
CLOCK_RESYNC_SECONDS = 3600  # live: re-measure the host clock's offset to the venue's


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
    (``max_instances``) or the run came later than the grace period (``missed``).

    Live, each one is a candle the bot did not decide on (APScheduler logs each). In a replay
    they mean ``--speed`` outruns the bot: replayed time moves on while a tick runs, so the
    run decides on fewer candles than the data holds, which a trader reading its results must
    know. The replay says so once, with the fix, and its per-run lines are not logged.
    """

    def __init__(self, *, replay: bool, speed: float, tick_s: float) -> None:
        self.replay, self.speed, self.tick_s = replay, speed, tick_s
        self.count = 0

    def on_event(self, event: JobEvent) -> None:
        if event.job_id != "tick":
            return
        self.count += 1
        if self.replay and self.count == 1:
            logger.warning(
                "replay at {:g}x outruns the bot: a candle lasts {:.3g} s of wall time and a tick "
                "took longer, so the ticks it overlaps are skipped and the run does not decide "
                "on every candle; lower --speed (skipped ticks are counted when it stops)",
                self.speed,
                self.tick_s,
            )

    def summary(self) -> str:
        if not self.count:
            return ""
        why = "the replay ran faster than the bot ticks" if self.replay else "missed or overlapped"
        return f" ({self.count} scheduled tick(s) skipped: {why})"


class _QuietReplaySkips(logging.Filter):
    """Drops APScheduler's line per skipped replay run (:class:`Skips` says it once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return "maximum number of running instances" not in text and "was missed by" not in text


# Where APScheduler 3 logs a run skipped for max_instances (the scheduler) and a missed run
# (the executor, by its alias): a filter acts only on the logger that creates the record.
_SKIP_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")


@contextmanager
def _quiet_replay_skips() -> Iterator[None]:
    quiet = _QuietReplaySkips()
    for name in _SKIP_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    try:
        yield
    finally:
        for name in _SKIP_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)


@dataclass(frozen=True)
class ScheduledRun:
    """How a scheduled run went: decision ticks run, and scheduled ticks skipped."""

    ticks: int
    skipped: int


def next_boundary(now_ms: int, tf_ms: int) -> int:
    return now_ms - now_ms % tf_ms + tf_ms


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
    """Run until a signal (or ``max_ticks`` ticks). ``live_time`` False (replay): the wall-time
    interval is ``tf / speed`` and the funding and rollover jobs are left to the ticks."""
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
    if live_time:
        add_live_jobs(
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
        sched.add_job(
            unless_stopped(runner.tick),
            "interval",
            seconds=tick_s,
            id="tick",
            next_run_time=WALL.now(),
        )
        # Replayed paper trading keeps its guard job too (the loss limits between ticks).
        if replay_runs_guards(guard_seconds, speed):
            sched.add_job(
                unless_stopped(runner.guard), "interval", seconds=guard_seconds / speed, id="guard"
            )
    failed: list[str] = []

    def on_error(event: JobExecutionEvent) -> None:
        # The runner's jobs record and alert their own failures and never raise: an error here
        # is the scheduler failing to run a job at all. Every job would fail alike, and a bot
        # that cannot run its jobs must stop and say so, not idle as if it traded.
        failed.append(f"{event.job_id}: {type(event.exception).__name__}: {event.exception}")
        logger.critical("job {}: the bot stops", failed[-1])
        stopper.event.set()

    sched.add_listener(on_error, EVENT_JOB_ERROR)
    skips = Skips(replay=not live_time, speed=speed, tick_s=tick_s)
    sched.add_listener(skips.on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
    quiet: AbstractContextManager[None] = nullcontext() if live_time else _quiet_replay_skips()
    with quiet:
        _run_until_stopped(sched, runner, clock, stopper, tick_s, skips)
    if failed:
        raise SchedulerFailed(f"job {failed[0]}; the bot stopped")
    return ScheduledRun(runner.ticks_done, skips.count)


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
) -> None:
    """The jobs of a bot on live time (live or paper trading on live prices); with
    ``clock_resync`` (live trading) the hourly ``clock-resync`` job too.

    The decision tick, the guard and the funding planner run however late they come
    (``misfire_grace_time=None``; still coalesced: once, not once per missed run). Skipped for
    being late, a tick that waited behind a slow job or a machine that slept cost the whole
    candle's decision (a day on a 1d policy), a guard queued behind a long tick was dropped and
    a late planning left the settlements of its half hour unplanned; each reads the account
    and the time afresh, so a late run is what a restart does. A pre-funding tick runs until
    its settlement, however late, and never after it.
    """
    tick = _unless_stopped(stop, runner.tick)
    first = ms_to_datetime(next_boundary(clock.now_ms(), tf_ms)) + timedelta(seconds=SETTLE_DELAY_S)
    # A start is a recovery: one tick at once, then ticks aligned to candle closes.
    sched.add_job(tick, "date", run_date=WALL.now(), id="startup-tick", misfire_grace_time=None)
    sched.add_job(
        tick,
        "interval",
        seconds=tf_ms / 1000,
        start_date=first,
        id="tick",
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
        lambda: _schedule_funding(sched, runner, clock, funding_lead_seconds, stop),
        "interval",
        minutes=30,
        id="funding-planner",
        next_run_time=WALL.now(),
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


def _run_until_stopped(
    sched: BackgroundScheduler,
    runner: Runner,
    clock: Clock,
    stopper: Stopper,
    tick_s: float,
    skips: Skips,
) -> None:
    sched.start()
    logger.info("scheduler started: tick every {:.3g} s", tick_s)
    watch = ClockWatch(WALL)
    try:
        while not stopper.event.wait(0.2):
            if runner.replay_end_ms is not None and clock.now_ms() >= runner.replay_end_ms:
                logger.info("the replayed data ends here: stopping")
                break
            back = watch.stepped_back()
            if back is not None:
                realign(sched, WALL.now(), back)
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


def realign(sched: BackgroundScheduler, now: datetime, back_s: float) -> None:
    """Bring every job planned beyond its own next time as of ``now`` back to it (interval jobs
    on their grid, so the ticks stay on candle closes; the daily rollover at the next 00:00)."""
    logger.warning(
        "the system clock went back {:.0f} s: re-planning the jobs on the new time", back_s
    )
    for job in sched.get_jobs():
        planned = job.next_run_time
        if planned is None or planned <= now:
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
    clock: Clock,
    lead_s: int,
    stop: threading.Event,
) -> None:
    """(Re)plan one pre-funding job per settlement time in the next 30 minutes. A read that
    fails (the venue down) skips this round's planning: it is tried again in 30 minutes, and
    the guard and the ticks run on."""
    try:
        _plan_funding(sched, runner, clock, lead_s, stop)
    except Exception as exc:
        logger.warning("pre-funding ticks not planned this round: {}: {}", type(exc).__name__, exc)


def _plan_funding(
    sched: BackgroundScheduler,
    runner: Runner,
    clock: Clock,
    lead_s: int,
    stop: threading.Event,
) -> None:
    engine = runner.engine
    by_time: dict[int, set[str]] = {}
    now = clock.now_ms()
    for sym in engine.symbols:
        if sym in engine.withdrawn:
            # no decision on it (Engine.restrict), so no tick to plan; and one the venue no
            # longer lists cannot even be read: its failure skipped every contract's planning
            continue
        info = engine.market.funding(sym, now, engine.policy.funding.lookback)
        t = info.next_settlement_ms
        if t is None or not now < t - lead_s * 1000 <= now + 30 * 60_000:
            continue
        # Only contracts whose current position would pay at this settlement are held back.
        pos = engine.exchange.fetch_positions([sym]).get(sym)
        if pos is not None and pos.qty * info.rate > 0:
            by_time.setdefault(t, set()).add(sym)
    for t, symbols in by_time.items():
        run_at = ms_to_datetime(t - lead_s * 1000)
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
        logger.info("pre-funding tick at {} for {}", run_at.isoformat(), ", ".join(sorted(symbols)))
