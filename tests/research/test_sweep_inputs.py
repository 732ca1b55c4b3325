"""A sweep's inputs and its results file under damage: bad --trials, damaged rows after a crash,
a resume whose configuration, base policy or data changed."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError, DataError
from bot.research import evaluate, histories, space
from bot.research.executors import InlineExecutor
from bot.research.results import ResultsFile, columns
from bot.research.space import parse_param
from bot.research.sweep import Sweep, SweepSpec
from tests.research.helpers import ROOT, CountingExecutor, sample_config

POLICY = ROOT / "policies" / "vol_target.toml"


def _spec(tmp: Path, **kw: object) -> SweepSpec:
    base: dict[str, object] = {
        "config_path": sample_config(tmp),
        "base_policy": POLICY,
        "params": [parse_param("leverage.target_volatility=0.3,0.6")],
        "out": tmp / "sweep",
        "contracts": ("BTC/USDT:USDT",),
        "start": date(2025, 7, 1),
        "end": date(2025, 7, 20),
    }
    base.update(kw)
    return SweepSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("search", "trials"), [("random", -1), ("random", 0), ("grid", -3)])
def test_trials_below_one_are_a_clear_error(tmp_path: Path, search: str, trials: int) -> None:
    with pytest.raises(ConfigError, match=f"--trials must be >= 1, got {trials}"):
        Sweep(_spec(tmp_path, search=search, trials=trials), InlineExecutor())


def test_random_search_counts_at_most_the_grid(tmp_path: Path) -> None:
    sweep = Sweep(_spec(tmp_path, search="random", trials=50), InlineExecutor())
    assert sweep.total_tasks(1) == 2  # the progress bar's total: every point of the grid, once


def _lines(path: Path) -> list[str]:
    return path.read_bytes().decode().splitlines(keepends=True)


def test_a_damaged_last_row_is_dropped_and_its_point_runs_again(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = Sweep(spec, InlineExecutor()).run()
    results = spec.out / "results.csv"
    lines = _lines(results)
    assert len(lines) == 3
    # A crash that left half a row followed by a newline, then zeros.
    results.write_bytes(("".join(lines[:2]) + lines[2][:40] + "\x00" * 16 + "\r\n").encode())
    counting = CountingExecutor()
    second = Sweep(spec, counting).run()
    assert [t.key for t in counting.seen] == [lines[2].split(",")[0]]
    assert {r["key"]: r for r in second.rows} == {r["key"]: r for r in first.rows}
    assert _lines(results)[:2] == lines[:2]
    assert len(_lines(results)) == 3


def test_a_damaged_row_before_others_is_named_not_guessed(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    Sweep(spec, InlineExecutor()).run()
    results = spec.out / "results.csv"
    lines = _lines(results)
    results.write_bytes((lines[0] + "garbage,1,2\r\n" + lines[2]).encode())
    with pytest.raises(ConfigError, match=r"results.csv: line 2 \(garbage\) is damaged: 3 fields"):
        Sweep(spec, InlineExecutor()).run()
    assert _lines(results)[1] == "garbage,1,2\r\n"  # left for the user to look at


def test_a_header_cut_short_starts_afresh(tmp_path: Path) -> None:
    results = tmp_path / "results.csv"
    cols = columns(["leverage.max"])
    results.write_text(",".join(cols)[:20])
    with ResultsFile(results, cols) as f:
        assert list(f) == []
    assert results.read_text().splitlines() == [",".join(cols)]


def test_a_resume_on_changed_configuration_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    Sweep(spec, InlineExecutor()).run()
    cfg = spec.config_path
    cfg.write_text(cfg.read_text().replace("starting_balance = 10000", "starting_balance = 50000"))
    with pytest.raises(ConfigError, match="changed input files: config"):
        Sweep(spec, InlineExecutor()).run()


def test_a_resume_on_changed_base_policy_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "base.toml"
    policy.write_text(POLICY.read_text())
    spec = _spec(tmp_path, base_policy=policy)
    Sweep(spec, InlineExecutor()).run()
    policy.write_text(POLICY.read_text().replace("distance = 2.5", "distance = 3"))
    with pytest.raises(ConfigError, match="changed input files: base policy"):
        Sweep(spec, InlineExecutor()).run()


def test_a_resume_on_changed_data_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "sample", data)
    spec = _spec(tmp_path, data_dir=data)
    Sweep(spec, InlineExecutor()).run()
    funding = data / "BTC_USDT_USDT-funding.csv.gz"
    rows = gzip.decompress(funding.read_bytes()).decode().splitlines()
    rows[-1] = rows[-1].rsplit(",", 1)[0] + ",0.0003"  # one settlement revised
    funding.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    with pytest.raises(ConfigError, match="changed input files: data BTC/USDT:USDT funding"):
        Sweep(spec, InlineExecutor()).run()
    # the finished rows are still there, untouched
    assert len(_lines(spec.out / "results.csv")) == 3


def _signal_spec(tmp: Path, side: int) -> tuple[SweepSpec, Path]:
    """BTC traded on a signal file (one row: ``side`` from before the window)."""
    signals = tmp / "signals.csv"
    signals.write_text(f"timestamp,contract,direction\n2025-06-01T00:00:00Z,BTC/USDT:USDT,{side}\n")
    spec = _spec(tmp)
    cfg = spec.config_path
    text = cfg.read_text()
    head, tail = text.split('direction = "long"', 1)
    cfg.write_text(f'{head}direction = "signal"\nsignal_file = "{signals}"{tail}')
    return spec, signals


def test_a_resume_on_a_changed_signal_file_is_refused(tmp_path: Path) -> None:
    """The signal file decides every trade's side: finished rows on the long signals must not
    be ranked beside points run on short ones (nor reused for them)."""
    spec, signals = _signal_spec(tmp_path, 1)
    Sweep(spec, InlineExecutor()).run()
    signals.write_text(signals.read_text().replace(",1\n", ",-1\n"))
    with pytest.raises(ConfigError, match="changed input files: signals BTC/USDT:USDT"):
        Sweep(spec, InlineExecutor()).run()
    assert len(_lines(spec.out / "results.csv")) == 3


def test_a_signal_file_rewritten_while_the_sweep_runs_stops_it(tmp_path: Path) -> None:
    """Every point reads the signals afresh (a worker keeps the configuration and the data,
    not the signals): the next point after the rewrite stops the sweep."""
    spec, signals = _signal_spec(tmp_path, 1)
    sweep = Sweep(spec, InlineExecutor())

    def rewrite(row: dict[str, Any], n: int) -> None:
        if row["status"] == "ok":
            signals.write_text(signals.read_text().replace(",1\n", ",-1\n"))

    sweep.listener = rewrite
    said = r"sweep stopped: an input changed during the sweep: .*signals.csv is not the file"
    with pytest.raises(DataError, match=said):
        sweep.run()


def test_points_on_different_spans_are_said(tmp_path: Path) -> None:
    # Only the 5m files (from June 2025): 4h decisions resampled from them need 28 days of
    # warm-up and no file holds it, so that point starts weeks after the 1h one. Said, not
    # compared silently.
    only = tmp_path / "only-5m"
    data = only / "data"
    data.mkdir(parents=True)
    for name in ("BTC_USDT_USDT-5m.csv.gz", "BTC_USDT_USDT-funding.csv.gz"):
        shutil.copy(ROOT / "data" / "sample" / name, data / name)
    spec = _spec(
        tmp_path,
        config_path=sample_config(only, data_dir=data),
        params=[parse_param("timeframe=1h,4h")],
        start=date(2025, 6, 10),
        end=date(2025, 7, 15),
    )
    outcome = Sweep(spec, InlineExecutor()).run()
    starts = {r["param.timeframe"]: r["start"] for r in outcome.rows}
    assert starts["1h"] < starts["4h"]
    notes = outcome.summary["best_notes"]
    assert any("points ran on different spans" in n for n in notes), notes


def test_points_on_one_span_say_nothing_about_spans(tmp_path: Path) -> None:
    outcome = Sweep(_spec(tmp_path), InlineExecutor()).run()
    assert not any("different spans" in n for n in outcome.summary["best_notes"])


class _LosesFirst(InlineExecutor):
    """Loses its first point, as a cluster that lost the worker too often reports it."""

    lost = False

    def run(self, fn: Any, tasks: Iterable[Any], failed: Any) -> Iterator[Any]:
        for task in tasks:
            if not self.lost:
                self.lost = True
                yield failed(task, "cluster could not run this point: KilledWorker")
            else:
                yield fn(task)


def test_a_point_lost_by_its_worker_runs_again_on_resume(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = Sweep(spec, _LosesFirst()).run()
    lost = [r for r in first.rows if r["status"] == "failed"]
    assert len(lost) == 1
    assert "KilledWorker" in lost[0]["error"]
    counting = CountingExecutor()
    second = Sweep(spec, counting).run()
    assert [t.key for t in counting.seen] == [lost[0]["key"]]
    assert all(r["status"] == "ok" for r in second.rows)
    assert second.best is not None
    with ResultsFile(spec.out / "results.csv", columns(["leverage.target_volatility"])) as f:
        assert all(f.done(r["key"]) for r in second.rows)
    # one line per point: the lost point's old line is gone, never counted twice by a reader
    keys = [line.split(",")[0] for line in _lines(spec.out / "results.csv")[1:]]
    assert sorted(keys) == sorted(r["key"] for r in second.rows)


def test_a_point_that_raises_is_a_failed_row_not_the_end_of_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.research import evaluate as ev

    real = ev.run_simulation  # type: ignore[attr-defined]
    calls = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("division by zero")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ev, "run_simulation", flaky)
    spec = _spec(tmp_path)
    outcome = Sweep(spec, InlineExecutor()).run()
    status = sorted(r["status"] for r in outcome.rows)
    assert status == ["failed", "ok"]
    failed = next(r for r in outcome.rows if r["status"] == "failed")
    assert failed["error"] == "the point raised ZeroDivisionError: division by zero"
    again = CountingExecutor()
    Sweep(spec, again).run()
    assert [t.key for t in again.seen] == [failed["key"]]


def test_a_sweep_that_chooses_nothing_says_why_and_leaves_no_best_toml(tmp_path: Path) -> None:
    from rich.console import Console

    from bot.cli.research import run_sweep

    spec = _spec(tmp_path, params=[parse_param("leverage.max=0.1,0.2")])  # below leverage.min
    spec.out.mkdir()
    (spec.out / "best.toml").write_text("# left by someone\n")
    console = Console(width=200, record=True)
    outcome = run_sweep(spec, 1, None, console)
    assert outcome.best_point is None
    assert "no point chosen: 2 invalid, 0 failed" in console.export_text()
    assert not (spec.out / "best.toml").exists()


def test_a_range_over_an_integer_key_draws_whole_numbers(tmp_path: Path) -> None:
    spec = _spec(tmp_path, params=[parse_param("volatility.window=24..200")], search="random")
    spec.trials = 5
    sweep = Sweep(spec, InlineExecutor())
    points = sweep.listed_points()
    assert len(points) == 5
    for point in points:
        value = point["volatility.window"]
        assert isinstance(value, int)
        assert 24 <= value <= 200
        assert sweep.policy_of(point)[1] is None  # a valid policy, not an invalid point
    # a float key keeps drawing fractions
    spec = _spec(tmp_path, params=[parse_param("leverage.max=2..4")], search="random", trials=3)
    values = [p["leverage.max"] for p in Sweep(spec, InlineExecutor()).listed_points()]
    assert any(v != int(v) for v in values)


def test_an_integer_key_with_fractional_bounds_is_a_clear_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, params=[parse_param("volatility.window=24.5..200")], search="random")
    spec.trials = 2
    with pytest.raises(ConfigError, match=r"volatility\.window: an integer key needs whole-number"):
        Sweep(spec, InlineExecutor())


def test_tpe_draws_whole_numbers_for_an_integer_key(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    spec = _spec(tmp_path, params=[parse_param("volatility.window=24..200")], search="tpe")
    spec.trials = 2
    outcome = Sweep(spec, InlineExecutor()).run()
    assert outcome.invalid == []
    assert all(r["status"] == "ok" for r in outcome.rows)
    assert all(str(r["param.volatility.window"]).isdigit() for r in outcome.rows)
    again = CountingExecutor()
    assert Sweep(spec, again).run().best_point == outcome.best_point
    assert again.seen == []


def test_best_toml_is_never_left_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from bot.cli import research
    from bot.research import space

    spec = _spec(tmp_path)
    outcome = research.run_sweep(spec, 1, None, Console(width=200, record=True))
    before = (spec.out / "best.toml").read_bytes()
    assert b"target_volatility" in before
    # A write that fails half-way (here: text the encoder refuses, as a full disk would fail)
    monkeypatch.setattr(space, "to_toml", lambda raw: 'name = "x\ud800"\n')
    sweep = Sweep(spec, InlineExecutor())
    with pytest.raises(UnicodeEncodeError):
        research.write_outputs(spec, sweep, outcome)
    assert (spec.out / "best.toml").read_bytes() == before
    assert not list(spec.out.glob(".best.toml.*"))  # no temporary file left behind


@pytest.mark.slow
def test_a_long_lived_worker_never_serves_an_edited_file_s_old_content(tmp_path: Path) -> None:
    """A Dask worker (here: this process, with the in-process executor) keeps configurations
    and loaded data between sweeps; a new sweep after the files were edited must see them."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "sample", data)
    spec = _spec(tmp_path, data_dir=data, out=tmp_path / "a")
    first = Sweep(spec, InlineExecutor()).run()
    cfg = spec.config_path
    cfg.write_text(cfg.read_text().replace("starting_balance = 10000", "starting_balance = 20000"))
    second = Sweep(replace(spec, out=tmp_path / "b"), InlineExecutor()).run()
    by_point = {r["point"]: r for r in first.rows}
    for r in second.rows:
        assert r["final_equity"] != by_point[r["point"]]["final_equity"]
        assert r["final_equity"] > 15_000  # ran on the new balance
    # the data edited in place: every price 10 % higher, in the same file
    for name in ("BTC_USDT_USDT-1h.csv.gz", "BTC_USDT_USDT-5m.csv.gz"):
        path = data / name
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        scaled = [lines[0]] + [
            ",".join([f[0], *(f"{float(x) * 1.1:.2f}" for x in f[1:5]), f[5]])
            for f in (line.split(",") for line in lines[1:])
        ]
        path.write_bytes(gzip.compress(("\n".join(scaled) + "\n").encode()))
    third = Sweep(replace(spec, out=tmp_path / "c"), InlineExecutor()).run()
    before = {r["point"]: r["final_equity"] for r in second.rows}
    assert all(r["final_equity"] != before[r["point"]] for r in third.rows)


def test_a_resumed_sweep_s_progress_reaches_its_total(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    Sweep(spec, InlineExecutor()).run()
    sweep = Sweep(spec, CountingExecutor())
    advanced: list[int] = []
    sweep.listener = lambda row, n: advanced.append(n)
    sweep.run()
    assert sum(advanced) == sweep.total_tasks(1) == 2


def test_a_tpe_trial_lost_by_its_worker_is_replaced_on_resume(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    spec = _spec(tmp_path, params=[parse_param("leverage.target_volatility=0.3..0.9")])
    spec.search, spec.trials = "tpe", 2
    first = Sweep(spec, _LosesFirst()).run()
    assert sorted(r["status"] for r in first.rows) == ["failed", "ok"]
    again = CountingExecutor()
    second = Sweep(spec, again).run()
    assert len(again.seen) == 1
    assert [r["status"] for r in second.rows] == ["ok", "ok"]


def test_data_rewritten_while_the_sweep_runs_stops_it(tmp_path: Path) -> None:
    """A download job rewrites a data file between two points: the next worker that reads the
    data afresh must not run its point on other data than the sweep started with."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "sample", data)
    spec = _spec(tmp_path, data_dir=data)
    sweep = Sweep(spec, InlineExecutor())
    funding = data / "BTC_USDT_USDT-funding.csv.gz"

    def rewrite(row: dict[str, Any], n: int) -> None:
        if row["status"] != "ok":
            return
        rows = gzip.decompress(funding.read_bytes()).decode().splitlines()
        rows[-1] = rows[-1].rsplit(",", 1)[0] + ",0.0003"  # one settlement revised
        funding.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
        # the next point lands on a worker that holds nothing yet (a new process)
        histories._KEPT.clear()
        evaluate._CONFIGS.clear()

    sweep.listener = rewrite
    said = r"sweep stopped: an input changed during the sweep: .*-funding.csv.gz is not the file"
    with pytest.raises(DataError, match=said):
        sweep.run()
    lines = _lines(spec.out / "results.csv")
    assert len(lines) == 3  # the header, the point done on the old data, the stopped one
    assert ",ok," in lines[1]
    assert ",failed," in lines[2]
    assert "new --out" in lines[2]
    # a resume is refused: the sweep's inputs are no longer the ones it pinned
    with pytest.raises(ConfigError, match="changed input files: data BTC/USDT:USDT funding"):
        Sweep(spec, InlineExecutor()).run()


@pytest.mark.parametrize("bounds", ["0.1..inf", "nan..0.5", "-inf..0.5", "0.1..1e400"])
def test_a_range_that_cannot_be_drawn_from_is_refused_naming_the_parameter(bounds: str) -> None:
    """0.1..inf with --search random raised decimal.InvalidOperation in the draw."""
    with pytest.raises(ConfigError, match=r"leverage\.target_volatility.*(finite|too large)"):
        parse_param(f"leverage.target_volatility={bounds}")


@pytest.mark.parametrize(
    ("key", "low", "high"),
    [
        # rounded to 0.0001 these ran 0.0001 and 0.0002, neither in the range
        ("orders.protective_tolerance", "0.00011", "0.00019"),
        ("leverage.target_volatility", "0.00001", "0.00004"),  # collapsed to 0.0000
        ("leverage.target_volatility", "1e-30", "1e30"),  # InvalidOperation in the rounding
        ("leverage.target_volatility", "0.12345", "0.5"),  # a bound between two steps
    ],
)
def test_random_draws_lie_in_their_range_and_run_as_reported(
    tmp_path: Path, key: str, low: str, high: str
) -> None:
    spec = _spec(tmp_path, params=[parse_param(f"{key}={low}..{high}")], search="random")
    spec.trials = 20
    sweep = Sweep(spec, InlineExecutor())
    points = sweep.listed_points()
    assert len(points) == 20
    for point in points:
        value = point[key]
        assert isinstance(value, Decimal)
        assert Decimal(low) <= value <= Decimal(high)
        section, name = key.split(".")
        ran = sweep.policy_of(point)[0][section][name]
        assert ran == Decimal(space.text(value)) == value  # what runs is what is reported


def test_an_ordinary_range_draws_what_it_always_drew(tmp_path: Path) -> None:
    """Resumed sweeps draw the same points again: a range of 100 steps of 0.0001 or more keeps
    that rounding."""
    spec = _spec(tmp_path, params=[parse_param("leverage.max=2..4")], search="random", trials=3)
    values = [p["leverage.max"] for p in Sweep(spec, InlineExecutor()).listed_points()]
    assert values == [Decimal("3.6888"), Decimal("3.5159"), Decimal("2.8411")]


class _Killed(BaseException):
    """The process killed mid-sweep (nothing after it runs; rows written so far stay)."""


class _DiesAfter(InlineExecutor):
    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, fn: Any, tasks: Iterable[Any], failed: Any) -> Iterator[Any]:
        for task in tasks:
            if self.n == 0:
                raise _Killed
            self.n -= 1
            yield fn(task)


def test_a_resumed_tpe_search_runs_the_same_points_as_a_clean_one(tmp_path: Path) -> None:
    """--trials N is N points searched, resumed or not: the finished rows fed to the sampler
    up front made it ask them again (each counted as a trial), so a search killed after 2 of 5
    points ran 3 distinct points in all and chose another best point."""
    pytest.importorskip("optuna")
    params = [parse_param("leverage.target_volatility=0.2..0.9")]
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    clean = _spec(tmp_path / "a", params=params, search="tpe", trials=5, seed=3)
    whole = Sweep(clean, InlineExecutor()).run()
    spec = _spec(tmp_path / "b", params=params, search="tpe", trials=5, seed=3)
    with pytest.raises(_Killed):
        Sweep(spec, _DiesAfter(2)).run()
    again = CountingExecutor()
    resumed = Sweep(spec, again).run()
    assert len(again.seen) == 3
    points = sorted(r["point"] for r in resumed.rows)
    assert len(set(points)) == 5
    assert points == sorted(r["point"] for r in whole.rows)
    assert resumed.best_point == whole.best_point


class _TwoWorkers(InlineExecutor):
    workers = 2


def test_a_tpe_sweep_resumed_on_other_workers_asks_the_same_points(tmp_path: Path) -> None:
    """TPE asks by batches of the executor's workers, and which points it asks depends on the
    batch once its random start is over: a finished sweep resumed with another --workers ran
    new points and chose another best one. The first run's batch is kept in sweep.json."""
    pytest.importorskip("optuna")
    params = [parse_param("leverage.target_volatility=0.2..0.9")]
    spec = _spec(tmp_path, params=params, search="tpe", trials=13, seed=3)
    first = Sweep(spec, _TwoWorkers()).run()
    again = CountingExecutor()
    second = Sweep(spec, again).run()
    assert again.seen == []
    assert second.best_point == first.best_point
    assert sorted(r["point"] for r in second.rows) == sorted(r["point"] for r in first.rows)


def test_tpe_draws_lie_in_a_narrow_range_and_a_wide_one_runs(tmp_path: Path) -> None:
    """TPE rounded its floats to 0.0001 too (0.00011..0.00019 ran 0.0001 and 0.0002), and
    1e-30..1e30 raised InvalidOperation after sweep.json and results.csv were written."""
    pytest.importorskip("optuna")
    params = [
        parse_param("orders.protective_tolerance=0.00011..0.00019"),
        parse_param("leverage.target_volatility=1e-30..1e30"),
    ]
    spec = _spec(tmp_path, params=params, search="tpe", trials=2)
    outcome = Sweep(spec, InlineExecutor()).run()
    # a target above 5 (500 % a year) is an invalid point, reported, not fatal
    assert len(outcome.rows) + len(outcome.invalid) == 2
    assert all("must be <= 5" in why for _, why in outcome.invalid)
    drawn = [*outcome.rows] + [
        {f"param.{k}": v for k, v in point.items()} for point, _ in outcome.invalid
    ]
    for row in drawn:
        tolerance = Decimal(str(row["param.orders.protective_tolerance"]))
        assert Decimal("0.00011") <= tolerance <= Decimal("0.00019")
        target = Decimal(str(row["param.leverage.target_volatility"]))
        assert Decimal("1e-30") <= target <= Decimal("1e30")


def test_an_unusable_out_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ConfigError, match=r"--out .*afile: is a file, not a directory"):
        Sweep(_spec(tmp_path, out=tmp_path / "afile"), InlineExecutor())
    with pytest.raises(ConfigError, match=r"--out .*afile/sub: cannot write there"):
        Sweep(_spec(tmp_path, out=tmp_path / "afile" / "sub"), InlineExecutor())
    assert (tmp_path / "afile").read_text() == "mine"


class _Broken(InlineExecutor):
    def run(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise RuntimeError("broke before the first point finished")


def test_a_sweep_that_fails_before_its_first_point_leaves_nothing_to_refuse_a_rerun(
    tmp_path: Path,
) -> None:
    """A sweep that crashed before its first point left sweep.json and a header-only
    results.csv: the corrected command was then refused ("holds a different sweep")."""
    out = tmp_path / "runs" / "sweep"
    spec = _spec(tmp_path, out=out, params=[parse_param("leverage.target_volatility=0.3,0.5")])
    with pytest.raises(RuntimeError, match="broke before"):
        Sweep(spec, _Broken()).run()
    assert not (tmp_path / "runs").exists()
    corrected = replace(spec, params=[parse_param("leverage.target_volatility=0.3,0.6")])
    outcome = Sweep(corrected, InlineExecutor()).run()
    assert sorted(r["status"] for r in outcome.rows) == ["ok", "ok"]
    # a sweep with a finished point keeps it when a later run fails
    more = replace(corrected, params=[parse_param("leverage.target_volatility=0.3,0.6,0.9")])
    with pytest.raises(ConfigError, match="holds a different sweep"):
        Sweep(more, _Broken()).run()
    assert (out / "sweep.json").exists()
    assert len(_lines(out / "results.csv")) == 3
