"""A fully allocated small account on the bundled history: no order refused for margin.

Static 5x on BTC, ETH and SOL with 200 USDT, isolated, the loss limits out of the way: once the
book's profits raised the equity (and with it every sleeve's target) beyond what the isolated
wallet had free, the simulated exchange refused 64 increases for margin (-2019) in the week
2025-06-20 .. 06-27, each time the position stayed at its old size, and which contract got its
size depended on the order the contracts were processed in. The increases are now sized to the
available balance (181 decisions say so), and none is refused.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bot.backtest.replay import run_simulation
from bot.config.loader import load_config
from bot.domain.enums import EventKind
from bot.engine.tick import Engine

ROOT = Path(__file__).resolve().parents[2]


def fully_allocated(tmp_path: Path) -> Path:
    policy = (ROOT / "policies" / "static_3x.toml").read_text()
    for old, new in [
        ("min = 3", "min = 5"),
        ("max = 3", "max = 5"),
        ("fixed = 3", "fixed = 5"),
        ("daily_loss = 0.05", "daily_loss = 0.9"),
        ("max_drawdown = 0.25", "max_drawdown = 0.9"),
    ]:
        assert old in policy
        policy = policy.replace(old, new)
    (tmp_path / "static_5x.toml").write_text(policy)
    config = (ROOT / "config.example.toml").read_text()
    for old, new in [
        ("starting_balance = 10000", "starting_balance = 200"),
        ('dir = "data/sample"', f'dir = "{ROOT / "data" / "sample"}"'),
        ('file = "policies/vol_target.toml"', f'file = "{tmp_path / "static_5x.toml"}"'),
        ("max_leverage_per_contract = 5", "max_leverage_per_contract = 10"),
        ("max_gross_leverage = 6", "max_gross_leverage = 30"),
        ("daily_loss_limit = 0.05", "daily_loss_limit = 0.9"),
        ("max_drawdown = 0.25", "max_drawdown = 0.9"),
        ("start = 2025-06-02", "start = 2025-06-20"),
        ("end = 2025-09-30", "end = 2025-06-27"),
    ]:
        assert old in config
        config = config.replace(old, new)
    path = tmp_path / "config.toml"
    path.write_text(config)
    return path


def refused_for_margin(tmp_path: Path) -> tuple[list[str], list[str]]:
    config = load_config(fully_allocated(tmp_path))
    assert config.simulation.start == date(2025, 6, 20)
    result = run_simulation(config, config.policies[0])
    refused = [
        e.reason
        for e in result.store.events
        if e.kind is EventKind.REJECTED and "margin is insufficient" in e.reason
    ]
    cut = [
        r.decision.reason
        for r in result.store.decisions
        if "margin: available" in r.decision.reason
    ]
    return refused, cut


def test_a_fully_allocated_account_sends_no_order_the_venue_refuses(tmp_path: Path) -> None:
    refused, cut = refused_for_margin(tmp_path)
    assert refused == []
    assert len(cut) > 50
    assert all("increase scaled by" in reason for reason in cut)


def test_before_the_margin_step_the_venue_refused_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Engine, "within_margin", lambda self, decisions, acct, snaps: decisions)
    refused, cut = refused_for_margin(tmp_path)
    assert len(refused) > 50
    assert cut == []
