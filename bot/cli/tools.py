"""``bot calc``, ``bot vol`` and ``bot stress``: parse the flags, run the tools, print rich tables
for people or one JSON object for scripts (``--json``: Decimals as strings, float statistics such
as volatilities and percentiles as numbers)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bot import strict_json
from bot.bootstrap import risk_limits
from bot.catalogue import resolve_instruments, stand_ins
from bot.cli import terminal
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.errors import ConfigError, DataError
from bot.marketdata.files import DataInventory, discover
from bot.outputs import prepare_file, remove_created
from bot.sim.history import load_history
from bot.tools import calc as calc_tool
from bot.tools import render, stress, voltrack
from bot.tools.calc import to_text
from bot.tools.portfolio import (
    MAX_INPUT,
    Portfolio,
    open_on_exchange,
    read_portfolio,
    spot_legs,
)
from bot.tools.scenarios import (
    Scenario,
    extreme_json,
    last_close,
    market_inputs,
    standard_scenarios,
)

__all__ = ["parse_decimal", "plot_place", "run_calc", "run_stress", "run_vol"]


def parse_decimal(flag: str, text: str | None) -> Decimal | None:
    """``text`` as an exact Decimal; a ConfigError naming ``flag`` when it is not a number."""
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"{flag}: not a number: {text!r}") from None
    if not value.is_finite():
        raise ConfigError(f"{flag}: must be a finite number, got {text!r}")
    if abs(value) >= MAX_INPUT:
        raise ConfigError(
            f"{flag}: {text!r} is out of range (must be below {MAX_INPUT:.0e} in size)"
        )
    return value


def _mode(flag: str, text: str | None) -> MarginMode | None:
    if text is None:
        return None
    try:
        return MarginMode(text.strip().lower())
    except ValueError:
        raise ConfigError(f"{flag} must be isolated or cross, got {text!r}") from None


def _side(text: str) -> int:
    sides = {"long": 1, "buy": 1, "short": -1, "sell": -1}
    if text.strip().lower() not in sides:
        raise ConfigError(f"--side must be long or short, got {text!r}")
    return sides[text.strip().lower()]


def _inventory(data: Path | None, config: BotConfig | None = None) -> DataInventory:
    if data is not None and not data.is_dir():
        raise ConfigError(f"--data {data}: not a directory")
    directory = data if data is not None else config.data.dir if config is not None else None
    if directory is None:
        raise ConfigError("a data directory is needed (--data DIR)")
    return discover(directory)


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(strict_json.dumps(payload, indent=2))


# -- bot calc ----------------------------------------------------------------------------------


def run_calc(
    *,
    contract: str,
    side: str,
    entry: str,
    leverage: str | None,
    size: str | None,
    balance: str,
    margin_mode: str,
    exchange: str,
    vol: str | None,
    data: Path | None,
    stop_vol_units: str,
    as_json: bool,
    console: Console,
    catalogue: Path | None = None,
) -> dict[str, Any]:
    volatility = parse_decimal("--vol", vol)
    if volatility is not None and data is not None:
        raise ConfigError("give at most one of --vol and --data")
    if catalogue is not None and not catalogue.is_dir():
        # (a typo silently fell back to the bundled brackets, which set the liquidation price)
        raise ConfigError(f"--catalogue {catalogue}: not a directory")
    catalogue_dir = catalogue if catalogue is not None else data
    if data is not None:
        # unknown contract: say so before reading candles
        calc_tool.lookup_instrument(exchange, contract, catalogue_dir)
        candles = voltrack.hourly_candles(_inventory(data), contract)
        volatility = voltrack.current_volatility(candles)
    mode = _mode("--margin-mode", margin_mode)
    assert mode is not None  # noqa: S101 - a str always parses or raises
    request = calc_tool.CalcRequest(
        symbol=contract,
        side=_side(side),
        entry=_required("--entry", entry),
        balance=_required("--balance", balance),
        margin_mode=mode,
        leverage=parse_decimal("--leverage", leverage),
        size=parse_decimal("--size", size),
        volatility=volatility,
        stop_vol_units=_required("--stop-vol-units", stop_vol_units),
        exchange=exchange,
        catalogue_dir=catalogue_dir,
    )
    result = calc_tool.calculate(request)
    payload = calc_tool.jsonable(result)
    # figures that are not the venue's own are said beside the numbers made from them
    payload["stand_in"] = calc_tool.stand_in_note(exchange, contract, catalogue_dir)
    if as_json:
        _emit(payload)
    else:
        console.print(render.calc_summary(result))
        console.print(render.calc_moves(result))
        if payload["stand_in"]:
            console.print(f"[yellow]warning: {payload['stand_in']}[/yellow]", soft_wrap=True)
    return payload


def _required(flag: str, text: str) -> Decimal:
    value = parse_decimal(flag, text)
    assert value is not None  # noqa: S101 - text is not None
    return value


# -- bot vol -----------------------------------------------------------------------------------


def _config(path: Path, policy: Path | None = None) -> BotConfig:
    return load_config(path, policy_overrides=[policy] if policy is not None else [])


def run_vol(
    config_path: Path,
    data: Path | None,
    policy_path: Path | None,
    as_json: bool,
    plot: Path | None,
    console: Console,
) -> dict[str, Any]:
    config = _config(config_path, policy_path)
    policy = config.policies[0]
    inventory = _inventory(data, config)
    with plot_place(plot):
        report = voltrack.track(config, policy, inventory)
        payload = voltrack.jsonable(report, policy)
        if plot is not None:
            _vol_plot(plot, config, inventory, report)
            payload["plot"] = str(plot)
    if as_json:
        _emit(payload)
        return payload
    for entry in report:
        console.print(render.vol_table(entry))
    console.print(render.policy_table(report, policy.name, policy.orders.max_participation))
    if plot is not None:
        console.print(f"plot written to [bold]{plot}[/bold]")
    return payload


@contextmanager
def plot_place(plot: Path | None) -> Iterator[None]:
    """``--plot FILE`` checked before the work it draws (a path under a file, a directory, a
    name too long are said now, not as a traceback at the end); the folders made for it are
    removed again when the command fails before drawing."""
    if plot is None:
        yield
        return
    created = prepare_file(plot, "--plot")
    try:
        yield
    except BaseException:
        remove_created(created)
        raise


def _vol_plot(
    path: Path, config: BotConfig, inventory: DataInventory, report: list[voltrack.ContractVol]
) -> None:
    from bot.tools.plots import plot_volatility  # matplotlib: only when a plot is asked for

    policy = config.policies[0]
    series = {}
    for entry in report:
        candles = load_history(inventory, entry.symbol, policy.timeframe).decision
        series[entry.symbol] = voltrack.leverage_history(candles, policy, entry.policy.max_leverage)
    target = policy.leverage.target_volatility
    plot_volatility(
        path,
        title=f"{policy.name}: {policy.volatility.estimator} {policy.volatility.window} x "
        f"{policy.timeframe} volatility and the target leverage it gives",
        series=series,
        target_volatility=None if target is None or policy.kind == "static" else float(target),
    )


# -- bot stress --------------------------------------------------------------------------------


def run_stress(
    config_path: Path,
    positions: Path | None,
    from_sim: Path | None,
    balance: str | None,
    margin_mode: str | None,
    data: Path | None,
    grid: bool,
    as_json: bool,
    plot: Path | None,
    console: Console,
    source: str | None = None,
) -> dict[str, Any]:
    """``source`` names the book in the output and errors (default: the file it was read from)."""
    config = _config(config_path)
    policy = config.policies[0]
    portfolio = read_portfolio(
        positions,
        from_sim,
        parse_decimal("--balance", balance),
        _mode("--margin-mode", margin_mode),
        config.account.starting_balance,
        MarginMode(config.account.margin_mode),
    )
    if source is not None:
        portfolio = dataclasses.replace(portfolio, source=source)
    inventory = _inventory(data, config)
    portfolio, spot_warnings = _with_spot(portfolio, config, policy, inventory)
    try:
        # The book's contracts come from the positions file, not the configuration.
        instruments = resolve_instruments(
            config.data.exchange, portfolio.symbols(), data or config.data.dir
        )
    except ConfigError as exc:
        raise ConfigError(f"{portfolio.source}: {exc}") from None
    slippage = config.simulation.slippage_bps
    start = open_on_exchange(portfolio, instruments, slippage)  # validates the book up front
    rl = risk_limits(config, policy)
    limits = stress.Limits(rl.daily_loss, rl.max_drawdown)
    market = market_inputs(inventory, policy, portfolio.moved_symbols())
    scenarios = standard_scenarios(
        portfolio, market.volatility, market.funding_rate, market.extremes
    )
    outcomes = [stress.run_scenario(portfolio, instruments, s, limits, slippage) for s in scenarios]
    payload: dict[str, Any] = {
        "portfolio": stress.portfolio_json(portfolio, start),
        "limits": {
            "daily_loss": to_text(limits.daily_loss),
            "max_drawdown": to_text(limits.max_drawdown),
        },
        "warnings": [*spot_warnings, *stress.stops_past_liquidation(portfolio, start)],
        "data_notes": [*market.missing, *_stand_ins(config, portfolio.symbols(), data)],
        "historical_extremes": [extreme_json(e) for e in market.extremes],
        "scenarios": [stress.outcome_json(o) for o in outcomes],
    }
    hedged_view = _with_and_without_hedge(
        portfolio, policy, instruments, scenarios, outcomes, limits, slippage
    )
    if hedged_view is not None:
        payload["with_and_without_hedge"] = hedged_view[0]
    rows = None
    with plot_place(plot):
        if grid or plot is not None:
            bar = terminal.cli_console(stderr=True)
            with terminal.progress(bar, "leverage grid", len(stress.GRID_LEVELS)) as step:
                rows = stress.leverage_grid(
                    portfolio, instruments, scenarios, limits, slippage, progress=step
                )
            payload["leverage_grid"] = stress.grid_json(rows, stress.GRID_LEVELS)
        if plot is not None and rows is not None:
            _grid_plot(plot, rows, portfolio.source)
            payload["plot"] = str(plot)
    if as_json:
        _emit(payload)
        return payload
    for warning in payload["warnings"]:
        console.print(f"[bold red]warning:[/bold red] {warning}")
    console.print(render.stress_table(outcomes, payload))
    if hedged_view is not None:
        console.print(hedged_view[1])
    for note in payload["data_notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    if rows is not None:
        console.print(render.grid_table(payload["leverage_grid"]))
    if plot is not None:
        console.print(f"plot written to [bold]{plot}[/bold]")
    return payload


def _with_spot(
    portfolio: Portfolio, config: BotConfig, policy: Policy, inventory: DataInventory
) -> tuple[Portfolio, list[str]]:
    """The book with the configuration's ``[spot]`` holdings beside it, each priced as the
    hedge prices it (its perpetual's mark, else the data's last close), and the warnings to
    print. Spot read from the venue (``source = "exchange"``) is not known here: said, never
    taken for none."""
    spot = config.spot
    if spot is None:
        return portfolio, []
    if spot.source == "exchange":
        return portfolio, [
            f'spot {", ".join(spot.assets)}: spot.source = "exchange" (read from the venue\'s '
            "spot wallet live): the quantities are not known here, and the scenarios are the "
            "account's alone, without the spot the hedge offsets; declare them with "
            'spot.source = "config" to include them'
        ]
    legs = spot_legs(
        spot.configured(),
        config.account.quote,
        portfolio,
        lambda sym: last_close(inventory, policy.timeframe, sym),
    )
    return dataclasses.replace(portfolio, spot=legs), []


def _stand_ins(config: BotConfig, symbols: Sequence[str], data: Path | None) -> list[str]:
    """What stands in for the venue's own figures of ``symbols`` (see :mod:`bot.catalogue`)."""
    found = stand_ins(config.data.exchange, symbols, data or config.data.dir)
    return [f"{s}: {catalogue.notes[s]}" for s, catalogue in found.items()]


def _with_and_without_hedge(
    portfolio: Portfolio,
    policy: Policy,
    instruments: Mapping[str, Instrument],
    scenarios: list[Scenario],
    outcomes: list[stress.Outcome],
    limits: stress.Limits,
    slippage: Decimal,
) -> tuple[list[dict[str, Any]], Table] | None:
    """A hedged book (the policy's hedge instruments among the holdings) against itself
    without the hedge leg, scenario by scenario."""
    from bot.tools import hedge_stress

    if policy.hedge is None:
        return None
    book = hedge_stress.without_hedge(portfolio, policy.hedge.instruments)
    if book is None:
        return None
    bare = hedge_stress.unhedged_outcomes(book, instruments, scenarios, limits, slippage)
    return (
        hedge_stress.comparison_json(outcomes, bare),
        hedge_stress.comparison_table(outcomes, bare),
    )


def _grid_plot(path: Path, rows: list[stress.GridRow], source: str) -> None:
    from bot.tools.plots import plot_survival_grid  # matplotlib: only when a plot is asked for

    plot_survival_grid(
        path,
        title=f"stress survival by leverage: {source}",
        scenarios=[r.scenario.name for r in rows],
        levels=stress.GRID_LEVELS,
        outcomes=[[stress.cell_status(c) for c in r.cells] for r in rows],
        losses=[
            [None if isinstance(c, str) else float(c.loss_fraction) for c in r.cells] for r in rows
        ],
    )


def account_source(config_path: Path) -> str:
    """How ``--from-account`` names the book: the account and its state database."""
    from bot.store.migrate import safe_url

    config = _config(config_path)
    return f"account {config.account.name!r} in {safe_url(config.runtime.database_url)}"


def account_snapshot_dir(config_path: Path) -> Path:
    """The bot's account as last recorded in its state database (paper or live), written as
    ``positions.csv`` + ``account.json`` in a temporary directory: the input of ``--from-sim``."""
    import csv
    import tempfile

    from bot.backtest.report import POSITION_COLUMNS
    from bot.bootstrap import open_store
    from bot.domain.enums import OrderPurpose
    from bot.store import views
    from bot.store.migrate import safe_url

    config = _config(config_path)
    store = open_store(config)
    try:
        latest = store.latest_positions()
        if latest is None or not [p for p in latest[1] if p.is_open]:
            raise DataError(
                f"{safe_url(config.runtime.database_url)}: the bot holds no position to stress"
            )
        held = [p for p in latest[1] if p.is_open]
        stops = {
            o.request.symbol: o.request.trigger_price
            for o in store.open_orders()
            if o.request.purpose is OrderPurpose.STOP_LOSS
        }
        # Each position's last known mark: the paper exchange's own, else the one it was
        # recorded at (a tick's or a guard's reading), else the contract's last decision
        # (however long ago it was recorded). None known: the book cannot be valued.
        decided = views.latest_decisions(store, [p.symbol for p in held])
        marks = {s: r.mark_price for s, r in decided.items()}
        recorded = views.recorded_positions(store)
        if recorded is not None and recorded.ts_ms == latest[0]:
            marks.update(recorded.marks)
        paper = store.load_paper_state(config.account.name)
        if paper is not None:
            marks.update({s: Decimal(v) for s, v in json.loads(paper).get("marks", {}).items()})
        equity = store.latest_equity()
    finally:
        store.close()
    unknown = [p.symbol for p in held if p.symbol not in marks]
    if unknown:
        raise DataError(
            f"{safe_url(config.runtime.database_url)}: no mark recorded for "
            f"{', '.join(unknown)} (a position the bot never decided on): describe the book "
            "with --positions FILE and its marks instead"
        )
    if equity is None:
        raise DataError(
            f"{safe_url(config.runtime.database_url)}: no wallet balance recorded with the "
            "positions: describe the book with --positions FILE and --balance"
        )
    out = Path(tempfile.mkdtemp(prefix="bot-stress-")) / "positions.csv"
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(POSITION_COLUMNS))
        w.writeheader()
        for p in held:
            row = {
                "symbol": p.symbol,
                "qty": p.qty,
                "entry_price": p.entry_price,
                "leverage": int(p.leverage),
                "isolated_margin": p.isolated_margin,
                "mark": marks[p.symbol],
                "stop_loss": stops.get(p.symbol, ""),
            }
            w.writerow({k: row.get(k, "") for k in POSITION_COLUMNS})
    wallet = equity.wallet
    # The mode the positions are held in (the configured one applies to new positions only);
    # a book held in both is played in the configured mode (--margin-mode overrides).
    modes = {p.margin_mode.value for p in held}
    mode = modes.pop() if len(modes) == 1 else config.account.margin_mode
    (out.parent / "account.json").write_text(
        strict_json.dumps({"wallet": str(wallet), "margin_mode": mode})
    )
    return out.parent


def exchange_data_dir(config_path: Path) -> Path:
    """Download the configured contracts' recent public data (no keys) into a temporary
    data directory (see :mod:`bot.exchange.download`)."""
    import tempfile

    from bot.bootstrap import public_exchange
    from bot.clock import LiveClock
    from bot.exchange.download import download_recent

    config = _config(config_path)
    symbols = [c.symbol for c in config.contracts]
    public = public_exchange(config, LiveClock())
    target = Path(tempfile.mkdtemp(prefix="bot-vol-"))
    with terminal.progress(terminal.cli_console(stderr=True), "download", len(symbols)) as step:
        return download_recent(public, symbols, target, progress=step)
