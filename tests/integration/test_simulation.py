"""End to end: ``bot simulate`` on the bundled data, determinism, several policies, bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.backtest.replay import run_simulation
from bot.cli.app import app
from bot.config.loader import load_config
from bot.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.example.toml"
REQUIRED = {
    "start",
    "end",
    "contracts",
    "bars",
    "final_equity",
    "total_return",
    "cagr",
    "max_drawdown",
    "sharpe",
    "sortino",
    "calmar",
    "n_orders",
    "n_trades",
    "n_stop_losses",
    "n_take_profits",
    "n_liquidations",
    "fees_paid",
    "funding_paid",
    "avg_leverage",
    "max_leverage",
    "elapsed_seconds",
}
runner = CliRunner()


def simulate(*args: str) -> None:
    result = runner.invoke(app, ["simulate", "--config", str(CONFIG), *args])
    assert result.exit_code == 0, result.output


def test_same_inputs_give_the_same_report(tmp_path: Path) -> None:
    args = ("--start", "2025-08-01", "--end", "2025-09-15")
    simulate(*args, "--out", str(tmp_path / "a"))
    simulate(*args, "--out", str(tmp_path / "b"))
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert set(a) >= REQUIRED
    a.pop("elapsed_seconds")
    b.pop("elapsed_seconds")
    assert a == b
    for name in ("equity.csv", "orders.csv", "decisions.csv", "events.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "report.png").stat().st_size > 10_000
    assert a["start"] == "2025-08-01T00:00:00Z"
    assert a["end"] == "2025-09-16T00:00:00Z"
    assert a["n_orders"] > 0
    assert a["n_trades"] > 0


def test_every_decision_has_a_reason_and_every_position_a_stop(tmp_path: Path) -> None:
    config = load_config(CONFIG)
    result = run_simulation(config, config.policies[0])
    assert all(r.decision.reason for r in result.store.decisions)
    ex = result.exchange
    for sym, pos in ex.book.positions.items():
        if pos.qty != 0:
            stops = [
                o for o in ex.resting[sym].values() if o.purpose and o.purpose.name == "STOP_LOSS"
            ]
            assert len(stops) == 1
            assert stops[0].amount == abs(pos.qty)
            assert stops[0].reduce_only


def test_several_policies_side_by_side(tmp_path: Path) -> None:
    simulate(
        "--policy",
        str(ROOT / "policies" / "vol_target.toml"),
        "--policy",
        str(ROOT / "policies" / "static_3x.toml"),
        "--contracts",
        "BTC/USDT:USDT,ETH/USDT:USDT",
        "--start",
        "2025-09-01",
        "--out",
        str(tmp_path),
    )
    for name in ("vol_target", "static_3x"):
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["contracts"] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert (tmp_path / "comparison.png").stat().st_size > 10_000


def test_bad_data_gives_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "sample", data)
    path = data / "BTC_USDT_USDT-1h.csv.gz"
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    lines[10] = lines[10].replace(lines[10].split(",")[2], "nan", 1)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    config = load_config(CONFIG)
    with pytest.raises(DataError, match=r"BTC_USDT_USDT-1h\.csv\.gz.*line 11"):
        run_simulation(config, config.policies[0], data_dir=data)
    result = runner.invoke(
        app,
        ["simulate", "--config", str(CONFIG), "--data", str(data), "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 2
    assert not (tmp_path / "out" / "report.json").exists()


def test_bad_config_stops_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.read_text().replace("max_drawdown = 0.25", "max_drawdown = 2"))
    result = runner.invoke(app, ["simulate", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "risk.max_drawdown: must be < 1 (got 2)" in result.output
    assert not (tmp_path / "o").exists()


def test_signal_file_drives_the_direction(tmp_path: Path) -> None:
    signals = tmp_path / "signals.csv"
    signals.write_text(
        "timestamp,contract,direction\n"
        "2025-09-01T00:00:00Z,BTC/USDT:USDT,1\n"
        "2025-09-05T00:00:00Z,BTC/USDT:USDT,-1\n"
        "2025-09-10T00:00:00Z,BTC/USDT:USDT,0\n"
    )
    text = CONFIG.read_text()
    text = text.replace('dir = "data/sample"', f'dir = "{ROOT / "data" / "sample"}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / "vol_target.toml"}"'
    )
    head, _, _ = text.partition("\n[[contracts]]\n")
    _, _, tail = text.partition("\n[data]\n")
    contracts = (
        '[[contracts]]\nsymbol = "BTC/USDT:USDT"\ndirection = "signal"\n'
        f'signal_file = "{signals}"\n\n'
    )
    cfg = tmp_path / "config.toml"
    cfg.write_text(head + "\n" + contracts + "[data]\n" + tail)
    config = load_config(cfg)
    config = config.model_copy(
        update={
            "simulation": config.simulation.model_copy(
                update={
                    "start": __import__("datetime").date(2025, 9, 1),
                    "end": __import__("datetime").date(2025, 9, 14),
                }
            )
        }
    )
    result = run_simulation(config, config.policies[0])
    by_day: dict[int, list[int]] = {}
    for r in result.store.decisions:
        by_day.setdefault(r.decision.direction, []).append(r.ts_ms)
    assert set(by_day) == {1, -1, 0}
    assert max(by_day[1]) < min(by_day[-1]) < min(by_day[0])
    assert result.exchange.book.positions["BTC/USDT:USDT"].qty == 0  # flat after the 0 signal


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too): a file's bytes, None for a directory."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("afile", "--out {tmp}/afile: is a file, not a directory"),
        ("afile/sub", "--out {tmp}/afile/sub: cannot write there: Not a directory"),
        ("a" * 300, "cannot write there: File name too long"),
    ],
)
def test_an_unusable_out_is_refused_before_the_simulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, said: str
) -> None:
    """It was found after the whole simulation, as a traceback (FileExistsError,
    NotADirectoryError, OSError) from writing the report."""
    from bot.cli import simulate as sim

    def never(*args: object, **kwargs: object) -> object:
        raise AssertionError("simulated before --out was checked")

    monkeypatch.setattr(sim, "run_with_and_without_hedge", never)
    (tmp_path / "afile").write_text("mine")
    result = runner.invoke(
        app, ["simulate", "--config", str(CONFIG), "--out", str(tmp_path / given)]
    )
    assert result.exit_code == 2, result.output
    assert said.format(tmp=tmp_path) in " ".join(result.output.split())
    assert _tree(tmp_path) == {"afile": b"mine"}


def test_a_policy_that_fails_leaves_no_half_written_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--policy A --policy B whose B fails mid-run left A's files without comparison.png (and
    over what A's directory held before); now nothing of the run is left, and what the output
    directory held survives. A successful run afterwards writes beside it."""
    from bot.research import compare, executors

    out = tmp_path / "out"
    (out / "vol_target").mkdir(parents=True)
    (out / "vol_target" / "report.json").write_text("an earlier run's")
    (out / "notes.txt").write_text("the user's")
    before = _tree(tmp_path)
    real = run_simulation  # what compare runs each policy with
    calls: list[str] = []

    def second_fails(config: object, policy: object, **kwargs: object) -> object:
        calls.append(getattr(policy, "name", ""))
        if calls[-1] == "static_3x":
            raise DataError("the second policy failed mid-run")
        return real(config, policy, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(executors, "default_workers", lambda: 1)  # in this process
    monkeypatch.setattr(compare, "run_simulation", second_fails)
    args = [
        "--policy",
        str(ROOT / "policies" / "vol_target.toml"),
        "--policy",
        str(ROOT / "policies" / "static_3x.toml"),
        "--contracts",
        "BTC/USDT:USDT",
        "--start",
        "2025-09-01",
        "--end",
        "2025-09-04",
    ]
    result = runner.invoke(app, ["simulate", "--config", str(CONFIG), *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "the second policy failed mid-run" in result.output
    assert calls == ["vol_target", "static_3x"]  # the first one ran and wrote its files
    calls.clear()
    assert _tree(tmp_path) == before
    # into a directory that was not there: none is left
    fresh = tmp_path / "new" / "out"
    result = runner.invoke(app, ["simulate", "--config", str(CONFIG), *args, "--out", str(fresh)])
    assert result.exit_code == 2, result.output
    assert _tree(tmp_path) == before
    monkeypatch.setattr(compare, "run_simulation", real)
    simulate(*args, "--out", str(out))
    after = _tree(out)
    assert after["notes.txt"] == b"the user's"
    assert after["vol_target/report.json"] != b"an earlier run's"
    assert {"comparison.png", "static_3x/report.json", "static_3x/equity.csv"} < set(after)
    assert not [name for name in after if name.startswith(".")]  # no staging directory left
