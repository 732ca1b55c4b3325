"""Local executor: a worker process lost mid-point is replaced and the point sent again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.research.executors import InlineExecutor, LocalExecutor, make_executor
from tests.research.helpers import ROOT, always_die, die_once


def _failed(task: str, reason: str) -> str:
    return f"failed {Path(task).name}: {reason}"


def test_a_killed_worker_is_replaced_and_its_point_retried(tmp_path: Path) -> None:
    tasks = [str(tmp_path / f"t{i}") for i in range(4)]
    executor = LocalExecutor(2)
    try:
        got = sorted(executor.run(die_once, tasks, _failed))
    finally:
        executor.close()
    assert got == ["t0", "t1", "t2", "t3"]


def test_a_point_that_always_kills_its_worker_fails_alone(tmp_path: Path) -> None:
    executor = LocalExecutor(2, retries=2)
    try:
        got = list(executor.run(always_die, [str(tmp_path / "bad")], _failed))
    finally:
        executor.close()
    assert got == ["failed bad: worker process died 3 times running this point"]


def test_one_worker_runs_in_process() -> None:
    assert isinstance(make_executor(1, None), InlineExecutor)


_ORPHAN = """
import sys
from bot.research.executors import LocalExecutor
from tests.research.helpers import pid_then_wait
if __name__ == "__main__":
    list(LocalExecutor(2).run(pid_then_wait, [sys.argv[1]], lambda t, r: r))
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited worker its parent has not reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux pidfd")
def test_workers_end_when_the_sweep_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the sweep (or the OOM killer) left every worker waiting for ever, holding its
    loaded market data."""
    script = tmp_path / "sweep.py"
    script.write_text(_ORPHAN)
    marker = tmp_path / "worker.pid"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60  # noqa: TID251 - test harness
        while not (marker.exists() and marker.read_text()):
            assert proc.poll() is None, "the parent ended before its worker started"
            assert time.monotonic() < deadline  # noqa: TID251
            time.sleep(0.05)  # noqa: TID251
        worker = int(marker.read_text())
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    deadline = time.monotonic() + 10  # noqa: TID251
    while _running(worker) and time.monotonic() < deadline:  # noqa: TID251
        time.sleep(0.05)  # noqa: TID251
    alive = _running(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)  # leave no process behind, then fail
    assert not alive
