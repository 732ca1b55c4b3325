"""Paper trading on recorded data: durable across restarts, halt/resume through the database."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus, TradingState
from bot.risk.loss_budget import BUDGET_EXHAUSTED
from bot.risk.state import initial_memory
from bot.sim.paper_state import dump

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
START = 1_748_822_400_000  # 2025-06-02T00:00Z


def run_ticks(config_path: Path, start_ms: int, n: int) -> tuple[int, str]:
    """Start the paper bot at ``start_ms``, run ``n`` hourly ticks, stop. Returns (end, state)."""
    config = load_config(config_path)
    store = open_store(config, create=True)
    clock = SimClock(start_ms)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        for _ in range(n):
            assert runner.tick() is not None
            clock.advance_to(clock.now_ms() + HOUR)
        return clock.now_ms(), dump(paper.sim)
    finally:
        paper.save()
        store.close()


def test_paper_account_survives_a_restart(config_path: Path) -> None:
    end, state_before = run_ticks(config_path, START, 6)
    config = load_config(config_path)
    store = open_store(config, create=True)
    saved = store.load_paper_state(config.account.name)
    assert saved == state_before  # everything the exchange knew is on disk
    orders_before = {o.client_id for o in store.recent_orders(10_000)}
    store.close()
    run_ticks(config_path, end, 6)  # restart where it stopped
    store = open_store(config, create=True)
    state = json.loads(store.load_paper_state(config.account.name) or "{}")
    records = store.recent_orders(10_000)
    ids = [o.client_id for o in records]
    assert len(ids) == len(set(ids))  # no client id reused
    assert orders_before <= set(ids)  # history kept
    assert store.unresolved_orders() == []
    # every position held has exactly one resting stop sized to it
    resting = {cid for ids_ in state["resting"].values() for cid in ids_}
    by_id = {o["client_id"]: o for o in state["orders"]}
    for sym, pos in state["positions"].items():
        if Decimal(pos["qty"]) != 0:
            stops = [
                by_id[c]
                for c in resting
                if by_id[c]["symbol"] == sym and by_id[c]["purpose"] == "sl"
            ]
            assert len(stops) == 1, sym
            assert stops[0]["amount"] == pos["qty"].lstrip("-")
    assert state["processed_ms"] >= end + 5 * HOUR
    store.close()


def test_halt_and_resume_through_the_database(config_path: Path) -> None:
    end, _ = run_ticks(config_path, START, 3)
    config = load_config(config_path)
    store = open_store(config, create=True)
    store.post_command("halt", json.dumps({"flatten": True, "reason": "test"}), end)
    store.close()
    end, state = run_ticks(config_path, end, 1)
    positions = json.loads(state)["positions"]
    assert all(Decimal(p["qty"]) == 0 for p in positions.values())
    store = open_store(config, create=True)
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.HALTED
    assert memory.sticky
    closes = [o for o in store.recent_orders(1000) if o.request.purpose is OrderPurpose.CLOSE]
    assert closes
    assert all(o.request.reduce_only for o in closes)
    assert all(o.status is OrderStatus.FILLED for o in closes)
    store.post_command("resume", "{}", end)
    store.close()
    run_ticks(config_path, end, 1)
    store = open_store(config, create=True)
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE
    kinds = [e.kind for e in store.recent_events(100)]
    assert kinds.count(EventKind.STATE) >= 2
    store.close()


def test_resume_after_a_drawdown_halt_trades_again(config_path: Path) -> None:
    # ``bot resume`` after a drawdown halt: the peak it was measured from must be reset to the
    # equity of now, or the next job halts (and flattens) again at once and resume is useless.
    end, _ = run_ticks(config_path, START, 3)
    config = load_config(config_path)
    store = open_store(config, create=True)
    memory = store.load_risk_memory()
    assert memory is not None
    # the account fell 40 % from its peak (drawdown limit 25 %)
    store.save_risk_memory(replace(memory, peak_equity=memory.peak_equity * 2))
    store.close()
    end, _ = run_ticks(config_path, end, 1)
    store = open_store(config, create=True)
    halted = store.load_risk_memory()
    assert halted is not None
    assert halted.state is TradingState.HALTED
    assert "drawdown" in halted.state_reason
    store.post_command("resume", json.dumps({"reason": "looked at it"}), end)
    store.close()
    end, _ = run_ticks(config_path, end, 2)
    store = open_store(config, create=True)
    try:
        memory = store.load_risk_memory()
        assert memory is not None
        assert memory.state is TradingState.ACTIVE, memory.state_reason
        assert memory.peak_equity < halted.peak_equity  # measured from the resume on
    finally:
        store.close()


def test_resume_after_a_daily_loss_halt_trades_again_the_same_day(config_path: Path) -> None:
    end, _ = run_ticks(config_path, START, 3)
    config = load_config(config_path)
    store = open_store(config, create=True)
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(replace(memory, day_start_equity=memory.day_start_equity * 2))
    store.close()
    end, _ = run_ticks(config_path, end, 1)
    store = open_store(config, create=True)
    halted = store.load_risk_memory()
    assert halted is not None
    assert halted.state is TradingState.HALTED
    assert "daily loss" in halted.state_reason
    store.post_command("resume", "{}", end)
    store.close()
    end, _ = run_ticks(config_path, end, 1)  # the same UTC day
    store = open_store(config, create=True)
    try:
        memory = store.load_risk_memory()
        assert memory is not None
        assert memory.state is TradingState.ACTIVE, memory.state_reason
        assert memory.day_start_ms == halted.day_start_ms
    finally:
        store.close()


def test_resume_from_an_exhausted_loss_budget_resets_the_peak_and_trades_again(
    config_path: Path,
) -> None:
    # A flat account 0.001 % above its drawdown floor: no position fits its loss budget. It
    # says so (reducing, with the reason); a person's resume resets the peak, and it trades.
    config = load_config(config_path)
    store = open_store(config, create=True)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=SimClock(START))
    limit = runner.engine.limits.max_drawdown
    equity = paper.sim.fetch_balance().wallet
    memory = initial_memory(equity, START)
    peak = (equity / (1 - limit + Decimal("1e-5"))).quantize(Decimal("0.01"))
    store.save_risk_memory(replace(memory, peak_equity=peak))
    store.close()
    end, state = run_ticks(config_path, START, 1)
    assert all(Decimal(p["qty"]) == 0 for p in json.loads(state)["positions"].values())
    store = open_store(config, create=True)
    idle = store.load_risk_memory()
    assert idle is not None
    assert idle.state is TradingState.REDUCING
    assert idle.state_reason.startswith(BUDGET_EXHAUSTED)
    store.post_command("resume", json.dumps({"reason": "accept the loss"}), end)
    store.close()
    end, state = run_ticks(config_path, end, 2)
    store = open_store(config, create=True)
    try:
        after = store.load_risk_memory()
        assert after is not None
        assert after.state is TradingState.ACTIVE, after.state_reason
        assert after.peak_equity < idle.peak_equity  # measured from the resume on
        assert "drawdown peak" in after.state_reason
        # Before: the resume reset nothing, and the next job found no room again.
        assert any(Decimal(p["qty"]) != 0 for p in json.loads(state)["positions"].values())
    finally:
        store.close()
