"""Boundaries of the walk-forward's TEST periods (bot/research/walkforward.py Window.test_dates)
and of the per-day Sharpe ratio the deflated Sharpe ratio is built on (bot/research/evaluate.py
daily_stats) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from bot.backtest.metrics import sharpe
from bot.research.evaluate import daily_stats
from bot.research.walkforward import parse_walk_forward, windows
from tests.research.helpers import DAY_MS, T0


def test_a_test_period_ends_the_day_before_the_next_one_begins() -> None:
    """Mutant w_test_dates (the TEST's last day taken as its exclusive end): ``10:5`` over the
    20 days from 2025-01-01. Window 0 trains 01-01..01-10 and tests 01-11..01-15, window 1
    tests 01-16..01-20, last days inclusive as ``[simulation] end`` takes them. Ending on the
    exclusive end ran every TEST a day long, into the next window's first day, and the last
    one (the out-of-sample curve's end: Sweep takes it from the last window's test_dates) a
    day past the data the walk-forward was given."""
    ws = windows(parse_walk_forward("10:5"), T0, T0 + 20 * DAY_MS)
    assert [w.test_dates() for w in ws] == [
        (date(2025, 1, 11), date(2025, 1, 15)),
        (date(2025, 1, 16), date(2025, 1, 20)),
    ]
    assert ws[0].train_dates() == (date(2025, 1, 1), date(2025, 1, 10))


def test_the_daily_sharpe_uses_the_sample_deviation_as_the_report_does() -> None:
    """Mutant ev_sd0 (``np.std(r)``, ddof 0): the per-day Sharpe ratio fed to the deflated
    Sharpe ratio is the report's (bot.backtest.metrics.sharpe) before annualising, mean /
    std(ddof=1). Three days of +1 %, -2 %, +3 %: mean 0.02 / 3 = 0.006667, squared deviations
    summing to 0.00126667, sample deviation sqrt(0.00126667 / 2) = 0.025166: 0.26491. With
    ddof 0, sqrt(0.00126667 / 3) = 0.020548: 0.32444, 22 % higher (sqrt(3 / 2)); the sweep's
    best point then looked less likely to be luck than the report's own Sharpe ratio says."""
    returns = [0.01, -0.02, 0.03]
    got = daily_stats(returns)["daily_sharpe"]
    assert got == pytest.approx(0.2649065, rel=1e-6)
    # The report's Sharpe ratio over the equity curve of those three days, annualised (x
    # sqrt(365)), is the same number.
    equity = np.array([100.0, 101.0, 98.98, 101.9494])
    ts = T0 + DAY_MS * np.arange(4, dtype=np.int64)
    assert sharpe(equity, ts) == pytest.approx(got * math.sqrt(365), rel=1e-12)
