"""The terminal side: tables whole when piped, --csv, status to the contract's precision,
progress bars only on a terminal, replayed time in replay logs, quiet third-party INFO."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from bot import logs
from bot.cli.app import app as cli
from bot.cli.terminal import progress, table_csv, unclipped
from tests.dashboard.conftest import replay
from tests.runtime.conftest import ROOT, write_config

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_status_is_whole_and_to_the_contracts_precision(paper_account: Path) -> None:
    cfg = str(paper_account)
    data = json.loads(invoke("status", "--config", cfg, "--json"))
    text = invoke("status", "--config", cfg)
    assert "…" not in text  # nothing cut, although CliRunner's output is not a terminal
    equity = float(data["equity"])
    assert f"{equity:,.2f}" in text
    assert data["equity"] not in text  # the raw decimal (many places) is not printed
    btc = data["contracts"][0]
    assert f"{float(btc['stop_loss']):,.1f}" in text  # BTC's tick is 0.1
    rows = list(csv.DictReader(io.StringIO(invoke("status", "--config", cfg, "--csv"))))
    assert [r["contract"] for r in rows] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert float(rows[0]["stop-loss"]) == float(btc["stop_loss"])
    assert rows[0]["position"] == "0.053" or float(rows[0]["position"]) == float(btc["position"])


def test_history_csv_one_table(paper_account: Path) -> None:
    cfg = str(paper_account)
    rows = list(csv.DictReader(io.StringIO(invoke("history", "--config", cfg, "--csv", "orders"))))
    assert rows
    assert {"client id", "status", "trigger"} <= set(rows[0])
    bad = runner.invoke(cli, ["history", "--config", cfg, "--csv", "fills"])
    assert bad.exit_code == 2
    assert "decisions, orders, events" in bad.output


def test_simulate_csv_and_no_blank_progress_lines(tmp_path: Path) -> None:
    out = invoke(
        "simulate",
        *("--config", str(ROOT / "config.example.toml"), "--contracts", "BTC/USDT:USDT"),
        *("--start", "2025-06-02", "--end", "2025-06-15", "--out", str(tmp_path), "--csv"),
    )
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["metric", "vol_target"]
    report = json.loads((tmp_path / "report.json").read_text())
    final = next(r for r in rows if r[0] == "final equity")
    assert final[1] == f"{report['final_equity']:,.2f}"
    assert out.startswith("metric,")  # no progress residue before the CSV


def test_progress_is_silent_off_a_terminal_and_csv_reads_tables() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False)
    with progress(console, "work", 3) as advance:
        for i in range(3):
            advance(i + 1)
    assert buffer.getvalue() == ""
    table = Table("name", "value")
    table.add_column("note")
    table.add_row("[bold]a[/bold]", "7,406.12345", "x, y")
    assert table_csv(table) == 'name,value,note\na,"7,406.12345","x, y"\n'
    narrow = Console(file=io.StringIO(), width=30, force_terminal=False)
    numbers = Table("contract", "equity")
    numbers.columns[1].justify = "right"
    numbers.add_row("BTC/USDT:USDT with a long note", "7,406.12345")
    narrow.print(unclipped(numbers))
    assert "7,406.12345" in narrow.file.getvalue()  # type: ignore[attr-defined]


def test_replay_logs_carry_the_replayed_time(tmp_path: Path) -> None:
    seen: list[Any] = []
    sink = logger.add(lambda m: seen.append(m.record["extra"].get("replayed")), level="INFO")
    try:
        replay(write_config(tmp_path, contracts=1), 2)
    finally:
        logger.remove(sink)
    stamped = [s for s in seen if s]
    assert stamped
    assert stamped[0].startswith("replay 2025-06-02 00:00")


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_info_is_quiet_unless_verbose(
    monkeypatch: pytest.MonkeyPatch, verbose: bool
) -> None:
    monkeypatch.setattr(logs, "VERBOSE", verbose)
    logs.setup_logging(None, console=False)
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(m.record["message"]), level="DEBUG")
    try:
        logging.getLogger("alembic.runtime.migration").info("Running upgrade -> 0002")
        logging.getLogger("apscheduler.scheduler").info("Added job")
        logging.getLogger("ccxt.base.exchange").warning("rate limited")
    finally:
        logger.remove(sink)
        logging.getLogger().handlers.clear()
        for name in logs.THIRD_PARTY:
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert "rate limited" in seen  # warnings always pass
    assert ("Running upgrade -> 0002" in seen) is verbose
    assert ("Added job" in seen) is verbose
