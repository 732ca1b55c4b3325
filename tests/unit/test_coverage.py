"""Which candle file a simulation uses: coverage is the time the candles really cover.

A 1m file that starts before the window and ends after it, but misses twenty months in the
middle (merged downloads often look like that), used to be taken as covering the window: the
simulation then sat on one stale price for those months, traded nothing, and reported 0 %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.marketdata.candles import Candles
from bot.marketdata.coverage import SLACK_MS, choose, covered_ms, longest_gap
from bot.marketdata.files import discover
from bot.sim.history import load_history

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_704_067_200_000  # 2024-01-01T00:00Z


def candles(tf_ms: int, start: int, end: int, gaps: tuple[tuple[int, int], ...] = ()) -> Candles:
    ts = np.arange(start, end, tf_ms, dtype=np.int64)
    for lo, hi in gaps:
        ts = ts[(ts < lo) | (ts >= hi)]
    px = np.full(len(ts), 100.0)
    return Candles(ts, px, px, px, px, np.ones(len(ts)), tf_ms, "X/USDT:USDT", "trade", f"{tf_ms}")


class Inventory:
    def __init__(self, files: dict[str, Candles]) -> None:
        self.files = files
        self.loaded: list[str] = []

    def load_candles(self, symbol: str, tf: str, kind: str = "trade") -> Candles:
        self.loaded.append(tf)
        return self.files[tf]


def test_a_file_with_a_long_gap_inside_the_window_does_not_cover_it() -> None:
    gap = (T0 + 10 * DAY, T0 + 600 * DAY)
    inv = Inventory(
        {
            "1m": candles(MIN, T0, T0 + 700 * DAY, (gap,)),
            "5m": candles(5 * MIN, T0, T0 + 700 * DAY),
        }
    )
    pick = choose(inv, "X/USDT:USDT", "trade", ["1m", "5m"], T0 + 5 * DAY, T0 + 650 * DAY)
    assert pick.timeframe == "5m"
    assert "finer files passed over because they cover less: 1m" in pick.note
    assert "14160.0 h of the window missing" in pick.note


def test_a_few_missing_candles_do_not_give_up_the_finer_file() -> None:
    downtime = ((T0 + 3 * DAY, T0 + 3 * DAY + 20 * MIN),)  # 20 minutes of exchange downtime
    inv = Inventory(
        {"1m": candles(MIN, T0, T0 + 30 * DAY, downtime), "5m": candles(5 * MIN, T0, T0 + 30 * DAY)}
    )
    pick = choose(inv, "X/USDT:USDT", "trade", ["1m", "5m"], T0 + DAY, T0 + 29 * DAY)
    assert pick.timeframe == "1m"
    assert inv.loaded == ["1m"]  # the coarser file is not even read
    assert "0.3 h of the window missing, the longest gap 2024-01-04 00:00 .. 2024-01-04 00:20" in (
        pick.note
    )


def test_when_no_file_covers_it_the_finest_near_the_best_wins() -> None:
    inv = Inventory(
        {
            "1m": candles(MIN, T0 + 2 * DAY, T0 + 30 * DAY),
            "1h": candles(HOUR, T0 + 2 * DAY, T0 + 30 * DAY, ((T0 + 5 * DAY, T0 + 6 * DAY),)),
        }
    )
    pick = choose(inv, "X/USDT:USDT", "trade", ["1m", "1h"], T0, T0 + 30 * DAY)
    assert pick.timeframe == "1m"
    assert "no file covers all of it" in pick.note


@given(
    start=st.integers(min_value=0, max_value=100),
    length=st.integers(min_value=1, max_value=300),
    holes=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40)), max_size=5),
    offset=st.integers(min_value=0, max_value=4),
)
def test_covered_time_is_the_window_minus_every_uncovered_stretch(
    start: int, length: int, holes: list[tuple[int, int]], offset: int
) -> None:
    tf = 5 * MIN
    gaps = tuple((T0 + a * tf, T0 + (a + n) * tf) for a, n in holes)
    c = candles(tf, T0, T0 + 400 * tf, gaps)
    lo, hi = T0 + start * tf + offset * MIN, T0 + (start + length) * tf + offset * MIN
    # brute force, minute by minute
    minutes = np.arange(lo, hi, MIN)
    opens = minutes - (minutes - T0) % tf
    inside = np.isin(opens, c.ts)
    assert covered_ms(c, lo, hi) == int(inside.sum()) * MIN
    gap = longest_gap(c, lo, hi)
    if inside.all():
        assert gap is None
    else:
        assert gap is not None
        assert gap[1] - gap[0] == _longest_false_run(inside) * MIN


def _longest_false_run(mask: np.ndarray) -> int:
    best = run = 0
    for covered in mask:
        run = 0 if covered else run + 1
        best = max(best, run)
    return best


@pytest.mark.parametrize("missing", [SLACK_MS, SLACK_MS + 5 * MIN])
def test_the_slack_is_the_limit(missing: int) -> None:
    gap = ((T0 + DAY, T0 + DAY + missing),)
    inv = Inventory(
        {"5m": candles(5 * MIN, T0, T0 + 9 * DAY, gap), "1h": candles(HOUR, T0, T0 + 9 * DAY)}
    )
    pick = choose(inv, "X/USDT:USDT", "trade", ["5m", "1h"], T0, T0 + 8 * DAY)
    assert pick.timeframe == ("5m" if missing <= SLACK_MS else "1h")


@pytest.mark.parametrize(("decision_tf", "said"), [("5m", True), ("1h", False)])
def test_mark_triggers_coarser_than_the_decisions_are_said(decision_tf: str, said: bool) -> None:
    # trigger_source = "mark" on the sample's 1h mark candles: with 5m decisions a stop inside
    # an hour is found at the hour's close, after eleven decisions saw the position open
    sample = Path(__file__).resolve().parents[2] / "data" / "sample"
    h = load_history(discover(sample), "BTC/USDT:USDT", decision_tf, "mark")
    assert h.trigger.kind == "mark"
    notes = [n for n in h.selection if "coarser than the" in n]
    assert bool(notes) is said
    if said:
        assert "1h mark candles are coarser than the 5m decisions" in notes[0]
