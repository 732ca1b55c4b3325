"""A configuration in a temporary directory: bundled data, its own database and logs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def write_config(
    directory: Path, *, extra_runtime: str = "", contracts: int = 3, start: str = "2025-06-02"
) -> Path:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace('dir = "data/sample"', f'dir = "{ROOT / "data" / "sample"}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / "vol_target.toml"}"'
    )
    text = text.replace(
        'database_url = "sqlite:///bot-state.db"',
        f'database_url = "sqlite:///{directory / "state.db"}"',
    )
    text = text.replace('log_dir = "logs"', f'log_dir = "{directory / "logs"}"')
    text = text.replace("start = 2025-06-02", f"start = {start}")
    if extra_runtime:
        text = text.replace("[runtime]\n", "[runtime]\n" + extra_runtime + "\n", 1)
    if contracts < 3:
        for sym in ("SOL/USDT:USDT", "ETH/USDT:USDT")[: 3 - contracts]:
            text = text.replace(f'[[contracts]]\nsymbol = "{sym}"\ndirection = "long"\n', "")
    path = directory / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)
