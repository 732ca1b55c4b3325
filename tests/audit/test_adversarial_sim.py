"""The decision path in simulation against markets and contracts it has not seen: crashes
inside one candle with mark and last diverging, gaps over missing data, spikes, zero
volatility, prices near the tick and far above any usual price, extreme funding, zero volume,
odd contract specifications. After every tick the invariants of
:mod:`tests.audit.invariants` must hold and the written report must agree with the run."""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.domain.enums import EventKind
from bot.domain.instrument import Bracket
from bot.instruments import load_instruments
from tests.audit.harness import Outcome, run, write_config
from tests.audit.scenarios import BTC, PEPE, SCENARIOS

POLICIES = ("vol_target", "static_3x", "conservative")
MODES = ("isolated", "cross")
SIDES = ("long", "short")
# Every scenario once in the default run, the policy, margin mode and side taking turns.
ROTATION = [
    (name, *combo)
    for name, combo in zip(
        SCENARIOS, itertools.cycle(itertools.product(POLICIES, MODES, SIDES)), strict=False
    )
]


def simulate(tmp: Path, scenario: str, policy: str, mode: str, side: str, **kw: object) -> Outcome:
    symbols = SCENARIOS[scenario](tmp / "data")
    config = write_config(
        tmp, tmp / "data", symbols, policy=policy, margin_mode=mode, direction=side, **kw
    )
    return run(config)


def assert_clean(outcome: Outcome) -> None:
    assert outcome.checker.ticks > 100
    assert outcome.problems == [], "\n".join(outcome.problems[:10])


@pytest.mark.parametrize(("scenario", "policy", "mode", "side"), ROTATION)
def test_invariants_hold_in_every_scenario(
    tmp_path: Path, scenario: str, policy: str, mode: str, side: str
) -> None:
    assert_clean(simulate(tmp_path, scenario, policy, mode, side, stale=7200))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "policy", "mode", "side"),
    [c for c in itertools.product(SCENARIOS, POLICIES, MODES, SIDES) if c not in ROTATION],
)
def test_invariants_hold_in_every_combination(
    tmp_path: Path, scenario: str, policy: str, mode: str, side: str
) -> None:
    assert_clean(simulate(tmp_path, scenario, policy, mode, side, stale=7200))
