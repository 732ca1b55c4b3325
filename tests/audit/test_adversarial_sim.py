"""The decision path in simulation against markets and contracts it has not seen: crashes
inside one candle with mark and last diverging, gaps over missing data, spikes, zero
volatility, prices near the tick and far above any usual price, extreme funding, zero volume,
odd contract specifications. After every tick the invariants of
:mod:`tests.audit.invariants` must hold and the written report must agree with the run."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.domain.enums import EventKind
from bot.domain.instrument import Bracket
from bot.instruments import load_instruments
from tests.audit.harness import ROOT, Outcome, run, write_config
from tests.audit.market import T0, eight_hourly, walk, write_market
from tests.audit.scenarios import BTC, SCENARIOS, N

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


def simulate(tmp: Path, scenario: str, policy: str, mode: str, side: str) -> Outcome:
    """``scenario`` under ``policy``; stale data allowed for two hours (the gaps are longer)."""
    symbols = SCENARIOS[scenario](tmp / "data")
    config = write_config(
        tmp, tmp / "data", symbols, policy=policy, margin_mode=mode, direction=side, stale=7200
    )
    return run(config)


def assert_clean(outcome: Outcome) -> None:
    assert outcome.checker.ticks > 100
    assert outcome.problems == [], "\n".join(outcome.problems[:10])
    # Every increase is sized to the available balance: the venue refuses none for margin.
    refused = [
        e.reason
        for e in outcome.result.store.events
        if e.kind is EventKind.REJECTED and "margin is insufficient" in e.reason
    ]
    assert refused == [], refused[:5]


@pytest.mark.parametrize(("scenario", "policy", "mode", "side"), ROTATION)
def test_invariants_hold_in_every_scenario(
    tmp_path: Path, scenario: str, policy: str, mode: str, side: str
) -> None:
    assert_clean(simulate(tmp_path, scenario, policy, mode, side))


def covering(exhaustive: bool) -> list[tuple[str, str, str, str]]:
    """The combinations the slow run plays beyond :data:`ROTATION`.

    By default a covering design: each scenario in all four (margin mode, side) pairs, the
    policy taking turns (every policy with every scenario, every policy with every pair), about a
    third of the cross product: the cross product took seven minutes of CI's twenty. With
    ``BOT_TEST_EXHAUSTIVE=1``, every combination."""
    every: Iterable[tuple[str, str, str, str]]
    if exhaustive:
        every = itertools.product(SCENARIOS, POLICIES, MODES, SIDES)
    else:
        pairs = list(itertools.product(MODES, SIDES))
        every = (
            (name, POLICIES[(k + j) % len(POLICIES)], *pair)
            for k, name in enumerate(SCENARIOS)
            for j, pair in enumerate(pairs)
        )
    return [c for c in every if c not in ROTATION]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "policy", "mode", "side"),
    covering(os.environ.get("BOT_TEST_EXHAUSTIVE") == "1"),
)
def test_invariants_hold_in_every_combination(
    tmp_path: Path, scenario: str, policy: str, mode: str, side: str
) -> None:
    assert_clean(simulate(tmp_path, scenario, policy, mode, side))


@pytest.mark.parametrize("scenario", ["flat_3_days", "flat_always"])
def test_risk_parity_by_erc_through_a_market_that_stops_moving(
    tmp_path: Path, scenario: str
) -> None:
    """The shipped risk_parity (ERC) with windows the 12-day scenarios can fill: the
    covariance window (12 candles) is shorter than the volatility window (48), so it goes flat
    while the contract's volatility is still above zero. Before, the zero variance made
    ``erc_weights`` raise out of ``Engine.tick``: the simulation died without a report (live,
    every tick failed until the window moved on). Now it weighs by inverse volatility and says
    why."""
    text = (ROOT / "policies" / "risk_parity.toml").read_text()
    for old, new in (
        ("covariance_window = 720", "covariance_window = 12"),
        ("window = 720", "window = 48"),
    ):
        assert old in text
        text = text.replace(old, new)
    symbols = SCENARIOS[scenario](tmp_path / "data")
    config = write_config(tmp_path, tmp_path / "data", symbols, policy_text=text, stale=7200)
    outcome = run(config)
    assert_clean(outcome)
    reasons = [d.decision.reason for d in outcome.result.store.decisions]
    fallback = [r for r in reasons if "ERC needs a variance for every contract" in r]
    if scenario == "flat_3_days":
        assert fallback, "the covariance window never went flat"
        assert "no price change for BTC over the last 12 candles" in fallback[0]
        assert any(r.startswith("BTC: ERC weight") for r in reasons)  # before and after it


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["crash", "spike", "gap", "flat"]),
        st.integers(min_value=8 * 288, max_value=11 * 288),  # after the week of warm-up
        st.floats(min_value=0.05, max_value=0.6),
    ),
    min_size=1,
    max_size=3,
)


def _generated(
    data: Path, events: list[tuple[str, int, float]], seed: int, price0: float, mark_gap: float
) -> list[str]:
    trade = walk(N, price0, seed=seed, vol_per_bar=0.003)
    for kind, at, size in sorted(events, key=lambda e: e[1]):
        if kind == "crash":
            trade.crash_inside(at, size, recover=size / 3)
        elif kind == "spike":
            trade.spike_inside(at, size, give_back=size / 3)
        elif kind == "gap":
            trade.gap(at, int(size * 100), 1 - size if seed % 2 else 1 + size)
        else:
            trade.flat(at, at + int(size * 1000))
    mark = trade.copy()
    mark.low *= 1 - mark_gap  # the mark's wicks reach further than the last price's
    mark.high *= 1 + mark_gap
    write_market(data, BTC, trade, mark, eight_hourly(T0, int(trade.ts[-1]) + 300_000, 0.0002))
    return [BTC]


def _check_generated(
    events: list[tuple[str, int, float]],
    seed: int,
    price0: float,
    mark_gap: float,
    combo: tuple[str, str, str],
) -> Outcome:
    policy, mode, side = combo
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        symbols = _generated(root / "data", events, seed, price0, mark_gap)
        config = write_config(
            root, root / "data", symbols, policy=policy, margin_mode=mode, direction=side
        )
        outcome = run(config)
        assert_clean(outcome)
        return outcome


GENERATED = {
    "events": EVENTS,
    "seed": st.integers(min_value=0, max_value=10**6),
    "price0": st.sampled_from([0.0005, 0.2, 60_000.0, 2_000_000.0]),
    "mark_gap": st.sampled_from([0.0, 0.002, 0.05]),
    "combo": st.sampled_from(list(itertools.product(POLICIES, MODES, SIDES))),
}


@given(**GENERATED)
# Found by CI: a short closed at its entry price realised "-0.0000000000" (bot.numbers.unsigned).
@example(
    events=[("gap", 2304, 0.5)],
    seed=1,
    price0=0.2,
    mark_gap=0.0,
    combo=("vol_target", "cross", "short"),
)
@settings(max_examples=5, suppress_health_check=[HealthCheck.too_slow])
def test_generated_paths_with_crashes_and_gaps(
    events: list[tuple[str, int, float]],
    seed: int,
    price0: float,
    mark_gap: float,
    combo: tuple[str, str, str],
) -> None:
    _check_generated(events, seed, price0, mark_gap, combo)


@pytest.mark.slow
@given(**GENERATED)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_many_generated_paths_with_crashes_and_gaps(
    events: list[tuple[str, int, float]],
    seed: int,
    price0: float,
    mark_gap: float,
    combo: tuple[str, str, str],
) -> None:
    _check_generated(events, seed, price0, mark_gap, combo)


def _brackets(max_leverage: str, rate: str = "0.004") -> tuple[Bracket, ...]:
    return (Bracket(D(0), D(10**12), D(max_leverage), D(rate), D(0)),)


_BTC_SPEC = load_instruments("binanceusdm")[BTC]
ODD_CONTRACTS = {
    "step_above_the_target": replace(_BTC_SPEC, step_size=D(1), min_qty=D(1)),
    "min_notional_above_the_budget": replace(_BTC_SPEC, min_notional=D(10**6)),
    "brackets_below_the_policy": replace(_BTC_SPEC, brackets=_brackets("2")),
    "brackets_at_1x_with_20pct_maintenance": replace(_BTC_SPEC, brackets=_brackets("1", "0.2")),
    "tick_of_1000": replace(_BTC_SPEC, tick_size=D(1000)),
    "tick_of_7": replace(_BTC_SPEC, tick_size=D(7)),
    "price_filter_near_the_price": replace(_BTC_SPEC, min_price=D(55000), max_price=D(65000)),
    "fees_of_half_a_percent": replace(_BTC_SPEC, taker_fee=D("0.005"), liquidation_fee=D("0.02")),
    "steps_and_ticks_of_1e-8": replace(
        _BTC_SPEC, step_size=D("1e-8"), min_qty=D("1e-8"), tick_size=D("1e-8")
    ),
}


@pytest.mark.parametrize("contract", ODD_CONTRACTS)
@pytest.mark.parametrize(("policy", "mode", "side"), [("static_3x", "isolated", "short")])
def test_odd_contract_specifications(
    tmp_path: Path, contract: str, policy: str, mode: str, side: str
) -> None:
    symbols = SCENARIOS["crash_40"](tmp_path / "data")
    config = write_config(
        tmp_path, tmp_path / "data", symbols, policy=policy, margin_mode=mode, direction=side
    )
    outcome = run(config, instruments={BTC: ODD_CONTRACTS[contract]})
    assert_clean(outcome)
    refused = [e.reason for e in outcome.result.store.events if e.kind is EventKind.REJECTED]
    assert refused == []


@pytest.mark.parametrize("symbol", sorted(load_instruments("bybit")))
def test_bybit_catalogue_contracts(tmp_path: Path, symbol: str) -> None:
    price = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 600.0}[symbol.split("/")[0]]
    trade = walk(N, price, seed=8)
    trade.crash_inside(10 * 288, 0.3, 0.1)
    write_market(tmp_path / "data", symbol, trade, trade.copy(), None)
    config = write_config(
        tmp_path, tmp_path / "data", [symbol], exchange="bybit", margin_mode="cross"
    )
    outcome = run(config)
    assert outcome.checker.positions_seen > 0
    assert_clean(outcome)


@pytest.mark.parametrize("scenario", ["all_crash_35", "all_spike_40"])
@pytest.mark.parametrize(("mode", "side"), [("isolated", "long"), ("cross", "short")])
def test_the_hedged_policy_through_a_crash_and_a_squeeze(
    tmp_path: Path, scenario: str, mode: str, side: str
) -> None:
    # ETH, SOL and DOGE under vol_target_hedged, BTC the hedge leg (its own stop, margin and
    # liquidation price: the checker holds it to the same invariant as every position).
    symbols = [s for s in SCENARIOS[scenario](tmp_path / "data") if s != BTC]
    text = (ROOT / "policies" / "vol_target_hedged.toml").read_text()
    for old, new in (
        ("target_net_exposure = 0.5", "target_net_exposure = 0"),
        ("band = 0.5", "band = 0.1"),
        ("cooldown_minutes = 240", "cooldown_minutes = 60"),
    ):
        assert old in text
        text = text.replace(old, new)  # a hedge that trades: flat book exposure, tight band
    config = write_config(
        tmp_path,
        tmp_path / "data",
        symbols,
        policy_text=text,
        margin_mode=mode,
        direction=side,
        stale=7200,
    )
    outcome = run(config)
    assert BTC in outcome.result.hedge_symbols
    assert any(f.symbol == BTC for f in outcome.result.exchange.fills), "the hedge never traded"
    assert_clean(outcome)
