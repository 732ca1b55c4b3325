"""``bot simulate --policy A --policy B ...``: policies compared on one footing.

Every policy runs on one common window (the latest warm-up start and the earliest data end of
them all, on every policy's decision grid), in parallel worker processes through the same
executor as sweeps. Each worker writes its policy's files and sends back only the report and the
curves the comparison chart needs, never the whole simulation (memory stays flat per policy).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.backtest.replay import run_simulation
from bot.backtest.report import write_outputs
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.engine.hedging import with_hedge_symbols
from bot.errors import BotError, DataError
from bot.marketdata.cache import content_hash
from bot.marketdata.files import DataInventory, discover
from bot.research.evaluate import catalogue_of, unpinned
from bot.research.executors import Executor
from bot.research.histories import shared_histories
from bot.sim.history import ContractHistory, simulation_window
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
    pins: Pins


@dataclass(frozen=True, slots=True)
class Pins:
    """The data files the comparison started with, by input name, with their content hashes:
    every policy runs on these (a worker lists the data directory itself, and the selection
    takes the finest file covering the window: a file added meanwhile fed one policy other
    data than the others)."""

    files: tuple[tuple[str, str, str], ...]  # (input name, path, content hash)

    @property
    def stamp(self) -> str:
        """A worker's key for the data it keeps (another run's files are other data)."""
        return hashlib.blake2b(repr(self.files).encode(), digest_size=12).hexdigest()

    def admit(self, files: Mapping[str, Path]) -> None:
        extra = unpinned(files, tuple(name for name, _, _ in self.files))
        if extra:
            raise DataError(
                f"{', '.join(str(p) for p in extra)}: not in the data directory when the "
                "comparison started (added since), and the data would be chosen from it: run "
                "the command again to compare the policies on the data as it is now"
            )

    def verify(self) -> None:
        for _, path, digest in self.files:
            if content_hash(Path(path)) != digest:
                raise DataError(
                    f"{path} changed while the policies ran: run the command again to compare "
                    "them on the data as it is now"
                )


def pin(config: BotConfig, symbols: tuple[str, ...], data_dir: Path | None) -> Pins:
    """The data files (and contract catalogue) the policies of ``config`` may read."""
    every = dict.fromkeys(s for p in config.policies for s in with_hedge_symbols(symbols, p))
    files = discover(data_dir or config.data.dir).series_files(every)
    files.update(catalogue_of(config, data_dir))
    return Pins(tuple((name, str(path), content_hash(path)) for name, path in files.items()))


def _histories(
    config: BotConfig,
    policy: Policy,
    symbols: tuple[str, ...],
    data_dir: Path | None,
    pins: Pins,
) -> dict[str, ContractHistory]:
    """The policy's data, loaded once per process, from the pinned files only."""

    def admit(inventory: DataInventory) -> None:
        pins.admit(inventory.series_files(with_hedge_symbols(symbols, policy)))

    histories = shared_histories(config, policy, symbols, data_dir, pins.stamp, pins.verify, admit)
    pins.admit(catalogue_of(config, data_dir))  # read by every run
    return histories


def common_window(
    config: BotConfig, symbols: tuple[str, ...], data_dir: Path | None, pins: Pins
) -> tuple[int, int]:
    """The window every policy of ``config`` can be simulated on, aligned to all timeframes."""
    starts, ends, steps = [], [], []
    for policy in config.policies:  # policies on the same data share one load
        histories = _histories(config, policy, symbols, data_dir, pins)
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
        histories=_histories(config, policy, task.symbols, data_dir, task.pins),
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
    pins = pin(config, symbols, data_dir)
    window = common_window(config, symbols, data_dir, pins)
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
            pins=pins,
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
