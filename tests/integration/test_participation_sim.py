"""The volume participation cap through the whole engine on the bundled data: a 50,000,000 USDT
book (3 contracts, vol_target) whose entries are a large share of an hour's volume.

With the cap every entry order of a tick stays within ``max_participation`` x the mean hourly
volume of the week before it, the impact the simulated exchange charges (square-root law on the
candle's volume) is lower, and the book still reaches its leverage over the following ticks
instead of staying stuck under the rebalance tolerance.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import numpy as np

from bot.backtest.replay import SimulationResult, load_data, run_simulation
from bot.backtest.report import build_report
from bot.config.loader import load_config
from bot.config.policy import Policy
from bot.domain.enums import OrderPurpose
from bot.marketdata.files import discover

ROOT = Path(__file__).resolve().parents[2]
BALANCE = D(50_000_000)
PARTICIPATION = D("0.002")
HOUR = 3_600_000


def _run(participation: D | None) -> SimulationResult:
    config = load_config(ROOT / "config.example.toml")
    config = config.model_copy(
        update={
            "account": config.account.model_copy(update={"starting_balance": BALANCE}),
            # The example's 50,000 notional cap would bind long before the volume does.
            "risk": config.risk.model_copy(update={"max_notional_per_contract": BALANCE * 10}),
            "simulation": config.simulation.model_copy(
                update={"start": date(2025, 8, 1), "end": date(2025, 8, 14)}
            ),
        }
    )
    policy = config.policies[0]
    data = policy.model_dump()
    data["orders"] = {**data["orders"], "max_participation": participation}
    return run_simulation(config, Policy.model_validate(data))


def test_the_cap_bounds_every_entry_cuts_the_impact_and_still_builds_the_book() -> None:
    free = _run(None)
    capped = _run(PARTICIPATION)
    window = capped.policy.volatility.window
    inventory = discover(ROOT / "data" / "sample")
    entries: dict[tuple[str, int], D] = defaultdict(D)
    for rec in capped.store.orders.values():
        if rec.request.purpose is OrderPurpose.ENTRY:
            entries[(rec.request.symbol, rec.created_ms)] += rec.request.amount or D(0)
    assert entries
    hourly = {s: inventory.load_candles(s, "1h") for s in capped.symbols}
    for (symbol, ts), amount in entries.items():
        c = hourly[symbol]
        end = int(np.searchsorted(c.ts, ts - HOUR, side="right"))  # candles closed at ts
        mean = float(c.volume[end - window : end].sum()) / window
        assert float(amount) <= float(PARTICIPATION) * mean * (1 + 1e-9), (symbol, ts)
    assert any("max participation" in r.decision.reason for r in capped.store.decisions)
    assert not any("max participation" in r.decision.reason for r in free.store.decisions)
    # Free, the first tick buys the whole book: larger than the cap allows.
    first = min(ts for _, ts in entries)
    free_first = sum(
        (
            r.request.amount or D(0)
            for r in free.store.orders.values()
            if r.request.purpose is OrderPurpose.ENTRY and r.created_ms == first
        ),
        D(0),
    )
    capped_first = sum((a for (_, ts), a in entries.items() if ts == first), D(0))
    assert free_first > 2 * capped_first
    a, b = build_report(free, 0.0), build_report(capped, 0.0)
    assert b["slippage_paid"] < a["slippage_paid"]
    # Worked over the ticks, the book reaches the leverage the free run took at once.
    assert b["max_leverage"] >= D("0.85") * D(str(a["max_leverage"]))


def test_a_contract_without_volume_takes_no_entry_and_the_others_trade() -> None:
    """BTC's decision candles carry no volume (a feed that reports none): with the cap on it
    is not read as "no limit": BTC is never entered, its decisions say why; ETH and SOL trade."""
    config = load_config(ROOT / "config.example.toml")
    config = config.model_copy(
        update={
            "risk": config.risk.model_copy(update={"max_notional_per_contract": D(10**9)}),
            "simulation": config.simulation.model_copy(
                update={"start": date(2025, 8, 1), "end": date(2025, 8, 4)}
            ),
        }
    )
    data = config.policies[0].model_dump()
    data["orders"] = {**data["orders"], "max_participation": D("0.05")}
    policy = Policy.model_validate(data)
    symbols = tuple(c.symbol for c in config.contracts)
    histories = load_data(config, policy, symbols)
    btc = histories["BTC/USDT:USDT"]
    btc.decision = replace(btc.decision, volume=np.zeros(len(btc.decision)))
    result = run_simulation(config, policy, symbols=symbols, histories=histories)
    entered = {
        r.request.symbol
        for r in result.store.orders.values()
        if r.request.purpose is OrderPurpose.ENTRY
    }
    assert entered == {"ETH/USDT:USDT", "SOL/USDT:USDT"}
    btc_reasons = [
        r.decision.reason for r in result.store.decisions if r.decision.symbol == btc.symbol
    ]
    assert btc_reasons
    assert all("volume unknown -> no increase" in reason for reason in btc_reasons)
