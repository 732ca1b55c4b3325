"""Operating commands: ``bot run``, ``bot halt``, ``bot resume``, ``bot status``, ``bot history``
and ``bot db upgrade``. ``halt``/``resume`` act on a running bot through the database: the bot
applies them at its next job (within a guard interval), or at its next start."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from bot import strict_json
from bot.cli.web import ALLOWED_HOST_HELP
from bot.errors import BotError, ConfigError

if TYPE_CHECKING:
    from bot.config.models import BotConfig
    from bot.domain.instrument import Instrument

# What these commands need (the configuration, the database, loguru) is imported by each command
# when it runs: ``bot.cli.app`` registers them for every command, and ``bot simulate`` starts
# its chart helper as soon as that registration is done (tests/integration/test_simulate_imports).


def register(
    app: typer.Typer,
    console: Console,
    reported_errors: Callable[[], AbstractContextManager[None]],
) -> None:
    """Add the operating commands to ``app``. ``reported_errors`` makes the context that prints a
    :class:`BotError` as one message and exits with status 2."""
    guard = reported_errors

    @app.command()
    def run(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        live: Annotated[bool, typer.Option("--live", help="trade the real account")] = False,
        yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
        once: Annotated[bool, typer.Option("--once", help="run one tick and exit")] = False,
        ticks: Annotated[int | None, typer.Option("--ticks", help="stop after N ticks")] = None,
        replay: Annotated[
            Path | None,
            typer.Option("--replay", help="paper-trade on recorded data in this directory"),
        ] = None,
        speed: Annotated[
            float, typer.Option("--speed", help="replay speed factor (3600: an hour a second)")
        ] = 1.0,
        dashboard: Annotated[
            bool, typer.Option("--dashboard", help="serve the web dashboard in this process")
        ] = False,
        host: Annotated[str, typer.Option("--host", help="web address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="dashboard TCP port")] = 8080,
        metrics_port: Annotated[
            int | None, typer.Option("--metrics-port", help="serve /metrics and /healthz here")
        ] = None,
        allowed_host: Annotated[
            list[str] | None, typer.Option("--allowed-host", help=ALLOWED_HOST_HELP)
        ] = None,
        ignore_venue_hold: Annotated[
            bool,
            typer.Option(
                "--ignore-venue-hold",
                help="start although the last run was told by the venue to wait (a ban) "
                "until a time not reached: only from another IP address",
            ),
        ] = False,
    ) -> None:
        """Trade: paper by default (simulated fills, live or replayed prices), live with --live."""
        from bot.cli.run import run_bot
        from bot.cli.web import run_extras

        with guard():
            extras = run_extras(
                dashboard=dashboard,
                host=host,
                port=port,
                metrics_port=metrics_port,
                console=console,
                allowed_hosts=allowed_host or [],
            )
            code = run_bot(
                config,
                live=live,
                yes=yes,
                once=once,
                ticks=ticks,
                replay=replay,
                speed=speed,
                console=console,
                ignore_venue_hold=ignore_venue_hold,
                on_ready=extras,
            )
        raise typer.Exit(code)

    @app.command()
    def halt(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        flatten: Annotated[
            bool,
            typer.Option("--flatten", help="also close every position (reduce-only market orders)"),
        ] = False,
        reason: Annotated[str, typer.Option("--reason", help="recorded with the halt")] = "",
    ) -> None:
        """Stop trading (positions and their stops stay, unless --flatten)."""
        with guard():
            _post(config, "halt", reason or "bot halt", flatten, console)

    @app.command()
    def resume(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        reason: Annotated[str, typer.Option("--reason", help="recorded with the resume")] = "",
    ) -> None:
        """Leave a halt (or a drawdown halt, after a person has looked): back to active."""
        with guard():
            _post(config, "resume", reason or "bot resume", False, console)

    @app.command()
    def status(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="the contracts table as CSV")] = False,
    ) -> None:
        """Equity, trading state, and per contract position, leverage, liquidation, stops."""
        from bot.bootstrap import open_store
        from bot.cli.reports import contract_specs, status_data
        from bot.clock import LiveClock
        from bot.config.loader import load_config

        with guard():
            cfg = load_config(config)
            store = open_store(cfg)
            try:
                data = status_data(cfg, store, LiveClock().now_ms())
            finally:
                store.close()
            _show_status(data, contract_specs(cfg), as_json, as_csv, console)

    @app.command()
    def history(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
        limit: Annotated[int, typer.Option("--limit", help="rows per table")] = 20,
        as_csv: Annotated[
            str | None,
            typer.Option("--csv", help="one table as CSV: decisions, orders or events"),
        ] = None,
    ) -> None:
        """Recent decisions, orders and risk events."""
        from bot.bootstrap import open_store
        from bot.cli.reports import history_tables
        from bot.cli.terminal import table_csv
        from bot.config.loader import load_config

        kinds = ("decisions", "orders", "events")
        with guard():
            if as_csv is not None and as_csv not in kinds:
                raise BotError(f"--csv {as_csv!r}: one of {', '.join(kinds)}")
            if limit < 1:  # (SQLite reads LIMIT -1 as no limit at all)
                raise BotError(f"--limit {limit}: the number of rows per table must be >= 1")
            cfg = load_config(config)
            store = open_store(cfg)
            try:
                tables = history_tables(store, limit)
            finally:
                store.close()
            if as_csv is not None:
                typer.echo(table_csv(tables[kinds.index(as_csv)]), nl=False)
            else:
                for table in tables:
                    console.print(table)

    db = typer.Typer(help="the state database", no_args_is_help=True)

    @db.command("upgrade")
    def db_upgrade(
        config: Annotated[Path, typer.Option("--config", help="configuration TOML file")],
    ) -> None:
        """Migrate the state database to the current schema, keeping its history."""
        from bot.bootstrap import database_errors, lock_state_database
        from bot.config.loader import load_config
        from bot.store import migrate
        from bot.store.instance_lock import AlreadyRunning

        with guard():
            cfg = load_config(config)
            url = cfg.runtime.database_url
            try:
                lock = lock_state_database(cfg)  # never migrate under a running bot
            except AlreadyRunning as exc:
                raise AlreadyRunning(f"{exc}. {_upgrade_order(cfg)}") from None
            try:
                with database_errors(cfg):
                    before = migrate.current_revision(url) if _exists(url) else None
                    migrate.upgrade(url)
            finally:
                lock.release()
            console.print(
                f"database {migrate.safe_url(url)}: {before or 'new'} -> {migrate.head_revision()}"
            )

    app.add_typer(db, name="db")


def _show_status(
    data: dict[str, Any],
    specs: Mapping[str, Instrument],
    as_json: bool,
    as_csv: bool,
    console: Console,
) -> None:
    from bot.cli.reports import contracts_table, status_tables
    from bot.cli.terminal import table_csv

    if as_json:
        typer.echo(strict_json.dumps(data, indent=2, sort_keys=True))
    elif as_csv:
        typer.echo(table_csv(contracts_table(data, specs, plain=True)), nl=False)
    else:
        for table in status_tables(data, specs):
            console.print(table)


def _exists(url: str) -> bool:
    from bot.store import migrate

    path = migrate.sqlite_file(url)
    return path is None or path.exists()


def _upgrade_order(config: BotConfig) -> str:
    """What works when ``bot db upgrade`` finds a bot running on the database."""
    from bot.bootstrap import database_errors
    from bot.store import migrate

    url = config.runtime.database_url
    try:
        with database_errors(config):
            current = migrate.current_revision(url)
    except BotError:
        current = None  # (the order below holds whatever it is)
    reach = current == migrate.head_revision() or current in migrate.COMMAND_REVISIONS
    meanwhile = "; meanwhile `bot halt` (--flatten) and `bot resume` reach it" if reach else ""
    return (
        "The database is migrated once no bot runs on it: stop that bot (its positions keep "
        "their stop-loss orders on the exchange), run `bot db upgrade` again, then start this "
        f"version{meanwhile}"
    )


def _post(
    config: Path, kind: Literal["halt", "resume"], reason: str, flatten: bool, console: Console
) -> None:
    from loguru import logger

    from bot.bootstrap import database_errors, open_store
    from bot.clock import LiveClock
    from bot.config.loader import load_config
    from bot.runtime.commands import post_command
    from bot.store import migrate

    cfg = load_config(config)
    try:
        # An older revision whose bots read the commands as this version posts them is taken:
        # an older bot may still run on it during an upgrade, and a halt must reach it.
        store = open_store(cfg, older=migrate.COMMAND_REVISIONS)
    except BotError as exc:
        raise ConfigError(
            f"{kind} not posted: cannot reach the bot's state database: {exc}"
        ) from exc
    try:
        with database_errors(cfg):
            revision = migrate.current_revision(cfg.runtime.database_url)
        cmd = post_command(store, kind, reason=reason, flatten=flatten, now_ms=LiveClock().now_ms())
    finally:
        store.close()
    logger.info("posted command {} ({})", cmd, kind)
    console.print(
        f"{kind} posted (command {cmd}); the running bot applies it at its next job, "
        "or at its next start"
    )
    if revision != migrate.head_revision():
        console.print(
            f"The database is at revision {revision}, an older version's (this one's: "
            f"{migrate.head_revision()}): once no bot runs on it, migrate it with: "
            f"{migrate.UPGRADE_COMMAND} (the {kind} posted is kept), before starting this "
            "version"
        )
