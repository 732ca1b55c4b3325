"""Every point of a sweep (and every policy of ``bot simulate --policy A --policy B``) runs on
the files and the code the run started with: a data file added meanwhile, or held by one worker
only, and a worker on other code stop the run instead of mixing rows of two data sets or two
programs in one results file."""

from __future__ import annotations

import gzip
import pickle
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.backtest.replay import override
from bot.config.loader import load_config
from bot.errors import ConfigError, DataError
from bot.research import compare, evaluate, histories
from bot.research.evaluate import PointTask
from bot.research.executors import InlineExecutor
from bot.research.space import parse_param
from bot.research.sweep import Sweep, SweepSpec
from tests.research.helpers import ROOT, sample_config

T = TypeVar("T")
R = TypeVar("R")

POLICY = ROOT / "policies" / "vol_target.toml"


def _data(tmp: Path) -> Path:
    data = tmp / "data"
    shutil.copytree(ROOT / "data" / "sample", data)
    return data


def _one_minute_file(data: Path) -> Path:
    """BTC 1m candles over the whole 5m file (each 5m candle cut into five steps): a finer file,
    which the selection prefers wherever it covers the window, as a download job leaves it."""
    lines = gzip.decompress((data / "BTC_USDT_USDT-5m.csv.gz").read_bytes()).decode().split()
    out = [lines[0]]
    for line in lines[1:]:
        ts, o, _, _, c, v = line.split(",")
        before = float(o)
        for i in range(5):
            after = float(o) + (float(c) - float(o)) * (i + 1) / 5
            hi, lo = max(before, after), min(before, after)
            out.append(f"{int(ts) + i * 60_000},{before},{hi},{lo},{after},{float(v) / 5:.6f}")
            before = after
    path = data / "BTC_USDT_USDT-1m.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(out) + "\n").encode(), compresslevel=1))
    return path


def _spec(tmp: Path, data: Path) -> SweepSpec:
    return SweepSpec(
        config_path=sample_config(tmp, data_dir=data),
        base_policy=POLICY,
        params=[parse_param("leverage.target_volatility=0.3,0.6")],
        out=tmp / "sweep",
        contracts=("BTC/USDT:USDT",),
        start=date(2025, 7, 1),
        end=date(2025, 7, 20),
    )


def test_a_finer_data_file_added_while_the_sweep_runs_stops_it(tmp_path: Path) -> None:
    """A download job leaves a BTC 1m file in the data directory after the first point: the
    points after it chose the finer file (their rows on other data than the first one's, the
    sweep finishing without a word). Now the next point that lists the directory stops it."""
    data = _data(tmp_path)
    spec = _spec(tmp_path, data)
    sweep = Sweep(spec, InlineExecutor())

    def new_file(row: dict[str, Any], n: int) -> None:
        if row["status"] == "ok" and not (data / "BTC_USDT_USDT-1m.csv.gz").exists():
            _one_minute_file(data)
            # the next point lands on a worker that holds nothing yet (a new process, or a
            # walk-forward's next window)
            histories._KEPT.clear()
            evaluate._CONFIGS.clear()

    sweep.listener = new_file
    said = (
        r"sweep stopped: an input changed during the sweep: \S*BTC_USDT_USDT-1m.csv.gz is not "
        "among the files the sweep started with"
    )
    with pytest.raises(DataError, match=said):
        sweep.run()
    rows = (spec.out / "results.csv").read_text().splitlines()
    assert len(rows) == 3  # the header, the point on the pinned files, the stopped one
    assert ",ok," in rows[1]
    assert ",failed," in rows[2]
    # a resume is refused: the data directory is no longer the one the sweep pinned
    with pytest.raises(ConfigError, match=r"changed input files: data BTC/USDT:USDT 1m"):
        Sweep(spec, InlineExecutor()).run()


def test_a_data_file_outside_the_pinned_ones_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    """A worker whose data directory holds one file more than the sweep's (another host): the
    point is refused naming the file, before the selection could choose it."""
    data = _data(tmp_path)
    spec = _spec(tmp_path, data)
    sweep = Sweep(spec, InlineExecutor())
    files = sweep.inputs()
    sweep.pinned = tuple(files.values())
    sweep.pinned_names = tuple(files)
    task = sweep.task({"leverage.target_volatility": Decimal("0.3")}, "all", None)
    (data / "BTC_USDT_USDT-4h.csv.gz").write_bytes(b"not even candles")
    histories._KEPT.clear()
    row = evaluate.evaluate(task)
    assert row["status"] == "failed"
    assert row["error"].startswith(evaluate.INPUTS_CHANGED)
    assert f"{data / 'BTC_USDT_USDT-4h.csv.gz'} is not among the files" in row["error"]
    # another contract's file is none of this point's business
    (data / "BTC_USDT_USDT-4h.csv.gz").unlink()
    shutil.copy(data / "ETH_USDT_USDT-5m.csv.gz", data / "ETH_USDT_USDT-15m.csv.gz")
    histories._KEPT.clear()
    assert evaluate.evaluate(task)["status"] == "ok"


class _NewFileBeforeRunning(InlineExecutor):
    """Runs in this process; a file appears in the data directory before the first task runs
    (as in a worker's own data directory, or a download job finishing meanwhile)."""

    def __init__(self, add: Callable[[], object]) -> None:
        self.add = add

    def run(
        self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
    ) -> Iterator[R]:
        self.add()
        histories._KEPT.clear()  # a worker process holds nothing yet
        yield from super().run(fn, tasks, failed)


def test_policies_compared_all_run_on_the_files_the_comparison_started_with(
    tmp_path: Path,
) -> None:
    """``bot simulate --policy A --policy B`` loads each policy's data in its worker: a finer
    file added after the common window was measured fed the policies other data than it."""
    data = _data(tmp_path)
    config_path = sample_config(tmp_path, data_dir=data)
    paths = [POLICY, ROOT / "policies" / "static_3x.toml"]
    config = override(
        load_config(config_path, policy_overrides=paths), date(2025, 9, 1), date(2025, 9, 4)
    )
    executor = _NewFileBeforeRunning(lambda: _one_minute_file(data))
    with pytest.raises(DataError, match=r"BTC_USDT_USDT-1m.csv.gz: not in the data directory"):
        compare.run_policies(
            config_path, config, paths, ("BTC/USDT:USDT",), data, tmp_path / "out", executor
        )


def test_a_point_task_travels_by_field_name() -> None:
    """A frozen slots dataclass pickles its values by position: a worker whose PointTask has
    other fields paired them with its own in order and silently dropped the rest (an older
    worker lost a walk-forward's policy switches and ran its out-of-sample run without them)."""
    task = PointTask(
        key="oos:x",
        config_path="/c.toml",
        policy={"name": "p0"},
        switches=((1752537600000, {"name": "p1"}),),
    )
    assert pickle.loads(pickle.dumps(task)) == task  # noqa: S301 - our own bytes
    restore, (state,) = task.__reduce__()
    assert state["switches"] == task.switches  # by name, not by position
    del state["switches"]
    state["legacy"] = 1
    with pytest.raises(TypeError, match=r"missing switches; unknown legacy"):
        restore(state)


def test_a_point_made_by_other_code_stops_the_sweep(tmp_path: Path) -> None:
    """A worker whose code is not the sweep's (another checkout) refuses the point, and the
    sweep stops on it instead of ranking an error row among the others."""
    from bot.research.fingerprint import code_fingerprint

    task = PointTask(key="all:0:x", config_path="/c.toml", policy={}, code="0123456789abcdef")
    row = evaluate.evaluate(task)
    assert row["status"] == "failed"
    assert row["error"] == (
        f"worker runs other code than the sweep (fingerprint {code_fingerprint()} vs "
        "0123456789abcdef in the sweep): install the same project version on every worker"
    )

    class OtherCode(InlineExecutor):
        def run(
            self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
        ) -> Iterator[R]:
            for t in tasks:
                yield fn(replace(t, code="0123456789abcdef"))  # type: ignore[type-var]

    spec = _spec(tmp_path, ROOT / "data" / "sample")
    with pytest.raises(ConfigError, match=r"sweep stopped: worker runs other code than the sweep"):
        Sweep(spec, OtherCode()).run()
