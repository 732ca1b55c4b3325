"""Configuration and connection errors through the real command line: exit code 2 and one clear
line naming the file, the key and the value; never a traceback, nothing traded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.conftest import ROOT, write_config

pytestmark = pytest.mark.slow


def policy_with(directory: Path, *pairs: tuple[str, str]) -> Path:
    text = (ROOT / "policies" / "vol_target.toml").read_text()
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = directory / "policy.toml"
    path.write_text(text)
    return path


def config_with(directory: Path, old: str, new: str) -> Path:
    path = write_config(directory, contracts=1)
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return path


def bot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "400", "HOME": str(cwd)},
        check=False,
    )


CASES = [
    # (what, config edit, policy edit or None, command, expected text in the line)
    (
        "negative ccxt timeout",
        ("ccxt_options = { adjustForTimeDifference = true }", "ccxt_options = { timeout = -1 }"),
        None,
        "status",
        "config.toml: exchange.ccxt_options.timeout: must be within [500, 120000] ms (got -1)",
    ),
    (
        "database backend",
        ('database_url = "sqlite:///', 'database_url = "mysql:///'),
        None,
        "status",
        "config.toml: runtime.database_url: backend 'mysql' is not supported",
    ),
    (
        "unreachable database",
        ('database_url = "sqlite:///', 'database_url = "postgresql+psycopg://u@127.0.0.1:1/x" #'),
        None,
        "status",
        "config.toml: runtime.database_url: cannot open the database",
    ),
    (
        "leverage cap above the venue's",
        ("max_leverage_per_contract = 5", "max_leverage_per_contract = 500"),
        None,
        "simulate",
        "config.toml: risk.max_leverage_per_contract: above the venue's maximum on binanceusdm",
    ),
    (
        "a stop a few ticks from the price",
        None,
        (
            ('# Required.\nkind = "vol"', 'kind = "percent"'),
            ("distance = 2.5", "distance = 0.0001"),
        ),
        "simulate",
        "policy.toml: stop_loss.distance: must be >= 0.05",
    ),
    (
        "a stop beyond liquidation",
        None,
        (('# Required.\nkind = "vol"', 'kind = "percent"'), ("distance = 2.5", "distance = 99.9")),
        "simulate",
        "policy.toml: stop_loss.distance: must be < 100 / leverage.max = 20 %",
    ),
    (
        "a window no venue request can fill",
        None,
        (("window = 168", "window = 50000"),),
        "run",
        "volatility.window = 50000 needs 50001 closed 1h candles",
    ),
    (
        "a log directory that cannot be made",
        ('log_dir = "', 'log_dir = "/dev/null/'),
        None,
        "run",
        "config.toml: runtime.log_dir: cannot write the log files in /dev/null/",
    ),
]


@pytest.mark.parametrize(
    ("what", "edit", "policy", "command", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_one_clear_line_and_no_traceback(
    tmp_path: Path,
    what: str,
    edit: tuple[str, str] | None,
    policy: tuple[tuple[str, str], ...] | None,
    command: str,
    expected: str,
) -> None:
    config = write_config(tmp_path, contracts=1)
    if edit is not None:
        config = config_with(tmp_path, *edit)
    if policy is not None:
        path = policy_with(tmp_path, *policy)
        text = config.read_text()
        config.write_text(text.replace(str(ROOT / "policies" / "vol_target.toml"), str(path)))
    args = [command, "--config", "config.toml"] + (["--once"] if command == "run" else [])
    result = bot(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0], lines[0]
