"""The ``bot`` command."""

from __future__ import annotations

import atexit
import functools
import gc
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from bot.cli.catalogue import register as _register_catalogue
from bot.cli.ops import register as _register_ops
from bot.cli.sweep_command import register as _register_sweep
from bot.cli.terminal import cli_console
from bot.cli.web import register as _register_web
from bot.errors import BotError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Order-management bot for crypto perpetual futures, with risk controls.",
)
console = cli_console()  # piped: wide enough that no table cell is cut (bot/cli/terminal.py)
err_console = cli_console(stderr=True)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Print a :class:`BotError` as one clear message and exit with status 2 (no traceback).

    So is an exchange or database error that escaped the adapters (a connection that failed
    where nothing expected it): one line naming it, never a traceback.
    """
    try:
        yield
    except BotError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)), soft_wrap=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        line = connection_error_line(exc)
        if line is None:
            raise  # a bug: its traceback is what a report needs
        err_console.print(Text("error: ", style="bold red") + Text(line), soft_wrap=True)
        raise typer.Exit(2) from None


def connection_error_line(exc: Exception) -> str | None:
    """One line for an exchange or database failure; None for anything else."""
    import ccxt
    from sqlalchemy.exc import SQLAlchemyError

    from bot.logs import redact

    if isinstance(exc, ccxt.BaseError):
        where = "exchange"
    elif isinstance(exc, SQLAlchemyError):
        where = "database"
    elif isinstance(exc, ConnectionError | TimeoutError):
        where = "connection"
    else:
        return None
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(f"{where}: {type(exc).__name__}: {text[0] if text else ''}")


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="also show INFO logs of ccxt, Alembic...")
    ] = False,
) -> None:
    """Order-management bot for crypto perpetual futures, with risk controls."""
    from bot import logs

    logs.VERBOSE = verbose


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
            "--contracts",
            help="comma-separated contracts, e.g. BTC/USDT:USDT,ETH/USDT:USDT; one not in the "
            "configuration is held long, with no cap of its own",
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="first day (UTC), YYYY-MM-DD")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="last day (UTC), YYYY-MM-DD")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output directory")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="print the summary as CSV")] = False,
) -> None:
    """Replay history through the simulated exchange and report what the policy would have done."""
    from bot.backtest.charts import start_charts

    # The chart helper starts before anything else is imported: it has the whole simulation to
    # get matplotlib ready (bot.backtest.charts).
    with reported_errors(), start_charts() as charts:
        from bot.cli import simulate as sim

        sim.run(
            config,
            policy or [],
            data,
            contracts,
            _parse_day(start, "--start"),
            _parse_day(end, "--end"),
            out,
            console,
            as_csv=as_csv,
            charts=charts,
        )
    _no_final_collection()


@functools.cache  # registered once, however many times a test runs the command in-process
def _no_final_collection() -> None:
    """At exit, leave the simulation's objects to the operating system instead of a last pass
    of the cyclic garbage collector over them (0.1-0.15 s of CPU after a contract-year, about
    a tenth of the command's time outside the simulation loop). The handler runs at
    interpreter exit, after every output file was written and closed and the chart helper
    ended; other exit handlers still run, and objects not in reference cycles are still freed
    one by one as before."""
    atexit.register(gc.freeze)


_JSON_HELP = "print one JSON object instead of tables"


@app.command()
def calc(
    contract: Annotated[str, typer.Option("--contract", help="e.g. BTC/USDT:USDT")],
    side: Annotated[str, typer.Option("--side", help="long or short")],
    entry: Annotated[str, typer.Option("--entry", help="entry price (quote currency)")],
    balance: Annotated[str, typer.Option("--balance", help="wallet balance (quote currency)")],
    leverage: Annotated[
        str | None, typer.Option("--leverage", help="leverage; notional = balance x leverage")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            help="position size (base asset), instead of leverage; leverage = size x entry / "
            "balance, at least 1x (the venue's lowest setting)",
        ),
    ] = None,
    margin_mode: Annotated[
        str, typer.Option("--margin-mode", help="isolated or cross")
    ] = "isolated",
    exchange: Annotated[
        str, typer.Option("--exchange", help="binanceusdm or bybit")
    ] = "binanceusdm",
    catalogue: Annotated[
        Path | None,
        typer.Option(
            "--catalogue",
            help="data directory whose contracts/<exchange>.json (bot contracts sync) is read "
            "before the bundled snapshot (default: the --data directory)",
        ),
    ] = None,
    vol: Annotated[
        str | None, typer.Option("--vol", help="annualised volatility, e.g. 0.6 for 60 %")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="data directory: volatility by yang_zhang over 7 days of 1h"),
    ] = None,
    stop_vol_units: Annotated[
        str, typer.Option("--stop-vol-units", help="stop distance in daily vols (inverse question)")
    ] = "2",
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
) -> None:
    """Margin, liquidation price and PnL by price move of one position, before opening it."""
    from bot.cli import tools

    with reported_errors():
        tools.run_calc(
            contract=contract,
            side=side,
            entry=entry,
            leverage=leverage,
            size=size,
            balance=balance,
            margin_mode=margin_mode,
            exchange=exchange,
            vol=vol,
            data=data,
            stop_vol_units=stop_vol_units,
            as_json=as_json,
            console=console,
            catalogue=catalogue,
        )


@app.command()
def vol(
    config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
    data: Annotated[Path | None, typer.Option("--data", help="market data directory")] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="policy file instead of the configured one")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG of volatility and target leverage")
    ] = None,
    from_exchange: Annotated[
        bool,
        typer.Option("--exchange", help="the exchange's recent public data instead of files"),
    ] = False,
) -> None:
    """Realised volatility against its history, funding, and the policy's leverage now."""
    from bot.cli import tools

    with reported_errors(), tools.plot_place(plot):  # --plot checked before a download
        if from_exchange:
            if data is not None:
                raise BotError("give --data or --exchange, not both")
            data = tools.exchange_data_dir(config)
        tools.run_vol(config, data, policy, as_json, plot, console)


@app.command()
def stress(
    config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
    positions: Annotated[
        Path | None, typer.Option("--positions", help="positions CSV (see bot/tools/portfolio.py)")
    ] = None,
    from_sim: Annotated[
        Path | None, typer.Option("--from-sim", help="output directory of `bot simulate`")
    ] = None,
    balance: Annotated[
        str | None, typer.Option("--balance", help="wallet balance (quote currency)")
    ] = None,
    margin_mode: Annotated[
        str | None, typer.Option("--margin-mode", help="isolated or cross")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="market data directory")] = None,
    leverage_grid: Annotated[
        bool, typer.Option("--leverage-grid", help="replay every scenario at 1x..20x")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=_JSON_HELP)] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG of the survival grid (implies the grid)")
    ] = None,
    from_account: Annotated[
        bool,
        typer.Option("--from-account", help="the paper or live account in the state database"),
    ] = False,
) -> None:
    """Crashes, instant moves, volatility and funding spikes played on a book."""
    from bot.cli import tools

    with reported_errors(), tools.plot_place(plot):  # --plot checked before the account is read
        snapshot: Path | None = None
        if from_account:
            if positions is not None or from_sim is not None:
                raise BotError("give one of --positions, --from-sim and --from-account")
            from_sim = snapshot = tools.account_snapshot_dir(config)
        try:
            tools.run_stress(
                config,
                positions,
                from_sim,
                balance,
                margin_mode,
                data,
                leverage_grid,
                as_json,
                plot,
                console,
                # the book is the account, not the temporary copy it is read through
                source=tools.account_source(config) if snapshot is not None else None,
            )
        finally:
            if snapshot is not None:
                shutil.rmtree(snapshot, ignore_errors=True)


_register_ops(app, console, reported_errors)
_register_sweep(app, console, reported_errors, _parse_day)
_register_catalogue(app, console, reported_errors)
_register_web(app, console, reported_errors)


def main() -> None:
    try:
        app()
    except BotError as exc:
        err_console.print(Text("error: ", style="bold red") + Text(str(exc)), soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        line = connection_error_line(exc)
        if line is None:
            raise
        err_console.print(Text("error: ", style="bold red") + Text(line), soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
