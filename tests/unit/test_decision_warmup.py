"""Decision candles aggregated from another file hold the policy's warm-up before the window.

The bundled data has 5m candles from 2025-06-01 and 1h candles for a year. A 4h policy's
decisions were aggregated from the 5m file chosen for the window, so its 169 candles of warm-up
pushed the first decision to 2025-06-29 instead of the configured 2025-06-02, and a 1d policy
(31 candles) had no simulation at all. They now come from the finest file that also holds the
warm-up (the 1h file); the last-trade and trigger candles stay the 5m ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.backtest.replay import load_data
from bot.config.loader import load_config
from bot.engine.market import candles_needed
from bot.sim.history import simulation_window

ROOT = Path(__file__).resolve().parents[2]
START = 1_748_822_400_000  # 2025-06-02T00:00Z, the example's configured start


def _policy(tmp: Path, timeframe: str, window: int) -> Path:
    text = (ROOT / "policies" / "vol_target.toml").read_text()
    text = text.replace('timeframe = "1h"', f'timeframe = "{timeframe}"', 1)
    text = text.replace("window = 168", f"window = {window}", 1)
    path = tmp / f"vt_{timeframe}.toml"
    path.write_text(text)
    return path


def _config(tmp: Path) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('dir = "data/sample"', f'dir = "{ROOT / "data" / "sample"}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / "vol_target.toml"}"'
    )
    path = tmp / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("timeframe", "window"), [("4h", 168), ("1d", 30)])
def test_the_first_decision_is_at_the_configured_start(
    tmp_path: Path, timeframe: str, window: int
) -> None:
    config = load_config(_config(tmp_path), policy_overrides=[_policy(tmp_path, timeframe, window)])
    [policy] = config.policies
    symbols = tuple(c.symbol for c in config.contracts)
    histories = load_data(config, policy, symbols)
    start, _end = simulation_window(histories, policy, config)
    assert start == START
    for sym, h in histories.items():
        assert h.last.tf_ms == 5 * 60_000, sym  # the window's finest candles are kept
        assert int(h.decision.ts[0]) + candles_needed(policy) * h.decision.tf_ms <= START, sym
        assert any(f"{timeframe} resampled from 1h" in n for n in h.selection), h.selection
