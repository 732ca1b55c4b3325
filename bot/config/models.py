"""Bot configuration: the frozen models one ``config.toml`` is validated into.

Relative paths are resolved against the directory of the file that names them (the loader passes
it as the validation context ``{"base_dir": ...}``; without a context, the working directory).
Input paths must exist. API keys are never configuration: they come from the environment
(``BOT_API_KEY`` / ``BOT_API_SECRET`` / ``BOT_API_PASSWORD``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.catalogue import resolve_with_sources
from bot.config.database_url import NotADatabaseUrl, database_url_secrets, parse_database_url
from bot.config.hedge import SpotConfig, spot_symbol
from bot.config.policy import (
    MAX_COOLDOWN,
    Dec,
    FrozenModel,
    Issue,
    OpenFraction,
    Policy,
    PositiveDec,
    at_most,
    matching,
    raise_issues,
)
from bot.domain.instrument import Instrument, MarginModel
from bot.errors import DataError
from bot.instruments import available_exchanges

BASE_DIR = "base_dir"  # key of the validation context holding the config file's directory
# Key of the validation context holding each policy's file as the loader shows it, by policy
# name: an error about a policy names its file (the config's policy.file or a --policy).
POLICY_FILES = "policy_files"

MarginModeName = Literal["isolated", "cross"]


def resolve_path(value: Path | str, base_dir: Path | None) -> Path:
    """Absolute form of ``value``, relative paths taken from ``base_dir`` (default: cwd)."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path.resolve()


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    found = context.get(BASE_DIR) if isinstance(context, dict) else None
    return Path(found) if found is not None else None


def _output_path(value: Path, info: ValidationInfo) -> Path:
    return resolve_path(value, _base_dir(info))


def _existing_dir(value: Path, info: ValidationInfo) -> Path:
    path = resolve_path(value, _base_dir(info))
    if not path.is_dir():
        problem = "not a directory" if path.exists() else "directory not found"
        raise PydanticCustomError("path_not_found", problem, {"got": str(path)})
    return path


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = resolve_path(value, _base_dir(info))
    if not path.is_file():
        problem = "not a file" if path.exists() else "file not found"
        raise PydanticCustomError("path_not_found", problem, {"got": str(path)})
    return path


def _sqlite_relative_to_config(value: str, info: ValidationInfo) -> str:
    # "sqlite:///state.db" is relative to the working directory; running the bot from another
    # directory would silently start from an empty state. Anchor it at the config file instead.
    prefix = "sqlite:///"
    rest = value[len(prefix) :]
    if value.startswith(prefix) and rest and not rest.startswith(("/", ":memory:")):
        return prefix + str(resolve_path(rest, _base_dir(info)))
    return value


def _usable_database_url(value: str) -> str:
    # Checked here, not at the first query: a wrong URL otherwise ends in a driver traceback.
    # Read without SQLAlchemy (bot.config.database_url): `bot simulate` loads configs and must
    # not pay for the SQL stack.
    try:
        url = parse_database_url(value)
    except NotADatabaseUrl as exc:
        raise PydanticCustomError("database_url", "{why}", {"why": str(exc)}) from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in ("sqlite", "postgresql"):
        raise PydanticCustomError(
            "database_url",
            "backend '{backend}' is not supported; use sqlite:///file.db or "
            "postgresql+psycopg://user@host/db",
            {"backend": backend},
        )
    if backend == "postgresql" and url.drivername not in ("postgresql", "postgresql+psycopg"):
        # the bot installs psycopg 3 (and uses it for a plain postgresql://)
        raise PydanticCustomError(
            "database_url",
            "driver '{driver}' is not installed; write postgresql+psycopg://",
            {"driver": driver},
        )
    if backend == "sqlite":
        if url.host:
            raise PydanticCustomError(
                "database_url",
                "a SQLite URL has three slashes before a file name: sqlite:///{host}",
                {"host": url.host},
            )
        if not url.database:
            raise PydanticCustomError(
                "database_url", "needs a database file, like sqlite:///bot-state.db"
            )
    return value


def _plain_numbers(value: object) -> object:
    # TOML floats arrive as Decimal (parse_float=Decimal); ccxt expects plain floats.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(item) for item in value]
    return value


InputDir = Annotated[Path, AfterValidator(_existing_dir)]
InputFile = Annotated[Path, AfterValidator(_existing_file)]
OutputPath = Annotated[Path, AfterValidator(_output_path)]
DatabaseUrl = Annotated[
    str,
    matching(r"[a-z0-9+]+://.*", "a SQLAlchemy URL like sqlite:///bot-state.db"),
    AfterValidator(_sqlite_relative_to_config),
    AfterValidator(_usable_database_url),
]
Symbol = Annotated[
    str, matching(r"[A-Z0-9]+/[A-Z0-9]+:[A-Z0-9]+", "a ccxt perpetual symbol like BTC/USDT:USDT")
]
Url = Annotated[str, matching(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+", "a URL like https://host/path")]


# ccxt options with a meaning the bot depends on: (key path, lowest, highest, unit).
# https://docs.ccxt.com/#/README?id=exchange-properties ; Binance caps recvWindow at 60000 ms.
_CCXT_BOUNDS: tuple[tuple[tuple[str, ...], float, float, str], ...] = (
    (("timeout",), 500, 120_000, "ms"),
    (("rateLimit",), 1, 60_000, "ms"),
    (("options", "recvWindow"), 1000, 60_000, "ms"),
)


def _sane_ccxt_options(options: dict[str, Any]) -> dict[str, Any]:
    issues: list[Issue] = []
    for path, low, high, unit in _CCXT_BOUNDS:
        node: Any = options
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            continue
        if isinstance(node, bool) or not isinstance(node, int | float):
            issues.append(Issue(path, f"must be a number of {unit}", repr(node)))
        elif not low <= node <= high:
            issues.append(Issue(path, f"must be within [{low}, {high}] {unit}", str(node)))
    flag = options.get("enableRateLimit")
    if flag is not None and not isinstance(flag, bool):
        issues.append(Issue(("enableRateLimit",), "must be true or false", repr(flag)))
    # ccxt's verbose mode print()s every request and answer to stdout (base/exchange.py
    # fetch: `if self.verbose: self.log(...)`, log = print), the API key header and signed
    # URLs with them, past the log redactor; its logger gets the same lines at DEBUG.
    if "verbose" in options and options["verbose"] is not False:
        issues.append(
            Issue(
                ("verbose",),
                "not allowed: ccxt would print every request, the API key and the signed URL "
                "with it, to stdout unredacted; run `bot --verbose ...` instead: the same "
                "request lines go to the log file (and to the console with runtime.log_level "
                '= "DEBUG"), secrets redacted',
                "true" if options["verbose"] is True else repr(options["verbose"]),
            )
        )
    raise_issues(issues)
    return options


class AccountConfig(FrozenModel):
    """The trading account. ``starting_balance`` (quote currency) seeds simulation and paper."""

    name: Annotated[str, matching(r"[A-Za-z0-9_-]{1,12}", "1-12 of A-Z a-z 0-9 _ -")]
    quote: Annotated[str, matching(r"[A-Z0-9]{2,10}", "an upper-case currency code like USDT")] = (
        "USDT"
    )
    starting_balance: PositiveDec
    margin_mode: MarginModeName = "isolated"


class ContractConfig(FrozenModel):
    """One perpetual to manage; its caps (leverage, notional in quote) tighten the risk caps."""

    symbol: Symbol
    direction: Literal["long", "short", "signal", "follow"]
    signal_file: InputFile | None = None
    max_leverage: PositiveDec | None = None
    max_notional: PositiveDec | None = None

    @property
    def settle(self) -> str:
        """Settlement currency (the part after ``:``)."""
        return self.symbol.rpartition(":")[2]

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        raise_issues(_validate_signal_file(self))
        return self


# The venues of exchange.name and data.exchange.
VenueName = Literal["binanceusdm", "bybit"]
VENUE_NAMES: tuple[str, ...] = get_args(VenueName)


class DataConfig(FrozenModel):
    """Market-data directory and which venue's bundled contract specs and brackets to use."""

    dir: InputDir
    # Default: exchange.name (filled in by BotConfig; this class default serves a DataConfig
    # built on its own).
    exchange: VenueName = "binanceusdm"
    # Live trading refreshes <dir>/contracts/<exchange>.json at start and daily and refuses to
    # open or increase anything on a catalogue older than this (hours).
    catalogue_max_age_hours: StrictInt = Field(default=48, gt=0, le=24 * 365)
    # Live trading: a perpetual the venue schedules to settle (delisting) is reduce-only from
    # this many hours before the settlement (no new exposure into a forced settlement).
    settlement_lead_hours: StrictInt = Field(default=24, ge=0, le=24 * 90)


class PolicyRef(FrozenModel):
    """The policy file the config names (loaded into ``BotConfig.policies``)."""

    file: InputFile


class RiskConfig(FrozenModel):
    """Hard caps. Leverage in multiples of equity, notional in quote, losses as fractions."""

    max_leverage_per_contract: PositiveDec
    max_gross_leverage: PositiveDec
    max_notional_per_contract: PositiveDec
    daily_loss_limit: OpenFraction
    max_drawdown: OpenFraction
    stale_data_seconds: StrictInt = Field(gt=0, le=7 * 86_400)
    max_orders_per_minute: StrictInt = Field(gt=0, le=100_000)
    on_daily_loss: Literal["reducing", "halted"] = "halted"
    expected_stop_slippage_bps: Dec = Field(default=Decimal(10), ge=0, lt=10000)
    max_unreadable_reads: StrictInt = Field(default=3, ge=1, le=1000)
    max_protection_failures: StrictInt = Field(default=2, ge=1, le=1000)

    def effective_daily_loss_limit(self, policy: Policy) -> Decimal:
        """Fraction of equity: the tighter of this cap and the policy's ``limits.daily_loss``."""
        return min(self.daily_loss_limit, policy.limits.daily_loss)

    def effective_max_drawdown(self, policy: Policy) -> Decimal:
        """Fraction of peak equity: the tighter of this cap and ``limits.max_drawdown``."""
        return min(self.max_drawdown, policy.limits.max_drawdown)


class SimulationConfig(FrozenModel):
    """Backtest window (UTC calendar days, both inclusive; None = as far as the data goes) and
    costs: ``slippage_bps`` in basis points of price, ``fee_override_taker`` a fraction."""

    start: date | None = None
    end: date | None = None
    slippage_bps: Dec = Field(ge=0, lt=10000)
    # "fixed": slippage_bps on every fill; "range_impact": slippage_bps as a floor, plus
    # slippage_range_fraction of the candle's range for fills inside a moving candle, plus
    # slippage_impact x range x sqrt(qty / candle volume) (see bot/sim/slippage.py).
    slippage_model: Literal["fixed", "range_impact"] = "fixed"
    slippage_range_fraction: Dec = Field(default=Decimal("0.1"), ge=0, le=1)
    slippage_impact: Dec = Field(default=Decimal(1), ge=0, le=10)
    # A drawdown halt is final in a simulation unless this is set: a duration ("72h", "7d") after
    # which a modelled operator resumes trading, the peak reset to the equity of that moment.
    # At most a year, as a policy's cooldown: an operator who waits longer never resumes.
    resume_after_halt: (
        Annotated[
            str,
            matching(r"[1-9][0-9]*[mhdw]", "a duration like 72h or 7d"),
            at_most(MAX_COOLDOWN, "a year"),
        ]
        | None
    ) = None
    fee_override_taker: Dec | None = Field(default=None, ge=0, le=Decimal("0.01"))
    out_dir: OutputPath = Field(default=Path("out"), validate_default=True)
    trigger_source: Literal["auto", "mark", "last"] = "auto"

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        raise_issues(_validate_simulation_dates(self))
        return self


class ExchangeConfig(FrozenModel):
    """Live/paper venue connection. ``ccxt_options`` is passed to ccxt unchanged."""

    # The venues bot.exchange.capabilities.VENUES has a profile for (a test keeps them equal):
    # any other ccxt id would load here and fail only when `bot run` builds the adapter.
    name: VenueName = "binanceusdm"
    demo: StrictBool = True
    # The adapter rewrites every REST endpoint to this base (bot.exchange.factory), which takes
    # http(s)://host[:port] and an optional path prefix, and no query.
    api_url: (
        Annotated[
            str,
            matching(r"https?://[^/?#\s]+(/[^?#\s]*)?", "http(s)://host[:port][/path]"),
        ]
        | None
    ) = None
    ccxt_options: Annotated[
        dict[str, Any], BeforeValidator(_plain_numbers), AfterValidator(_sane_ccxt_options)
    ] = Field(default_factory=dict)
    margin_mode: MarginModeName | None = None
    # Live trading: how many of one tick's independent requests (account and market reads, the
    # protective orders of different contracts) may wait for the venue at once. 1 = one by one.
    max_parallel_requests: StrictInt = Field(default=4, ge=1, le=16)
    # A read (never an order or a cancel) unanswered after this many ms is sent once more and
    # the first answer wins, so one lost request costs this, not ccxt's whole timeout. 0 = off.
    hedge_reads_after_ms: StrictInt = Field(default=1000, ge=0, le=60_000)

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        raise_issues(_validate_api_url_and_demo(self))
        return self


class RuntimeConfig(FrozenModel):
    """Where state and logs go, and where alerts are sent."""

    database_url: DatabaseUrl = Field(default="sqlite:///bot-state.db", validate_default=True)
    log_dir: OutputPath = Field(default=Path("logs"), validate_default=True)
    alert_urls: tuple[Url, ...] = ()
    alert_margin_ratio: Dec = Field(default=Decimal("0.8"), gt=0, le=1)
    alert_liquidation_vol_units: Dec = Field(default=Decimal(3), ge=0)
    # Upper bounds: past them a value means nothing a trader wants (a guard once a day) or
    # overflows the scheduler's timedelta at the first job, which then never runs a tick.
    alert_dedup_minutes: StrictInt = Field(default=60, ge=0, le=7 * 1440)
    alert_max_per_hour: StrictInt = Field(default=20, gt=0, le=3600)
    guard_seconds: StrictInt = Field(default=60, gt=0, le=3600)
    misfire_grace_seconds: StrictInt = Field(default=120, gt=0, le=86_400)
    funding_lead_seconds: StrictInt = Field(default=120, gt=0, le=8 * 3600)
    max_failures: StrictInt = Field(default=3, gt=0, le=1000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class BotConfig(FrozenModel):
    """A whole, valid configuration: ``source`` is the file, ``policies`` the loaded policies."""

    # Filled in by the loader, not TOML keys.
    DERIVED_KEYS: ClassVar[frozenset[str]] = frozenset({"source", "policies"})

    source: Path
    account: AccountConfig
    contracts: tuple[ContractConfig, ...] = Field(min_length=1)
    data: DataConfig
    policy: PolicyRef
    policies: tuple[Policy, ...] = Field(min_length=1)
    risk: RiskConfig
    simulation: SimulationConfig
    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    spot: SpotConfig | None = None  # spot inventory the policy's [hedge] covers

    @model_validator(mode="before")
    @classmethod
    def _fill_optional_tables(cls, data: Any) -> Any:
        # Optional tables are validated from {} (not from a class default) so that their
        # relative paths see the validation context, and exchange.margin_mode can follow the
        # account's.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data.setdefault("runtime", {})
        exchange = data.setdefault("exchange", {})
        account = data.get("account")
        if isinstance(exchange, dict) and "margin_mode" not in exchange:
            mode = account.get("margin_mode", "isolated") if isinstance(account, dict) else None
            if mode in ("isolated", "cross"):
                data["exchange"] = {**exchange, "margin_mode": mode}
        # Whose specifications simulation and paper trading use: the venue traded unless the
        # file says otherwise (a config moved to Bybit kept simulating Binance's fees, ticks
        # and brackets when only exchange.name was changed).
        venue = exchange.get("name", "binanceusdm") if isinstance(exchange, dict) else None
        table = data.get("data")
        if isinstance(table, dict) and "exchange" not in table and venue in VENUE_NAMES:
            data["data"] = {**table, "exchange": venue}
        return data

    @model_validator(mode="after")
    def _cross_field(self, info: ValidationInfo) -> Self:
        context = info.context
        files = context.get(POLICY_FILES) if isinstance(context, dict) else None
        raise_issues(
            _validate_unique_contracts(self),
            _validate_settle_currency(self),
            _validate_unique_policy_names(self),
            _validate_take_profit_reach(self),
            _validate_hedge(self),
            _validate_venue_limits(self, files if isinstance(files, dict) else {}),
        )
        return self


# --- cross-field rules ---------------------------------------------------------------------


def _validate_signal_file(c: ContractConfig) -> Iterator[Issue]:
    if c.direction == "signal" and c.signal_file is None:
        yield Issue(("signal_file",), 'required key missing for direction = "signal"')
    elif c.direction != "signal" and c.signal_file is not None:
        yield Issue(("signal_file",), 'only allowed with direction = "signal"', str(c.signal_file))


def _validate_api_url_and_demo(e: ExchangeConfig) -> Iterator[Issue]:
    # Live trading's adapter refuses the pair (demo = true selects the venue's demo hosts).
    if e.api_url is not None and e.demo:
        shown = e.api_url  # a gateway's password not on the terminal (loader._masked)
        for secret in sorted(database_url_secrets(e.api_url), key=len, reverse=True):
            shown = shown.replace(secret, "***")
        yield Issue(
            ("api_url",),
            "needs demo = false (demo = true trades the venue's own demo endpoints)",
            f'"{shown}"',
        )


def _validate_simulation_dates(s: SimulationConfig) -> Iterator[Issue]:
    if s.start is not None and s.end is not None and s.end <= s.start:
        yield Issue(("end",), "must be after simulation.start", f"{s.end} <= {s.start}")


def _validate_unique_contracts(cfg: BotConfig) -> Iterator[Issue]:
    first: dict[str, int] = {}
    for index, contract in enumerate(cfg.contracts):
        if contract.symbol in first:
            problem = f"duplicate of contracts[{first[contract.symbol]}].symbol"
            yield Issue(("contracts", index, "symbol"), problem, f'"{contract.symbol}"')
        first.setdefault(contract.symbol, index)


def _validate_settle_currency(cfg: BotConfig) -> Iterator[Issue]:
    # The wallet, PnL and loss limits are kept in account.quote; a contract settling in another
    # currency would need a conversion the bot does not do.
    for index, contract in enumerate(cfg.contracts):
        if contract.settle != cfg.account.quote:
            problem = f'settles in {contract.settle}, not account.quote "{cfg.account.quote}"'
            yield Issue(("contracts", index, "symbol"), problem, f'"{contract.symbol}"')


# A contract's specification for the config's checks, and the user's catalogue it came from
# (``None``: the bundled snapshot).
_Known = tuple[Instrument, Path | None]


def _known_specs(venue: str, symbols: list[str], data_dir: Path) -> dict[str, _Known]:
    """The specifications of ``symbols`` on ``venue`` as every command resolves them
    (:func:`bot.catalogue.resolve_with_sources`): the user's catalogue
    ``<data.dir>/contracts/<venue>.json`` first, then the bundled snapshot. Left out: a
    contract in neither, and one whose figures stand in from another venue's (Bybit takes
    Binance's when it has none of its own; live reads the venue's). A user catalogue that
    cannot be read is left aside here: it is reported where it is used."""
    if venue not in available_exchanges():
        return {}
    try:
        found, _ = resolve_with_sources(venue, symbols, data_dir)
    except DataError:
        found, _ = resolve_with_sources(venue, symbols, None)
    return {
        s: (inst, catalogue.path) for s, (inst, catalogue) in found.items() if not catalogue.donor
    }


def _validate_venue_limits(cfg: BotConfig, files: dict[str, str]) -> Iterator[Issue]:
    """Leverage caps the venue accepts; percent stops that can fire before the liquidation;
    percent take-profits beyond the round trip of their costs.

    With the contract specifications the bot trades on (the user's catalogue, then the bundled
    snapshot: :func:`_known_specs`; a contract in neither is checked live, where the venue's own
    brackets are loaded), on the venue the config trades (else on ``data.exchange``) and, when
    the simulation reads another venue's data (``data.exchange``: its contracts are simulated
    on that venue's specifications), the stops on that one's too: a stop must fire before
    either liquidates, and a take-profit must clear either's fees (and the simulation's
    ``fee_override_taker``). ``files``: each policy's file by name (:data:`POLICY_FILES`).
    """
    symbols = [c.symbol for c in cfg.contracts]
    venue = cfg.exchange.name if cfg.exchange.name in available_exchanges() else cfg.data.exchange
    known = _known_specs(venue, symbols, cfg.data.dir)
    simulated = (
        _known_specs(cfg.data.exchange, symbols, cfg.data.dir) if cfg.data.exchange != venue else {}
    )
    cap = cfg.risk.max_leverage_per_contract
    above: list[str] = []
    reach: dict[str, tuple[Decimal, Instrument]] = {}  # per policy: the tightest contract
    checked: list[Instrument] = []
    for index, contract in enumerate(cfg.contracts):
        if contract.symbol not in known:
            continue
        inst, path = known[contract.symbol]
        own = contract.max_leverage
        yield from _above_maximum(index, contract, inst, path, venue, cap, above)
        specs = [inst]
        if contract.symbol in simulated:
            specs.append(simulated[contract.symbol][0])
        checked += specs
        for policy in cfg.policies:
            for spec in specs:
                usable = min(cap, own or cap, spec.max_leverage)
                room = _liquidation_room(policy, spec, usable)
                if policy.name not in reach or room < reach[policy.name][0]:
                    reach[policy.name] = (room, spec)
    if above:
        yield Issue(
            ("risk", "max_leverage_per_contract"),
            f"above the venue's maximum on {venue}: {'; '.join(above)}",
            str(cap),
        )
    costs = _dearest_round_trip(cfg, checked)
    for policy in cfg.policies:
        label = _policy_label(policy, files)
        if policy.name in reach and policy.stop_loss.kind == "percent":
            room, inst = reach[policy.name]
            if policy.stop_loss.distance >= room:
                # volatility-scaled stops are placed by the risk layer, tick by tick
                yield Issue(
                    ("policy", "file"),
                    f"{label}: stop_loss.distance = {policy.stop_loss.distance} % "
                    f"lies at or beyond the liquidation price of {inst.symbol} at the highest "
                    f"leverage the bot may use (about {room:.2f} % away): lower the stop "
                    "distance or leverage.max",
                )
        if costs is not None:
            yield from _take_profit_within_costs(cfg, policy, label, *costs)


def _policy_label(policy: Policy, files: dict[str, str]) -> str:
    """``policy <name> (<its file>)``, or without the file when the loader did not say it."""
    file = files.get(policy.name)
    return f"policy {policy.name}" + (f" ({file})" if file is not None else "")


def _fees_charged(cfg: BotConfig, spec: Instrument) -> Iterator[Instrument]:
    """``spec`` as the runs of ``cfg`` charge it: with its own taker fee (paper and live) and,
    when set, with ``simulation.fee_override_taker`` (the simulation's,
    :func:`bot.backtest.replay._instruments`)."""
    yield spec
    fee = cfg.simulation.fee_override_taker
    if fee is not None and fee != spec.taker_fee:
        yield replace(spec, taker_fee=fee)


def _dearest_round_trip(
    cfg: BotConfig, specs: list[Instrument]
) -> tuple[Decimal, Instrument] | None:
    """The largest round trip of a take-profit (:meth:`Instrument.round_trip`, in percent) on
    any of ``specs`` as a run of ``cfg`` charges it, and that specification; ``None``: no
    specification known (checked live)."""
    slippage = cfg.risk.expected_stop_slippage_bps / 10000
    found: tuple[Decimal, Instrument] | None = None
    for spec in specs:
        for charged in _fees_charged(cfg, spec):
            round_trip = charged.round_trip(slippage) * 100
            if found is None or round_trip > found[0]:
                found = (round_trip, charged)
    return found


def _take_profit_within_costs(
    cfg: BotConfig, policy: Policy, label: str, round_trip: Decimal, spec: Instrument
) -> Iterator[Issue]:
    # A percent take-profit at or inside the round trip of its costs closes at a loss every
    # time it fires: at the policy floor of 0.05 %, 1,227 of 1,231 take-profits of a four-month
    # simulation lost after fees. Volatility and ATR take-profits are held beyond it tick by
    # tick (bot.policy.decide._beyond).
    tp = policy.take_profit
    if tp is None or tp.kind != "percent" or tp.distance > round_trip:
        return
    shown = f"{round_trip.normalize():f}"
    fee = f"{(spec.taker_fee * 100).normalize():f}"
    yield Issue(
        ("policy", "file"),
        f"{label}: take_profit.distance = {tp.distance} % is at or inside the round trip of "
        f"{spec.symbol}, {shown} % (the taker fee {fee} % on the entry and on the exit, and "
        f"risk.expected_stop_slippage_bps = {cfg.risk.expected_stop_slippage_bps} on the exit): "
        f"every take-profit would close at a loss after costs; use a distance above {shown}",
    )


def _above_maximum(
    index: int,
    contract: ContractConfig,
    inst: Instrument,
    path: Path | None,
    venue: str,
    cap: Decimal,
    above: list[str],
) -> Iterator[Issue]:
    """The issue of a contract's own leverage cap above the venue's maximum for it; the
    contract appended to ``above`` when only ``risk.max_leverage_per_contract`` is."""
    most = inst.max_leverage
    where = f"per {path}" if path is not None else ""  # the user's catalogue says so
    own = contract.max_leverage
    if own is not None and own > most:
        yield Issue(
            ("contracts", index, "max_leverage"),
            f"above the maximum {most}x of {contract.symbol} on {venue}"
            + (f" ({where})" if where else ""),
            str(own),
        )
    elif own is None and cap > most:
        also = f"{where}; " if where else ""
        above.append(f"{contract.symbol} {most}x ({also}or set contracts[{index}].max_leverage)")


def _liquidation_room(policy: Policy, inst: Instrument, cap: Decimal) -> Decimal:
    """Percent move that liquidates an isolated position at the highest usable leverage:
    about 1/L - mmr (the first bracket's maintenance rate), less the taker fee on Bybit, whose
    maintenance margin holds the fee to close (:func:`bot.domain.margin.maintenance_margin`)."""
    leverage = min(policy.leverage.max, cap)
    room = 1 / leverage - inst.brackets[0].maint_margin_rate
    if inst.margin_model is MarginModel.BYBIT_UTA:
        room -= inst.taker_fee
    return room * 100


def _validate_unique_policy_names(cfg: BotConfig) -> Iterator[Issue]:
    # Reports and the journal tell policies apart by name.
    first: dict[str, int] = {}
    for index, policy in enumerate(cfg.policies):
        if policy.name in first:
            problem = f"duplicate of policies[{first[policy.name]}].name"
            yield Issue(("policies", index, "name"), problem, f'"{policy.name}"')
        first.setdefault(policy.name, index)


def _validate_take_profit_reach(cfg: BotConfig) -> Iterator[Issue]:
    # A short's take-profit 100 % or more below its entry is at or below zero: the policy
    # dropped it without a word, and the trader believed profits were being taken.
    shorts = [c.symbol for c in cfg.contracts if c.direction in ("short", "signal", "follow")]
    if not shorts:
        return
    for index, policy in enumerate(cfg.policies):
        tp = policy.take_profit
        if tp is not None and tp.kind == "percent" and tp.distance >= 100:
            yield Issue(
                ("policies", index, "take_profit", "distance"),
                f"a short position's take-profit {tp.distance} % below its entry is at or "
                f"below zero and is never placed ({', '.join(shorts)} may be short); use less "
                "than 100",
                str(tp.distance),
            )


def _validate_hedge(cfg: BotConfig) -> Iterator[Issue]:
    # A hedge leg is a contract of its own: sharing a symbol with a traded contract would make
    # two decisions for one position. Spot is priced from a perpetual the engine reads.
    traded = {c.symbol for c in cfg.contracts}
    for index, policy in enumerate(cfg.policies):
        hedge = policy.hedge
        if hedge is None:
            continue
        for i, sym in enumerate(hedge.instruments):
            loc = ("policies", index, "hedge", "instruments", i)
            if sym in traded:
                yield Issue(loc, "is also a traded contract; a hedge leg needs its own", f'"{sym}"')
            if sym.rpartition(":")[2] != cfg.account.quote:
                yield Issue(loc, f'settles outside account.quote "{cfg.account.quote}"', sym)
        priced = traded | set(hedge.instruments)
        for i, asset in enumerate(cfg.spot.assets if cfg.spot is not None else ()):
            sym = spot_symbol(asset, cfg.account.quote)
            if sym not in priced:
                yield Issue(
                    ("spot", "holdings", i, "asset"),
                    f"is priced from {sym}, which is neither a contract nor a hedge instrument "
                    f"of policy {policy.name}",
                    f'"{asset}"',
                )
