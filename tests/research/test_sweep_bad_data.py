"""A sweep over a data file that cannot be used stops, and leaves nothing that refuses the
corrected command.

A bad value on one line of a data file made every point an ``error`` row with the file's
message; the sweep printed "no point chosen", exited 0 and left sweep.json pinning the broken
file, so after the trader fixed the file the same command was refused as "a different sweep".
The file's error is not a property of a point: the sweep now stops on it, and `bot sweep` exits
1 when no point ran to a result.
"""

from __future__ import annotations

import gzip
import shutil
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.app import app
from bot.errors import DataError
from bot.marketdata.files import DataFileError
from bot.research.executors import InlineExecutor
from bot.research.space import parse_param
from bot.research.sweep import Sweep, SweepSpec
from tests.research.helpers import ROOT, CountingExecutor, sample_config

POLICY = ROOT / "policies" / "vol_target.toml"
FILE = "BTC_USDT_USDT-5m.csv.gz"


def _spec(tmp: Path, data: Path, **kw: object) -> SweepSpec:
    base: dict[str, object] = {
        "config_path": sample_config(tmp, data_dir=data),
        "base_policy": POLICY,
        "params": [parse_param("leverage.target_volatility=0.3,0.6")],
        "out": tmp / "sweep",
        "data_dir": data,
        "contracts": ("BTC/USDT:USDT",),
        "start": date(2025, 7, 1),
        "end": date(2025, 7, 20),
    }
    base.update(kw)
    return SweepSpec(**base)  # type: ignore[arg-type]


def _data(tmp: Path) -> Path:
    data = tmp / "data"
    shutil.copytree(ROOT / "data" / "sample", data)
    return data


def _break(path: Path, line: int) -> bytes:
    """Write ``abc`` as the close of ``line`` (1 = the header); the good content."""
    good = path.read_bytes()
    rows = gzip.decompress(good).decode().splitlines()
    cells = rows[line - 1].split(",")
    cells[4] = "abc"
    rows[line - 1] = ",".join(cells)
    path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    return good


def test_a_bad_line_stops_the_sweep_and_the_fixed_file_runs_in_the_same_out(
    tmp_path: Path,
) -> None:
    data = _data(tmp_path)
    good = _break(data / FILE, 20001)
    spec = _spec(tmp_path, data)
    counting = CountingExecutor()
    with pytest.raises(DataError) as caught:
        Sweep(spec, counting).run()
    said = str(caught.value)
    assert said.startswith("sweep stopped: a data file cannot be used: ")
    assert f"{FILE}: line 20001: column 'close': cannot parse 'abc'" in said
    assert len(counting.seen) == 1  # stopped at its first point, not run for every point
    # nothing left to refuse the corrected command: no sweep.json, no results
    assert not spec.out.exists()
    (data / FILE).write_bytes(good)  # the trader fixes the file
    outcome = Sweep(spec, InlineExecutor()).run()
    assert [r["status"] for r in outcome.rows] == ["ok", "ok"]
    assert outcome.best_point is not None


def test_a_bad_file_met_after_a_finished_point_stops_the_sweep_and_keeps_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished row is never removed: the sweep stops, its rows stay for the files pinned,
    and the stopped point runs again on resume (a ``failed`` row)."""
    from bot.research import evaluate as ev

    real = ev.run_simulation  # type: ignore[attr-defined]
    calls = []

    def second_reads_a_bad_file(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise DataFileError("signals.csv: line 7: direction '2' must be -1, 0 or 1")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ev, "run_simulation", second_reads_a_bad_file)
    spec = _spec(tmp_path, _data(tmp_path))
    with pytest.raises(DataError, match="sweep stopped: a data file cannot be used: signals"):
        Sweep(spec, InlineExecutor()).run()
    rows = (spec.out / "results.csv").read_text().splitlines()
    assert [r.split(",")[0].startswith("all:0:") for r in rows[1:]] == [True, True]
    assert (spec.out / "sweep.json").exists()
    monkeypatch.setattr(ev, "run_simulation", real)
    again = CountingExecutor()
    outcome = Sweep(spec, again).run()
    assert len(again.seen) == 1  # the finished point is not run again, the stopped one is
    assert [r["status"] for r in outcome.rows] == ["ok", "ok"]


runner = CliRunner()


def _sweep_cli(tmp: Path, data: Path, *args: str) -> int:
    config = sample_config(tmp, data_dir=data)
    result = runner.invoke(
        app,
        [
            "sweep",
            "--config",
            str(config),
            "--policy",
            str(POLICY),
            "--contracts",
            "BTC/USDT:USDT",
            "--workers",
            "1",
            "--out",
            str(tmp / "sw"),
            *args,
        ],
    )
    return result.exit_code


def test_bot_sweep_exits_2_on_a_bad_file_and_0_once_it_is_fixed(tmp_path: Path) -> None:
    data = _data(tmp_path)
    good = _break(data / FILE, 20001)
    window = ("--start", "2025-07-01", "--end", "2025-07-20")
    points = ("--param", "leverage.target_volatility=0.3,0.6")
    assert _sweep_cli(tmp_path, data, *window, *points) == 2
    (data / FILE).write_bytes(good)
    assert _sweep_cli(tmp_path, data, *window, *points) == 0


@pytest.mark.parametrize(
    "args",
    [
        # every point in error: a window the data does not reach
        ("--start", "2026-01-01", "--end", "2026-01-10"),
        # every point invalid: a leverage cap below the policy's floor
        ("--start", "2025-07-01", "--end", "2025-07-20", "--param", "leverage.max=0.1,0.2"),
    ],
    ids=["errors", "invalid"],
)
def test_bot_sweep_exits_1_when_no_point_ran_to_a_result(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Outputs written (summary.json says why), no best.toml, status 1."""
    data = _data(tmp_path)
    points = ("--param", "leverage.target_volatility=0.3,0.6")
    assert _sweep_cli(tmp_path, data, *points, *args) == 1
    assert (tmp_path / "sw" / "summary.json").exists()
    assert not (tmp_path / "sw" / "best.toml").exists()


def test_a_sweep_whose_every_point_is_invalid_lets_the_corrected_command_run(
    tmp_path: Path,
) -> None:
    """Nothing finished, so nothing may refuse the corrected command in the same --out: its
    sweep.json did ("holds a different sweep (sweep.json differs: params)"). Its summary
    stays, saying why."""
    data = _data(tmp_path)
    window = ("--start", "2025-07-01", "--end", "2025-07-20")
    assert _sweep_cli(tmp_path, data, *window, "--param", "leverage.max=0.1,0.2") == 1
    assert (tmp_path / "sw" / "summary.json").exists()
    assert not (tmp_path / "sw" / "sweep.json").exists()
    assert _sweep_cli(tmp_path, data, *window, "--param", "leverage.max=2,3") == 0
    assert (tmp_path / "sw" / "best.toml").exists()
