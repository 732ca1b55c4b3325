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


def _first_day_loss(folder: Path) -> None:
    """BTC hourly candles from 2025-01-01: eight quiet days, a 1.2 % fall over the first hours
    of 2025-01-09, then a steady rise of 0.3 % a day."""
    import gzip
    import math

    folder.mkdir()
    t0, hour = 1_735_689_600_000, 3_600_000
    rows, price = [], 95_000.0
    for i in range(12 * 24):
        day, h = divmod(i, 24)
        step = 0.0004 * math.sin(i)  # quiet: the volatility estimate needs some movement
        if day == 8 and h < 6:
            step = math.log(1 - 0.012) / 6
        elif day > 8:
            step += math.log(1.003) / 24
        o, price = price, price * math.exp(step)
        rows.append(f"{t0 + i * hour},{o!r},{max(o, price)!r},{min(o, price)!r},{price!r},5.0")
    with gzip.open(folder / "BTC_USDT_USDT-1h.csv.gz", "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")


def test_the_first_days_loss_is_in_the_sharpe_ratio(tmp_path: Path) -> None:
    # The daily returns ran from the first day's close: what the run lost on its first day was
    # in no return. A four-day window (a walk-forward TRAIN) that lost 3.6 % on its first day
    # and made 0.9 % on each of the next three read as a large positive Sharpe ratio, and the
    # sweep chose points on it.
    _first_day_loss(tmp_path / "data")
    config = sample_config(tmp_path, data_dir=tmp_path / "data")
    row = evaluate(
        PointTask(
            key="p",
            config_path=str(config),
            policy=load_policy(ROOT / "policies" / "static_3x.toml").model_dump(),
            contracts=("BTC/USDT:USDT",),
            start=date(2025, 1, 9),
            end=date(2025, 1, 12),
        )
    )
    assert row["status"] == "ok", row.get("error")
    assert row["start"] == "2025-01-09T00:00:00Z"
    assert row["total_return"] < 0
    assert row["n_days"] == 4  # four days, four returns: the first from the starting balance
    assert row["daily_sharpe"] < 0
    assert row["sharpe"] < 0
    assert row["sortino"] < 0
