"""Time and scheduling of the unattended bot: what a person's ``bot resume`` measures after
hours without a tick, and which scheduled runs survive coming late (a slow venue, a suspended
machine)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler

from bot.bootstrap import build_paper, open_store
from bot.clock import Clock, LiveClock, SimClock, datetime_to_ms, ms_to_datetime
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import MarginMode, TradingState
from bot.domain.market import FundingInfo, VenueRestriction
from bot.domain.position import Balance, Position
from bot.errors import PermanentExchangeError
from bot.runtime.runner import Runner
from bot.runtime.scheduler import VenueSchedule, _schedule_funding, add_live_jobs, new_scheduler
from bot.store.sql import SqlStore, StoreUnavailable
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR_MS = 3_600_000


@pytest.fixture
def config(tmp_path: Path) -> BotConfig:
    return load_config(write_config(tmp_path, contracts=1))


@pytest.fixture
def store(config: BotConfig) -> Iterator[SqlStore]:
    s = open_store(config, create=True)
    yield s
    s.close()


def test_resume_measures_the_limit_from_the_account_of_now_not_the_last_tick(
    config: BotConfig, store: SqlStore
) -> None:
    # A daily policy ticks at 00:00; the guard halts the bot at 10:00 on a daily loss; a person
    # resumes at 14:00. The last tick's account view is 14 hours old: the day's start must be
    # reset to the equity of now, or the next guard measures the same loss and halts again.
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    assert runner.engine.last_account is not None
    ticked_equity = runner.engine.last_account.equity()
    clock.advance_to(START + 10 * HOUR_MS)
    paper.sim.book.wallet -= ticked_equity * Decimal("0.2")  # a loss of a fifth since the tick
    runner.guard()
    halted = store.load_risk_memory()
    assert halted is not None
    assert halted.state is TradingState.HALTED
    clock.advance_to(START + 14 * HOUR_MS)
    store.post_command("resume", "{}", clock.now_ms())
    runner.guard()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE, memory.state_reason
    now_equity = paper.sim.fetch_balance().wallet  # no position left after the halt's flatten
    assert memory.day_start_equity <= now_equity * Decimal("1.001")
    assert replace(memory, state_reason="") != replace(halted, state_reason="")


def test_a_resume_while_the_account_cannot_be_read_waits_for_the_next_job(
    config: BotConfig, store: SqlStore
) -> None:
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    clock.advance_to(START + 10 * HOUR_MS)
    paper.sim.book.wallet -= Decimal(2000)
    runner.guard()
    assert (halted := store.load_risk_memory()) is not None
    assert halted.state is TradingState.HALTED
    store.post_command("resume", "{}", clock.now_ms())
    working = paper.sim.fetch_balance

    def down() -> Balance:
        raise ConnectionError("the venue does not answer")

    paper.sim.fetch_balance = down  # type: ignore[method-assign]
    clock.advance_to(START + 11 * HOUR_MS)
    runner.guard()
    waiting = store.load_risk_memory()
    assert waiting is not None
    assert waiting.state is TradingState.HALTED  # not resumed on a view it could not read
    assert [kind for _id, kind, _args in store.posted_commands()] == ["resume"]
    paper.sim.fetch_balance = working  # type: ignore[method-assign]
    clock.advance_to(START + 12 * HOUR_MS)
    runner.guard()
    resumed = store.load_risk_memory()
    assert resumed is not None
    assert resumed.state is TradingState.ACTIVE, resumed.state_reason
    assert store.posted_commands() == []


def test_a_resume_on_one_garbled_reading_waits_for_two_that_agree(
    config: BotConfig, store: SqlStore
) -> None:
    """The equity a resume reads becomes the limits' baseline: one garbled too high would halt
    the account again at the next job (and sell what it opened), one too low would hide a loss
    from the daily limit. Two readings that disagree leave the command for the next job."""
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    clock.advance_to(START + 10 * HOUR_MS)
    paper.sim.book.wallet -= Decimal(2000)
    runner.guard()
    assert (halted := store.load_risk_memory()) is not None
    assert halted.state is TradingState.HALTED
    store.post_command("resume", "{}", clock.now_ms())
    true_read = paper.sim.fetch_balance
    reads = {"n": 0}

    def first_garbled() -> Balance:
        reads["n"] += 1
        balance = true_read()
        return replace(balance, wallet=balance.wallet * 3) if reads["n"] == 1 else balance

    paper.sim.fetch_balance = first_garbled  # type: ignore[method-assign]
    clock.advance_to(START + 11 * HOUR_MS)
    runner.apply_commands()
    waiting = store.load_risk_memory()
    assert waiting is not None
    assert waiting.state is TradingState.HALTED
    assert [kind for _id, kind, _args in store.posted_commands()] == ["resume"]
    clock.advance_to(START + 12 * HOUR_MS)
    runner.apply_commands()  # two true readings
    resumed = store.load_risk_memory()
    assert resumed is not None
    assert resumed.state is TradingState.ACTIVE, resumed.state_reason
    assert resumed.day_start_equity <= true_read().wallet * Decimal("1.001")


# --- scheduled runs that come late ---------------------------------------------------------------


class CountingRunner:
    """Counts the jobs the scheduler runs; each sets its event. The venue's clock is
    ``clock``, the host's as the test hands it to the scheduler (in step)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SimClock(START)
        self.runs: dict[str, int] = {"tick": 0, "guard": 0}
        self.ran = {name: threading.Event() for name in self.runs}
        # the close the last decision tick was for (Runner.tick_close_ms): these ticks decide
        # on none, unless a test says so
        self.tick_close_ms: int | None = None
        self.holds: list[tuple[int, int, set[str]]] = []

    def _ran(self, name: str) -> None:
        self.runs[name] += 1
        self.ran[name].set()

    def venue_now_ms(self) -> int:
        return self.clock.now_ms()

    def venue_time_known(self) -> bool:
        return True

    def tick(self) -> None:
        self._ran("tick")

    def tick_after_close(self, tf_ms: int, settle_ms: int) -> None:
        self._ran("tick")

    def hold_for_funding(self, settles_ms: int, from_ms: int, symbols: set[str]) -> None:
        self.holds.append((settles_ms, from_ms, symbols))

    def guard(self) -> None:
        self._ran("guard")

    def rollover(self) -> None:
        pass


def test_a_tick_and_a_guard_that_come_late_run_once_instead_of_being_skipped() -> None:
    # A daily policy (tick at 00:00:05) on a machine that slept until 03:00, or whose tick
    # waited behind a job that took minutes: the day's decision must still be taken (once),
    # not skipped until the next day; the guard likewise.
    sched = new_scheduler(grace_seconds=120)
    runner = CountingRunner(SimClock(START))
    stop = threading.Event()
    add_live_jobs(
        sched,
        runner,  # type: ignore[arg-type]
        runner.clock,
        tf_ms=24 * HOUR_MS,
        guard_seconds=60,
        funding_lead_seconds=120,
        stop=stop,
    )
    sched.remove_job("startup-tick")
    sched.remove_job("funding-planner")
    now = LiveClock().now()  # APScheduler plans on the wall clock
    sched.get_job("tick").modify(next_run_time=now - timedelta(hours=3))
    sched.get_job("guard").modify(next_run_time=now - timedelta(minutes=10))
    sched.start()
    try:
        assert runner.ran["tick"].wait(10), "the late decision tick was skipped"
        assert runner.ran["guard"].wait(10), "the late guard was skipped"
    finally:
        sched.shutdown(wait=True)
    assert runner.runs == {"tick": 1, "guard": 1}  # coalesced: once, not once per missed run


class FundingEngine:
    """One long contract whose funding (longs pay) settles ten minutes from ``now_ms``."""

    def __init__(self, now_ms: int) -> None:
        self.symbols: tuple[str, ...] = ("BTC/USDT:USDT",)
        self.settles_ms = now_ms + 10 * 60_000
        self.policy = SimpleNamespace(funding=SimpleNamespace(lookback=3))
        self.market = self
        self.exchange = self
        self.restricted: dict[str, VenueRestriction] = {}
        self.withdrawn: frozenset[str] = frozenset()  # (Engine.restrict derives it)

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(Decimal("0.0001"), Decimal(8), self.settles_ms)

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        sym = symbols[0]
        return {sym: Position(sym, Decimal(1), Decimal(60000), Decimal(2), MarginMode.CROSS)}


def test_a_funding_planner_that_comes_late_still_plans_the_settlement() -> None:
    # The planner (every 30 min) waited minutes behind a slow tick: skipped, the settlement of
    # its half hour got no pre-funding tick. Late, it plans it; that tick may run until the
    # settlement, never after.
    wall = LiveClock()
    sched = new_scheduler(grace_seconds=120)
    engine = FundingEngine(wall.now_ms())
    runner = CountingRunner(SimClock(wall.now_ms()))
    runner.engine = engine  # type: ignore[attr-defined]
    runner.before_funding = lambda symbols: None  # type: ignore[attr-defined]
    add_live_jobs(
        sched,
        runner,  # type: ignore[arg-type]
        runner.clock,
        tf_ms=HOUR_MS,
        guard_seconds=60,
        funding_lead_seconds=120,
        stop=threading.Event(),
    )
    for job in ("startup-tick", "tick", "guard", "rollover"):
        sched.remove_job(job)
    sched.get_job("funding-planner").modify(next_run_time=wall.now() - timedelta(minutes=4))
    planned = threading.Event()
    sched.add_listener(
        lambda event: planned.set() if event.job_id == "funding-planner" else None,
        EVENT_JOB_EXECUTED | EVENT_JOB_MISSED,
    )
    sched.start(paused=False)
    try:
        assert planned.wait(10)
        job = sched.get_job(f"funding-{engine.settles_ms}")
    finally:
        sched.shutdown(wait=True)
    assert job is not None, "the late planner planned no pre-funding tick"
    assert job.next_run_time == ms_to_datetime(engine.settles_ms - 120_000)
    assert job.misfire_grace_time == 120  # until the settlement, never after it


def test_live_trading_resyncs_the_clock_hourly_and_a_late_resync_runs_once() -> None:
    # ccxt measures the host clock's offset to the venue's once, at load_markets: a drift since
    # was found only by a -1021 rejection (of an order, a stop perhaps). Live, it is measured
    # again every hour; a late run (the machine slept) still measures, once.
    resyncs: list[int] = []
    done = threading.Event()

    def resync() -> None:
        resyncs.append(1)
        done.set()

    plain, live = new_scheduler(grace_seconds=120), new_scheduler(grace_seconds=120)
    for sched, clock_resync in ((plain, None), (live, resync)):
        add_live_jobs(
            sched,
            CountingRunner(),  # type: ignore[arg-type]
            SimClock(START),
            tf_ms=HOUR_MS,
            guard_seconds=60,
            funding_lead_seconds=120,
            stop=threading.Event(),
            clock_resync=clock_resync,
        )
    assert plain.get_job("clock-resync") is None  # paper trading signs nothing
    job = live.get_job("clock-resync")
    assert job is not None
    assert job.trigger.interval == timedelta(hours=1)
    assert job.misfire_grace_time is None
    for other in ("startup-tick", "tick", "guard", "rollover", "funding-planner"):
        live.remove_job(other)
    job.modify(next_run_time=LiveClock().now() - timedelta(hours=3))
    live.start()
    try:
        assert done.wait(10), "the late resync was skipped"
    finally:
        live.shutdown(wait=True)
    assert resyncs == [1]  # coalesced: once, not once per missed hour


class WithdrawnEthEngine(FundingEngine):
    """BTC as above; ETH withdrawn by the venue, which no longer lists it: every request that
    names it fails (Binance -1121), as it does live."""

    def __init__(self, now_ms: int) -> None:
        super().__init__(now_ms)
        self.symbols = ("ETH/USDT:USDT", "BTC/USDT:USDT")
        why = "ETH/USDT:USDT: withdrawn by the venue (the venue lists no such market)"
        self.restricted = {"ETH/USDT:USDT": VenueRestriction(why, listed=False)}
        self.withdrawn = frozenset(self.restricted)

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        if symbol == "ETH/USDT:USDT":
            raise PermanentExchangeError("binanceusdm -1121 Invalid symbol.")
        return super().funding(symbol, now_ms, lookback)

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        if "ETH/USDT:USDT" in symbols:
            raise PermanentExchangeError("binanceusdm -1121 Invalid symbol.")
        return super().fetch_positions(symbols)


def test_a_withdrawn_contract_does_not_cost_the_others_their_pre_funding_tick() -> None:
    # A contract the venue withdrew gets no decision; its funding and position cannot even be
    # read once the venue no longer lists it. Asked anyway, its failure skipped the planning of
    # every contract, every round: BTC's settlement got no pre-funding tick for as long as ETH
    # stayed in the configuration.
    wall = LiveClock()
    engine = WithdrawnEthEngine(wall.now_ms())
    runner = CountingRunner(SimClock(wall.now_ms()))
    runner.engine = engine  # type: ignore[attr-defined]
    runner.before_funding = lambda symbols: None  # type: ignore[attr-defined]
    sched = new_scheduler(grace_seconds=120)
    venue = VenueSchedule(runner.clock, runner.venue_now_ms)
    _schedule_funding(sched, runner, venue, 120, threading.Event())  # type: ignore[arg-type]
    job = sched.get_job(f"funding-{engine.settles_ms}")
    assert job is not None, "no pre-funding tick planned for BTC"
    assert list(job.args) == [{"BTC/USDT:USDT"}]


# --- the venue's times on the host's clock ----------------------------------------------------


def test_a_pre_funding_tick_runs_its_lead_before_the_settlement_on_the_venues_clock() -> None:
    """The settlement time is the venue's: planned on the host's clock 8 s ahead of it, the tick
    ran 8 s more before the settlement than its lead; it now runs at the lead on the venue's
    clock, moves when the offset is measured again, and the planner holds its contracts back
    in every decision tick from then until the settlement (Runner.hold_for_funding)."""
    wall = LiveClock().now_ms()
    host, venue_clock = SimClock(wall), SimClock(wall - 8_000)  # the host 8 s ahead
    engine = FundingEngine(venue_clock.now_ms())  # settles 10 minutes from now on the venue
    runner = CountingRunner(venue_clock)
    runner.engine = engine  # type: ignore[attr-defined]
    runner.before_funding = lambda symbols: None  # type: ignore[attr-defined]
    sched = new_scheduler(grace_seconds=120)
    venue = VenueSchedule(host, runner.venue_now_ms)
    _schedule_funding(sched, runner, venue, 120, threading.Event())  # type: ignore[arg-type]
    settles = engine.settles_ms
    job = sched.get_job(f"funding-{settles}")
    assert job is not None
    assert job.trigger.run_date == ms_to_datetime(settles - 120_000 + 8_000)
    assert runner.holds == [(settles, settles - 120_000, {"BTC/USDT:USDT"})]
    sched.start(paused=True)
    try:
        host.advance(timedelta(seconds=12))  # measured again: the host is 20 s ahead now
        venue.follow(sched)
        moved = sched.get_job(f"funding-{settles}").next_run_time
    finally:
        sched.shutdown(wait=False)
    assert moved == ms_to_datetime(settles - 120_000 + 20_000)


def test_a_tick_too_early_for_its_close_gets_a_tick_for_that_close() -> None:
    """A tick that started more than the runner waits before its candle closed on the venue's
    clock (an offset measured in the job itself, after a wall-clock step) decided on the
    candles closed then (the 00:00 close, at 00:30); the close it was planned for gets its own
    tick, and the grid goes on from it."""
    clock = SimClock(START + 30 * 60_000)
    runner = CountingRunner(clock)
    sched = new_scheduler(grace_seconds=120)
    add_live_jobs(
        sched,
        runner,  # type: ignore[arg-type]
        clock,
        tf_ms=HOUR_MS,
        guard_seconds=60,
        funding_lead_seconds=120,
        stop=threading.Event(),
    )
    sched.start(paused=True)
    try:
        job = sched.get_job("tick")
        # APScheduler moved the job to its next run as it started this one, for 01:00
        job.modify(next_run_time=ms_to_datetime(START + 2 * HOUR_MS + 5_000))
        runner.tick_close_ms = START  # (the tick's: the newest candle closed at 00:30)
        job.func()
        job = sched.get_job("tick")
        following = job.trigger.get_next_fire_time(job.next_run_time, job.next_run_time)
    finally:
        sched.shutdown(wait=False)
    assert runner.runs["tick"] == 1
    assert job.next_run_time == ms_to_datetime(START + HOUR_MS + 5_000)
    assert following == ms_to_datetime(START + 2 * HOUR_MS + 5_000)


# --- one decision tick per candle close -------------------------------------------------------


def paper_ticks(
    config: BotConfig, store: SqlStore, clock: SimClock
) -> tuple[Runner, BackgroundScheduler]:
    """A paper bot on ``clock`` and its live jobs, the scheduler started paused: the test runs
    the tick job itself (:func:`run_due_tick`) at the times it moves the clock to."""
    runner, _paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    sched = new_scheduler(grace_seconds=120)
    add_live_jobs(
        sched,
        runner,
        clock,
        tf_ms=HOUR_MS,
        guard_seconds=60,
        funding_lead_seconds=120,
        stop=threading.Event(),
    )
    sched.start(paused=True)
    # (APScheduler planned the first run on the wall clock: on this clock, it is the first
    # close after its time, as add_live_jobs planned it)
    job = sched.get_job("tick")
    job.modify(next_run_time=job.trigger.start_date)
    return runner, sched


def planned_tick(sched: BackgroundScheduler) -> int:
    return datetime_to_ms(sched.get_job("tick").next_run_time)


def run_due_tick(sched: BackgroundScheduler, clock: SimClock) -> bool:
    """What APScheduler does with the tick job when its time has come: its next run first set
    on its trigger's grid, then the job run (which may move it). False: not due."""
    job = sched.get_job("tick")
    if datetime_to_ms(job.next_run_time) > clock.now_ms():
        return False
    job.modify(next_run_time=job.trigger.get_next_fire_time(job.next_run_time, clock.now()))
    job.func()
    return True


class Down:
    """A check that fails while ``down`` (the state database unavailable)."""

    def __init__(self) -> None:
        self.down = True

    def __call__(self) -> None:
        if self.down:
            raise StoreUnavailable("database is locked")


@pytest.mark.parametrize("where", ["before_job", "before_tick"])
def test_a_failed_decision_tick_is_tried_again_at_the_next_close_not_at_once(
    config: BotConfig, store: SqlStore, where: str
) -> None:
    """A tick job that ran a minute before its close (an offset measured in the job, after a
    wall-clock step) decided on the candles closed then, and the close got a tick of its own.
    That tick failed in the checks every job makes first (the database unavailable): the
    runner reset the close named for it only when the tick itself ran, so the scheduler
    planned that close again after every failed run, at a time already passed: the job ran
    again at once, 20 failed ticks in a second (``reducing`` after 3), each also reading the
    venue to protect without the database. A failed tick is now tried again at the next
    close, counted once; a failure in the tick itself likewise."""
    close = START + HOUR_MS
    clock = SimClock(close - 60_000)
    runner, sched = paper_ticks(config, store, clock)
    try:
        sched.get_job("tick").func()  # run a minute before the close
        assert runner.ticks_done == 1  # (on the newest candle closed then, at 00:00)
        assert planned_tick(sched) == close + 5_000  # the close gets its tick
        down = Down()
        getattr(runner, where).append(down)
        clock.advance_to(close + 5_000)
        runs = 0
        while runs < 20 and run_due_tick(sched, clock):
            runs += 1
            clock.advance(timedelta(milliseconds=50))  # (each failed run takes 50 ms)
        assert runs == 1
        assert runner.failures_of("tick") == 1
        assert planned_tick(sched) == close + HOUR_MS + 5_000
        assert runner.tick_close_ms == close  # tried
        down.down = False
        clock.advance_to(close + HOUR_MS + 5_000)
        assert run_due_tick(sched, clock)
    finally:
        sched.shutdown(wait=False)
    assert runner.ticks_done == 2
    assert runner.failures_of("tick") == 0
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE


def test_a_close_already_tried_is_not_decided_again_nor_ends_the_run_of_failed_ticks(
    config: BotConfig, store: SqlStore
) -> None:
    """The tick job run again for a close a tick was already for (on paper, the wall clock
    stepped back and the tick brought back to its grid; live, a run moved early by a step)
    decides nothing, and, deciding nothing, does not end a run of failed ticks; the next tick
    is planned for the next close."""
    close = START + HOUR_MS
    clock = SimClock(close - 60_000)
    runner, sched = paper_ticks(config, store, clock)
    clock.advance_to(close + 5_000)
    try:
        down = Down()
        runner.before_tick.append(down)
        assert run_due_tick(sched, clock)  # the tick for `close` fails
        assert runner.failures_of("tick") == 1
        down.down = False
        clock.advance_to(close + 20 * 60_000)
        sched.get_job("tick").func()  # run again, for the same close
        assert runner.ticks_done == 0
        assert runner.failures_of("tick") == 1
        assert planned_tick(sched) == close + HOUR_MS + 5_000
        clock.advance_to(close + HOUR_MS + 5_000)
        assert run_due_tick(sched, clock)
    finally:
        sched.shutdown(wait=False)
    assert runner.ticks_done == 1
    assert runner.tick_close_ms == close + HOUR_MS
    assert runner.failures_of("tick") == 0


def test_a_tick_that_outlasts_a_candle_is_followed_at_once_by_the_next_closes_tick(
    config: BotConfig, store: SqlStore
) -> None:
    """A tick that ends after the next close's tick time (a slow venue): that close is run at
    once by the same job, once (planned in the past, APScheduler would start it while this
    job still ran and skip it), and the next tick planned for the close after."""
    close = START + HOUR_MS
    clock = SimClock(close - 60_000)
    runner, sched = paper_ticks(config, store, clock)
    clock.advance_to(close + 5_000)

    def slow() -> None:
        runner.before_tick.remove(slow)
        clock.advance_to(close + HOUR_MS + 30_000)

    runner.before_tick.append(slow)
    try:
        assert run_due_tick(sched, clock)
        planned = planned_tick(sched)
    finally:
        sched.shutdown(wait=False)
    assert runner.ticks_done == 2
    assert runner.tick_close_ms == close + HOUR_MS
    assert planned == close + 2 * HOUR_MS + 5_000
