"""The same sweep on a Dask cluster: a LocalCluster of 2 workers, and real ``dask scheduler`` +
``dask worker`` processes on 127.0.0.1. Results equal the in-process run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.research.executors import DaskExecutor, InlineExecutor
from bot.research.space import parse_param
from bot.research.sweep import Sweep, SweepSpec
from bot.research.walkforward import parse_walk_forward
from tests.research.helpers import (
    ROOT,
    pid_then_wait,
    pretend_other_code,
    sample_config,
    write_regimes,
)

distributed = pytest.importorskip("distributed")


def _spec(tmp: Path, out: str) -> SweepSpec:
    return SweepSpec(
        config_path=sample_config(tmp),
        base_policy=ROOT / "policies" / "vol_target.toml",
        params=[parse_param("leverage.target_volatility=0.3,0.6"), parse_param("leverage.max=2,3")],
        out=tmp / out,
        objective="sharpe",
        contracts=("BTC/USDT:USDT",),
        start=None,
        end=None,
    )


def _by_key(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {r["key"]: r for r in rows}


@pytest.mark.slow
def test_local_cluster_gives_the_same_results_as_one_process(tmp_path: Path) -> None:
    reference = Sweep(_spec(tmp_path, "ref"), InlineExecutor()).run()
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        executor = DaskExecutor(cluster.scheduler_address)
        try:
            assert executor.workers == 2
            got = Sweep(_spec(tmp_path, "dask"), executor).run()
        finally:
            executor.close()
    assert _by_key(got.rows) == _by_key(reference.rows)


@pytest.mark.slow
def test_a_walk_forward_on_a_local_cluster_gives_the_same_out_of_sample_run(
    tmp_path: Path,
) -> None:
    """The out-of-sample run (one task whose policy switches at each TEST start) travels to a
    worker like any point and comes back the same as in one process."""
    data = tmp_path / "data"
    write_regimes(data, [1, -1, 1, -1], regime_days=10, warm_days=8)

    def spec(out: str) -> SweepSpec:
        return SweepSpec(
            config_path=sample_config(tmp_path, data_dir=data, window=False),
            base_policy=ROOT / "policies" / "static_3x.toml",
            params=[parse_param("leverage.fixed=1,3"), parse_param("leverage.min=1")],
            out=tmp_path / out,
            objective="total_return",
            walk_forward=parse_walk_forward("10:10"),
            contracts=("BTC/USDT:USDT",),
        )

    reference = Sweep(spec("ref"), InlineExecutor()).run()
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        executor = DaskExecutor(cluster.scheduler_address)
        try:
            got = Sweep(spec("dask"), executor).run()
        finally:
            executor.close()
    assert got.summary["out_of_sample_method"] == "one run"
    assert got.summary["out_of_sample"] == reference.summary["out_of_sample"]
    assert got.summary["out_of_sample_run"] == reference.summary["out_of_sample_run"]
    ref_curve = (tmp_path / "ref" / "oos_equity.csv").read_text()
    assert (tmp_path / "dask" / "oos_equity.csv").read_text() == ref_curve


def _wait_for(path: Path, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout  # noqa: TID251 - test harness, not bot code
    while not path.exists():
        if time.monotonic() > deadline:  # noqa: TID251
            raise TimeoutError(f"{what} did not start within {timeout} s")
        time.sleep(0.2)  # noqa: TID251


@pytest.fixture
def real_cluster(tmp_path: Path) -> Iterator[str]:
    """``dask scheduler`` and two ``dask worker`` processes bound to 127.0.0.1."""
    bindir = Path(sys.executable).parent
    dask = bindir / "dask"
    if not dask.exists():
        pytest.skip("the dask command is not installed next to this Python")
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                str(dask),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    ]
    try:
        _wait_for(sched_file, "dask scheduler")
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(dask),
                        "worker",
                        "--scheduler-file",
                        str(sched_file),
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                )
            )
        import json

        address = json.loads(sched_file.read_text())["address"]
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.slow
def test_real_scheduler_and_workers_give_the_same_results(
    tmp_path: Path, real_cluster: str
) -> None:
    reference = Sweep(_spec(tmp_path, "ref"), InlineExecutor()).run()
    executor = DaskExecutor(real_cluster)
    try:
        got = Sweep(_spec(tmp_path, "dask"), executor).run()
    finally:
        executor.close()
    assert _by_key(got.rows) == _by_key(reference.rows)


def test_a_cluster_without_workers_ends_with_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    """Every worker gone (killed, out of memory) or none started: the sweep used to wait for
    ever with no message (a CI run hung 12 minutes on dead workers)."""
    with distributed.LocalCluster(
        n_workers=0, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        executor = DaskExecutor(cluster.scheduler_address)
        executor.poll_s, executor.no_workers_s = 0.2, 1.0
        try:
            with pytest.raises(ConfigError, match=r"no worker for \d+ s, 4 point\(s\) waiting"):
                Sweep(_spec(tmp_path, "none"), executor).run()
        finally:
            executor.close()


def _cluster(n_workers: int) -> Any:
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
    )


@pytest.mark.slow
def test_a_worker_on_other_code_is_refused_before_any_point_runs() -> None:
    """A worker on an older checkout unpickled the points into its own class and ran them
    without a word (a walk-forward's switches dropped); now the cluster is refused at once."""
    with _cluster(2) as cluster, distributed.Client(cluster.scheduler_address) as client:
        odd = sorted(client.scheduler_info()["workers"])[0]
        client.run(pretend_other_code, workers=[odd])
        with pytest.raises(ConfigError) as info:
            DaskExecutor(cluster.scheduler_address)
    said = str(info.value)
    assert f"worker runs other code than the sweep (fingerprint {odd}: 0123456789abcdef" in said
    assert said.endswith("install the same project version on every worker")
    assert said.count("tcp://") == 2  # the scheduler's address and the odd worker's only


@pytest.mark.slow
def test_a_lost_scheduler_ends_with_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    """The scheduler dies mid-sweep: Dask's FuturesCancelledError reached the command line as
    a traceback of some 180 lines; now one error says what happened and what to do."""
    cluster = _cluster(1)
    try:
        executor = DaskExecutor(cluster.scheduler_address)
        executor.poll_s = 0.5
        marker = tmp_path / "running"

        def close_when_running() -> None:
            _wait_for(marker, "the first point")
            cluster.close()

        threading.Thread(target=close_when_running, daemon=True).start()
        try:
            with pytest.raises(ConfigError, match="lost the scheduler") as info:
                list(
                    executor.run(pid_then_wait, [str(marker), str(tmp_path / "b")], lambda t, r: r)
                )
        finally:
            executor.close()
    finally:
        cluster.close()
    said = str(info.value)
    assert said.startswith(f"--cluster {cluster.scheduler_address}: lost the scheduler (")
    assert said.endswith("restart it and run the same command again (finished points are kept)")
    assert "\n" not in said
