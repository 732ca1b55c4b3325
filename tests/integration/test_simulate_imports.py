"""``bot simulate`` loads only what a simulation uses: no SQL stack, no exchange client, no
scheduler, and no matplotlib in the command's own process (its charts are drawn by a helper)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Packages a simulation never needs: the database (SQLModel, SQLAlchemy, Alembic), the venue
# client (ccxt), the live scheduler and alerts, the dashboard, the research extras, pandas.
NOT_NEEDED = (
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "ccxt",
    "apscheduler",
    "apprise",
    "pandas",
    "uvicorn",
    "starlette",
    "distributed",
    "optuna",
)

_PROGRAM = """
import atexit, gc, json, sys
# Registered first, so it runs last at exit: what the command left frozen for the exit.
atexit.register(lambda: print(json.dumps({"frozen_at_exit": gc.get_freeze_count()})))
from bot.cli.app import app
try:
    app(args=sys.argv[1:], prog_name="bot")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules), "frozen": gc.get_freeze_count()}))
"""


def _simulate(tmp_path: Path, *extra: str) -> tuple[int, set[str]]:
    args = [
        "simulate",
        "--config",
        str(ROOT / "config.example.toml"),
        "--start",
        "2025-08-01",
        "--end",
        "2025-08-15",
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    *_, last, at_exit = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    # The objects of the simulation are left to the operating system at exit (no last pass of
    # the cyclic collector over them), and only then: the command itself leaves gc as it was.
    assert last["frozen"] == 0
    assert at_exit["frozen_at_exit"] > 10_000
    return int(last["code"] or 0), {m.split(".")[0] for m in last["modules"]}


def test_one_policy_imports_no_database_exchange_or_chart_library(tmp_path: Path) -> None:
    code, top = _simulate(tmp_path, "--contracts", "BTC/USDT:USDT")
    assert code == 0
    assert (tmp_path / "out" / "report.json").is_file()
    assert (tmp_path / "out" / "report.png").stat().st_size > 10_000  # drawn, by the helper
    assert sorted(top.intersection(NOT_NEEDED)) == []
    assert "matplotlib" not in top


@pytest.mark.slow
def test_policies_compared_import_no_database_or_exchange_library(tmp_path: Path) -> None:
    code, top = _simulate(
        tmp_path,
        "--contracts",
        "BTC/USDT:USDT",
        "--policy",
        str(ROOT / "policies" / "vol_target.toml"),
        "--policy",
        str(ROOT / "policies" / "static_3x.toml"),
    )
    assert code == 0
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 10_000
    assert sorted(top.intersection(NOT_NEEDED)) == []
    assert "matplotlib" not in top


def test_the_command_line_starts_light_so_the_chart_helper_starts_early() -> None:
    """``bot simulate`` starts its chart helper once the ``bot`` command is set up; the
    commands' own needs (numpy, pydantic, the engine, loguru) are imported after, so the
    helper's matplotlib import overlaps them too (about 0.2 s of CPU)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; import bot.cli.app; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(done.stdout))
    heavy = ("numpy", "pydantic", "loguru", "matplotlib", "bot.config", "bot.engine", "bot.sim")
    assert sorted(m for m in heavy if m in loaded) == []
