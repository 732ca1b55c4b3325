"""The risk gate's order rate when the host clock steps (NTP after a drift, a VM resumed with a
wrong clock): the engine hands the gate the clock's monotonic time, so a step of the wall clock
neither frees nor blocks orders (the counting itself: tests/unit/test_risk.py)."""

from __future__ import annotations

from pathlib import Path

from bot.bootstrap import build_paper, open_store
from bot.config.loader import load_config
from bot.domain.orders import OrderRequest
from bot.risk.gate import OrderContext, RiskGate, Verdict
from tests.runtime.conftest import write_config
from tests.runtime.test_alerts_clock_steps import SteppingClock

START = 1_748_822_400_000  # 2025-06-02T00:00Z


class RecordingGate(RiskGate):
    """The real gate, noting the times each order was judged on (a hand-written fake)."""

    def __init__(self, gate: RiskGate) -> None:
        super().__init__(gate.limits)
        self.times: list[tuple[int, int]] = []

    def check(self, req: OrderRequest, ctx: OrderContext) -> Verdict:
        self.times.append((ctx.now_ms, ctx.monotonic_ms))
        return super().check(req, ctx)


def test_the_engine_counts_the_order_rate_on_the_clocks_monotonic_time(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    clock = SteppingClock(START)
    try:
        runner, _paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        gate = runner.engine.gate = RecordingGate(runner.engine.gate)
        assert runner.tick() is not None
        assert gate.times, "no order was judged; the test would prove nothing"
        assert set(gate.times) == {(START, 1_000_000)}  # SteppingClock's monotonic 1000.0 s
    finally:
        store.close()
