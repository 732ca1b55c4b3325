"""The report says what happened: a moved start, one shared window, total return from the
starting balance, time in market, halts, slippage and denials."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.example.toml"
runner = CliRunner()


def test_moved_start_shared_window_and_the_new_figures(tmp_path: Path) -> None:
    # Hourly data only (triggers on 1h candles), and a second policy with a 30-day warm-up.
    data = tmp_path / "data"
    data.mkdir()
    for f in (ROOT / "data" / "sample").glob("*"):
        if f.name.endswith(("-1h.csv.gz", "-funding.csv.gz")):
            shutil.copy(f, data / f.name)
    slow = tmp_path / "slow_vol.toml"
    text = (ROOT / "policies" / "vol_target.toml").read_text()
    slow.write_text(
        text.replace('name = "vol_target"', 'name = "slow_vol"').replace(
            "window = 168", "window = 720"
        )
    )
    result = runner.invoke(
        app,
        [
            "simulate",
            "--config",
            str(CONFIG),
            "--policy",
            str(ROOT / "policies" / "vol_target.toml"),
            "--policy",
            str(slow),
            "--data",
            str(data),
            "--start",
            "2024-10-02",
            "--end",
            "2024-11-20",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning" in result.output
    assert "moved to" in result.output
    reports = [
        json.loads((tmp_path / p / "report.json").read_text()) for p in ("vol_target", "slow_vol")
    ]
    # One window for both: the latest warm-up decides.
    assert reports[0]["start"] == reports[1]["start"]
    assert reports[0]["start"] >= "2024-10-31"  # 720 hourly candles after 2024-10-01
    assert "shared window" in reports[0]["start_note"]
    for r in reports:
        assert r["requested_start"] == "2024-10-02T00:00:00Z"
        assert r["start"] > r["requested_start"]
        assert "moved to" in r["start_note"]
        assert r["total_return"] == round(r["final_equity"] / float(r["starting_balance"]) - 1, 6)
        assert 0 < r["time_in_market"] <= 1
        assert r["slippage_paid"] > 0
        assert r["halted_at"] == "-" or r["halted_at"] >= r["start"]
        assert sum(r["denials_by_reason"].values()) == r["n_denials"]
    for label in ("slippage paid", "time in market", "halted at", "denials"):
        assert label in result.output


def test_drawdown_and_growth_start_from_the_starting_balance(tmp_path: Path) -> None:
    """The first tick's equity is already net of its entry's fees and slippage: the drawdown,
    CAGR and Calmar count that loss, as the total return does (they used to start at the
    first tick, after it)."""
    out = tmp_path / "out"
    args = ["simulate", "--config", str(CONFIG), "--start", "2024-10-02", "--end", "2024-10-20"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    rows = (out / "equity.csv").read_text().splitlines()
    header = rows[0].split(",")
    first = dict(zip(header, rows[1].split(","), strict=True))
    balance = float(report["starting_balance"])
    entry_loss = 1 - float(first["equity"]) / balance
    assert entry_loss > 0  # the example enters at its first tick and pays for it
    assert float(first["drawdown"]) == round(entry_loss, 6)
    assert report["max_drawdown"] >= round(entry_loss, 6)
    # CAGR compounds the same growth as total_return, over the run from its start.
    start = datetime.fromisoformat(report["start"])
    last = datetime.fromisoformat(rows[-1].split(",")[1])
    years = (last - start).total_seconds() / (365 * 86_400)
    growth = (1 + report["cagr"]) ** years
    final = float(rows[-1].split(",")[header.index("equity")])
    assert growth == pytest.approx(final / balance, rel=1e-4)
    assert report["calmar"] == pytest.approx(report["cagr"] / report["max_drawdown"], rel=1e-4)
