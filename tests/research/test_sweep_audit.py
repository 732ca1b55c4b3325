"""What a trader reads off a sweep: a point that never trades is not chosen for its undefined
ratio, one value listed twice is refused, a point the configuration refuses is an invalid
point, random search draws distinct points, results.parquet says what results.csv says,
best.toml is written for every policy file, the progress bar and the deflated Sharpe ratio
say what they did."""

from __future__ import annotations

import csv
import io
import json
import math
import tomllib
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bot.cli import simulate as sim
from bot.cli.research import run_sweep
from bot.config.loader import load_policy
from bot.errors import ConfigError
from bot.research import space
from bot.research.evaluate import REPORT_METRICS
from bot.research.executors import InlineExecutor
from bot.research.results import ResultsFile, columns, score, write_parquet
from bot.research.space import Param, parse_param, random_points, read_base, to_toml
from bot.research.sweep import Sweep, SweepSpec
from tests.research.helpers import ROOT, sample_config

POLICY = ROOT / "policies" / "vol_target.toml"
HEDGED = ROOT / "policies" / "vol_target_hedged.toml"


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


def _flat_row(**kw: Any) -> dict[str, Any]:
    """A point that never traded, as evaluate writes it: the report's 0.0 ratios, NaN moments."""
    row: dict[str, Any] = {
        "key": "all:0:flat",
        "status": "ok",
        "sharpe": 0.0,
        "sortino": 0.0,
        "calmar": 0.0,
        "daily_sharpe": 0.0,
        "total_return": 0.0,
        "max_drawdown": 0.0,
        "daily_skew": math.nan,
        "daily_kurtosis": math.nan,
        "n_days": 19,
    }
    row.update(kw)
    return row


@pytest.mark.parametrize("objective", ["sharpe", "sortino", "calmar", "daily_sharpe"])
def test_an_undefined_ratio_is_no_score(objective: str) -> None:
    assert score(_flat_row(), objective) is None
    # what is defined for a flat run stays a score: it made 0 % and never fell
    assert score(_flat_row(), "total_return") == 0.0
    assert score(_flat_row(), "-max_drawdown") == -0.0


def test_a_point_that_never_trades_is_not_chosen_for_its_sharpe_of_0(tmp_path: Path) -> None:
    # January-February 2025: the trading point loses (Sharpe about -2.6); the point that may
    # not open a position has flat equity, whose Sharpe the report writes as 0.0
    spec = _spec(
        tmp_path,
        params=[parse_param("allow_increase=true,false")],
        objective="sharpe",
        start=date(2025, 1, 1),
        end=date(2025, 2, 28),
    )
    outcome = Sweep(spec, InlineExecutor()).run()
    flat = next(r for r in outcome.rows if r["param.allow_increase"] == "false")
    assert flat["sharpe"] == 0.0
    assert flat["n_trades"] == 0
    assert outcome.best_point == {"allow_increase": True}
    assert outcome.best is not None
    assert outcome.best["sharpe"] < 0
    assert any(
        "1 point(s) ran but have no defined sharpe" in n for n in outcome.summary["best_notes"]
    )


@pytest.mark.parametrize("values", ["0.4,0.40", "5,5.0", '2,"2"', "0.5,0.50000"])
def test_one_value_written_two_ways_is_listed_twice(values: str) -> None:
    with pytest.raises(ConfigError, match="a value is listed twice"):
        parse_param(f"leverage.max={values}")


def test_random_search_draws_distinct_points() -> None:
    window = Param("volatility.window", low=Decimal(100), high=Decimal(101), integer=True)
    points = random_points([window], 5, seed=0)
    assert sorted(p["volatility.window"] for p in points) == [100, 101]  # the whole space, once


def test_a_point_the_configuration_refuses_is_an_invalid_point(tmp_path: Path) -> None:
    # bot simulate --policy (this point) refuses it: the hedge instrument, BTC, is also one of
    # the configuration's traded contracts. The sweep ran it and wrote figures for it.
    spec = _spec(tmp_path, base_policy=HEDGED, contracts=("ETH/USDT:USDT",))
    outcome = Sweep(spec, InlineExecutor()).run()
    assert outcome.rows == []
    assert len(outcome.invalid) == 2
    assert all("hedge.instruments[0]: is also a traded contract" in e for _, e in outcome.invalid)


def _config_without_btc(tmp: Path) -> Path:
    text = sample_config(tmp).read_text(encoding="utf-8")
    start = text.index("[[contracts]]\n# ccxt symbol")  # the first table, BTC's
    end = text.index("[[contracts]]", start + 1)
    path = tmp / "config-eth-sol.toml"  # not config.toml: every _spec writes that one
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    return path


def test_a_hedged_policy_s_best_toml_is_written_and_reproduces_its_point(tmp_path: Path) -> None:
    config = _config_without_btc(tmp_path)
    spec = _spec(
        tmp_path,
        config_path=config,
        base_policy=HEDGED,
        contracts=("ETH/USDT:USDT",),
        params=[parse_param("leverage.target_volatility=0.4")],
    )
    outcome = run_sweep(spec, 1, None, Console(file=io.StringIO()))
    assert outcome.best is not None
    best = spec.out / "best.toml"
    assert load_policy(best).hedge is not None
    out = tmp_path / "sim"
    sim.run(
        config,
        [best],
        None,
        "ETH/USDT:USDT",
        spec.start,
        spec.end,
        out,
        Console(file=io.StringIO()),
    )
    report = json.loads((out / "report.json").read_text())
    for key in REPORT_METRICS:
        assert outcome.best[key] == report[key], key


def test_every_shipped_policy_round_trips_through_to_toml(tmp_path: Path) -> None:
    for path in sorted((ROOT / "policies").glob("*.toml")):
        raw = read_base(path)
        written = tmp_path / path.name
        written.write_text(to_toml(raw), encoding="utf-8")
        assert tomllib.loads(written.read_text(), parse_float=Decimal) == raw, path.name
        assert load_policy(written) == load_policy(path), path.name


def test_results_parquet_says_what_results_csv_says(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    keys = ["leverage.target_volatility"]
    path = tmp_path / "results.csv"
    with ResultsFile(path, columns(keys)) as results:
        results.add(
            {
                "key": "all:0:4646505477",
                "point": "4646505477",  # ten digits: a point id pyarrow took for a number
                "window": 0,
                "phase": "all",
                "param.leverage.target_volatility": "0.12345678901234567891",
                "status": "ok",
                "sharpe": 1.25,
                "n_orders": 3,
            }
        )
    write_parquet(path)
    with path.open(newline="", encoding="utf-8") as fh:
        (written,) = list(csv.DictReader(fh))
    (stored,) = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert stored["point"] == written["point"] == "4646505477"
    assert stored["param.leverage.target_volatility"] == "0.12345678901234567891"
    assert (stored["sharpe"], stored["n_orders"], stored["window"]) == (1.25, 3, 0)


def test_invalid_points_count_on_the_progress_bar_and_resumed_rows_say_so(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path, params=[parse_param("leverage.target_volatility=0.3,-1")])
    first = Sweep(spec, InlineExecutor())
    advanced: list[int] = []
    first.listener = lambda row, n: advanced.append(n)
    first.run()
    assert sum(advanced) == first.total_tasks(1) == 2  # the invalid point is done, not pending
    again = Sweep(spec, InlineExecutor())
    seen: list[dict[str, Any]] = []
    again.listener = lambda row, n: seen.append(row)
    again.run()
    # the finished row took no time now: the bar must not count it into its speed
    assert [r.get("resumed") for r in seen if r.get("status") == "ok"] == [True]


def test_a_sweep_of_one_point_says_why_it_has_no_deflated_sharpe(tmp_path: Path) -> None:
    spec = _spec(tmp_path, params=[parse_param("leverage.target_volatility=0.3")])
    console = Console(file=io.StringIO(), width=250, record=True)
    outcome = run_sweep(spec, 1, None, console)
    assert outcome.summary["dsr"] is None
    assert "no deflated Sharpe ratio: 1 distinct trial(s) ran" in console.export_text()


def test_best_toml_compares_with_its_base_in_one_simulate(tmp_path: Path) -> None:
    """best.toml kept the base's name, so the natural comparison, `bot simulate --policy
    BASE --policy best.toml`, was refused as one policy given twice."""
    spec = _spec(tmp_path)
    outcome = run_sweep(spec, 1, None, Console(file=io.StringIO()))
    assert outcome.best is not None
    best = spec.out / "best.toml"
    assert load_policy(best).name == "vol_target-best"
    out = tmp_path / "compare"
    sim.run(
        spec.config_path,
        [POLICY, best],
        None,
        "BTC/USDT:USDT",
        spec.start,
        spec.end,
        out,
        Console(file=io.StringIO()),
    )
    reports = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/report.json")}
    assert set(reports) == {"vol_target", "vol_target-best"}
    for key in REPORT_METRICS:
        assert outcome.best[key] == reports["vol_target-best"][key], key


def test_booleans_read_as_the_trader_wrote_them() -> None:
    # `--param allow_increase=true,false`: the cells, the table and best.toml's header say
    # true/false, as the policy file does, not Python's True/False
    point: dict[str, space.Scalar] = {"allow_increase": False, "leverage.max": Decimal("2.5")}
    assert space.point_label(point) == "allow_increase=false leverage.max=2.5"
    assert space.text(True) == "true"
    # a results file written before reads back the same (resume)
    assert space.cell_text("True") == "true"
    assert space.cell_text("0.40") == "0.40"
