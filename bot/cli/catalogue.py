"""``bot contracts sync|list|show`` and ``bot data download``."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot import strict_json
from bot.errors import ConfigError
from bot.outputs import prepare_dir, remove_created

_JSON = "print JSON instead of tables"


def _symbols(raw: str | None) -> list[str]:
    return [s.strip() for s in raw.split(",") if s.strip()] if raw else []


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _exchange(config: Any, *, signed: bool, real_market: bool = False) -> Any:
    """The configured venue as a raw ccxt instance (keys from the environment when signed).

    ``real_market``: the venue's real public endpoints even when ``exchange.demo`` is set (the
    default), as paper trading's prices: a demo venue's candles and funding are its own
    market's, not the history a simulation must replay (``api_url`` still applies)."""
    from bot.bootstrap import ENV_KEY, ENV_PASSWORD, ENV_SECRET
    from bot.clock import LiveClock
    from bot.exchange.factory import make_ccxt_exchange

    ex = config.exchange
    return make_ccxt_exchange(
        ex.name,
        demo=ex.demo and not real_market,
        api_url=ex.api_url,
        options=ex.ccxt_options,
        api_key=os.environ.get(ENV_KEY) if signed else None,
        api_secret=os.environ.get(ENV_SECRET) if signed else None,
        password=os.environ.get(ENV_PASSWORD) if signed else None,
        clock=LiveClock(),
        symbols=[c.symbol for c in config.contracts],
    ).exchange


def register(  # noqa: C901 - one nested function per command, each simple
    app: typer.Typer,
    console: Console,
    reported_errors: Callable[[], AbstractContextManager[None]],
) -> None:
    contracts = typer.Typer(no_args_is_help=True, help="The contract catalogue.")
    data = typer.Typer(no_args_is_help=True, help="Market-data files.")
    app.add_typer(contracts, name="contracts")
    app.add_typer(data, name="data")

    @contracts.command("sync")
    def sync(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        symbols: Annotated[
            str | None,
            typer.Option("--contracts", help="comma-separated symbols (default: every one)"),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help=_JSON)] = False,
    ) -> None:
        """Read contracts, filters, fees and leverage brackets from the exchange into
        <data dir>/contracts/<exchange>.json."""
        from bot.bootstrap import ENV_KEY, ENV_SECRET
        from bot.catalogue_sync import sync_catalogue
        from bot.clock import LiveClock
        from bot.config.loader import load_config

        with reported_errors():
            cfg = load_config(config)
            signed = bool(os.environ.get(ENV_KEY) and os.environ.get(ENV_SECRET))
            ex = _exchange(cfg, signed=signed)
            result = sync_catalogue(
                ex, cfg.data.dir, clock=LiveClock(), symbols=_symbols(symbols), signed=signed
            )
            payload = {
                "catalogue": str(result.path),
                "read_at": _iso(result.read_at_ms),
                "written": result.written,
                "changed": result.changed,
                "skipped": result.skipped,
            }
            if as_json:
                console.print_json(strict_json.dumps(payload))
                return
            console.print(
                f"{len(result.written)} contract(s) written to [bold]{result.path}[/bold] "
                f"(read at {payload['read_at']})"
            )
            for sym, what in result.changed.items():
                console.print(f"[yellow]changed[/yellow] {sym}: {what}")
            for sym, why in result.skipped.items():
                console.print(f"[red]skipped[/red] {sym}: {why}")

    @contracts.command("list")
    def list_(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        as_json: Annotated[bool, typer.Option("--json", help=_JSON)] = False,
    ) -> None:
        """Every contract the bot knows on the configured venue, and where its spec comes from."""
        from bot.catalogue import all_contracts
        from bot.config.loader import load_config

        with reported_errors():
            cfg = load_config(config)
            known = all_contracts(cfg.data.exchange, cfg.data.dir)
            rows: list[dict[str, Any]] = [
                {
                    "symbol": sym,
                    "tick_size": str(inst.tick_size),
                    "step_size": str(inst.step_size),
                    "min_notional": str(inst.min_notional),
                    "max_leverage": str(inst.max_leverage),
                    "brackets": len(inst.brackets),
                    "taker_fee": str(inst.taker_fee),
                    "source": cat.source,
                    "read_at": _iso(cat.read_at_ms),
                    "stand_in": cat.is_stand_in(sym),
                }
                for sym, (inst, cat) in known.items()
            ]
            if as_json:
                console.print_json(
                    strict_json.dumps({"exchange": cfg.data.exchange, "contracts": rows})
                )
                return
            table = Table(title=f"{cfg.data.exchange}: {len(rows)} contracts")
            for col in ("symbol", "tick", "step", "min notional", "max lev", "tiers", "from"):
                table.add_column(col, justify="left" if col in ("symbol", "from") else "right")
            for r in rows:
                table.add_row(
                    r["symbol"],
                    r["tick_size"],
                    r["step_size"],
                    r["min_notional"],
                    r["max_leverage"],
                    str(r["brackets"]),
                    f"{r['source']} @ {r['read_at']}"
                    + (
                        " [bold red]STAND-IN figures, see `contracts show`[/]"
                        if r["stand_in"]
                        else ""
                    ),
                )
            console.print(table)

    @contracts.command("show")
    def show(
        symbol: Annotated[str, typer.Argument(help="e.g. ADA/USDT:USDT")],
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        as_json: Annotated[bool, typer.Option("--json", help=_JSON)] = False,
    ) -> None:
        """One contract's filters, fees and leverage brackets."""
        from bot.catalogue import instrument_to_json, resolve_with_sources
        from bot.config.loader import load_config

        with reported_errors():
            cfg = load_config(config)
            found, missing = resolve_with_sources(cfg.data.exchange, [symbol], cfg.data.dir)
            if missing:
                from bot.catalogue import resolve_instruments

                resolve_instruments(cfg.data.exchange, [symbol], cfg.data.dir)  # raises, clearly
                raise ConfigError(f"unknown contract {symbol!r}")
            inst, cat = found[symbol]
            payload = {
                "symbol": symbol,
                "exchange": cfg.data.exchange,
                "from": cat.source,
                "read_at": _iso(cat.read_at_ms),
                **instrument_to_json(inst, cat.source),
                "spec_source": cat.notes.get(symbol, ""),
                "stand_in": cat.is_stand_in(symbol),
            }
            if as_json:
                console.print_json(strict_json.dumps(payload))
                return
            head = Table(title=f"{symbol} on {cfg.data.exchange}", show_header=False)
            for key in (
                "tick_size",
                "step_size",
                "min_qty",
                "min_notional",
                "maker_fee",
                "taker_fee",
                "liquidation_fee",
                "max_order_qty",
                "max_position_notional",
                "from",
                "read_at",
                "spec_source",
            ):
                head.add_row(key, str(payload.get(key, "none stated")))
            console.print(head)
            if payload["stand_in"]:
                console.print(
                    f"[bold red]{symbol}: these figures are a STAND-IN, not the venue's own "
                    f"table (see spec_source); run `bot contracts sync --config {config} "
                    f"--contracts {symbol}` before relying on them.[/]"
                )
            tiers = Table(title="leverage brackets")
            for col in ("tier", "notional from", "notional to", "max lev", "maint rate", "cum"):
                tiers.add_column(col, justify="right")
            for i, b in enumerate(inst.brackets, start=1):
                tiers.add_row(
                    str(i),
                    f"{b.notional_floor:,}",
                    f"{b.notional_cap:,}",
                    str(b.max_leverage),
                    str(b.maint_margin_rate),
                    str(b.maint_amount),
                )
            console.print(tiers)

    @data.command("download")
    def download(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        symbols: Annotated[
            str | None,
            typer.Option("--contracts", help="comma-separated symbols (default: the config's)"),
        ] = None,
        timeframes: Annotated[
            str, typer.Option("--timeframes", help="comma-separated, e.g. 1m,5m,1h")
        ] = "1h",
        start: Annotated[str, typer.Option("--start", help="first day (UTC), YYYY-MM-DD")] = "",
        end: Annotated[
            str, typer.Option("--end", help="last day (UTC), YYYY-MM-DD, included")
        ] = "",
        out: Annotated[
            Path | None, typer.Option("--out", help="directory (default: the data directory)")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help=_JSON)] = False,
    ) -> None:
        """Download closed OHLCV, mark-price OHLCV and funding history from the exchange's public
        endpoints; resumable (only what is missing is fetched)."""
        from datetime import timedelta

        from bot.clock import LiveClock
        from bot.config.loader import load_config
        from bot.exchange.history_download import HistoryDownloader
        from bot.marketdata.candles import parse_timeframe

        with reported_errors():
            cfg = load_config(config)
            wanted = _symbols(symbols) or [c.symbol for c in cfg.contracts]
            tfs = _symbols(timeframes)
            for tf in tfs:
                try:
                    parse_timeframe(tf)
                except ValueError as exc:
                    raise ConfigError(f"--timeframes {tf!r}: {exc}") from None
            first, last = _day(start, "--start"), _day(end, "--end")
            if last < first:
                raise ConfigError(f"--end {end} is before --start {start}")
            start_ms = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp())
            stop = last + timedelta(days=1)
            end_ms = int(datetime(stop.year, stop.month, stop.day, tzinfo=UTC).timestamp())
            target = out or cfg.data.dir
            # checked before the first request, not when the first file is written
            created = prepare_dir(target, "--out" if out is not None else f"{config}: data.dir")
            ex = _exchange(cfg, signed=False, real_market=True)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} candles"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                disable=as_json,
            ) as bar:
                tasks: dict[str, Any] = {}

                def progress(label: str, done: int, total: int) -> None:
                    if label not in tasks:
                        tasks[label] = bar.add_task(label, total=total)
                    bar.update(tasks[label], completed=done, total=total)

                try:
                    result = HistoryDownloader(
                        ex, target, clock=LiveClock(), progress=progress
                    ).run(wanted, tfs, start_ms * 1000, end_ms * 1000)
                except BaseException:
                    remove_created(created)  # only while nothing was written in them
                    raise
            rows: list[dict[str, Any]] = [
                {
                    "file": str(s.path),
                    "added": s.added,
                    "venue_gaps": [[_iso(a), _iso(b)] for a, b in s.gaps],
                }
                for s in result.series
            ]
            if as_json:
                console.print_json(strict_json.dumps({"added": result.added, "series": rows}))
                return
            table = Table(title=f"downloaded {result.added} new row(s)")
            table.add_column("file")
            table.add_column("new rows", justify="right")
            table.add_column("venue gaps")
            for r in rows:
                gaps = ", ".join(f"{a} .. {b}" for a, b in r["venue_gaps"]) or "-"
                table.add_row(Path(r["file"]).name, str(r["added"]), gaps)
            console.print(table)


def _day(value: str, flag: str) -> Any:
    if not value:
        raise ConfigError(f"{flag} is required (YYYY-MM-DD)")
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected a date like 2025-06-01") from None
