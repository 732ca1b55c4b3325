"""``bot stress --from-account``: the account as the bot recorded it, valued at each position's
last known mark however long ago; a position whose mark was never recorded is named, not valued
at its entry price (which would show its unrealised PnL as zero)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from bot.bootstrap import open_store
from bot.cli.app import app
from bot.config.loader import load_config
from bot.domain.decision import Decision
from bot.domain.enums import MarginMode
from bot.domain.position import Position
from bot.ports.store import DecisionRecord
from tests.conftest import record_book
from tests.runtime.conftest import write_config

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
T0 = 1_748_822_400_000
runner = CliRunner()


def _record(symbol: str, ts: int, mark: str) -> DecisionRecord:
    d = Decision(
        symbol=symbol,
        direction=1,
        target_leverage=Decimal(1),
        target_qty=Decimal("0.1"),
        stop_loss=None,
        take_profit=None,
        reason="why",
        allow_increase=True,
    )
    return DecisionRecord("t", ts, d, Decimal(0), Decimal(0), Decimal(mark), Decimal("0.5"))


def _account(tmp_path: Path, *, decided: bool) -> Path:
    cfg = write_config(tmp_path, contracts=2)
    store = open_store(load_config(cfg), create=True)
    try:
        pos = Position(
            BTC, Decimal("0.1"), Decimal(60000), Decimal(5), MarginMode.ISOLATED, Decimal(1200)
        )
        record_book(store, T0, [pos])
        if decided:
            store.record_decisions([_record(BTC, T0, "65000")])
            # many newer decisions of the other contract: BTC's is still its last known mark
            store.record_decisions([_record(ETH, T0 + k + 1, "3000") for k in range(300)])
    finally:
        store.close()
    return cfg


def test_the_last_known_mark_however_old(tmp_path: Path) -> None:
    cfg = _account(tmp_path, decided=True)
    result = runner.invoke(app, ["stress", "--config", str(cfg), "--from-account", "--json"])
    assert result.exit_code == 0, result.output
    [btc] = json.loads(result.stdout)["portfolio"]["positions"]
    assert btc["mark"] == "65000"  # not the entry 60000


def test_a_position_without_a_recorded_mark_is_named(tmp_path: Path) -> None:
    cfg = _account(tmp_path, decided=False)
    result = runner.invoke(app, ["stress", "--config", str(cfg), "--from-account", "--json"])
    assert result.exit_code == 2
    assert f"no mark recorded for {BTC}" in result.output


def test_the_book_is_played_in_the_mode_its_positions_are_held_in(tmp_path: Path) -> None:
    """The configured margin mode applies to new positions; positions still held in cross after
    the configuration moved to isolated are stressed in cross."""
    cfg = write_config(tmp_path, contracts=2)
    store = open_store(load_config(cfg), create=True)
    try:
        held = Position(BTC, Decimal("0.1"), Decimal(60000), Decimal(5), MarginMode.CROSS)
        record_book(store, T0, [held])
        store.record_decisions([_record(BTC, T0, "61000")])
    finally:
        store.close()
    result = runner.invoke(app, ["stress", "--config", str(cfg), "--from-account", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["portfolio"]["margin_mode"] == "cross"


def test_the_book_is_named_as_the_account_and_no_snapshot_is_left_behind(
    tmp_path: Path, monkeypatch: object
) -> None:
    """The table and JSON said "stress test of /tmp/bot-stress-.../positions.csv", a temporary
    copy the command made of the account (and left on disk)."""
    import tempfile

    cfg = _account(tmp_path, decided=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # type: ignore[attr-defined]
    result = runner.invoke(app, ["stress", "--config", str(cfg), "--from-account", "--json"])
    assert result.exit_code == 0, result.output
    source = json.loads(result.stdout)["portfolio"]["source"]
    name = load_config(cfg).account.name
    assert source.startswith(f"account {name!r} in ")
    assert "bot-stress-" not in source
    assert list(scratch.iterdir()) == []
