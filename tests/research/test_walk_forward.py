"""Walk-forward: windows, the stitched out-of-sample curve, and no look-ahead."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from bot.cli.research import RunningBest
from bot.errors import ConfigError
from bot.research.executors import InlineExecutor
from bot.research.space import parse_param
from bot.research.sweep import Sweep, SweepSpec
from bot.research.walkforward import parse_walk_forward, stitch, windows
from tests.research.helpers import DAY_MS, ROOT, T0, sample_config, write_regimes


def test_windows_tile_the_span_and_train_ends_where_test_starts() -> None:
    spec = parse_walk_forward("10d:5d")
    ws = windows(spec, T0 + 3_600_000, T0 + 40 * DAY_MS)
    assert [w.index for w in ws] == list(range(len(ws)))
    assert ws[0].train_start == T0 + DAY_MS  # first whole day
    for w in ws:
        assert w.test_start - w.train_start == 10 * DAY_MS
        assert w.test_end - w.test_start == 5 * DAY_MS
        _, train_last = w.train_dates()
        test_first, _ = w.test_dates()
        assert (test_first - train_last).days == 1  # inclusive end, next day starts TEST
    assert ws[1].train_start - ws[0].train_start == 5 * DAY_MS
    assert ws[-1].test_end <= T0 + 40 * DAY_MS


@pytest.mark.parametrize("text", ["10", "a:b", "0:5", "10:5:0"])
def test_bad_walk_forward_specs(text: str) -> None:
    with pytest.raises(ConfigError, match="--walk-forward"):
        parse_walk_forward(text)


@pytest.mark.parametrize("text", ["5:1", "1:5", "1:1"])
def test_one_day_periods_are_refused_before_any_run(text: str) -> None:
    """A one-day TRAIN or TEST failed every run (a simulation's last day must come after its
    first): the walk-forward chose nothing, or tested nothing, and said so only row by row."""
    with pytest.raises(ConfigError, match="TRAIN and TEST must be at least 2 days each"):
        parse_walk_forward(text)
    assert parse_walk_forward("5:2:1").step_days == 1  # a step of one day is fine


def test_stitch_chains_each_period_from_the_previous_end() -> None:
    ts, eq = stitch(
        [
            (0, [0, DAY_MS], [110.0, 121.0]),
            (2 * DAY_MS, [2 * DAY_MS], [50.0]),
        ],
        100.0,
    )
    assert ts.tolist() == [0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS]
    np.testing.assert_allclose(eq, [100.0, 110.0, 121.0, 60.5])


def test_with_step_shorter_than_test_each_choice_trades_until_the_next_window() -> None:
    """90:30:15-like windows: window 1's TEST starts while window 0's still runs. Window 0's
    point is traded until window 1 has chosen (its first STEP), then window 1's from the day it
    chose: the curve of re-optimising every STEP (it kept window 0's choice to the end of its
    TEST, and took window 1's from the day after, decided a STEP before)."""
    ts, eq = stitch(
        [
            (0, [0, DAY_MS, 2 * DAY_MS], [110.0, 121.0, 133.1]),  # +10 % a day for 3 days
            (DAY_MS, [DAY_MS, 2 * DAY_MS, 3 * DAY_MS], [50.0, 25.0, 12.5]),  # -50 % a day
        ],
        100.0,
    )
    assert ts.tolist() == [0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS, 4 * DAY_MS]
    # day 0: window 0 (+10 %); days 1-3: window 1, from its own start (-50 % a day)
    np.testing.assert_allclose(eq, [100.0, 110.0, 55.0, 27.5, 13.75])


def test_test_data_never_reaches_train(tmp_path: Path) -> None:
    """Rising and falling 10-day regimes alternate; each TRAIN window holds one regime and its
    TEST window the opposite one. A long static policy profits from more leverage in a rise and
    from less in a fall: with no look-ahead the choice follows the TRAIN regime every time, so
    it is always wrong for TEST (and an optimiser that saw TEST would choose the other one)."""
    regimes = [1, -1, 1, -1, 1]
    data = tmp_path / "data"
    write_regimes(data, regimes, regime_days=10, warm_days=8)
    cfg = sample_config(tmp_path, data_dir=data, window=False)
    spec = SweepSpec(
        config_path=cfg,
        base_policy=ROOT / "policies" / "static_3x.toml",
        params=[parse_param("leverage.fixed=1,3"), parse_param("leverage.min=1")],
        out=tmp_path / "wf",
        objective="total_return",
        walk_forward=parse_walk_forward("10:10"),
        contracts=("BTC/USDT:USDT",),
    )
    outcome = Sweep(spec, InlineExecutor()).run()
    per_window = outcome.summary["windows"]
    assert len(per_window) == len(regimes) - 1
    for w, train_regime in zip(per_window, regimes, strict=False):
        expected = "3" if train_regime > 0 else "1"
        assert w["params"]["leverage.fixed"] == expected, w
        test_rows = [r for r in outcome.rows if r["phase"] == "test" and r["window"] == w["window"]]
        assert len(test_rows) == 1
    # every TRAIN simulation ended before its TEST began
    for r in outcome.rows:
        if r["phase"] == "train":
            test = next(
                x for x in outcome.rows if x["phase"] == "test" and x["window"] == r["window"]
            )
            assert date.fromisoformat(r["window_end"]) < date.fromisoformat(test["window_start"])
            assert r["end"] <= test["start"]
    oos = outcome.summary["out_of_sample"]
    assert oos["total_return"] < 0  # always levered for the regime that just ended
    assert (spec.out / "oos_equity.csv").read_text().count("\n") > 30


def test_the_progress_bars_best_is_the_window_being_chosen() -> None:
    """During a walk-forward the bar showed the best TRAIN value over every window so far: a
    calm first window's return stayed "best" through every later one. It shows the best of the
    window being chosen; TEST rows, judged and not chosen from, never count."""
    best = RunningBest("total_return", walk_forward=True)

    def row(window: int, phase: str, value: float) -> dict[str, object]:
        return {"status": "ok", "window": window, "phase": phase, "total_return": value}

    assert best.seen({"status": "failed", "window": 0, "phase": "train"}) == ""
    assert best.seen(row(0, "train", 3.0)) == "window 0 best TRAIN total_return +3"
    assert best.seen(row(0, "train", 1.0)) == "window 0 best TRAIN total_return +3"
    assert best.seen(row(0, "test", 9.0)) == "window 0 best TRAIN total_return +3"
    assert best.seen(row(0, "oos", 9.0)) == "window 0 best TRAIN total_return +3"
    assert best.seen(row(1, "train", -0.5)) == "window 1 best TRAIN total_return -0.5"
    assert best.seen(row(1, "train", 0.25)) == "window 1 best TRAIN total_return +0.25"
    plain = RunningBest("total_return", walk_forward=False)
    plain.seen({"status": "ok", "window": 0, "phase": "all", "total_return": 0.1})
    assert plain.seen({"status": "ok", "window": 0, "phase": "all", "total_return": 0.05}) == (
        "best total_return +0.1"
    )
