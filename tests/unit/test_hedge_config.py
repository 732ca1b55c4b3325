"""Configuration errors of the hedge and the spot holdings name what is wrong and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.backtest.replay import run_simulation
from bot.config.loader import load_config, load_policy
from bot.errors import ConfigError
from tests.integration.test_hedge_sim import LONG_ETH_SOL, oscillation, setup

HEDGED = Path(__file__).resolve().parents[2] / "policies" / "vol_target_hedged.toml"


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


# cooldown_minutes = 9999999999 loaded, and the first hedge change raised (the cooldown's end
# past the year 9999) after ticks had run.
@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "cooldown_minutes = 240",
            "cooldown_minutes = 9999999999",
            "hedge.cooldown_minutes: must be <= 525600 (got 9999999999)",
        ),
        ("holding_hours = 24", "holding_hours = 1e30", "hedge.holding_hours: must be <= 8760"),
        (
            "beta_window = 168",
            "beta_window = 100001",
            "hedge.beta_window: must be <= 100000 (got 100001)",
        ),
    ],
)
def test_hedge_durations_and_windows_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    text = HEDGED.read_text()
    assert text.count(old) == 1
    path = tmp_path / "p.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value).startswith(f"p.toml: {problem}")
    # the longest allowed loads
    longest = {"cooldown_minutes": "525600", "holding_hours": "8760", "beta_window": "100000"}
    key = old.partition(" = ")[0]
    path.write_text(text.replace(old, f"{key} = {longest[key]}"))
    assert load_policy(path).hedge is not None
