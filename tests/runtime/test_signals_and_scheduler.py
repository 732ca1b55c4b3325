"""``bot run``'s lifecycle: SIGTERM/SIGINT finish the running tick and exit 0, ``--ticks N`` and
``--once`` stop where they say, and the scheduler never overlaps ticks nor replays missed ones."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from time import perf_counter

import pytest
from sqlmodel import Session, select

from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import TradingState
from bot.engine.tick import TickResult
from bot.runtime.scheduler import ScheduledRun, Stopper, run_scheduled
from bot.store.sql import SqlStore
from bot.store.tables import EquityRow, RunRow
from tests.runtime.conftest import write_config
from tests.runtime.test_crash_only import (
    DATA,
    EXIT_TIMEOUT_S,
    SPEED,
    WALL,
    bot_process,
    busy_config,
    run_to_completion,
    wait_for_text,
)

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Ticks:
    tick_ids: set[str]  # distinct decision tick ids
    equity_rows: int  # one per finished tick (its last record)
    runs: int
    unresolved: int


def read_ticks(config_path: Path) -> Ticks:
    store = SqlStore.open(load_config(config_path).runtime.database_url)
    try:
        with Session(store.engine) as session:
            equity_rows = len(session.exec(select(EquityRow)).all())
            runs = len(session.exec(select(RunRow)).all())
        return Ticks(
            tick_ids={d.tick_id for d in store.recent_decisions(1_000_000)},
            equity_rows=equity_rows,
            runs=runs,
            unresolved=len(store.unresolved_orders()),
        )
    finally:
        store.close()


def stopped_after(log: Path) -> int:
    """N of the scheduler's last line, ``scheduler stopped after N ticks``."""
    marker = "scheduler stopped after "
    line = next(s for s in reversed(log.read_text().splitlines()) if marker in s)
    return int(line.split(marker)[1].split()[0])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_finishes_the_running_tick_and_exits_0(tmp_path: Path, sig: int) -> None:
    # The busy policy trades on every tick and the replay runs ticks back to back: the signal
    # arrives in the middle of a tick, most likely between an order intent and its outcome.
    config_path = busy_config(tmp_path)
    log = tmp_path / "run.log"
    with bot_process(config_path, log, "--replay", str(DATA), "--speed", SPEED) as proc:
        wait_for_text(proc, log, "tick done")
        WALL.sleep(0.3)
        assert proc.poll() is None
        signalled = perf_counter()
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=EXIT_TIMEOUT_S)
        took = perf_counter() - signalled
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert took < 5, f"stopping took {took:.1f} s"
    assert f"signal {int(sig)} received" in text
    done = stopped_after(log)
    assert done >= 2
    ticks = read_ticks(config_path)
    assert ticks.unresolved == 0  # the running tick finished: no intent is left in flight
    # every tick that started also finished: its decisions and its equity snapshot are there
    assert len(ticks.tick_ids) == done
    assert ticks.equity_rows == done


def test_ticks_n_stops_after_n_ticks(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    log = tmp_path / "ticks.log"
    # ticks back to back: a 4th tick must not slip in before the scheduler stops
    code = run_to_completion(
        config_path, log, "--replay", str(DATA), "--speed", SPEED, "--ticks", "3"
    )
    assert code == 0, log.read_text()[-3000:]
    ticks = read_ticks(config_path)
    assert len(ticks.tick_ids) == 3
    assert ticks.equity_rows == 3
    assert ticks.runs == 1
    assert stopped_after(log) == 3


def test_once_runs_one_tick(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    log = tmp_path / "once.log"
    code = run_to_completion(config_path, log, "--replay", str(DATA), "--once")
    assert code == 0, log.read_text()[-3000:]
    ticks = read_ticks(config_path)
    assert len(ticks.tick_ids) == 1
    assert ticks.equity_rows == 1
    assert ticks.runs == 1
    assert ticks.unresolved == 0
    assert "scheduler started" not in log.read_text()


# --- the scheduler, in process -----------------------------------------------------------------


@dataclass
class SlowRunner:
    """Stands in for :class:`bot.runtime.runner.Runner`: its ticks take ``durations`` seconds
    (the last one repeats) and record when they ran, on the wall clock, and the replayed time
    they decided at (``clock``'s, at their start and at their end)."""

    durations: list[float]
    clock: SimClock = field(default_factory=lambda: SimClock(0))
    runs: list[tuple[float, float]] = field(default_factory=list)
    replayed: list[tuple[int, int]] = field(default_factory=list)
    guards: list[int] = field(default_factory=list)  # the replayed time of each guard run
    ticks_done: int = 0
    replay_end_ms: int | None = None
    on_tick: list[object] = field(default_factory=list)

    def tick(self) -> TickResult:
        start, replayed = perf_counter(), self.clock.now_ms()
        WALL.sleep(self.durations[min(len(self.runs), len(self.durations) - 1)])
        self.runs.append((start, perf_counter()))
        self.replayed.append((replayed, self.clock.now_ms()))
        self.ticks_done += 1
        result = TickResult(str(self.ticks_done), 0, TradingState.ACTIVE, Decimal(0))
        for callback in self.on_tick:
            callback(result)  # type: ignore[operator]
        return result

    def guard(self) -> None:
        self.guards.append(self.clock.now_ms())


def test_ticks_never_overlap_and_late_ones_are_not_run_in_a_burst() -> None:
    # Interval 0.1 s (1 h at 36000x); the first two ticks take 0.35 s, three interval lengths.
    runner = SlowRunner([0.35, 0.35, 0.01])
    started = perf_counter()
    run_scheduled(
        runner,  # type: ignore[arg-type]
        clock=runner.clock,
        tf_ms=HOUR_MS,
        speed=36000,
        max_ticks=5,
        stopper=Stopper(),
        live_time=False,
    )
    assert perf_counter() - started < 3
    assert len(runner.runs) == 5
    for (_, end), (start, _) in pairwise(runner.runs):
        assert start >= end, "two ticks overlapped"
    # The replay does not catch up on the time a slow tick took by running the next ones back
    # to back: the fast ticks keep the interval (a burst would start them a millisecond apart).
    fast = [start for start, _ in runner.runs[2:]]
    gaps = [b - a for a, b in pairwise(fast)]
    assert min(gaps) > 0.04, gaps


def test_a_replay_faster_than_the_ticks_decides_every_candle_late_and_counts_them() -> None:
    # Interval 0.1 s (1 h at 36000x); the first two ticks take 0.35 s: the ticks after them
    # start late. They skip no candle and decide at its close all the same, the replayed clock
    # standing still while each runs (it once ran on: a tick decided hours after its close).
    runner = SlowRunner([0.35, 0.35, 0.01])
    got = run_scheduled(
        runner,  # type: ignore[arg-type]
        clock=runner.clock,
        tf_ms=HOUR_MS,
        speed=36000,
        max_ticks=4,
        stopper=Stopper(),
        live_time=False,
    )
    assert got == ScheduledRun(ticks=4, skipped=0, late=2)
    assert runner.replayed == [(k * HOUR_MS, k * HOUR_MS) for k in range(4)]


def test_a_replay_the_ticks_keep_up_with_skips_nothing_and_runs_nothing_late() -> None:
    # A candle a wall second (3600x; a tick counts as late a quarter of a second after its
    # place), ticks of a millisecond.
    runner = SlowRunner([0.001])
    got = run_scheduled(
        runner,  # type: ignore[arg-type]
        clock=runner.clock,
        tf_ms=HOUR_MS,
        speed=3600,
        max_ticks=3,
        stopper=Stopper(),
        live_time=False,
    )
    assert got == ScheduledRun(ticks=3, skipped=0, late=0)
    assert runner.replayed == [(k * HOUR_MS, k * HOUR_MS) for k in range(3)]
    starts = [start for start, _ in runner.runs]
    assert all(0.8 < b - a < 1.5 for a, b in pairwise(starts))  # paced at --speed


def test_a_replay_runs_its_guards_between_the_ticks_at_their_replayed_times() -> None:
    # A guard every half hour, a candle a wall second (3600x): a guard every half wall second.
    runner = SlowRunner([0.001])
    run_scheduled(
        runner,  # type: ignore[arg-type]
        clock=runner.clock,
        tf_ms=HOUR_MS,
        speed=3600,
        guard_seconds=1800,
        max_ticks=3,
        stopper=Stopper(),
        live_time=False,
    )
    assert runner.replayed == [(k * HOUR_MS, k * HOUR_MS) for k in range(3)]
    assert runner.guards == [HOUR_MS // 2, 3 * HOUR_MS // 2]  # none at a close: the tick's
