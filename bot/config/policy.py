"""Policy parameters: one ``policies/*.toml`` file → a frozen, validated :class:`Policy`.

This module also holds the building blocks the config models in :mod:`bot.config.models`
share (the frozen base model, the exact-Decimal field type, the cross-field :class:`Issue`
plumbing): the config imports the policy, never the other way round.

Units: leverage is a multiple of equity; volatilities and loss limits are fractions (0.40 = 40 %),
never percent, except ``DistanceParams.distance`` with ``kind = "percent"`` (2.5 = 2.5 %).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.config.hedge import HedgeParams
from bot.config.issue import RULES_ERROR as RULES_ERROR
from bot.config.issue import Issue as Issue
from bot.config.issue import Loc as Loc
from bot.config.issue import dotted as dotted
from bot.config.issue import raise_issues as raise_issues
from bot.errors import ConfigError

# --- shared building blocks ----------------------------------------------------------------


class FrozenModel(BaseModel):
    """Base of every config and policy model: immutable, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def _to_decimal(value: object) -> object:
    # TOML is parsed with parse_float=Decimal; floats only arrive from Python callers, and
    # going through str keeps 0.1 as Decimal("0.1") instead of 0.1000000000000000055...
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "must be a number")
    if isinstance(value, float):
        return Decimal(str(value))
    return value


Dec = Annotated[Decimal, BeforeValidator(_to_decimal)]
PositiveDec = Annotated[Decimal, BeforeValidator(_to_decimal), Field(gt=0)]
OpenFraction = Annotated[Decimal, BeforeValidator(_to_decimal), Field(gt=0, lt=1)]


def matching(pattern: str, what: str) -> AfterValidator:
    """Validator: the string must fully match ``pattern``; the error says it must be ``what``."""
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise PydanticCustomError("pattern", "must be {what}", {"what": what})
        return value

    return AfterValidator(check)


_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# Length past which a written duration is longer than every bound below whatever its unit
# (and int() refuses a number of thousands of digits with a ValueError of its own).
_MAX_DURATION_CHARS = 12


def duration_ms(text: str) -> int:
    """Length of a duration written like ``24h`` (a number then m, h, d or w; ``0``) in ms.

    Here rather than :func:`bot.stats.timeframes.parse_timeframe` so that loading a config does
    not import numpy."""
    if text == "0":
        return 0
    return int(text[:-1]) * _UNIT_MS[text[-1]]


def at_most(most: str, meaning: str) -> AfterValidator:
    """Validator of a duration already matched as ``<number><m|h|d|w>`` (or ``0``): it may not be
    longer than ``most``; the error says ``must be at most <most> (<meaning>)``."""
    limit = duration_ms(most)

    def check(value: str) -> str:
        if len(value) > _MAX_DURATION_CHARS or duration_ms(value) > limit:
            raise PydanticCustomError(
                "duration_too_long",
                "must be at most {most} ({meaning})",
                {"most": most, "meaning": meaning},
            )
        return value

    return AfterValidator(check)


# Upper bounds of the durations and windows of a policy (and of simulation.resume_after_halt).
# Past them a value means nothing a trader wants, and some broke a run midway instead of at
# load: a cooldown's end beyond the year 9999 raised at the first stop, after ticks had run; a
# timeframe of 10^20 days overflowed the resampling of the candles.
# A year: a cooldown that long already means "never add again".
MAX_COOLDOWN = "365d"
# The longest fixed-length candle the venues serve (ccxt's 1M is a month, of varying length);
# a policy deciding less often would need years of warm-up for a volatility window of use.
MAX_TIMEFRAME = "1w"
# Candles in a window (volatility, ATR, covariance, beta): 69 days of 1m candles, 11 years of
# 1h ones, more history than any perpetual has at 1h (Binance lists BTCUSDT from 2019). A
# longer window can never fill; live prices reach 999 candles (bot.bootstrap checks that).
MAX_WINDOW = 100_000
# Funding settlements averaged: a year of them at the shortest interval the venues use (1h).
MAX_FUNDING_LOOKBACK = 8760


# --- policy parameters ---------------------------------------------------------------------

Estimator = Literal["close_to_close", "ewma", "parkinson", "garman_klass", "yang_zhang"]
PolicyKind = Literal["vol_target", "risk_parity", "static"]


class VolatilityParams(FrozenModel):
    """Realised-volatility estimate over the last ``window`` decision candles."""

    estimator: Estimator
    window: StrictInt = Field(ge=2, le=MAX_WINDOW)
    ewma_lambda: Dec = Field(default=Decimal("0.94"), gt=0, lt=1)


class LeverageParams(FrozenModel):
    """Leverage bounds and dynamics (multiples of equity; ``target_volatility`` annualised)."""

    min: Dec = Field(ge=0)
    max: Dec = Field(gt=0, le=125)
    target_volatility: Dec | None = Field(default=None, gt=0)
    fixed: Dec | None = Field(default=None, gt=0)
    hysteresis: Dec = Field(default=Decimal(0), ge=0, lt=1)
    max_step: Dec | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        raise_issues(_validate_leverage_bounds(self), _validate_fixed_within_bounds(self))
        return self


class AllocationParams(FrozenModel):
    """How a risk-parity policy splits gross leverage across contracts."""

    method: Literal["inverse_vol", "erc"]
    max_gross_leverage: PositiveDec
    covariance_window: StrictInt = Field(ge=10, le=MAX_WINDOW)


class DistanceParams(FrozenModel):
    """Distance of a stop-loss or take-profit from the entry.

    ``distance`` is in ATR multiples (``atr``), daily-volatility units (``vol``) or percent of the
    entry price (``percent``: 2.5 means 2.5 %).
    """

    kind: Literal["atr", "vol", "percent"]
    distance: PositiveDec


class LiquidationParams(FrozenModel):
    """The stop must trigger at least ``buffer_vol_units`` daily volatilities before liquidation."""

    buffer_vol_units: Dec = Field(ge=0)


class FundingParams(FrozenModel):
    """Funding-cost cap: fraction of equity per year; averaged over ``lookback`` settlements."""

    max_annual_cost: PositiveDec
    lookback: StrictInt = Field(default=3, ge=1, le=MAX_FUNDING_LOOKBACK)


class PolicyLimits(FrozenModel):
    """The policy's own loss limits, fractions of equity (the config's caps still apply)."""

    daily_loss: OpenFraction
    max_drawdown: OpenFraction


class OrderParams(FrozenModel):
    """Fractional changes below which the bot does not trade or replace protective orders, and
    the volume participation cap: no tick adds more to a position than ``max_participation`` x
    the mean traded volume per decision candle over the volatility window (``None``: off). The
    rest of the increase follows over the next ticks; reductions are never capped (see
    :mod:`bot.policy.participation`)."""

    rebalance_tolerance: Dec = Field(default=Decimal("0.1"), ge=0, lt=1)
    protective_tolerance: Dec = Field(default=Decimal("0.002"), ge=0, lt=1)
    max_participation: Dec | None = Field(default=None, gt=0, le=1)


class ReentryParams(FrozenModel):
    """After a stop-loss, a liquidation or a risk-state change, a contract may not add exposure
    for ``cooldown`` (a duration like ``24h``; ``0`` disables it)."""

    cooldown: Annotated[
        str,
        matching(r"0|[1-9][0-9]*[mhdw]", "0 or a number then m, h, d or w, like 24h"),
        at_most(MAX_COOLDOWN, "a year"),
    ] = "0"

    @property
    def cooldown_ms(self) -> int:
        if self.cooldown == "0":
            return 0
        from bot.stats.timeframes import parse_timeframe  # config stays import-light

        return parse_timeframe(self.cooldown)


class Policy(FrozenModel):
    """One policy file. ``name`` defaults to the file stem; ``timeframe`` is like ``1h``."""

    name: Annotated[str, matching(r"[A-Za-z0-9_.-]{1,40}", "1-40 of A-Z a-z 0-9 _ . -")]
    kind: PolicyKind
    timeframe: Annotated[
        str,
        matching(r"[1-9][0-9]*[mhdw]", "a number then m, h, d or w, like 1h or 15m"),
        at_most(MAX_TIMEFRAME, "a week"),
    ]
    allow_increase: StrictBool = True
    volatility: VolatilityParams
    leverage: LeverageParams
    allocation: AllocationParams | None = None
    stop_loss: DistanceParams
    take_profit: DistanceParams | None = None
    # Wilder's average needs two candles, as the volatility window does: at window 1 it is the
    # last candle's true range, and both ATR estimators (bot.stats.volatility.atr, which the
    # live engine calls, and window_series.trailing_atr, the simulation's) refuse it, so a
    # policy accepted with 1 crashed every simulation and failed every live tick.
    atr_window: StrictInt = Field(default=14, ge=2, le=MAX_WINDOW)
    liquidation: LiquidationParams
    funding: FundingParams
    limits: PolicyLimits
    orders: OrderParams = OrderParams()
    reentry: ReentryParams = ReentryParams()
    hedge: HedgeParams | None = None  # a beta hedge leg (see bot.config.hedge)

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        raise_issues(*(rule(self) for rule in _POLICY_RULES))
        return self

    @property
    def sizing(self) -> Sizing:
        """The kind with exactly the parameters it requires, none of them optional."""
        return _sizing(self)


# --- the kinds, as a tagged union (match on it; ``assert_never`` catches a kind left out) -----


@dataclass(frozen=True, slots=True, kw_only=True)
class StaticSizing:
    """Constant leverage."""

    fixed: Decimal
    kind: Literal["static"] = "static"


@dataclass(frozen=True, slots=True, kw_only=True)
class VolTargetSizing:
    """Leverage = target volatility / realised volatility, per contract."""

    target_volatility: Decimal
    kind: Literal["vol_target"] = "vol_target"


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskParitySizing:
    """A risk-parity book scaled to the target volatility."""

    target_volatility: Decimal
    allocation: AllocationParams
    kind: Literal["risk_parity"] = "risk_parity"


Sizing = StaticSizing | VolTargetSizing | RiskParitySizing


def _sizing(p: Policy) -> Sizing:
    # The cross-field rules below make every branch's keys present; only a Policy built without
    # validation (model_construct) can fall through.
    target = p.leverage.target_volatility
    match p.kind:
        case "static" if p.leverage.fixed is not None:
            return StaticSizing(fixed=p.leverage.fixed)
        case "vol_target" if target is not None:
            return VolTargetSizing(target_volatility=target)
        case "risk_parity" if target is not None and p.allocation is not None:
            return RiskParitySizing(target_volatility=target, allocation=p.allocation)
    raise ConfigError(
        f"policy {p.name!r}: kind = {p.kind!r} without its required keys (a Policy must be "
        "built with Policy.model_validate)"
    )


# --- cross-field rules ---------------------------------------------------------------------


def _validate_leverage_bounds(p: LeverageParams) -> Iterator[Issue]:
    if p.max < p.min:
        yield Issue(("max",), "must be >= leverage.min", f"{p.max} < {p.min}")


def _validate_fixed_within_bounds(p: LeverageParams) -> Iterator[Issue]:
    if p.fixed is not None and not p.min <= p.fixed <= p.max:
        yield Issue(
            ("fixed",),
            "must be within [leverage.min, leverage.max]",
            f"{p.fixed} outside [{p.min}, {p.max}]",
        )


def _only_for(kinds: str) -> str:
    return f"only allowed with kind = {kinds}"


MAX_TARGET_VOLATILITY = Decimal(5)
"""The highest target volatility a policy may ask, annualised (500 % a year)."""


def _validate_target_volatility(p: Policy) -> Iterator[Issue]:
    needs = p.kind in ("vol_target", "risk_parity")
    value = p.leverage.target_volatility
    loc = ("leverage", "target_volatility")
    if needs and value is None:
        yield Issue(loc, f'required key missing for kind = "{p.kind}"')
    elif not needs and value is not None:
        # A static policy would silently ignore it; say so instead.
        yield Issue(loc, _only_for('"vol_target" or "risk_parity"'), str(value))
    elif value is not None and value > MAX_TARGET_VOLATILITY:
        # A percentage typed for a fraction (70 for 0.70) would aim the book at 7,000 % a year:
        # only the leverage caps would stand between it and the largest position they allow.
        yield Issue(
            loc,
            f"must be <= {MAX_TARGET_VOLATILITY} (an annualised fraction: 0.7 is 70 % a year)",
            str(value),
        )


def _validate_fixed_leverage(p: Policy) -> Iterator[Issue]:
    value = p.leverage.fixed
    if p.kind == "static" and value is None:
        yield Issue(("leverage", "fixed"), 'required key missing for kind = "static"')
    elif p.kind != "static" and value is not None:
        yield Issue(("leverage", "fixed"), _only_for('"static"'), str(value))


def _validate_allocation_section(p: Policy) -> Iterator[Issue]:
    if p.kind == "risk_parity" and p.allocation is None:
        yield Issue(("allocation",), 'required table missing for kind = "risk_parity"')
    elif p.kind != "risk_parity" and p.allocation is not None:
        yield Issue(("allocation",), _only_for('"risk_parity"'), f'kind = "{p.kind}"')


def _validate_stop_loss_percent(p: Policy) -> Iterator[Issue]:
    # A stop 100 % or more below a long's entry is at or under a zero price: it can never fire.
    if p.stop_loss.kind == "percent" and p.stop_loss.distance >= 100:
        yield Issue(
            ("stop_loss", "distance"),
            'must be < 100 with stop_loss.kind = "percent"',
            str(p.stop_loss.distance),
        )


# Closest stop a trader means: 0.05 % is a few ticks of the price on the coarsest-ticked
# contracts (XRP: 0.0001 at 0.6) and one taker fee; a tenth of a daily volatility or ATR is
# noise. Closer stops are refused by the venue or fire on the spread. The same floor holds a
# take-profit: one closer is taken by the spread (a distance of 1e-30 ran to the end as
# hundreds of "take-profits" that each realised a loss). The floor alone does not clear the
# fees: 0.05 % is less than the taker fee in and out, so the round trip of the costs is
# checked where the fees are known, a percent take-profit when the config is loaded
# (bot.config.models, _take_profit_within_costs) and every take-profit at each decision
# (bot.policy.decide._beyond).
MIN_STOP_PERCENT = Decimal("0.05")
MIN_STOP_UNITS = Decimal("0.1")


def _too_close(
    params: DistanceParams, key: str, percent_why: str, units_why: str
) -> Iterator[Issue]:
    """The floor of a stop-loss's or take-profit's distance (``key`` is its table)."""
    loc = (key, "distance")
    if params.kind == "percent" and params.distance < MIN_STOP_PERCENT:
        yield Issue(
            loc,
            f'must be >= {MIN_STOP_PERCENT} with {key}.kind = "percent": {percent_why}',
            str(params.distance),
        )
    elif params.kind != "percent" and params.distance < MIN_STOP_UNITS:
        unit = "ATR multiples" if params.kind == "atr" else "daily volatility units"
        yield Issue(loc, f"must be >= {MIN_STOP_UNITS} {unit}: {units_why}", str(params.distance))


def _validate_stop_loss_reach(p: Policy) -> Iterator[Issue]:
    stop = p.stop_loss
    loc = ("stop_loss", "distance")
    yield from _too_close(
        stop,
        "stop_loss",
        "a closer stop is within a few ticks of the price (refused by the venue or stopped out "
        "by the spread)",
        "a closer stop fires on noise",
    )
    # At leverage L a position is liquidated after a move of less than 1/L (maintenance margin
    # takes the rest): a percent stop that far or farther can never fire first.
    if stop.kind == "percent" and stop.distance < 100 and p.leverage.max > 1:
        reach = 100 / p.leverage.max
        if stop.distance >= reach:
            yield Issue(
                loc,
                f"must be < 100 / leverage.max = {reach:.4g} %: at the policy's maximum "
                "leverage the position is liquidated before this stop can fire",
                str(stop.distance),
            )


def _validate_take_profit_reach(p: Policy) -> Iterator[Issue]:
    if p.take_profit is not None:
        yield from _too_close(
            p.take_profit,
            "take_profit",
            "a closer take-profit is within a few ticks of the price (refused by the venue or "
            "taken by the spread, at a loss after fees)",
            "a closer take-profit is taken on noise, at a loss after fees",
        )


_POLICY_RULES: tuple[Callable[[Policy], Iterator[Issue]], ...] = (
    _validate_target_volatility,
    _validate_fixed_leverage,
    _validate_allocation_section,
    _validate_stop_loss_percent,
    _validate_stop_loss_reach,
    _validate_take_profit_reach,
)
