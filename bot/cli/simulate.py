"""``bot simulate``: replay history through the simulated exchange and report."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bot.backtest.metrics import drawdown_series
from bot.backtest.plots import plot_comparison
from bot.backtest.replay import SimulationResult, run_simulation, shared_start
from bot.backtest.report import write_outputs
from bot.cli import terminal
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.errors import ConfigError

SUMMARY_KEYS = (
    ("final_equity", "final equity", "{:,.2f}"),
    ("total_return", "total return", "{:.2%}"),
    ("buy_and_hold_return", "buy & hold 1x", "{:.2%}"),
    ("cagr", "CAGR", "{:.2%}"),
    ("max_drawdown", "max drawdown", "{:.2%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("calmar", "Calmar", "{:.2f}"),
    ("avg_leverage", "avg leverage", "{:.2f}"),
    ("max_leverage", "max leverage", "{:.2f}"),
    ("n_orders", "orders", "{}"),
    ("n_trades", "fills", "{}"),
    ("n_stop_losses", "stop-losses", "{}"),
    ("n_take_profits", "take-profits", "{}"),
    ("n_liquidations", "liquidations", "{}"),
    ("fees_paid", "fees paid", "{:,.2f}"),
    ("slippage_paid", "slippage paid", "{:,.2f}"),
    ("time_in_market", "time in market", "{:.1%}"),
    ("halted_at", "halted at", "{}"),
    ("time_halted", "time halted", "{:.1%}"),
    ("n_denials", "denials", "{}"),
    ("top_denial", "most common denial", "{}"),
    ("funding_paid", "funding paid", "{:,.2f}"),
    ("elapsed_seconds", "elapsed s", "{:.2f}"),
)


def override(config: BotConfig, start: date | None, end: date | None) -> BotConfig:
    sim = config.simulation
    changes: dict[str, Any] = {}
    if start is not None:
        changes["start"] = start
    if end is not None:
        changes["end"] = end
    if not changes:
        return config
    new_sim = sim.model_copy(update=changes)
    if new_sim.start is not None and new_sim.end is not None and new_sim.start >= new_sim.end:
        raise ConfigError(f"--start {new_sim.start} must be before --end {new_sim.end}")
    return config.model_copy(update={"simulation": new_sim})


def run(
    config_path: Path,
    policies: list[Path],
    data_dir: Path | None,
    contracts: str | None,
    start: date | None,
    end: date | None,
    out: Path | None,
    console: Console,
    *,
    as_csv: bool = False,
    shared_window: bool = True,
) -> list[dict[str, Any]]:
    config = override(load_config(config_path, policy_overrides=policies), start, end)
    symbols = tuple(s.strip() for s in contracts.split(",") if s.strip()) if contracts else None
    if data_dir is not None and not data_dir.is_dir():
        raise ConfigError(f"--data {data_dir}: not a directory")
    out_dir = out or config.simulation.out_dir
    several = len(config.policies) > 1
    clock = LiveClock()
    reports: list[dict[str, Any]] = []
    results: dict[str, SimulationResult] = {}
    # Policies compared in one run share one window: the latest warm-up decides.
    common = shared_start(config, symbols, data_dir) if several and shared_window else None
    for policy in config.policies:
        t0 = clock.monotonic()
        with terminal.progress(console, f"{policy.name} (ticks)") as advance:
            result = run_simulation(
                config,
                policy,
                symbols=symbols,
                data_dir=data_dir,
                progress=advance,
                not_before=common,
            )
        if result.start_note:
            console.print(f"[yellow]warning[/yellow] {policy.name}: {result.start_note}")
        elapsed = clock.monotonic() - t0
        target = out_dir / policy.name if several else out_dir
        reports.append(write_outputs(result, target, elapsed))
        results[policy.name] = result
    if several:
        first = next(iter(results.values()))
        plot_comparison(
            out_dir / "comparison.png",
            title="policies compared on the same data and window"
            if common is not None
            else "policies compared on the same data, each from its own warm-up",
            runs={n: (r.ts, r.equity, drawdown_series(r.equity)) for n, r in results.items()},
            benchmark=(first.ts, first.benchmark),
        )
    if as_csv:  # stdout is the CSV alone; the notes go to stderr
        typer.echo(terminal.table_csv(summary_table(reports)), nl=False)
    else:
        console.print(terminal.unclipped(summary_table(reports)))
    for name, hours in reports[0].get("stale_hours", {}).items():
        console.print(f"[yellow]stale data[/yellow] {name}: {hours:g} h without new exposure")
    for name, gaps in reports[0].get("data_gaps", {}).items():
        for start, end in gaps:  # never bridged: no price, no trigger, stale data to the gate
            note = f"data gap {name}: {start} .. {end}"
            if as_csv:
                typer.echo(note, err=True)
            else:
                console.print(f"[yellow]{note}[/yellow]")
    if as_csv:
        typer.echo(f"outputs written to {out_dir}", err=True)
    else:
        console.print(f"outputs written to [bold]{out_dir}[/bold]")
    return reports


def summary_table(reports: list[dict[str, Any]]) -> Table:
    first = reports[0]
    table = Table(
        title=f"simulation {first['start'][:10]} .. {first['end'][:10]}: "
        f"{', '.join(first['contracts'])}"
    )
    table.add_column("metric")
    for r in reports:
        table.add_column(str(r["policy"]), justify="right")
    for key, label, fmt in SUMMARY_KEYS:
        table.add_row(label, *[fmt.format(r[key]) for r in reports])
    return table
