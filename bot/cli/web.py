"""``bot serve`` and the web options of ``bot run`` (``--dashboard``, ``--metrics-port``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bot.errors import BotError

if TYPE_CHECKING:
    from bot.config.models import BotConfig
    from bot.runtime.runner import Runner
    from bot.store.sql import SqlStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
ALLOWED_HOST_HELP = (
    "a name the web pages are reached at through a reverse proxy (repeat for each); "
    "127.0.0.1, localhost, [::1] and --host always are"
)


def register(app: typer.Typer, console: Console, reported_errors: object) -> None:
    guard = reported_errors

    @app.command()
    def serve(
        config: Annotated[
            Path | None, typer.Option("--config", help="configuration TOML file (the account)")
        ] = None,
        sim: Annotated[
            Path | None, typer.Option("--sim", help="output directory of `bot simulate` instead")
        ] = None,
        host: Annotated[
            str, typer.Option("--host", help="address to listen on (others: a warning)")
        ] = DEFAULT_HOST,
        port: Annotated[int, typer.Option("--port", help="TCP port")] = DEFAULT_PORT,
        refresh: Annotated[
            int, typer.Option("--refresh", help="seconds between page updates (0: never)", min=0)
        ] = 15,
        allowed_host: Annotated[
            list[str] | None, typer.Option("--allowed-host", help=ALLOWED_HOST_HELP)
        ] = None,
    ) -> None:
        """Web dashboard (and /metrics) of the paper or live account, or of a simulation."""
        with guard():  # type: ignore[operator]
            serve_command(config, sim, host, port, console, refresh, allowed_host or [])


def serve_command(
    config: Path | None,
    sim: Path | None,
    host: str,
    port: int,
    console: Console,
    refresh: int = 15,
    allowed_hosts: Sequence[str] = (),
) -> None:
    from bot.dashboard import require_extra

    if (config is None) == (sim is None):
        raise BotError("give --config (an account) or --sim (a simulation's output), one of them")
    require_extra()
    from bot.clock import LiveClock
    from bot.dashboard import server

    clock = LiveClock()
    hosts = server.allowed_hosts(host, allowed_hosts)
    if sim is not None:
        server.serve_forever(server.simulation_app(sim, clock, hosts), host, port, console)
        return
    assert config is not None  # noqa: S101 - checked above
    from bot.bootstrap import open_store
    from bot.config.loader import load_config

    cfg = load_config(config)
    store = open_store(cfg)  # never creates one: no database, no bot ran there (it says so)
    try:
        app = server.account_app(cfg, store, clock, refresh_seconds=refresh, hosts=hosts)
        server.serve_forever(app, host, port, console)
    finally:
        store.close()


def run_extras(
    *,
    dashboard: bool,
    host: str,
    port: int,
    metrics_port: int | None,
    console: Console,
    allowed_hosts: Sequence[str] = (),
) -> Callable[[BotConfig, Runner, SqlStore], Callable[[], None]] | None:
    """What ``bot run`` starts beside the bot once it is built; None when nothing is asked."""
    if not dashboard and metrics_port is None:
        return None
    from bot.dashboard import require_extra

    require_extra()
    from bot.dashboard.server import allowed_hosts as hosts_of

    hosts = hosts_of(host, allowed_hosts)  # a wrong name stops here, before the bot starts
    if dashboard:
        from bot.dashboard.server import check_token

        check_token()  # a bad BOT_DASHBOARD_TOKEN stops here, before the bot starts
    if dashboard and metrics_port == port:
        raise BotError(f"--metrics-port {metrics_port} is the dashboard's port: /metrics is on it")

    def start(config: BotConfig, runner: Runner, store: SqlStore) -> Callable[[], None]:
        from prometheus_client import CollectorRegistry

        from bot.dashboard import server
        from bot.dashboard.metrics import RuntimeMetrics

        registry = CollectorRegistry()
        own = RuntimeMetrics.create(registry)
        own.time_ticks(runner.engine)
        sink = own.count_retries()
        started: list[server.BackgroundServer] = []
        if dashboard:
            web = server.account_app(config, store, runner.clock, registry, hosts=hosts)
            started.append(server.start_background(web, host, port, console))
        if metrics_port is not None:
            app = server.metrics_app(config, store, runner.clock, registry, hosts)
            started.append(server.start_background(app, host, metrics_port, console))

        def stop() -> None:
            from loguru import logger

            for s in started:
                s.stop()
            logger.remove(sink)

        return stop

    return start
