"""Run one scenario through the real simulation with the invariants checked after every tick."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.backtest.replay import SimulationResult, replay
from bot.backtest.report import write_outputs
from bot.config.loader import load_config
from bot.domain.instrument import Instrument
from bot.instruments import load_instruments
from bot.marketdata.files import discover
from bot.sim.history import load_histories, simulation_window
from tests.audit.invariants import TickChecker, check_report

ROOT = Path(__file__).resolve().parents[2]

RISK = """
[risk]
max_leverage_per_contract = {max_lev}
max_gross_leverage = {max_gross}
max_notional_per_contract = {max_notional}
daily_loss_limit = {daily_loss}
max_drawdown = {max_drawdown}
stale_data_seconds = {stale}
max_orders_per_minute = 60
on_daily_loss = "{on_daily_loss}"
"""


class _NoCharts:
    """The report's chart is not what is checked here: not drawn (matplotlib is slow)."""

    def draw(self, name: str, path: Path, **kwargs: Any) -> None:
        del name, path, kwargs

    def finish(self) -> None:
        return None


@dataclass
class Outcome:
    result: SimulationResult
    checker: TickChecker
    report_problems: list[str]

    @property
    def problems(self) -> list[str]:
        return self.checker.problems + self.report_problems


def write_config(
    tmp: Path,
    data: Path,
    symbols: list[str],
    *,
    policy: str = "vol_target",
    policy_text: str | None = None,
    exchange: str = "binanceusdm",
    margin_mode: str = "isolated",
    balance: float = 10_000,
    direction: str | Mapping[str, str] = "long",
    max_notional: float = 1_000_000,
    daily_loss: float = 0.05,
    max_drawdown: float = 0.25,
    stale: int = 900,
    on_daily_loss: str = "halted",
    start: str | None = None,
    slippage_model: str = "range_impact",
    max_lev: float = 5,
    max_gross: float = 6,
    trigger_source: str = "auto",
    end: str | None = None,
) -> Path:
    if policy_text is not None:
        (tmp / "policy.toml").write_text(policy_text)
        policy_file = tmp / "policy.toml"
    else:
        policy_file = ROOT / "policies" / f"{policy}.toml"
    # One direction for every contract, or one per contract.
    sides = {s: direction for s in symbols} if isinstance(direction, str) else direction
    contracts = "".join(
        f'\n[[contracts]]\nsymbol = "{s}"\ndirection = "{sides[s]}"\n' for s in symbols
    )
    text = f"""
[account]
name = "audit"
starting_balance = {balance}
margin_mode = "{margin_mode}"
{contracts}
[data]
dir = "{data}"
exchange = "{exchange}"

[policy]
file = "{policy_file}"
{
        RISK.format(
            max_notional=max_notional,
            daily_loss=daily_loss,
            max_drawdown=max_drawdown,
            stale=stale,
            on_daily_loss=on_daily_loss,
            max_lev=max_lev,
            max_gross=max_gross,
        )
    }
[simulation]
slippage_bps = 2
slippage_model = "{slippage_model}"
trigger_source = "{trigger_source}"
{f"start = {start}" if start else ""}
{f"end = {end}" if end else ""}

[runtime]
database_url = "sqlite:///{tmp / "state.db"}"
log_dir = "{tmp / "logs"}"
"""
    path = tmp / "config.toml"
    path.write_text(text)
    return path


def run(
    config_path: Path,
    *,
    instruments: Mapping[str, Instrument] | None = None,
    out: Path | None = None,
    checker: type[TickChecker] = TickChecker,
) -> Outcome:
    """Simulate ``config_path``'s first policy, checking every tick (with ``checker``, a
    :class:`TickChecker` or a subclass checking more); ``instruments`` replace the catalogue's
    specifications of those contracts."""
    config = load_config(config_path)
    policy = config.policies[0]
    symbols = tuple(c.symbol for c in config.contracts)
    if policy.hedge is not None:
        symbols += tuple(s for s in policy.hedge.instruments if s not in symbols)
    known = load_instruments(config.data.exchange)
    specs = {s: known[s] for s in symbols if s in known}
    specs.update(instruments or {})
    histories = load_histories(
        discover(config.data.dir), symbols, policy.timeframe, config.simulation.trigger_source
    )
    start, end = simulation_window(histories, policy, config)
    ticks = checker(config.account.starting_balance)
    result = replay(config, policy, histories, specs, start, end, after_tick=ticks)
    out = out or config_path.parent / "out"
    try:
        write_outputs(result, out, 0.0, charts=_NoCharts())
    except Exception as exc:
        return Outcome(result, ticks, [f"report: {type(exc).__name__}: {exc}"])
    return Outcome(result, ticks, check_report(result, out))
