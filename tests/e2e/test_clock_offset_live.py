"""The host clock against the venue's, through the real ccxt path (loopback Binance USD-M): a
live start measures the offset and reports one beyond a second (a ``clock`` event and an
alert naming it, critical past the receive window); the hourly ``clock-resync`` job measures
again, signs with the new offset, and a resync that fails is an event, not a crash."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.bootstrap import Secrets, build_live, open_store
from bot.clock import LiveClock, ms_to_datetime
from bot.config.loader import load_config
from bot.domain.enums import EventKind, TradingState
from bot.risk.state import DAY_MS
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.instance_lock import AlreadyRunning
from bot.store.sql import SqlStore, StoreUnavailable
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)

KEY, SECRET = "clock-key-4e1b", "clock-secret-82c9d0"


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("binanceusdm")


@pytest.fixture
def server(backend: SimulatedExchange) -> Iterator[LoopbackBinance]:
    srv = LoopbackBinance(
        backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=["BTC/USDT:USDT"]
    )
    serve_btc_history(srv, backend)
    with srv:
        yield srv


def write_config(tmp_path: Path, server: LoopbackBinance) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="clock",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    return path


def start(tmp_path: Path, server: LoopbackBinance) -> tuple[Runner, SqlStore]:
    runner, store = start_live(write_config(tmp_path, server), KEY, SECRET)
    for started in runner.at_confirmed_start:
        started()  # as `bot run --live` does once the start is confirmed
    return runner, store


def clock_events(store: SqlStore) -> list[str]:
    return [e.reason for e in store.recent_events(100, kinds=(EventKind.CLOCK,))]


def offset_alerts(store: SqlStore) -> list[tuple[str, str]]:
    return [
        (a.severity, a.message)
        for key in ("clock_offset", "clock_offset_critical")
        for a in store.recent_alerts(key, 0)
    ]


@pytest.mark.parametrize(
    ("server_offset_ms", "severity", "words"),
    [
        (-2_500, "warning", "2.5"),  # the venue 2.5 s behind: the host is ahead
        (3_000, "warning", "3.0"),  # the venue ahead: the host is behind
        (-30_000, "critical", "30.0"),  # beyond the 10 s receive window
    ],
)
def test_a_live_start_on_a_clock_far_from_the_venues_is_an_event_and_an_alert(
    tmp_path: Path, server: LoopbackBinance, server_offset_ms: int, severity: str, words: str
) -> None:
    server.server_time_offset_ms = server_offset_ms
    runner, store = start(tmp_path, server)
    try:
        [event] = clock_events(store)
        [(level, message)] = offset_alerts(store)
    finally:
        stop_live(runner, store)
    where = "ahead of" if server_offset_ms < 0 else "behind"
    assert f"the host clock is {words}" in event
    assert f"{where} binanceusdm's (at start: offset" in event
    assert "recvWindow" in event
    assert level == severity
    assert message == event


def test_a_live_start_on_a_clock_in_step_with_the_venues_says_nothing(
    tmp_path: Path, server: LoopbackBinance
) -> None:
    runner, store = start(tmp_path, server)
    try:
        assert clock_events(store) == []
        assert offset_alerts(store) == []
        assert runner.clock_resync is not None  # the live bot has its hourly resync
    finally:
        stop_live(runner, store)


def test_the_hourly_resync_signs_with_the_new_offset_and_reports_it(
    tmp_path: Path, server: LoopbackBinance
) -> None:
    runner, store = start(tmp_path, server)
    try:
        assert runner.clock_resync is not None
        times = len(server.calls("/fapi/v1/time", "GET"))
        server.server_time_offset_ms = -5_000  # the host clock drifted 5 s ahead since
        runner.clock_resync()
        assert len(server.calls("/fapi/v1/time", "GET")) == times + 1
        offset = runner.engine.exchange.exchange.options["timeDifference"]  # type: ignore[attr-defined]
        assert 5_000 <= offset < 6_000  # what ccxt signs with from now on
        [event] = clock_events(store)
        assert "the host clock is 5.0" in event
        assert "(hourly resync: offset +5" in event
        # the signed reads go on with no -1021 to recover from
        statuses = len(server.calls("/fapi/v3/account", "GET"))
        runner.engine.exchange.fetch_balance()
        assert [r.status for r in server.calls("/fapi/v3/account", "GET")][statuses:] == [200]
    finally:
        stop_live(runner, store)


def test_a_resync_that_fails_is_an_event_not_a_crash(
    tmp_path: Path, server: LoopbackBinance
) -> None:
    runner, store = start(tmp_path, server)
    try:
        assert runner.clock_resync is not None
        server.inject(Fault("/fapi/v1/time", "GET", kind="http_503", times=100))
        runner.clock_resync()  # does not raise
        [event] = clock_events(store)
        assert "clock offset to binanceusdm not measured (hourly resync)" in event
        assert offset_alerts(store) == []
    finally:
        stop_live(runner, store)


def test_the_resync_job_stops_when_another_bot_took_the_state_database(
    tmp_path: Path, server: LoopbackBinance
) -> None:
    """The job makes the checks every job makes first: a bot whose instance lock was taken
    stops, and measures nothing and writes nothing (the resync ran outside them and could
    record its clock event in the other bot's database)."""
    runner, store = start(tmp_path, server)
    try:

        def taken() -> None:
            raise AlreadyRunning("state database taken by another bot (test)")

        runner.before_job.insert(0, taken)
        server.server_time_offset_ms = -5_000
        times = len(server.calls("/fapi/v1/time", "GET"))
        with pytest.raises(AlreadyRunning):
            runner.resync_clock()
        assert len(server.calls("/fapi/v1/time", "GET")) == times  # not measured
        assert clock_events(store) == []
        [lost] = store.recent_alerts("lock_lost", 0)
        assert lost.severity == "critical"
    finally:
        runner.before_job.pop(0)
        stop_live(runner, store)


class SteppingClock:
    """The host's clock as the bot reads it: wall time a test steps by hand, monotonic time
    running on as it does through a step."""

    def __init__(self) -> None:
        self._live = LiveClock()
        self.step_ms = 0

    def now_ms(self) -> int:
        return self._live.now_ms() + self.step_ms

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    def monotonic(self) -> float:
        return self._live.monotonic()

    def sleep(self, seconds: float) -> None:
        self._live.sleep(seconds)


def test_a_wall_clock_stepped_back_is_measured_again_before_the_next_job(
    tmp_path: Path, server: LoopbackBinance
) -> None:
    """ccxt signs with the host's time corrected by the offset measured before the step: a
    step back of 30 s put every signed request of the next jobs, stops included, outside the
    receive window until a -1021 rejection or the hourly resync measured it again."""
    clock = SteppingClock()
    config = load_config(write_config(tmp_path, server))
    store = open_store(config, create=True)
    runner = build_live(config, store, Secrets(KEY, SECRET, None), clock=clock)
    try:
        runner.guard()
        measured = len(server.calls("/fapi/v1/time", "GET"))
        # The host clock steps 30 s back: the venue's (right) clock is now 30 s ahead of it.
        clock.step_ms -= 30_000
        server.server_time_offset_ms = 30_000
        runner.guard()
        assert len(server.calls("/fapi/v1/time", "GET")) == measured + 1  # measured again...
        refused = [r for r in server.requests if r.code == -1021]
        assert refused == []  # ...before the job's first signed request
        [event] = clock_events(store)
        assert "(the wall clock stepped back 30.0 s since the last job: offset -" in event
        assert "the host clock is 30.0 s behind binanceusdm's" in event
        runner.guard()  # no step since: nothing measured
        assert len(server.calls("/fapi/v1/time", "GET")) == measured + 1
    finally:
        stop_live(runner, store)


@pytest.mark.parametrize("failure", ["database locked", "lock taken"])
def test_a_step_is_measured_before_the_jobs_checks_and_reported_after_them(
    tmp_path: Path, server: LoopbackBinance, failure: str
) -> None:
    """The offset is measured again before anything reads the venue's time (the close a
    failed decision tick uses up), so before the checks every job makes first: a job whose
    checks fail has measured it all the same. Its ``clock`` event waits for a job whose checks
    pass: never written into a database another bot took."""
    clock = SteppingClock()
    config = load_config(write_config(tmp_path, server))
    store = open_store(config, create=True)
    runner = build_live(config, store, Secrets(KEY, SECRET, None), clock=clock)

    def fails() -> None:
        if failure == "lock taken":
            raise AlreadyRunning("state database taken by another bot (test)")
        raise StoreUnavailable("database is locked")

    try:
        runner.guard()
        measured = len(server.calls("/fapi/v1/time", "GET"))
        clock.step_ms -= 30_000
        server.server_time_offset_ms = 30_000
        runner.before_job.insert(0, fails)
        if failure == "lock taken":
            with pytest.raises(AlreadyRunning):
                runner.guard()
        else:
            runner.guard()
        assert len(server.calls("/fapi/v1/time", "GET")) == measured + 1  # measured first
        offset = runner.engine.exchange.exchange.options["timeDifference"]  # type: ignore[attr-defined]
        assert -31_000 < offset < -29_000  # signing with it already
        assert clock_events(store) == []  # not written before the checks passed
        runner.before_job.pop(0)
        runner.guard()
        assert len(server.calls("/fapi/v1/time", "GET")) == measured + 1  # not measured again
        events = clock_events(store)
    finally:
        stop_live(runner, store)
    if failure == "lock taken":
        assert events == []  # (that run stopped: nothing of it is written)
    else:
        [event] = events
        assert "(the wall clock stepped back 30.0 s since the last job: offset -" in event


def test_a_measurement_failing_job_after_job_is_one_event_until_it_succeeds(
    tmp_path: Path, server: LoopbackBinance
) -> None:
    """After a step, a measurement that keeps failing (the venue's time endpoint down) is tried
    again at every job, and is one incident: one `clock` event for it, not one per job (a
    guard a minute wrote 1,440 a day and pushed the real incidents out of the recent events)."""
    clock = SteppingClock()
    config = load_config(write_config(tmp_path, server))
    store = open_store(config, create=True)
    runner = build_live(config, store, Secrets(KEY, SECRET, None), clock=clock)
    try:
        runner.guard()
        measured = len(server.calls("/fapi/v1/time", "GET"))
        clock.step_ms += 40 * 60_000
        server.inject(Fault("/fapi/v1/time", "GET", kind="http_503", times=1000))
        for _ in range(10):
            runner.guard()
        tries = len(server.calls("/fapi/v1/time", "GET")) - measured
        failing = clock_events(store)
        known_while_failing = runner.venue_time_known()
        server.clear_faults()
        runner.guard()
        events = clock_events(store)
    finally:
        stop_live(runner, store)
    assert tries >= 10  # tried again at every job
    assert not known_while_failing
    assert len(failing) == 1, failing
    assert "not measured" in failing[0]
    # measured at last (an offset in step with the venue's says nothing more): no new failure
    assert [e for e in events if "not measured" in e] == failing
    assert runner.venue_time_known()


def test_a_wall_clock_stepped_forward_over_midnight_keeps_the_days_halt(
    tmp_path: Path, server: LoopbackBinance, backend: SimulatedExchange
) -> None:
    """The loss limits count in the venue's UTC day: a host clock stepped forward across 00:00
    (a virtual machine resumed with a wrong clock) started a new day, which lifted the day's
    daily-loss halt. The runner measures the venue's clock again before the job; the day stays."""
    clock = SteppingClock()
    config = load_config(write_config(tmp_path, server))
    store = open_store(config, create=True)
    runner = build_live(config, store, Secrets(KEY, SECRET, None), clock=clock)
    try:
        runner.guard()
        backend.book.wallet -= backend.book.wallet * Decimal("0.08")  # the daily limit is 5 %
        runner.guard()
        halted = store.load_risk_memory()
        assert halted is not None
        assert halted.state is TradingState.HALTED
        assert "daily loss" in halted.state_reason
        now = clock.now_ms()
        step = DAY_MS - now % DAY_MS + 3_600_000  # the host reads 01:00 tomorrow
        clock.step_ms = step
        server.server_time_offset_ms = -step  # the venue's (right) clock is that far behind
        runner.guard()
        memory = store.load_risk_memory()
        assert memory is not None
        assert memory.state is TradingState.HALTED, memory.state_reason
        assert memory.day_start_ms == halted.day_start_ms
        assert "stepped forward" in clock_events(store)[0]
    finally:
        stop_live(runner, store)
