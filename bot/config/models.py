"""Bot configuration: the frozen models one ``config.toml`` is validated into.

Relative paths are resolved against the directory of the file that names them (the loader passes
it as the validation context ``{"base_dir": ...}``; without a context, the working directory).
Input paths must exist. API keys are never configuration: they come from the environment
(``BOT_API_KEY`` / ``BOT_API_SECRET`` / ``BOT_API_PASSWORD``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

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

from bot.config.hedge import SpotConfig, spot_symbol
from bot.config.policy import (
    Dec,
    FrozenModel,
    Issue,
    OpenFraction,
    Policy,
    PositiveDec,
    matching,
    raise_issues,
)

BASE_DIR = "base_dir"  # key of the validation context holding the config file's directory

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
]
Symbol = Annotated[
    str, matching(r"[A-Z0-9]+/[A-Z0-9]+:[A-Z0-9]+", "a ccxt perpetual symbol like BTC/USDT:USDT")
]
Url = Annotated[str, matching(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+", "a URL like https://host/path")]


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


class DataConfig(FrozenModel):
    """Market-data directory and which venue's bundled contract specs and brackets to use."""

    dir: InputDir
    exchange: Literal["binanceusdm", "bybit"] = "binanceusdm"


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
    stale_data_seconds: StrictInt = Field(gt=0)
    max_orders_per_minute: StrictInt = Field(gt=0)
    on_daily_loss: Literal["reducing", "halted"] = "halted"

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
    fee_override_taker: Dec | None = Field(default=None, ge=0, le=Decimal("0.01"))
    out_dir: OutputPath = Field(default=Path("out"), validate_default=True)
    trigger_source: Literal["auto", "mark", "last"] = "auto"

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        raise_issues(_validate_simulation_dates(self))
        return self


class ExchangeConfig(FrozenModel):
    """Live/paper venue connection. ``ccxt_options`` is passed to ccxt unchanged."""

    name: Annotated[str, matching(r"[a-z0-9]+", "a ccxt exchange id like binanceusdm")] = (
        "binanceusdm"
    )
    demo: StrictBool = True
    api_url: Url | None = None
    ccxt_options: Annotated[dict[str, Any], BeforeValidator(_plain_numbers)] = Field(
        default_factory=dict
    )
    margin_mode: MarginModeName | None = None


class RuntimeConfig(FrozenModel):
    """Where state and logs go, and where alerts are sent."""

    database_url: DatabaseUrl = Field(default="sqlite:///bot-state.db", validate_default=True)
    log_dir: OutputPath = Field(default=Path("logs"), validate_default=True)
    alert_urls: tuple[Url, ...] = ()
    alert_margin_ratio: Dec = Field(default=Decimal("0.8"), gt=0, le=1)
    alert_liquidation_vol_units: Dec = Field(default=Decimal(3), ge=0)
    alert_dedup_minutes: StrictInt = Field(default=60, ge=0)
    alert_max_per_hour: StrictInt = Field(default=20, gt=0)
    guard_seconds: StrictInt = Field(default=60, gt=0)
    misfire_grace_seconds: StrictInt = Field(default=120, gt=0)
    funding_lead_seconds: StrictInt = Field(default=120, gt=0)
    max_failures: StrictInt = Field(default=3, gt=0)
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
        return data

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        raise_issues(
            _validate_unique_contracts(self),
            _validate_settle_currency(self),
            _validate_unique_policy_names(self),
            _validate_hedge(self),
        )
        return self


# --- cross-field rules ---------------------------------------------------------------------


def _validate_signal_file(c: ContractConfig) -> Iterator[Issue]:
    if c.direction == "signal" and c.signal_file is None:
        yield Issue(("signal_file",), 'required key missing for direction = "signal"')
    elif c.direction != "signal" and c.signal_file is not None:
        yield Issue(("signal_file",), 'only allowed with direction = "signal"', str(c.signal_file))


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


def _validate_unique_policy_names(cfg: BotConfig) -> Iterator[Issue]:
    # Reports and the journal tell policies apart by name.
    first: dict[str, int] = {}
    for index, policy in enumerate(cfg.policies):
        if policy.name in first:
            problem = f"duplicate of policies[{first[policy.name]}].name"
            yield Issue(("policies", index, "name"), problem, f'"{policy.name}"')
        first.setdefault(policy.name, index)


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
