"""Starting the dashboard: ``bot serve`` in the foreground, or a background thread of ``bot run``
(``--dashboard``: every page; ``--metrics-port``: ``/metrics`` and ``/healthz`` only)."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from rich.console import Console

from bot.clock import Clock, LiveClock, ReplayClock
from bot.config.models import BotConfig
from bot.dashboard.model import Source
from bot.dashboard.security import TOKEN_ENV, AllowedHosts, Guard
from bot.errors import ConfigError
from bot.stats.timeframes import parse_timeframe
from bot.store.sql import SqlStore

if TYPE_CHECKING:  # imported where an app is built, as the rest of the dashboard
    from bot.dashboard.account import AccountSource

LOCALHOST = "127.0.0.1"


def allowed_hosts(host: str, proxied: Sequence[str]) -> AllowedHosts:
    """The host names the web server answers for: the loopback names, ``host`` (``--host``)
    and ``proxied`` (``--allowed-host``, a reverse proxy's names)."""
    try:
        return AllowedHosts.serving(host, proxied)
    except ValueError as exc:
        raise ConfigError(f"--host / --allowed-host: {exc}") from None


def warn_if_exposed(host: str, console: Console | None) -> None:
    """Say loudly when the dashboard listens beyond this machine."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return
    text = (
        f"the dashboard listens on {host}, reachable from other machines: put it behind TLS "
        f"and an authenticating proxy (--allowed-host NAME for each name it is reached at), "
        f"and keep {TOKEN_ENV} secret"
    )
    logger.warning(text)
    if console is not None:
        console.print(f"[bold red]WARNING[/bold red]: {text}")


def account_source(config: BotConfig, store: SqlStore, clock: Clock) -> AccountSource:
    """The account of the bot that runs on ``clock``. A replay too fast for guard jobs
    (bot.runtime.scheduler) completes a job once per decision interval of replayed time, not
    per guard interval: its liveness is judged on that."""
    from bot.dashboard.account import AccountSource
    from bot.runtime.scheduler import replay_runs_guards

    guard_ms = None
    if isinstance(clock, ReplayClock) and not replay_runs_guards(
        config.runtime.guard_seconds, clock.speed
    ):
        guard_ms = parse_timeframe(config.policies[0].timeframe)
    return AccountSource(
        config, store, guard_ms=guard_ms, on_wall_clock=not isinstance(clock, ReplayClock)
    )


def account_app(
    config: BotConfig,
    store: SqlStore,
    clock: Clock,
    registry: Any = None,
    refresh_seconds: int | None = None,
    hosts: AllowedHosts | None = None,
) -> Any:
    """The dashboard of the account; ``hosts``: the names it answers for (default: loopback)."""
    from bot.dashboard.app import create_app

    guard = _guard()
    source: Source = account_source(config, store, clock)
    from bot.dashboard.app import REFRESH_SECONDS

    return create_app(
        {config.account.name: source},
        store=store,
        guard=guard,
        clock=clock,
        registry=registry,
        refresh_seconds=REFRESH_SECONDS if refresh_seconds is None else refresh_seconds,
        hosts=hosts,
    )


def simulation_app(directory: Path, clock: Clock, hosts: AllowedHosts | None = None) -> Any:
    from bot.dashboard.app import create_app
    from bot.dashboard.simulation import SimulationSource, discover_runs

    sources: dict[str, Source] = {
        name: SimulationSource(name, path) for name, path in discover_runs(directory).items()
    }
    return create_app(sources, store=None, guard=Guard(None), clock=clock, hosts=hosts)


def check_token() -> None:
    """Raise :class:`ConfigError` when ``BOT_DASHBOARD_TOKEN`` is set but unusable."""
    _guard()


def _guard() -> Guard:
    try:
        return Guard.from_environment()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def serve_forever(app: Any, host: str, port: int, console: Console | None) -> None:
    import uvicorn

    warn_if_exposed(host, console)
    if console is not None:
        console.print(f"dashboard on [bold]http://{host}:{port}/[/bold] (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@dataclass
class BackgroundServer:
    """A uvicorn server in a daemon thread (inside ``bot run``)."""

    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


def start_background(app: Any, host: str, port: int, console: Console | None) -> BackgroundServer:
    import uvicorn

    warn_if_exposed(host, console)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"dashboard:{port}", daemon=True)
    thread.start()
    wait = LiveClock()
    for _ in range(100):  # up to 5 s for the socket
        if server.started or not thread.is_alive():
            break
        wait.sleep(0.05)
    if not server.started:
        raise ConfigError(f"the web server could not listen on {host}:{port} (port in use?)")
    logger.info("web server on http://{}:{}/", host, port)
    return BackgroundServer(server, thread)


def metrics_app(
    config: BotConfig,
    store: SqlStore,
    clock: Clock,
    registry: Any,
    hosts: AllowedHosts | None = None,
) -> Any:
    """``/metrics`` and ``/healthz`` only (``bot run --metrics-port``); ``hosts``: the names it
    answers for (default: loopback)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from bot.dashboard.app import refuse_foreign_hosts
    from bot.dashboard.metrics import build_registry, health

    source = account_source(config, store, clock)
    account_registry, _ = build_registry(source, store, clock)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    refuse_foreign_hosts(app, hosts or AllowedHosts.serving())

    @app.get("/metrics")
    def metrics() -> Response:
        body = generate_latest(account_registry) + generate_latest(registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> Response:
        now = clock.now_ms()
        ov = source.overview(now)
        ok, detail = health(ov, now)
        return JSONResponse(
            {"ok": ok, "detail": detail, "last_job_ms": ov.last_job_ms, "last_job": ov.last_job},
            status_code=200 if ok else 503,
        )

    return app
