"""The one place that reads the wall clock.

Every other module receives a :class:`Clock`. ``LiveClock`` wraps the system calls; ``SimClock``
moves only when told to, and its ``sleep`` advances time instead of blocking, so retries and
schedules run instantly in simulation and in tests.
"""

from __future__ import annotations

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


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: times must be timezone-aware UTC")
    return int(dt.timestamp() * 1000)


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
