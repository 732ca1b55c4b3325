"""The walk-forward's out-of-sample curve is one run through every TEST period: each window's
choice decides from its TEST start on the same account, as when a trader restarts the bot with
the newly chosen policy file (``replay``'s ``switches``). Before, each TEST period was a run of
its own from a flat account, stitched: every window re-entered (fees, slippage), and a halt or
a stop's cooldown ended with its window."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from bot.backtest.metrics import daily_closes, max_drawdown
from bot.backtest.replay import _instruments, load_data, override, replay, run_simulation
from bot.backtest.report import build_report
from bot.config.loader import load_config
from bot.config.policy import Policy
from bot.engine.tick import Engine
from bot.errors import ConfigError
from bot.research import space
from bot.research.executors import InlineExecutor
from bot.research.space import parse_param
from bot.research.sweep import Sweep, SweepSpec
from bot.research.walkforward import parse_walk_forward
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import simulation_window
from tests.research.helpers import DAY_MS, ROOT, sample_config, write_regimes

T = TypeVar("T")
R = TypeVar("R")
STATIC = ROOT / "policies" / "static_3x.toml"
BTC = "BTC/USDT:USDT"


def _spec(tmp: Path, data: Path, values: str, **kw: Any) -> SweepSpec:
    base: dict[str, Any] = {
        "config_path": sample_config(tmp, data_dir=data, window=False),
        "base_policy": STATIC,
        "params": [parse_param(f"leverage.fixed={values}"), parse_param("leverage.min=1")],
        "out": tmp / "wf",
        "objective": "total_return",
        "walk_forward": parse_walk_forward("10:10"),
        "contracts": (BTC,),
    }
    base.update(kw)
    return SweepSpec(**base)


def _curve(out: Path, key: str) -> tuple[list[int], list[float]]:
    lines = (out / "curves" / (key.replace(":", "-") + ".csv")).read_text().splitlines()[1:]
    return [int(x.split(",")[0]) for x in lines], [float(x.split(",")[1]) for x in lines]


def test_one_choice_in_every_window_is_bot_simulate_over_the_test_span(tmp_path: Path) -> None:
    """Every window chooses the one point: the out-of-sample run is ``bot simulate`` of that
    point from the first TEST start to the last TEST end, to the last digit."""
    data = tmp_path / "data"
    write_regimes(data, [1, -1, 1, -1], regime_days=10, warm_days=8)
    spec = _spec(tmp_path, data, "2")
    sweep = Sweep(spec, InlineExecutor())
    outcome = sweep.run()
    assert outcome.summary["out_of_sample_method"] == "one run"
    windows = outcome.summary["windows"]
    first, last = windows[0]["test"].split("..")[0], windows[-1]["test"].split("..")[1]
    [key] = [
        line.split(",")[0]
        for line in (spec.out / "results.csv").read_text().splitlines()
        if line.startswith("oos:")
    ]
    assert outcome.best_point is not None
    policy = Policy.model_validate(sweep.policy_of(outcome.best_point)[0])
    config = override(
        load_config(spec.config_path), date.fromisoformat(first), date.fromisoformat(last)
    )
    config = config.model_copy(update={"policies": (policy,)})
    alone = run_simulation(config, policy, symbols=(BTC,))
    # (the run's last point is the account at its end: the close of its last day)
    days, closes = daily_closes(alone.equity, alone.ts, closing=True)
    assert _curve(spec.out, key) == (days.tolist(), closes.tolist())
    # The headline drawdown is the run's own, tick by tick, as `bot simulate` reports it; the
    # daily closes of its curve miss a fall inside a day (here: they showed less).
    oos = outcome.summary["out_of_sample"]
    ticked = build_report(alone, 0.0)["max_drawdown"]
    assert ticked > max_drawdown(closes)  # (the case this test data makes)
    # (here the run's deepest point is its end, which its last daily close holds too: the
    # curve's own figure, unrounded, is the run's to the report's six places)
    assert oos["max_drawdown"] == pytest.approx(ticked, abs=5e-7)
    assert int(np.argmax(alone.drawdown())) == alone.decision_ticks
    assert oos["calmar"] == pytest.approx(oos["cagr"] / oos["max_drawdown"], rel=1e-12)
    # the stitched TEST runs would have re-entered at every window: more trades
    run = outcome.summary["out_of_sample_run"]
    tests = [r for r in outcome.rows if r["phase"] == "test"]
    assert run["n_trades"] < sum(int(r["n_trades"]) for r in tests)


def _parts(tmp_path: Path) -> tuple[Any, Policy, dict[str, Any], dict[str, Any], int, int]:
    data = tmp_path / "data"
    write_regimes(data, [1, -1, 1], regime_days=10, warm_days=8)
    config = load_config(sample_config(tmp_path, data_dir=data, window=False))
    policy = Policy.model_validate(space.read_base(STATIC))
    config = config.model_copy(update={"policies": (policy,)})
    histories = load_data(config, policy, (BTC,))
    instruments = _instruments(config, (BTC,))
    start, end = simulation_window(histories, policy, config)
    return config, policy, histories, instruments, start, end


def test_a_switch_keeps_the_position_and_resizes_it(tmp_path: Path) -> None:
    config, policy, histories, instruments, start, end = _parts(tmp_path)
    lower = Policy.model_validate(
        space.apply(space.read_base(STATIC), {"leverage.fixed": Decimal(1), "leverage.min": 1})
    )
    at = start + 10 * DAY_MS
    held: list[tuple[int, Decimal]] = []

    def watch(t: int, engine: Engine, exchange: SimulatedExchange) -> None:
        held.append((t, exchange.book.positions[BTC].qty))

    run = replay(
        config, policy, histories, instruments, start, end, after_tick=watch, switches=[(at, lower)]
    )
    before = [q for t, q in held if t < at]
    after = [q for t, q in held if t >= at]
    # held through the switch: the new policy resizes the position, it does not start flat
    assert before[-1] > 0
    assert after[0] > 0
    reasons = [(d.ts_ms, d.decision.reason) for d in run.store.decisions]
    assert all("static 3x" in r for t, r in reasons if t < at)
    assert all("static 1x" in r for t, r in reasons if t >= at)
    assert any(t >= at for t, _ in reasons)
    # a switch to the same policy is a restart that changes nothing
    same = replay(config, policy, histories, instruments, start, end, switches=[(at, policy)])
    plain = replay(config, policy, histories, instruments, start, end)
    assert same.equity.tolist() == plain.equity.tolist()


def test_a_switch_before_a_late_start_decides_from_the_start(tmp_path: Path) -> None:
    """The run starts later than the first switch (its warm-up or its data): the latest
    policy due by then decides from the start, not the one before it."""
    config, policy, histories, instruments, start, end = _parts(tmp_path)
    lower = Policy.model_validate(
        space.apply(space.read_base(STATIC), {"leverage.fixed": Decimal(1), "leverage.min": 1})
    )
    run = replay(
        config, policy, histories, instruments, start, end, switches=[(start - DAY_MS, lower)]
    )
    assert run.store.decisions
    assert all("static 1x" in d.decision.reason for d in run.store.decisions)


def test_a_switch_to_another_timeframe_is_refused(tmp_path: Path) -> None:
    config, policy, histories, instruments, start, end = _parts(tmp_path)
    other = policy.model_copy(update={"timeframe": "4h"})
    with pytest.raises(ConfigError, match="one timeframe"):
        replay(
            config, policy, histories, instruments, start, end, switches=[(start + DAY_MS, other)]
        )


class FailingRunExecutor(InlineExecutor):
    """Runs every task in process; the out-of-sample run's fails (a worker lost twice)."""

    def run(
        self, fn: Callable[[T], R], tasks: Iterable[T], failed: Callable[[T, str], R]
    ) -> Iterator[R]:
        for task in tasks:
            if str(getattr(task, "key", "")).startswith("oos:"):
                yield failed(task, "worker lost")
            else:
                yield fn(task)


def test_a_failed_out_of_sample_run_falls_back_to_the_stitched_test_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_regimes(data, [1, -1, 1], regime_days=10, warm_days=8)
    spec = _spec(tmp_path, data, "1,3")
    outcome = Sweep(spec, FailingRunExecutor()).run()
    assert outcome.summary["out_of_sample_method"] == "stitched"
    [note] = outcome.summary["out_of_sample_notes"]
    assert "the out-of-sample run failed (worker lost)" in note
    assert "out_of_sample_run" not in outcome.summary
    assert outcome.summary["out_of_sample"]["total_return"] is not None
    # resumed: the failed run is run again (a failed row is not a finished one)
    again = Sweep(spec, InlineExecutor()).run()
    assert again.summary["out_of_sample_method"] == "one run"
