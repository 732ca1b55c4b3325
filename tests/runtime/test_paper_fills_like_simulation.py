"""Paper trading on recorded data fills as the dry run does under ``range_impact``: the paper
replay feed hands the simulated exchange the closed candle market orders and triggered stops pay
their square-root impact on, as the dry-run replay does (bot/sim/history.py ``set_lasts``).

Before, only the dry run handed it: on the same ticks, same orders, paper filled without the
impact term (ETH's first entry 2538.40 on paper, 2538.45 in the simulation).
"""

from __future__ import annotations

from pathlib import Path

from bot.backtest.replay import run_simulation
from bot.bootstrap import build_paper, open_store, replay_data
from bot.clock import SimClock
from bot.config.loader import load_config
from tests.runtime.conftest import write_config

HOUR = 3_600_000
TICKS = 12


def test_paper_replay_fills_like_the_simulation_under_range_impact(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert config.simulation.slippage_model == "range_impact"  # config.example.toml's
    data = replay_data(config, config.data.dir)
    sim = run_simulation(config, config.policies[0], window=(data.start, data.start + TICKS * HOUR))
    store = open_store(config, create=True)
    clock = SimClock(data.start)
    runner, paper = build_paper(config, store, replay=data, clock=clock)
    try:
        for k in range(TICKS):
            clock.advance_to(data.start + k * HOUR)
            runner.tick()
    finally:
        store.close()
    simulated = {f.client_id: (f.qty, f.price, f.fee) for f in sim.exchange.fills}
    on_paper = {f.client_id: (f.qty, f.price, f.fee) for f in paper.sim.fills}
    assert simulated  # the window trades
    assert on_paper == simulated
    assert paper.sim.slippage_paid == sim.exchange.slippage_paid
