"""--start / --end against the configured window: an empty one names where each date is from."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bot.backtest.replay import override
from bot.config.loader import load_config
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_a_start_after_the_configured_end_names_the_config_key_not_a_flag() -> None:
    # `bot simulate --start 2026-01-01` with config.example.toml's end = 2025-09-30 said
    # "--start 2026-01-01 must be before --end 2025-09-30", naming a flag nobody gave.
    config = load_config(ROOT / "config.example.toml")
    with pytest.raises(ConfigError) as info:
        override(config, date(2026, 1, 1), None)
    assert str(info.value) == (
        "--start 2026-01-01 must be before simulation.end 2025-09-30 (config.example.toml)"
    )
    with pytest.raises(ConfigError) as info:
        override(config, None, date(2025, 5, 1))
    assert str(info.value) == (
        "simulation.start 2025-06-02 (config.example.toml) must be before --end 2025-05-01"
    )
    with pytest.raises(ConfigError) as info:
        override(config, date(2025, 7, 1), date(2025, 7, 1))
    assert str(info.value) == "--start 2025-07-01 must be before --end 2025-07-01"


def test_a_window_inside_the_data_is_applied() -> None:
    config = load_config(ROOT / "config.example.toml")
    moved = override(config, date(2025, 7, 1), date(2025, 7, 20))
    assert (moved.simulation.start, moved.simulation.end) == (date(2025, 7, 1), date(2025, 7, 20))
