"""Local executor: a worker process lost mid-point is replaced and the point sent again."""

from __future__ import annotations

from pathlib import Path

from bot.research.executors import InlineExecutor, LocalExecutor, make_executor
from tests.research.helpers import always_die, die_once


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
