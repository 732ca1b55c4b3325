"""Walk-forward windows and the out-of-sample curve stitched from their TEST periods.

``TRAIN:TEST[:STEP]`` in whole UTC days (``90:30`` or ``90d:30d:15d``; STEP defaults to TEST).
Window k trains on ``[a_k, a_k + TRAIN)`` and tests on ``[a_k + TRAIN, a_k + TRAIN + TEST)``,
``a_k = a_0 + k * STEP``. A TRAIN simulation ends (exclusive) where its TEST begins, so nothing a
point is chosen on comes from the period it is judged on; TEST runs read the candles before their
start only as the policy's warm-up, as a live bot would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from bot.backtest.metrics import DAY_MS, summarize
from bot.errors import ConfigError


@dataclass(frozen=True, slots=True)
class WalkForward:
    train_days: int
    test_days: int
    step_days: int

    def __str__(self) -> str:
        return f"{self.train_days}:{self.test_days}:{self.step_days}"


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    train_start: int  # ms, inclusive
    test_start: int  # ms: end of TRAIN (exclusive), start of TEST
    test_end: int  # ms, exclusive

    def train_dates(self) -> tuple[date, date]:
        """(first day, last day inclusive), as ``[simulation] start/end`` take them."""
        return _day(self.train_start), _day(self.test_start - DAY_MS)

    def test_dates(self) -> tuple[date, date]:
        return _day(self.test_start), _day(self.test_end - DAY_MS)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


_SPEC = re.compile(r"(\d+)d?:(\d+)d?(?::(\d+)d?)?")


def parse_walk_forward(text: str) -> WalkForward:
    m = _SPEC.fullmatch(text.strip())
    if m is None:
        raise ConfigError(
            f"--walk-forward {text!r}: expected TRAIN:TEST[:STEP] in days, e.g. 90:30 or "
            "90d:30d:15d"
        )
    train, test = int(m[1]), int(m[2])
    step = int(m[3]) if m[3] else test
    if min(train, test, step) < 1:
        raise ConfigError(f"--walk-forward {text!r}: every length must be at least 1 day")
    if min(train, test) < 2:
        # Each TRAIN and TEST period runs as a simulation from its first day to its last, which
        # `bot simulate` takes as two days at least (--start before --end): a one-day period
        # failed every run, and the walk-forward chose nothing or tested nothing.
        raise ConfigError(
            f"--walk-forward {text!r}: TRAIN and TEST must be at least 2 days each (a "
            "simulation runs from its first day to a later last day)"
        )
    if step > test:
        # the days between one TEST period and the next would be tested by no window: the
        # stitched out-of-sample curve would jump over them as if they were not there
        raise ConfigError(
            f"--walk-forward {text!r}: STEP ({step} days) longer than TEST ({test} days) leaves "
            f"{step - test} days of every step out of the out-of-sample test; use STEP <= TEST"
        )
    return WalkForward(train, test, step)


def windows(spec: WalkForward, start_ms: int, end_ms: int) -> list[Window]:
    """Every full window inside ``[start_ms, end_ms)``, starting at the first whole UTC day."""
    a = start_ms + (-start_ms) % DAY_MS
    out: list[Window] = []
    while a + (spec.train_days + spec.test_days) * DAY_MS <= end_ms:
        t = a + spec.train_days * DAY_MS
        out.append(Window(len(out), a, t, t + spec.test_days * DAY_MS))
        a += spec.step_days * DAY_MS
    if not out:
        have = (end_ms - start_ms) / DAY_MS
        raise ConfigError(
            f"--walk-forward {spec}: the data window holds {have:.1f} days, fewer than one "
            f"TRAIN + TEST ({spec.train_days + spec.test_days} days)"
        )
    return out


def stitch(
    curves: list[tuple[int, list[int], list[float]]], starting_balance: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The out-of-sample equity curve: each TEST run's daily closes (stamped at the end of their
    day), rescaled so each period starts where the previous one ended. ``curves``: (test start
    ms, day-start stamps, closes) in window order; every TEST run starts from
    ``starting_balance``.

    Each window's point is traded from its TEST start until the next window's TEST starts (the
    last window: to its TEST end), as a trader re-optimising every STEP would: with STEP < TEST
    the rest of a TEST run, already decided by the next window, is not on the curve."""
    ts: list[int] = []
    eq: list[float] = []
    level = starting_balance
    for k, (start, days, closes) in enumerate(curves):
        until = curves[k + 1][0] if k + 1 < len(curves) else None
        if not ts:
            ts.append(start)
            eq.append(level)
        base = level
        for d, c in zip(days, closes, strict=True):
            if until is not None and d >= until:
                break
            ts.append(d + DAY_MS)
            eq.append(base * c / starting_balance)
        level = eq[-1]
    return np.asarray(ts, dtype=np.int64), np.asarray(eq, dtype=np.float64)


def curve_metrics(ts: npt.NDArray[np.int64], eq: npt.NDArray[np.float64]) -> dict[str, float]:
    return summarize(eq, ts) if len(ts) > 1 else {}


def day_iso(ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).strftime("%Y-%m-%d")
