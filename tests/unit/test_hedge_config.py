"""Configuration errors of the hedge and the spot holdings name what is wrong and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.backtest.replay import run_simulation
from bot.config.loader import load_config
from bot.errors import ConfigError
from tests.integration.test_hedge_sim import LONG_ETH_SOL, oscillation, setup


def test_a_hedge_instrument_may_not_be_a_traded_contract(tmp_path: Path) -> None:
    contracts = LONG_ETH_SOL + '\n[[contracts]]\nsymbol = "BTC/USDT:USDT"\ndirection = "long"\n'
    cfg = setup(tmp_path, oscillation(60), contracts=contracts, stop="20", target="0", band="0.1")
    with pytest.raises(
        ConfigError, match=r"policies\[0\]\.hedge\.instruments\[0\]: is also a traded"
    ):
        load_config(cfg)


def test_a_spot_asset_needs_a_price_series(tmp_path: Path) -> None:
    spot = '[spot]\n[[spot.holdings]]\nasset = "XRP"\nquantity = 10\n'
    cfg = setup(
        tmp_path,
        oscillation(60),
        contracts=LONG_ETH_SOL,
        spot=spot,
        stop="20",
        target="0",
        band="0.1",
    )
    with pytest.raises(
        ConfigError, match=r"spot\.holdings\[0\]\.asset: is priced from XRP/USDT:USDT"
    ):
        load_config(cfg)


def test_configured_spot_needs_a_quantity(tmp_path: Path) -> None:
    spot = '[spot]\n[[spot.holdings]]\nasset = "BTC"\n'
    cfg = setup(
        tmp_path,
        oscillation(60),
        contracts=LONG_ETH_SOL,
        spot=spot,
        stop="20",
        target="0",
        band="0.1",
    )
    with pytest.raises(ConfigError, match=r"spot\.holdings\[0\]\.quantity: required key missing"):
        load_config(cfg)


def test_the_live_spot_wallet_is_not_simulated(tmp_path: Path) -> None:
    spot = '[spot]\nsource = "exchange"\n[[spot.holdings]]\nasset = "BTC"\n'
    cfg = setup(
        tmp_path,
        oscillation(60),
        contracts=LONG_ETH_SOL,
        spot=spot,
        stop="20",
        target="0",
        band="0.1",
    )
    config = load_config(cfg)
    with pytest.raises(ConfigError, match=r'spot\.source = "exchange" reads the live spot wallet'):
        run_simulation(config, config.policies[0])
