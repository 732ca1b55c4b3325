"""A policy's kind as a tagged union: each kind carries exactly the keys it requires."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import Policy, load_policy
from bot.config.policy import RiskParitySizing, StaticSizing, VolTargetSizing
from bot.errors import ConfigError

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def test_each_bundled_policy_gives_its_kind_with_its_keys() -> None:
    static = load_policy(POLICIES / "static_3x.toml")
    assert static.sizing == StaticSizing(fixed=static.leverage.fixed or Decimal(-1))
    assert static.sizing.kind == "static"
    vol = load_policy(POLICIES / "vol_target.toml")
    assert isinstance(vol.sizing, VolTargetSizing)
    assert vol.sizing.target_volatility == vol.leverage.target_volatility
    parity = load_policy(POLICIES / "risk_parity.toml")
    assert isinstance(parity.sizing, RiskParitySizing)
    assert parity.sizing.allocation == parity.allocation
    assert parity.sizing.target_volatility == parity.leverage.target_volatility


def test_a_policy_built_without_validation_and_without_its_keys_is_refused() -> None:
    valid = load_policy(POLICIES / "static_3x.toml")
    broken = Policy.model_construct(
        **{**dict(valid), "leverage": valid.leverage.model_copy(update={"fixed": None})}
    )
    with pytest.raises(ConfigError, match=r"kind = 'static' without its required keys"):
        _ = broken.sizing
