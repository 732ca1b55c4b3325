"""The composition root: the only module that picks implementations.

:func:`engine_for` builds the engine from the configuration, the same way in every mode; the
modes differ only in the clock, the exchange, the market data and the store handed to it:

* simulation (:func:`build_simulation`, driven by :mod:`bot.backtest.replay`): a
  :class:`~bot.clock.SimClock`, the simulated exchange, recorded history, a memory store;
* paper (:func:`build_paper`): the simulated exchange made durable (:class:`PaperExchange`) with
  live public prices or recorded data, the SQL store;
* live (:func:`build_live`): the ccxt adapter with keys from the environment, the SQL store.

The live and SQL adapters (ccxt, SQLAlchemy, Alembic, the runner) are imported by the functions
that build them, so a simulation does not load them: its speed and memory stay its own.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from loguru import logger

from bot.catalogue import resolve_instruments, stand_ins
from bot.clock import Clock, LiveClock, ReplayClock, SimClock
from bot.config.database_url import database_url_secrets
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.engine.contracts import ContractSpec
from bot.engine.fanout import SEQUENTIAL, Fanout, ThreadFanout
from bot.engine.hedging import hedge_symbols, with_hedge_symbols
from bot.engine.market import candles_needed, statistics_spec
from bot.engine.tick import Engine
from bot.errors import ConfigError, DataError, UnknownMarket
from bot.logs import REDACTOR
from bot.marketdata.files import discover
from bot.marketdata.signals import load_signals
from bot.ports.exchange import ExchangePort, SpotWalletPort
from bot.ports.market import MarketDataPort
from bot.ports.store import StorePort
from bot.risk.limits import RiskLimits
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import (
    ContractHistory,
    HistoricalMarket,
    load_histories,
    requested_window,
    simulation_window,
)
from bot.sim.paper_state import processed_ms, restore
from bot.sim.slippage import BPS, SlippageModel
from bot.store.memory import MemoryStore
from bot.store.run_modes import LIVE_RUN_MODE, PAPER_RUN_MODE, REPLAY_RUN_MODE

if TYPE_CHECKING:  # the adapters below are imported where they are built (module docstring)
    from bot.alerts import AlertRules, Notifier
    from bot.exchange.ccxt_adapter import CcxtExchange
    from bot.runtime.feeds import PriceFeed
    from bot.runtime.runner import Runner
    from bot.sim.paper import PaperExchange
    from bot.store.instance_lock import InstanceLock
    from bot.store.sql import SqlStore

ENV_KEY, ENV_SECRET, ENV_PASSWORD = "BOT_API_KEY", "BOT_API_SECRET", "BOT_API_PASSWORD"


def risk_limits(config: BotConfig, policy: Policy) -> RiskLimits:
    """The stricter of the configuration's hard limits and the policy's own."""
    r = config.risk
    return RiskLimits(
        max_leverage_per_contract=r.max_leverage_per_contract,
        max_gross_leverage=r.max_gross_leverage,
        max_notional_per_contract=r.max_notional_per_contract,
        daily_loss=min(r.daily_loss_limit, policy.limits.daily_loss),
        max_drawdown=min(r.max_drawdown, policy.limits.max_drawdown),
        stale_data_ms=r.stale_data_seconds * 1000,
        max_orders_per_minute=r.max_orders_per_minute,
        on_daily_loss=r.on_daily_loss,
        stop_slippage=r.expected_stop_slippage_bps / 10000,
        max_unreadable_reads=r.max_unreadable_reads,
        max_protection_failures=r.max_protection_failures,
    )


def slippage_model(config: BotConfig) -> SlippageModel:
    """The configured slippage model (see :mod:`bot.sim.slippage`)."""
    sim = config.simulation
    if sim.slippage_model == "fixed":
        return SlippageModel.fixed(sim.slippage_bps)
    return SlippageModel(
        floor=sim.slippage_bps * BPS,
        range_fraction=sim.slippage_range_fraction,
        impact=sim.slippage_impact,
    )


def contract_specs(config: BotConfig, symbols: tuple[str, ...]) -> list[ContractSpec]:
    by_symbol = {c.symbol: c for c in config.contracts}
    specs = []
    for sym in symbols:
        c = by_symbol.get(sym)
        direction = c.direction if c is not None else "long"
        signal = None
        if c is not None and c.direction == "signal" and c.signal_file is not None:
            series = load_signals(c.signal_file)
            if sym not in series:
                raise DataError(f"{c.signal_file}: no signals for {sym}")
            signal = series[sym]
        cap = c.max_leverage if c is not None and c.max_leverage is not None else Decimal(125)
        notional = c.max_notional if c is not None else None
        specs.append(ContractSpec(sym, direction, cap, signal, notional))
    return specs


def config_instruments(
    config: BotConfig, symbols: Sequence[str], data_dir: Path | None = None
) -> dict[str, Instrument]:
    """The specifications of ``symbols`` on the configured exchange: the user's catalogue under
    the data directory first, then the bundled snapshot (see :mod:`bot.catalogue`); a ConfigError
    names any contract in neither, both places and the command that fixes it. ``data_dir`` (a
    ``--data`` override) holds the catalogue instead of the configured data directory."""
    try:
        return resolve_instruments(config.data.exchange, symbols, data_dir or config.data.dir)
    except ConfigError as exc:
        raise ConfigError(f"{config.source}: contracts: {exc}") from None


def engine_for(
    config: BotConfig,
    policy: Policy,
    symbols: Sequence[str],
    *,
    clock: Clock,
    exchange: ExchangePort,
    market: MarketDataPort,
    store: StorePort,
    spot: SpotWalletPort | None = None,
    fanout: Fanout = SEQUENTIAL,
) -> Engine:
    """The engine for ``config`` and ``policy``: the same wiring in simulation, paper and live.

    ``fanout`` runs a tick's independent exchange calls: one after the other (simulation and
    paper, deterministic) unless live trading passes a thread pool. The policy's hedge
    instruments are contracts of the engine with direction ``hedge``. Spot holdings come from
    ``spot`` (live: the venue's wallet) or else from the configuration."""
    from bot.exchange.spot import ConfiguredSpotWallet

    hedges = hedge_symbols(policy)
    specs = [
        replace(c, direction="hedge", signal=None) if c.symbol in hedges else c
        for c in contract_specs(config, tuple(symbols))
    ]
    if spot is None and config.spot is not None:
        if config.spot.source == "exchange":
            raise ConfigError(
                f'{config.source}: spot.source = "exchange" reads the live spot wallet; '
                'simulation and paper trading need spot.source = "config" with quantities'
            )
        spot = ConfiguredSpotWallet(config.spot.configured())
    return Engine(
        clock=clock,
        exchange=exchange,
        market=market,
        store=store,
        policy=policy,
        contracts=specs,
        limits=risk_limits(config, policy),
        account=config.account.name,
        margin_mode=MarginMode(config.account.margin_mode),
        fanout=fanout,
        spot=spot,
        spot_assets=config.spot.assets if config.spot is not None else (),
        quote=config.account.quote,
    )


class SimulationParts(NamedTuple):
    clock: SimClock
    exchange: SimulatedExchange
    market: HistoricalMarket
    store: MemoryStore
    engine: Engine


def build_simulation(
    config: BotConfig,
    policy: Policy,
    histories: dict[str, ContractHistory],
    instruments: dict[str, Instrument],
    start: int,
    *,
    exchange_type: type[SimulatedExchange] = SimulatedExchange,
) -> SimulationParts:
    """The dry run's parts at ``start``: the simulated exchange (``exchange_type``: a subclass
    may observe or constrain it, e.g. in tests) over ``histories``, a memory store, the engine."""
    clock = SimClock(start)
    exchange = exchange_type(
        instruments,
        clock,
        starting_balance=config.account.starting_balance,
        margin_mode=MarginMode(config.account.margin_mode),
        slippage_bps=config.simulation.slippage_bps,
        quote=config.account.quote,
        slippage_model=slippage_model(config),
    )
    market = HistoricalMarket(histories)
    store = MemoryStore()
    engine = simulation_engine(config, policy, clock, exchange, market, store)
    return SimulationParts(clock, exchange, market, store, engine)


def simulation_engine(
    config: BotConfig,
    policy: Policy,
    clock: SimClock,
    exchange: SimulatedExchange,
    market: HistoricalMarket,
    store: MemoryStore,
) -> Engine:
    """The engine deciding ``policy`` on a dry run's parts, its statistics computed ahead on the
    market's history: at the start, and at a policy switch (a restart with another policy file:
    the same exchange, clock and store)."""
    market.precompute(statistics_spec(policy))
    return engine_for(
        config,
        policy,
        tuple(market.contracts),
        clock=clock,
        exchange=exchange,
        market=market,
        store=store,
    )


@dataclass(frozen=True, slots=True)
class Secrets:
    api_key: str
    api_secret: str
    password: str | None

    @classmethod
    def from_environment(cls) -> Secrets:
        key, secret = os.environ.get(ENV_KEY, ""), os.environ.get(ENV_SECRET, "")
        missing = [n for n, v in ((ENV_KEY, key), (ENV_SECRET, secret)) if not v.strip()]
        if missing:
            raise ConfigError(
                f"live trading needs the API key in the environment: set "
                f"{' and '.join(missing)} (keys are never read from the config)"
            )
        password = os.environ.get(ENV_PASSWORD) or None
        # A pasted key often carries a newline or a space: the venue then answers with an
        # authentication error that does not say why. Named, never shown.
        # (a passphrase may hold a space inside: only its ends and control characters count)
        spaced = [
            n
            for n, v in ((ENV_KEY, key), (ENV_SECRET, secret))
            if any(c.isspace() or not c.isprintable() for c in v)
        ]
        if password is not None and (password != password.strip() or not password.isprintable()):
            spaced.append(ENV_PASSWORD)
        if spaced:
            raise ConfigError(
                f"{' and '.join(spaced)} holds a space, a line break or a control character "
                "(pasted with the key?): set it to the key alone"
            )
        return cls(key, secret, password)


def open_store(
    config: BotConfig,
    *,
    create: bool = False,
    used_by: str | None = None,
    older: Collection[str] = (),
) -> SqlStore:
    """Open the state database, which must already be at the current schema (``bot db
    upgrade`` migrates an older one, keeping its history), or at one of the ``older`` revisions
    (``bot halt`` and ``bot resume``: ``migrate.COMMAND_REVISIONS``). An older one refused while
    a bot runs on it (an older version's, during an upgrade: ``bot db upgrade`` waits for it to
    stop) is refused with the order that works (``migrate.older_message``).

    ``create``: only for ``bot run``, holding the database's instance lock: a SQLite file that
    is missing is created at the current schema (the bot's first start), unless ``used_by`` (the
    process that last held the lock, :attr:`InstanceLock.used_before`) says a bot ran on it. Then
    the file was deleted or moved: a new empty one would silently forget a halt a person set, the
    drawdown peak and which positions are the bot's own (left unmanaged). Refused instead. A
    PostgreSQL database found empty although a bot ran on it (:mod:`bot.store.ran_before`) is
    refused the same way.

    Every other command (``status``, ``history``, ``halt``, ``resume``, ``serve``, ``stress
    --from-account``) opens it without ``create``: a missing file is an error naming it, never
    an empty database made in its place (the next ``bot run`` would start afresh on it, and a
    halt posted through a mistyped ``database_url`` would land where no bot reads). Nor does
    any of them migrate: an empty PostgreSQL database is refused by the schema check."""
    from bot.store import migrate
    from bot.store.sql import SqlStore

    url = config.runtime.database_url
    with database_errors(config):
        path = migrate.sqlite_file(url)
        if path is None:
            _refuse_an_emptied_database(config)
        elif not path.exists():
            holder = used_by if create else _last_lock_holder(path)
            if holder is not None:
                raise ConfigError(
                    f"{config.source}: runtime.database_url: the state database {path} is "
                    f"missing, but a bot ran on it (process {holder}, lock file "
                    f"{path.name}.lock): it was deleted or moved. Put it back (or restore it "
                    "from a backup); to start afresh on an empty database, create it with: "
                    f"{migrate.UPGRADE_COMMAND}"
                )
            if not create:
                raise ConfigError(
                    f"{config.source}: runtime.database_url: no state database at {path}: no "
                    "bot has run there (check runtime.database_url). `bot run` creates it at "
                    "its first start; to create an empty one on purpose: "
                    f"{migrate.UPGRADE_COMMAND}"
                )
            migrate.upgrade(url)
        try:
            return SqlStore.open(url, older=older)
        except migrate.SchemaOlder as exc:
            # (``create``: ``bot run``, which holds the lock itself: no other bot runs there)
            running = None if create else _running_bot(url)
            if running is None:
                raise
            raise migrate.SchemaOlder(
                migrate.older_message(url, exc.current, running), exc.current
            ) from None


def _running_bot(url: str) -> str | None:
    """The process of the bot running on the database at ``url`` (holding its instance lock),
    None when none runs or that cannot be told (the message without it is still right)."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store.instance_lock import running_holder

    try:
        return running_holder(url)
    except (OSError, SQLAlchemyError):
        return None


# Why a state database last run in one mode (the first) refuses a start in another.
_PAPER_STATE_LIVE = (
    "its equity peak, trading state and day start are the paper account's: the real wallet "
    "measured against them reads the difference as a profit or a loss (a smaller wallet as a "
    "drawdown: a halt that closes every position at the first tick)"
)
_LIVE_STATE_PAPER = (
    "its equity peak, trading state and day start are the live account's: a paper bot would "
    "take them as its own and leave the paper account's in their place, for the next live "
    "start to measure the real wallet against"
)
_OTHER_KIND = {
    (PAPER_RUN_MODE, LIVE_RUN_MODE): _PAPER_STATE_LIVE,
    (REPLAY_RUN_MODE, LIVE_RUN_MODE): _PAPER_STATE_LIVE,
    (LIVE_RUN_MODE, PAPER_RUN_MODE): _LIVE_STATE_PAPER,
    (LIVE_RUN_MODE, REPLAY_RUN_MODE): _LIVE_STATE_PAPER,
    (PAPER_RUN_MODE, REPLAY_RUN_MODE): "its paper account runs on the wall clock: a replay "
    "would go on from where that account stopped, past the recorded data",
    (REPLAY_RUN_MODE, PAPER_RUN_MODE): "its paper account runs on the replayed clock: on live "
    "prices it would be valued at today's prices and pay every funding settlement since its "
    "replayed time at today's rate",
}


def venue_of(config: BotConfig) -> str:
    """The venue account a live bot trades, as its runs record it and its start shows it: the
    exchange, its demo account or the real one, and the REST base a gateway or test server is
    reached at (without a user or password the URL may carry)."""
    ex = config.exchange
    venue = f"{ex.name}{' (demo)' if ex.demo else ''}"
    if ex.api_url is not None:
        parts = urlsplit(ex.api_url)
        host = parts.netloc.rpartition("@")[2]
        venue += f" via {parts.scheme}://{host}{parts.path.rstrip('/')}"
    return venue


def check_run_kind(config: BotConfig, store: SqlStore, mode: str) -> None:
    """Refuse to start a run of ``mode`` on a state database whose last run was of another mode
    (live, paper, paper-replay: each keeps its own), or, live, traded another venue account.

    The risk memory (equity peak, trading state, day start), the paper account and the journal
    belong to the account that ran there. A live start on the paper bot's database (both use
    the default ``sqlite:///bot-state.db``) measured the real wallet against the paper
    account's equity peak: a sticky drawdown halt and every position closed at the first tick.
    The same goes for a live start on another venue account (demo to real, another exchange,
    a test server) than the database's last live run (recorded since migration 0006; older
    runs say nothing and refuse nothing). Paper on live prices and paper on recorded data do
    not share either: their paper account runs on the wall clock in one and on the replayed
    clock in the other (``_OTHER_KIND`` says what mixing them does)."""
    from bot.store import views
    from bot.store.migrate import safe_url

    last = views.latest_run(store)
    if last is None:
        return
    where = (
        f"{config.source}: runtime.database_url: the state database "
        f"{safe_url(config.runtime.database_url)} holds the state of a {last.mode} bot"
        f"{' on ' + last.venue if last.venue else ''} (its last run: {last.id}, from "
        f"{last.config_path})"
    )
    fix = (
        f"Give each its own state database: set another runtime.database_url for this {mode} "
        f"bot (e.g. sqlite:///bot-state-{mode}.db); this one is left as it is"
    )
    if last.mode != mode:
        why = _OTHER_KIND.get((last.mode, mode), "the state it kept is that run's, not this one's")
        raise ConfigError(f"{where}; this start is {mode}: {why}. {fix}")
    if mode == LIVE_RUN_MODE and last.venue is not None and last.venue != venue_of(config):
        raise ConfigError(
            f"{where}; this start trades {venue_of(config)}, another account: the equity "
            "peak, trading state and day start it kept are that account's, and this wallet "
            "measured against them reads the difference as a profit or a loss (a smaller "
            f"wallet as a drawdown: a halt that closes every position at the first tick). {fix}"
        )


def _last_lock_holder(database: Path) -> str | None:
    """The process that last held the instance lock of the SQLite ``database``, as its lock
    file says (read, not taken: a command that only reads the database does not lock it); None
    when there is no lock file or it names none (no bot ran there)."""
    from bot.store.instance_lock import lock_path

    try:
        return lock_path(database).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):  # a lock file is there: a bot ran, which one is unknown
        return "unknown"


def _refuse_an_emptied_database(config: BotConfig) -> None:
    """A ConfigError when the (PostgreSQL) state database has no tables although a bot ran on
    it: it was dropped and created again, or its data was lost. Its schema check alone said
    "never migrated: run bot db upgrade", which started the bot afresh."""
    from bot.store import migrate
    from bot.store.ran_before import mark_path, ran_before

    url = config.runtime.database_url
    if mark_path(url, config.runtime.log_dir) is None:
        return  # SQLite: its lock file remembers
    if migrate.current_revision(url) is not None:
        return  # at its schema: the mark is not read (bot status may not be allowed to)
    holder = ran_before(url, config.runtime.log_dir)
    if holder is None:
        return
    raise ConfigError(
        f"{config.source}: runtime.database_url: the state database {migrate.safe_url(url)} "
        f"is empty (no tables), but a bot ran on it before (process {holder}, as "
        f"{mark_path(url, config.runtime.log_dir)} records): it was dropped and created "
        "again, or its data was lost. Restore it from a backup; to start afresh on an empty "
        f"database on purpose, create its tables with: {migrate.UPGRADE_COMMAND}"
    )


def remember_run(config: BotConfig) -> None:
    """Leave the mark of a bot running on the (PostgreSQL) state database, once it is open at
    its schema (:mod:`bot.store.ran_before`). A mark that cannot be written is said, not fatal:
    only the refusal of an emptied database depends on it."""
    from bot.store.ran_before import mark_ran

    try:
        mark_ran(config.runtime.database_url, config.runtime.log_dir, os.getpid())
    except OSError as exc:
        logger.warning(
            "cannot note in {} that this bot runs on its state database ({}): an emptied "
            "database would not be recognised at the next start",
            config.runtime.log_dir,
            exc,
        )


def lock_state_database(config: BotConfig) -> InstanceLock:
    """Take the state database for this process: one running bot per database. Another bot on
    it is :class:`~bot.store.instance_lock.AlreadyRunning`; a database that cannot be reached
    is a ConfigError line, as in :func:`open_store`."""
    from bot.store.instance_lock import InstanceLock

    with database_errors(config):
        return InstanceLock.acquire(config.runtime.database_url)


@contextmanager
def database_errors(config: BotConfig) -> Iterator[None]:
    """A database that cannot be reached or opened is one ConfigError line, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store import migrate

    url = config.runtime.database_url
    # The driver's and SQLAlchemy's own messages may quote the URL: its password never
    # reaches a log line, an alert or the dashboard (every command that opens it comes here).
    REDACTOR.add(database_url_secrets(url))
    try:
        yield
    except (SQLAlchemyError, OSError, ImportError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = first[0] if first else type(exc).__name__
        raise ConfigError(
            f"{config.source}: runtime.database_url: cannot open the database "
            f"{migrate.safe_url(url)}: {type(exc).__name__}: {reason}"
        ) from None


def check_history_reach(config: BotConfig) -> None:
    """Live prices come from the venue, one request per contract: a window longer than one
    request can bring would leave the bot waiting for data forever. Say so before starting."""
    from bot.exchange.ccxt_market import closed_candles_per_request, served_timeframes, serves
    from bot.stats.timeframes import parse_timeframe

    reach = closed_candles_per_request(config.exchange.name)
    for policy in config.policies:
        if not serves(parse_timeframe(policy.timeframe)):
            # A simulation resamples its files to any length; live candles are read as the
            # venue serves them, and a tick on another length would fail every time.
            raise ConfigError(
                f"{config.source}: policy {policy.name}: timeframe = {policy.timeframe!r}: live "
                f"prices are read in {', '.join(served_timeframes())} candles only"
            )
        windows = {
            "volatility.window": policy.volatility.window,
            "atr_window": policy.atr_window,
        }
        if policy.allocation is not None:
            windows["allocation.covariance_window"] = policy.allocation.covariance_window
        if policy.hedge is not None:
            windows["hedge.beta_window"] = policy.hedge.beta_window
        key, window = max(windows.items(), key=lambda kv: kv[1])
        if candles_needed(policy) > reach:
            raise ConfigError(
                f"{config.source}: policy {policy.name}: {key} = {window} needs "
                f"{candles_needed(policy)} closed {policy.timeframe} candles, but "
                f"{config.exchange.name} serves at most {reach} in one request: the bot would "
                f"never decide (use {key} <= {reach - 1}, or a longer timeframe)"
            )


RESTORED_ALERTS = 1000  # the newest critical alerts still owed looked at for a start to hold again


def notifier_for(config: BotConfig, store: SqlStore, clock: Clock) -> tuple[Notifier, AlertRules]:
    """The configured alert destinations: every runner's, and ``bot run``'s start before
    any runner exists."""
    from bot.alerts import AlertRules, Notifier, apprise_destinations
    from bot.runtime.runner import ended_incidents
    from bot.store import views

    rt = config.runtime
    rules = AlertRules(
        rt.alert_margin_ratio,
        rt.alert_liquidation_vol_units,
        rt.alert_dedup_minutes * 60,
        rt.alert_max_per_hour,
    )
    try:
        destinations = apprise_destinations(rt.alert_urls)
    except ValueError as exc:
        raise ConfigError(f"{config.source}: runtime.alert_urls: {exc}") from None
    notifier = Notifier(store, clock, destinations, rules, account=config.account.name)
    if destinations:
        # A restart does not lose what a failing destination held, whatever its age (a halt
        # held for hours is still news): sent at the first job, to the destinations that did
        # not receive it, saying when it was, and since when it is over when its incident's
        # end was recorded since. (An alert an older bot recorded, without per-destination
        # deliveries, is held again within the hour it kept them, as that bot did.)
        owed = views.owed_critical(
            store,
            [d.id for d in destinations],
            dedup_ms=rules.dedup_seconds * 1000,
            limit=RESTORED_ALERTS,
        )
        legacy_since = clock.now_ms() - max(rules.dedup_seconds, 3600) * 1000
        owed = [o for o in owed if not o.legacy or o.ts_ms >= legacy_since]
        if owed:
            ended = ended_incidents(store, min(o.ts_ms for o in owed))
            notifier.restore(owed, ended)
    return notifier, rules


def engine_symbols(config: BotConfig) -> list[str]:
    """The engine's contracts: the configured ones and the policy's hedge instruments."""
    return list(with_hedge_symbols([c.symbol for c in config.contracts], config.policies[0]))


def symbol_key(config: BotConfig, symbol: str) -> str:
    """Where the configuration names ``symbol``: a contract's key or the policy's hedge key."""
    for i, c in enumerate(config.contracts):
        if c.symbol == symbol:
            return f"contracts[{i}].symbol"
    policy = config.policies[0]
    if policy.hedge is not None and symbol in policy.hedge.instruments:
        return f"policy {policy.name!r} hedge.instruments[{policy.hedge.instruments.index(symbol)}]"
    return "symbol"


def _engine(
    config: BotConfig,
    clock: Clock,
    exchange: ExchangePort,
    market: MarketDataPort,
    store: SqlStore,
    spot: SpotWalletPort | None = None,
    fanout: Fanout = SEQUENTIAL,
) -> Engine:
    symbols = engine_symbols(config)
    return engine_for(
        config,
        config.policies[0],
        symbols,
        clock=clock,
        exchange=exchange,
        market=market,
        store=store,
        spot=spot,
        fanout=fanout,
    )


@dataclass(frozen=True, slots=True)
class ReplayData:
    """The recorded data ``bot run --replay DIR`` trades on: the histories of the engine's
    contracts, and the window of them the replay runs through."""

    histories: dict[str, ContractHistory]
    start: int
    end: int


def replay_data(config: BotConfig, directory: Path) -> ReplayData:
    """Read ``directory``'s market data for the engine's contracts, or raise naming what is
    missing. ``bot run --replay`` calls it before it takes or creates the state database: a
    start that fails on its data leaves no database behind (one it had created would say that
    a bot ran there, and once deleted get the corrected start refused)."""
    policy = config.policies[0]
    histories = load_histories(
        discover(directory),
        engine_symbols(config),
        policy.timeframe,
        window=requested_window(config),
    )
    start, end = simulation_window(histories, policy, config)
    return ReplayData(histories, start, end)


def build_paper(
    config: BotConfig,
    store: SqlStore,
    *,
    replay: Path | ReplayData | None = None,
    speed: float = 1.0,
    clock: Clock | None = None,
) -> tuple[Runner, PaperExchange]:
    """Paper trading: live public prices, or recorded data (``replay``: its directory, or the
    data read from it) at ``speed``."""
    from bot.runtime.runner import Runner
    from bot.sim.paper import PaperExchange

    symbols = engine_symbols(config)
    known = config_instruments(config, symbols)
    for sym, catalogue in stand_ins(config.data.exchange, symbols, config.data.dir).items():
        logger.warning("paper trading {} on: {}", sym, catalogue.notes[sym])
    if config.data.exchange != config.exchange.name:
        logger.warning(
            "paper trading fills with {}'s contract specifications, fees and brackets "
            "(data.exchange) while exchange.name is {}: remove data.exchange to use the "
            "traded venue's",
            config.data.exchange,
            config.exchange.name,
        )
    market: MarketDataPort
    feed: PriceFeed
    state = store.load_paper_state(config.account.name)
    if replay is not None:
        from bot.runtime.feeds import ReplayFeed

        policy = config.policies[0]
        data = replay if isinstance(replay, ReplayData) else replay_data(config, replay)
        histories, start, end = data.histories, data.start, data.end
        if state is not None:  # a restarted replay goes on from where the account stopped
            with _paper_state_errors(config):
                start = max(start, processed_ms(state))
        # (every completed decision tick records one, at its time; a guard's readings are not
        # decisions)
        decided = store.latest_equity(decision=True)
        if decided is not None:
            # ... and after its last decision: a tick that completed is never run again on the
            # same candle (the scheduler's first tick is the next candle close from here)
            start = max(start, decided.ts_ms + 1)
        clock = clock or ReplayClock(start, speed)
        sim = _paper_sim(config, known, symbols, clock, state)
        sim.processed_ms = sim.processed_ms or start - 1
        hist = HistoricalMarket(histories)
        hist.precompute(statistics_spec(policy))
        market, feed = hist, ReplayFeed(sim, hist)
    else:
        from bot.exchange.ccxt_market import CcxtMarketData
        from bot.runtime.feeds import LiveFeed

        clock = clock or LiveClock()
        check_history_reach(config)
        sim = _paper_sim(config, known, symbols, clock, state)
        public = public_exchange(config, clock)
        market, feed = CcxtMarketData(public), LiveFeed(sim, public, symbols)
    paper = PaperExchange(
        sim, lambda payload: store.save_paper_state(config.account.name, payload, clock.now_ms())
    )
    notifier, rules = notifier_for(config, store, clock)
    runner = Runner(
        engine=_engine(config, clock, paper, market, store),
        store=store,
        clock=clock,
        notifier=notifier,
        rules=rules,
        feed=feed,
        save_paper=paper.save,
        max_failures=config.runtime.max_failures,
        long_hold_s=float(config.runtime.guard_seconds),
        # the database file deleted or replaced, or its tables recreated: nothing is kept
        before_job=[store.check_file, store.check_identity],
    )
    if replay is not None:
        runner.replay_end_ms = end
    return runner, paper


def _paper_sim(
    config: BotConfig,
    known: dict[str, Instrument],
    symbols: list[str],
    clock: Clock,
    state: str | None,
) -> SimulatedExchange:
    sim = SimulatedExchange(
        {s: known[s] for s in symbols},
        clock,
        starting_balance=Decimal(config.account.starting_balance),
        margin_mode=MarginMode(config.account.margin_mode),
        slippage_bps=config.simulation.slippage_bps,
        quote=config.account.quote,
        slippage_model=slippage_model(config),
    )
    if state is not None:
        with _paper_state_errors(config):
            restore(sim, state)
    return sim


@contextmanager
def _paper_state_errors(config: BotConfig) -> Iterator[None]:
    """A saved paper account that cannot be read names the account, the database and the way
    out; nothing runs on a half-read account."""
    try:
        yield
    except DataError as exc:
        from bot.store.migrate import safe_url

        raise DataError(
            f"paper account {config.account.name!r} in the state database "
            f"{safe_url(config.runtime.database_url)}: {exc}. Nothing was traded. Restore the "
            "database from a backup, or start a new paper account (another account.name or "
            "another runtime.database_url)"
        ) from None


def public_exchange(config: BotConfig, clock: Clock) -> CcxtExchange:
    """The configured venue without keys: public market data only (paper prices, ``bot vol``)."""
    from bot.exchange.factory import make_ccxt_exchange

    ex = config.exchange
    return make_ccxt_exchange(
        ex.name,
        demo=False,
        api_url=ex.api_url,
        options=ex.ccxt_options,
        api_key=None,
        api_secret=None,
        password=None,
        clock=clock,
        symbols=engine_symbols(config),
    )


def build_live(
    config: BotConfig, store: SqlStore, secrets: Secrets, clock: Clock | None = None
) -> Runner:
    """Live trading through ccxt with the keys from the environment."""
    from bot.exchange.ccxt_market import CcxtMarketData
    from bot.exchange.factory import make_ccxt_exchange
    from bot.runtime.catalogue_keeper import CatalogueKeeper
    from bot.runtime.clock_offset import ClockOffsetCheck
    from bot.runtime.runner import Runner

    clock = clock or LiveClock()
    check_history_reach(config)
    # every text the bot writes (logs, events, alerts, error messages) hides these values
    REDACTOR.add([secrets.api_key, secrets.api_secret, secrets.password])
    symbols = engine_symbols(config)
    ex = config.exchange
    exchange = make_ccxt_exchange(
        ex.name,
        demo=ex.demo,
        api_url=ex.api_url,
        options=ex.ccxt_options,
        api_key=secrets.api_key,
        api_secret=secrets.api_secret,
        password=secrets.password,
        clock=clock,
        symbols=symbols,
        account=config.account.name,
        hedge_reads_after=ex.hedge_reads_after_ms / 1000 if ex.hedge_reads_after_ms else None,
    )
    notifier, rules = notifier_for(config, store, clock)
    # Spot holdings read from the venue's spot wallet, or declared in the configuration.
    spot = exchange if config.spot is not None and config.spot.source == "exchange" else None
    # a tick's independent requests wait for the venue together (one ccxt client per thread)
    fanout = ThreadFanout(ex.max_parallel_requests)
    try:  # the engine reads the venue's contract specifications first
        engine = _engine(
            config, clock, exchange, CcxtMarketData(exchange), store, spot=spot, fanout=fanout
        )
    except UnknownMarket as exc:  # a symbol of the configuration: say which key names it
        raise ConfigError(
            f"{symbol_key(config, exc.symbol)} = {exc.symbol!r}: {ex.name} lists no such market "
            "(check the symbol; the venue may have delisted it)"
        ) from exc
    keeper = CatalogueKeeper(
        exchange,
        exchange_name=ex.name,
        data_dir=config.data.dir if ex.name == config.data.exchange else None,
        symbols=symbols,
        store=store,
        clock=clock,
        max_age_hours=config.data.catalogue_max_age_hours,
        on_refresh=engine.instruments.update,  # (shared with its reconciler and hedge desk)
        # a contract the venue withdrew or settles soon: that contract alone (engine.restrict)
        on_restrict=engine.restrict,
        notifier=notifier,
        settlement_lead_hours=config.data.settlement_lead_hours,
    )
    # at start: read the venue's specs, or refuse to start; its alerts are sent once the start
    # is confirmed (Runner.at_confirmed_start), or at the first tick
    keeper.check(hold_alerts=True)
    # a read the venue answers "no such symbol" asks the venue's market list at once: a
    # contract it withdrew is read no more and the others' reading goes on in the same job
    engine.listing_check = keeper.confirm_withdrawn
    # The host clock against the venue's: a clock far off is a clock event and an alert, at
    # start and at every hourly resync (which also keeps the signing offset fresh). Measured
    # at start by `bot run` once the start is confirmed (Runner.at_confirmed_start): a start
    # the user declines at the prompt records and sends nothing.
    offset = ClockOffsetCheck(exchange, store, notifier, clock, ex.name)
    return Runner(
        engine=engine,
        store=store,
        clock=clock,
        notifier=notifier,
        rules=rules,
        max_failures=config.runtime.max_failures,
        long_hold_s=float(config.runtime.guard_seconds),
        before_tick=[keeper.check],
        before_guard=[keeper.refresh_when_due],
        # the database file deleted or replaced, or its tables recreated: nothing is kept
        before_job=[store.check_file, store.check_identity],
        clock_resync=offset.resync,
        at_confirmed_start=[offset.at_start, keeper.release_alerts],
    )
