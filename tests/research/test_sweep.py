"""bot sweep: a point equals bot simulate; invalid points are reported; resume skips work."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from bot.cli import simulate as sim
from bot.cli.research import run_sweep
from bot.errors import ConfigError
from bot.research.evaluate import REPORT_METRICS
from bot.research.executors import InlineExecutor, LocalExecutor
from bot.research.results import ResultsFile, columns
from bot.research.space import parse_param, to_toml
from bot.research.sweep import Sweep, SweepSpec
from tests.research.helpers import ROOT, CountingExecutor, sample_config

POLICY = ROOT / "policies" / "vol_target.toml"


def _spec(tmp: Path, out: str = "sweep", **kw: object) -> SweepSpec:
    base: dict[str, object] = {
        "config_path": sample_config(tmp),
        "base_policy": POLICY,
        "params": [
            parse_param("leverage.target_volatility=0.3,0.6"),
            parse_param("leverage.max=2,0.25"),  # 0.25 < leverage.min (0.5): invalid
        ],
        "out": tmp / out,
        "objective": "total_return",
        "contracts": ("BTC/USDT:USDT", "ETH/USDT:USDT"),
    }
    base.update(kw)
    return SweepSpec(**base)  # type: ignore[arg-type]


def test_each_point_equals_bot_simulate_and_invalid_points_are_reported(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    outcome = run_sweep(spec, 1, None, Console(width=200, record=True))
    ok = [r for r in outcome.rows if r["status"] == "ok"]
    assert len(ok) == 2
    assert len(outcome.invalid) == 2
    assert all("leverage.max: must be >= leverage.min" in e for _, e in outcome.invalid)
    best = (spec.out / "best.toml").read_text()
    assert "target_volatility" in best
    for row in ok:
        policy_file = tmp_path / f"{row['point']}.toml"
        raw = Sweep(spec, InlineExecutor()).policy_of(
            {
                "leverage.target_volatility": row["param.leverage.target_volatility"],
                "leverage.max": row["param.leverage.max"],
            }
        )[0]
        policy_file.write_text(to_toml(raw))
        out = tmp_path / f"sim-{row['point']}"
        sim.run(
            spec.config_path,
            [policy_file],
            None,
            "BTC/USDT:USDT,ETH/USDT:USDT",
            None,
            None,
            out,
            Console(file=io.StringIO()),
        )
        report = json.loads((out / "report.json").read_text())
        for key in REPORT_METRICS:
            assert row[key] == report[key], key
    summary = json.loads((spec.out / "summary.json").read_text())
    assert summary["best"]["key"] == max(ok, key=lambda r: r["total_return"])["key"]
    assert (spec.out / "sweep.png").stat().st_size > 1000


def test_local_processes_give_the_same_rows_as_one_process(tmp_path: Path) -> None:
    a = Sweep(_spec(tmp_path, "a"), InlineExecutor()).run()
    executor = LocalExecutor(2)
    try:
        b = Sweep(_spec(tmp_path, "b"), executor).run()
    finally:
        executor.close()
    assert {r["key"]: r for r in a.rows} == {r["key"]: r for r in b.rows}


def test_a_restart_skips_finished_points(tmp_path: Path) -> None:
    spec = _spec(tmp_path, params=[parse_param("leverage.target_volatility=0.3,0.45,0.6")])
    first = Sweep(spec, InlineExecutor()).run()
    assert len(first.rows) == 3
    # A kill after the first point: one whole row plus half of the next line.
    lines = (spec.out / "results.csv").read_text().splitlines(keepends=True)
    (spec.out / "results.csv").write_text("".join(lines[:2]) + lines[2][:25])
    counting = CountingExecutor()
    second = Sweep(spec, counting).run()
    assert len(counting.seen) == 2
    assert lines[1].split(",")[0] not in {t.key for t in counting.seen}
    assert {r["key"]: r for r in second.rows} == {r["key"]: r for r in first.rows}
    # and a third run does nothing at all
    again = CountingExecutor()
    Sweep(spec, again).run()
    assert again.seen == []
    with ResultsFile(spec.out / "results.csv", columns(["leverage.target_volatility"])) as f:
        assert len(list(f)) == 3


def test_a_different_sweep_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path, params=[parse_param("leverage.target_volatility=0.3")])
    Sweep(spec, InlineExecutor()).run()
    other = _spec(tmp_path, params=[parse_param("leverage.target_volatility=0.4")])
    with pytest.raises(ConfigError, match="holds a different sweep"):
        Sweep(other, InlineExecutor()).run()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("leverage.maxx=1,2", "leverage.maxx is not a policy key"),
        ("leverage=1,2", "is a table"),
        ("nonsense", "expected KEY=V1,V2"),
    ],
)
def test_bad_params_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Sweep(_spec(tmp_path, params=[parse_param(text)]), InlineExecutor())


def test_bad_objective_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a metric; choose one of"):
        Sweep(_spec(tmp_path, objective="profit"), InlineExecutor())


def test_tpe_search_runs_the_asked_number_of_trials(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    spec = _spec(
        tmp_path,
        search="tpe",
        trials=3,
        params=[parse_param("leverage.target_volatility=0.2..0.6")],
    )
    outcome = Sweep(spec, InlineExecutor()).run()
    assert len([r for r in outcome.rows if r["status"] == "ok"]) == 3
    assert outcome.best_point is not None


def test_several_policies_share_one_window_and_match_a_single_run(tmp_path: Path) -> None:
    cfg = sample_config(tmp_path)
    policies = [ROOT / "policies" / "risk_parity.toml", ROOT / "policies" / "static_3x.toml"]
    console = Console(file=io.StringIO())
    reports = sim.run(
        cfg, policies, None, "BTC/USDT:USDT,ETH/USDT:USDT", None, None, tmp_path / "both", console
    )
    assert [r["policy"] for r in reports] == ["risk_parity", "static_3x"]
    assert len({(r["start"], r["end"]) for r in reports}) == 1
    assert (tmp_path / "both" / "comparison.png").stat().st_size > 10_000
    # on that window each policy's files are what a run of it alone gives
    alone = sim.run(
        cfg,
        [policies[1]],
        None,
        "BTC/USDT:USDT,ETH/USDT:USDT",
        None,
        None,
        tmp_path / "alone",
        console,
    )[0]
    # (the configured start, 2025-06-02, is past both warm-ups: the windows coincide)
    assert alone["start"] == reports[1]["start"]
    for key in REPORT_METRICS:
        assert alone[key] == reports[1][key], key
    for name in ("equity.csv", "orders.csv", "decisions.csv"):
        assert (tmp_path / "alone" / name).read_bytes() == (
            tmp_path / "both" / "static_3x" / name
        ).read_bytes()


@pytest.mark.slow
def test_resume_after_a_real_kill(tmp_path: Path) -> None:
    """``bot sweep`` killed (SIGKILL) after its first point: the rerun does only the rest."""
    spec = _spec(tmp_path, params=[parse_param("leverage.target_volatility=0.3,0.45,0.6")])
    cmd = [
        sys.executable, "-m", "bot.cli.app", "sweep", "--config", str(spec.config_path),
        "--policy", str(POLICY), "--param", "leverage.target_volatility=0.3,0.45,0.6",
        "--objective", "total_return", "--contracts", "BTC/USDT:USDT,ETH/USDT:USDT",
        "--workers", "1", "--out", str(spec.out),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = spec.out / "results.csv"
    try:
        deadline = time.monotonic() + 300  # noqa: TID251 - test harness
        while not (results.exists() and results.read_text().count("\n") >= 2):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline  # noqa: TID251
            time.sleep(0.05)  # noqa: TID251
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    finished = results.read_text().count("\n") - 1
    assert 1 <= finished < 3
    counting = CountingExecutor()
    outcome = Sweep(spec, counting).run()
    assert len(counting.seen) == 3 - finished
    assert len([r for r in outcome.rows if r["status"] == "ok"]) == 3
