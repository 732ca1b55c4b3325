"""``bot simulate --policy A --policy B ...``: policies compared on one footing.

Every policy runs on one common window (the latest warm-up start and the earliest data end of
them all, on every policy's decision grid), in parallel worker processes through the same
executor as sweeps. Each worker writes its policy's files and sends back only the report and the
curves the comparison chart needs, never the whole simulation (memory stays flat per policy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.backtest.replay import run_simulation
from bot.backtest.report import write_outputs
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.errors import BotError, DataError
from bot.research.executors import Executor
from bot.research.histories import shared_histories
from bot.sim.history import simulation_window
from bot.stats.timeframes import parse_timeframe


@dataclass(frozen=True, slots=True)
class PolicyRun:
    config_path: str
    policy_path: str
    index: int
    start: Any
    end: Any
    symbols: tuple[str, ...]
    data_dir: str | None
    window: tuple[int, int]
    out: str


def common_window(
    config: BotConfig, symbols: tuple[str, ...], data_dir: Path | None
) -> tuple[int, int]:
    """The window every policy of ``config`` can be simulated on, aligned to all timeframes."""
    starts, ends, steps = [], [], []
    for policy in config.policies:  # policies on the same data share one load
        histories = shared_histories(config, policy, symbols, data_dir)
        start, end = simulation_window(histories, policy, config)
        starts.append(start)
        ends.append(end)
        steps.append(parse_timeframe(policy.timeframe))
    grid = math.lcm(*steps)
    start = max(starts)
    start += (-start) % grid
    end = min(ends)
    if end - start < grid:
        raise DataError(
            "no common simulation window for "
            f"{', '.join(p.name for p in config.policies)}: their warm-ups and data do not overlap"
        )
    return start, end


def run_policy(task: PolicyRun) -> dict[str, Any]:
    """Simulate one policy on the common window, write its outputs, return what the chart and
    table need (report, time, equity, drawdown, buy-and-hold)."""
    from bot.backtest.replay import override

    clock = LiveClock()
    t0 = clock.monotonic()
    config = override(
        load_config(Path(task.config_path), policy_overrides=[Path(task.policy_path)]),
        task.start,
        task.end,
    )
    policy = config.policies[0]
    data_dir = Path(task.data_dir) if task.data_dir else None
    result = run_simulation(
        config,
        policy,
        symbols=task.symbols,
        data_dir=data_dir,
        window=task.window,
        # a worker that runs several policies loads their data once
        histories=shared_histories(config, policy, task.symbols, data_dir),
    )
    report = write_outputs(result, Path(task.out), clock.monotonic() - t0)
    return {
        "index": task.index,
        "report": report,
        "ts": result.ts,
        "equity": result.equity,
        "drawdown": result.drawdown(),
        "benchmark": result.benchmark,
    }


def run_policies(
    config_path: Path,
    config: BotConfig,
    policy_paths: list[Path],
    symbols: tuple[str, ...],
    data_dir: Path | None,
    out_dir: Path,
    executor: Executor,
) -> list[dict[str, Any]]:
    """Every policy's result, in the order given."""
    window = common_window(config, symbols, data_dir)
    tasks = [
        PolicyRun(
            config_path=str(config_path.resolve()),
            policy_path=str(path.resolve()),
            index=i,
            start=config.simulation.start,
            end=config.simulation.end,
            symbols=symbols,
            data_dir=str(data_dir.resolve()) if data_dir else None,
            window=window,
            out=str((out_dir / policy.name).resolve()),
        )
        for i, (path, policy) in enumerate(zip(policy_paths, config.policies, strict=True))
    ]
    failures: list[str] = []

    def failed(task: PolicyRun, reason: str) -> dict[str, Any]:
        failures.append(f"{task.policy_path}: {reason}")
        return {"index": task.index}

    done = sorted(executor.run(run_policy, tasks, failed), key=lambda r: int(r["index"]))
    if failures:
        raise BotError("; ".join(failures))
    return done


def as_arrays(run: dict[str, Any]) -> tuple[Any, Any, Any]:
    return np.asarray(run["ts"]), np.asarray(run["equity"]), np.asarray(run["drawdown"])
