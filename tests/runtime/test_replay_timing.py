"""``bot run --replay`` decides where ``bot simulate`` does: at each candle close of the replayed
data, on the prices of that close, through the real scheduler (APScheduler) at any ``--speed``.

The replayed clock once ran on with the wall clock: each tick decided as late as the start-up and
the jobs before it took, times the speed (minutes after the close at 1200x, about an hour at
3600x under load), almost every decision differed from the simulation's, most entries were
refused by the paper venue as "a hole in its market data" (its quote had expired), and a restart
moved the tick grid to where it happened, deciding one candle twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.backtest.replay import run_simulation
from bot.bootstrap import build_paper, open_store, replay_data
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import EventKind, OrderStatus
from bot.runtime.scheduler import ScheduledRun, Stopper, run_scheduled
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

HOUR_MS = 3_600_000
START_MS = 1_748_822_400_000  # 2025-06-02T00:00Z, the configured start
ALL = 1_000_000


def replay_config(directory: Path, *, end: str) -> BotConfig:
    """The example configuration on the bundled sample, to ``end``, with fixed slippage (the
    paper venue's fills then equal the simulated venue's)."""
    path = write_config(directory)
    text = path.read_text()
    text = text.replace("end = 2025-09-30", f"end = {end}", 1)
    text = text.replace('slippage_model = "range_impact"', 'slippage_model = "fixed"', 1)
    path.write_text(text)
    return load_config(path)


def run_replay(config: BotConfig, speed: float, max_ticks: int | None = None) -> ScheduledRun:
    """``bot run --replay`` in process: the paper runner on the replayed data, on the scheduler,
    until the data ends (or ``max_ticks``); the paper account saved as at a clean stop."""
    store = open_store(config, create=True)
    try:
        runner, paper = build_paper(
            config, store, replay=replay_data(config, config.data.dir), speed=speed
        )
        try:
            return run_scheduled(
                runner,
                clock=runner.clock,
                tf_ms=HOUR_MS,
                speed=speed,
                guard_seconds=config.runtime.guard_seconds,
                max_ticks=max_ticks,
                stopper=Stopper(),
                live_time=False,
            )
        finally:
            paper.save()
    finally:
        store.close()


def decisions(store: SqlStore) -> list[tuple[int, str, object, object, object, object, str]]:
    return sorted(
        (
            r.ts_ms,
            r.decision.symbol,
            r.decision.target_leverage,
            r.decision.target_qty,
            r.decision.stop_loss,
            r.decision.take_profit,
            r.decision.reason,
        )
        for r in store.recent_decisions(ALL)
    )


@pytest.mark.slow
def test_a_fast_replay_decides_and_orders_as_the_simulation(tmp_path: Path) -> None:
    # 100 replayed hours a wall second: far faster than the bot ticks, so every tick runs late
    # (the replay says so and counts them); each still decides at its candle's close.
    config = replay_config(tmp_path, end="2025-06-03")
    got = run_replay(config, speed=360_000)
    sim = run_simulation(config, config.policies[0])

    store = SqlStore.open(config.runtime.database_url)
    try:
        # (the simulation's last point is the run's end, after its last decision: no tick)
        decided = [int(t) for t in sim.ts[: sim.decision_ticks]]
        assert got.ticks == sim.decision_ticks == 48
        assert got.skipped == 0
        ticked = sorted({r.ts_ms for r in store.recent_decisions(ALL)})
        assert ticked == decided  # every candle close, once, none between
        expected = sorted(
            (
                r.ts_ms,
                r.decision.symbol,
                r.decision.target_leverage,
                r.decision.target_qty,
                r.decision.stop_loss,
                r.decision.take_profit,
                r.decision.reason,
            )
            for r in sim.store.decisions
        )
        assert decisions(store) == expected
        orders = {o.client_id: o.request for o in store.recent_orders(ALL)}
        assert orders == {cid: o.request for cid, o in sim.store.orders.items()}
        assert orders  # (the window trades)
        refused = [
            o for o in store.recent_orders(ALL) if o.status is OrderStatus.REJECTED
        ] + store.recent_events(ALL, kinds=(EventKind.REJECTED,))
        assert refused == []  # no market order met an expired quote ("a hole in its data")
    finally:
        store.close()


def test_a_restarted_replay_goes_on_at_the_next_close_and_decides_no_candle_twice(
    tmp_path: Path,
) -> None:
    # One replayed hour a wall second, the README's --speed: stopped after two ticks, started
    # again (as after a kill or a SIGTERM), two more.
    config = replay_config(tmp_path, end="2025-06-03")
    assert run_replay(config, speed=3600, max_ticks=2).ticks == 2
    assert run_replay(config, speed=3600, max_ticks=2).ticks == 2

    store = SqlStore.open(config.runtime.database_url)
    try:
        ticks: dict[int, set[str]] = {}
        for r in store.recent_decisions(ALL):
            ticks.setdefault(r.ts_ms, set()).add(r.tick_id)
        assert sorted(ticks) == [START_MS + k * HOUR_MS for k in range(4)]
        assert all(len(ids) == 1 for ids in ticks.values())  # one decision tick per candle
    finally:
        store.close()
