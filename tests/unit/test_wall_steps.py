"""bot.clock.WallSteps: a step of the wall clock is the wall time elapsed disagreeing with the
monotonic time elapsed, either way, by more than the threshold; simulated and replayed clocks
never step."""

from __future__ import annotations

from bot.clock import SimClock, WallSteps
from tests.runtime.test_scheduler_faults import SteppedWall


def test_a_step_either_way_beyond_the_threshold_is_reported_once() -> None:
    wall = SteppedWall()
    steps = WallSteps(wall, threshold_s=1.0)  # type: ignore[arg-type]
    wall.run(60)
    assert steps.step_ms() == 0  # a minute on both clocks
    wall.run(60, wall_step_s=-0.5)
    assert steps.step_ms() == 0  # within the threshold
    wall.run(60, wall_step_s=-3600)
    assert steps.step_ms() == -3_600_000  # an hour back
    assert steps.step_ms() == 0  # reported once: measured from the last reading
    wall.run(60, wall_step_s=2)
    assert steps.step_ms() == 2_000  # forward too


def test_a_simulated_clock_never_steps() -> None:
    clock = SimClock(1_750_000_000_000)
    steps = WallSteps(clock)
    clock.advance_to(1_750_000_000_000 + 86_400_000)
    assert steps.step_ms() == 0
