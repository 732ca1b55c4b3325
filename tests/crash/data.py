"""A synthetic crash: quiet 5-minute candles, then a 25 % fall inside one 5-minute candle.

Written as the project's data files (gzip CSV, the bundled sample's format) so the simulation
and the paper bot read them through their ordinary loaders.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIVE_MIN = 300_000
HOUR = 3_600_000
DAY = 86_400_000
START = 1_735_689_600_000  # 2025-01-01T00:00Z
CRASH_DAY = START + 9 * DAY  # 2025-01-10
CRASH = CRASH_DAY + 12 * HOUR + 5 * FIVE_MIN  # 12:25, inside the hour
DAYS = 13


def write_candles(
    path: Path, price0: float, *, seed: int, crash: str | None, fall: float = 0.25
) -> None:
    """``crash``: None (quiet), "inside" (opens at the last close, low 25 % lower) or "gap"
    (opens 25 % lower)."""
    rng = np.random.default_rng(seed)
    n = DAYS * DAY // FIVE_MIN
    ts = START + FIVE_MIN * np.arange(n, dtype=np.int64)
    steps = rng.normal(0.0, 0.0008, n)
    k = int((CRASH - START) // FIVE_MIN)
    close = price0 * np.exp(np.cumsum(steps))
    if crash is not None:
        close[k:] = close[k:] * (1 - fall) / (close[k] / close[k - 1])
    opens = np.empty(n)
    opens[0] = price0
    opens[1:] = close[:-1]
    high = np.maximum(opens, close) * (1 + np.abs(rng.normal(0, 0.0003, n)))
    low = np.minimum(opens, close) * (1 - np.abs(rng.normal(0, 0.0003, n)))
    if crash == "inside":
        low[k] = opens[k] * (1 - fall)
        close[k] = opens[k] * (1 - fall + 0.01)
        opens[k + 1] = close[k]
        high[k + 1] = max(high[k + 1], opens[k + 1])
        low[k + 1] = min(low[k + 1], opens[k + 1])
    elif crash == "gap":
        opens[k] = close[k - 1] * (1 - fall)
        high[k] = max(opens[k], close[k]) * 1.0001
        low[k] = min(opens[k], close[k]) * 0.9999
    volume = np.full(n, 500.0)
    volume[k] = 20_000.0
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [
        f"{t},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{v:.3f}"
        for t, o, h, lo, c, v in zip(ts, opens, high, low, close, volume, strict=True)
    ]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def write_data(directory: Path, crash: str, *, eth: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_candles(directory / "BTC_USDT_USDT-5m.csv.gz", 60_000.0, seed=1, crash=crash)
    if eth:
        write_candles(directory / "ETH_USDT_USDT-5m.csv.gz", 3_000.0, seed=2, crash=None)
    return directory


def write_config(
    directory: Path, data_dir: Path, *, eth: bool = False, policy: str = "static_3x"
) -> Path:
    """The example configuration on the crash data, one policy, BTC (and ETH) long."""
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('dir = "data/sample"', f'dir = "{data_dir}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / f"{policy}.toml"}"'
    )
    text = text.replace(
        'database_url = "sqlite:///bot-state.db"',
        f'database_url = "sqlite:///{directory / "state.db"}"',
    )
    text = text.replace('log_dir = "logs"', f'log_dir = "{directory / "logs"}"')
    text = text.replace("start = 2025-06-02", "start = 2025-01-08")
    drop = ["SOL/USDT:USDT"] + ([] if eth else ["ETH/USDT:USDT"])
    for sym in drop:
        text = text.replace(f'[[contracts]]\nsymbol = "{sym}"\ndirection = "long"\n', "")
    path = directory / "config.toml"
    path.write_text(text)
    return path
