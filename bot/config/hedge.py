"""The policy's ``[hedge]`` section and the configuration's ``[spot]`` holdings.

Units: exposures and the band are fractions of the perp account's equity (0.5 = half the
equity); ``min_notional`` is in the quote currency; funding limits are fractions of the hedge's
notional per year (0.10 = 10 %/yr).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.config.issue import Issue, raise_issues

SYMBOL = re.compile(r"[A-Z0-9]+/[A-Z0-9]+:[A-Z0-9]+")
ASSET = re.compile(r"[A-Z0-9]{2,12}")


def _to_decimal(value: object) -> object:
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "must be a number")
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def _symbol(value: str) -> str:
    if not SYMBOL.fullmatch(value):
        raise PydanticCustomError(
            "pattern",
            "must be a ccxt perpetual symbol like BTC/USDT:USDT",
            {"got": value},
        )
    return value


def _asset(value: str) -> str:
    if not ASSET.fullmatch(value):
        raise PydanticCustomError(
            "pattern", "must be an upper-case asset code like BTC", {"got": value}
        )
    return value


Dec = Annotated[Decimal, BeforeValidator(_to_decimal)]
HedgeSymbol = Annotated[str, AfterValidator(_symbol)]
AssetCode = Annotated[str, AfterValidator(_asset)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HedgeParams(_Frozen):
    """A hedge leg that keeps the book's beta-weighted net exposure inside a band.

    ``instruments``: the allowed hedge perpetuals, the first being the default (and the one betas
    are measured against). Each tick the book's exposure is sum(notional x beta); when
    ``|net / equity - target|`` exceeds ``band`` the hedge is resized to bring it back to
    ``target_net_exposure`` (never past zero: a hedge only offsets).
    """

    instruments: tuple[HedgeSymbol, ...] = Field(default=("BTC/USDT:USDT",), min_length=1)
    # Upper bounds, as the policy's (bot.config.policy, which imports this module): a beta
    # window as long as its volatility.window may be (MAX_WINDOW); a cooldown of a year already
    # means "never re-hedge" (longer ones ran past the calendar's year 9999 at the first hedge
    # change, mid-run); funding held for a year is the longest estimate that means anything.
    beta_window: StrictInt = Field(default=168, ge=10, le=100_000)
    beta_shrinkage: Dec = Field(default=Decimal("0.3"), ge=0, le=1)
    beta_min: Dec = Field(default=Decimal(0), ge=0)
    beta_max: Dec = Field(default=Decimal(3), gt=0, le=10)
    target_net_exposure: Dec = Field(default=Decimal(0), ge=0, le=10)
    band: Dec = Field(gt=0, le=10)
    min_notional: Dec = Field(default=Decimal(0), ge=0)
    cooldown_minutes: StrictInt = Field(default=0, ge=0, le=365 * 1440)
    max_funding_cost: Dec | None = Field(default=None, gt=0)
    holding_hours: Dec = Field(default=Decimal(24), gt=0, le=365 * 24)

    @model_validator(mode="after")
    def _cross_field(self) -> Self:

        raise_issues(_hedge_rules(self))
        return self

    @property
    def primary(self) -> str:
        return self.instruments[0]


def _hedge_rules(p: HedgeParams) -> Iterator[Issue]:
    if p.beta_min > p.beta_max:
        yield Issue(("beta_min",), "must be <= hedge.beta_max", f"{p.beta_min} > {p.beta_max}")
    seen: set[str] = set()
    for i, sym in enumerate(p.instruments):
        if sym in seen:
            yield Issue(("instruments", i), "duplicate hedge instrument", f'"{sym}"')
        seen.add(sym)
    if len(p.instruments) > 1 and p.max_funding_cost is None:
        yield Issue(
            ("max_funding_cost",),
            "required when hedge.instruments lists alternatives (it decides when to switch)",
        )


class SpotHolding(_Frozen):
    """A spot asset the hedge covers. ``quantity`` is required when spot.source = "config"."""

    asset: AssetCode
    quantity: Dec | None = Field(default=None, gt=0)


class SpotConfig(_Frozen):
    """Spot inventory: declared here (``source = "config"``, what paper and simulation use) or
    read from the venue's spot wallet (``source = "exchange"``, live only)."""

    source: Literal["config", "exchange"] = "config"
    holdings: tuple[SpotHolding, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_field(self) -> Self:

        def rules() -> Iterator[Issue]:
            seen: set[str] = set()
            for i, h in enumerate(self.holdings):
                if h.asset in seen:
                    yield Issue(("holdings", i, "asset"), "duplicate spot asset", f'"{h.asset}"')
                seen.add(h.asset)
                if self.source == "config" and h.quantity is None:
                    yield Issue(
                        ("holdings", i, "quantity"), 'required key missing for source = "config"'
                    )

        raise_issues(rules())
        return self

    def configured(self) -> dict[str, Decimal]:
        """The declared quantities (source = "config")."""
        return {h.asset: h.quantity for h in self.holdings if h.quantity is not None}

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(h.asset for h in self.holdings)


def spot_symbol(asset: str, quote: str) -> str:
    """The perpetual whose price series prices a spot asset (no spot series in the data)."""
    return f"{asset}/{quote}:{quote}"
