"""``bot simulate``: replay history through the simulated exchange and report."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bot.backtest.charts import Charts, HelperCharts, LocalCharts, start_charts
from bot.backtest.hedged import HEDGE_SUMMARY_KEYS, add_hedge_outputs, run_with_and_without_hedge
from bot.backtest.replay import override
from bot.backtest.report import write_outputs
from bot.cli import terminal
from bot.clock import LiveClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.errors import ConfigError
from bot.outputs import staged_dir

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
    charts: HelperCharts | LocalCharts | None = None,
) -> list[dict[str, Any]]:
    """``bot simulate``. ``charts``: where the charts are drawn (the command passes a helper it
    started first thing); by default a helper started here."""
    # The charts' helper process starts first: it imports matplotlib while this one simulates.
    owned = start_charts() if charts is None else nullcontext(charts)  # the caller's: it stops it
    with owned as charts:
        config = override(load_config(config_path, policy_overrides=policies), start, end)
        symbols = tuple(s.strip() for s in contracts.split(",") if s.strip()) if contracts else None
        if data_dir is not None and not data_dir.is_dir():
            raise ConfigError(f"--data {data_dir}: not a directory")
        out_dir = out or config.simulation.out_dir
        # The output directory is checked (created) before the simulation, not found unusable
        # after it. The files are written into a hidden directory inside it and moved into
        # place once all are written: a run that fails (the second of two policies, a chart)
        # leaves none of them, and files there it does not write are kept. The chart helper is
        # stopped before that directory is removed, or it would draw into it anew.
        with staged_dir(out_dir, "--out", before_discard=charts.stop) as work:
            if len(config.policies) > 1:
                reports = _compare(
                    config_path, config, policies, symbols, data_dir, work, console, charts
                )
            else:
                reports = [_simulate(config, symbols, data_dir, work, console, charts)]
            # The table is printed while the helper draws the last chart; that the outputs are
            # written is said once they are.
            _print_summary(reports, console, as_csv)
            stand_ins = _stand_in_note(config, symbols, data_dir)
            charts.finish()
    if as_csv:
        typer.echo(f"outputs written to {out_dir}", err=True)
    else:
        console.print(f"outputs written to [bold]{out_dir}[/bold]")
    if stand_ins is not None:
        if as_csv:
            typer.echo(stand_ins, err=True)
        else:
            console.print(f"[yellow]{stand_ins}[/yellow]", soft_wrap=True)
    return reports


def _simulate(
    config: BotConfig,
    symbols: tuple[str, ...] | None,
    data_dir: Path | None,
    out_dir: Path,
    console: Console,
    charts: Charts,
) -> dict[str, Any]:
    policy = config.policies[0]
    clock = LiveClock()
    t0 = clock.monotonic()
    with terminal.progress(console, f"{policy.name} (ticks)") as advance:
        pair = run_with_and_without_hedge(
            config, policy, symbols=symbols, data_dir=data_dir, progress=advance
        )
    report = write_outputs(pair.hedged, out_dir, clock.monotonic() - t0, charts)
    return add_hedge_outputs(pair, out_dir, report, charts)


def _stand_in_note(
    config: BotConfig, symbols: tuple[str, ...] | None, data_dir: Path | None
) -> str | None:
    from bot.catalogue import stand_in_warning

    syms = symbols or tuple(c.symbol for c in config.contracts)
    return stand_in_warning(config.data.exchange, syms, data_dir or config.data.dir)


def _compare(
    config_path: Path,
    config: BotConfig,
    policies: list[Path],
    symbols: tuple[str, ...] | None,
    data_dir: Path | None,
    out_dir: Path,
    console: Console,
    charts: Charts,
) -> list[dict[str, Any]]:
    """Several policies: one common window, run in parallel (bot.research.compare)."""
    from bot.research.compare import as_arrays, run_policies
    from bot.research.executors import default_workers, make_executor

    syms = symbols or tuple(c.symbol for c in config.contracts)
    executor = make_executor(min(len(policies), default_workers()), None)
    try:
        with console.status(f"simulating {len(policies)} policies on one window ..."):
            runs = run_policies(config_path, config, policies, syms, data_dir, out_dir, executor)
    finally:
        executor.close()
    first = runs[0]
    charts.draw(
        "plot_comparison",
        out_dir / "comparison.png",
        title="policies compared on the same data",
        runs={r["report"]["policy"]: as_arrays(r) for r in runs},
        benchmark=(first["ts"], first["benchmark"]),
    )
    return [r["report"] for r in runs]


def _print_summary(reports: list[dict[str, Any]], console: Console, as_csv: bool) -> None:
    if as_csv:  # stdout is the CSV alone; the notes go to stderr
        typer.echo(terminal.table_csv(summary_table(reports)), nl=False)
    else:
        console.print(terminal.unclipped(summary_table(reports)))
    for r in reports:  # a start moved for warm-up or for the shared window is said, not hidden
        for key in ("start_note", "end_note"):  # and so is an end cut short by the data
            if r.get(key):
                note = f"warning {r['policy']}: {r[key]}"
                if as_csv:
                    typer.echo(note, err=True)
                else:
                    console.print(f"[yellow]{note}[/yellow]")
    _print_data_selection(reports[0], console, as_csv)
    for name, hours in reports[0].get("stale_hours", {}).items():
        console.print(f"[yellow]stale data[/yellow] {name}: {hours:g} h without new exposure")
    for name, gaps in reports[0].get("data_gaps", {}).items():
        for start, end in gaps:  # never bridged: no price, no trigger, stale data to the gate
            note = f"data gap {name}: {start} .. {end}"
            if as_csv:
                typer.echo(note, err=True)
            else:
                console.print(f"[yellow]{note}[/yellow]")


def _print_data_selection(report: dict[str, Any], console: Console, as_csv: bool) -> None:
    """Which timeframe each contract's series came from (stderr when stdout is the CSV)."""
    for notes in report.get("data_selection", {}).values():
        for note in notes:
            if as_csv:
                typer.echo(f"data {note}", err=True)
            else:
                console.print(f"[dim]data[/dim] {note}", soft_wrap=True)


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
    for key, label, fmt in HEDGE_SUMMARY_KEYS:  # policies with a hedge leg (spot: carry)
        if any(key in r for r in reports):
            table.add_row(label, *[fmt.format(r[key]) if key in r else "-" for r in reports])
    if any("unhedged" in r for r in reports):
        for key, label, fmt in (
            ("total_return", "unhedged return", "{:.2%}"),
            ("max_drawdown", "unhedged max drawdown", "{:.2%}"),
        ):
            table.add_row(
                label,
                *[fmt.format(r["unhedged"][key]) if "unhedged" in r else "-" for r in reports],
            )
    return table
