"""The ``bot`` command."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from bot.errors import BotError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Order-management bot for crypto perpetual futures, with risk controls.",
)
console = Console()
err_console = Console(stderr=True)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Print a :class:`BotError` as one clear message and exit with status 2 (no traceback)."""
    try:
        yield
    except BotError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)))
        raise typer.Exit(2) from None


@app.callback()
def _root() -> None:
    """Order-management bot for crypto perpetual futures, with risk controls."""


def _parse_day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()  # noqa: DTZ007 - a calendar day
    except ValueError:
        raise typer.BadParameter(f"{flag} {value!r}: expected a date like 2025-06-01") from None


@app.command()
def simulate(
    config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
    policy: Annotated[
        list[Path] | None,
        typer.Option("--policy", help="policy file(s) to run instead of the configured one"),
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="market data directory")] = None,
    contracts: Annotated[
        str | None,
        typer.Option(
            "--contracts", help="comma-separated contracts, e.g. BTC/USDT:USDT,ETH/USDT:USDT"
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="first day (UTC), YYYY-MM-DD")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="last day (UTC), YYYY-MM-DD")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output directory")] = None,
) -> None:
    """Replay history through the simulated exchange and report what the policy would have done."""
    from bot.cli import simulate as sim

    with reported_errors():
        sim.run(
            config,
            policy or [],
            data,
            contracts,
            _parse_day(start, "--start"),
            _parse_day(end, "--end"),
            out,
            console,
        )


def main() -> None:
    try:
        app()
    except BotError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)))
        sys.exit(2)


if __name__ == "__main__":
    main()
