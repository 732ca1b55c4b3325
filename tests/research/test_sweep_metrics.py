"""results.csv carries every scalar figure of report.json, and --objective accepts each one."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

from rich.console import Console

from bot.cli import simulate as sim
from bot.config.loader import load_policy
from bot.research.evaluate import PointTask, evaluate
from bot.research.results import NUMERIC, check_objective
from tests.research.helpers import ROOT, sample_config

POLICY = ROOT / "policies" / "vol_target.toml"


def _scalars(report: dict[str, object]) -> dict[str, object]:
    """report.json's numeric figures (elapsed time is not a result of the simulation)."""
    return {
        k: v
        for k, v in report.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k != "elapsed_seconds"
    }


def test_a_point_row_has_every_number_of_report_json(tmp_path: Path) -> None:
    # The README: results.csv has "every metric of report.json" and --objective is "any metric
    # of report.json". slippage_paid, time_in_market, time_halted, n_stops_rejected and
    # loss_beyond_wallet were added to the report without reaching the sweep's columns.
    config = sample_config(tmp_path)
    start, end = date(2025, 6, 2), date(2025, 6, 12)
    task = PointTask(
        key="p",
        config_path=str(config),
        policy=load_policy(POLICY).model_dump(),
        contracts=("BTC/USDT:USDT",),
        start=start,
        end=end,
    )
    row = evaluate(task)
    assert row["status"] == "ok", row.get("error")
    out = tmp_path / "sim"
    sim.run(
        config,
        [POLICY],
        None,
        "BTC/USDT:USDT",
        start,
        end,
        out,
        Console(file=io.StringIO()),
    )
    report = _scalars(json.loads((out / "report.json").read_text()))
    assert float(str(report["slippage_paid"])) > 0  # a figure that matters, not zero
    for key, value in report.items():
        assert key in NUMERIC, f"{key} of report.json is not a sweep column"
        assert row[key] == value, key
        check_objective(f"-{key}")
