"""The run's last interval, from its last decision tick to its end: the report, equity.csv,
positions.csv and account.json say the account as of the end, so what the market did in that
interval (a stop, a liquidation, the guard) is in them. Found by the review of the simulation on
the bundled sample (a 30 % fall in the last hour of a run was not in its report); each test
failed before its fix."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from bot.backtest.metrics import DAY_MS, summarize
from bot.cli.app import app
from tests.audit.harness import ROOT, write_config
from tests.audit.market import HOUR, MINUTE, T0, walk, write_market
from tests.audit.scenarios import ETH, N

END = T0 + 11 * DAY_MS  # `end = 2025-01-11`: the run is [start, 2025-01-12 00:00)


def _simulate(tmp_path: Path, policy_text: str | None = None) -> tuple[dict[str, Any], Path]:
    # ETH falls 25 % at 23:30 of the run's last day (a gap: the stop fills at the open); its
    # data goes on for a day after the run's end.
    eth = walk(N, 3_000.0, seed=31)
    eth.scale_from(int((END - 30 * MINUTE - T0) // (5 * MINUTE)), 0.75)
    data = tmp_path / "data"
    write_market(data, ETH, eth, eth.copy(), None)
    config = write_config(
        tmp_path, data, [ETH], policy="static_3x", policy_text=policy_text, end="2025-01-11"
    )
    out = tmp_path / "out"
    ran = CliRunner().invoke(app, ["simulate", "--config", str(config), "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    return json.loads((out / "report.json").read_text()), out


def test_a_crash_in_the_last_hour_is_in_the_report(tmp_path: Path) -> None:
    report, out = _simulate(tmp_path)
    assert report["end"] == "2025-01-12T00:00:00Z"
    # The stop resting under the mark fired in the last hour: no position is left at the end.
    assert report["n_stop_losses"] == 1
    with (out / "positions.csv").open() as fh:
        assert list(csv.DictReader(fh)) == []
    rows = (out / "equity.csv").read_text().splitlines()
    last_tick, at_end = rows[-2].split(","), rows[-1].split(",")
    assert (last_tick[1], at_end[1]) == ("2025-01-11T23:00:00Z", "2025-01-12T00:00:00Z")
    # the equity at the end is the report's, below the last tick's by the stop's loss
    assert float(at_end[2]) == report["final_equity"]
    assert report["final_equity"] < 0.9 * float(last_tick[2])
    assert report["max_drawdown"] > 0.1
    account = json.loads((out / "account.json").read_text())
    assert account["as_of"] == "2025-01-12T00:00:00Z"
    # one decision per tick, none at the end
    assert report["decision_ticks"] == len(rows) - 2


def test_a_daily_policy_runs_its_last_day(tmp_path: Path) -> None:
    # A 1d policy's last tick is the last day's 00:00: the whole day was left out.
    text = (ROOT / "policies" / "static_3x.toml").read_text()
    daily = text.replace('timeframe = "1h"', 'timeframe = "1d"').replace(
        "window = 168", "window = 5"
    )
    report, out = _simulate(tmp_path, daily.replace("atr_window = 14", "atr_window = 3"))
    assert report["n_stop_losses"] == 1
    assert (out / "equity.csv").read_text().splitlines()[-1].split(",")[1] == (
        "2025-01-12T00:00:00Z"
    )


def test_the_closing_sample_closes_the_day_of_its_last_interval() -> None:
    # Hourly ticks: the account at 00:00 is the close of the day before (the run's end the last
    # day's), not a day of one hour of its own (one more daily return in the Sharpe ratio).
    ticks = np.arange(T0, T0 + 3 * DAY_MS, HOUR, dtype=np.int64)
    ts = np.r_[np.int64(T0), ticks, np.int64(T0 + 3 * DAY_MS)]
    eq = np.r_[100.0, 100.0 + np.arange(ticks.size) * 0.1, 110.0]
    with_end = summarize(eq, ts, opening=True, closing=True)
    # by hand: each day's close is the account at the next 00:00, the first day's return from
    # the starting balance
    closes = np.r_[100.0, eq[1 + 24], eq[1 + 48], 110.0]
    rets = closes[1:] / closes[:-1] - 1
    assert with_end["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * np.sqrt(365))
    # Daily ticks over the same 3 days: 3 daily returns too (the first tick, at the run's first
    # instant, is the first day's: its entry costs are no day of their own), each day's close
    # the account at the next 00:00.
    days = np.arange(T0, T0 + 3 * DAY_MS, DAY_MS, dtype=np.int64)
    ts_d = np.r_[np.int64(T0), days, np.int64(T0 + 3 * DAY_MS)]
    eq_d = np.array([1000.0, 999.0, 1010.0, 1020.0, 1030.0])
    daily = summarize(eq_d, ts_d, opening=True, closing=True)
    rets_d = np.array([1010.0, 1020.0, 1030.0]) / np.array([1000.0, 1010.0, 1020.0]) - 1
    assert daily["sharpe"] == pytest.approx(rets_d.mean() / rets_d.std(ddof=1) * np.sqrt(365))
