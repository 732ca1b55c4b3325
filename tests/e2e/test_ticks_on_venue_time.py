"""The scheduled decision tick on a host clock ahead of the venue's, through the real ccxt path
(loopback Binance USD-M), the whole process on one host clock the test moves
(tests/fakes/host_clock.py).

A candle counts as closed on the venue's clock (``CcxtExchange.fetch_candles``); the ticks were
planned on the host's (the close + 5 s): a host 8 s ahead of the venue, an offset the bot
measures and otherwise corrects for, ran every tick 3 s before its candle closed there, and each
decided without the candle that had just closed, a whole timeframe late. Here that candle is a
20 % crash. The ticks are now planned on the venue's time converted to the host's, move when
the offset is measured again, and a tick that starts before its candle closed on the venue's
clock waits for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.bootstrap import Secrets, build_live, open_store
from bot.clock import LiveClock, datetime_to_ms, ms_to_datetime
from bot.config.loader import load_config
from bot.domain.market import FundingInfo
from bot.ports.market import CandleWindow, MarketDataPort
from bot.runtime.runner import Runner
from bot.runtime.scheduler import (
    REPLAN_TOLERANCE_MS,
    SETTLE_DELAY_S,
    VenueSchedule,
    add_live_jobs,
    new_scheduler,
)
from bot.store.sql import StoreUnavailable
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.host_clock import HostClock, ccxt_reads
from tests.fakes.live_setup import BTC, hourly_rows, live_config_text, venue_account

KEY, SECRET = "venue-time-key-7c03", "venue-time-secret-19fa2e"
H = 3_600_000
AHEAD_MS = 8_000  # the host's clock is 8 s ahead of the venue's
SETTLE_MS = SETTLE_DELAY_S * 1000


class RecordingMarket:
    """The engine's market-data port, noting the close of the last candle each read returned."""

    def __init__(self, market: MarketDataPort) -> None:
        self.market = market
        self.last_closes: list[int] = []

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        window = self.market.closed_candles(symbol, tf_ms, count, now_ms)
        self.last_closes.append(int(window.ts[-1]) + tf_ms)
        return window

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return self.market.funding(symbol, now_ms, lookback)

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        return self.market.last_price(symbol, now_ms)


@pytest.fixture
def close() -> int:
    """The close the test is about: the next hour's, on real time (APScheduler plans on it)."""
    real = LiveClock().now_ms()
    return real - real % H + H


@pytest.fixture
def clock(close: int, monkeypatch: pytest.MonkeyPatch) -> HostClock:
    host = HostClock()
    host.move_to(close - 10 * 60_000)  # the host's clock reads 10 minutes before the close
    ccxt_reads(host, monkeypatch)
    return host


@pytest.fixture
def server(clock: HostClock, close: int) -> Iterator[LoopbackBinance]:
    backend = venue_account("binanceusdm")
    srv = LoopbackBinance(
        backend,
        api_key=KEY,
        api_secret=SECRET,
        clock=clock,
        symbols=[BTC],
        server_time_offset_ms=-AHEAD_MS,
    )
    # 400 hourly candles, the last one [close - 1h, close) a crash: -20 % from its open.
    rows = hourly_rows(401)
    shift = close - H - rows[-1][0]
    rows = [(t + shift, o, hi, lo, c, v) for t, o, hi, lo, c, v in rows]
    t, o, _hi, _lo, _c, v = rows[-1]
    rows[-1] = (t, o, o, o * Decimal("0.78"), o * Decimal("0.80"), v * 10)
    srv.set_candles(BTC, "trade", rows)
    srv.set_candles(BTC, "mark", rows)
    backend.set_mark(BTC, o * Decimal("0.80"))
    with srv:
        yield srv


@pytest.fixture
def bot(
    tmp_path: Path, server: LoopbackBinance, clock: HostClock
) -> Iterator[tuple[Runner, RecordingMarket]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="venuetime",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    config = load_config(path)
    store = open_store(config, create=True)
    runner = build_live(config, store, Secrets(KEY, SECRET, None), clock=clock)
    for started in runner.at_confirmed_start:
        started()  # (the offset to the venue measured: the host is 8 s ahead)
    market = RecordingMarket(runner.engine.market)
    runner.engine.market = market
    try:
        yield runner, market
    finally:
        runner.engine.exchange.exchange.close()  # type: ignore[attr-defined]
        store.close()


def scheduled(runner: Runner, clock: HostClock) -> tuple[BackgroundScheduler, VenueSchedule]:
    """The live jobs as ``bot run --live`` plans them, the scheduler started paused (the test
    runs the jobs itself, at the times it moves the clock to)."""
    sched = new_scheduler(grace_seconds=120)
    venue = add_live_jobs(
        sched,
        runner,
        clock,
        tf_ms=H,
        guard_seconds=60,
        funding_lead_seconds=120,
        stop=threading.Event(),
        clock_resync=runner.resync_clock,
    )
    sched.start(paused=True)
    return sched, venue


def test_the_tick_planned_for_a_close_decides_on_that_candle_on_a_host_clock_ahead(
    bot: tuple[Runner, RecordingMarket], clock: HostClock, close: int
) -> None:
    runner, market = bot
    sched, _venue = scheduled(runner, clock)
    try:
        job = sched.get_job("tick")
        fire = datetime_to_ms(job.next_run_time)
        # the close + 5 s on the venue's clock is the close + 13 s on the host's
        assert abs(fire - (close + AHEAD_MS + SETTLE_MS)) < 100
        clock.move_to(fire)  # the scheduler runs the job then
        job.func()
    finally:
        sched.shutdown(wait=False)
    assert market.last_closes == [close]  # the crash candle, closed on the venue's clock
    assert clock.slept_s == 0  # (nothing to wait for)


def test_a_tick_that_starts_before_its_close_on_the_venues_clock_waits_for_it(
    bot: tuple[Runner, RecordingMarket], clock: HostClock, close: int
) -> None:
    """Planned on the host's grid (as before), or moved by an offset measured since: the tick
    starts at the close + 5 s on the host's clock, 3 s before the close on the venue's. It
    waits (on the injected clock) until the close + 5 s there, and decides on that candle."""
    runner, market = bot
    sched, _venue = scheduled(runner, clock)
    try:
        clock.move_to(close + SETTLE_MS)
        sched.get_job("tick").func()
    finally:
        sched.shutdown(wait=False)
    assert market.last_closes == [close]
    assert abs(clock.slept_s - (AHEAD_MS / 1000)) < 0.1  # until the close + 5 s on the venue


def test_the_ticks_move_with_the_offset_measured_again(
    bot: tuple[Runner, RecordingMarket], server: LoopbackBinance, clock: HostClock, close: int
) -> None:
    """The host's clock drifts 12 s further ahead (20 s in all); the hourly resync measures it:
    the next tick moves 12 s later on the host's clock, the grid with it, still at the close
    + 5 s on the venue's."""
    runner, _market = bot
    sched, venue = scheduled(runner, clock)
    try:
        server.server_time_offset_ms = -20_000
        runner.resync_clock()  # the clock-resync job
        venue.follow(sched)  # (what the scheduler's watch loop does after it)
        job = sched.get_job("tick")
        fire = datetime_to_ms(job.next_run_time)
        following = job.trigger.get_next_fire_time(job.next_run_time, job.next_run_time)
    finally:
        sched.shutdown(wait=False)
    assert abs(fire - (close + 20_000 + SETTLE_MS)) < REPLAN_TOLERANCE_MS / 10
    assert datetime_to_ms(following) == fire + H


@pytest.mark.parametrize("decided_before", [False, True], ids=["fresh", "close-before-decided"])
def test_a_forward_step_of_more_than_half_a_candle_still_leaves_a_tick_for_the_next_close(
    bot: tuple[Runner, RecordingMarket],
    server: LoopbackBinance,
    clock: HostClock,
    close: int,
    decided_before: bool,
) -> None:
    """A VM resumed 45 minutes behind the venue at 20 past the hour (venue); the offset is
    measured (a -1021, the hourly resync) and the tick for ``close`` planned at its close + 5 s
    on the venue's clock, 45 minutes earlier on the host's. Then NTP steps the host's clock
    forward 45 minutes: that run is due at once, 40 minutes before ``close`` on the venue's
    clock. It was taken for the tick of the close before (the close nearest its time), and the
    next run moved by the step to ``close`` + 1 h: ``close`` got no decision tick. The run now
    decides on the newest candle closed (nothing when a tick already decided it), and the next
    tick is planned for ``close``."""
    runner, market = bot
    behind = 45 * 60_000
    clock.move_to(close - 40 * 60_000 - behind)
    server.server_time_offset_ms = behind
    runner.resync_clock()  # the offset measured: the host 45 minutes behind the venue
    if decided_before:
        runner.tick_close_ms = close - H  # (a tick decided on the candle closed at the hour)
    sched, _venue = scheduled(runner, clock)
    try:
        job = sched.get_job("tick")
        first = job.trigger.start_date  # (APScheduler set its next run on the real clock)
        assert abs(datetime_to_ms(first) - (close + SETTLE_MS - behind)) < 1000
        job.modify(next_run_time=first)
        clock.step(behind)  # NTP: the host's clock reads the venue's now
        server.server_time_offset_ms = 0
        # APScheduler runs the job, due now, its next run first set on its grid
        now = ms_to_datetime(clock.now_ms())
        job.modify(next_run_time=job.trigger.get_next_fire_time(job.next_run_time, now))
        job.func()
        planned = datetime_to_ms(sched.get_job("tick").next_run_time)
    finally:
        sched.shutdown(wait=False)
    assert abs(planned - (close + SETTLE_MS)) < REPLAN_TOLERANCE_MS  # the tick for `close`
    # the run decided on the candle closed at the hour, once
    assert market.last_closes == ([] if decided_before else [close - H])
    assert runner.tick_close_ms == close - H


class Down:
    """A check every job makes first that fails while ``down`` (the state database briefly
    unavailable)."""

    def __init__(self) -> None:
        self.down = True

    def __call__(self) -> None:
        if self.down:
            raise StoreUnavailable("database is locked")


def stepped_forward_45_minutes(
    runner: Runner, server: LoopbackBinance, clock: HostClock, close: int
) -> tuple[BackgroundScheduler, VenueSchedule, Down]:
    """The scene of the forward step above, the close at the hour decided: the run planned
    for ``close`` is due 40 minutes before it on the venue's clock, and the state database is
    unavailable for it (its checks fail)."""
    behind = 45 * 60_000
    clock.move_to(close - 40 * 60_000 - behind)
    server.server_time_offset_ms = behind
    runner.resync_clock()  # the offset measured: the host 45 minutes behind the venue
    runner.tick_close_ms = close - H  # (a tick decided on the candle closed at the hour)
    sched, venue = scheduled(runner, clock)
    job = sched.get_job("tick")
    job.modify(next_run_time=job.trigger.start_date)
    runner.guard()  # (a job before the step: the runner's watch of the wall clock starts here)
    down = Down()
    runner.before_job.append(down)
    clock.step(behind)  # NTP: the host's clock reads the venue's now
    server.server_time_offset_ms = 0
    # APScheduler runs the job, due now, its next run first set on its grid
    now = ms_to_datetime(clock.now_ms())
    job.modify(next_run_time=job.trigger.get_next_fire_time(job.next_run_time, now))
    return sched, venue, down


def test_a_run_moved_early_by_a_step_that_fails_its_first_checks_leaves_its_close_a_tick(
    bot: tuple[Runner, RecordingMarket],
    server: LoopbackBinance,
    clock: HostClock,
    close: int,
) -> None:
    """The run of the forward step above fails in the checks every job makes first (the state
    database locked). The runner measured the offset again after those checks: the failure
    used up the close due on the offset from before the step, ``close`` itself (the venue's
    clock read 40 minutes before it), and ``close`` got no decision tick. The offset is now
    measured first (it needs no database): the failed run was early, uses up nothing, and the
    tick for ``close`` comes at its time and decides on it."""
    runner, market = bot
    sched, _venue, down = stepped_forward_45_minutes(runner, server, clock, close)
    try:
        sched.get_job("tick").func()  # the due run: fails in its first checks
        assert runner.failures_of("tick") == 1
        assert runner.tick_close_ms == close - H  # nothing used up: the run was early
        planned = datetime_to_ms(sched.get_job("tick").next_run_time)
        assert abs(planned - (close + SETTLE_MS)) < REPLAN_TOLERANCE_MS
        down.down = False  # the database is back
        clock.move_to(planned)
        sched.get_job("tick").func()
        following = datetime_to_ms(sched.get_job("tick").next_run_time)
    finally:
        sched.shutdown(wait=False)
    assert market.last_closes == [close]  # the crash candle, decided at its close
    assert runner.tick_close_ms == close
    assert runner.failures_of("tick") == 0
    assert abs(following - (close + H + SETTLE_MS)) < REPLAN_TOLERANCE_MS


@pytest.mark.parametrize("database", ["locked", "working"])
def test_a_run_that_cannot_measure_the_offset_after_a_step_uses_up_no_close(
    bot: tuple[Runner, RecordingMarket],
    server: LoopbackBinance,
    clock: HostClock,
    close: int,
    database: str,
) -> None:
    """As above, the venue's time endpoint failing too: the run cannot know the venue's time
    (the offset from before the step is 45 minutes wrong, and on it the candle still open on
    the venue's clock reads as closed). It decides nothing and uses up no close, whether its
    checks fail or pass (a failed tick either way), and is not run again at once (the offset
    from before the step puts ``close``'s tick in the past: each run a failed tick); the tick
    for ``close`` is planned at its time once a job measures the offset (the next guard), and
    decides on it."""
    runner, market = bot
    sched, venue, down = stepped_forward_45_minutes(runner, server, clock, close)
    down.down = database == "locked"
    server.inject(Fault("/fapi/v1/time", "GET", kind="http_503", times=100))
    try:
        sched.get_job("tick").func()  # the due run: no offset measured
        assert runner.tick_close_ms == close - H  # nothing used up
        assert market.last_closes == []  # nothing decided
        assert runner.failures_of("tick") == 1
        assert not runner.venue_time_known()
        stand_in = datetime_to_ms(sched.get_job("tick").next_run_time)
        assert stand_in >= clock.now_ms() + H - REPLAN_TOLERANCE_MS  # not at once
        server.clear_faults()
        down.down = False
        runner.guard()  # measures the offset first: the venue's time is known again
        assert runner.venue_time_known()
        venue.follow(sched)  # (the scheduler's watch loop)
        planned = datetime_to_ms(sched.get_job("tick").next_run_time)
        assert abs(planned - (close + SETTLE_MS)) < REPLAN_TOLERANCE_MS
        clock.move_to(planned)
        sched.get_job("tick").func()
    finally:
        sched.shutdown(wait=False)
    assert market.last_closes == [close]
    assert runner.tick_close_ms == close
    assert runner.failures_of("tick") == 0
