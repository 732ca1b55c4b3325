"""A saved paper account that cannot be read (a write cut short, a newer bot's format) stops
``bot run`` before anything trades, with one line naming the account, the database and the way
out, never a traceback; the saved state is left as it was for a person to look at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.bootstrap import open_store
from bot.cli.app import app
from bot.config.loader import load_config
from tests.runtime.conftest import ROOT, write_config

DATA = ROOT / "data" / "sample"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p[: len(p) // 2], "paper account state is unreadable: JSONDecodeError"),
        (
            lambda p: p.replace('"version":1', '"version":7'),
            "format 7, written by a newer version of the bot",
        ),
    ],
    ids=["truncated", "newer"],
)
def test_an_unreadable_paper_account_stops_the_start(
    tmp_path: Path, damage: Callable[[str], str], expected: str
) -> None:
    config_path = write_config(tmp_path, contracts=1)
    runner = CliRunner()
    args = ["run", "--config", str(config_path), "--replay", str(DATA), "--once"]
    assert runner.invoke(app, args).exit_code == 0  # a paper account with a position
    config = load_config(config_path)
    store = open_store(config, create=True)
    try:
        payload = store.load_paper_state("main")
        assert payload is not None
        bad = damage(payload)
        store.save_paper_state("main", bad, 0)
        orders = len(store.recent_orders(10_000))
    finally:
        store.close()
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())
    assert "error: paper account 'main' in the state database sqlite:///" in text
    assert expected in text
    assert "Nothing was traded" in text
    store = open_store(config, create=True)
    try:
        assert store.load_paper_state("main") == bad  # left for a person to look at
        assert len(store.recent_orders(10_000)) == orders  # nothing sent
    finally:
        store.close()
