"""The slippage model: fixed bps, and floor + range + square-root impact, by hand."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.bootstrap import slippage_model
from bot.config.loader import load_config
from bot.errors import ConfigError
from bot.sim.slippage import MAX_SLIPPAGE, SlippageModel
from tests.conftest import ROOT

D = Decimal


def test_fixed_model_is_the_floor_whatever_the_candle() -> None:
    m = SlippageModel.fixed(D(2))
    assert m.fraction(D(1), D("0.25"), D(10), inside=True) == D("0.0002")
    assert m.fraction(D(1), None, None, inside=False) == D("0.0002")
    assert not m.data_driven


def test_range_impact_by_hand() -> None:
    m = SlippageModel(floor=D("0.0002"), range_fraction=D("0.1"), impact=D(1))
    # A stop of 4 BTC inside a candle whose range is 25 % of its open, 100 BTC traded in it:
    # 0.0002 + 0.1 x 0.25 + 1 x 0.25 x sqrt(4 / 100) = 0.0002 + 0.025 + 0.05 = 0.0752.
    assert m.fraction(D(4), D("0.25"), D(100), inside=True) == D("0.0752")
    # The same order as a market order at a decision: no range term.
    assert m.fraction(D(4), D("0.25"), D(100), inside=False) == D("0.0502")
    # A calm candle (range 0.1 %), the same size: 0.0002 + 0.0001 + 0.0002 = 0.0005.
    assert m.fraction(D(4), D("0.001"), D(100), inside=True) == D("0.0005")
    # Unknown candle: the floor only. Absurd sizes are capped so a price stays positive.
    assert m.fraction(D(4), None, None, inside=True) == D("0.0002")
    assert m.fraction(D(10**9), D("0.5"), D(1), inside=True) == MAX_SLIPPAGE


def test_the_example_config_uses_the_data_driven_model() -> None:
    config = load_config(ROOT / "config.example.toml")
    m = slippage_model(config)
    assert m.data_driven
    assert m.floor == D("0.0002")
    fixed = config.model_copy(
        update={"simulation": config.simulation.model_copy(update={"slippage_model": "fixed"})}
    )
    assert slippage_model(fixed) == SlippageModel.fixed(D(2))


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_bad_range_fraction_is_an_error(tmp_path: Path, value: str) -> None:
    text = (ROOT / "config.example.toml").read_text()
    text = text.replace("slippage_range_fraction = 0.1", f"slippage_range_fraction = {value}")
    text = text.replace('dir = "data/sample"', f'dir = "{ROOT / "data" / "sample"}"')
    text = text.replace(
        'file = "policies/vol_target.toml"', f'file = "{ROOT / "policies" / "vol_target.toml"}"'
    )
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="slippage_range_fraction"):
        load_config(path)
