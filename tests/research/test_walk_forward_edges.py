"""Walk-forward at its edges: a window inside a data gap, a window that chooses nothing, ties,
STEP longer than TEST, a resumed TPE search; and the deflated Sharpe ratio of flat returns."""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot.cli.research import run_sweep
from bot.errors import ConfigError
from bot.research.evaluate import daily_stats
from bot.research.executors import InlineExecutor
from bot.research.space import parse_param
from bot.research.sweep import Sweep, SweepSpec, _dsr
from bot.research.walkforward import parse_walk_forward
from tests.research.helpers import DAY_MS, ROOT, T0, CountingExecutor, sample_config, write_regimes

STATIC = ROOT / "policies" / "static_3x.toml"


def _gapped_data(folder: Path, gap_days: tuple[float, float]) -> None:
    """Regime data with every candle of days [a, b) removed (a download that stopped)."""
    write_regimes(folder, [1, -1, 1, -1], regime_days=10, warm_days=8)
    path = folder / "BTC_USDT_USDT-1h.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    a, b = (T0 + d * DAY_MS for d in gap_days)
    kept = [lines[0]] + [x for x in lines[1:] if not a <= int(x.split(",")[0]) < b]
    path.write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))


def _spec(tmp: Path, data: Path, **kw: object) -> SweepSpec:
    base: dict[str, object] = {
        "config_path": sample_config(tmp, data_dir=data, window=False),
        "base_policy": STATIC,
        "params": [parse_param("leverage.fixed=1,3"), parse_param("leverage.min=1")],
        "out": tmp / "wf",
        "objective": "total_return",
        "walk_forward": parse_walk_forward("10:10"),
        "contracts": ("BTC/USDT:USDT",),
    }
    base.update(kw)
    return SweepSpec(**base)  # type: ignore[arg-type]


def test_a_window_inside_a_data_gap_is_said_and_one_without_a_choice_keeps_the_last_choice(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # the TRAIN of window 1 (days 18..27) has no candle, nor the two hours before it: its
    # first tick finds the data stale already and never trades (flat returns; a TRAIN whose
    # first tick still entered has the entry's cost as its first day's return)
    _gapped_data(data, (18 - 2 / 24, 28))
    # daily_skew: undefined (NaN) for flat returns, so the gapped window has no finite objective
    spec = _spec(tmp_path, data, objective="daily_skew")
    console = Console(width=250, record=True)
    outcome = run_sweep(spec, 1, None, console)
    windows = outcome.summary["windows"]
    assert [w["window"] for w in windows] == [0, 1, 2]  # none vanishes
    gapped = windows[1]
    assert gapped["params"] is None
    assert any("no TRAIN run has a finite daily_skew" in n for n in gapped["notes"])
    # the out-of-sample run trades window 0's choice on through window 1 (a trader without a
    # new choice keeps the bot running), and says so
    assert (
        "no choice: the choice before it kept trading in the out-of-sample run" in (gapped["notes"])
    )
    assert any(n.startswith("TEST data stale for") for n in windows[0]["notes"])
    # the out-of-sample curve covers every TEST day
    rows = (spec.out / "oos_equity.csv").read_text().splitlines()[1:]
    stamps = [int(r.split(",")[0]) for r in rows]
    assert stamps == list(range(stamps[0], stamps[0] + len(stamps) * DAY_MS, DAY_MS))
    assert len(stamps) == 3 * 10 + 1
    equity = {int(t): float(e) for t, e in (r.split(",") for r in rows)}
    t1 = T0 + 29 * DAY_MS  # window 1 TESTs days 28..37: closes stamped 29..38
    assert len({equity[t1 + k * DAY_MS] for k in range(10)}) > 1  # traded, not flat
    assert summary_of(spec)["out_of_sample_method"] == "one run"
    text = console.export_text()
    assert "window 1: no TRAIN run has a finite daily_skew" in text
    assert summary_of(spec)["best_from_window"] == 2


def summary_of(spec: SweepSpec) -> dict[str, Any]:
    return dict(json.loads((spec.out / "summary.json").read_text()))


def test_a_first_window_without_a_choice_is_flat_before_the_first_choice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # the TRAIN of window 0 (days 8..17) has no candle, nor the two hours before it (stale at
    # its first tick: never traded)
    _gapped_data(data, (8 - 2 / 24, 18))
    spec = _spec(tmp_path, data, objective="daily_skew")
    outcome = run_sweep(spec, 1, None, Console(width=250, record=True))
    first = outcome.summary["windows"][0]
    assert first["params"] is None
    assert "no choice: flat (not traded) in the out-of-sample curve" in first["notes"]
    rows = (spec.out / "oos_equity.csv").read_text().splitlines()[1:]
    equity = [float(r.split(",")[1]) for r in rows]
    balance = equity[0]
    assert equity[: 10 + 1] == [balance] * 11  # window 0's TEST days: not traded
    assert len(set(equity[11:])) > 1  # window 1's choice trades from its TEST start


def test_ties_in_a_window_are_said(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _gapped_data(data, (18, 28))
    # with total_return, both points earn the same in the gapped TRAIN (one entry, then stale
    # data): a tie, said
    outcome = Sweep(_spec(tmp_path, data), InlineExecutor()).run()
    gapped = outcome.summary["windows"][1]
    assert gapped["params"] is not None
    assert any(n.startswith("2 points tie at the best total_return") for n in gapped["notes"])
    assert any(n.startswith("TRAIN data stale for") for n in gapped["notes"])
    assert gapped["dsr"] is None  # flat daily returns: nothing to deflate


def test_step_longer_than_test_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"STEP \(45 days\) longer than TEST \(30 days\)"):
        parse_walk_forward("90:30:45")
    assert str(parse_walk_forward("90:30:30")) == "90:30:30"


def test_no_deflated_sharpe_from_flat_returns() -> None:
    flat = daily_stats([0.0] * 30)
    assert flat["daily_sharpe"] == 0.0
    assert math.isnan(flat["daily_kurtosis"])
    rows = [
        {"status": "ok", **flat},
        {"status": "ok", **daily_stats([0.01, -0.005, 0.002] * 10)},
    ]
    assert _dsr(rows, rows[0]) is None
    assert _dsr(rows, rows[1]) is not None


def test_a_finished_tpe_walk_forward_resumes_without_running_anything(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    data = tmp_path / "data"
    write_regimes(data, [1, -1, 1], regime_days=10, warm_days=8)
    spec = _spec(
        tmp_path,
        data,
        params=[parse_param("leverage.fixed=1..3"), parse_param("leverage.min=1")],
        search="tpe",
        trials=2,
    )
    first = Sweep(spec, InlineExecutor()).run()
    again = CountingExecutor()
    second = Sweep(spec, again).run()
    assert again.seen == []
    assert second.best_point == first.best_point
    assert second.summary["windows"] == first.summary["windows"]


def test_a_finished_tpe_search_resumes_to_the_same_best_point(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    data = tmp_path / "data"
    write_regimes(data, [1, -1], regime_days=5, warm_days=8)
    spec = _spec(
        tmp_path,
        data,
        params=[parse_param("leverage.fixed=1..3"), parse_param("leverage.min=1")],
        search="tpe",
        trials=2,
        walk_forward=None,
    )
    first = run_sweep(spec, 1, None, Console(width=200, record=True))
    (spec.out / "best.toml").unlink()
    second = run_sweep(spec, 1, None, Console(width=200, record=True))
    assert second.best_point == first.best_point is not None
    assert (spec.out / "best.toml").is_file()


def test_identical_runs_count_as_one_trial_of_the_deflated_sharpe() -> None:
    from bot.research.overfitting import deflated_sharpe

    a: dict[str, Any] = {"status": "ok", "final_equity": 11000.0, "n_orders": 40}
    a.update(daily_stats([0.01, -0.005, 0.002, 0.004] * 10))
    b: dict[str, Any] = {"status": "ok", "final_equity": 10500.0, "n_orders": 30}
    b.update(daily_stats([0.004, -0.006, 0.001, 0.003] * 10))
    twin = {**a, "key": "twin"}  # a parameter that never bound: the very same run
    got = _dsr([a, b, twin], a)
    assert got is not None
    assert got["trials"] == 2
    assert got["points"] == 3
    expected, _ = deflated_sharpe(
        a["daily_sharpe"],
        [a["daily_sharpe"], b["daily_sharpe"]],
        a["n_days"],
        a["daily_skew"],
        a["daily_kurtosis"],
    )
    assert got["deflated_sharpe"] == expected


class _LateTest(InlineExecutor):
    """Runs TRAIN points for real; each TEST run is the real one with its start moved two days
    later (as a chosen point whose warm-up or data starts late reports it)."""

    def run(self, fn: Any, tasks: Any, failed: Any) -> Any:
        for task in tasks:
            row = fn(task)
            if task.meta["phase"] == "test" and row["status"] == "ok":
                start = date.fromisoformat(row["start"][:10]) + timedelta(days=2)
                row["start"] = f"{start}T00:00:00Z"
            yield row


def test_a_test_run_that_starts_late_is_said(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_regimes(data, [1, -1, 1], regime_days=10, warm_days=8)
    outcome = Sweep(_spec(tmp_path, data), _LateTest()).run()
    for w in outcome.summary["windows"]:
        assert any(n.startswith("TEST ran ") and "only (warm-up or data)" in n for n in w["notes"])
    untouched = Sweep(_spec(tmp_path, data, out=tmp_path / "again"), InlineExecutor()).run()
    for w in untouched.summary["windows"]:
        assert not any(n.startswith("TEST ran ") for n in w["notes"])


def test_the_data_s_last_days_in_no_window_are_said(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_regimes(data, [1, -1], regime_days=10, warm_days=8)
    spec = _spec(tmp_path, data, walk_forward=parse_walk_forward("5:4"))
    sweep = Sweep(spec, InlineExecutor())
    wins = sweep.windows()
    assert wins is not None
    assert sweep.data_span is not None
    tail = (sweep.data_span[1] - wins[-1].test_end) / DAY_MS
    assert tail >= 1  # 5:4 leaves days at the end of this data
    outcome = sweep.run()
    assert (
        f"the last {tail:.1f} days of the data fit no whole TRAIN + TEST window"
        in (outcome.summary["untested_tail"])
    )
    # windows that step one day tile the data to its last whole day: nothing to say
    tiled = Sweep(
        replace(spec, out=tmp_path / "tiled", walk_forward=parse_walk_forward("2:2:1")),
        InlineExecutor(),
    ).run()
    assert "untested_tail" not in tiled.summary


def _short_walk_forward(tmp: Path) -> SweepSpec:
    return SweepSpec(
        config_path=sample_config(tmp, window=False),
        base_policy=ROOT / "policies" / "static_3x.toml",
        params=[parse_param("leverage.fixed=1,2"), parse_param("leverage.min=1")],
        out=tmp / "wf",
        objective="total_return",
        walk_forward=parse_walk_forward("5:3"),
        contracts=("BTC/USDT:USDT",),
        start=date(2025, 1, 1),
        end=date(2025, 1, 11),
    )


@pytest.mark.parametrize("pattern", ["test-0-*.csv", "oos-*.csv"])
@pytest.mark.parametrize("lost", ["emptied", "removed"])
def test_a_run_whose_curve_was_lost_runs_again_on_resume(
    tmp_path: Path, pattern: str, lost: str
) -> None:
    """A row is fsynced after its curve is written; a curve lost all the same (a power cut
    before the curve reached the disk, a file removed by hand) made the resume crash, or stitch
    an empty out-of-sample curve without a word. Its run is not finished: it runs again."""
    first = Sweep(_short_walk_forward(tmp_path), InlineExecutor()).run()
    curve = next((tmp_path / "wf" / "curves").glob(pattern))
    kept = curve.read_text(encoding="utf-8")
    if lost == "emptied":
        curve.write_text("")
    else:
        curve.unlink()
    executor = CountingExecutor()
    second = Sweep(_short_walk_forward(tmp_path), executor).run()
    assert len(executor.seen) == 1  # that run only
    assert curve.read_text(encoding="utf-8") == kept
    assert second.summary["out_of_sample"] == first.summary["out_of_sample"]
    assert second.summary["out_of_sample"]
