"""``bot run``: build the runner for paper or live trading and drive it."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from loguru import logger
from rich.console import Console
from rich.table import Table

from bot.alerts import Notifier
from bot.bootstrap import (
    ENV_KEY,
    Secrets,
    build_live,
    build_paper,
    check_history_reach,
    check_run_kind,
    lock_state_database,
    notifier_for,
    open_store,
    remember_run,
    replay_data,
    venue_of,
)
from bot.clock import LiveClock, utc_text
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import EventKind
from bot.errors import ConfigError, RateLimited
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.logs import setup_logging
from bot.runtime.events import record_event_now
from bot.runtime.preflight import Preflight, apply_changes, preflight
from bot.runtime.runner import Runner, end_named, held_for, venue_hold_alert
from bot.runtime.scheduler import Stopper, run_scheduled, start_at_first_tick
from bot.runtime.venue_hold import VenueHoldRunning, check_no_venue_hold, hold_reason
from bot.sim.paper import PaperExchange
from bot.stats.timeframes import parse_timeframe
from bot.store.instance_lock import InstanceLock
from bot.store.run_modes import LIVE_RUN_MODE, PAPER_RUN_MODE, REPLAY_RUN_MODE
from bot.store.sql import SqlStore
from bot.store.views import latest_run


def run_bot(
    config_path: Path,
    *,
    live: bool,
    yes: bool,
    once: bool,
    ticks: int | None,
    replay: Path | None,
    speed: float,
    console: Console,
    ignore_venue_hold: bool = False,
    on_ready: Callable[[BotConfig, Runner, SqlStore], Callable[[], None]] | None = None,
) -> int:
    """Run the bot. ``on_ready(config, runner, store)``, called once the runner is built, starts
    the web servers of ``--dashboard``/``--metrics-port`` and returns what stops them."""
    _check_options(ticks=ticks, speed=speed, replay=replay)
    config = load_config(config_path)
    if live and replay is not None:
        raise ConfigError(
            "--replay is paper trading on recorded data; it cannot be combined with --live"
        )
    if replay is None:
        check_history_reach(config)  # before anything is opened or logged
    secrets = Secrets.from_environment() if live else None
    _start_logging(config, secrets)
    if not live and os.environ.get(ENV_KEY):
        logger.warning("paper mode: {} is set but not used (live trading needs --live)", ENV_KEY)
    mode = LIVE_RUN_MODE if live else REPLAY_RUN_MODE if replay is not None else PAPER_RUN_MODE
    # The recorded data, read before the state database is taken or created: a directory
    # without the contracts' files fails the start with no database left behind (its lock
    # file would say a bot ran there, and the corrected start be refused once it is deleted).
    data = replay_data(config, replay) if replay is not None else None
    # Before the database is opened (or created and migrated): one bot per state database.
    lock = lock_state_database(config)
    try:
        store = open_store(config, create=True, used_by=lock.used_before)
    except BaseException:
        lock.release()
        raise
    paper: PaperExchange | None = None
    stop_extras: Callable[[], None] | None = None
    notifier: Notifier | None = None
    try:
        if latest_run(store) is not None:
            lock.mark_ran()  # a bot ran on it, whatever its lock file said: it keeps saying so
        # Before anything is read from it: a database another kind of run (paper, live on
        # another venue account) kept its state in is refused.
        check_run_kind(config, store, mode)
        _refuse_within_a_venue_hold(config, store, replay=replay, ignore=ignore_venue_hold)
        remember_run(config)  # (PostgreSQL: a start that finds it emptied later is refused)
        runner: Runner
        with _ban_met_by_the_start(config, store, venue_reads=replay is None):
            if secrets is not None:
                confirmed = _confirmed_live_runner(config, store, secrets, yes=yes, console=console)
                if confirmed is None:
                    console.print("not confirmed: nothing was traded")
                    return 1
                runner = confirmed
            else:
                runner, paper = build_paper(config, store, replay=data, speed=speed)
        notifier = runner.notifier
        runner.before_job.append(lock.check)  # a lock lost with its connection stops trading
        policy = config.policies[0]
        venue = venue_of(config) if mode == LIVE_RUN_MODE else None
        store.open_run(mode, str(config.source), policy.name, runner.clock.now_ms(), venue)
        # From here a bot ran on this database: its lock file says so (a start refused before
        # this point leaves the file as it found it, see InstanceLock.mark_ran).
        lock.mark_ran()
        logger.info(
            "{} trading {} with policy {}", mode, ", ".join(runner.engine.symbols), policy.name
        )
        if on_ready is not None:
            stop_extras = on_ready(config, runner, store)
        stopper = Stopper()
        stopper.install()  # from here a signal finishes the running tick, then stops
        try:
            if once:
                return _run_once(runner, parse_timeframe(policy.timeframe), replay=replay)
            rt = config.runtime
            run_scheduled(
                runner,
                clock=runner.clock,
                tf_ms=parse_timeframe(policy.timeframe),
                speed=speed,
                guard_seconds=rt.guard_seconds,
                grace_seconds=rt.misfire_grace_seconds,
                funding_lead_seconds=rt.funding_lead_seconds,
                max_ticks=ticks,
                stopper=stopper,
                live_time=replay is None,
            )
            return 0
        finally:
            stopper.uninstall()
    finally:
        if stop_extras is not None:
            stop_extras()
        _shut_down(notifier, paper, store, lock)


def _shut_down(
    notifier: Notifier | None, paper: PaperExchange | None, store: SqlStore, lock: InstanceLock
) -> None:
    """The end of a run: the alerts due go out within a few seconds (what a failing destination
    holds stays recorded undelivered, and the next start sends it), the paper account is saved,
    the database closed and its lock released."""
    try:
        if notifier is not None:
            notifier.close()
        if paper is not None:
            paper.save()
    finally:
        store.close()
        lock.release()
        logger.complete()


def _run_once(runner: Runner, tf_ms: int, *, replay: Path | None) -> int:
    """``--once``: one tick, now; a replay's at its first candle close from where it resumes
    (where the scheduler would run it: a candle a previous run decided is not decided again)."""
    if replay is not None:
        start_at_first_tick(runner.clock, tf_ms)
    return 0 if runner.tick() is not None else 1


def _confirmed_live_runner(
    config: BotConfig, store: SqlStore, secrets: Secrets, *, yes: bool, console: Console
) -> Runner | None:
    """The live runner once its preflight passed and the start is confirmed (``--yes`` or the
    prompt); None when the user declines. What the preflight found to change on the account
    (a margin mode) is shown in the summary and made after the confirmation, before the first
    tick; so is the host clock's offset to the venue's measured: a start declined at the
    prompt changes, records and sends nothing."""
    runner = build_live(config, store, secrets)
    exchange = runner.engine.exchange
    assert isinstance(exchange, CcxtExchange)  # noqa: S101 - build_live made it
    report = preflight(exchange, config, store, runner.engine.withdrawn)
    console.print(_live_summary(config, report))
    if not report.ok:
        raise ConfigError(
            "preflight failed; nothing was traded:\n  - " + "\n  - ".join(report.problems)
        )
    if not yes and not _confirmed(config):
        return None
    apply_changes(exchange, report)
    for started in runner.at_confirmed_start:
        started()
    return runner


@contextmanager
def _ban_met_by_the_start(
    config: BotConfig, store: SqlStore, *, venue_reads: bool
) -> Iterator[None]:
    """A rate limit or an IP ban the start's own reads meet (the venue's specifications, the
    preflight) is kept as the runner keeps one a job meets: recorded (a ``venue_hold`` event,
    so the next start is refused without a request until it ends, see
    :func:`_refuse_within_a_venue_hold`), alerted, and named with its end in the error. Else a
    service manager restarting the failed start sent into the ban at every restart, and
    Binance lengthens a ban for requests sent during it."""
    try:
        yield
    except RateLimited as exc:
        held = held_for(exc)
        named = end_named(exc)
        # (as the runner: a hold within a guard interval is a moment's, neither kept nor paged)
        if not venue_reads or held is None or (named and held <= config.runtime.guard_seconds):
            raise
        now = LiveClock().now_ms()
        until = now + round(held * 1000)
        try:
            record_event_now(
                store, now, EventKind.VENUE_HOLD, None, hold_reason(until, held, named=named)
            )
            alerts, _ = notifier_for(config, store, LiveClock())
            alerts.notify([venue_hold_alert(now, held, named)])
            alerts.close()  # (sent from a thread: the refusal below ends the process)
        except Exception as record_exc:  # (the refusal below still says until when)
            logger.error("the venue's hold cannot be recorded: {}", record_exc)
        raise VenueHoldRunning(
            f"the start's requests were refused by the venue ({exc}): no request before "
            f"{utc_text(until)}"
            + ("" if named else " at the least (an IP ban; the venue named no end)")
            + "; nothing was traded, the resting stops stay on the exchange. A start before "
            "then is refused without a request (--ignore-venue-hold starts anyway: only from "
            "another IP address)"
        ) from exc


def _refuse_within_a_venue_hold(
    config: BotConfig, store: SqlStore, *, replay: Path | None, ignore: bool
) -> None:
    """Before any request: a start within a ban the last run was told of lengthens it (a
    replay sends nothing to the venue)."""
    if replay is not None or ignore:
        return
    check_no_venue_hold(store, LiveClock().now_ms(), f"{config.source}: runtime.database_url")


def _check_options(*, ticks: int | None, speed: float, replay: Path | None) -> None:
    """Options that would end in a traceback or a run other than the one asked for, refused
    before anything is opened."""
    if ticks is not None and ticks < 1:
        raise ConfigError(f"--ticks {ticks}: the number of ticks to run must be at least 1")
    if not math.isfinite(speed) or speed <= 0:
        raise ConfigError(f"--speed {speed}: the replay speed must be a finite number > 0")
    if replay is None and speed != 1:
        raise ConfigError(
            f"--speed {speed} replays recorded data faster: it needs --replay DIR "
            "(live prices run at the speed of time)"
        )


def _start_logging(config: BotConfig, secrets: Secrets | None) -> None:
    try:
        setup_logging(
            config.runtime.log_dir,
            level=config.runtime.log_level,
            secrets=[secrets.api_key, secrets.api_secret, secrets.password]
            if secrets
            else [os.environ.get(ENV_KEY)],
        )
    except OSError as exc:  # before anything is opened: one line, not a traceback
        raise ConfigError(
            f"{config.source}: runtime.log_dir: cannot write the log files in "
            f"{config.runtime.log_dir}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else "")
        ) from None


def _confirmed(config: BotConfig) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError(
            "live trading asks for confirmation: run it in a terminal, or pass "
            "--yes to confirm on the command line"
        )
    return typer.confirm(f"Trade LIVE on {config.exchange.name} as '{config.account.name}'?")


def _live_summary(config: BotConfig, report: Preflight) -> Table:
    r = config.risk
    table = Table(title="LIVE TRADING", show_header=False)
    table.add_row("account", config.account.name)
    table.add_row("exchange", venue_of(config))
    table.add_row("contracts", ", ".join(f"{c.symbol} ({c.direction})" for c in config.contracts))
    table.add_row("policy", config.policies[0].name)
    hedge = config.policies[0].hedge
    if hedge is not None:  # the confirmation shows every contract the bot will trade
        spot = ""
        if config.spot is not None:
            spot = f", spot ({config.spot.source}): {', '.join(config.spot.assets)}"
        table.add_row(
            "hedge",
            f"{', '.join(hedge.instruments)}: net exposure {hedge.target_net_exposure}x "
            f"+- {hedge.band} of equity{spot}",
        )
    table.add_row(
        "limits",
        f"leverage {r.max_leverage_per_contract}x per contract, gross "
        f"{r.max_gross_leverage}x, notional {r.max_notional_per_contract}, daily loss "
        f"{r.daily_loss_limit:.0%}, drawdown {r.max_drawdown:.0%}",
    )
    for fact in report.facts:
        table.add_row("ok", fact)
    for warning in report.warnings:
        table.add_row("[yellow]warning[/yellow]", warning)
    for change in report.changes:  # made once the start is confirmed
        table.add_row("[cyan]change[/cyan]", str(change))
    for problem in report.problems:
        table.add_row("[red]problem[/red]", problem)
    return table
