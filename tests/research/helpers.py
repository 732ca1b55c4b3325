"""Shared pieces of the research tests: a config on the bundled sample, synthetic regimes."""

from __future__ import annotations

import gzip
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bot.research.executors import InlineExecutor

ROOT = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z

T = TypeVar("T")
R = TypeVar("R")


def sample_config(tmp: Path, *, data_dir: Path | None = None, window: bool = True) -> Path:
    """config.example.toml with absolute paths (and optionally no date window)."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace('dir = "data/sample"', f'dir = "{data_dir or ROOT / "data" / "sample"}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / "vol_target.toml"}"'
    )
    if not window:
        text = re.sub(r"(?m)^(start|end) = .*$", "", text)
    path = tmp / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


class CountingExecutor(InlineExecutor):
    """Runs in process and records every task it was given."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def run(
        self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
    ) -> Iterator[R]:
        for task in tasks:
            self.seen.append(task)
            yield fn(task)


def write_regimes(folder: Path, regimes: list[int], regime_days: int, warm_days: int) -> None:
    """BTC/USDT:USDT hourly candles: ``warm_days`` of noise, then one regime per entry of
    ``regimes`` (+1 rising, -1 falling), ``regime_days`` each. A small alternating wiggle keeps
    the volatility estimate positive."""
    folder.mkdir(parents=True, exist_ok=True)
    hours = 24 * (warm_days + regime_days * len(regimes))
    drift = np.zeros(hours)
    for r, sign in enumerate(regimes):
        a = 24 * (warm_days + r * regime_days)
        drift[a : a + 24 * regime_days] = 0.0006 * sign
    wiggle = np.where(np.arange(hours) % 2 == 0, 0.001, -0.001)
    close = 50_000 * np.exp(np.cumsum(drift + wiggle))
    open_ = np.concatenate([[50_000.0], close[:-1]])
    high = np.maximum(open_, close) * 1.0004
    low = np.minimum(open_, close) * 0.9996
    lines = ["timestamp,open,high,low,close,volume"]
    for i in range(hours):
        lines.append(
            f"{T0 + i * 3_600_000},{open_[i]:.2f},{high[i]:.2f},{low[i]:.2f},{close[i]:.2f},10"
        )
    (folder / "BTC_USDT_USDT-1h.csv.gz").write_bytes(
        gzip.compress(("\n".join(lines) + "\n").encode())
    )


def die_once(marker: str) -> str:
    """A task whose first attempt kills its worker process (as an OOM kill would)."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(17)
    return path.name


def always_die(marker: str) -> str:
    os._exit(17)


def pid_then_wait(marker: str) -> str:
    """A task that writes its worker's process id to ``marker`` and then waits for ever."""
    Path(marker).write_text(str(os.getpid()))
    threading.Event().wait()
    return marker


def pretend_other_code() -> None:
    """Run on a Dask worker: from now on it reports another code fingerprint, as a worker
    on another checkout of the project does."""
    from bot.research import fingerprint

    fingerprint.code_fingerprint = lambda: "0123456789abcdef"  # type: ignore[assignment]
