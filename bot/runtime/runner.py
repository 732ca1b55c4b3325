"""The runner: what each scheduled job does, around the engine.

* ``tick``: apply pending commands (``bot halt``/``bot resume``), bring the paper exchange's
  prices up to now, run the engine's tick, persist, raise alerts. A failing job is recorded and
  alerted; after ``max_failures`` jobs of one kind (decision ticks, guards) failed in a row the
  bot moves itself to ``reducing``. Each kind counts its own run, and only a success of that
  kind ends it: a decision tick that fails every hour (a stale contract catalogue) while the
  minute guard between ticks succeeds is a run all the same. The counts survive a restart (a
  bot a supervisor restarts after each crash must still get there): each ``tick_failed`` event
  says how many of its kind failed in a row, and the first job of the kind that succeeds after
  them records a ``jobs_ok`` event that ends the kind's run.
* ``guard``: between ticks, the daily-loss and drawdown limits on the marks of the moment (a
  breach acts at once: reducing, or halted with flatten) and the protection invariant.
* ``tick_after_close``: the scheduled decision tick, a settle delay after each candle close on
  the venue's clock; started a little early (before that, on the venue's clock), it waits the
  remainder. Each is for one close (``tick_close_ms``), decided or tried once; a run that
  cannot know the venue's time (the offset not measured since the wall clock stepped) tries
  none.
* ``before_funding``: a tick that may not add exposure to contracts about to pay funding; any
  decision tick within the lead of a settlement planned so holds the same contracts back
  (``hold_for_funding``; a start's tick too, the settlements planned before it).
* ``rollover``: the UTC-day rollover of the daily-loss limit.
Every job that completes without raising replaces the heartbeat (its name and the clock's
time): the bot's liveness, whatever the policy's timeframe. The first job that writes it after
jobs failed on the state database ends that incident (``store_unavailable``), whatever its kind.
A job failed by a venue that holds every request for longer than a guard interval (a rate-limit
ban) alerts ``venue_rate_limit``, until when; the first job that completes ends it.
Every log line of a job carries the job's tick id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol, TypeVar

from loguru import logger

from bot.alerts import Alert, AlertRules, Notifier, conditions
from bot.clock import Clock, WallSteps, ms_to_datetime, utc_text
from bot.domain.enums import EventKind, TradingState
from bot.engine.account import AccountView
from bot.engine.tick import Engine, TickResult
from bot.errors import AccountUnreadable, BotError, RateLimited
from bot.logs import replayed_prefix
from bot.ports.client_ids import base36
from bot.ports.store import Heartbeat, RiskEvent, RiskMemory
from bot.risk.guard import floors
from bot.risk.loss_budget import budget_exhausted
from bot.risk.state import initial_memory, set_state, state_event
from bot.runtime.events import record_event_now
from bot.runtime.feeds import PriceFeed
from bot.runtime.venue_hold import hold_over_reason, hold_reason, recorded_hold_end
from bot.store.instance_lock import AlreadyRunning
from bot.store.sql import SqlStore, StoreReplaced, StoreUnavailable

T = TypeVar("T")
# A wall clock that moved this much more or less than the monotonic clock between two jobs
# stepped: the clock offset to the venue is measured again before the job (live).
WALL_STEP_S = 1.0


class ClockResync(Protocol):
    """Measures the host clock's offset to the venue's again (signing with it from then on);
    ``when`` says why (the event and the alert name it). Returns whether it was measured, and
    the report of the measurement (a ``clock`` event and alert: written to the state
    database), made already unless ``deferred``: then the caller makes it. Never raises."""

    def __call__(
        self, when: str = ..., *, deferred: bool = ...
    ) -> tuple[bool, Callable[[], None]]: ...


# The event that ends an incident -> the kind of the event that alerted it (the alert's key).
ENDS = {
    EventKind.PROTECTED: EventKind.UNPROTECTED,
    EventKind.READABLE: EventKind.UNREADABLE,
    EventKind.DECIDING: EventKind.NO_DECISION,
    EventKind.FLATTEN_ENDED: EventKind.FLATTEN_PENDING,
    EventKind.FOREIGN_GONE: EventKind.FOREIGN,
}
# Which run of failures a job counts in: the jobs that do the same work fail together (a
# pre-funding tick is a decision tick, its catalogue check included; the day's rollover is the
# guard), and a success of one kind says nothing of the other (a guard does not read the contract
# catalogue a decision tick refuses to trade on).
JOB_KINDS = {"tick": "tick", "funding": "tick", "guard": "guard", "rollover": "guard"}
# "(3 failed tick jobs in a row)"; an older bot counted every job together: "(3 failed jobs in a
# row)", its kind the job's that failed (the reason starts with the job's name).
_IN_A_ROW = re.compile(r"\((\d+) failed (?:(\w+) )?jobs? in a row\)$")
# "guard done after 2 failed guard job(s) in a row"; an older bot's "... failed job(s) in a row"
# ended every run.
_ENDED = re.compile(r"done after \d+ failed (?:(\w+) )?job\(s\) in a row$")
# Events read at start to restore the counts: only failures and the ends of runs are recorded,
# so a kind that fails only now and then is found far back; one whose failures fill all of them
# (a guard failing every minute for a week) has a run longer than any max_failures (<= 1000).
RESTORE_EVENTS = 10_000
# A scheduled decision tick that starts at most this long before a candle's close plus the
# settle delay, on the venue's clock, waits for it (the settle delay, 5 s, and as much again):
# the scheduler plans on the host's clock converted by the offset last measured, and a
# measurement or a wall-clock step between the plan and the run moves the run by the change.
# One that starts earlier is for the newest candle closed then (``close_to_decide``).
MAX_CLOSE_WAIT_MS = 10_000
# A wait the venue asks for (``Retry-After`` of a 429 or a 418 ban) longer than this outlasts a
# guard interval (``runtime.guard_seconds``, 60 s by default): the adapter holds every request
# that long (bot.exchange.ccxt_clients.SharedPacer.hold), so every job meanwhile fails without
# sending anything, stops and closes included. Binance bans an IP that keeps sending after
# 429s for 2 minutes up to 3 days (shared notes exchange-facts section 7): the owner must hear
# that nothing can be sent, and until when, not one more ``tick_failed`` warning an hour.
LONG_HOLD_S = 60.0


def ended_incidents(store: SqlStore, since_ms: int) -> dict[str, int]:
    """When the incidents a recorded end event closed last ended since ``since_ms`` (alert key
    -> ms, as :meth:`Runner._alert` keys them): a held alert of one, restored at a start, is
    sent as over since then (``Notifier.restore``), not as if it held now."""
    ended: dict[str, int] = {}
    for e in store.recent_events(RESTORE_EVENTS, kinds=tuple(ENDS), since_ms=since_ms):
        ended.setdefault(f"{ENDS[e.kind]}:{e.symbol or 'account'}", e.ts_ms)  # (newest first)
    return ended


def _key_time(ms: int) -> str:
    """An event's time in an alert key: each state change or exit is its own alert."""
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def close_to_decide(venue_ms: int, tf_ms: int, settle_ms: int) -> tuple[int, int]:
    """The candle close a scheduled decision tick that starts at ``venue_ms`` on the venue's
    clock decides on, and how long it waits for it first (ms, >= 0): the newest close of
    ``tf_ms`` candles whose settle delay ``settle_ms`` has passed, or the next one when its
    settle delay ends within :data:`MAX_CLOSE_WAIT_MS` (a tick planned for it that starts a
    little early: deciding at once, it decided without that candle, a whole timeframe late)."""
    due = venue_ms - settle_ms
    newest = due - due % tf_ms
    wait_ms = newest + tf_ms - due
    if wait_ms <= MAX_CLOSE_WAIT_MS:
        return newest + tf_ms, wait_ms
    return newest, 0


class VenueTimeUnknown(BotError):
    """A scheduled decision tick that cannot know the venue's time: the offset to it could not
    be measured since the wall clock stepped (the host's time corrected by the offset from
    before the step is off by as much as the step)."""


@dataclass(frozen=True, slots=True)
class AlreadyDecided:
    """What a scheduled decision tick returns when the newest close is one a decision tick
    was already for (``Runner.tick_close_ms``): it decides nothing (the scheduler plans the
    next close)."""

    close_ms: int


def job_kind(job: str) -> str:
    """The run of failures ``job`` counts in (see ``JOB_KINDS``; another job is its own kind)."""
    return JOB_KINDS.get(job, job)


def failed_in_a_row(events_newest_first: Iterable[RiskEvent]) -> dict[str, int]:
    """Failed jobs in a row per kind at the end of the recorded events: the count the newest
    ``tick_failed`` event of a kind says, none when a ``jobs_ok`` of that kind is newer. A
    ``jobs_ok`` an older bot recorded (no kind) ended every run: nothing older counts."""
    counts: dict[str, int] = {}
    ended: set[str] = set()
    for e in events_newest_first:
        if e.kind is EventKind.JOBS_OK:
            end = _ENDED.search(e.reason)
            if end is None or end.group(1) is None:
                break
            ended.add(end.group(1))
        elif e.kind is EventKind.TICK_FAILED:
            match = _IN_A_ROW.search(e.reason)
            if match is None:
                continue
            kind = match.group(2) or job_kind(e.reason.split(":", 1)[0])
            if kind not in ended and kind not in counts:
                counts[kind] = int(match.group(1))
    return {kind: n for kind, n in counts.items() if n > 0}


@dataclass(slots=True)
class Runner:
    engine: Engine
    store: SqlStore
    clock: Clock
    notifier: Notifier
    rules: AlertRules
    feed: PriceFeed | None = None
    save_paper: Callable[[], None] | None = None
    max_failures: int = 3
    # a venue's hold longer than this (the guard interval, runtime.guard_seconds) is alerted
    long_hold_s: float = LONG_HOLD_S
    replay_end_ms: int | None = None  # replayed data ends here: the run stops
    ticks_done: int = 0
    on_tick: list[Callable[[TickResult], None]] = field(default_factory=list)
    # Run before every tick; one that raises stops the tick (e.g. a stale contract catalogue).
    before_tick: list[Callable[[], None]] = field(default_factory=list)
    # Run before every guard (the day's rollover too): live, the catalogue refresh when it is
    # due (a contract the venue delisted is seen between decision ticks an hour or a day
    # apart); refuses nothing the guard needs (a stale catalogue stops the ticks only).
    before_guard: list[Callable[[], None]] = field(default_factory=list)
    # Run before every job (tick, guard...); one that raises stops the job: e.g. the state
    # database's instance lock, lost with its connection and taken by another bot.
    before_job: list[Callable[[], None]] = field(default_factory=list)
    # Live: re-measures the host clock's offset to the venue's (bot.runtime.clock_offset), run
    # as the scheduler's hourly ``clock-resync`` job, and before the next job when the wall
    # clock stepped since the last one; never raises.
    clock_resync: ClockResync | None = None
    # Live: what `bot run` does once the start is confirmed, never before the prompt (a start
    # declined there sends nothing): measure the clock offset and report one too large, send
    # the alerts the start's catalogue check held. Never raise.
    at_confirmed_start: list[Callable[[], object]] = field(default_factory=list)
    # The candle close (venue ms) the newest scheduled decision tick (``tick_after_close``) was
    # for: decided on, or tried (a failed one, also one that failed in the checks every job
    # makes first, used up the close due when it ran). No later tick decides on it or an
    # earlier one again, and the scheduler plans the next for the close after it. None before
    # the first; in memory only (a start's tick decides on the candles closed then anyway).
    tick_close_ms: int | None = field(default=None, init=False)
    # The wall clock against the monotonic one, read at every job (live: see clock_resync).
    _wall_steps: WallSteps | None = field(default=None, init=False, repr=False)
    # The wall clock stepped and the offset to the venue could not be measured since: the
    # venue's time (the host's corrected by an offset the step made wrong) is not known; each
    # job measures again first (``venue_time_known``).
    _offset_stale: bool = field(default=False, init=False, repr=False)
    # The report of the offset measured after a step, before the checks every job makes first:
    # made once a job's checks have passed (never into a database another bot took).
    _clock_report: Callable[[], None] | None = field(default=None, init=False, repr=False)
    # Funding settlements (venue ms) the scheduler planned a pre-funding tick for -> (from when
    # on the venue's clock, the contracts held back): every decision tick in that window holds
    # them, not the pre-funding tick alone (``hold_for_funding``).
    _funding_holds: dict[int, tuple[int, frozenset[str]]] = field(
        default_factory=dict, init=False, repr=False
    )
    # Failed jobs in a row, per kind (``job_kind``); a kind absent has none.
    _failures: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    # A job failed on the state database (``store_unavailable`` alerted) and no job has
    # written since: the first that does ends the incident, whatever kind it is. True at a
    # start: the previous process may have alerted one (recorded: a new outage within the
    # dedup window would be taken for it) that the first write ends.
    _store_failed: bool = field(default=True, init=False, repr=False)
    # ``venue_rate_limit`` was alerted (a long hold) and no job has completed since (at a
    # start: maybe, by the previous process).
    _venue_held: bool = field(default=True, init=False, repr=False)
    _venue_hold_end_ms: int = field(default=0, init=False, repr=False)  # of the hold alerted

    def __post_init__(self) -> None:
        if self.clock_resync is not None:
            self._wall_steps = WallSteps(self.clock, WALL_STEP_S)
        # a restart does not reset the counts
        self._failures = failed_in_a_row(
            self.store.recent_events(
                RESTORE_EVENTS, kinds=(EventKind.TICK_FAILED, EventKind.JOBS_OK)
            )
        )

    @property
    def failures(self) -> int:
        """The longest run of failed jobs of one kind going on (what ``max_failures`` limits)."""
        return max(self._failures.values(), default=0)

    def failures_of(self, job: str) -> int:
        """Failed jobs in a row of ``job``'s kind."""
        return self._failures.get(job_kind(job), 0)

    # -- jobs ----------------------------------------------------------------------------------

    def tick(self) -> TickResult | None:
        return self._job("tick", self._tick)

    def tick_after_close(self, tf_ms: int, settle_ms: int) -> TickResult | None:
        """The scheduler's decision tick, planned ``settle_ms`` after each close of ``tf_ms``
        candles on the venue's clock (a candle is closed when the venue's clock has passed its
        close: ``CcxtExchange.fetch_candles``).

        The offset to the venue is measured again first when the wall clock stepped (before
        the checks every job makes first: it needs no database). After those checks it decides
        on the newest close whose settle delay has passed on the venue's clock, or waits for
        the next one when that is at most :data:`MAX_CLOSE_WAIT_MS` away
        (:func:`close_to_decide`); and records that close in :attr:`tick_close_ms`, whatever
        the tick's outcome. A close a tick was already for is not decided again: the job does
        nothing (a run moved early by a wall-clock step, more than the wait before its close).

        A job that fails in those checks uses up the close due then on the venue's clock all
        the same, and the scheduler plans the next tick for the close after it (planned again
        for the close it failed on, at a time already passed, it ran again at once, and again
        for as long as the failure lasted: a database outage, each run a failed tick,
        ``reducing`` within a second). The offset is measured before those checks for this:
        measured after them, a run moved 40 minutes early by a forward step found its close
        due on the offset from before the step and used it up, and that close got no tick.
        When the offset could not be measured since a step (:meth:`venue_time_known` False),
        no close is used up and none is decided: the job fails (:class:`VenueTimeUnknown`, a
        failed tick), and the scheduler plans the tick for the same close, at its time once
        the offset is measured, never at once (``VenueSchedule.plan_tick``). Decided on the
        offset from before a forward step, a candle still open on the venue's clock was taken
        for closed (``CcxtExchange.fetch_candles`` judges on that time) and its close used up.
        """
        checked = False  # (the checks every job makes first passed)

        def run() -> TickResult | AlreadyDecided:
            nonlocal checked
            checked = True
            if not self.venue_time_known():
                raise VenueTimeUnknown(
                    "the offset to the venue's clock could not be measured since the wall "
                    "clock stepped: no decision on a candle the venue may not have closed "
                    "(the tick is planned again once the offset is measured)"
                )
            close, wait_ms = close_to_decide(self.venue_now_ms(), tf_ms, settle_ms)
            if self.tick_close_ms is not None and close <= self.tick_close_ms:
                logger.info(
                    "no decision tick: a tick was already for the newest candle closed on the "
                    "venue's clock (at {}); the next is for the candle closing at {}",
                    utc_text(close),
                    utc_text(self.tick_close_ms + tf_ms),
                )
                return AlreadyDecided(close)
            self.tick_close_ms = close  # (before the tick: one that fails used it up too)
            if wait_ms > 0:
                logger.info(
                    "the candle closing at {} is not yet final on the venue's clock: "
                    "waiting {:.1f} s for it",
                    utc_text(close),
                    wait_ms / 1000,
                )
                self.clock.sleep(wait_ms / 1000)
            return self._tick()

        result = self._job("tick", run)
        if not checked and self.venue_time_known():
            # Failed in the checks every job makes first: the close due now is used up.
            due, _ = close_to_decide(self.venue_now_ms(), tf_ms, settle_ms)
            last = self.tick_close_ms
            self.tick_close_ms = due if last is None else max(due, last)
        return result if isinstance(result, TickResult) else None

    def guard(self) -> None:
        self._job("guard", self._guard)

    def before_funding(self, symbols: set[str]) -> TickResult | None:
        return self._job("funding", lambda: self._tick(frozenset(symbols)))

    def hold_for_funding(self, settles_ms: int, from_ms: int, symbols: set[str]) -> None:
        """The scheduler planned a pre-funding tick for ``symbols`` at ``from_ms`` before the
        settlement at ``settles_ms`` (both on the venue's clock): from then until the
        settlement, every decision tick holds them back, not that tick alone. A tick of the
        policy's cadence (a 1m or 2m timeframe) or a start's tick between the pre-funding tick
        and the settlement grew again the position the pre-funding tick had held. A hold of
        the same settlement planned again (each planning round within the window) adds to it:
        a contract held back stays so until the settlement."""
        start, held = self._funding_holds.get(settles_ms, (from_ms, frozenset()))
        self._funding_holds[settles_ms] = (min(start, from_ms), held | symbols)

    def venue_now_ms(self) -> int:
        """The time now on the venue's clock (the host's corrected by the offset last
        measured, live; the clock's, paper). No request is made."""
        return self.engine.exchange.venue_now_ms()

    def venue_time_known(self) -> bool:
        """False while the offset to the venue could not be measured since the wall clock
        stepped (live): :meth:`venue_now_ms` is then off by as much as the step."""
        return not self._offset_stale

    def rollover(self) -> None:
        """The UTC day's rollover: the guard (the limits on the equity of now, from the new
        day's start; a halt closes the positions at once; protection). It only updated the
        risk state before: a limit crossed then recorded a halt whose closes waited for the
        next guard job."""
        self._job("rollover", self._guard)

    def resync_clock(self) -> None:
        """The hourly ``clock-resync`` job (live): after the checks every job makes first, so a
        bot whose state database another bot took writes nothing there (it stops instead); a
        check that fails otherwise skips this resync (the next job reports it)."""
        if self.clock_resync is None:
            return
        try:
            for check in self.before_job:
                check()
        except AlreadyRunning as exc:
            self._lock_lost("clock-resync", exc)
            raise
        except Exception as exc:
            logger.warning("clock-resync skipped: {}: {}", type(exc).__name__, exc)
            return
        self._report_clock()
        # (measured now: a step before it needs no other)
        stepped = self._wall_steps is not None and self._wall_steps.step_ms() != 0
        measured, _reported = self.clock_resync()
        if measured or stepped:
            self._offset_stale = not measured

    # -- internals -----------------------------------------------------------------------------

    def _lock_lost(self, name: str, exc: AlreadyRunning) -> None:
        """Another bot holds the state database now: this one must neither trade nor write
        there (not even its failure, nor the report of an offset measured before the job's
        checks). Say so; the caller re-raises and the scheduler ends the run on a job that
        raises."""
        self._clock_report = None
        logger.critical("{} stopped: {}", name, exc)
        self.notifier.notify([Alert("lock_lost", "critical", f"bot stopped: {exc}")])

    def _job(self, name: str, fn: Callable[[], T]) -> T | None:
        tick_id = base36(self.clock.now_ms() // 1000)
        replayed = replayed_prefix(self.clock.now_ms()) if self.replay_end_ms is not None else ""
        with logger.contextualize(tick=tick_id, replayed=replayed):
            started = self.clock.now_ms()
            try:
                # Before anything that depends on the venue's time, the close a failed tick
                # uses up included (it needs no database: its report waits for the checks).
                self._resync_if_the_clock_stepped()
                for check in self.before_job:
                    check()
                self._report_clock()
                # Before anything else it writes: the stops sent while the database could not
                # be written (the reconcile must know them as the bot's).
                self.engine.record_unrecorded()
                self.apply_commands()
                if self.feed is not None:
                    self.feed.catch_up(self.clock.now_ms())
                    if self.save_paper is not None:
                        self.save_paper()
                # Only this job's own reading is its alert conditions' (a tick job that decided
                # nothing, AlreadyDecided, left the last job's: a stop cancelled by hand since
                # then went unalerted).
                self.engine.forget_job_account()
                result = fn()
            except AlreadyRunning as exc:
                self._lock_lost(name, exc)
                raise
            except Exception as exc:
                self._failed(name, exc)
                if isinstance(exc, StoreUnavailable):
                    self._protect_without_store(name)
                else:  # (a StoreUnavailable job's events cannot be read)
                    # What the job recorded before it failed is alerted all the same: a halt
                    # whose flatten met a rate limit on the read after the closes was never
                    # sent (the next job alerts only the events it records itself).
                    self._alert_safely(name, started, readable=False)
                return None
            self._completed(name, ran=not isinstance(result, AlreadyDecided))
            if isinstance(result, TickResult) and result.unreadable is not None:
                self.ticks_done += 1
                logger.warning(
                    "{} sent nothing: account unreadable ({} in a row): {}",
                    name,
                    self.engine.unreadable_streak,
                    result.unreadable,
                )
            elif isinstance(result, TickResult):
                self.ticks_done += 1
                logger.info(
                    "{} done: state {}, equity {:.2f}, {} orders sent, {} denied by the gate, "
                    "{} rejected by the venue, {} outcome unknown",
                    name,
                    result.state.value,
                    result.equity,
                    result.orders_sent,
                    result.denials,
                    result.rejected,
                    result.unknown,
                )
                for d in result.decisions:
                    logger.info("{}", d.reason)
                for callback in self.on_tick:
                    callback(result)
            readable = not (isinstance(result, TickResult) and result.unreadable is not None)
            self._alert_safely(name, started, readable=readable)
            return result

    def _protect_without_store(self, job: str) -> None:
        """The job failed on the state database: a position of the bot's without a stop gets
        one all the same (``Engine.protect_without_store``: a reduce-only stop, sent without a
        record, the one order sent so), alerted per contract. Never raises."""
        try:
            done = self.engine.protect_without_store()
        except Exception as exc:  # (the venue unreachable too): the next job tries again
            logger.error(
                "{}: protecting without the state database failed: {}: {}",
                job,
                type(exc).__name__,
                exc,
            )
            return
        for sym, note in done.items():
            logger.critical("{}: store unavailable: {}", sym, note)
        self.notifier.notify(
            [
                Alert(
                    f"unrecorded_stop:{sym}",
                    "critical",
                    f"{sym}: store unavailable: {note}; recorded once the database is back",
                )
                for sym, note in done.items()
            ]
        )

    def _alert_safely(self, name: str, started: int, *, readable: bool) -> None:
        try:
            self._alert(started, readable=readable)
        except Exception as exc:  # the job's work is done; its alerts must not undo it
            logger.opt(exception=exc).error(
                "{}: checking the alert conditions failed: {}: {}",
                name,
                type(exc).__name__,
                exc,
            )

    def _resync_if_the_clock_stepped(self) -> None:
        """Live: the wall clock stepped since the last job (NTP, a person, a VM resumed), or
        the offset could not be measured since it stepped: measure the offset to the venue
        again before this job's signed requests and before anything reads the venue's time.
        ccxt signs with the host's time corrected by the offset measured before the step, so
        a step back of seconds landed every request, stops included, outside the venue's
        receive window until the next -1021 rejection or the hourly resync measured it again.

        Before the checks every job makes first (the measurement reads the venue, not the
        database), its report kept for after them (:meth:`_report_clock`): a ``clock`` event
        is written to the state database, which must first be known the bot's own."""
        if self._wall_steps is None or self.clock_resync is None:
            return
        step_ms = self._wall_steps.step_ms()
        if step_ms == 0 and not self._offset_stale:
            return
        if step_ms:
            stepped = f"the wall clock stepped {'back' if step_ms < 0 else 'forward'} " + (
                f"{abs(step_ms) / 1000:.1f} s since the last job"
            )
        else:
            stepped = "the offset not measured since the wall clock stepped"
        logger.warning("{}: measuring the offset to the venue again first", stepped)
        measured, report = self.clock_resync(stepped, deferred=True)
        # A measurement failing again, with no new step since (the venue's time endpoint down):
        # the same incident, reported once (by the job that first failed it, or still pending);
        # one report per job wrote a `clock` event a minute, 1,440 a day, and pushed the real
        # incidents out of the recent events `bot status` and the dashboard show. A step, or
        # the measurement succeeding at last, is reported.
        if measured or step_ms or not self._offset_stale:
            self._clock_report = report
        self._offset_stale = not measured

    def _report_clock(self) -> None:
        """Make the report of the offset measured before the job's checks, now they passed."""
        report, self._clock_report = self._clock_report, None
        if report is not None:
            report()

    def _heartbeat(self, job: str) -> bool:
        """Record that ``job`` completed, and when: what the dashboard, ``/healthz`` and ``bot
        status`` judge the bot alive on between ticks (a 1d policy ticks once a day; its guard
        runs every minute). A job that raised records its failure instead, never this.
        Whether it was written (the state database takes writes)."""
        try:
            self.store.record_heartbeat(Heartbeat(ts_ms=self.clock.now_ms(), job=job))
        except Exception as exc:  # the job's work is done; its heartbeat must not undo it
            logger.error("{}: recording the heartbeat failed: {}: {}", job, type(exc).__name__, exc)
            return False
        return True

    def _completed(self, job: str, *, ran: bool = True) -> None:
        """``job`` completed: its heartbeat, and the incidents that ends. Not ``ran`` (a
        decision tick with nothing to decide, ``AlreadyDecided``): the heartbeat alone; a run
        of failed decision ticks goes on, and a venue's hold is not known to be over."""
        if self._heartbeat(job):
            self._store_works()
        if not ran:
            return
        if self._venue_held:
            # The job's requests went out (a hold refuses every one): the venue's hold is over.
            self._venue_held = False
            self.notifier.resolved(["venue_rate_limit"])
            self._end_recorded_hold()
        if self.failures_of(job):
            self._recovered(job)

    def _store_works(self) -> None:
        """A job completed and wrote its heartbeat after jobs failed on the state database:
        that outage is over (the job recorded the stops sent during it first,
        ``Engine.record_unrecorded``), and the next one is a new incident, alerted at once.
        Whatever the job's kind and whatever the other kind's run of failures: a decision
        tick that failed in a short outage counts until the next tick (an hour), and a second
        outage within it was taken for the first one (deduplicated, no critical alert). Not
        on a job's completion alone: a guard that records nothing completes on a full disk;
        its heartbeat does not."""
        if not self._store_failed:
            return
        self._store_failed = False
        self.notifier.resolved(
            ["store_unavailable"] + [f"unrecorded_stop:{sym}" for sym in self.engine.symbols]
        )

    def _guard(self) -> None:
        for check in self.before_guard:
            check()
        self.engine.guard()

    def _tick(self, held: frozenset[str] = frozenset()) -> TickResult:
        """A decision tick; ``held`` (a pre-funding tick's contracts) and the contracts of
        every funding settlement whose hold window holds now take no increase."""
        for check in self.before_tick:
            check()
        self.engine.no_increase = set(held | self._funding_held())
        try:
            return self.engine.tick()
        finally:
            self.engine.no_increase = set()

    def _funding_held(self) -> frozenset[str]:
        """The contracts of the funding holds in force now, on the venue's clock (holds whose
        settlement has passed are forgotten)."""
        if not self._funding_holds:
            return frozenset()
        now = self.venue_now_ms()
        for settles in [t for t in self._funding_holds if t <= now]:
            del self._funding_holds[settles]
        return frozenset(
            s for start, symbols in self._funding_holds.values() if start <= now for s in symbols
        )

    def apply_commands(self) -> None:
        """Apply ``bot halt [--flatten]`` and ``bot resume`` posted through the database.

        A command is marked done only once applied: one whose application fails is applied at
        the next job (applying halt or resume twice changes nothing), never lost."""
        posted = self.store.posted_commands()
        for at, (cmd_id, kind, args) in enumerate(posted):
            now = self.clock.now_ms()
            try:
                opts = json.loads(args) if args else {}
                if not isinstance(opts, dict):
                    raise ValueError(f"arguments are a JSON {type(opts).__name__}")
            except ValueError as exc:
                logger.warning(
                    "command {} ({}) ignored: unreadable arguments: {}", cmd_id, kind, exc
                )
                self.store.command_done(cmd_id)
                continue
            memory = self.store.load_risk_memory() or initial_memory(Decimal(0), now)
            reason = str(opts.get("reason") or f"bot {kind}")
            if kind == "halt":
                flatten = bool(opts.get("flatten"))
                memory = set_state(
                    memory, TradingState.HALTED, reason, sticky=True, flatten=flatten
                )
            elif kind == "resume":
                exhausted = budget_exhausted(memory)
                memory = set_state(memory, TradingState.ACTIVE, reason, sticky=False)
                try:
                    memory = self._fresh_baselines(memory, exhausted=exhausted)
                except Exception as exc:  # halted stays halted until the account can be read
                    # Commands apply in the order posted: a halt posted after this resume and
                    # applied now would be lifted by the resume at the next job. A later halt
                    # supersedes it; else it waits, and every command after it with it.
                    if any(later == "halt" for _, later, _ in posted[at + 1 :]):
                        logger.warning(
                            "command {} (resume) dropped: the account cannot be read ({}: {}) "
                            "and a halt was posted after it",
                            cmd_id,
                            type(exc).__name__,
                            exc,
                        )
                        self.store.command_done(cmd_id)
                        continue
                    logger.warning(
                        "command {} (resume) waits for the next job, and the commands posted "
                        "after it with it: the account cannot be read: {}: {}",
                        cmd_id,
                        type(exc).__name__,
                        exc,
                    )
                    break
            else:
                logger.warning("command {} of unknown kind {!r} ignored", cmd_id, kind)
                self.store.command_done(cmd_id)
                continue
            self.store.save_risk_memory(
                memory, state_event(now, memory, f"command {cmd_id}: {kind} {args}".strip())
            )
            self.store.command_done(cmd_id)
            logger.warning("command {}: {} -> state {}", cmd_id, kind, memory.state.value)

    def _fresh_baselines(self, memory: RiskMemory, *, exhausted: bool = False) -> RiskMemory:
        """A person resumes after a drawdown or daily-loss halt: the limit that halted it is
        measured from the equity of now, or the next job would halt (and flatten) again at once.
        Only a limit still breached is reset; the state event says so. A resume from an
        exhausted loss budget (``exhausted``: reducing, no room for any position under a limit
        not quite reached) resets the limit whose floor left no room, the same way: the person
        accepts the loss so far, or the account would sit idle again at the next job.

        The equity is read from the account now: the last tick's view may be a day old (a 1d
        policy), and a loss since then, the one that halted the bot, would halt it again at
        the next job. An account that cannot be read leaves the command for the next job; so
        does one whose two readings disagree by more than the smallest loss limit (the equity
        becomes a baseline: one garbled number would halt the account again at the next job,
        or hide a loss from its limit), as for the engine's second reading."""
        limits = self.engine.limits
        first = self.engine.reconcile(self.clock.now_ms()).equity()
        equity = self.engine.reconcile(self.clock.now_ms()).equity()
        smallest = min(limits.daily_loss, limits.max_drawdown)
        if abs(equity - first) > smallest * max(abs(first), abs(equity)):
            raise AccountUnreadable(
                f"two readings of the equity disagree ({first:.2f}, then {equity:.2f}) by more "
                f"than the smallest loss limit {smallest:.2%}"
            )
        if equity <= 0:
            return memory
        notes = []
        start = memory.day_start_equity
        # Which floor left no room: the higher one (bot.risk.guard.equity_floor when active).
        daily, drawdown = floors(memory, limits)
        daily_binds = exhausted and daily > drawdown
        if (
            memory.peak_equity > 0
            and (memory.peak_equity - equity) / memory.peak_equity >= limits.max_drawdown
        ) or (exhausted and not daily_binds):
            notes.append(f"drawdown peak {memory.peak_equity:.2f}")
            memory = replace(memory, peak_equity=equity)
        if (start > 0 and (start - equity) / start >= limits.daily_loss) or daily_binds:
            notes.append(f"the day's start {start:.2f}")
            memory = replace(memory, day_start_equity=equity)
        if notes:
            reason = f"{memory.state_reason}; {' and '.join(notes)} reset to equity {equity:.2f}"
            memory = replace(memory, state_reason=reason)
        return memory

    def _failed(self, job: str, exc: Exception) -> None:
        """Record, count and alert a failed job. Never raises: when the state database itself
        is what fails, the alert still goes out (the notifier does not need the store)."""
        now = self.clock.now_ms()
        kind = job_kind(job)
        self._failures[kind] = self._failures.get(kind, 0) + 1
        # A failure the bot names (the venue unreachable, the database down, an answer it
        # cannot read) is one line, every job of an outage, its traceback at DEBUG
        # (runtime.log_level); a bug's traceback is always shown.
        named = isinstance(exc, BotError)
        logger.opt(exception=None if named else exc).error(
            "{} failed ({} {} jobs in a row): {}: {}",
            job,
            self._failures[kind],
            kind,
            type(exc).__name__,
            exc,
        )
        if named:
            logger.opt(exception=exc).debug("{} failed: where", job)
        # Keyed by the kind: a run that goes on is one incident (sent once per dedup window)
        # whatever the other kind's jobs do meanwhile.
        alerts = [
            Alert(f"tick_failed:{kind}", "warning", f"{job} failed: {type(exc).__name__}: {exc}")
        ]
        held = held_for(exc)
        named = end_named(exc)
        # (an IP ban that named no end is alerted whatever the guard interval: its hold is the
        # bot's own, the least the venue documents, and the ban may be much longer)
        if held is not None and (held > self.long_hold_s or not named):
            ends = now + int(held * 1000)
            # (a hold after one that ended always ends later: by more than long_hold_s, or for
            # a ban without an end, by its whole hold, which may be shorter than long_hold_s;
            # the jobs failing within one hold name its end again, within milliseconds)
            later_s = self.long_hold_s if named else min(self.long_hold_s, max(held / 2, 1.0))
            if ends > self._venue_hold_end_ms + later_s * 1000:
                if self._venue_held and named:
                    # A longer hold than the one alerted (Binance lengthens a repeated ban, up
                    # to 3 days): news, not the same incident the dedup window would swallow.
                    # (A ban without an end held again after a probe found it still on is the
                    # same incident: its alert said it would be probed until it ends.)
                    self.notifier.resolved(["venue_rate_limit"])
                self._venue_hold_end_ms = ends
                self._record_hold(now, ends, held, named)
            self._venue_held = True
            alerts.append(venue_hold_alert(now, held, named))
        try:
            if not isinstance(exc, StoreReplaced):  # (refused: not written into the new one)
                alerts += self._record_failure(job, exc, now)
        except Exception as store_exc:
            logger.error(
                "the failure of {} cannot be recorded: {}: {}",
                job,
                type(store_exc).__name__,
                store_exc,
            )
            if not isinstance(exc, StoreUnavailable):
                self._store_failed = True
                alerts.append(_store_alert(store_exc))
        if isinstance(exc, StoreUnavailable):
            self._store_failed = True
            alerts.append(_store_alert(exc))
        self.notifier.notify(alerts)

    def _recovered(self, job: str) -> None:
        """End the run of failed jobs of ``job``'s kind, in the recorded events too (restored
        at the next start). A job of another kind that succeeds ends nothing: a guard that
        succeeds between decision ticks that all fail did reset the count (never reaching
        ``max_failures``) and made each failed tick a new incident, alerted again."""
        kind = job_kind(job)
        failed = self._failures.pop(kind, 0)
        # the run of failures is over: the next one is a new incident (the state database's
        # incident ends apart, at the first write: _store_works)
        self.notifier.resolved([f"tick_failed:{kind}"])
        try:
            record_event_now(
                self.store,
                self.clock.now_ms(),
                EventKind.JOBS_OK,
                None,
                f"{job} done after {failed} failed {kind} job(s) in a row",
            )
        except Exception as exc:  # the job itself succeeded: say so, and carry on
            # (a restart before the next recorded success counts the old run again: the
            # conservative side)
            logger.error("the end of {} failed jobs cannot be recorded: {}", failed, exc)

    def _record_hold(self, now: int, ends: int, held: float, named: bool) -> None:
        """Keep the hold's end in the database: a restart before it refuses to start (a start
        sends its reads at once, and the venue lengthens a ban for requests during it).

        A ban that named no end (Bybit's 403) is recorded too, with the end of the bot's own
        hold: the least the venue documents ("wait for at least 10 minutes"), renewed by each
        probe that finds the ban still on. A start before it could only be refused by the
        venue, and a service manager restarting a bot whose start fails would keep sending
        into the ban, which Bybit makes permanent for an address that keeps breaking its
        limit; a refusal waits at most that least time after the last probe."""
        try:
            record_event_now(
                self.store, now, EventKind.VENUE_HOLD, None, hold_reason(ends, held, named=named)
            )
        except Exception as exc:  # (the failure itself is recorded, or its store alerted, next)
            logger.error("the venue's hold cannot be recorded: {}: {}", type(exc).__name__, exc)

    def _end_recorded_hold(self) -> None:
        """A job's requests went out before the recorded hold's end (a start with
        ``--ignore-venue-hold``, the venue lifting its ban): record that it is over, or every
        later start would be refused until then."""
        now = self.clock.now_ms()
        try:
            recorded = recorded_hold_end(self.store)
            if recorded is not None and recorded[0] > now:
                record_event_now(self.store, now, EventKind.VENUE_HOLD, None, hold_over_reason(now))
        except Exception as exc:  # the job completed: say so, and carry on
            logger.error("the end of the venue's hold cannot be recorded: {}", exc)

    def _record_failure(self, job: str, exc: Exception, now: int) -> list[Alert]:
        kind = job_kind(job)
        n = self._failures[kind]
        memory = record_event_now(
            self.store,
            now,
            EventKind.TICK_FAILED,
            None,
            f"{job}: {type(exc).__name__}: {exc} ({n} failed {kind} job{'s' if n > 1 else ''} "
            "in a row)",
        )
        if (
            self.failures < self.max_failures
            or memory is None
            or memory.state is not TradingState.ACTIVE
        ):
            return []
        # (the longest run: a kind that reached the limit before a resume still counts)
        longest = max(self._failures, key=lambda k: self._failures[k])
        reason = (
            f"{self._failures[longest]} failed {longest} jobs in a row "
            f"(last: {job}: {type(exc).__name__}{_rate_limit_note(exc, now, self.long_hold_s)})"
        )
        reducing = set_state(memory, TradingState.REDUCING, reason, sticky=False)
        self.store.save_risk_memory(reducing, state_event(now, reducing, reason))
        # Keyed by the change's time, as every state alert: a second run of failures within the
        # dedup window (after a resume) is news too.
        when = _key_time(now)
        return [Alert(f"state:reducing@{when}", "critical", f"active -> reducing: {reason}")]

    def _alert(self, since_ms: int, *, readable: bool = True) -> None:
        """Alert the state changes and incidents recorded since the job started (unreadable
        account, a position closed for lack of a stop, with the venue's error, a position
        reduced by a liquidation, an ADL or outside the bot, a position a flattening halt's
        closes left open), and what the account shows.

        The account is read first when the job left no reading of its own to rely on
        (``Engine.job_account``), and the events are collected after it: what that reading
        records (a position found grown outside the bot, or one not the bot's) is alerted with
        the job's. Collected before it, those events fell between this job's window and the
        next job's, and were never sent (each is recorded once)."""
        acct: AccountView | None = None
        if readable:
            try:
                # The job's own reading (a tick's or a guard's), kept in step with its orders:
                # read again only when the job left none to rely on. Every guard read the whole
                # account twice (each contract's open orders and mark, the positions, the
                # balance), for nothing the first reading did not say.
                acct = self.engine.job_account
                if acct is None:
                    acct = self.engine.reconcile(self.clock.now_ms())
            except Exception as exc:  # unreadable, or the venue not answering at all
                if not isinstance(exc, AccountUnreadable):
                    logger.warning(
                        "no account view for the alert conditions: {}: {}",
                        type(exc).__name__,
                        exc,
                    )
        alerts = []
        alerted = (
            EventKind.STATE,
            EventKind.UNREADABLE,
            EventKind.UNPROTECTED,
            EventKind.EXIT,
            EventKind.NO_DECISION,
            EventKind.FLATTEN_PENDING,
            EventKind.FOREIGN,
            EventKind.ADDED,
        )
        # (by kind and time: however many other events the job recorded, none of these is missed)
        events = self.store.recent_events(1000, kinds=alerted + tuple(ENDS), since_ms=since_ms)
        # An incident that ended in this job: when it comes back, even within the dedup window,
        # it is sent again (one alert per incident, not one per hour whatever happens).
        self.notifier.resolved(
            f"{ENDS[e.kind]}:{e.symbol or 'account'}" for e in events if e.kind in ENDS
        )
        for e in events:
            if e.kind == "state":
                # Keyed by the change's time: every change is news (a halt, a resume and a second
                # halt within the dedup window used to send the first halt only).
                when = _key_time(e.ts_ms)
                alerts.append(
                    Alert(f"state:{e.state.value}@{when}", "critical", f"trading state: {e.reason}")
                )
            elif e.kind == "exit":
                # A position the venue or someone else reduced: what the exchange says it was.
                # Keyed by its time: each exit is news (a second liquidation within the dedup
                # window is not the first one again).
                level = "warning" if "outside the bot" in e.reason else "critical"
                when = _key_time(e.ts_ms)
                alerts.append(Alert(f"exit:{e.symbol}@{when}", level, f"{e.symbol}: {e.reason}"))
            elif e.kind == "added":
                # A position of the bot's grown outside it: each addition is news.
                when = _key_time(e.ts_ms)
                alerts.append(
                    Alert(f"added:{e.symbol}@{when}", "warning", f"{e.symbol}: {e.reason}")
                )
            elif e.kind in (
                "unreadable",
                "unprotected",
                "no_decision",
                "flatten_pending",
                "foreign",
            ):
                # (no_decision: a contract without a full window of candles, held with its
                # stop; recorded once per stretch, so alerted once per stretch. flatten_pending:
                # a halt's closes did not close the position, recorded once per incident; the
                # owner told "halted" believes the account flat. foreign: a position not the
                # bot's, recorded once until it is flat again)
                key = f"{e.kind}:{e.symbol or 'account'}"
                level = (
                    "warning" if e.kind in ("unreadable", "no_decision", "foreign") else "critical"
                )
                alerts.append(Alert(key, level, f"{e.symbol or 'account'}: {e.reason}"))
        if acct is None:
            # No account view to check conditions on (the job's reading failed, or this one):
            # what the job recorded is alerted all the same.
            self.notifier.notify(alerts)
            return
        holding = conditions(
            positions=acct.positions,
            resting=acct.resting,
            marks=acct.marks,
            snapshots=self.engine.last_snapshots(),
            instruments=self.engine.instruments,
            wallet=acct.wallet,
            rules=self.rules,
        )
        # On an account just read: a stop missing (or part of the position uncovered) that is
        # not reported now is over. (The liquidation distance and the margin ratio hover around
        # their thresholds: they keep the dedup window, or each crossing would be an alert.)
        held = {a.key for a in holding}
        self.notifier.resolved(
            key
            for sym in self.engine.symbols
            for key in (f"no_stop:{sym}", f"part_unprotected:{sym}")
            if key not in held
        )
        self.notifier.notify(alerts + holding)


def _rate_limit(exc: BaseException) -> RateLimited | None:
    """The venue's rate limit that failed the job: ``exc`` or an exception it was raised from
    (the adapter raises ``RateLimited``, from ccxt's error or from its own hold)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, RateLimited):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def end_named(exc: BaseException) -> bool:
    """Whether the venue said when its refusal ends (False: an IP ban answered without an
    end, held the least the venue documents; see ``RateLimited.end_named``)."""
    limited = _rate_limit(exc)
    return limited is None or limited.end_named


def held_for(exc: BaseException) -> float | None:
    """The seconds the venue still asks for no request (the ``Retry-After`` a ``RateLimited``
    carries: the adapter holds every request that long); None when it names no wait."""
    limited = _rate_limit(exc)
    if limited is None or limited.retry_after is None:
        return None
    return float(limited.retry_after)


def _rate_limit_note(exc: BaseException, now_ms: int, long_hold_s: float = LONG_HOLD_S) -> str:
    """What the reason of a move to ``reducing`` says of a rate limit (nothing otherwise)."""
    held = held_for(exc)
    if held is not None and not end_named(exc):
        until = utc_text(now_ms + round(held * 1000))
        return f", an IP ban of the venue's that named no end: every request held until {until}"
    if held is not None and held > long_hold_s:
        until = utc_text(now_ms + round(held * 1000))
        return f", the venue's rate limit: every request held until {until}"
    if _rate_limit(exc) is not None:
        return ", the venue's rate limit"
    return ""


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


def venue_hold_alert(now_ms: int, held: float, named: bool = True) -> Alert:
    until = utc_text(now_ms + round(held * 1000))
    if not named:
        return Alert(
            "venue_rate_limit",
            "critical",
            "the venue refuses this IP address and gave no end (an IP ban: Bybit's HTTP 403 "
            "'access too frequent', more than 600 requests in 5 s from the address; at least "
            "10 minutes, usually 30, permanent for an address that keeps breaking the limit): "
            f"every request held until {until} ({_duration(held)}, the least the venue "
            "documents), then the next job's reads find out whether the ban is over, and "
            "every request is held as long again while it is not. Until it ends the bot can "
            "place and cancel nothing and cannot read the account, and every job fails; the "
            "resting stops stay on the exchange and fire without the bot. Stop whatever else "
            "sends from this IP address (other programs or bots); to act meanwhile, use the "
            "exchange's app or website from another network",
        )
    return Alert(
        "venue_rate_limit",
        "critical",
        f"requests to the venue held until {until} ({_duration(held)}: the venue's rate "
        "limit or an IP ban, its Retry-After): the bot can place and cancel nothing and cannot "
        "read the account until then, and every job fails meanwhile; the resting stops stay on "
        "the exchange and fire without the bot. Check the request weight used on this IP and "
        "API key (other programs or bots on the same IP or key count against it) and stop "
        "what else sends; to act before then, use the exchange's app or website",
    )


def _store_alert(exc: Exception) -> Alert:
    what = (
        str(exc)
        if isinstance(exc, StoreUnavailable)
        else f"state database: {type(exc).__name__}: {exc}"
    )
    return Alert(
        "store_unavailable",
        "critical",
        f"{what}. Nothing is sent while the state database cannot record it, except a "
        "reduce-only stop for a position of the bot's its stops do not cover (recorded once "
        "the database is back): free the disk, fix the file's permissions or the database "
        "connection; resting orders stay on the exchange",
    )
