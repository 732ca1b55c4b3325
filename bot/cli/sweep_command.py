"""Registers ``bot sweep`` on the ``bot`` command (the work is in :mod:`bot.cli.research`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_SEARCH_HELP = "grid (every combination), random (--trials draws) or tpe (Optuna, --trials)"


def register(
    app: typer.Typer,
    console: Console,
    reported_errors: Callable[[], AbstractContextManager[None]],
    parse_day: Callable[[str | None, str], object],
) -> None:
    @app.command()
    def sweep(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        policy: Annotated[Path, typer.Option("--policy", help="base policy file")],
        param: Annotated[
            list[str],
            typer.Option("--param", help="KEY=V1,V2,... or KEY=LO..HI, KEY a dotted policy key"),
        ],
        out: Annotated[Path, typer.Option("--out", help="output directory (resumable)")],
        search: Annotated[str, typer.Option("--search", help=_SEARCH_HELP)] = "grid",
        trials: Annotated[
            int | None, typer.Option("--trials", help="points for random or tpe search")
        ] = None,
        objective: Annotated[
            str,
            typer.Option(
                "--objective", help="metric to maximise; -name minimises, e.g. -max_drawdown"
            ),
        ] = "sharpe",
        walk_forward: Annotated[
            str | None,
            typer.Option("--walk-forward", help="TRAIN:TEST[:STEP] in days, e.g. 90:30"),
        ] = None,
        workers: Annotated[
            int | None, typer.Option("--workers", help="local processes (default: all cores)")
        ] = None,
        cluster: Annotated[
            str | None,
            typer.Option("--cluster", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786"),
        ] = None,
        data: Annotated[Path | None, typer.Option("--data", help="market data directory")] = None,
        contracts: Annotated[
            str | None,
            typer.Option(
                "--contracts",
                help="comma-separated contracts; one not in the configuration is held long",
            ),
        ] = None,
        start: Annotated[str | None, typer.Option("--start", help="first day, YYYY-MM-DD")] = None,
        end: Annotated[str | None, typer.Option("--end", help="last day, YYYY-MM-DD")] = None,
        seed: Annotated[int, typer.Option("--seed", help="seed of random and tpe search")] = 0,
    ) -> None:
        """Search a policy's parameters on history (optionally walk-forward), on all cores or
        a Dask cluster; resumable."""
        from bot.cli.research import exit_code, run_sweep
        from bot.errors import ConfigError
        from bot.research.space import parse_param
        from bot.research.sweep import SweepSpec
        from bot.research.walkforward import parse_walk_forward

        with reported_errors():
            if data is not None and not data.is_dir():
                raise ConfigError(f"--data {data}: not a directory")
            spec = SweepSpec(
                config_path=config,
                base_policy=policy,
                params=[parse_param(p) for p in param],
                out=out,
                search=search,
                trials=trials,
                objective=objective,
                walk_forward=parse_walk_forward(walk_forward) if walk_forward else None,
                data_dir=data,
                contracts=tuple(c.strip() for c in contracts.split(",") if c.strip())
                if contracts
                else None,
                start=parse_day(start, "--start"),  # type: ignore[arg-type]
                end=parse_day(end, "--end"),  # type: ignore[arg-type]
                seed=seed,
            )
            outcome = run_sweep(spec, workers, cluster, console)
        raise typer.Exit(exit_code(outcome))
