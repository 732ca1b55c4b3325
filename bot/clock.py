"""The one place that reads the wall clock.

Every other module receives a :class:`Clock`. ``LiveClock`` wraps the system calls; ``SimClock``
moves only when told to, and its ``sleep`` advances time instead of blocking, so retries and
schedules run instantly in simulation and in tests; ``ReplayClock`` (``bot run --replay``) is a
``SimClock`` the scheduler moves to each job's replayed time.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    def now_ms(self) -> int:
        """Current time as integer epoch milliseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals only)."""
        ...

    def sleep(self, seconds: float) -> None: ...


def monotonic_ms(clock: Clock) -> int:
    """``clock``'s monotonic time in integer milliseconds (for intervals only: never a date).
    On a :class:`SimClock` it equals ``now_ms()``."""
    return round(clock.monotonic() * 1000)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def utc_text(ms: int) -> str:
    """An epoch-ms time as events, alerts and errors name it: ``2025-06-05 20:25:00 UTC``."""
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def datetime_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: times must be timezone-aware UTC")
    return int(dt.timestamp() * 1000)


class WallSteps:
    """Notices the wall clock stepping (NTP correcting a drift, a person setting the time, a
    virtual machine resumed): between two readings the wall time elapsed and the monotonic
    time elapsed disagree by more than ``threshold_s``, either way. NTP slewing moves both
    alike (Linux slews ``CLOCK_MONOTONIC`` with the wall clock); only a step sets them apart.
    On a :class:`SimClock` or :class:`ReplayClock` the two never disagree."""

    def __init__(self, clock: Clock, threshold_s: float = 1.0) -> None:
        self._clock = clock
        self._threshold_ms = threshold_s * 1000
        self._wall_ms = clock.now_ms()
        self._mono = clock.monotonic()

    def step_ms(self) -> int:
        """The milliseconds the wall clock stepped since the last call (or since this watch was
        made): forward > 0, back < 0; 0 when within the threshold."""
        wall_ms, mono = self._clock.now_ms(), self._clock.monotonic()
        step = wall_ms - self._wall_ms - round((mono - self._mono) * 1000)
        self._wall_ms, self._mono = wall_ms, mono
        return step if abs(step) > self._threshold_ms else 0


def wait_for_news(
    condition: threading.Condition,
    clock: Clock,
    *,
    clock_s: float | None = None,
    real_s: float | None = None,
) -> None:
    """Wait on ``condition`` (its lock held, as :meth:`threading.Condition.wait` wants) until
    another thread notifies it, ``clock_s`` seconds of ``clock``'s time have passed or
    ``real_s`` seconds of real time have, whichever comes first (None: no such bound).

    A :class:`LiveClock`'s seconds are real ones. The time of a :class:`SimClock` (and of a
    :class:`ReplayClock`, which stands still between the scheduler's moves) passes only when it
    is moved, never while a thread waits: there ``clock_s`` does not end the wait, and whoever
    moves the clock notifies the condition (the runner's jobs do, through
    ``Notifier.notify``). ``real_s`` bounds what happens outside the bot's clock, in real time
    whatever the clock: a network request on another thread (an alert delivery's bound)."""
    live_s = clock_s if isinstance(clock, LiveClock) else None
    bounds = [s for s in (real_s, live_s) if s is not None]
    if bounds and min(bounds) <= 0:
        return
    condition.wait(min(bounds) if bounds else None)


class LiveClock:
    """System time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SimClock:
    """Simulated time, moved forward explicitly. ``sleep`` advances it."""

    def __init__(self, start_ms: int) -> None:
        self._ms = start_ms

    def now(self) -> datetime:
        return ms_to_datetime(self._ms)

    def now_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._ms / 1000.0

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._ms += round(seconds * 1000)

    def advance_to(self, ms: int) -> None:
        if ms < self._ms:
            raise ValueError(f"SimClock cannot go back from {self._ms} to {ms}")
        self._ms = ms

    def advance(self, delta: timedelta) -> None:
        self.advance_to(self._ms + int(delta.total_seconds() * 1000))


class ReplayClock(SimClock):
    """Replayed time for paper trading on recorded data (``bot run --replay DIR --speed 3600``:
    an hour a wall second).

    It moves only when the scheduler moves it (:func:`bot.runtime.scheduler.run_scheduled`:
    to each job's replayed time, before the job runs) and stands still while a job runs, as
    :class:`SimClock` does in ``bot simulate``: a replay decides at each candle close, on the
    prices of that close, however long the machine takes. Running on with the wall clock
    (as it once did), each tick decided as late as the start-up and the jobs before it took,
    times the speed (minutes to an hour after the close at 3600x), and its market orders met
    the paper venue's quotes expired. ``speed`` paces the scheduler; ``sleep`` advances the
    replayed time and waits ``seconds / speed`` of wall time.
    """

    def __init__(self, start_ms: int, speed: float, wall: LiveClock | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"replay speed must be > 0 (got {speed})")
        super().__init__(start_ms)
        self._wall = wall or LiveClock()
        self.speed = speed

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            super().sleep(seconds)
            self._wall.sleep(seconds / self.speed)
